"""One billing run: the documents an entity issues for one month, their settlements and journal.

`bill_period` takes what the source says now (FX-enriched billables), what `ledger/invoices`
booked for the month, and what billing issued before (every other month's partition, and this
month's own earlier run, which is kept unchanged), and returns the month's partition:

1. items of the month never billed go on the client's invoice for their invoice period (one per
   client, currency and period: the month, or ISO weeks split at month end, `core.billing.cycles`;
   its id is the `ledger.invoices` id, so it finalises that invoice); if that invoice was already
   issued, on a supplementary invoice. Work of on-demand clients waits in unbilled receivables
   until a billing request of the month covers it (one invoice per request, issued on its
   `through` date, with every unbilled item dated up to then);
2. changes to billed items (`core.billing.register`) are charged or credited: increases (late or
   added work, more hours) on the client's invoice of this run (or a supplementary one);
   decreases as a credit memo per corrected invoice (`billing.corrections: credit_memo`) or on the
   client's invoice of this run (`next_invoice`; a credit memo when there is none, or when the
   invoice would go negative). Never by changing an issued document;
3. retainer invoices fall due (`retainers`), manual credit memos (`credits/*.csv`) are issued;
4. discounts, tax and totals (`core.billing.documents`), retainer drawdowns (oldest balance
   first, up to the invoice's total), numbering from the entity's sequences (invoices and
   retainer invoices: `invoice_number_format`; credit memos: `billing.credit_memo_number_format`;
   per month, continuing after what this month already issued, ordered by issue date);
5. settlements: retainer drawdowns, each credit memo applied to the invoice it corrects (up to
   what is still open after payments), refunds (`refunds/*.csv`);
6. the credits status of source entries, and the journal (`core.billing.entries`).

Billing as of a date (`BillingInputs.through` before the month end, an interim run) issues only
documents whose issue date is on or before it: invoice periods that have ended (weekly), requests,
retainer occurrences, manual credits and refunds dated up to it; monthly invoices wait for the
month end. Changes to billed work (step 2) wait for the month close. A weekly invoice issued before
`ledger/invoices` invoiced the month records that invoice's id as `base_invoice_id` (the same id),
so the close finalises it like any other. The month close (`through` None) is the run as it always
was; what earlier runs issued is kept and numbered after (`_number`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

import polars as pl

from pm_accounting_pipeline.config.schema import MappingDocument
from pm_accounting_pipeline.contracts.layers import polars_schema
from pm_accounting_pipeline.core.billing import documents as compose
from pm_accounting_pipeline.core.billing.amounts import prorate, rate_e6
from pm_accounting_pipeline.core.billing.cycles import assign_requests, cycle_of, month_periods, with_periods
from pm_accounting_pipeline.core.billing.entries import build_entries, provider_fraction
from pm_accounting_pipeline.core.billing.inputs import Requests
from pm_accounting_pipeline.core.billing.register import (
    ITEM_KEY,
    ITEM_SCHEMA,
    Changes,
    detect_changes,
    items_from_fx,
)
from pm_accounting_pipeline.core.billing.state import BillingState
from pm_accounting_pipeline.core.fx import RateProvider
from pm_accounting_pipeline.core.ids import stable_id
from pm_accounting_pipeline.core.ledger import LedgerBatch, money_expr
from pm_accounting_pipeline.core.money import minor_digits
from pm_accounting_pipeline.core.rating import ZERO_TAX_PROFILES
from pm_accounting_pipeline.core.rounding import scaled_to_decimal_expr

PAYMENT_COLUMNS = {"invoice_id": pl.String, "payment_date": pl.Date, "amount_minor": pl.Int64}


@dataclass(frozen=True)
class BillingInputs:
    mapping: MappingDocument
    entity: str
    period_start: date
    period_end: date
    fx: pl.DataFrame
    base_invoices: pl.DataFrame
    base_lines: pl.DataFrame
    prior: BillingState
    frozen: BillingState
    provider: RateProvider
    payments: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PAYMENT_COLUMNS))
    credits: Requests | None = None
    refunds: Requests | None = None
    billing_requests: Requests | None = None
    # Billing as of a date: issue only documents whose issue date is on or before `through`
    # (None = the month close, `period_end`); see `bill_period`.
    through: date | None = None


@dataclass(frozen=True)
class BillingResult:
    """The partition's state (kept + new), its journal, and what changed against ledger/invoices."""

    state: BillingState
    ledger: LedgerBatch
    new_documents: int
    drift: pl.DataFrame


@dataclass
class _Head:
    document_id: str
    document_type: str
    customer_ref: str
    client_name: str
    currency: str
    issue_date: date
    tax_profile: str
    pricing: str
    tax_level: str
    tax_rate_e6: int
    corrects_document_id: str | None = None
    reason: str | None = None
    base_invoice_id: str | None = None
    order: int = 0
    period_start: date | None = None
    period_end: date | None = None


