"""Seeded demo data (a three-entity consultancy's Harvest exports and mapping document) for tests,
pilots and the benchmark."""

from pm_accounting_pipeline.demo.generator import (
    DemoConfig,
    DemoDataset,
    DemoFiles,
    generate,
    write_demo,
    write_harvest_csvs,
)

__all__ = ["DemoConfig", "DemoDataset", "DemoFiles", "generate", "write_demo", "write_harvest_csvs"]
