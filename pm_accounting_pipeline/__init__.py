"""pm-accounting-pipeline: project-management and time-tracking data to balanced, posted accounting."""

__version__ = "0.1.0"