def bill_period(inp: BillingInputs) -> BillingResult:
    mapping, entity = inp.mapping, inp.entity
    if inp.period_end < inp.period_start:
        raise ValueError(f"period_end {inp.period_end} is before period_start {inp.period_start}")
    mode = mapping.rounding.money_mode
    ent = mapping.entity(entity)
    m0, m1 = inp.period_start, inp.period_end
    # t: the last issue date of this run; an interim run (t before the month end) issues the
    # periods that have ended, requests, retainers and credits dated up to t, and leaves changes to
    # billed work (corrections, late work of billed months) to the month close.
    t = m1 if inp.through is None else inp.through
    if not m0 <= t <= m1:
        raise ValueError(f"through {t} is outside the billed period {m0} .. {m1}")
    interim = t < m1
    clients = {c.customer_ref: c for c in mapping.clients}
    known = inp.prior.concat(inp.frozen)
    existing = set(known.documents["document_id"].to_list())
    fx = inp.fx.filter(pl.col("entity") == entity)
    currencies = set(fx["currency"].unique().to_list()) | {c.currency for c in clients.values()}
    currencies |= {ent.functional_currency, mapping.reporting_currency}
    currencies |= set(known.documents["currency"].unique().to_list())
    digits = {c: minor_digits(c) for c in currencies}

    current = items_from_fx(fx)
    changes = detect_changes(known.sources, current, m0, m1, digits, mode)
    if interim:
        changes = Changes(new=changes.new, changes=changes.changes.head(0))
    heads: dict[str, _Head] = {}
    assigned: list[pl.DataFrame] = []
    client_doc: dict[tuple[str, str], str] = {}

    def tax_of(ref: str) -> tuple[str, int]:
        profile = clients[ref].tax_profile if ref in clients else "standard"
        return profile, 0 if profile in ZERO_TAX_PROFILES else rate_e6(ent.tax.rate)

    period_doc: dict[tuple[str, str, date, date], str] = {}
    cycles = cycle_of(mapping)

    def invoice_for(ref: str, cur: str, name: str, p0: date, p1: date, reason: str | None = None) -> str:
        """The client's invoice of this run for the period [p0, p1]: the period's invoice, or a
        supplement if it was issued. The client's latest one is its invoice of the run."""
        if (ref, cur, p0, p1) in period_doc:
            return period_doc[(ref, cur, p0, p1)]
        doc_id = stable_id("invoice", entity, ref, cur, p0, p1)
        base = doc_id
        k = 0
        while doc_id in existing or doc_id in heads:
            k += 1
            doc_id = stable_id("invoice", entity, ref, cur, p0, p1, "supplement", k)
        profile, rate = tax_of(ref)
        heads[doc_id] = _Head(
            doc_id,
            "invoice",
            ref,
            name,
            cur,
            p1,
            profile,
            ent.tax.pricing,
            mapping.billing.tax_level,
            rate,
            reason=reason,
            base_invoice_id=base if doc_id == base else None,
            order=1 if doc_id == base else 2,
            period_start=p0,
            period_end=p1,
        )
        period_doc[(ref, cur, p0, p1)] = doc_id
        latest = client_doc.get((ref, cur))
        if latest is None or (heads[latest].period_end or m0) <= p1:
            client_doc[(ref, cur)] = doc_id
        return doc_id

    def run_invoice(ref: str, cur: str, name: str) -> str | None:
        """The client's invoice of this run (its latest), else one for the last period of the
        month of its cycle; none for an on-demand client without a request this run."""
        if (ref, cur) in client_doc:
            return client_doc[(ref, cur)]
        periods = month_periods(cycles.get(ref, "monthly"), m0, m1)
        if not periods:
            return None
        return invoice_for(ref, cur, name, *periods[-1])

    names = dict(fx.select("customer_ref", "client_name").unique("customer_ref", keep="first").iter_rows())
    names.update({ref: c.name for ref, c in clients.items()})

    # 1. new work of the month, by invoice period; on-demand work (new or late) by request
    cf = changes.changes.filter(pl.col("change") != "rate_frozen")
    on_demand = pl.col("customer_ref").is_in([r for r, c in cycles.items() if c == "on_demand"])
    fulfilled = {
        str(r).removeprefix("on-demand request ")
        for r in known.documents["reason"].to_list()
        if r is not None and str(r).startswith("on-demand request ")
    }
    od_requests, rejections = _on_demand_requests(
        inp.billing_requests, cycles, fulfilled, mapping, entity, m0, t
    )
    # On-demand work never billed, of this month or earlier (with an empty register the earlier
    # months' items are not reported as late).
    od_pool = (
        current.filter(on_demand & (pl.col("work_date") <= m1))
        .join(known.sources.select(ITEM_KEY).unique(), on=ITEM_KEY, how="anti")
        .with_columns(
            change=pl.when(pl.col("work_date") < m0).then(pl.lit("late")).otherwise(pl.lit("billed"))
        )
    )
    requested = assign_requests(
        od_pool,
        od_requests,
        m0,
        t,
    )
    cf = cf.filter(~(on_demand & (pl.col("change") == "late")))
    dated = with_periods(changes.new.filter(~on_demand), mapping, m0, m1).filter(pl.col("period_end") <= t)
    for (p1, ref, cur, p0), group in dated.sort("period_end", "customer_ref", "currency").group_by(
        ["period_end", "customer_ref", "currency", "period_start"], maintain_order=True
    ):
        doc_id = invoice_for(str(ref), str(cur), names.get(str(ref), str(ref)), p0, p1)  # type: ignore[arg-type]
        assigned.append(
            group.drop("billing_cycle", "period_start", "period_end").with_columns(
                document_id=pl.lit(doc_id), _role=pl.lit("time")
            )
        )
    for (p1, ref, cur, p0, rid), group in requested.sort("period_end", "customer_ref", "currency").group_by(
        ["period_end", "customer_ref", "currency", "period_start", "request_id"], maintain_order=True
    ):
        name = names.get(str(ref), str(ref))
        doc_id = invoice_for(str(ref), str(cur), name, p0, p1, f"on-demand request {rid}")  # type: ignore[arg-type]
        assigned.append(
            group.select(ITEM_SCHEMA.names()).with_columns(document_id=pl.lit(doc_id), _role=pl.lit("time"))
        )

    # 2. changes to billed work (increases of on-demand clients wait for their next request)
    frozen_rate = changes.changes.filter(pl.col("change") == "rate_frozen")
    increase = (pl.col("charge_minor") > 0) | ((pl.col("charge_minor") == 0) & (pl.col("billed_e4") >= 0))
    for (ref, cur), group in cf.filter(increase).group_by(["customer_ref", "currency"], maintain_order=True):
        run_doc = run_invoice(str(ref), str(cur), names.get(str(ref), str(ref)))
        if run_doc is not None:
            assigned.append(group.with_columns(document_id=pl.lit(run_doc), _role=pl.lit("adjustment")))
    decreases = cf.filter(~increase)
    orig_docs = {r["document_id"]: r for r in known.documents.iter_rows(named=True)}
    numbers = {k: v["document_number"] for k, v in orig_docs.items()}
    cm_count: dict[str, int] = defaultdict(int)

    def credit_memo_for(orig_id: str, reason: str) -> str:
        orig = orig_docs[orig_id]
        cm_count[orig_id] += 1
        doc_id = stable_id("credit_memo", entity, orig_id, m0, cm_count[orig_id])
        while doc_id in existing or doc_id in heads:
            cm_count[orig_id] += 1
            doc_id = stable_id("credit_memo", entity, orig_id, m0, cm_count[orig_id])
        heads[doc_id] = _Head(
            doc_id,
            "credit_memo",
            orig["customer_ref"],
            orig["client_name"],
            orig["currency"],
            m1,
            orig["tax_profile"],
            orig["pricing"],
            orig["tax_level"],
            rate_e6(orig["tax_rate"]),
            corrects_document_id=orig_id,
            reason=reason,
            order=4,
            period_start=m0,
            period_end=m1,
        )
        return doc_id

    pending_decreases = decreases
    if mapping.billing.corrections == "next_invoice":
        docs_of = pl.DataFrame(
            [(ref, cur, doc) for (ref, cur), doc in client_doc.items()],
            schema={"customer_ref": pl.String, "currency": pl.String, "_doc": pl.String},
            orient="row",
        )
        keyed = decreases.join(docs_of, on=["customer_ref", "currency"], how="left", maintain_order="left")
        on_invoice = keyed.filter(pl.col("_doc").is_not_null())
        if on_invoice.height:
            assigned.append(
                on_invoice.with_columns(document_id=pl.col("_doc"), _role=pl.lit("adjustment")).drop("_doc")
            )
        pending_decreases = keyed.filter(pl.col("_doc").is_null()).drop("_doc")
    for (orig_id,), group in pending_decreases.group_by(["orig_document_id"], maintain_order=True):
        doc_id = credit_memo_for(str(orig_id), "source_change")
        assigned.append(group.with_columns(document_id=pl.lit(doc_id), _role=pl.lit("adjustment")))

    # 3. retainer invoices and manual credits
    extra_rows: list[dict[str, object]] = []
    movements_new: list[dict[str, object]] = []
    for r in sorted(mapping.retainers, key=lambda r: r.id):
        client = next(c for c in mapping.clients if c.name == r.client)
        if client.entity != entity:
            continue
        for occurrence in r.occurrences(m0, t):
            doc_id = stable_id("retainer_invoice", entity, r.id, occurrence)
            if doc_id in existing:
                continue
            heads[doc_id] = _Head(
                doc_id,
                "retainer_invoice",
                client.customer_ref,
                client.name,
                client.currency,
                occurrence,
                client.tax_profile,
                ent.tax.pricing,
                mapping.billing.tax_level,
                0,
                reason=f"retainer {r.id}",
                order=0,
                period_start=m0,
                period_end=t,
            )
            amount = int(r.amount.scaleb(minor_digits(client.currency)))
            extra_rows.append(
                compose._line(
                    doc_id,
                    "retainer",
                    f"Retainer {r.id}",
                    r.description or f"Retainer {r.id} ({occurrence:%B %Y})",
                    mapping.account(entity, "retainer_liability"),
                    amount,
                    r.id,
                )
            )
            f_fn = provider_fraction(inp.provider, client.currency, ent.functional_currency, occurrence)
            f_rp = provider_fraction(inp.provider, client.currency, mapping.reporting_currency, occurrence)
            movements_new.append(
                {
                    "customer_ref": client.customer_ref,
                    "client_name": client.name,
                    "currency": client.currency,
                    "retainer_id": r.id,
                    "movement_date": occurrence,
                    "kind": "issued",
                    "document_id": doc_id,
                    "amount_minor": amount,
                    "functional_minor": f_fn.convert(amount, mode),
                    "reporting_minor": f_rp.convert(amount, mode),
                }
            )

    credits = inp.credits.rows if inp.credits is not None else None
    all_lines_known = known.lines
    credit_status_manual: list[pl.DataFrame] = []
    if credits is not None and credits.height:
        by_number = {r["document_number"]: r for r in known.documents.iter_rows(named=True)}
        prior_credit_lines = _lines_sum_by_corrected(known)
        for req in (
            credits.filter(pl.col("date").is_between(m0, t)).sort("date", "credit_id").iter_rows(named=True)
        ):
            doc_id = stable_id("credit_memo", entity, "manual", req["credit_id"])
            if doc_id in existing:
                continue
            orig = by_number.get(req["document_number"])
            problem = None
            if orig is None or orig["issue_date"] > req["date"]:
                problem = (
                    "unknown_document",
                    f"no document {req['document_number']!r} issued on or before {req['date']}",
                )
            elif orig["document_type"] != "invoice":
                problem = (
                    "not_creditable",
                    f"{req['document_number']} is a {orig['document_type']}; only invoices are credited",
                )
            if problem is None:
                lines_total = int(
                    orig["subtotal_minor"] if orig["pricing"] == "exclusive" else orig["total_minor"]
                )
                remaining = lines_total + prior_credit_lines.get(orig["document_id"], 0)
                amount = _minor(req["amount"], orig["currency"]) if req["amount"] is not None else remaining
                if amount is None:
                    problem = (
                        "bad_rate",
                        f"amount {req['amount']!r} has more decimals than {orig['currency']} allows",
                    )
                elif amount <= 0 or amount > remaining:
                    problem = (
                        "over_credit",
                        f"credit {req['amount'] or 'of everything'} exceeds the {remaining} minor units still creditable on {req['document_number']}",
                    )
            if problem is not None:
                rejections.append(
                    {**_rejection_base(req, "credits"), "reason": problem[0], "detail": problem[1]}
                )
                continue
            assert orig is not None and amount is not None
            heads[doc_id] = _Head(
                doc_id,
                "credit_memo",
                orig["customer_ref"],
                orig["client_name"],
                orig["currency"],
                req["date"],
                orig["tax_profile"],
                orig["pricing"],
                orig["tax_level"],
                rate_e6(orig["tax_rate"]),
                corrects_document_id=orig["document_id"],
                reason=f"manual {req['credit_id']}: {req['reason']}",
                order=3,
                period_start=m0,
                period_end=t,
            )
            prior_credit_lines[orig["document_id"]] = prior_credit_lines.get(orig["document_id"], 0) - amount
            full = req["amount"] is None and remaining == lines_total
            if full:
                for ln in (
                    all_lines_known.filter(pl.col("document_id") == orig["document_id"])
                    .sort("line_no")
                    .iter_rows(named=True)
                ):
                    row = compose._line(
                        doc_id,
                        "credit",
                        ln["item"],
                        f"Credit: {ln['description']}",
                        ln["account"],
                        -int(ln["amount_minor"]),
                        f"{ln['line_no']:06d}",
                        ln["customer_job"],
                        ln["project_code"],
                    )
                    extra_rows.append(row)
                credit_status_manual.append(
                    known.sources.filter(
                        (pl.col("document_id") == orig["document_id"]) & (pl.col("line_no") >= 1)
                    ).with_columns(_credit_doc=pl.lit(doc_id), _orig=pl.lit(orig["document_number"]))
                )
            else:
                extra_rows.append(
                    compose._line(
                        doc_id,
                        "credit",
                        "Credit",
                        f"Credit: {req['reason']}",
                        mapping.account(entity, "service_revenue"),
                        -amount,
                        req["credit_id"],
                    )
                )

    # 4. compose: lines, discounts, tax, totals (twice when next-invoice credits would make an invoice negative)
    lines, items, docs = _compose(heads, assigned, extra_rows, known, numbers, mapping, entity, m0, m1)
    if mapping.billing.corrections == "next_invoice":
        negative = set(
            docs.filter((pl.col("document_type") == "invoice") & (pl.col("total_minor") < 0))[
                "document_id"
            ].to_list()
        )
        if negative:
            moved = [
                a.filter(
                    pl.col("document_id").is_in(list(negative))
                    & (pl.col("_role") == "adjustment")
                    & ~increase
                )
                for a in assigned
            ]
            assigned = [
                a.filter(
                    ~(
                        pl.col("document_id").is_in(list(negative))
                        & (pl.col("_role") == "adjustment")
                        & ~increase
                    )
                )
                for a in assigned
            ]
            for group in moved:
                for (orig_id,), g in group.group_by(["orig_document_id"], maintain_order=True):
                    cm = credit_memo_for(str(orig_id), "source_change")
                    assigned.append(g.with_columns(document_id=pl.lit(cm)))
            remaining_docs = {a["document_id"][0] for a in assigned if a.height} | {
                r["document_id"] for r in extra_rows
            }
            heads = {k: v for k, v in heads.items() if k in remaining_docs or v.document_type != "invoice"}
            lines, items, docs = _compose(
                heads, assigned, extra_rows, known, numbers, mapping, entity, m0, m1
            )

    # numbering
    docs = _number(
        docs,
        inp.frozen.documents,
        inp.base_invoices,
        ent.invoice_number_format,
        mapping.billing.credit_memo_number_format,
        entity,
        m0,
        use_base=not interim,
    )
    new_numbers = dict(docs.select("document_id", "document_number").iter_rows())
    numbers.update(new_numbers)

    # 5. drawdowns and settlements
    docs, movements_new, settlements_new = _drawdowns(docs, known, movements_new, mapping, entity, mode)
    all_docs = pl.concat(
        [
            known.documents.select(
                "document_id",
                "document_number",
                "document_type",
                "customer_ref",
                "currency",
                "issue_date",
                "total_minor",
                "corrects_document_id",
            ),
            docs.select(
                "document_id",
                "document_number",
                "document_type",
                "customer_ref",
                "currency",
                "issue_date",
                "total_minor",
                "corrects_document_id",
            ),
        ],
        how="vertical_relaxed",
    )
    payments = _payments(inp.payments)
    settlements_new += _credit_applications(docs, all_docs, known.settlements, settlements_new, payments)
    refund_rows, refund_rejections = _refunds(
        inp.refunds, all_docs, known.settlements, settlements_new, payments, entity, m0, t
    )
    settlements_new += refund_rows
    rejections += refund_rejections

    # 6. register rows, credit status, documents in contract shape, journal
    sources_new, credited = _register_rows(items, lines, frozen_rate, mapping, entity, m0)
    # An interim run issues weekly invoices before ledger/invoices invoices their month: each one
    # finalises the ledger/invoices invoice of its period (same id) once the month is invoiced.
    expected_base = {
        h.document_id
        for h in heads.values()
        if interim
        and h.document_type == "invoice"
        and h.base_invoice_id == h.document_id
        and cycles.get(h.customer_ref, "monthly") != "on_demand"
    }
    state_new = _state(
        docs,
        lines,
        sources_new,
        credited,
        settlements_new,
        movements_new,
        rejections,
        inp,
        m0,
        numbers,
        credit_status_manual,
        currencies,
        expected_base,
    )
    # Issued documents and their settlements are kept; rejected requests are judged afresh each run.
    kept = BillingState(**{**inp.frozen.__dict__, "rejections": inp.frozen.rejections.head(0)})
    partition = kept.concat(state_new)
    all_documents = pl.concat(
        [
            known.documents,
            partition.documents.join(
                inp.frozen.documents.select("document_id"), on="document_id", how="anti"
            ),
        ],
        how="vertical",
    )
    ledger, ar = build_entries(
        partition,
        all_documents,
        inp.base_invoices,
        inp.base_lines,
        mapping,
        entity,
        m1,
        inp.provider,
        t if interim else None,
    )
    frozen_ids = set(inp.frozen.documents["document_id"].to_list())
    ar_frame = pl.DataFrame(
        [(k, v[0], v[1]) for k, v in ar.items() if k not in frozen_ids],
        schema={"document_id": pl.String, "_fn": pl.Int64, "_rp": pl.Int64},
        orient="row",
    )
    new_docs = (
        state_new.documents.join(ar_frame, on="document_id", how="left")
        .with_columns(
            ar_functional_minor=pl.col("_fn").fill_null(0), ar_reporting_minor=pl.col("_rp").fill_null(0)
        )
        .drop("_fn", "_rp")
    )
    state_new = BillingState(
        **{
            **state_new.__dict__,
            "documents": new_docs.select(polars_schema("ledger.billing_documents").names()),
        }
    )
    partition = kept.concat(state_new).shaped()
    return BillingResult(
        state=partition,
        ledger=ledger,
        new_documents=state_new.documents.height,
        drift=_drift(
            inp.base_invoices.filter(pl.col("issue_date") <= t)
            if inp.base_invoices.height
            else inp.base_invoices,
            partition.documents,
        ),
    )


