"""`python -m pm_accounting_pipeline.cli` runs the command line."""

from pm_accounting_pipeline.cli import app

app()
