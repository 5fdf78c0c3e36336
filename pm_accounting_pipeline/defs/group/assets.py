"""Group assets per (month x entity): payments and realised FX, intercompany recharges, IAS 21
revaluation, shared-cost allocations, capex and depreciation, and the consolidation eliminations.

Each asset reads the lake, calls one pure core function per partition, checks every entry for
balance before anything is written, and writes its own files (writer names below), so re-running
a partition replaces exactly what that asset wrote there.
"""

import calendar
from datetime import date, timedelta

import dagster as dg
import polars as pl

from pm_accounting_pipeline.contracts.layers import JournalEntry, JournalLine, polars_schema
from pm_accounting_pipeline.core.allocation import allocate, read_costs, read_usage
from pm_accounting_pipeline.core.capex import run_capex
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.fx_providers import provider_for
from pm_accounting_pipeline.core.group_journal import Journal
from pm_accounting_pipeline.core.intercompany import (
    IC_ROLES,
    build_recharges,
    consolidated_trial_balance,
    eliminate,
)
from pm_accounting_pipeline.core.revaluation import read_payments, revalue, settle
from pm_accounting_pipeline.defs.billing.assets import BILLING_DOCUMENTS
from pm_accounting_pipeline.defs.ledger.assets import ACCRUALS, INVOICES
from pm_accounting_pipeline.defs.metadata import contract_check, md_table, reason_counts, totals_by_currency
from pm_accounting_pipeline.defs.partitions import PipelinePartitions, context_partitions
from pm_accounting_pipeline.defs.resources import PipelineResource
from pm_accounting_pipeline.defs.staging.assets import FX_BILLABLES
from pm_accounting_pipeline.lib.lake import Lake

PAYMENTS = dg.AssetKey(["ledger", "payments"])
RECHARGES = dg.AssetKey(["ledger", "intercompany_recharges"])
REVALUATION = dg.AssetKey(["ledger", "fx_revaluation"])
ALLOCATIONS = dg.AssetKey(["ledger", "allocations"])
CAPEX = dg.AssetKey(["ledger", "capex"])
ELIMINATIONS = dg.AssetKey(["ledger", "eliminations"])
GROUP_ASSET_KEYS = (PAYMENTS, RECHARGES, REVALUATION, ALLOCATIONS, CAPEX, ELIMINATIONS)

_COMMON = {"group_name": "group", "kinds": {"polars", "parquet"}, "owners": ["team:finance-data"]}


def month_range(month_key: str) -> tuple[date, date]:
    start = date.fromisoformat(month_key)
    return start, start.replace(day=calendar.monthrange(start.year, start.month)[1])


def _fx_dep() -> dg.AssetDep:
    """Daily fx_billables of every day of the month, same entity."""
    return dg.AssetDep(
        FX_BILLABLES,
        partition_mapping=dg.MultiPartitionMapping(
            {
                "date": dg.DimensionPartitionMapping("date", dg.TimeWindowPartitionMapping()),
                "entity": dg.DimensionPartitionMapping("entity", dg.IdentityPartitionMapping()),
            }
        ),
    )


def _fx_month(lake: Lake, entity: str, start: date, end: date) -> pl.DataFrame:
    days = [(entity, (start + timedelta(days=i)).isoformat()) for i in range((end - start).days + 1)]
    return lake.read("staging.fx_billables", days, writer="fx")


def _write_journal(
    lake: Lake, journal: Journal, wanted: list[tuple[str, str]], writer: str, key: pl.Expr
) -> None:
    """Check, then write entries and lines, keyed by `key` (an expression over the frames)."""
    assert_balanced(journal.lines)
    for table, frame in (
        ("ledger.journal_entries", journal.entries),
        ("ledger.journal_lines", journal.lines),
    ):
        lake.write_partitions(table, frame, wanted, writer, frame.with_columns(key.alias("k"))["k"])


def _write(
    lake: Lake, table: str, frame: pl.DataFrame, wanted: list[tuple[str, str]], writer: str, key: pl.Expr
) -> None:
    schema = polars_schema(table)
    frame = frame.select(schema.names()).cast(dict(schema))
    lake.write_partitions(table, frame, wanted, writer, frame.with_columns(key.alias("k"))["k"])


def _journal_results(journal: Journal, prefix: str = "") -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=f"{prefix}journal_balanced",
            passed=True,
            metadata={"entries": journal.entries.height, "lines": journal.lines.height},
        ),
        contract_check(f"{prefix}entries_contract", JournalEntry, journal.entries),
        contract_check(f"{prefix}lines_contract", JournalLine, journal.lines),
    ]