def _on_demand_requests(
    reqs: Requests | None,
    cycles: dict[str, str],
    fulfilled: set[str],
    mapping: MappingDocument,
    entity: str,
    m0: date,
    m1: date,
) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    """The month's billing requests not yet fulfilled, and rejections for requests naming a
    customer that is not an on-demand client of the entity."""
    if reqs is None:
        return pl.DataFrame(schema={"request_id": pl.String, "customer_ref": pl.String, "date": pl.Date}), []
    rows = reqs.rows.filter(pl.col("date").is_between(m0, m1) & ~pl.col("request_id").is_in(list(fulfilled)))
    of_entity = {c.customer_ref for c in mapping.clients if c.entity == entity}
    ok = pl.col("customer_ref").is_in([r for r in of_entity if cycles.get(r) == "on_demand"])
    rejected = [
        {
            **_rejection_base(req, "billing_requests"),
            "reason": "unknown_client" if req["customer_ref"] not in of_entity else "not_on_demand",
            "detail": f"{req['customer_ref']!r} is not a client of {entity}"
            if req["customer_ref"] not in of_entity
            else f"{req['customer_ref']} is billed {cycles[req['customer_ref']]}, not on demand",
        }
        for req in rows.filter(~ok).iter_rows(named=True)
    ]
    return rows.filter(ok).select("request_id", "customer_ref", "date"), rejected


