"""parse_file: format recognition, Harvest/Toggl/canonical parsing, dates, ids and the row accounting."""

from __future__ import annotations

import codecs
import json
from datetime import date, datetime

import polars as pl
import pytest

from pm_accounting_pipeline.contracts.layers import Quarantine, RawTimeEntry, polars_schema
from pm_accounting_pipeline.extract.parse import ParsedFile, parse_file
from pm_accounting_pipeline_tests.test_extract.conftest import (
    EXTRACTED_AT,
    HARVEST_HEADER,
    csv_bytes,
    harvest_row,
)


def _check(parsed: ParsedFile) -> None:
    """Every parse result honours the contracts and the row accounting."""
    assert parsed.rows_in == parsed.rows.height + parsed.quarantine.height
    assert parsed.rows.schema == polars_schema("raw.time_entries")
    assert parsed.quarantine.schema == polars_schema("staging.quarantine")
    RawTimeEntry.validate(parsed.rows, lazy=True)
    Quarantine.validate(parsed.quarantine, lazy=True)


def _parse(path, entity, mapping, **kw) -> ParsedFile:
    parsed = parse_file(path, entity, mapping, extracted_at=kw.pop("extracted_at", EXTRACTED_AT), **kw)
    _check(parsed)
    return parsed


# --- Harvest -----------------------------------------------------------------------------------


def test_harvest_csv_maps_columns_to_raw_fields(mapping, write_file) -> None:
    path = write_file("export.csv", csv_bytes(HARVEST_HEADER, [harvest_row()]))
    parsed = _parse(path, "us", mapping)
    assert parsed.format == "harvest_csv" and parsed.error is None
    row = parsed.rows.row(0, named=True)
    assert row["work_date"] == date(2026, 9, 14)
    assert row["date_raw"] == "2026-09-14"
    assert (row["client"], row["project"], row["project_code"], row["task"]) == (
        "Globex Corporation",
        "Website Redesign",
        "GLX-001",
        "Development",
    )
    assert (row["person"], row["person_id"], row["email"]) == ("Mary Smith", "3300012", None)
    assert (row["hours_raw"], row["rounded_hours_raw"]) == ("7.50", "7.50")
    assert (row["billable_raw"], row["approved_raw"], row["invoiced_raw"]) == ("Yes", "Yes", "No")
    assert (row["bill_rate_raw"], row["cost_rate_raw"], row["currency_raw"]) == ("150.00", "70.00", "USD")
    assert row["source_system"] == "harvest_csv"
    assert row["source_file"] == "export.csv"
    assert row["source_row"] == 1
    assert row["extracted_at"] == EXTRACTED_AT
    assert len(row["file_hash"]) == 64


def test_source_record_keeps_every_column_as_the_original_text(mapping, write_file) -> None:
    header = [*HARVEST_HEADER, "Department"]
    path = write_file("x.csv", csv_bytes(header, [harvest_row(Department="R&D", Notes='Said "hi", left')]))
    record = json.loads(_parse(path, "us", mapping).rows["source_record"][0])
    assert list(record) == header
    assert record["Department"] == "R&D"
    assert record["Notes"] == 'Said "hi", left'
    assert record["Billable Amount"] == "1,125.00"
    assert record["External Reference URL"] == ""


def test_harvest_columns_are_matched_by_name_not_position(mapping, write_file) -> None:
    rows = [harvest_row(), harvest_row(Date="2026-09-15", Hours="2.25", Notes="Review")]
    reordered = list(reversed(HARVEST_HEADER))
    a = _parse(write_file("a.csv", csv_bytes(HARVEST_HEADER, rows)), "us", mapping).rows
    b = _parse(write_file("b.csv", csv_bytes(reordered, rows)), "us", mapping).rows
    cols = [
        "work_date",
        "client",
        "project",
        "task",
        "person",
        "hours_raw",
        "notes",
        "currency_raw",
        "source_id",
    ]
    assert a.select(cols).equals(b.select(cols))
    assert b["hours_raw"].to_list() == ["7.50", "2.25"]