def _journal_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "journal_balanced",
            asset=key,
            blocking=True,
            description="every entry balances per entity and currency in transaction, functional and "
            "reporting currency; checked before anything is written",
        ),
        dg.AssetCheckSpec("entries_contract", asset=key, blocking=True),
        dg.AssetCheckSpec("lines_contract", asset=key, blocking=True),
    ]


def _table_result(name: str, table: str, frame: pl.DataFrame) -> dg.AssetCheckResult:
    from pm_accounting_pipeline.contracts.layers import TABLES

    return contract_check(
        name, TABLES[table], frame.select(polars_schema(table).names()).cast(dict(polars_schema(table)))
    )


def _key_of(month_key: str) -> pl.Expr:
    return pl.lit(month_key)


def build_group_assets(parts: PipelinePartitions) -> list[dg.AssetsDefinition]:
    monthly = parts.monthly
    entities = list(parts.entities)

    @dg.asset(
        key=PAYMENTS,
        deps=[INVOICES, BILLING_DOCUMENTS],
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_journal_specs(PAYMENTS),
            dg.AssetCheckSpec("payments_contract", asset=PAYMENTS, blocking=True),
        ],
        tags={"layer": "ledger"},
        **_COMMON,
    )
    def payments(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Customer payments from `<data>/landing/<entity>/payments/*.csv` applied to the receivable
        documents billing issued (invoices, supplementary and retainer invoices; ledger/invoices for
        months billing has not run for): a
        payment entry (Dr cash / Cr receivable at the payment date's rate) and, for foreign-currency
        invoices, a realised FX gain/loss entry for the difference to the invoice's historical
        amount (pro rata for partial payments). Unusable rows go to staging.quarantine."""
        mapping, lake = pipeline.mapping(), pipeline.lake()
        provider = provider_for(mapping, pipeline.paths.data_dir)
        invoices_all = lake.read("ledger.invoices")
        lines_all = lake.read("ledger.journal_lines")
        # Billing documents (retainer and supplementary invoices too) are what payments settle.
        documents_all = lake.read("ledger.billing_documents")
        settlements_all = lake.read("ledger.settlements")
        out: dict[str, list[pl.DataFrame]] = {"pay": [], "q": [], "links": []}
        journal = Journal.empty()
        wanted = context_partitions(context)
        for entity, month_key in wanted:
            start, end = month_range(month_key)
            inp = read_payments(pipeline.paths.landing_for(entity) / "payments", entity, start)
            res = settle(
                inp,
                invoices_all,
                lines_all.filter((pl.col("entity") == entity) & (pl.col("entry_type") == "invoice")),
                mapping,
                entity,
                provider,
                start,
                end,
                documents=documents_all,
                settlements=settlements_all,
            )
            journal = journal.concat(res.journal)
            out["pay"].append(res.payments)
            out["q"].append(res.quarantine)
            out["links"].append(res.links)
        month_of = pl.col("posting_date").dt.truncate("1mo").cast(pl.String)
        _write_journal(lake, journal, wanted, "payment", month_of)
        pays = pl.concat(out["pay"])
        _write(
            lake,
            "ledger.payments",
            pays,
            wanted,
            "payment",
            pl.col("payment_date").dt.truncate("1mo").cast(pl.String),
        )
        q = pl.concat(out["q"])
        _write(
            lake,
            "staging.quarantine",
            q,
            wanted,
            "payment",
            pl.col("partition_date").dt.truncate("1mo").cast(pl.String),
        )
        links = pl.concat(out["links"])
        link_month = links.join(journal.entries.select("entry_id", "posting_date"), on="entry_id", how="left")
        lake.write_partitions(
            "ledger.entry_links", links, wanted, "payment", link_month.select(month_of.alias("k"))["k"]
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": pays.height,
                "payments": pays.height,
                "quarantined_by_reason": reason_counts(q),
                "paid_by_currency": totals_by_currency(pays, "currency", "amount_minor"),
                "realised_fx_functional": totals_by_currency(
                    pays, "functional_currency", "realised_functional_minor"
                ),
            },
            check_results=[
                *_journal_results(journal),
                _table_result("payments_contract", "ledger.payments", pays),
            ],
        )

    @dg.asset(
        key=RECHARGES,
        deps=[_fx_dep(), ACCRUALS],
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_journal_specs(RECHARGES),
            dg.AssetCheckSpec("recharges_contract", asset=RECHARGES, blocking=True),
            dg.AssetCheckSpec(
                "both_sides_equal",
                asset=RECHARGES,
                blocking=True,
                description="per pair of entities, intercompany revenue equals intercompany cost and "
                "the receivable equals the payable in the reporting currency",
            ),
        ],
        tags={"layer": "ledger"},
        **_COMMON,
    )
    def intercompany_recharges(
        context: dg.AssetExecutionContext, pipeline: PipelineResource
    ) -> dg.MaterializeResult:
        """Month-end intercompany recharges for work billed by this entity and done by people
        employed elsewhere (mapping `group.people`), at cost, cost-plus or transfer rate per
        `group.intercompany`: both sides' entries, the cost moved to the employer, and the
        counterparty of every intercompany line in ledger.intercompany_links."""
        mapping, lake = pipeline.mapping(), pipeline.lake()
        provider = provider_for(mapping, pipeline.paths.data_dir)
        wanted = context_partitions(context)
        all_recharges, all_journal, all_links = [], Journal.empty(), []
        for recipient, month_key in wanted:
            start, end = month_range(month_key)
            res = build_recharges(
                _fx_month(lake, recipient, start, end), mapping, recipient, start, end, provider
            )
            # Both sides are written under the recipient's writer, into every entity's folder.
            targets = [(e, month_key) for e in entities]
            writer = f"ic_{recipient}"
            _write_journal(lake, res.journal, targets, writer, _key_of(month_key))
            _write(lake, "ledger.intercompany_links", res.ic_links, targets, writer, _key_of(month_key))
            _write(
                lake,
                "ledger.intercompany_recharges",
                res.recharges,
                [(recipient, month_key)],
                writer,
                _key_of(month_key),
            )
            all_recharges.append(res.recharges)
            all_journal = all_journal.concat(res.journal)
            all_links.append(res.ic_links)
        recharges = pl.concat(all_recharges)
        sides = _side_totals(all_journal.lines)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": recharges.height,
                "recharges": recharges.height,
                "recharged_by_currency": totals_by_currency(recharges, "currency", "recharge_minor"),
                "preview": dg.MetadataValue.md(
                    md_table(
                        recharges.select(
                            "period",
                            "provider",
                            "recipient",
                            "customer_job",
                            "basis",
                            "currency",
                            "recharge_minor",
                        )
                    )
                ),
            },
            check_results=[
                *_journal_results(all_journal),
                _table_result("recharges_contract", "ledger.intercompany_recharges", recharges),
                dg.AssetCheckResult(
                    check_name="both_sides_equal",
                    passed=sides.filter(pl.col("difference") != 0).is_empty(),
                    metadata={"pairs": dg.MetadataValue.md(md_table(sides))},
                ),
            ],
        )

    @dg.asset(
        key=REVALUATION,
        deps=[INVOICES, PAYMENTS, RECHARGES],
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_journal_specs(REVALUATION),
            dg.AssetCheckSpec("revaluations_contract", asset=REVALUATION, blocking=True),
            dg.AssetCheckSpec(
                "reversed_next_period",
                asset=REVALUATION,
                blocking=True,
                description="every revaluation entry has a reversal dated the first day of the next period",
            ),
        ],
        tags={"layer": "ledger"},
        **_COMMON,
    )
    def fx_revaluation(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """IAS 21 period-end revaluation: open foreign-currency receivables and intercompany
        balances retranslated at the closing rate, unrealised FX gain/loss booked at month end and
        reversed on the first day of the next month; one row per item in ledger.fx_revaluations."""
        mapping, lake = pipeline.mapping(), pipeline.lake()
        provider = provider_for(mapping, pipeline.paths.data_dir)
        wanted = context_partitions(context)
        lines_all = lake.read("ledger.journal_lines")
        ic_all = lake.read("ledger.intercompany_links")
        journal, revals, links, ics = Journal.empty(), [], [], []
        for entity, month_key in wanted:
            _, end = month_range(month_key)
            res = revalue(
                lines_all.filter(pl.col("entity") == entity), ic_all, mapping, entity, end, provider
            )
            journal = journal.concat(res.journal)
            revals.append(res.revaluations)
            links.append(res.links)
            ics.append(res.ic_links)
        # Reversals are dated next month but belong to this run's partition: key by the period.
        period_of = (pl.col("posting_date") - pl.duration(days=1)).dt.truncate("1mo").cast(pl.String)
        key = (
            pl.when(pl.col("entry_type") == "fx_revaluation_reversal")
            .then(period_of)
            .otherwise(pl.col("posting_date").dt.truncate("1mo").cast(pl.String))
        )
        _write_journal(lake, journal, wanted, "revaluation", key)
        rv = pl.concat(revals)
        _write(
            lake,
            "ledger.fx_revaluations",
            rv,
            wanted,
            "revaluation",
            pl.col("period_end").dt.truncate("1mo").cast(pl.String),
        )
        lk = pl.concat(links)
        lk_keys = lk.join(
            journal.entries.select("entry_id", "posting_date"), on="entry_id", how="left"
        ).select(period_of.alias("k"))["k"]
        lake.write_partitions("ledger.entry_links", lk, wanted, "revaluation", lk_keys)
        ic = pl.concat(ics)
        ic_keys = ic.join(
            journal.lines.select("line_id", "posting_date", "entry_type"), on="line_id", how="left"
        )
        lake.write_partitions(
            "ledger.intercompany_links", ic, wanted, "revaluation", ic_keys.select(key.alias("k"))["k"]
        )
        reval_entries = journal.entries.filter(pl.col("entry_type") == "fx_revaluation")
        unreversed = reval_entries.join(lk, left_on="entry_id", right_on="linked_entry_id", how="anti")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rv.height,
                "open_items": rv.height,
                "unrealised_functional": totals_by_currency(
                    rv, "functional_currency", "unrealised_functional_minor"
                ),
                "unrealised_reporting": totals_by_currency(
                    rv, "reporting_currency", "unrealised_reporting_minor"
                ),
                "preview": dg.MetadataValue.md(
                    md_table(
                        rv.select(
                            "entity",
                            "account_role",
                            "currency",
                            "customer_ref",
                            "open_minor",
                            "unrealised_functional_minor",
                        )
                    )
                ),
            },
            check_results=[
                *_journal_results(journal),
                _table_result("revaluations_contract", "ledger.fx_revaluations", rv),
                dg.AssetCheckResult(
                    check_name="reversed_next_period",
                    passed=unreversed.is_empty(),
                    metadata={
                        "revaluation_entries": reval_entries.height,
                        "without_reversal": unreversed.height,
                    },
                ),
            ],
        )

    @dg.asset(
        key=ALLOCATIONS,
        deps=[_fx_dep()],
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_journal_specs(ALLOCATIONS),
            dg.AssetCheckSpec("allocations_contract", asset=ALLOCATIONS, blocking=True),
            dg.AssetCheckSpec(
                "allocated_exactly",
                asset=ALLOCATIONS,
                blocking=True,
                description="each cost row's active allocations sum exactly to its amount (to the minor unit)",
            ),
        ],
        tags={"layer": "ledger"},
        **_COMMON,
    )
    def allocations(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Shared costs (`<data>/landing/<entity>/overheads/*.csv`) allocated to projects by the
        pools' drivers, exact to the cent by largest remainder; the methodology is on every row.
        Re-running a period whose rules (allocations.version / pools) or inputs changed reverses
        the active allocation and posts the new one, linked (ledger.entry_links)."""
        mapping, lake = pipeline.mapping(), pipeline.lake()
        provider = provider_for(mapping, pipeline.paths.data_dir)
        wanted = context_partitions(context)
        existing_all = lake.read("ledger.allocations", wanted, writer="allocation")
        entries_all = lake.read("ledger.journal_entries", wanted, writer="allocation")
        lines_all = lake.read("ledger.journal_lines", wanted, writer="allocation")
        links_all = lake.read("ledger.entry_links", wanted, writer="allocation")
        rows, journal, links, qs, changed = [], Journal.empty(), [], [], []
        for entity, month_key in wanted:
            start, end = month_range(month_key)
            landing = pipeline.paths.landing_for(entity)
            existing = existing_all.filter((pl.col("entity") == entity) & (pl.col("period") == start))
            ids = set(existing["entry_id"]) | set(existing["reversal_entry_id"].drop_nulls())
            prior = Journal(
                entries_all.filter(pl.col("entry_id").is_in(sorted(ids))),
                lines_all.filter(pl.col("entry_id").is_in(sorted(ids))),
                Journal.empty().keys,
            )
            res = allocate(
                read_costs(landing / "overheads", mapping, entity, start),
                _fx_month(lake, entity, start, end),
                read_usage(landing / "usage"),
                mapping,
                entity,
                start,
                end,
                existing,
                prior,
                links_all.filter(pl.col("entity") == entity).filter(
                    pl.col("entry_id").is_in(sorted(ids)) | pl.col("linked_entry_id").is_in(sorted(ids))
                ),
                provider,
            )
            rows.append(res.allocations)
            journal = journal.concat(res.journal)
            links.append(res.links)
            qs.append(res.quarantine)
            if res.changed:
                changed.append(f"{entity}|{month_key} -> generation {res.generation}")
        month_of = pl.col("posting_date").dt.truncate("1mo").cast(pl.String)
        _write_journal(lake, journal, wanted, "allocation", month_of)
        alloc = pl.concat(rows)
        _write(lake, "ledger.allocations", alloc, wanted, "allocation", pl.col("period").cast(pl.String))
        lk = pl.concat(links)
        lk_keys = lk.join(journal.entries.select("entry_id", "posting_date"), on="entry_id", how="left")
        lake.write_partitions(
            "ledger.entry_links", lk, wanted, "allocation", lk_keys.select(month_of.alias("k"))["k"]
        )
        q = pl.concat(qs)
        _write(
            lake,
            "staging.quarantine",
            q,
            wanted,
            "allocation",
            pl.col("partition_date").dt.truncate("1mo").cast(pl.String),
        )
        active = alloc.filter(pl.col("status") == "active")
        sums = active.group_by("entity", "period", "source_file", "source_row").agg(
            pl.col("source_amount_minor").first(), pl.col("allocated_minor").sum()
        )
        off = sums.filter(pl.col("source_amount_minor") != pl.col("allocated_minor"))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": alloc.height,
                "active_rows": active.height,
                "reposted": ", ".join(changed) or "none",
                "allocated_by_pool": {
                    p: str(v)
                    for p, v in active.group_by("pool")
                    .agg(pl.col("allocated_minor").sum())
                    .sort("pool")
                    .iter_rows()
                },
                "quarantined_by_reason": reason_counts(q),
            },
            check_results=[
                *_journal_results(journal),
                _table_result("allocations_contract", "ledger.allocations", alloc),
                dg.AssetCheckResult(
                    check_name="allocated_exactly",
                    passed=off.is_empty(),
                    metadata={"cost_rows": sums.height, "rows_off": dg.MetadataValue.md(md_table(off))},
                ),
            ],
        )

    @dg.asset(
        key=CAPEX,
        deps=[_fx_dep(), ALLOCATIONS],
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_journal_specs(CAPEX),
            dg.AssetCheckSpec("schedule_contract", asset=CAPEX, blocking=True),
            dg.AssetCheckSpec(
                "schedule_sums_to_cost",
                asset=CAPEX,
                blocking=True,
                description="each asset's depreciation over its useful life sums exactly to its cost",
            ),
        ],
        tags={"layer": "ledger"},
        **_COMMON,
    )
    def capex(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Capex vs opex: the month's cost of capitalisable projects/tasks (mapping `capex`) moved
        to capitalised_costs, and straight-line depreciation of every asset in service; the full
        schedule of the month's new assets in ledger.depreciation_schedule."""
        mapping, lake = pipeline.mapping(), pipeline.lake()
        wanted = sorted(context_partitions(context), key=lambda p: (p[0], p[1]))
        run_months = {(e, date.fromisoformat(k)) for e, k in wanted}
        base = lake.read("ledger.journal_lines").filter(pl.col("account_role") == "capitalised_costs")
        # This run recomputes its months' capitalisations; earlier runs' files for them are ignored.
        redo = pl.DataFrame(sorted(run_months), schema={"entity": pl.String, "_m": pl.Date}, orient="row")
        caps = (
            base.filter(pl.col("entry_type") == "capitalisation")
            .with_columns(_m=pl.col("posting_date").dt.truncate("1mo"))
            .join(redo, on=["entity", "_m"], how="anti")
            .drop("_m")
        )
        base = pl.concat([base.filter(pl.col("entry_type") != "capitalisation"), caps])
        journal, scheds = Journal.empty(), []
        for entity, month_key in wanted:
            start, end = month_range(month_key)
            res = run_capex(
                _fx_month(lake, entity, start, end),
                base.filter(pl.col("entity") == entity),
                mapping,
                entity,
                start,
                end,
            )
            base = pl.concat([base, res.journal.lines.filter(pl.col("account_role") == "capitalised_costs")])
            journal = journal.concat(res.journal)
            scheds.append(res.schedule)
        _write_journal(
            lake, journal, wanted, "capex", pl.col("posting_date").dt.truncate("1mo").cast(pl.String)
        )
        sched = pl.concat(scheds)
        _write(
            lake,
            "ledger.depreciation_schedule",
            sched,
            wanted,
            "capex",
            pl.col("capitalised_in").cast(pl.String),
        )
        totals = sched.group_by("asset_id").agg(
            pl.col("cost_minor").first(), pl.col("depreciation_minor").sum()
        )
        off = totals.filter(pl.col("cost_minor") != pl.col("depreciation_minor"))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sched.height,
                "new_assets": totals.height,
                "entries_by_type": {
                    t: int(n)
                    for t, n in journal.entries.group_by("entry_type").len().sort("entry_type").iter_rows()
                },
            },
            check_results=[
                *_journal_results(journal),
                _table_result("schedule_contract", "ledger.depreciation_schedule", sched),
                dg.AssetCheckResult(
                    check_name="schedule_sums_to_cost",
                    passed=off.is_empty(),
                    metadata={"assets_off": off.height},
                ),
            ],
        )

    @dg.asset(
        key=ELIMINATIONS,
        deps=[RECHARGES, REVALUATION],
        partitions_def=monthly,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            *_journal_specs(ELIMINATIONS),
            dg.AssetCheckSpec(
                "intercompany_nets_to_zero",
                asset=ELIMINATIONS,
                description="over all entities and eliminations of the months run, intercompany revenue, "
                "cost, receivables and payables are zero in the reporting currency (warns while a "
                "counterparty's side has not been eliminated yet)",
            ),
        ],
        tags={"layer": "ledger"},
        **_COMMON,
    )
    def eliminations(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
        """Consolidation eliminations (IFRS 10 B86) of this entity's side of its intercompany
        lines of the month, in the reporting currency, in the consolidation entity's books
        (ledger.elimination_entries / elimination_lines, never posted to a legal entity)."""
        mapping, lake = pipeline.mapping(), pipeline.lake()
        group = mapping.group.consolidation_entity
        wanted = context_partitions(context)
        lines_all = lake.read("ledger.journal_lines")
        ic_all = lake.read("ledger.intercompany_links")
        journal = Journal.empty()
        for entity, month_key in wanted:
            start, end = month_range(month_key)
            part = eliminate(lines_all, ic_all, mapping, entity, start, end)
            assert_balanced(part.lines)
            target = [(group, month_key)]
            for table, frame in (
                ("ledger.elimination_entries", part.entries),
                ("ledger.elimination_lines", part.lines),
            ):
                lake.write_partitions(
                    table,
                    frame,
                    target,
                    f"elim_{entity}",
                    pl.Series([month_key] * frame.height, dtype=pl.String),
                )
            journal = journal.concat(part)
        months = sorted({k for _, k in wanted})
        elim_all = lake.read("ledger.elimination_lines")
        in_months = pl.col("posting_date").dt.truncate("1mo").cast(pl.String).is_in(months)
        tb = consolidated_trial_balance(lines_all.filter(in_months), elim_all.filter(in_months))
        ic = tb.filter(pl.col("account_role").is_in(IC_ROLES))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": journal.lines.height,
                "elimination_entries": journal.entries.height,
                "consolidated_intercompany": dg.MetadataValue.md(md_table(ic)),
            },
            check_results=[
                *_journal_results(journal),
                dg.AssetCheckResult(
                    check_name="intercompany_nets_to_zero",
                    passed=ic.filter(pl.col("balance_minor") != 0).is_empty(),
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"balances": dg.MetadataValue.md(md_table(ic))},
                ),
            ],
        )

    return [payments, intercompany_recharges, fx_revaluation, allocations, capex, eliminations]


def _side_totals(lines: pl.DataFrame) -> pl.DataFrame:
    """Reporting totals of the recharge lines per role, to compare the two sides."""
    if lines.height == 0:
        return pl.DataFrame(schema={"pair": pl.String, "difference": pl.Decimal(18, 3)})
    ic = lines.filter(pl.col("entry_type") == "ic_recharge")
    by = ic.group_by("document_id").agg(
        (
            (pl.col("reporting_credit") - pl.col("reporting_debit"))
            .filter(pl.col("account_role") == "intercompany_revenue")
            .sum()
            - (pl.col("reporting_debit") - pl.col("reporting_credit"))
            .filter(pl.col("account_role") == "intercompany_cost")
            .sum()
        ).alias("difference")
    )
    return by.rename({"document_id": "pair"}).sort("pair")
