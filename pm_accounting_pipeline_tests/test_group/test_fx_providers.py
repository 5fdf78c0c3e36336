"""Rate sources: ECB offline and its XML feed over HTTP (loopback sandbox), manual overrides,
contract rates, precedence, fallback on weekends and holidays, cross rates, monthly averages,
and zero- and three-decimal currencies converted end to end."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import httpx
import polars as pl
import pytest

from pm_accounting_pipeline.config.group import ContractRate
from pm_accounting_pipeline.core.clean import clean_and_map
from pm_accounting_pipeline.core.fx import EcbOfflineProvider, enrich
from pm_accounting_pipeline.core.fx_providers import (
    CompositeRateProvider,
    ContractRates,
    EcbFeedProvider,
    EcbOfflineSource,
    FxSourceError,
    ManualOverrides,
    parse_ecb_xml,
    provider_for,
    requested_pairs,
)
from pm_accounting_pipeline.core.rating import rate
from pm_accounting_pipeline.sandboxes.ecb import render, serve
from pm_accounting_pipeline_tests.test_core.builders import make_raw
from pm_accounting_pipeline_tests.test_group.builders import group_mapping, hand_rates, legs_frame, write_csv

TWELVE = Decimal(1).scaleb(-12)
SATURDAY, FRIDAY, MONDAY = date(2026, 2, 28), date(2026, 2, 27), date(2026, 3, 2)
CHRISTMAS, CHRISTMAS_EVE = date(2025, 12, 25), date(2025, 12, 24)


@pytest.fixture(scope="module")
def ecb() -> CompositeRateProvider:
    return CompositeRateProvider(precedence=("ecb_offline",), market={"ecb_offline": EcbOfflineSource()})


def _published(currency: str) -> dict[date, Decimal]:
    return EcbOfflineProvider().euro_rates(currency)


# --- fallback ------------------------------------------------------------------------------------


def test_weekend_rate_falls_back_to_last_published(ecb):
    usd = _published("USD")
    assert SATURDAY not in usd
    rate_, rate_date, source, rate_type = ecb.lookup("EUR", "USD", SATURDAY)
    assert (rate_, rate_date, source, rate_type) == (
        usd[FRIDAY].quantize(TWELVE),
        FRIDAY,
        "ecb_offline",
        "spot",
    )


def test_holiday_rate_is_christmas_eves(ecb):
    gbp = _published("GBP")
    assert CHRISTMAS not in gbp
    assert ecb.lookup("EUR", "GBP", CHRISTMAS)[:2] == (gbp[CHRISTMAS_EVE].quantize(TWELVE), CHRISTMAS_EVE)


def test_next_published_fallback_uses_mondays_rate():
    nxt = CompositeRateProvider(
        precedence=("ecb_offline",), market={"ecb_offline": EcbOfflineSource()}, fallback="next_published"
    )
    assert nxt.lookup("EUR", "USD", SATURDAY)[:2] == (_published("USD")[MONDAY].quantize(TWELVE), MONDAY)


def test_no_fallback_leaves_the_weekend_without_a_rate():
    strict = CompositeRateProvider(
        precedence=("ecb_offline",), market={"ecb_offline": EcbOfflineSource()}, fallback="none"
    )
    assert strict.lookup("EUR", "USD", SATURDAY) is None
    out = strict.rates(requested_pairs([("EUR", "USD", SATURDAY), ("EUR", "USD", FRIDAY)])).sort("date")
    assert out["rate"].to_list() == [_published("USD")[FRIDAY].quantize(TWELVE), None]


def test_a_rate_older_than_the_staleness_limit_counts_as_missing():
    manual = hand_rates(max_staleness_days=3)
    assert manual.lookup("EUR", "USD", date(2026, 3, 5))[:2] == (Decimal("1.10"), date(2026, 3, 2))
    assert manual.lookup("EUR", "USD", date(2026, 3, 6)) is None


# --- cross rates, decimals -----------------------------------------------------------------------


def test_cross_rate_goes_through_eur(ecb):
    usd, gbp = _published("USD")[MONDAY], _published("GBP")[MONDAY]
    expected = (usd / gbp).quantize(TWELVE, rounding=ROUND_HALF_EVEN)
    assert ecb.lookup("GBP", "USD", MONDAY)[:3] == (expected, MONDAY, "ecb_offline")
    # Same answer as the foundation's provider.
    assert EcbOfflineProvider().lookup("GBP", "USD", MONDAY) == (expected, MONDAY)


def test_hand_picked_cross_rates():
    p = hand_rates()
    # GBP->USD = 1.10 / 0.85; JPY->USD = 1.10 / 160 = 0.006875 exactly; KWD->USD = 1.10 / 0.34.
    assert p.lookup("GBP", "USD", MONDAY)[0] == Decimal("1.294117647059")
    assert p.lookup("JPY", "USD", MONDAY)[0] == Decimal("0.006875000000")
    assert p.lookup("KWD", "USD", MONDAY)[0] == Decimal("3.235294117647")


def test_kwd_missing_from_ecb_comes_from_a_manual_euro_leg(ecb):
    assert ecb.lookup("KWD", "USD", MONDAY) is None
    manual = ManualOverrides(legs_frame({MONDAY: {"KWD": "0.33"}}))
    mixed = CompositeRateProvider(
        precedence=("manual", "ecb_offline"), market={"ecb_offline": EcbOfflineSource()}, manual=manual
    )
    usd = _published("USD")[MONDAY]
    got = mixed.lookup("KWD", "USD", MONDAY)
    assert got == (
        (usd / Decimal("0.33")).quantize(TWELVE, rounding=ROUND_HALF_EVEN),
        MONDAY,
        "ecb_offline+manual",
        "spot",
    )


def test_jpy_and_kwd_amounts_convert_to_whole_yen_and_fils_and_cents():
    m = group_mapping()
    raw = make_raw(
        [
            {"client": "Tokyo Trading KK", "project": "Import", "hours_raw": "1.5"},
            {"client": "Gulf Partners", "project": "Audit", "hours_raw": "1.5"},
        ]
    )
    rated = rate(clean_and_map(raw, m).work_items, m).rated
    fx = enrich(rated, m, hand_rates()).fx.sort("currency")
    jpy, kwd = fx.row(0, named=True), fx.row(1, named=True)
    # 1.5 h x 12,345 JPY = 18,517.5 -> 18,518 JPY (0 decimals); x 0.006875 = 127.31125 -> 127.31 USD.
    assert (jpy["currency"], jpy["amount_minor"], jpy["amount_functional_minor"]) == ("JPY", 18518, 12731)
    # 1.5 h x 45.125 KWD = 67.6875 -> 67.688 KWD (3 decimals); x 3.235294117647 = 218.9929.. -> 218.99 USD.
    assert (kwd["currency"], kwd["amount_minor"], kwd["amount_functional_minor"]) == ("KWD", 67688, 21899)
    assert (kwd["fx_rate_source"], kwd["fx_rate_type"], kwd["fx_rate_date"]) == ("manual", "spot", MONDAY)


# --- contracts, manual, precedence, monthly average ----------------------------------------------


def _contracts() -> ContractRates:
    c = ContractRate(
        id="gulf-msa", client="Gulf Partners", contract="MSA-7", from_currency="KWD", to_currency="USD",
        rate=Decimal("3.25"), valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 31),
    )  # fmt: skip
    return ContractRates([c], {"Gulf Partners": "C-GULF"})


def test_contract_rate_applies_to_its_client_only():
    p = CompositeRateProvider(
        precedence=("contract", "manual"),
        market={},
        manual=ManualOverrides(legs_frame()),
        contracts=_contracts(),
    )
    pairs = pl.DataFrame(
        {
            "from_currency": ["KWD", "KWD"],
            "to_currency": ["USD", "USD"],
            "date": [MONDAY, MONDAY],
            "customer_ref": ["C-GULF", "C-ACME"],
        }
    )
    out = {r["customer_ref"]: r for r in p.rates(pairs).iter_rows(named=True)}
    assert (out["C-GULF"]["rate"], out["C-GULF"]["source"], out["C-GULF"]["rate_type"]) == (
        Decimal("3.25"), "contract:gulf-msa/MSA-7", "contract",
    )  # fmt: skip
    assert (out["C-ACME"]["rate"], out["C-ACME"]["source"]) == (Decimal("3.235294117647"), "manual")
    # The inverse pair is served as 1 / rate; outside its validity the market rate applies.
    assert p.lookup("USD", "KWD", MONDAY, "C-GULF")[0] == Decimal("0.307692307692")
    assert p.lookup("KWD", "USD", date(2025, 12, 31), "C-GULF") is None


def test_precedence_order_decides_between_manual_and_ecb():
    manual = ManualOverrides(legs_frame({MONDAY: {"USD": "1.2345"}}))
    first = CompositeRateProvider(
        precedence=("manual", "ecb_offline"), market={"ecb_offline": EcbOfflineSource()}, manual=manual
    )
    last = CompositeRateProvider(
        precedence=("ecb_offline", "manual"), market={"ecb_offline": EcbOfflineSource()}, manual=manual
    )
    assert first.lookup("EUR", "USD", MONDAY)[:3] == (Decimal("1.2345"), MONDAY, "manual")
    assert last.lookup("EUR", "USD", MONDAY)[:3] == (
        _published("USD")[MONDAY].quantize(TWELVE),
        MONDAY,
        "ecb_offline",
    )


def test_monthly_average_is_the_mean_of_each_euro_leg_over_the_month():
    p = hand_rates()
    # March: USD legs 1.10 and 1.12 (mean 1.11), GBP 0.85 and 0.86 (mean 0.855): 1.11 / 0.855.
    got = p.lookup("GBP", "USD", date(2026, 3, 10), rate_type="monthly_average")
    assert got == (Decimal("1.298245614035"), date(2026, 3, 31), "manual", "monthly_average")


def test_override_file_is_read_and_every_bad_row_is_reported(tmp_path: Path):
    good = write_csv(
        tmp_path / "ok.csv", "date,from_currency,to_currency,rate,note", "2026-03-02,USD,KWD,0.3075,treasury"
    )
    assert ManualOverrides.from_csv(good).pair("KWD", "USD")[1] is True
    bad = write_csv(
        tmp_path / "bad.csv",
        "date,from_currency,to_currency,rate",
        "2026-02-30,USD,KWD,0.3",
        "2026-03-02,USD,ABC,0.3",
        "2026-03-02,USD,KWD,-1",
        "2026-03-03,USD,USD,1",
        "2026-03-04,USD,KWD,0.3",
        "2026-03-04,USD,KWD,0.31",
    )
    with pytest.raises(FxSourceError) as err:
        ManualOverrides.from_csv(bad)
    msg = str(err.value)
    for fragment in (
        "bad.csv:2: date '2026-02-30' is not YYYY-MM-DD",
        "bad.csv:3: unknown currency 'ABC'",
        "bad.csv:4: rate '-1' must be positive",
        "bad.csv:5: from_currency and to_currency are both USD",
        "USD->KWD is overridden twice on 2026-03-04",
    ):
        assert fragment in msg
    assert ManualOverrides.from_csv(tmp_path / "missing.csv").rows.height == 0


def test_provider_from_the_mapping_document_reads_overrides_from_the_data_folder(tmp_path: Path):
    m = group_mapping(exchange_rates={"precedence": ["manual", "ecb_offline"]})
    write_csv(
        tmp_path / "fx" / "overrides.csv", "date,from_currency,to_currency,rate", "2026-03-02,EUR,KWD,0.33"
    )
    p = provider_for(m, tmp_path)
    assert p.lookup("KWD", "EUR", MONDAY)[:3] == (Decimal("3.030303030303"), MONDAY, "manual")


# --- ECB XML feed over HTTP ----------------------------------------------------------------------

FEED_DAYS = {
    date(2026, 3, 5): {"USD": Decimal("1.0850"), "JPY": Decimal("161.20"), "GBP": Decimal("0.8420")},
    date(2026, 3, 6): {"USD": Decimal("1.0900"), "JPY": Decimal("162.00"), "GBP": Decimal("0.8450")},
}


def _feed(server, tmp_path: Path, kind: str = "hist", attempts: int = 4) -> EcbFeedProvider:
    return EcbFeedProvider(
        url=server.feed_url(kind),
        cache_path=tmp_path / "ecb.csv",
        max_attempts=attempts,
        wait_initial=0.001,
        wait_max=0.002,
    )


def test_ecb_xml_is_parsed_and_dtds_are_refused():
    rows = parse_ecb_xml(render(FEED_DAYS))
    assert rows.height == 6 and rows.filter(pl.col("currency") == "JPY")["rate"].to_list() == [
        Decimal("161.2"),
        Decimal("162"),
    ]
    with pytest.raises(FxSourceError, match="DTD"):
        parse_ecb_xml(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


def test_feed_is_fetched_cached_and_served_with_weekend_fallback(tmp_path: Path):
    with serve(rates=FEED_DAYS, as_of=date(2026, 3, 8)) as server:
        feed = _feed(server, tmp_path)
        first = feed.refresh()
        assert (first.not_modified, first.fetched_days, first.first, first.last) == (
            False,
            2,
            date(2026, 3, 5),
            date(2026, 3, 6),
        )
        again = feed.refresh()  # conditional request: same ETag -> 304, cache untouched
        assert again.not_modified and again.cached_days == 2
    p = CompositeRateProvider(
        precedence=("ecb_feed",), market={"ecb_feed": EcbFeedProvider(feed.url, feed.cache_path)}
    )
    # Saturday 2026-03-07 uses Friday's rates: GBP->JPY = 162.00 / 0.8450.
    assert p.lookup("GBP", "JPY", date(2026, 3, 7)) == (
        Decimal("191.715976331361"),
        date(2026, 3, 6),
        "ecb_feed",
        "spot",
    )


def test_daily_feed_accumulates_history_in_the_cache(tmp_path: Path):
    with serve(rates=FEED_DAYS, as_of=date(2026, 3, 5)) as server:
        feed = _feed(server, tmp_path, kind="daily")
        assert feed.refresh().cached_days == 1
        server.app.set_as_of(date(2026, 3, 6))
        assert feed.refresh().cached_days == 2
    assert feed.euro_series("USD").dates == (date(2026, 3, 5), date(2026, 3, 6))


def test_feed_retries_server_errors_and_truncated_documents(tmp_path: Path):
    with serve(rates=FEED_DAYS) as server:
        server.app.fail_next(2, 503)
        server.app.truncate_next(1)
        done = _feed(server, tmp_path, attempts=4).refresh()
        assert (done.attempts, done.cached_days) == (4, 2)
        assert len(server.app.requests) == 4


def test_feed_gives_up_after_its_attempts_and_keeps_the_old_cache(tmp_path: Path):
    with serve(rates=FEED_DAYS) as server:
        feed = _feed(server, tmp_path, attempts=2)
        feed.refresh()
        server.app.set_as_of(date(2026, 3, 9))  # a new document, so no 304
        server.app.fail_next(5, 503)
        with pytest.raises(FxSourceError, match="gave up after 2 attempt"):
            feed.refresh()
    assert EcbFeedProvider(feed.url, feed.cache_path).cached().height == 6


def test_feed_refuses_a_client_error_without_retrying(tmp_path: Path):
    with serve(rates=FEED_DAYS) as server:
        feed = EcbFeedProvider(
            url=f"{server.url}/stats/eurofxref/nope.xml", cache_path=tmp_path / "c.csv", max_attempts=5
        )
        with pytest.raises(FxSourceError, match="HTTP 404"):
            feed.refresh()
        assert len(server.app.requests) == 1


def test_sandbox_control_api_sets_faults_over_http(tmp_path: Path):
    with serve(rates=FEED_DAYS) as server, httpx.Client() as http:
        assert http.post(f"{server.url}/_sandbox/faults?kind=status&status=500&count=1").status_code == 204
        assert http.get(server.feed_url("daily")).status_code == 500
        assert http.get(server.feed_url("daily")).status_code == 200


def test_contract_rates_reach_the_converted_billables_of_their_client_only():
    m = group_mapping(
        exchange_rates={
            "precedence": ["contract", "manual"],
            "contracts": [
                {
                    "id": "gulf-msa",
                    "client": "Gulf Partners",
                    "from_currency": "KWD",
                    "to_currency": "USD",
                    "rate": "3.25",
                }
            ],
        }
    )
    p = hand_rates()
    p.precedence, p.contracts = (
        ("contract", "manual"),
        ContractRates(m.exchange_rates.contracts, {"Gulf Partners": "C-GULF"}),
    )
    assert p.per_client
    raw = make_raw(
        [
            {"client": "Gulf Partners", "project": "Audit", "hours_raw": "1.5"},
            {"client": "Acme Corporation", "project": "Website", "hours_raw": "1"},
        ]
    )
    fx = enrich(rate(clean_and_map(raw, m).work_items, m).rated, m, p).fx
    gulf = fx.filter(pl.col("currency") == "KWD").row(0, named=True)
    # 67.688 KWD x 3.25 (contract) = 219.986 -> 219.99 USD.
    assert (gulf["amount_functional_minor"], gulf["fx_rate_type"], gulf["fx_rate_source"]) == (
        21999,
        "contract",
        "contract:gulf-msa",
    )
    acme = fx.filter(pl.col("currency") == "USD").row(0, named=True)
    assert (acme["fx_rate_type"], acme["amount_functional_minor"]) == ("spot", 15000)
