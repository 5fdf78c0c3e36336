"""Expenses end to end through the pure core: Harvest expense CSV parsing (and its variants), the
same canonical rows from the API, staging (mapping, approval, markup, rounding, FX, quarantine),
accrual entries, and billable expenses on invoices and in billing runs (held then billed, deleted
then credited). Expected values are computed here by hand with Decimal."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pm_accounting_pipeline.config.schema import MappingDocument, MappingDocumentError, parse_mapping
from pm_accounting_pipeline.contracts.expenses import RawExpense, StagedExpense
from pm_accounting_pipeline.contracts.layers import JournalEntry, JournalLine, LineSource, polars_schema
from pm_accounting_pipeline.core.billing.expenses import with_expenses
from pm_accounting_pipeline.core.billing.run import BillingInputs, bill_period
from pm_accounting_pipeline.core.billing.state import BillingState
from pm_accounting_pipeline.core.checks import assert_balanced
from pm_accounting_pipeline.core.expenses import build_expense_accruals, stage_expenses
from pm_accounting_pipeline.core.fx import RATE_SCHEMA
from pm_accounting_pipeline.core.invoicing import build_invoices
from pm_accounting_pipeline.extract import formats as F
from pm_accounting_pipeline.extract.parse import parse_bytes, sniff_format
from pm_accounting_pipeline.sources.harvest_api.to_raw import canonical_records, expenses_to_raw
from pm_accounting_pipeline_tests.test_core.builders import exempt_client, trusted_client

AT = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)
HEADER = (
    "Date,Client,Project,Project Code,Category,Notes,Amount,Units,Billable?,Invoiced?,Approved?,"
    "First Name,Last Name,Employee?,Currency,Receipt URL"
)
RATES = {
    ("GBP", "USD"): Decimal("1.25"),
    ("USD", "GBP"): Decimal("0.8"),
    ("EUR", "USD"): Decimal("1.1"),
    ("JPY", "USD"): Decimal("0.0067"),
}


class FixedRates:
    """A rate provider with fixed rates (identity for a currency to itself, none for other pairs)."""

    name = "fixed"

    def rates(self, pairs: pl.DataFrame) -> pl.DataFrame:
        rows = [
            (
                f,
                t,
                d,
                Decimal(1) if f == t else RATES.get((f, t)),
                d,
                "identity" if f == t else "fixed",
                "spot",
            )
            for f, t, d in pairs.select("from_currency", "to_currency", "date").unique().iter_rows()
        ]
        return pl.DataFrame(rows, schema=RATE_SCHEMA, orient="row")


PROVIDER = FixedRates()


def mapping_data(**expenses: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "reporting_currency": "USD",
        "start_date": "2026-01-01",
        "entities": [
            {
                "id": "us",
                "name": "US Inc",
                "functional_currency": "USD",
                "tax": {"rate": "0.08"},
                "harvest_csv": {"date_format": "YYYY-MM-DD"},
            },
            {
                "id": "uk",
                "name": "UK Ltd",
                "functional_currency": "GBP",
                "tax": {"rate": "0.20"},
                "harvest_csv": {"date_format": "DD/MM/YYYY", "decimal_separator": ","},
            },
        ],
        "clients": [
            {"name": "Acme Corporation", "customer_ref": "C-ACME", "entity": "us", "currency": "USD"},
            exempt_client(),
            trusted_client(),
            {"name": "Tokyo Trading", "customer_ref": "C-TOKYO", "entity": "us", "currency": "JPY"},
            {"name": "Britannia Ltd", "customer_ref": "C-BRIT", "entity": "uk", "currency": "GBP"},
        ],
        "projects": [
            {"name": "Website", "client": "Acme Corporation", "code": "AC-1", "customer_job": "Acme:Website"},
            {
                "name": "Internal",
                "client": "Acme Corporation",
                "code": "AC-INT",
                "customer_job": "Acme:Internal",
                "billable": False,
            },
            {"name": "Audit", "client": "Exempt Foundation", "code": "EX-1", "customer_job": "Exempt:Audit"},
            {
                "name": "Support",
                "client": "Trusted Client",
                "code": "TR-1",
                "customer_job": "Trusted:Support",
            },
            {"name": "ERP", "client": "Tokyo Trading", "code": "TK-1", "customer_job": "Tokyo:ERP"},
            {"name": "Audit", "client": "Britannia Ltd", "code": "BR-1", "customer_job": "Brit:Audit"},
        ],
        "approval": {"require_approval": True},
        "expenses": {
            "markup_pct": "10",
            "require_known_category": True,
            "categories": [
                {"name": "Travel", "item": "Travel expenses"},
                {"name": "Mileage", "item": "Mileage", "markup_pct": "0"},
                {"name": "Meals", "billable_by_default": False},
            ],
            "client_markup_pct": {"Trusted Client": "5"},
            **expenses,
        },
    }


def mapping(**expenses: Any) -> MappingDocument:
    return parse_mapping(mapping_data(**expenses))


def csv_bytes(rows: list[str], header: str = HEADER, newline: str = "\n", encoding: str = "utf-8") -> bytes:
    return (newline.join([header, *rows]) + newline).encode(encoding)


def parse(data: bytes, entity: str = "us", m: MappingDocument | None = None, name: str = "exp.csv"):
    return parse_bytes(data, entity, m or mapping(), extracted_at=AT, source_file=name)


def row(
    day: str = "2026-03-02",
    client: str = "Acme Corporation",
    project: str = "Website",
    code: str = "AC-1",
    category: str = "Travel",
    notes: str = "Train",
    amount: str = "100.00",
    units: str = "",
    billable: str = "Yes",
    approved: str = "Yes",
    first: str = "Ann",
    last: str = "Lee",
    currency: str = "US Dollar - USD",
    receipt: str = "https://r.example/1.pdf",
) -> str:
    quoted = f'"{amount}"' if "," in amount else amount
    return (
        f"{day},{client},{project},{code},{category},{notes},{quoted},{units},{billable},No,{approved},"
        f"{first},{last},Yes,{currency},{receipt}"
    )


def stage(rows: list[str], m: MappingDocument | None = None, entity: str = "us"):
    m = m or mapping()
    parsed = parse(csv_bytes(rows), entity, m)
    assert parsed.error is None, parsed.error
    return stage_expenses(parsed.rows, m, PROVIDER)


def minor(amount: Decimal, digits: int = 2, rounding: str = ROUND_HALF_UP) -> int:
    return int(amount.quantize(Decimal(1).scaleb(-digits), rounding=rounding).scaleb(digits))


# --- parsing ------------------------------------------------------------------------------------


def test_expense_export_is_recognised_by_its_header_and_read_losslessly() -> None:
    parsed = parse(csv_bytes([row(amount="1,234.50", units="", receipt="https://r.example/9.pdf")]))
    assert parsed.format == F.HARVEST_EXPENSE_CSV and parsed.error is None
    RawExpense.validate(parsed.rows)
    r = parsed.rows.row(0, named=True)
    assert r["spent_date"] == date(2026, 3, 2)
    assert (r["client"], r["project"], r["project_code"], r["category"]) == (
        "Acme Corporation",
        "Website",
        "AC-1",
        "Travel",
    )
    assert (r["total_cost_raw"], r["currency_raw"], r["person"]) == ("1,234.50", "USD", "Ann Lee")
    assert (r["billable_raw"], r["approved_raw"], r["invoiced_raw"]) == ("Yes", "Yes", "No")
    assert r["receipt_url"] == "https://r.example/9.pdf"
    assert '"Employee?":"Yes"' in r["source_record"]  # every source column is kept
    assert r["source_system"] == "harvest_expense_csv" and r["source_row"] == 1


def test_reordered_columns_total_amount_and_missing_optional_columns() -> None:
    header = "Last Name,First Name,Total Amount,Category,Project,Client,Date"
    data = csv_bytes(["Lee,Ann,42.10,Meals,Website,Acme Corporation,2026-03-03"], header=header)
    parsed = parse(data)
    assert parsed.format == F.HARVEST_EXPENSE_CSV and parsed.error is None
    r = parsed.rows.row(0, named=True)
    assert (r["total_cost_raw"], r["category"], r["person"]) == ("42.10", "Meals", "Ann Lee")
    assert r["units_raw"] is None and r["receipt_url"] is None and r["currency_raw"] is None


def test_crlf_latin1_thousands_and_pound_currency_name() -> None:
    m = mapping()
    rows = [
        row(
            day="02/03/2026",
            client="Britannia Ltd",
            project="Audit",
            code="BR-1",
            notes="Caf\u00e9",
            amount="1.234,50",
            currency="British Pound - GBP",
        )
    ]
    data = csv_bytes(rows, newline="\r\n", encoding="latin-1")
    parsed = parse(data, "uk", m)
    assert parsed.error is None
    r = parsed.rows.row(0, named=True)
    assert r["spent_date"] == date(2026, 3, 2)  # DD/MM/YYYY configured for uk
    assert (r["notes"], r["currency_raw"], r["total_cost_raw"]) == ("Caf\u00e9", "GBP", "1.234,50")
    staged = stage_expenses(parsed.rows, m, PROVIDER).expenses
    assert staged["expense_minor"].to_list() == [123450]  # decimal comma, thousands point


def test_dates_are_read_with_the_configured_format_or_not_guessed() -> None:
    data = mapping_data()
    data["entities"][0]["harvest_csv"] = {"date_format": "auto"}
    auto = parse_mapping(data)
    ambiguous = parse(csv_bytes([row(day="03/04/2026")]), m=auto)
    assert ambiguous.error is not None and "ambiguous dates" in ambiguous.error
    detected = parse(csv_bytes([row(day="03/04/2026"), row(day="25/04/2026")]), m=auto)
    assert detected.error is None
    assert detected.rows["spent_date"].to_list() == [date(2026, 4, 3), date(2026, 4, 25)]


def test_a_header_lacking_the_amount_is_a_clear_error_and_time_exports_stay_time(tmp_path: Path) -> None:
    header = "Date,Client,Project,Category,First Name,Last Name"
    parsed = parse(csv_bytes(["2026-03-02,Acme Corporation,Website,Travel,Ann,Lee"], header=header))
    assert parsed.error is not None
    assert "looks like a Harvest expense CSV but lacks required column(s): Amount" in parsed.error
    exp = tmp_path / "e.csv"
    exp.write_bytes(csv_bytes([row()]))
    time = tmp_path / "t.csv"
    time.write_bytes(b"Date,Client,Project,Task,Hours,First Name,Last Name\n2026-03-02,A,B,C,1,Ann,Lee\n")
    assert sniff_format(exp) == F.HARVEST_EXPENSE_CSV
    assert sniff_format(time) == F.HARVEST_CSV


def test_api_and_csv_give_the_same_canonical_rows() -> None:
    m = mapping()
    api = {
        "id": 900000123,
        "spent_date": "2026-03-02",
        "notes": "Train",
        "total_cost": Decimal("100.00"),
        "units": Decimal("1"),
        "billable": True,
        "is_billed": False,
        "is_closed": True,
        "receipt": {"url": "https://r.example/1.pdf", "file_name": "1.pdf"},
        "user": {"id": 501, "name": "Ann Lee"},
        "project": {"id": 7, "name": "Website", "code": "AC-1"},
        "expense_category": {"id": 4100001, "name": "Travel", "unit_price": None},
        "client": {"id": 3, "name": "Acme Corporation", "currency": "USD"},
    }
    from_api = expenses_to_raw(canonical_records([api]), "us", "123", "batch", AT)
    assert from_api.quarantine.height == 0
    from_csv = parse(csv_bytes([row(units="1")]))
    assert from_api.rows.schema == from_csv.rows.schema == polars_schema("raw.expenses")
    RawExpense.validate(from_api.rows)
    a = stage_expenses(from_api.rows, m, PROVIDER).expenses
    c = stage_expenses(from_csv.rows, m, PROVIDER).expenses
    StagedExpense.validate(a)
    lineage = ["expense_item_id", "source_system", "source_id", "source_file", "source_row", "extracted_at"]
    # The API names the person by id; the export by name only. The API's closed expense is
    # approved by its account (core/approvals.py); the export's `Approved?` names no approver.
    approval = ["person_id", "approved_by", "approved_at"]
    assert a.drop(*lineage, *approval).to_dicts() == c.drop(*lineage, *approval).to_dicts()
    assert a.select(approval).rows() == [("501", "harvest:123", None)]
    assert c.select("approved_by", "approved_at").rows() == [(None, None)]


# --- staging: mapping, approval, markup, rounding -------------------------------------------------


def test_markup_rounding_status_and_tax_by_hand() -> None:
    rows = [
        row(amount="12.345"),  # billable, 10 % markup, half-up at both steps
        row(category="Mileage", amount="29.00", units="50"),  # markup override 0 %
        row(category="Meals", amount="40.00", billable=""),  # category not billable by default
        row(client="Trusted Client", project="Support", code="TR-1", amount="1000.00", approved="No"),
        row(client="Exempt Foundation", project="Audit", code="EX-1", amount="80.00"),
        row(project="Internal", code="AC-INT", amount="55.00"),
        row(amount="20.00", approved="No"),  # held
        row(client="Tokyo Trading", project="ERP", code="TK-1", amount="1,234", currency="JPY"),
    ]
    res = stage(rows)
    assert res.quarantine.height == 0, res.quarantine
    got = res.expenses.sort("source_row")
    expense = minor(Decimal("12.345"))
    assert expense == 1235
    markup = minor(Decimal(expense) * Decimal("0.10") / 100)
    assert markup == 124  # 123.5 cents, half up
    jpy_markup = minor(Decimal(1234) * Decimal("0.10"), 0)  # 123.4 yen
    assert got.select("billing_status", "expense_minor", "markup_minor", "recharge_minor").rows() == [
        ("billable", expense, markup, expense + markup),
        ("billable", 2900, 0, 2900),
        ("non_billable", 4000, 0, 0),
        ("billable", 100000, 5000, 105000),  # client override 5 %, approval not required
        ("billable", 8000, 800, 8800),
        ("internal", 5500, 0, 0),
        ("held_unapproved", 2000, 0, 0),
        ("billable", 1234, jpy_markup, 1234 + jpy_markup),
    ]
    assert got["tax_rate"].cast(pl.String).to_list() == ["0.080000"] * 4 + ["0.000000"] + ["0.080000"] * 3
    assert got["units"].cast(pl.String).to_list()[1] == "50.0000"
    assert got["receipt_url"].to_list()[0] == "https://r.example/1.pdf"
    assert got["item"].to_list()[:3] == ["Travel expenses", "Mileage", "Meals"]
    StagedExpense.validate(got)


def test_half_even_rounding_of_the_markup() -> None:
    data = mapping_data()
    data["rounding"] = {"money_mode": "half_even"}
    res = stage([row(amount="12.25")], parse_mapping(data))
    # 10 % of 1225 cents = 122.5 cents: half-even gives 122 (half-up would give 123)
    assert (
        res.expenses["markup_minor"].to_list() == [minor(Decimal("1.225"), rounding=ROUND_HALF_EVEN)] == [122]
    )


def test_fx_to_functional_and_reporting_with_the_same_rates() -> None:
    res = stage(
        [
            row(
                day="02/03/2026",
                client="Britannia Ltd",
                project="Audit",
                code="BR-1",
                amount="10,01",
                currency="GBP",
            )
        ],
        entity="uk",
    )
    e = res.expenses.row(0, named=True)
    assert (e["currency"], e["functional_currency"], e["reporting_currency"]) == ("GBP", "GBP", "USD")
    assert e["expense_minor"] == 1001 and e["markup_minor"] == 100  # 100.1 pence -> 100
    assert e["expense_functional_minor"] == 1001 and e["recharge_functional_minor"] == 1101
    assert e["expense_reporting_minor"] == minor(Decimal("10.01") * Decimal("1.25"))  # 12.5125 -> 1251
    assert e["recharge_reporting_minor"] == minor(Decimal("11.01") * Decimal("1.25"))  # 13.7625 -> 1376


def test_quarantine_reasons_and_every_row_accounted_for() -> None:
    rows = [
        row(amount="12,3x"),
        row(amount="-5.00"),
        row(category="Mileage", units="ten"),
        row(client="Nobody Ltd"),
        row(project="Nowhere", code=""),
        row(category="Entertainment"),
        row(currency="XYZ"),
        row(currency="CHF"),  # a real currency without any rate to the billing currency
        row(billable="maybe"),
        row(category=""),
        row(client="Britannia Ltd", project="Audit", code="BR-1", currency="GBP"),
        # Two identical rows of one export are two expenses (each has its own derived id).
        row(notes="Twice", amount="7.00"),
        row(notes="Twice", amount="7.00"),
    ]
    res = stage(rows)
    reasons = res.quarantine.sort("source_row").select("source_row", "reason").rows()
    assert reasons == [
        (1, "bad_amount"),
        (2, "bad_amount"),
        (3, "bad_amount"),
        (4, "unknown_client"),
        (5, "unknown_project"),
        (6, "unknown_category"),
        (7, "unknown_currency"),
        (8, "missing_fx_rate"),
        (9, "bad_flag"),
        (10, "missing_required"),
        (11, "wrong_entity"),
    ]
    details = dict(res.quarantine.select("source_row", "detail").rows())
    assert details[1] == "amount '12,3x' is not a non-negative number"
    assert details[6] == "category 'Entertainment' is not listed under expenses.categories"
    assert details[8] == (
        "no fixed rate for CHF->USD on or shortly before 2026-03-02: the expense cannot be valued in "
        "the billing currency USD of client 'Acme Corporation' and the entity's books"
    )
    assert set(res.quarantine["layer"]) == {"expenses"}
    assert res.expenses.height + res.quarantine.height == len(rows)
    assert res.expenses["source_row"].sort().to_list() == [12, 13]


def _api_expense(**changes: Any) -> dict[str, Any]:
    base = {
        "id": 900000777,
        "spent_date": "2026-03-05",
        "total_cost": Decimal("64.00"),
        "billable": True,
        "is_billed": False,
        "approval_status": "approved",
        "user": {"id": 501, "name": "Ann Lee"},
        "project": {"id": 7, "name": "Website", "code": "AC-1"},
        "expense_category": {"id": 4100001, "name": "Travel"},
        "client": {"id": 3, "name": "Acme Corporation", "currency": "USD"},
    }
    return {**base, **changes}


def test_the_same_api_expense_twice_is_a_duplicate_and_a_changed_copy_a_conflict() -> None:
    m = mapping()
    first = expenses_to_raw(canonical_records([_api_expense()]), "us", "123", "b1", AT).rows
    again = expenses_to_raw(canonical_records([_api_expense()]), "us", "124", "b2", AT).rows
    res = stage_expenses(pl.concat([first, again]), m, PROVIDER)
    assert res.expenses.height == 1
    assert res.quarantine.select("source_file", "reason").rows() == [("harvest_api:124", "duplicate_exact")]
    changed = expenses_to_raw(
        canonical_records([_api_expense(total_cost=Decimal("65"))]), "us", "124", "b2", AT
    )
    res = stage_expenses(pl.concat([first, changed.rows]), m, PROVIDER)
    assert res.expenses.height == 0
    assert res.quarantine["reason"].to_list() == ["duplicate_conflict", "duplicate_conflict"]


def test_api_approval_status_decides_holding() -> None:
    m = mapping()
    texts = canonical_records([_api_expense(approval_status="submitted"), _api_expense(id=900000778)])
    res = stage_expenses(expenses_to_raw(texts, "us", "123", "b", AT).rows, m, PROVIDER)
    assert sorted(res.expenses.select("source_id", "billing_status").rows()) == [
        ("900000777", "held_unapproved"),
        ("900000778", "billable"),
    ]


def test_unknown_categories_are_accepted_when_not_required() -> None:
    res = stage([row(category="Entertainment")], mapping(require_known_category=False))
    assert res.quarantine.height == 0
    assert res.expenses.select("category", "item", "markup_minor").rows() == [
        ("Entertainment", "Entertainment", 1000)
    ]


def test_mapping_document_expenses_section_is_validated() -> None:
    with pytest.raises(MappingDocumentError) as exc:
        mapping(markup_pct="-1", client_markup_pct={"Nobody": "5"})
    text = str(exc.value)
    assert "expenses.markup_pct: markup_pct is a percentage between 0 and 1000" in text
    with pytest.raises(MappingDocumentError) as exc:
        mapping(client_markup_pct={"Nobody": "5"})
    assert "client_markup_pct.Nobody: unknown client 'Nobody'" in str(exc.value)


# --- accruals -----------------------------------------------------------------------------------


def _sums(lines: pl.DataFrame, entry_type: str, role: str) -> tuple[int, int]:
    sel = lines.filter((pl.col("entry_type") == entry_type) & (pl.col("account_role") == role))
    return int(sel["debit_minor"].sum()), int(sel["credit_minor"].sum())


def test_accrual_entries_balance_and_book_recharge_and_cost() -> None:
    res = stage(
        [
            row(amount="100.00"),  # billable: 110.00 recharge
            row(category="Meals", amount="40.00", billable="No"),  # non-billable: cost only
            row(amount="20.00", approved="No"),  # held: cost only
            row(day="2026-03-03", project="Internal", code="AC-INT", amount="5.00"),  # internal: cost only
        ]
    )
    batch = build_expense_accruals(res.expenses, mapping())
    assert_balanced(batch.lines)
    JournalEntry.validate(batch.entries)
    JournalLine.validate(batch.lines)
    LineSource.validate(batch.line_sources)
    lines = batch.lines
    assert _sums(lines, "expense_recharge_accrual", "unbilled_receivables") == (11000, 0)
    assert _sums(lines, "expense_recharge_accrual", "expense_recharge") == (0, 11000)
    assert _sums(lines, "expense_cost_accrual", "project_expenses") == (16000 + 500, 0)
    assert _sums(lines, "expense_cost_accrual", "reimbursements_payable") == (0, 16500)
    accounts = dict(lines.select("account_role", "account").unique().rows())
    assert accounts == {
        "unbilled_receivables": "1210",
        "expense_recharge": "4100",
        "project_expenses": "5100",
        "reimbursements_payable": "2150",
    }
    for _, entry in lines.group_by("entry_id"):
        for d, c in (
            ("debit", "credit"),
            ("functional_debit", "functional_credit"),
            ("reporting_debit", "reporting_credit"),
        ):
            assert entry[d].sum() == entry[c].sum()
    # Two days: one recharge entry (2 March) and a cost entry per day.
    assert sorted(batch.entries.select("entry_type", "posting_date").rows()) == [
        ("expense_cost_accrual", date(2026, 3, 2)),
        ("expense_cost_accrual", date(2026, 3, 3)),
        ("expense_recharge_accrual", date(2026, 3, 2)),
    ]
    # Every line traces to its expenses.
    held_id = res.expenses.filter(pl.col("billing_status") == "held_unapproved")["source_id"][0]
    traced = batch.line_sources.filter(pl.col("source_id") == held_id)
    assert traced["amount_minor"].to_list() == [2000, 2000]  # the cost debit and the payable credit


def test_non_billable_expenses_are_only_cost() -> None:
    res = stage([row(category="Meals", amount="40.00", billable="No")])
    batch = build_expense_accruals(res.expenses, mapping())
    assert set(batch.entries["entry_type"]) == {"expense_cost_accrual"}
    invoices = build_invoices(
        with_expenses(_empty_fx(), res.expenses), mapping(), "us", date(2026, 3, 1), date(2026, 3, 31)
    )
    assert invoices.invoices.height == 0


# --- invoices and billing -----------------------------------------------------------------------


def _empty_fx() -> pl.DataFrame:
    return pl.DataFrame(schema=polars_schema("staging.fx_billables"))


def test_billable_expenses_become_invoice_lines_with_tax() -> None:
    m = mapping()
    res = stage(
        [
            row(amount="100.00"),
            row(category="Mileage", amount="29.00", units="50", receipt=""),
            row(amount="20.00", approved="No"),  # held: not invoiced
            row(client="Exempt Foundation", project="Audit", code="EX-1", amount="80.00"),
        ]
    )
    batch = build_invoices(
        with_expenses(_empty_fx(), res.expenses), m, "us", date(2026, 3, 1), date(2026, 3, 31)
    )
    assert_balanced(batch.lines)
    inv = {r["customer_ref"]: r for r in batch.invoices.iter_rows(named=True)}
    assert set(inv) == {"C-ACME", "C-EXEMPT"}
    subtotal = 11000 + 2900
    tax = minor(Decimal(subtotal) * Decimal("0.08") / 100)  # 1112 cents
    assert (inv["C-ACME"]["subtotal_minor"], inv["C-ACME"]["tax_minor"], inv["C-ACME"]["total_minor"]) == (
        subtotal,
        tax,
        subtotal + tax,
    )
    assert (inv["C-EXEMPT"]["tax_minor"], inv["C-EXEMPT"]["total_minor"]) == (0, 8800)
    lines = batch.invoice_lines.filter(pl.col("invoice_id") == inv["C-ACME"]["invoice_id"]).sort("line_no")
    assert lines.select("item", "description", "revenue_account", "amount_minor").rows() == [
        ("Mileage", "Website - Expenses: Mileage", "4100", 2900),
        ("Travel expenses", "Website - Expenses: Travel", "4100", 11000),
    ]
    # The invoice entry relieves exactly the recharge accrued to unbilled receivables.
    accrued = build_expense_accruals(res.expenses, m)
    relieved = batch.lines.filter(pl.col("account_role") == "unbilled_receivables")
    booked = accrued.lines.filter(pl.col("account_role") == "unbilled_receivables")
    assert relieved["credit_minor"].sum() == booked["debit_minor"].sum() == 11000 + 2900 + 8800
    # Lines reference the source expenses (and through the notes, the receipts).
    travel_id = res.expenses.filter(pl.col("category") == "Travel").sort("source_row")["source_id"][0]
    assert travel_id in batch.line_sources["source_id"].to_list()
    assert set(batch.line_sources["source_system"]) == {"harvest_expense_csv"}


def _bill(m: MappingDocument, staged: pl.DataFrame, month: date, prior: BillingState | None = None):
    from calendar import monthrange

    m0, m1 = month, month.replace(day=monthrange(month.year, month.month)[1])
    fx = with_expenses(_empty_fx(), staged)
    base = build_invoices(fx, m, "us", m0, m1)
    result = bill_period(
        BillingInputs(
            mapping=m,
            entity="us",
            period_start=m0,
            period_end=m1,
            fx=fx,
            base_invoices=base.invoices,
            base_lines=base.lines,
            prior=prior or BillingState.empty(),
            frozen=BillingState.empty(),
            provider=PROVIDER,
        )
    )
    assert_balanced(result.ledger.lines)
    return result


def _expense_lines(result) -> list[tuple[str, int]]:
    lines = result.state.lines.filter(pl.col("description").str.contains("Expenses: "))
    return sorted(lines.select("description", "amount_minor").rows())


def test_unapproved_expense_is_held_then_billed_when_approved() -> None:
    m = mapping()
    march = date(2026, 3, 1)
    held = stage([row(amount="100.00"), row(notes="Hotel", amount="50.00", approved="No")])
    first = _bill(m, held.expenses, march)
    assert _expense_lines(first) == [("Website - Expenses: Travel", 11000)]
    # In April the March expense is approved: the April run bills it as late work.
    approved = stage([row(amount="100.00"), row(notes="Hotel", amount="50.00", approved="Yes")])
    # Approval is a workflow column: the expense keeps its source id.
    assert set(held.expenses["source_id"]) == set(approved.expenses["source_id"])
    second = _bill(m, approved.expenses, date(2026, 4, 1), prior=first.state)
    assert _expense_lines(second) == [("Work not invoiced before: Acme:Website - Expenses: Travel", 5500)]
    doc = second.state.documents.filter(pl.col("document_type") == "invoice").row(0, named=True)
    assert (doc["subtotal_minor"], doc["tax_minor"]) == (5500, minor(Decimal(5500) * Decimal("0.08") / 100))


def test_deleted_expense_that_was_billed_is_credited() -> None:
    m = mapping()
    march = date(2026, 3, 1)
    both = stage([row(amount="100.00"), row(notes="Hotel", amount="50.00")])
    first = _bill(m, both.expenses, march)
    assert _expense_lines(first) == [("Website - Expenses: Travel", 16500)]
    # The hotel expense is deleted at the source (a tombstone): the next run credits it.
    remaining = both.expenses.filter(pl.col("notes") != "Hotel")
    second = _bill(m, remaining, date(2026, 4, 1), prior=first.state)
    memo = second.state.documents.filter(pl.col("document_type") == "credit_memo")
    assert memo.height == 1
    assert memo["corrects_document_id"][0] == first.state.documents["document_id"][0]
    credit = 5500
    assert (memo["subtotal_minor"][0], memo["tax_minor"][0]) == (
        -credit,
        -minor(Decimal(credit) * Decimal("0.08") / 100),
    )
    # And the day's accrual, rebuilt from the remaining expenses, no longer books it.
    rebuilt = build_expense_accruals(remaining, m)
    assert _sums(rebuilt.lines, "expense_recharge_accrual", "expense_recharge") == (0, 11000)


def test_categories_that_read_as_the_same_name_are_rejected() -> None:
    with pytest.raises(MappingDocumentError) as exc:
        mapping(categories=[{"name": "Travel"}, {"name": " travel."}])
    assert "expenses.categories: categories read as the same name: [' travel.', 'Travel']" in str(exc.value)


def test_landing_an_expense_export_records_its_format_and_spent_dates(tmp_path: Path) -> None:
    from pm_accounting_pipeline.extract.landing import land_files, list_landing_files

    src = tmp_path / "expenses.csv"
    src.write_bytes(csv_bytes([row(day="2026-03-02"), row(day="2026-03-09", amount="abc")]))
    (result,) = land_files([src], "us", tmp_path / "data", mapping())
    assert (result.status, result.format, result.rows_in, result.rows_ok) == (
        "landed",
        "harvest_expense_csv",
        2,
        2,
    )
    (landed,) = list_landing_files(tmp_path / "data", "us")
    assert (landed.format, landed.work_date_min, landed.work_date_max) == (
        "harvest_expense_csv",
        date(2026, 3, 2),
        date(2026, 3, 9),
    )


# --- foreign-currency expenses ------------------------------------------------------------------

ECB_EUR_USD_2026_03_02 = Decimal("1.1698")  # ECB reference rate published on Monday 2 March 2026
ECB_EUR_GBP_2026_03_02 = Decimal("0.8739")
ECB_EUR_USD_2026_02_27 = Decimal("1.1805")  # Friday 27 February 2026, the last before Sunday 1 March


def _fx_mapping() -> MappingDocument:
    data = mapping_data()
    data["clients"].append(
        {"name": "Yankee Corp", "customer_ref": "C-YANK", "entity": "uk", "currency": "USD"}
    )
    data["projects"].append(
        {"name": "Rollout", "client": "Yankee Corp", "code": "YK-1", "customer_job": "Yank:Rollout"}
    )
    return parse_mapping(data)


def _ecb_stage(rows: list[str], entity: str = "us", tmp: Path | None = None):
    from pm_accounting_pipeline.core.fx_providers import provider_for

    m = _fx_mapping()
    parsed = parse(csv_bytes(rows), entity, m)
    assert parsed.error is None, parsed.error
    return m, stage_expenses(parsed.rows, m, provider_for(m, tmp or Path("/nonexistent")))


def test_a_eur_hotel_for_a_usd_client_is_converted_at_the_spent_dates_ecb_rate_then_marked_up() -> None:
    m, res = _ecb_stage([row(notes="Hotel", amount="200.00", currency="Euro - EUR")])
    assert res.quarantine.height == 0, res.quarantine.select("reason", "detail").rows()
    e = res.expenses.row(0, named=True)
    StagedExpense.validate(res.expenses)
    # Convert first (EUR 200.00 x 1.1698 = USD 233.96), then the 10 % markup on the converted amount.
    expense = minor(Decimal("200.00") * ECB_EUR_USD_2026_03_02)
    assert expense == 23396
    markup = minor(Decimal(expense) * Decimal("0.10") / 100)  # 2339.6 cents -> 2340
    assert markup == 2340
    assert (e["original_currency"], e["original_minor"], e["currency"]) == ("EUR", 20000, "USD")
    assert (e["expense_minor"], e["markup_minor"], e["recharge_minor"]) == (expense, markup, expense + markup)
    assert e["original_fx_rate"] == ECB_EUR_USD_2026_03_02
    assert (
        e["original_fx_rate_direction"],
        e["original_fx_rate_date"],
        e["original_fx_rate_type"],
        e["original_fx_rate_source"],
    ) == ("target_per_source", date(2026, 3, 2), "spot", "ecb_offline")
    # us books in USD: the cost is the converted amount.
    assert (e["expense_functional_minor"], e["expense_reporting_minor"]) == (expense, expense)
    # On the invoice: the converted, marked-up amount, tax on it, and the conversion on the line.
    batch = build_invoices(
        with_expenses(_empty_fx(), res.expenses), m, "us", date(2026, 3, 1), date(2026, 3, 31)
    )
    assert_balanced(batch.lines)
    inv = batch.invoices.row(0, named=True)
    tax = minor(Decimal(expense + markup) * Decimal("0.08") / 100)  # 2058.88 cents -> 2059
    assert (
        (inv["subtotal_minor"], inv["tax_minor"], inv["total_minor"])
        == (25736, tax, 25736 + tax)
        == (
            25736,
            2059,
            27795,
        )
    )
    assert batch.invoice_lines.select("description", "amount_minor").rows() == [
        (
            "Website - Expenses: Travel (EUR 200.00 at 1.1698 USD per EUR, ecb_offline spot rate of 2026-03-02)",
            25736,
        )
    ]
    billed = _bill(m, res.expenses, date(2026, 3, 1))
    assert _expense_lines(billed) == [
        (
            "Website - Expenses: Travel (EUR 200.00 at 1.1698 USD per EUR, ecb_offline spot rate of 2026-03-02)",
            25736,
        )
    ]
    accrued = build_expense_accruals(res.expenses, m)
    assert_balanced(accrued.lines)
    assert _sums(accrued.lines, "expense_cost_accrual", "project_expenses") == (expense, 0)


def test_a_weekend_expense_uses_the_last_published_rate_and_records_its_date() -> None:
    _, res = _ecb_stage([row(day="2026-03-01", amount="10.00", currency="EUR")])
    e = res.expenses.row(0, named=True)
    assert e["expense_minor"] == minor(Decimal("10.00") * ECB_EUR_USD_2026_02_27) == 1181  # 11.805 -> 11.81
    assert (e["original_fx_rate"], e["original_fx_rate_date"]) == (ECB_EUR_USD_2026_02_27, date(2026, 2, 27))


def test_the_project_cost_stays_what_was_paid_in_the_entitys_functional_currency() -> None:
    # uk (GBP books) re-invoices a GBP 100.00 train fare to a USD client.
    _, res = _ecb_stage(
        [
            row(
                day="02/03/2026",
                client="Yankee Corp",
                project="Rollout",
                code="YK-1",
                amount="100,00",
                currency="GBP",
            )
        ],
        entity="uk",
    )
    assert res.quarantine.height == 0, res.quarantine.select("reason", "detail").rows()
    e = res.expenses.row(0, named=True)
    cross = (ECB_EUR_USD_2026_03_02 / ECB_EUR_GBP_2026_03_02).quantize(
        Decimal("1e-12"), rounding=ROUND_HALF_EVEN
    )
    assert e["original_fx_rate"] == cross == Decimal("1.338597093489")
    assert e["expense_minor"] == minor(Decimal("100.00") * cross) == 13386
    # The cost in uk's books is exactly the GBP 100.00 paid, not a round trip through USD.
    assert (e["functional_currency"], e["expense_functional_minor"]) == ("GBP", 10000)
    assert e["expense_reporting_minor"] == 13386  # reporting currency USD: GBP 100.00 at the same rate
    markup = minor(Decimal(13386) * Decimal("0.10") / 100)  # 1338.6 -> 1339
    assert e["recharge_minor"] == 13386 + markup
    # The recharge (USD) is translated to GBP at the USD->GBP rate of the day.
    usd_gbp = (ECB_EUR_GBP_2026_03_02 / ECB_EUR_USD_2026_03_02).quantize(
        Decimal("1e-12"), rounding=ROUND_HALF_EVEN
    )
    assert e["recharge_functional_minor"] == minor(Decimal(13386 + markup) / 100 * usd_gbp)


def test_a_currency_without_any_rate_is_quarantined_with_the_pair_and_date() -> None:
    _, res = _ecb_stage([row(amount="5000", currency="Venezuelan Bolivar - VES")])
    assert res.expenses.height == 0
    (q,) = res.quarantine.select("reason", "detail", "layer").rows()
    assert q[0] == "missing_fx_rate" and q[2] == "expenses"
    assert "VES->USD" in q[1] and "2026-03-02" in q[1]


# --- approvals ----------------------------------------------------------------------------------


def _feed(tmp_path: Path, rows: list[str]) -> pl.DataFrame:
    from pm_accounting_pipeline.core.approvals import read_feed

    folder = tmp_path / "landing" / "us" / "approvals"
    folder.mkdir(parents=True)
    (folder / "log.csv").write_text(
        "\n".join(["source_system,source_id,status,approved_by,approved_at", *rows]) + "\n", encoding="utf-8"
    )
    return read_feed([folder])


def _stage_with(rows: list[str], feed: pl.DataFrame | None, m: MappingDocument | None = None):
    m = m or mapping()
    parsed = parse(csv_bytes(rows), "us", m)
    return stage_expenses(parsed.rows, m, PROVIDER, feed)


def test_the_approval_feed_approves_an_expense_and_the_billed_lines_name_the_approver(tmp_path: Path) -> None:
    rows = [row(amount="100.00"), row(notes="Hotel", amount="50.00", approved="No")]
    before = _stage_with(rows, None)
    assert sorted(before.expenses["billing_status"]) == ["billable", "held_unapproved"]
    ids = dict(before.expenses.select("notes", "source_id").rows())
    feed = _feed(
        tmp_path,
        [
            f"harvest_expense_csv,{ids['Hotel']},approved,Grace Hopper,2026-03-09T09:00:00Z",
            f"harvest_expense_csv,{ids['Train']},approved,Alan Kay,2026-03-10T08:30:00+01:00",
        ],
    )
    res = _stage_with(rows, feed)
    StagedExpense.validate(res.expenses)
    got = {r["notes"]: r for r in res.expenses.iter_rows(named=True)}
    assert got["Hotel"]["billing_status"] == "billable" and got["Hotel"]["is_approved"]
    assert (got["Hotel"]["approved_by"], got["Hotel"]["approved_at"]) == (
        "Grace Hopper",
        datetime(2026, 3, 9, 9, 0, tzinfo=UTC),
    )
    assert got["Train"]["approved_at"] == datetime(2026, 3, 10, 7, 30, tzinfo=UTC)
    assert got["Hotel"]["recharge_minor"] == 5500
    m = mapping()
    batch = build_invoices(
        with_expenses(_empty_fx(), res.expenses), m, "us", date(2026, 3, 1), date(2026, 3, 31)
    )
    assert batch.invoice_lines.select("amount_minor", "approved_by", "approved_at").rows() == [
        (16500, "Alan Kay; Grace Hopper", datetime(2026, 3, 10, 7, 30, tzinfo=UTC))
    ]
    billed = _bill(m, res.expenses, date(2026, 3, 1))
    line = billed.state.lines.filter(pl.col("description").str.contains("Expenses: ")).row(0, named=True)
    assert (line["amount_minor"], line["approved_by"]) == (16500, "Alan Kay; Grace Hopper")
    assert sorted(billed.state.sources.drop_nulls("approved_by")["approved_by"]) == [
        "Alan Kay",
        "Grace Hopper",
    ]


def test_require_approver_holds_approved_expenses_until_the_feed_names_one(tmp_path: Path) -> None:
    data = mapping_data()
    data["approval"] = {"require_approval": True, "require_approver": True}
    m = parse_mapping(data)
    rows = [row(amount="100.00"), row(notes="Hotel", amount="50.00")]
    held = _stage_with(rows, None, m)
    # Approved in the export (`Approved?: Yes`) but nobody is named: held, visible, not recharged.
    assert held.expenses.select("billing_status", "recharge_minor").rows() == [("held_no_approver", 0)] * 2
    assert (
        build_expense_accruals(held.expenses, m)
        .lines.filter(pl.col("entry_type") == "expense_recharge_accrual")
        .is_empty()
    )
    hotel = held.expenses.filter(pl.col("notes") == "Hotel")["source_id"][0]
    res = _stage_with(
        rows, _feed(tmp_path, [f"harvest_expense_csv,{hotel},approved,Grace Hopper,2026-03-09"]), m
    )
    assert sorted(res.expenses.select("notes", "billing_status", "recharge_minor").rows()) == [
        ("Hotel", "billable", 5500),
        ("Train", "held_no_approver", 0),
    ]


def test_a_feed_row_names_an_api_expense_by_harvest_api_expense_not_by_a_time_entry_id(
    tmp_path: Path,
) -> None:
    m = mapping()
    texts = canonical_records([_api_expense(updated_at="2026-03-06T10:00:00Z")])
    raw = expenses_to_raw(texts, "us", "123", "b", AT).rows
    approved = stage_expenses(raw, m, PROVIDER).expenses.row(0, named=True)
    # Approved in Harvest: the account approved it when the object was last updated.
    assert (approved["billing_status"], approved["approved_by"], approved["approved_at"]) == (
        "billable",
        "harvest:123",
        datetime(2026, 3, 6, 10, 0, tzinfo=UTC),
    )
    # A time entry of the same id withdrawn in the feed does not touch the expense ...
    feed = _feed(tmp_path, ["harvest_api,900000777,rejected,,2026-03-07T00:00:00Z"])
    assert stage_expenses(raw, m, PROVIDER, feed).expenses["billing_status"].to_list() == ["billable"]
    # ... the expense's own row does.
    (tmp_path / "landing" / "us" / "approvals" / "log.csv").unlink()
    (tmp_path / "landing" / "us" / "approvals").rmdir()
    feed = _feed(tmp_path, ["harvest_api_expense,900000777,rejected,,2026-03-07T00:00:00Z"])
    res = stage_expenses(raw, m, PROVIDER, feed).expenses.row(0, named=True)
    assert (res["billing_status"], res["is_approved"], res["approved_by"]) == ("held_unapproved", False, None)
