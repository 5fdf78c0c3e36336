"""The Harvest sandbox speaks Harvest: envelope, cursor links, filters, auth, gzip, 429, control API."""

from __future__ import annotations

import gzip
import json
import socket
import time
from datetime import date

import httpx
import pytest

from pm_accounting_pipeline.sandboxes.faults import (
    FaultConfig,
    FaultInjector,
    FaultKind,
    RateLimit,
    SlidingWindowLimiter,
)
from pm_accounting_pipeline.sandboxes.harvest import serve
from pm_accounting_pipeline.sandboxes.harvest_store import HarvestStore
from pm_accounting_pipeline_tests.test_sources.harvest_dataset import (
    TOKEN,
    UK_ACCOUNT,
    US_ACCOUNT,
    small_dataset,
)

HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Harvest-Account-Id": US_ACCOUNT,
    "User-Agent": "tests (t@example.com)",
}


@pytest.fixture(scope="module")
def dataset():
    return small_dataset(entries=40, seed=3)


@pytest.fixture
def sandbox(dataset):
    with serve(port=0, token=TOKEN, account_id=US_ACCOUNT, dataset=dataset) as handle:
        yield handle


_HTTP = httpx.Client(timeout=5)  # pooled: a fresh client per request costs tens of milliseconds


def _get(sandbox, path, headers=HEADERS, **params):
    return _HTTP.get(f"{sandbox.url}{path}", headers=headers, params=params or None)


def test_list_response_has_harvests_envelope_and_cursor_links(sandbox):
    body = _get(sandbox, "/v2/time_entries", per_page=15).json()
    assert set(body) == {
        "time_entries",
        "per_page",
        "total_pages",
        "total_entries",
        "next_page",
        "previous_page",
        "page",
        "links",
    }
    assert (body["per_page"], body["total_pages"], body["total_entries"], body["page"]) == (15, 3, 40, 1)
    assert (body["next_page"], body["previous_page"]) == (2, None)
    assert set(body["links"]) == {"first", "next", "previous", "last"}
    assert "cursor=" in body["links"]["next"] and body["links"]["last"].endswith("page=3&per_page=15")
    second = _HTTP.get(body["links"]["next"], headers=HEADERS).json()
    assert (second["page"], second["previous_page"], second["next_page"]) == (2, 1, 3)
    third = _HTTP.get(second["links"]["next"], headers=HEADERS).json()
    assert third["links"]["next"] is None and third["next_page"] is None
    ids = [e["id"] for page in (body, second, third) for e in page["time_entries"]]
    assert len(ids) == 40 == len(set(ids)) and ids == sorted(ids, reverse=True)


def test_time_entry_objects_carry_every_documented_field(sandbox):
    entry = _get(sandbox, "/v2/time_entries", per_page=1).json()["time_entries"][0]
    assert set(entry) >= {
        "id",
        "spent_date",
        "user",
        "client",
        "project",
        "task",
        "user_assignment",
        "task_assignment",
        "hours",
        "hours_without_timer",
        "rounded_hours",
        "notes",
        "is_locked",
        "locked_reason",
        "is_closed",
        "approval_status",
        "is_billed",
        "invoice",
        "external_reference",
        "timer_started_at",
        "started_time",
        "ended_time",
        "is_running",
        "billable",
        "budgeted",
        "billable_rate",
        "cost_rate",
        "created_at",
        "updated_at",
    }
    assert set(entry["client"]) == {"id", "name", "currency"}
    assert set(entry["project"]) == {"id", "name", "code"}
    assert "hourly_rate" in entry["user_assignment"] and "billable" in entry["task_assignment"]


def test_numbers_are_json_numbers(sandbox):
    text = _get(sandbox, "/v2/users", per_page=1).text
    assert '"cost_rate":55.5' in text and '"default_hourly_rate":100' in text


