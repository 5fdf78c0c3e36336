"""Shared plumbing for the Dagster shell and the CLI: storage, settings, the analysts' warehouse."""
