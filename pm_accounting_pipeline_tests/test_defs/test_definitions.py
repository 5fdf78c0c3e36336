"""A snapshot of the definitions: an accidental change to asset keys, partitions, checks, jobs,
sensors or schedules shows up here in review."""

from __future__ import annotations

import dagster as dg

from pm_accounting_pipeline.definitions import build_definitions

EXPECTED_ASSETS = {
    "raw/time_entries": ("raw", "daily"),
    "raw/harvest_api_time_entries": ("raw", "daily"),
    "staging/work_items": ("staging", "daily"),
    "staging/rated_billables": ("staging", "daily"),
    "staging/fx_billables": ("staging", "daily"),
    "ledger/accrual_entries": ("ledger", "daily"),
    "raw/expenses": ("raw", "daily"),
    "staging/expenses": ("staging", "daily"),
    "ledger/expense_accrual_entries": ("ledger", "daily"),
    "ledger/invoices": ("ledger", "monthly"),
    "ledger/billing_documents": ("ledger", "monthly"),
    "staging/client_matches": ("staging", "daily"),
    "ledger/payments": ("group", "monthly"),
    "ledger/fx_revaluation": ("group", "monthly"),
    "ledger/intercompany_recharges": ("group", "monthly"),
    "ledger/allocations": ("group", "monthly"),
    "ledger/capex": ("group", "monthly"),
    "ledger/eliminations": ("group", "monthly"),
    "posting/posted_ledger_entries": ("posting", None),
    "analytics/trial_balance": ("analytics", None),
    "analytics/project_profitability": ("analytics", None),
    "analytics/quarantine_summary": ("analytics", None),
}

EXPECTED_CHECKS = {
    "raw/time_entries": {"contract", "rows_accounted_for"},
    "staging/work_items": {"contract", "rows_accounted_for"},
    "staging/rated_billables": {"contract", "rows_accounted_for"},
    "staging/fx_billables": {"contract", "rows_accounted_for"},
    "ledger/accrual_entries": {
        "journal_balanced",
        "entries_contract",
        "lines_contract",
        "line_sources_contract",
        "great_expectations_ledger_suite",
    },
    "ledger/invoices": {
        "journal_balanced",
        "entries_contract",
        "lines_contract",
        "line_sources_contract",
        "invoices_contract",
        "invoice_lines_contract",
        "period_complete",
    },
    "analytics/trial_balance": {"entities_balance"},
    "raw/expenses": {"contract"},
    "staging/expenses": {"contract", "rows_accounted_for"},
    "ledger/expense_accrual_entries": {
        "journal_balanced",
        "entries_contract",
        "lines_contract",
        "line_sources_contract",
    },
}


def _defs(demo_env) -> dg.Definitions:
    return build_definitions(demo_env.data_dir, demo_env.config)


def test_asset_keys_groups_and_partitions_are_as_published(demo_env) -> None:
    defs = _defs(demo_env)
    graph = defs.resolve_asset_graph()
    seen = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        pdef = node.partitions_def
        kind = None
        if isinstance(pdef, dg.MultiPartitionsDefinition):
            time_dim = next(d for d in pdef.partitions_defs if d.name == "date").partitions_def
            kind = "daily" if isinstance(time_dim, dg.DailyPartitionsDefinition) else "monthly"
            entity_dim = next(d for d in pdef.partitions_defs if d.name == "entity").partitions_def
            assert entity_dim.get_partition_keys() == ["de", "uk", "us"]
        seen[key.to_user_string()] = (node.group_name, kind)
    assert seen == EXPECTED_ASSETS


def test_every_layer_has_its_blocking_checks(demo_env) -> None:
    defs = _defs(demo_env)
    graph = defs.resolve_asset_graph()
    checks: dict[str, set[str]] = {}
    for ck in graph.asset_check_keys:
        checks.setdefault(ck.asset_key.to_user_string(), set()).add(ck.name)
    for asset, names in EXPECTED_CHECKS.items():
        assert names <= checks.get(asset, set()), asset


def test_jobs_sensors_and_schedules_are_published(demo_env) -> None:
    defs = _defs(demo_env)
    repo = defs.get_repository_def()
    assert {"daily_pipeline", "harvest_api_pipeline", "monthly_billing", "analytics_refresh"} <= set(
        repo.job_names
    )
    assert {"landing_files_sensor", "harvest_api_sensor"} <= {s.name for s in repo.sensor_defs}
    schedules = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert schedules["daily_yesterday_schedule"] == "0 2 * * *"
    assert schedules["monthly_billing_schedule"] == "0 4 1 * *"


def test_definitions_load_from_the_packaged_example_without_any_data() -> None:
    from pm_accounting_pipeline.definitions import defs

    assert defs.resolve_asset_graph().get_all_asset_keys()


def test_the_code_location_passes_dagsters_own_validation(demo_env) -> None:
    """What `dagster dev` / `dagster definitions validate` check when they load the location:
    every job resolvable, op and graph names unique across the repository."""
    from pm_accounting_pipeline.definitions import defs as packaged

    for defs in (_defs(demo_env), packaged):
        dg.Definitions.validate_loadable(defs)
        repo = defs.get_repository_def()
        assert len(repo.get_all_jobs()) == len(repo.job_names)


def test_packaged_example_mapping_is_the_generators_default_output() -> None:
    from pm_accounting_pipeline.demo.generator import DemoConfig, generate
    from pm_accounting_pipeline.lib.settings import EXAMPLE_MAPPING

    assert EXAMPLE_MAPPING.read_text(encoding="utf-8") == generate(DemoConfig()).mapping_yaml