def test_filters_select_the_documented_subsets(sandbox):
    everything = sandbox.objects("time_entries")
    window = _get(sandbox, "/v2/time_entries", **{"from": "2026-09-01", "to": "2026-09-30"}).json()
    assert window["total_entries"] == sum("2026-09-01" <= e["spent_date"] <= "2026-09-30" for e in everything)
    billed = _get(sandbox, "/v2/time_entries", is_billed="true").json()
    assert billed["total_entries"] == sum(e["is_billed"] for e in everything)
    project_id = everything[0]["project"]["id"]
    by_project = _get(sandbox, "/v2/time_entries", project_id=project_id).json()
    assert {e["project"]["id"] for e in by_project["time_entries"]} == {project_id}
    user_id = everything[0]["user"]["id"]
    assert _get(sandbox, "/v2/time_entries", user_id=user_id).json()["total_entries"] == sum(
        e["user"]["id"] == user_id for e in everything
    )
    since = sorted(e["updated_at"] for e in everything)[-5]
    assert _get(sandbox, "/v2/time_entries", updated_since=since).json()["total_entries"] == 5


def test_cursor_keeps_the_filters_of_the_first_request(sandbox):
    first = _get(sandbox, "/v2/time_entries", is_billed="false", per_page=5).json()
    second = _HTTP.get(first["links"]["next"], headers=HEADERS).json()
    assert all(not e["is_billed"] for e in second["time_entries"])
    assert second["total_entries"] == first["total_entries"]