def test_harvest_without_hours_rounded_employee_id_and_money_columns_is_accepted(mapping, write_file) -> None:
    header = [h for h in HARVEST_HEADER if h not in ("Hours Rounded", "Employee Id")]
    header = [h for h in header if "Rate" not in h and "Amount" not in h and h != "Currency"]
    parsed = _parse(write_file("old.csv", csv_bytes(header, [harvest_row()])), "us", mapping)
    assert parsed.error is None
    row = parsed.rows.row(0, named=True)
    assert row["rounded_hours_raw"] is None and row["person_id"] is None
    assert row["bill_rate_raw"] is None and row["currency_raw"] is None
    assert row["hours_raw"] == "7.50"


def test_harvest_currency_name_and_code_becomes_the_iso_code(mapping, write_file) -> None:
    rows = [
        harvest_row(Currency="British Pound - GBP"),
        harvest_row(Currency="EUR"),
        harvest_row(Currency=""),
    ]
    parsed = _parse(write_file("c.csv", csv_bytes(HARVEST_HEADER, rows)), "us", mapping)
    assert parsed.rows["currency_raw"].to_list() == ["GBP", "EUR", None]


def test_harvest_header_names_tolerate_case_spaces_and_question_marks(mapping, write_file) -> None:
    header = [h.upper().replace("?", "") + " " for h in HARVEST_HEADER]
    row = {h.upper().replace("?", "") + " ": v for h, v in harvest_row().items()}
    parsed = _parse(write_file("caps.csv", csv_bytes(header, [row])), "us", mapping)
    assert parsed.format == "harvest_csv"
    assert parsed.rows.row(0, named=True)["billable_raw"] == "Yes"


def test_dd_mm_yyyy_dates_and_decimal_comma_hours_are_read_for_a_german_account(mapping, write_file) -> None:
    rows = [
        harvest_row(
            Date="26.01.2026", Hours="7,5", **{"Hours Rounded": "7,5", "Billable Amount": "1.234,50"}
        ),
        harvest_row(Date="01.09.2026", Hours="0,25"),
    ]
    parsed = _parse(write_file("de.csv", csv_bytes(HARVEST_HEADER, rows)), "de", mapping)
    assert parsed.rows["work_date"].to_list() == [date(2026, 1, 26), date(2026, 9, 1)]
    # Numbers stay as written; cleaning reads them with the entity's "," decimal separator.
    assert parsed.rows["hours_raw"].to_list() == ["7,5", "0,25"]
    assert json.loads(parsed.rows["source_record"][0])["Billable Amount"] == "1.234,50"


def test_thousands_separators_are_kept_verbatim_for_cleaning(mapping, write_file) -> None:
    rows = [harvest_row(**{"Billable Rate": "1,234.50"})]
    parsed = _parse(write_file("k.csv", csv_bytes(HARVEST_HEADER, rows)), "us", mapping)
    assert parsed.rows["bill_rate_raw"].to_list() == ["1,234.50"]


def test_windows_line_endings_are_read(mapping, write_file) -> None:
    data = csv_bytes(HARVEST_HEADER, [harvest_row(), harvest_row(Notes="second")], newline="\r\n")
    assert b"\r\n" in data
    parsed = _parse(write_file("win.csv", data), "us", mapping)
    assert parsed.rows.height == 2
    assert parsed.rows["notes"].to_list() == ["Sprint planning", "second"]
    assert parsed.rows["source_record"].str.contains("\r").sum() == 0