def _minor(text: str, currency: str) -> int | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    scaled = value.scaleb(minor_digits(currency))
    return int(scaled) if scaled == scaled.to_integral_value() else None


def _rejection_base(req: dict[str, object], kind: str) -> dict[str, object]:
    return {
        "input": kind,
        "source_file": req["source_file"],
        "source_row": req["source_row"],
        "record": req["record"],
    }


def _lines_sum_by_corrected(known: BillingState) -> dict[str, int]:
    """Sum of the line amounts of credit memos per corrected document (negative)."""
    cms = known.documents.filter(pl.col("document_type") == "credit_memo").select(
        "corrects_document_id", "subtotal_minor", "total_minor", "pricing"
    )
    out: dict[str, int] = defaultdict(int)
    for orig, sub, tot, pricing in cms.iter_rows():
        out[orig] += int(sub if pricing == "exclusive" else tot)
    return dict(out)


def _compose(
    heads: dict[str, _Head],
    assigned: list[pl.DataFrame],
    extra_rows: list[dict[str, object]],
    known: BillingState,
    numbers: dict[str, str],
    mapping: MappingDocument,
    entity: str,
    m0: date,
    m1: date,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    head_schema = {
        "document_id": pl.String,
        "document_type": pl.String,
        "customer_ref": pl.String,
        "client_name": pl.String,
        "currency": pl.String,
        "issue_date": pl.Date,
        "tax_profile": pl.String,
        "pricing": pl.String,
        "tax_level": pl.String,
        "tax_rate_e6": pl.Int64,
        "corrects_document_id": pl.String,
        "reason": pl.String,
        "base_invoice_id": pl.String,
        "order": pl.Int64,
        "period_start": pl.Date,
        "period_end": pl.Date,
    }
    heads_frame = pl.DataFrame([h.__dict__ for h in heads.values()], schema=head_schema, orient="row")
    heads_frame = heads_frame.with_columns(
        period_start=pl.col("period_start").fill_null(m0), period_end=pl.col("period_end").fill_null(m1)
    )
    items = (
        pl.concat([a.select(*ITEM_SCHEMA.names(), "document_id", "_role") for a in assigned], how="vertical")
        if assigned
        else pl.DataFrame(schema={**dict(ITEM_SCHEMA), "document_id": pl.String, "_role": pl.String})
    )
    items = items.filter(pl.col("document_id").is_in(list(heads)))
    time_items = items.filter(pl.col("_role") == "time")
    adj_items = items.filter(pl.col("_role") == "adjustment")
    time = (
        compose.time_lines(time_items, mapping, entity)
        if time_items.height
        else pl.DataFrame(schema=compose.LINE_SCHEMA)
    )
    adjustments = compose.adjustment_lines(adj_items, numbers, mapping, entity)
    # New work and late work take the invoice's discounts; corrections carry their original's.
    late_items = adj_items.filter(pl.col("orig_document_id").is_null())
    discountable = pl.concat([time_items, late_items], how="vertical")
    base_of = dict(
        pl.concat(
            [
                time.select("document_id", "amount_minor"),
                late_items.select("document_id", pl.col("charge_minor").alias("amount_minor")),
            ],
            how="vertical",
        )
        .group_by("document_id")
        .agg(pl.col("amount_minor").sum())
        .iter_rows()
    )
    discount = compose.discount_lines(heads_frame, discountable, base_of, mapping, entity)
    corr_discount = compose.correction_discount_lines(adj_items, known.documents, numbers, mapping, entity)
    extra = compose.extra_lines([r for r in extra_rows if r["document_id"] in heads])
    lines = pl.concat([time, adjustments, discount, corr_discount, extra], how="vertical")
    lines = compose.number_lines(lines)
    taxed, docs = compose.totals(lines, heads_frame, mapping.rounding.money_mode)
    return taxed, items, docs


def _number(
    docs: pl.DataFrame,
    frozen_docs: pl.DataFrame,
    base_invoices: pl.DataFrame,
    invoice_format: str,
    credit_format: str,
    entity: str,
    month: date,
    use_base: bool = True,
) -> pl.DataFrame:
    """Numbers from the entity's sequences for the month. An invoice that finalises a
    `ledger.invoices` invoice keeps that invoice's number (so both tables agree) unless the month
    already issued it to another document; every other document takes the next number after
    everything the month used, in issue-date order.

    Runs as of a date: an interim run (`use_base=False`: `ledger.invoices` numbers the whole month,
    which has not ended) numbers its documents after everything the month used, in issue-date
    order. When an earlier run of the month gave a `ledger.invoices` number to another document, or
    keeping them would leave a gap, a later run numbers its documents after everything the month
    used instead: first those finalising a `ledger.invoices` invoice, in its number order, then the
    others in issue-date order. Numbers follow the issue runs."""

    def fmt(pattern: str, seq: int) -> str:
        return pattern.format(
            entity=entity, period=f"{month:%Y%m}", year=month.year, month=month.month, seq=seq
        )

    family = (
        pl.when(pl.col("document_type") == "credit_memo")
        .then(pl.lit("credit_memo"))
        .otherwise(pl.lit("invoice"))
    )
    taken = {"invoice": set(), "credit_memo": set()}
    for fam, seq in frozen_docs.with_columns(_family=family).select("_family", "sequence").iter_rows():
        taken[fam].add(int(seq))
    base_seq: dict[str, int] = {}
    if base_invoices.height and use_base:
        by_number = {fmt(invoice_format, k): k for k in range(1, base_invoices.height + 1)}
        for invoice_id, number in base_invoices.select("invoice_id", "invoice_number").iter_rows():
            if number in by_number:
                base_seq[invoice_id] = by_number[number]
    docs = docs.with_columns(_family=family).sort(
        "_family", "issue_date", "order", "customer_ref", "currency", "document_id"
    )
    seqs: dict[str, int] = {}
    last = max(taken["invoice"], default=0)
    collided = False
    for fam, doc_id in docs.select("_family", "document_id").iter_rows():
        if fam == "invoice" and doc_id in base_seq and base_seq[doc_id] not in taken["invoice"]:
            seqs[doc_id] = base_seq[doc_id]
            taken["invoice"].add(base_seq[doc_id])
        elif fam == "invoice" and doc_id in base_seq:
            collided = True
    floor = {
        "invoice": max([*base_seq.values(), *taken["invoice"]], default=0),
        "credit_memo": max(taken["credit_memo"], default=0),
    }
    for fam, doc_id in docs.select("_family", "document_id").iter_rows():
        if doc_id not in seqs:
            floor[fam] += 1
            seqs[doc_id] = floor[fam]
    # A later run of the month whose ledger.invoices numbers were given to other documents by an
    # earlier run, or would leave a gap after the month's last number: continue after it.
    fresh = sorted(seqs[d] for f, d in docs.select("_family", "document_id").iter_rows() if f == "invoice")
    above = [n for n in fresh if n > last]
    if last and (collided or above != list(range(last + 1, last + 1 + len(above)))):
        ordered = docs.with_columns(
            _base=pl.col("document_id").replace_strict(base_seq, default=None, return_dtype=pl.Int64)
        ).sort(
            "_family",
            "_base",
            "issue_date",
            "order",
            "customer_ref",
            "currency",
            "document_id",
            nulls_last=True,
        )
        for fam, doc_id in ordered.select("_family", "document_id").iter_rows():
            if fam == "invoice":
                last += 1
                seqs[doc_id] = last
    return docs.with_columns(
        sequence=pl.col("document_id").replace_strict(seqs, return_dtype=pl.Int64),
        document_number=pl.col("document_id").replace_strict(
            {
                doc_id: fmt(credit_format if fam == "credit_memo" else invoice_format, seqs[doc_id])
                for fam, doc_id in docs.select("_family", "document_id").iter_rows()
            },
            return_dtype=pl.String,
        ),
    ).drop("_family")


def _drawdowns(
    docs: pl.DataFrame,
    known: BillingState,
    movements_new: list[dict[str, object]],
    mapping: MappingDocument,
    entity: str,
    mode: object,
) -> tuple[pl.DataFrame, list[dict[str, object]], list[dict[str, object]]]:
    """Apply retainer balances to the new invoices (issue order) and record the movements."""
    numbers = dict(docs.select("document_id", "document_number").iter_rows())
    for m in movements_new:
        m["document_number"] = numbers[m["document_id"]]
    events: dict[tuple[str, str], list[tuple[date, int, int, int]]] = defaultdict(list)
    for r in known.retainer_movements.iter_rows(named=True):
        events[(r["customer_ref"], r["currency"])].append(
            (r["movement_date"], r["amount_minor"], r["functional_minor"], r["reporting_minor"])
        )
    for m in movements_new:
        events[(m["customer_ref"], m["currency"])].append(
            (m["movement_date"], m["amount_minor"], m["functional_minor"], m["reporting_minor"])
        )  # type: ignore[index,arg-type]
    applied: dict[str, int] = {}
    settlements: list[dict[str, object]] = []
    if not events:
        return docs.with_columns(retainer_applied_minor=pl.lit(0, dtype=pl.Int64)), movements_new, settlements
    drawn: dict[tuple[str, str], list[tuple[date, int, int, int]]] = defaultdict(list)
    for d in (
        docs.filter((pl.col("document_type") == "invoice") & (pl.col("total_minor") > 0))
        .sort("issue_date", "document_number")
        .iter_rows(named=True)
    ):
        key = (d["customer_ref"], d["currency"])
        if key not in events:
            continue
        history = [e for e in events[key] if e[0] <= d["issue_date"]] + drawn[key]
        tx = sum(e[1] for e in history)
        fn = sum(e[2] for e in history)
        rp = sum(e[3] for e in history)
        amount = min(tx, int(d["total_minor"]))
        if amount <= 0:
            continue
        take_fn = prorate(amount, tx, fn, mapping.rounding.money_mode)
        take_rp = prorate(amount, tx, rp, mapping.rounding.money_mode)
        drawn[key].append((d["issue_date"], -amount, -take_fn, -take_rp))
        applied[d["document_id"]] = amount
        movements_new.append(
            {
                "customer_ref": d["customer_ref"],
                "client_name": d["client_name"],
                "currency": d["currency"],
                "retainer_id": None,
                "movement_date": d["issue_date"],
                "kind": "drawn",
                "document_id": d["document_id"],
                "document_number": d["document_number"],
                "amount_minor": -amount,
                "functional_minor": -take_fn,
                "reporting_minor": -take_rp,
            }
        )
        settlements.append(
            {
                "settlement_id": stable_id("settlement", entity, "retainer_applied", d["document_id"]),
                "document_id": d["document_id"],
                "document_number": d["document_number"],
                "customer_ref": d["customer_ref"],
                "currency": d["currency"],
                "settlement_date": d["issue_date"],
                "kind": "retainer_applied",
                "amount_minor": -amount,
                "counter_document_id": None,
                "counter_document_number": None,
                "reference": None,
            }
        )
    docs = docs.with_columns(
        retainer_applied_minor=pl.col("document_id").replace_strict(applied, default=0, return_dtype=pl.Int64)
    )
    return docs, movements_new, settlements


def _payments(payments: pl.DataFrame) -> pl.DataFrame:
    if payments.height == 0 or not set(PAYMENT_COLUMNS) <= set(payments.columns):
        return pl.DataFrame(schema=PAYMENT_COLUMNS)
    return payments.select(list(PAYMENT_COLUMNS)).cast(PAYMENT_COLUMNS)


def _open(doc: dict[str, object], settled: list[dict[str, object]], payments: pl.DataFrame, on: date) -> int:
    total = int(doc["total_minor"])  # type: ignore[arg-type]
    total += sum(
        int(s["amount_minor"])
        for s in settled
        if s["document_id"] == doc["document_id"] and s["settlement_date"] <= on
    )  # type: ignore[operator]
    paid = payments.filter((pl.col("invoice_id") == doc["document_id"]) & (pl.col("payment_date") <= on))[
        "amount_minor"
    ].sum()
    return total - int(paid or 0)


def _credit_applications(
    docs: pl.DataFrame,
    all_docs: pl.DataFrame,
    known_settlements: pl.DataFrame,
    settlements_new: list[dict[str, object]],
    payments: pl.DataFrame,
) -> list[dict[str, object]]:
    by_id = {r["document_id"]: r for r in all_docs.iter_rows(named=True)}
    settled = [*known_settlements.iter_rows(named=True), *settlements_new]
    out: list[dict[str, object]] = []
    for cm in (
        docs.filter(pl.col("document_type") == "credit_memo")
        .sort("issue_date", "document_number")
        .iter_rows(named=True)
    ):
        orig = by_id.get(cm["corrects_document_id"])
        if orig is None:
            continue
        open_amount = _open(orig, settled + out, payments, cm["issue_date"])
        amount = min(-int(cm["total_minor"]), max(open_amount, 0))
        if amount <= 0:
            continue
        common = {
            "customer_ref": cm["customer_ref"],
            "currency": cm["currency"],
            "settlement_date": cm["issue_date"],
            "kind": "credit_applied",
            "reference": None,
        }
        out.append(
            {
                **common,
                "settlement_id": stable_id(
                    "settlement", "credit_applied", orig["document_id"], cm["document_id"]
                ),
                "document_id": orig["document_id"],
                "document_number": orig["document_number"],
                "amount_minor": -amount,
                "counter_document_id": cm["document_id"],
                "counter_document_number": cm["document_number"],
            }
        )
        out.append(
            {
                **common,
                "settlement_id": stable_id(
                    "settlement", "credit_applied", cm["document_id"], orig["document_id"]
                ),
                "document_id": cm["document_id"],
                "document_number": cm["document_number"],
                "amount_minor": amount,
                "counter_document_id": orig["document_id"],
                "counter_document_number": orig["document_number"],
            }
        )
    return out


def _refunds(
    refunds: Requests | None,
    all_docs: pl.DataFrame,
    known_settlements: pl.DataFrame,
    settlements_new: list[dict[str, object]],
    payments: pl.DataFrame,
    entity: str,
    m0: date,
    m1: date,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    if refunds is None or refunds.rows.height == 0:
        return [], []
    by_number = {r["document_number"]: r for r in all_docs.iter_rows(named=True)}
    known_ids = set(known_settlements["settlement_id"].to_list())
    settled = [*known_settlements.iter_rows(named=True), *settlements_new]
    out: list[dict[str, object]] = []
    rejected: list[dict[str, object]] = []
    for req in (
        refunds.rows.filter(pl.col("date").is_between(m0, m1)).sort("date", "refund_id").iter_rows(named=True)
    ):
        settlement_id = stable_id("settlement", entity, "refund", req["refund_id"])
        if settlement_id in known_ids:
            continue
        doc = by_number.get(req["document_number"])
        problem = None
        amount = None
        if doc is None or doc["issue_date"] > req["date"]:
            problem = (
                "unknown_document",
                f"no document {req['document_number']!r} issued on or before {req['date']}",
            )
        elif doc["currency"] != req["currency"]:
            problem = (
                "currency_mismatch",
                f"refund in {req['currency']} for {req['document_number']} in {doc['currency']}",
            )
        else:
            amount = _minor(req["amount"], doc["currency"])
            if amount is None or amount <= 0:
                problem = (
                    "bad_rate",
                    f"amount {req['amount']!r} is not a positive amount in {doc['currency']}",
                )
            else:
                balance = _open(doc, settled + out, payments, req["date"])
                if balance >= 0 or amount > -balance:
                    problem = (
                        "over_refund",
                        f"refund {req['amount']} exceeds the credit balance of {req['document_number']} ({-min(balance, 0)} minor units)",
                    )
        if problem is not None:
            rejected.append({**_rejection_base(req, "refunds"), "reason": problem[0], "detail": problem[1]})
            continue
        assert doc is not None
        out.append(
            {
                "settlement_id": settlement_id,
                "document_id": doc["document_id"],
                "document_number": doc["document_number"],
                "customer_ref": doc["customer_ref"],
                "currency": doc["currency"],
                "settlement_date": req["date"],
                "kind": "refund",
                "amount_minor": amount,
                "counter_document_id": None,
                "counter_document_number": None,
                "reference": req["reference"] or req["refund_id"],
            }
        )
    return out, rejected


def _register_rows(
    items: pl.DataFrame,
    lines: pl.DataFrame,
    frozen_rate: pl.DataFrame,
    mapping: MappingDocument,
    entity: str,
    m0: date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The register rows of this run (contract shape), and the credited ones with their original document."""
    schema = polars_schema("ledger.billing_line_sources")
    key = compose.BILL_BY_KEYS[mapping.billing.bill_by]
    time = items.filter(pl.col("_role") == "time").with_columns(
        _group=compose._group_label(key), _type=pl.lit("time")
    )
    adj = items.filter(pl.col("_role") == "adjustment").with_columns(
        _group=compose._group_label(compose.ADJUSTMENT_KEY), _type=pl.lit("adjustment")
    )
    line_no = lines.select("document_id", pl.col("line_type").alias("_type"), "_group", "line_no")
    billed = pl.concat([time, adj], how="vertical").join(
        line_no, on=["document_id", "_type", "_group"], how="left"
    )
    if billed.filter(pl.col("line_no").is_null()).height:
        raise AssertionError("billed items without a document line")
    rated = frozen_rate.with_columns(
        document_id=pl.col("orig_document_id"), line_no=pl.lit(0, dtype=pl.Int64)
    )
    both = pl.concat(
        [
            billed.select(*ITEM_SCHEMA.names(), "document_id", "line_no"),
            rated.select(*ITEM_SCHEMA.names(), "document_id", "line_no"),
        ],
        how="vertical",
    )
    both = both.with_columns(
        entity=pl.lit(entity),
        issued_in=pl.lit(m0),
        billed_hours=scaled_to_decimal_expr(pl.col("billed_e4"), 4, 12),
        bill_rate=scaled_to_decimal_expr(pl.col("rate_e4"), 4, 18),
    )
    credited = both.filter((pl.col("line_no") >= 1) & (pl.col("charge_minor") < 0))
    return both.select(schema.names()).cast(dict(schema)), credited


def _state(
    docs: pl.DataFrame,
    lines: pl.DataFrame,
    sources: pl.DataFrame,
    credited: pl.DataFrame,
    settlements: list[dict[str, object]],
    movements: list[dict[str, object]],
    rejections: list[dict[str, object]],
    inp: BillingInputs,
    m0: date,
    numbers: dict[str, str],
    manual_credits: list[pl.DataFrame],
    currencies: set[str],
    expected_base: set[str] | None = None,
) -> BillingState:
    mapping, entity = inp.mapping, inp.entity
    ent = mapping.entity(entity)
    terms = {c.customer_ref: c.payment_terms_days for c in mapping.clients}
    notes = mapping.billing.tax_notes
    doc_schema = polars_schema("ledger.billing_documents")
    m1 = inp.period_end
    base_ids = set(inp.base_invoices["invoice_id"].to_list()) if inp.base_invoices.height else set()
    base_ids |= expected_base or set()
    docs = docs.with_columns(
        entity=pl.lit(entity),
        due_date=pl.col("issue_date")
        + pl.duration(days=pl.col("customer_ref").replace_strict(terms, default=30, return_dtype=pl.Int64)),
        issued_in=pl.lit(m0),
        corrects_document_number=pl.col("corrects_document_id").replace_strict(
            numbers, default=None, return_dtype=pl.String
        ),
        base_invoice_id=pl.when(pl.col("document_id").is_in(list(base_ids))).then(pl.col("document_id")),
        tax_rate=scaled_to_decimal_expr(pl.col("tax_rate_e6"), 6, 8),
        amount_due_minor=pl.col("total_minor") - pl.col("retainer_applied_minor"),
        functional_currency=pl.lit(ent.functional_currency),
        reporting_currency=pl.lit(mapping.reporting_currency),
        ar_functional_minor=pl.lit(0, dtype=pl.Int64),
        ar_reporting_minor=pl.lit(0, dtype=pl.Int64),
        note=pl.col("tax_profile").replace_strict(notes, default=None, return_dtype=pl.String),
        rule_version=pl.lit(mapping.rule_version),
    ).with_columns(
        subtotal=money_expr("subtotal_minor", "currency", currencies),
        tax=money_expr("tax_minor", "currency", currencies),
        total=money_expr("total_minor", "currency", currencies),
        amount_due=money_expr("amount_due_minor", "currency", currencies),
    )
    docs = docs.select(doc_schema.names()).cast(dict(doc_schema))

    line_schema = polars_schema("ledger.billing_document_lines")
    # Each line's approvals, from the source entries behind it.
    approvals = sources.group_by("document_id", "line_no").agg(
        pl.col("approved_by").drop_nulls().unique().sort().str.join("; ").replace("", None),
        pl.col("approved_at").max(),
    )
    lines_out = (
        lines.join(docs.select("document_id", "currency"), on="document_id", how="inner")
        .join(approvals, on=["document_id", "line_no"], how="left")
        .with_columns(
            entity=pl.lit(entity),
            quantity=scaled_to_decimal_expr(pl.col("quantity_e4"), 4, 12),
            unit_price=scaled_to_decimal_expr(pl.col("unit_price_e4"), 4, 18),
            amount=money_expr("amount_minor", "currency", currencies),
            tax_minor=pl.col("line_tax_minor"),
        )
        .select(line_schema.names())
        .cast(dict(line_schema))
        .sort("document_id", "line_no")
    )

    st_schema = polars_schema("ledger.settlements")
    settle = (
        pl.DataFrame(
            settlements,
            schema={k: v for k, v in st_schema.items() if k not in ("entity", "amount", "issued_in")},
            orient="row",
        )
        if settlements
        else pl.DataFrame(
            schema={k: v for k, v in st_schema.items() if k not in ("entity", "amount", "issued_in")}
        )
    )
    settle = (
        settle.with_columns(
            entity=pl.lit(entity),
            issued_in=pl.lit(m0),
            amount=money_expr("amount_minor", "currency", currencies),
        )
        .select(st_schema.names())
        .cast(dict(st_schema))
    )

    mv_schema = polars_schema("ledger.retainer_movements")
    mv_cols = {k: v for k, v in mv_schema.items() if k not in ("entity", "amount", "issued_in")}
    mv = pl.DataFrame(movements, schema=mv_cols, orient="row") if movements else pl.DataFrame(schema=mv_cols)
    mv = (
        mv.with_columns(
            entity=pl.lit(entity),
            issued_in=pl.lit(m0),
            amount=money_expr("amount_minor", "currency", currencies),
        )
        .select(mv_schema.names())
        .cast(dict(mv_schema))
    )

    cs = _credit_status(credited, docs, numbers, manual_credits, entity, m0)

    rj_schema = polars_schema("ledger.billing_rejections")
    parts = []
    for r in (inp.credits, inp.refunds, inp.billing_requests):
        if r is not None and r.rejected.height:
            in_month = r.rejected.filter(
                pl.col("date").is_null() | pl.col("date").is_between(m0, inp.through or m1)
            )
            parts.append(in_month.drop("date"))
    if rejections:
        parts.append(
            pl.DataFrame(
                rejections,
                schema={
                    "input": pl.String,
                    "source_file": pl.String,
                    "source_row": pl.Int64,
                    "record": pl.String,
                    "reason": pl.String,
                    "detail": pl.String,
                },
                orient="row",
            )
        )
    rejected = (
        pl.concat(
            [p.select("input", "source_file", "source_row", "reason", "detail", "record") for p in parts],
            how="vertical",
        )
        if parts
        else pl.DataFrame(schema={k: v for k, v in rj_schema.items() if k not in ("entity", "issued_in")})
    )
    rejected = (
        rejected.with_columns(entity=pl.lit(entity), issued_in=pl.lit(m0))
        .select(rj_schema.names())
        .cast(dict(rj_schema))
    )
    return BillingState(
        documents=docs,
        lines=lines_out,
        sources=sources,
        settlements=settle,
        retainer_movements=mv,
        credit_status=cs,
        rejections=rejected,
    )


def _credit_status(
    credited: pl.DataFrame,
    docs: pl.DataFrame,
    numbers: dict[str, str],
    manual_credits: list[pl.DataFrame],
    entity: str,
    m0: date,
) -> pl.DataFrame:
    """Source entries credited by this run: by corrections (with the document they were billed on)
    and by full manual credits of an invoice."""
    schema = polars_schema("ledger.credit_status")
    dated = docs.select("document_id", "document_number", "issue_date")
    cols = [
        "source_system",
        "source_id",
        "work_item_id",
        "change",
        "credited_document_id",
        "credited_document_number",
        "original_document_number",
        "issue_date",
        "currency",
        "credited_hours",
        "credited_minor",
    ]
    parts = [
        credited.join(dated, on="document_id", how="inner").select(
            "source_system",
            "source_id",
            "work_item_id",
            "change",
            pl.col("document_id").alias("credited_document_id"),
            pl.col("document_number").alias("credited_document_number"),
            pl.col("orig_document_id")
            .replace_strict(numbers, default=None, return_dtype=pl.String)
            .alias("original_document_number"),
            "issue_date",
            "currency",
            (-pl.col("billed_hours")).alias("credited_hours"),
            (-pl.col("charge_minor")).alias("credited_minor"),
        )
    ]
    for frame in manual_credits:
        parts.append(
            frame.join(dated, left_on="_credit_doc", right_on="document_id", how="inner").select(
                "source_system",
                "source_id",
                "work_item_id",
                pl.lit("manual_credit").alias("change"),
                pl.col("_credit_doc").alias("credited_document_id"),
                pl.col("document_number").alias("credited_document_number"),
                pl.col("_orig").alias("original_document_number"),
                "issue_date",
                "currency",
                pl.col("billed_hours").alias("credited_hours"),
                pl.col("charge_minor").alias("credited_minor"),
            )
        )
    out = pl.concat([p.select(cols) for p in parts], how="vertical_relaxed")
    return (
        out.with_columns(
            entity=pl.lit(entity),
            original_document_number=pl.coalesce(
                "original_document_number", pl.col("credited_document_number")
            ),
            issued_in=pl.lit(m0),
        )
        .select(schema.names())
        .cast(dict(schema))
    )


def _drift(base_invoices: pl.DataFrame, documents: pl.DataFrame) -> pl.DataFrame:
    """Invoices of ledger/invoices whose work differs from what billing issued under their id
    (ledger/invoices recomputed them after a source change, or their work was billed elsewhere)."""
    schema = {
        "invoice_number": pl.String,
        "document_number": pl.String,
        "base_lines_minor": pl.Int64,
        "issued_time_minor": pl.Int64,
    }
    if base_invoices.height == 0:
        return pl.DataFrame(schema=schema)
    docs = documents.select("document_id", "document_number", "time_minor", "pricing")
    joined = base_invoices.join(docs, left_on="invoice_id", right_on="document_id", how="left").with_columns(
        base_lines_minor=pl.when(pl.col("pricing") == "inclusive")
        .then(pl.col("total_minor"))
        .otherwise(pl.col("subtotal_minor"))
    )
    out = joined.filter(
        pl.col("document_number").is_null() | (pl.col("base_lines_minor") != pl.col("time_minor"))
    )
    return out.select(
        "invoice_number",
        "document_number",
        "base_lines_minor",
        pl.col("time_minor").alias("issued_time_minor"),
    ).cast(schema)
