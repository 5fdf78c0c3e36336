"""The mapping document: one versioned YAML file per deployment, validated on load."""

from pm_accounting_pipeline.config.schema import MappingDocument, MappingDocumentError, load_mapping

__all__ = ["MappingDocument", "MappingDocumentError", "load_mapping"]
