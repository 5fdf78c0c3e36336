"""The demo generator: deterministic, realistic, consistent with its mapping document, and fast."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from pm_accounting_pipeline.config.schema import MappingDocument, parse_mapping
from pm_accounting_pipeline.demo import catalog
from pm_accounting_pipeline.demo.generator import (
    EXPECTED_REASON,
    HARVEST_COLUMNS,
    MALFORMED_KINDS,
    DemoConfig,
    DemoDataset,
    generate,
    write_demo,
    write_harvest_csvs,
)

SMALL = DemoConfig(seed=5, n_clients=12, n_people=15)


@pytest.fixture(scope="module")
def ds() -> DemoDataset:
    return generate()


@pytest.fixture(scope="module")
def mapping(ds: DemoDataset) -> MappingDocument:
    return parse_mapping(yaml.safe_load(ds.mapping_yaml))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    return write_demo(tmp_path_factory.mktemp("demo"))


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- determinism and scale --------------------------------------------------------------------


def test_the_same_config_writes_byte_identical_files(tmp_path) -> None:
    a = write_demo(tmp_path / "a", SMALL)
    b = write_demo(tmp_path / "b", SMALL)
    tree_a, tree_b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert tree_a == tree_b
    assert len(tree_a) == 1 + 6  # the mapping document and 3 entities x 2 months
    assert a.malformed_rows.equals(b.malformed_rows)


def test_another_seed_gives_other_data(tmp_path) -> None:
    a = generate(SMALL).time_entries
    b = generate(DemoConfig(seed=6, n_clients=12, n_people=15)).time_entries
    assert not a.select("hours", "project_id").equals(b.select("hours", "project_id"))


def test_entries_knob_sets_the_volume_exactly() -> None:
    assert generate(DemoConfig(entries=1234, n_clients=5, n_people=6)).time_entries.height == 1234


def test_natural_volume_is_people_times_working_days_times_two_and_a_half(ds) -> None:
    assert ds.time_entries.height == 100 * 44 * 5 // 2  # September + October 2026: 44 working days


def test_200k_entries_generate_and_render_quickly(tmp_path) -> None:
    cfg = DemoConfig(seed=1, entries=200_000)
    t0 = time.perf_counter()
    ds = generate(cfg)
    paths = write_harvest_csvs(ds, tmp_path, cfg)
    elapsed = time.perf_counter() - t0
    rows = sum(_read(p).height for p in paths)
    assert rows >= 200_000
    assert elapsed < 15, f"200k entries took {elapsed:.1f}s"


# --- realism ----------------------------------------------------------------------------------


def test_three_entities_with_their_functional_currencies(ds) -> None:
    assert ds.entities.select("entity", "functional_currency").rows() == [
        ("us", "USD"),
        ("uk", "GBP"),
        ("de", "EUR"),
    ]
    assert ds.time_entries["entity"].unique().sort().to_list() == ["de", "uk", "us"]


def test_about_forty_clients_billing_in_mixed_currencies(ds, mapping) -> None:
    external = [c for c in mapping.clients if not c.customer_ref.startswith("INTERNAL")]
    assert len(external) == 40
    assert {c.currency for c in external} == {"USD", "GBP", "EUR", "JPY", "CHF"}
    assert ds.clients.filter(pl.col("currency") == "JPY").height >= 1
    assert ds.clients.filter(pl.col("currency") == "CHF").height >= 1


def test_near_duplicate_client_names_reach_the_csv_and_are_aliases_in_the_mapping(ds, mapping, demo) -> None:
    globex = next(c for c in mapping.clients if c.name == "Globex Corporation")
    assert globex.aliases == ["globex  corporation", "Globex Corporation Inc."]
    variants = ds.clients.filter(pl.col("name") != pl.col("canonical_name"))
    assert variants.height >= 5
    aliases = {a for c in mapping.clients for a in c.aliases}
    assert set(variants["name"].to_list()) == aliases
    in_csv = pl.concat([_read(p).select("Client") for p in demo.csv_paths])["Client"].unique().to_list()
    assert {"globex  corporation", "Globex Corporation Inc.", "Globex Corporation"} <= set(in_csv)
    # Each variant differs from its canonical name only in case, spacing or legal suffix.
    for name, canon in variants.select("name", "canonical_name").iter_rows():
        assert name != canon and _core_name(name) == _core_name(canon)


_LEGAL = {"inc", "llc", "corp", "corporation", "ltd", "limited", "plc", "gmbh", "ag", "kg"}


def _core_name(name: str) -> str:
    return " ".join(w for w in name.lower().replace(".", "").split() if w not in _LEGAL)


def test_every_client_is_billed_by_one_entity_and_people_log_in_their_own(ds) -> None:
    te = ds.time_entries
    per_client = te.group_by("client_id").agg(pl.col("entity").n_unique())
    assert per_client["entity"].max() == 1
    joined = te.join(ds.users.select("user_id", pl.col("entity").alias("user_entity")), on="user_id")
    assert (joined["entity"] == joined["user_entity"]).all()
    joined = te.join(ds.clients.select("client_id", pl.col("entity").alias("client_entity")), on="client_id")
    assert (joined["entity"] == joined["client_entity"]).all()


def test_work_is_logged_on_weekdays_in_the_configured_range_only(ds) -> None:
    days = ds.time_entries["spent_date"]
    assert days.dt.weekday().max() <= 5  # polars: Monday = 1 .. Sunday = 7
    assert (days.min(), days.max()) == (date(2026, 9, 1), date(2026, 10, 30))


def test_five_to_ten_percent_of_entries_are_not_approved(ds) -> None:
    status = ds.time_entries["approval_status"]
    share = (status != "approved").mean()
    assert 0.05 <= share <= 0.10
    assert set(status.unique().to_list()) == {"approved", "submitted", "unsubmitted"}
    te = ds.time_entries
    assert (
        te.filter(pl.col("approval_status") != "approved")["approved_by"].null_count()
        == te.filter(pl.col("approval_status") != "approved").height
    )


def test_internal_projects_and_non_billable_tasks_exist(ds) -> None:
    internal = ds.projects.filter(~pl.col("is_billable"))
    assert "Internal - Training" in internal["name"].to_list()
    te = ds.time_entries.join(ds.projects.select("project_id", "is_billable"), on="project_id")
    assert not te.filter(~pl.col("is_billable"))["billable"].any()
    assert 0.15 < (~te["billable"]).mean() < 0.45
    assert (
        te.filter(~pl.col("billable"))["billable_rate"].null_count() == te.filter(~pl.col("billable")).height
    )


def test_projects_come_with_and_without_codes(ds) -> None:
    codes = ds.projects["code"]
    assert codes.null_count() > 0 and codes.drop_nulls().len() > 0
    assert codes.drop_nulls().n_unique() == codes.drop_nulls().len()


def test_columns_have_the_documented_types(ds) -> None:
    te = ds.time_entries
    assert te.schema["hours"] == pl.Decimal(12, 4) and te.schema["rounded_hours"] == pl.Decimal(12, 4)
    assert te.schema["billable_rate"] == pl.Decimal(18, 4) and te.schema["cost_rate"] == pl.Decimal(18, 4)
    assert te.schema["created_at"] == pl.Datetime("us", "UTC")
    assert te["id"].n_unique() == te.height
    assert (te["rounded_hours"] >= te["hours"]).all()
    assert ds.users.schema["default_hourly_rate"] == pl.Decimal(18, 4)


# --- the mapping document and rates -----------------------------------------------------------


def test_mapping_validates_and_carries_the_harvest_csv_settings(mapping) -> None:
    assert mapping.entity("us").harvest_csv.date_format == "YYYY-MM-DD"
    assert mapping.entity("uk").harvest_csv.date_format == "YYYY-MM-DD"
    de = mapping.entity("de").harvest_csv
    assert (de.date_format, de.decimal_separator) == ("DD.MM.YYYY", ",")
    assert {t.name for t in mapping.tasks} == {t[0] for t in catalog.TASKS}
    assert all(t.item for t in mapping.tasks)
    coded = [p for p in mapping.projects if p.code]
    assert coded and len(coded) < len(mapping.projects)


def test_a_rate_card_changes_on_the_first_of_october(mapping) -> None:
    usd = sorted(
        (c for c in mapping.rate_cards if c.currency == "USD" and not (c.task or c.person or c.client)),
        key=lambda c: c.valid_from or date.min,
    )
    assert [(c.valid_from, c.valid_to, c.bill_rate) for c in usd] == [
        (None, date(2026, 9, 30), Decimal("150.00")),
        (date(2026, 10, 1), None, Decimal("165.00")),
    ]
    assert {c.currency for c in mapping.rate_cards if c.cost_rate and not c.person} == {"USD", "GBP", "EUR"}
    assert any(c.task for c in mapping.rate_cards) and any(c.person for c in mapping.rate_cards)


def _card_rate(mapping: MappingDocument, person: str, task: str, currency: str, day: date) -> Decimal:
    """The most specific bill-rate card valid on the day: person, then task, then the default."""

    def valid(c) -> bool:
        return (c.valid_from is None or c.valid_from <= day) and (c.valid_to is None or day <= c.valid_to)

    cards = [c for c in mapping.rate_cards if c.bill_rate is not None and c.currency == currency and valid(c)]
    for match in (lambda c: c.person == person, lambda c: c.task == task and not c.person):
        hit = [c for c in cards if match(c)]
        if hit:
            return hit[0].bill_rate  # type: ignore[return-value]
    (default,) = [c for c in cards if not (c.person or c.task or c.client or c.project)]
    return default.bill_rate  # type: ignore[return-value]


def test_every_bill_rate_is_what_the_rate_cards_give(ds, mapping) -> None:
    te = (
        ds.time_entries.filter(pl.col("billable"))
        .join(
            ds.users.select(
                "user_id", pl.concat_str("first_name", "last_name", separator=" ").alias("person")
            ),
            on="user_id",
        )
        .join(ds.tasks.select("task_id", pl.col("name").alias("task")), on="task_id")
    )
    combos = te.group_by("person", "task", "currency", "spent_date", "billable_rate").len()
    for person, task, currency, day, rate, _ in combos.iter_rows():
        assert rate == _card_rate(mapping, person, task, currency, day), (person, task, currency, day)
    non_jpy = te.filter(pl.col("currency") != "JPY")["billable_rate"]
    assert non_jpy.min() >= Decimal(95) and non_jpy.max() <= Decimal(250)


# --- the CSV rendering ------------------------------------------------------------------------


def test_one_harvest_csv_per_entity_and_month_in_the_entity_folder(demo) -> None:
    names = sorted(str(p.relative_to(demo.landing_dir)) for p in demo.csv_paths)
    assert names == [
        f"{e}/harvest_detailed_time_{e}_2026-{m}.csv" for e in ("de", "uk", "us") for m in ("09", "10")
    ]
    for path in demo.csv_paths:
        assert tuple(_read(path).columns) == HARVEST_COLUMNS


def test_german_exports_use_dd_mm_yyyy_and_decimal_commas(demo) -> None:
    de = _read(demo.landing_dir / "de" / "harvest_detailed_time_de_2026-09.csv")
    assert de["Date"].str.contains(r"^\d{2}\.09\.2026$").mean() > 0.99
    assert de["Hours"].str.contains(r"^-?\d+,\d{2}$").all()
    us = _read(demo.landing_dir / "us" / "harvest_detailed_time_us_2026-10.csv")
    assert us["Billable Amount"].str.contains(",").any()  # thousands separators
    assert us["Currency"].str.contains(" - ").all()


def test_malformed_rows_of_every_kind_are_injected_and_counted(demo) -> None:
    assert set(demo.malformed_by_kind) == set(MALFORMED_KINDS) == set(EXPECTED_REASON)
    assert all(n >= 1 for n in demo.malformed_by_kind.values()), demo.malformed_by_kind
    assert sum(demo.malformed_by_kind.values()) == demo.malformed_rows.height
    assert demo.rows_written == demo.entries + demo.malformed_by_kind["duplicate_row"]
    files = {p.name: _read(p) for p in demo.csv_paths}
    assert sum(f.height for f in files.values()) == demo.rows_written
    for name, row, kind, detail in demo.malformed_rows.iter_rows():
        value = files[name].row(row - 1, named=True)
        if kind == "negative_hours":
            assert value["Hours"].startswith("-")
        elif kind == "absurd_hours":
            assert value["Hours"] in ("30.00", "30,00")
        elif kind == "unknown_currency":
            assert value["Currency"] == catalog.UNKNOWN_CURRENCY
        elif kind == "unknown_client":
            assert value["Client"] == catalog.UNKNOWN_CLIENT
        elif kind == "missing_required":
            assert value["Task"] is None
        elif kind == "duplicate_row":
            src_name, src_row = detail.removeprefix("copy of ").split(" row ")
            assert files[src_name].row(int(src_row) - 1) == files[name].row(row - 1)


def test_injected_bad_dates_are_invalid_dates_in_the_entity_format(demo) -> None:
    bad = demo.malformed_rows.filter(pl.col("kind") == "bad_date")
    for name, row, *_ in bad.iter_rows():
        entity = name.split("_")[3]
        text = _read(demo.landing_dir / entity / name)["Date"][row - 1]
        fmt = "%d.%m.%Y" if entity == "de" else "%Y-%m-%d"
        assert pl.Series([text]).str.strptime(pl.Date, fmt, strict=False).null_count() == 1


def test_no_malformed_rows_when_the_rate_is_zero(tmp_path) -> None:
    files = write_demo(tmp_path, DemoConfig(seed=2, n_clients=6, n_people=6, malformed_rate=0.0))
    assert files.malformed_rows.height == 0 and files.rows_written == files.entries


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="before start"):
        generate(DemoConfig(start=date(2026, 10, 1), end=date(2026, 9, 1)))
    with pytest.raises(ValueError, match="no working days"):
        generate(DemoConfig(start=date(2026, 9, 5), end=date(2026, 9, 6)))


def test_duplicates_repeat_the_previous_export_or_the_file_itself_when_alone(tmp_path) -> None:
    one_month = DemoConfig(seed=9, start=date(2026, 9, 1), end=date(2026, 9, 30), n_clients=6, n_people=9)
    for cfg in (one_month, DemoConfig(seed=9, n_clients=6, n_people=9)):
        files = write_demo(tmp_path / str(cfg.end), DemoConfig(**{**cfg.__dict__, "malformed_rate": 0.03}))
        dups = files.malformed_rows.filter(pl.col("kind") == "duplicate_row")
        assert dups.height == files.malformed_by_kind["duplicate_row"] > 0
        frames = {p.name: _read(p) for p in files.csv_paths}
        for name, row, _, detail in dups.iter_rows():
            src_name, src_row = detail.removeprefix("copy of ").split(" row ")
            assert frames[src_name].row(int(src_row) - 1) == frames[name].row(row - 1)
            if cfg is one_month:
                assert src_name == name
            else:
                assert src_name.endswith("2026-09.csv") and name.endswith("2026-10.csv")


# --- billing cycles ------------------------------------------------------------------------------


def test_two_clients_are_billed_weekly_and_one_on_demand_with_a_request_mid_first_month(ds, mapping) -> None:
    """The median client by approved billable entries (among active external clients with work in
    the first month both up to the 15th and after it) is billed on demand, its two neighbours
    weekly; the demo's request bills it through 15 September."""
    cycles = {c.customer_ref: c.billing_cycle for c in mapping.clients}
    refs = dict(zip(ds.clients["client_id"].to_list(), ds.clients["customer_ref"].to_list(), strict=True))
    through = date(2026, 9, 15)
    stats: dict[str, list[object]] = {}
    for cid, day, billable, status in ds.time_entries.select(
        "client_id", "spent_date", "billable", "approval_status"
    ).iter_rows():
        if billable and status == "approved":
            entry = stats.setdefault(refs[cid], [0, False, False])
            entry[0] += 1
            entry[1] |= day <= through
            entry[2] |= through < day <= date(2026, 9, 30)
    external = {
        c.customer_ref
        for c in mapping.clients
        if not c.customer_ref.startswith("INTERNAL-") and c.source_id is not None
    }
    ranked = sorted(
        (n, ref) for ref, (n, before, after) in stats.items() if before and after and ref in external
    )
    mid = len(ranked) // 2
    assert cycles[ranked[mid][1]] == "on_demand"
    assert {ref for ref, c in cycles.items() if c == "weekly"} == {ranked[mid - 1][1], ranked[mid + 1][1]}
    assert sum(c != "monthly" for c in cycles.values()) == 3
    assert ds.on_demand_request == (ranked[mid][1], through)
    again = generate(DemoConfig(seed=42))
    assert again.mapping_yaml == ds.mapping_yaml and again.on_demand_request == ds.on_demand_request
    other = generate(SMALL)
    assert sorted(c.get("billing_cycle", "monthly") for c in yaml.safe_load(other.mapping_yaml)["clients"])[
        -3:
    ] == ["on_demand", "weekly", "weekly"]
