"""The Harvest client against the loopback sandbox: pagination, faults, limits, permanent errors, breaker."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from pm_accounting_pipeline.sources.harvest_api.client import (
    BreakerPolicy,
    HarvestCircuitOpenError,
    HarvestPermanentError,
    HarvestRetriesExhaustedError,
    RetryPolicy,
)
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import US_ACCOUNT


def test_pagination_follows_links_next_and_returns_every_entry_once(sandbox, make_client):
    client = make_client(per_page=7)
    pages = list(client.iter_pages("time_entries"))
    ids = [r["id"] for p in pages for r in p.records]
    expected = sorted(o["id"] for o in sandbox.objects("time_entries"))
    assert sorted(ids) == expected
    assert len(ids) == len(set(ids))
    assert len(pages) == -(-len(expected) // 7)
    assert pages[1].url.startswith(sandbox.url) and "cursor=" in pages[1].url


def test_numbers_are_parsed_as_decimal_never_float(sandbox, make_client):
    record = make_client().list_all("time_entries")[0]
    assert isinstance(record["hours"], (Decimal, int))
    assert all(not isinstance(v, float) for v in record.values())
    assert isinstance(record["cost_rate"], Decimal) and record["cost_rate"] == Decimal("55.5")


def test_faults_are_retried_until_every_entry_arrives_exactly_once(sandbox, make_client):
    sandbox.set_faults(error_rate=0.25, drop_rate=0.1, truncate_rate=0.1, seed=5)
    client = make_client(per_page=5)
    records = client.list_all("time_entries")
    assert sorted(r["id"] for r in records) == sorted(o["id"] for o in sandbox.objects("time_entries"))
    injected = sandbox.state()["faults_injected"]
    assert injected["error"] >= 3 and injected["drop"] >= 1 and injected["truncate"] >= 1
    assert client.stats.transient_failures == injected["error"] + injected["drop"] + injected["truncate"]
    assert client.stats.gave_up == 0


def test_429_retry_after_is_honoured_exactly(sandbox, make_client):
    sandbox.set_rate_limit("2/1s")
    client = make_client(per_page=1, rate_limit="100/1s")  # a client limiter looser than the server's
    started = time.monotonic()
    users = client.list_all("users")
    elapsed = time.monotonic() - started
    assert len(users) == 3
    assert client.stats.rate_limited == 1
    # Retry-After: 1 was waited exactly: not less, and not an exponential backoff on top.
    assert 1.0 <= elapsed < 1.6


def test_client_limiter_keeps_requests_under_the_server_limit(sandbox, make_client):
    sandbox.set_rate_limit("10/1s")
    client = make_client(per_page=8, rate_limit="10/1s")
    started = time.monotonic()
    records = client.list_all("time_entries")
    elapsed = time.monotonic() - started
    assert len(records) == 120 and client.stats.requests == 15
    assert client.stats.rate_limited == 0
    assert sandbox.state()["rate_limited"] == 0
    assert elapsed >= 1.0  # 15 requests at 10 per second cannot finish within the first second


def test_429_storms_are_waited_out_and_nothing_is_lost(sandbox, make_client):
    sandbox.set_faults(storm_rate=0.1, storm_seconds=0.5, error_rate=0.2, seed=9)
    client = make_client(per_page=6)
    records = client.list_all("time_entries")
    assert sorted(r["id"] for r in records) == sorted(o["id"] for o in sandbox.objects("time_entries"))
    assert client.stats.rate_limited >= 1
    assert client.stats.gave_up == 0


@pytest.mark.parametrize(
    ("overrides", "status"),
    [({"token": "wrong-token"}, 401), ({"account_id": "9999"}, 401)],
)
def test_wrong_token_or_account_is_401_and_not_retried(sandbox, make_client, overrides, status):
    client = make_client(**overrides)
    with pytest.raises(HarvestPermanentError) as info:
        client.list_all("time_entries")
    assert info.value.status == status
    assert "time_entries" in str(info.value)
    assert f"account {overrides.get('account_id', US_ACCOUNT)}" in str(info.value)
    assert "invalid_token" in str(info.value)
    assert client.stats.requests == 1
    assert sandbox.state()["by_status"] == {"401": 1}


def test_unknown_resource_is_a_permanent_404_naming_resource_and_account(sandbox, make_client):
    client = make_client()
    with pytest.raises(HarvestPermanentError, match=r"Harvest invoices_v9 for account 1001: HTTP 404"):
        client.list_all("invoices_v9")
    assert client.stats.requests == 1


def test_invalid_filter_is_a_permanent_422(sandbox, make_client):
    client = make_client()
    with pytest.raises(HarvestPermanentError) as info:
        client.list_all("time_entries", updated_since="yesterday")
    assert info.value.status == 422
    assert client.stats.requests == 1


def test_circuit_breaker_opens_after_repeated_failures_and_stops_calling(sandbox, make_client):
    sandbox.set_faults(error_rate=1.0)
    client = make_client(breaker=BreakerPolicy(fail_max=4, reset_timeout_s=60))
    with pytest.raises(
        HarvestCircuitOpenError, match=r"circuit breaker open for Harvest account 1001 after 4"
    ):
        client.list_all("time_entries")
    assert client.stats.requests == 4
    assert client.breaker_state == "open"
    served = sandbox.state()["requests"]
    with pytest.raises(HarvestCircuitOpenError):
        client.list_all("users")
    assert sandbox.state()["requests"] == served  # an open circuit sends nothing


def test_retry_budget_runs_out_with_a_clear_error(sandbox, make_client):
    sandbox.set_faults(error_rate=1.0)
    client = make_client(retry=RetryPolicy(attempts=3, wait_initial_s=0.001, wait_max_s=0.002))
    with pytest.raises(HarvestRetriesExhaustedError, match=r"gave up after 3 attempt\(s\)") as info:
        client.list_all("projects")
    assert info.value.last_error.status in (500, 502, 503, 504)
    assert client.stats.requests == 3 and client.stats.gave_up == 1


def test_timeouts_are_transient_and_retried(sandbox, make_client):
    sandbox.set_faults(latency_s=0.3)
    client = make_client(
        read_timeout_s=0.1, retry=RetryPolicy(attempts=2, wait_initial_s=0.001, wait_max_s=0.001)
    )
    with pytest.raises(HarvestRetriesExhaustedError, match="timed out"):
        client.list_all("users")
    assert client.stats.requests == 2