def test_latin1_file_is_decoded(mapping, write_file) -> None:
    rows = [harvest_row(Client="Café Müller GmbH", **{"First Name": "Jürgen", "Last Name": "Schäfer"})]
    data = csv_bytes(HARVEST_HEADER, rows, encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    parsed = _parse(write_file("latin1.csv", data), "us", mapping)
    row = parsed.rows.row(0, named=True)
    assert row["client"] == "Café Müller GmbH"
    assert row["person"] == "Jürgen Schäfer"


def test_utf8_bom_is_not_part_of_the_first_header(mapping, write_file) -> None:
    data = codecs.BOM_UTF8 + csv_bytes(HARVEST_HEADER, [harvest_row()])
    parsed = _parse(write_file("bom.csv", data), "us", mapping)
    assert parsed.format == "harvest_csv"
    assert next(iter(json.loads(parsed.rows["source_record"][0]))) == "Date"


def test_negative_and_absurd_hours_pass_through_raw_for_cleaning_to_judge(mapping, write_file) -> None:
    rows = [
        harvest_row(Hours="-1.50"),
        harvest_row(Hours="30.00"),
        harvest_row(Hours="abc"),
        harvest_row(Hours=""),
    ]
    parsed = _parse(write_file("h.csv", csv_bytes(HARVEST_HEADER, rows)), "us", mapping)
    assert parsed.quarantine.height == 0
    assert parsed.rows["hours_raw"].to_list() == ["-1.50", "30.00", "abc", None]


def test_blank_lines_are_not_rows(mapping, write_file) -> None:
    data = csv_bytes(HARVEST_HEADER, [harvest_row()], newline="\r\n") + b"\r\n\r\n"
    parsed = _parse(write_file("blank.csv", data), "us", mapping)
    assert (parsed.rows_in, parsed.rows.height, parsed.quarantine.height) == (1, 1, 0)


# --- dates ------------------------------------------------------------------------------------


def test_bad_date_row_is_quarantined_on_the_extraction_date(mapping, write_file) -> None:
    rows = [harvest_row(), harvest_row(Date="2026-09-31"), harvest_row(Date="")]
    parsed = _parse(write_file("d.csv", csv_bytes(HARVEST_HEADER, rows)), "us", mapping)
    assert parsed.error is None
    assert (parsed.rows_in, parsed.rows.height) == (3, 1)
    q = parsed.quarantine.sort("source_row")
    assert q["reason"].to_list() == ["bad_date", "missing_required"]
    assert q["source_row"].to_list() == [2, 3]
    assert q["partition_date"].to_list() == [EXTRACTED_AT.date()] * 2
    assert q["layer"].to_list() == ["raw", "raw"]
    assert (
        q["detail"][0]
        == "Date '2026-09-31' does not match the date format YYYY-MM-DD configured for entity 'us'"
    )
    assert json.loads(q["source_record"][0])["Date"] == "2026-09-31"
    assert q["source_id"].null_count() == 0


def test_auto_date_format_rejects_a_file_whose_dates_fit_two_formats(mapping, write_file) -> None:
    rows = [harvest_row(Date="03/04/2026"), harvest_row(Date="05/06/2026"), harvest_row(Date="12/11/2026")]
    parsed = _parse(write_file("amb.csv", csv_bytes(HARVEST_HEADER, rows)), "auto", mapping)
    assert parsed.error is not None
    assert "amb.csv" in parsed.error and "ambiguous" in parsed.error
    assert "MM/DD/YYYY" in parsed.error and "DD/MM/YYYY" in parsed.error
    assert parsed.rows.height == 0
    assert parsed.quarantine["reason"].to_list() == ["ambiguous_date"] * 3
    assert parsed.rows_in == 3


def test_auto_date_format_is_detected_from_all_values(mapping, write_file) -> None:
    rows = [harvest_row(Date="03/04/2026"), harvest_row(Date="13/04/2026")]
    parsed = _parse(write_file("dmy.csv", csv_bytes(HARVEST_HEADER, rows)), "auto", mapping)
    assert parsed.error is None
    assert parsed.rows["work_date"].to_list() == [date(2026, 4, 3), date(2026, 4, 13)]


def test_configured_format_is_used_even_when_values_would_fit_another(mapping, write_file) -> None:
    parsed = _parse(
        write_file("uk.csv", csv_bytes(HARVEST_HEADER, [harvest_row(Date="03/04/2026")])), "uk", mapping
    )
    assert parsed.rows["work_date"].to_list() == [date(2026, 4, 3)]


def test_a_file_where_no_date_fits_the_configured_format_is_rejected(mapping, write_file) -> None:
    rows = [harvest_row(Date="14.09.2026"), harvest_row(Date="15.09.2026")]
    parsed = _parse(write_file("wrong.csv", csv_bytes(HARVEST_HEADER, rows)), "us", mapping)
    assert parsed.error is not None and "YYYY-MM-DD" in parsed.error and "'14.09.2026'" in parsed.error
    assert parsed.quarantine["reason"].to_list() == ["bad_date", "bad_date"]


# --- source ids -------------------------------------------------------------------------------


def test_the_same_export_dropped_twice_gets_the_same_source_ids(mapping, write_file) -> None:
    rows = [harvest_row(), harvest_row(Notes="Review"), harvest_row()]
    data = csv_bytes(HARVEST_HEADER, rows)
    first = _parse(write_file("monday.csv", data), "us", mapping).rows
    second = _parse(
        write_file("monday (1).csv", data),
        "us",
        mapping,
        extracted_at=datetime(2026, 12, 1, tzinfo=EXTRACTED_AT.tzinfo),
    ).rows
    assert first["source_id"].to_list() == second["source_id"].to_list()
    # The first and third rows are identical: repeated work, still two entries.
    assert first["source_id"].n_unique() == 3


def test_source_ids_survive_approval_and_invoicing_but_not_an_edit(mapping, write_file) -> None:
    before = _parse(
        write_file("b.csv", csv_bytes(HARVEST_HEADER, [harvest_row(**{"Approved?": "No"})])), "us", mapping
    )
    after = _parse(
        write_file(
            "a.csv", csv_bytes(HARVEST_HEADER, [harvest_row(**{"Approved?": "Yes", "Invoiced?": "Yes"})])
        ),
        "us",
        mapping,
    )
    edited = _parse(
        write_file("e.csv", csv_bytes(HARVEST_HEADER, [harvest_row(Hours="8.00")])), "us", mapping
    )
    assert before.rows["source_id"][0] == after.rows["source_id"][0]
    assert edited.rows["source_id"][0] != before.rows["source_id"][0]


def test_source_ids_are_scoped_to_the_entity(mapping, write_file) -> None:
    path = write_file("x.csv", csv_bytes(HARVEST_HEADER, [harvest_row(Date="14/09/2026")]))
    assert (
        _parse(path, "uk", mapping).rows["source_id"][0] != _parse(path, "auto", mapping).rows["source_id"][0]
    )


# --- Toggl ------------------------------------------------------------------------------------

TOGGL_HEADER = [
    "User", "Email", "Client", "Project", "Task", "Description", "Billable", "Start date", "Start time",
    "End date", "End time", "Duration", "Tags", "Amount (USD)",
]  # fmt: skip


def _toggl_row(**overrides: str) -> dict[str, str]:
    row = {
        "User": "Mary Smith", "Email": "mary@example.com", "Client": "Globex Corporation",
        "Project": "Website Redesign", "Task": "", "Description": "Pairing", "Billable": "Yes",
        "Start date": "2026-09-14", "Start time": "09:00:00", "End date": "2026-09-14", "End time": "10:20:00",
        "Duration": "01:20:00", "Tags": "frontend, urgent", "Amount (USD)": "200.00",
    }  # fmt: skip
    row.update(overrides)
    return row


def test_toggl_csv_with_bom_amount_currency_and_duration(mapping, write_file) -> None:
    data = codecs.BOM_UTF8 + csv_bytes(
        TOGGL_HEADER, [_toggl_row(), _toggl_row(Duration="30:00:00", **{"Start date": "2026-09-15"})]
    )
    parsed = _parse(write_file("toggl.csv", data), "us", mapping)
    assert parsed.format == "toggl_csv" and parsed.error is None
    row = parsed.rows.row(0, named=True)
    assert row["source_system"] == "toggl_csv"
    assert row["work_date"] == date(2026, 9, 14)
    assert (row["person"], row["email"], row["notes"]) == ("Mary Smith", "mary@example.com", "Pairing")
    assert row["hours_raw"] == "1.3333"
    assert row["currency_raw"] == "USD"
    assert row["task"] is None and row["approved_raw"] is None
    assert json.loads(row["source_record"])["Tags"] == "frontend, urgent"
    assert parsed.rows["hours_raw"][1] == "30.0000"


def test_toggl_amount_header_without_currency_gives_no_currency(mapping, write_file) -> None:
    header = [*TOGGL_HEADER[:-1], "Amount ()"]
    row = {**_toggl_row(), "Amount ()": ""}
    parsed = _parse(write_file("t.csv", csv_bytes(header, [row])), "us", mapping)
    assert parsed.rows["currency_raw"].to_list() == [None]


# --- canonical --------------------------------------------------------------------------------

CANONICAL = [
    "source_id", "date", "client", "client_id", "project", "project_code", "task", "person", "person_id",
    "email", "notes", "hours", "rounded_hours", "billable", "approved", "invoiced", "bill_rate", "cost_rate",
    "currency",
]  # fmt: skip


def _canonical_row(**overrides: str) -> dict[str, str]:
    row = dict.fromkeys(CANONICAL, "")
    row.update(
        source_id="TT-1", date="2026-09-14", client="Globex Corporation", project="Website Redesign",
        task="Development", person="Mary Smith", hours="7.50", billable="true", approved="true",
        bill_rate="150.00", currency="USD",
    )  # fmt: skip
    row.update(overrides)
    return row


def test_canonical_csv_keeps_explicit_source_ids(mapping, write_file) -> None:
    rows = [_canonical_row(), _canonical_row(source_id="TT-2", hours="1.25", notes="Call")]
    parsed = _parse(write_file("drop.csv", csv_bytes(CANONICAL, rows)), "us", mapping)
    assert parsed.format == "canonical_csv"
    assert parsed.rows["source_id"].to_list() == ["TT-1", "TT-2"]
    assert parsed.rows["hours_raw"].to_list() == ["7.50", "1.25"]
    assert parsed.rows["notes"].to_list() == [None, "Call"]
    assert parsed.rows["source_system"].unique().to_list() == ["canonical_csv"]


def test_canonical_csv_row_without_source_id_is_quarantined(mapping, write_file) -> None:
    rows = [_canonical_row(), _canonical_row(source_id="")]
    parsed = _parse(write_file("drop.csv", csv_bytes(CANONICAL, rows)), "us", mapping)
    assert parsed.rows.height == 1
    assert parsed.quarantine["reason"].to_list() == ["missing_required"]
    assert "source_id" in parsed.quarantine["detail"][0]


@pytest.mark.parametrize("envelope", [False, True])
def test_canonical_json_list_or_envelope_keeps_numbers_as_written(mapping, write_file, envelope) -> None:
    entries = [
        {"source_id": "J-1", "date": "2026-09-14", "client": "Globex Corporation", "project": "Website Redesign",
         "task": "Development", "person": "Mary Smith", "hours": 7.50, "billable": True, "bill_rate": "150.00",
         "currency": "USD"},
        {"source_id": 42, "date": "2026-09-15", "client": "Globex Corporation", "project": "Website Redesign",
         "task": "QA", "person": "Mary Smith", "hours": "0.1", "billable": False},
    ]  # fmt: skip
    doc = {"time_entries": entries} if envelope else entries
    text = json.dumps(doc).replace("7.5,", "7.50,")
    parsed = _parse(write_file("drop.json", text.encode()), "us", mapping)
    assert parsed.format == "canonical_json" and parsed.error is None
    assert parsed.rows["source_id"].to_list() == ["J-1", "42"]
    assert parsed.rows["hours_raw"].to_list() == ["7.50", "0.1"]
    assert parsed.rows["billable_raw"].to_list() == ["true", "false"]
    assert parsed.rows["currency_raw"].to_list() == ["USD", None]
    assert json.loads(parsed.rows["source_record"][0])["hours"] == "7.50"


def test_canonical_json_that_is_not_a_list_of_entries_is_an_unknown_format(mapping, write_file) -> None:
    parsed = _parse(write_file("other.json", b'{"projects": []}'), "us", mapping)
    assert parsed.error is not None and "other.json" in parsed.error and "projects" in parsed.error
    assert parsed.quarantine["reason"].to_list() == ["unknown_format"]


# --- files that cannot be used ----------------------------------------------------------------


def test_unknown_format_names_the_file_the_expected_formats_and_the_columns_found(
    mapping, write_file
) -> None:
    path = write_file("bank.csv", b"Booking Date,Amount,Counterparty\n2026-09-01,100.00,ACME\n")
    parsed = _parse(path, "us", mapping)
    assert parsed.error == (
        "bank.csv: not a recognised format; expected one of: Harvest Detailed Time CSV (columns Date, Client, "
        "Project, Task, Hours, ...), Toggl detailed CSV, canonical CSV/JSON, Harvest expense CSV (Date, Client, "
        "Project, Category, Amount, ...) (see docs/formats.md); found columns: Booking Date, Amount, Counterparty"
    )
    assert parsed.format == "unknown"
    assert parsed.rows_in == 1 and parsed.rows.height == 0
    q = parsed.quarantine.row(0, named=True)
    assert (q["reason"], q["source_file"], q["detail"], q["partition_date"]) == (
        "unknown_format",
        "bank.csv",
        parsed.error,
        EXTRACTED_AT.date(),
    )


def test_harvest_export_missing_a_required_column_names_it(mapping, write_file) -> None:
    header = [h for h in HARVEST_HEADER if h != "Task"]
    parsed = _parse(write_file("notask.csv", csv_bytes(header, [harvest_row()])), "us", mapping)
    assert parsed.error is not None
    assert "Harvest Detailed Time CSV" in parsed.error and "lacks required column(s): Task" in parsed.error
    assert parsed.quarantine["reason"].to_list() == ["missing_required"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty"), (b'Date,Client\n"2026-09-01,ACME\n', "not readable as CSV"), (b"[{]", "not valid JSON")],
)
def test_unreadable_files_are_reported_not_raised(mapping, write_file, content, expected) -> None:
    parsed = _parse(write_file("broken.csv", content), "us", mapping)
    assert parsed.error is not None and expected in parsed.error and "broken.csv" in parsed.error
    assert parsed.quarantine["reason"].to_list() == ["file_unreadable"]


def test_header_only_export_has_no_rows_and_no_error(mapping, write_file) -> None:
    parsed = _parse(write_file("empty.csv", csv_bytes(HARVEST_HEADER, [])), "us", mapping)
    assert (parsed.error, parsed.rows_in, parsed.format) == (None, 0, "harvest_csv")


def test_forced_format_that_does_not_match_names_the_missing_columns(mapping, write_file) -> None:
    path = write_file("h.csv", csv_bytes(HARVEST_HEADER, [harvest_row()]))
    parsed = _parse(path, "us", mapping, fmt="canonical_csv")
    assert parsed.error is not None and "canonical CSV" in parsed.error and "source_id" in parsed.error


def test_unknown_entity_is_a_caller_error(mapping, write_file) -> None:
    path = write_file("h.csv", csv_bytes(HARVEST_HEADER, [harvest_row()]))
    with pytest.raises(KeyError, match="unknown entity 'fr'"):
        parse_file(path, "fr", mapping, extracted_at=EXTRACTED_AT)


def test_every_demo_export_row_is_accounted_for(tmp_path) -> None:
    import yaml

    from pm_accounting_pipeline.config.schema import parse_mapping
    from pm_accounting_pipeline.demo.generator import DemoConfig, write_demo

    files = write_demo(tmp_path, DemoConfig(seed=3, n_clients=10, n_people=12, malformed_rate=0.02))
    demo_mapping = parse_mapping(yaml.safe_load(files.mapping_path.read_text(encoding="utf-8")))
    total_in = total_bad_dates = 0
    for path in files.csv_paths:
        parsed = _parse(path, path.parent.name, demo_mapping)
        assert parsed.error is None
        total_in += parsed.rows_in
        total_bad_dates += parsed.quarantine.filter(pl.col("reason") == "bad_date").height
    assert total_in == files.rows_written
    assert total_bad_dates == files.malformed_by_kind["bad_date"] > 0
