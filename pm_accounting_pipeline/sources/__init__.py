"""Connectors to the systems work is recorded in (time trackers, PM tools): pure Python, no dagster."""
