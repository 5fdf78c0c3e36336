"""Staging layers: cleaned and mapped work items, rated billables, FX-enriched billables."""