@pytest.mark.parametrize(
    "headers",
    [
        {**HEADERS, "Authorization": "Bearer nope"},
        {**HEADERS, "Harvest-Account-Id": UK_ACCOUNT},
        {k: v for k, v in HEADERS.items() if k != "Harvest-Account-Id"},
        {k: v for k, v in HEADERS.items() if k != "Authorization"},
    ],
)
def test_requests_without_the_right_token_and_account_get_401(sandbox, headers):
    response = _get(sandbox, "/v2/time_entries", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_missing_user_agent_is_a_400():
    with (
        serve(port=0, token=TOKEN, account_id=US_ACCOUNT, dataset=small_dataset(entries=2)) as sandbox,
        socket.create_connection(("127.0.0.1", int(sandbox.url.rsplit(":", 1)[1]))) as sock,
    ):
        # httpx always sends a User-Agent, so this request is written by hand.
        sock.sendall(
            f"GET /v2/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Harvest-Account-Id: {US_ACCOUNT}\r\nConnection: close\r\n\r\n".encode()
        )
        reply = sock.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 400") and "User-Agent" in reply


def test_bad_parameters_are_422(sandbox):
    assert _get(sandbox, "/v2/time_entries", per_page=2001).status_code == 422
    assert _get(sandbox, "/v2/time_entries", updated_since="last week").status_code == 422
    assert _get(sandbox, "/v2/time_entries", cursor="garbage").status_code == 422
    assert _get(sandbox, "/v2/nothing_here").status_code == 404


def test_gzip_is_sent_when_accepted(sandbox):
    with (
        httpx.Client(headers={**HEADERS, "Accept-Encoding": "gzip"}) as client,
        client.stream("GET", f"{sandbox.url}/v2/time_entries") as response,
    ):
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["total_entries"] == 40
    plain = _get(sandbox, "/v2/time_entries", headers={**HEADERS, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


def test_rate_limit_answers_429_with_retry_after_in_seconds(dataset):
    with serve(port=0, token=TOKEN, account_id=US_ACCOUNT, dataset=dataset, rate_limit="3/2s") as sandbox:
        statuses = [_get(sandbox, "/v2/users") for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert statuses[-1].headers["Retry-After"] == "2"
        assert sandbox.state()["rate_limited"] == 1


def test_edit_changes_content_and_bumps_updated_at(sandbox):
    entry = sandbox.objects("time_entries")[0]
    edited = sandbox.edit("time_entries", entry["id"], {"notes": "new words", "hours": 3.25})
    assert edited["notes"] == "new words" and edited["hours"] == 3.25 and edited["rounded_hours"] == 3.25
    assert edited["updated_at"] > max(
        e["updated_at"] for e in sandbox.objects("time_entries") if e["id"] != entry["id"]
    )
    served = _get(sandbox, f"/v2/time_entries/{entry['id']}").json()
    assert served["notes"] == "new words"


def test_approve_locks_the_entry(sandbox):
    entry = next(e for e in sandbox.objects("time_entries") if e["approval_status"] != "approved")
    approved = sandbox.approve(entry["id"])
    assert (approved["approval_status"], approved["is_locked"], approved["locked_reason"]) == (
        "approved",
        True,
        "Approved",
    )


def test_deleted_entries_simply_disappear(sandbox):
    entry = sandbox.objects("time_entries")[0]
    sandbox.delete("time_entries", entry["id"])
    assert _get(sandbox, "/v2/time_entries").json()["total_entries"] == 39
    assert _get(sandbox, f"/v2/time_entries/{entry['id']}").status_code == 404


def test_backdated_entry_has_an_old_date_and_a_new_updated_at(sandbox):
    newest = max(e["updated_at"] for e in sandbox.objects("time_entries"))
    created = sandbox.add_backdated(date(2026, 8, 2))
    assert created["spent_date"] == "2026-08-02"
    assert created["updated_at"] > newest and created["created_at"] == created["updated_at"]
    since = _get(sandbox, "/v2/time_entries", updated_since=created["updated_at"]).json()
    assert [e["id"] for e in since["time_entries"]] == [created["id"]]


def test_faults_are_reproducible_for_a_seed(sandbox):
    def run() -> list[int]:
        sandbox.set_faults(error_rate=0.4, seed=99)
        return [_get(sandbox, "/v2/users").status_code for _ in range(12)]

    first, second = run(), run()
    assert first == second and 200 in first and any(s >= 500 for s in first)


def test_truncated_bodies_are_invalid_json_with_a_consistent_length(sandbox):
    sandbox.set_faults(truncate_rate=1.0)
    response = _get(sandbox, "/v2/time_entries")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_dropped_connections_close_without_a_response(sandbox):
    sandbox.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        _get(sandbox, "/v2/users")


def test_latency_fault_delays_answers(sandbox):
    sandbox.set_faults(latency_s=0.2)
    started = time.monotonic()
    assert _get(sandbox, "/v2/users").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_store_serves_the_entity_of_the_account_and_falls_back_to_the_first(dataset):
    assert HarvestStore.from_dataset(dataset, UK_ACCOUNT).entity == "uk"
    assert HarvestStore.from_dataset(dataset, "424242").entity == "us"
    uk = HarvestStore.from_dataset(dataset, UK_ACCOUNT)
    assert {o["client"]["currency"] for o in uk.objects("time_entries")} <= {"GBP", "EUR"}


def test_expenses_are_derived_deterministically(dataset):
    first = HarvestStore.from_dataset(dataset, US_ACCOUNT).objects("expenses")
    again = HarvestStore.from_dataset(dataset, US_ACCOUNT).objects("expenses")
    assert first == again and len(first) > 0
    mileage = [e for e in first if e["expense_category"]["name"] == "Mileage"]
    assert all(e["total_cost"] == e["units"] * e["expense_category"]["unit_price"] for e in mileage)


def test_sandbox_serves_the_demo_generator_dataset():
    from pm_accounting_pipeline.demo.generator import DemoConfig, generate

    demo = generate(DemoConfig(seed=5, entries=300, n_clients=6, n_people=8))
    account = str(demo.entities["harvest_account_id"][1])
    store = HarvestStore.from_dataset(demo, account)
    assert store.entity == str(demo.entities["entity"][1])
    assert (
        store.counts()["time_entries"]
        == demo.time_entries.filter(demo.time_entries["entity"] == store.entity).height
    )


def test_rate_limit_text_parses_vendor_styles():
    assert RateLimit.parse("100/15s") == RateLimit(100, 15.0)
    assert RateLimit.parse("500/1m") == RateLimit(500, 60.0)
    assert RateLimit.parse("20/s") == RateLimit(20, 1.0)
    with pytest.raises(ValueError):
        RateLimit.parse("fast")


def test_sliding_window_limiter_counts_only_admitted_requests():
    now = [0.0]
    limiter = SlidingWindowLimiter(RateLimit(2, 10.0), clock=lambda: now[0])
    assert [limiter.admit("a"), limiter.admit("a"), limiter.admit("a")] == [None, None, 10]
    now[0] = 9.5
    assert limiter.admit("a") == 1 and limiter.admit("b") is None
    now[0] = 10.0
    assert limiter.admit("a") is None


def test_fault_storm_refuses_every_request_until_it_ends():
    now = [0.0]
    injector = FaultInjector(FaultConfig(storm_rate=1.0, storm_seconds=2.0), clock=lambda: now[0])
    first = injector.decide()
    assert (first.kind, first.retry_after_s) == (FaultKind.STORM, 2)
    now[0] = 1.5
    assert injector.decide().retry_after_s == 1
    with pytest.raises(ValueError):
        FaultConfig.from_json({"eror_rate": 0.5})
