"""Extraction: recognise and parse dropped files (Harvest and Toggl CSV exports, canonical CSV/JSON),
land them content-addressed, and read them into the raw.time_entries contract with quarantine rows."""

from pm_accounting_pipeline.extract.formats import FORMATS
from pm_accounting_pipeline.extract.landing import LandingFile, LandingResult, land_files, list_landing_files
from pm_accounting_pipeline.extract.parse import ParsedFile, parse_bytes, parse_file
from pm_accounting_pipeline.extract.raw import extract_raw

__all__ = [
    "FORMATS",
    "LandingFile",
    "LandingResult",
    "ParsedFile",
    "extract_raw",
    "land_files",
    "list_landing_files",
    "parse_bytes",
    "parse_file",
]
