"""The thin Dagster shell: assets, checks, sensors and schedules that wire the pure core.

One folder per pipeline layer; nothing in here decides an amount.
"""
