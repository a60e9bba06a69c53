"""The responder interface on a real PostgreSQL: the CLI (alerts, sessions, silences) and the
HTTP API (/api/v1, bearer token, OpenAPI), including hostile filter values."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from monitor import store

from monitor.response import api

from monitor.response import queries as responder
from monitor.commands.cli import main
from monitor.service.config import load_settings
from monitor.service.housekeeping import load_silences
from monitor.alerting.gate import AlertGate
from monitor.support.metrics import Metrics
from monitor.service.shards import build_shard
from sinks.postgres import PostgresSink

pytestmark = pytest.mark.integration
TOKEN = "s3cret-responder-token"
HOSTILE = [
    "staff-0042' OR '1'='1",
    "x'; DROP TABLE alerts; --",
    "\" OR 1=1 --",
    "%",
    "simultaneous_logins' UNION SELECT * FROM flagged_sessions --",
]


def event(n: int, minute: int, kind: str, session: str, ip: str | None = None, **extra) -> bytes:
    record = {"event_id": f"evt-{n}", "type": kind, "ts": f"2026-03-02T08:{minute:02d}:00Z",
              "account_id": "staff-0042", "portal": "schools", "session_id": session}
    if ip:
        record["ip"] = ip
    record.update(extra)
    return json.dumps(record).encode()


EVENTS = [
    event(1, 0, "login_succeeded", "s1", "81.2.69.10", user_agent="Firefox"),
    event(2, 1, "page_view", "s1", "81.2.69.10", resource="/pupils/4711/attendance"),
    event(3, 5, "login_succeeded", "s2", "86.150.3.7", user_agent="Chrome"),
    event(4, 6, "page_view", "s2", "86.150.3.7", resource="/pupils/4711/reports", action="download"),
    event(5, 7, "page_view", "s1", "81.2.69.10", resource="/pupils/4712/behaviour"),
    event(6, 9, "logout", "s2"),
]


async def seed(dsn: str) -> str:
    """Run the shared-login events through a shard into the store; the alert id."""
    settings = load_settings(environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})
    shard = build_shard(settings, 0)
    findings = shard.process(list(enumerate(EVENTS)))
    findings.extend(shard.drain())
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        await PostgresSink(pool).write(findings)
    finally:
        await pool.close()
    [alert] = findings.alerts
    return alert.alert_id


@pytest.fixture
def seeded(postgres_dsn, monkeypatch):
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    return asyncio.run(seed(postgres_dsn))


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    finally:
        structlog.reset_defaults()  # the CLI bound its logs to capsys's stderr, closed after the test
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_alerts_list_show_ack_resolve(seeded, capsys):
    code, out, _ = cli(capsys, "alerts", "list", "--format", "json")
    assert code == 0
    [row] = json.loads(out)
    assert row["alert_id"] == seeded and row["status"] == "open" and row["repeat_count"] == 1

    code, out, _ = cli(capsys, "alerts", "list", "--format", "csv", "--detector", "simultaneous_logins", "--severity", "high")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["alert_id"] for r in parsed] == [seeded]

    code, out, _ = cli(capsys, "alerts", "list", "--status", "resolved")
    assert code == 0 and "(none)" in out

    code, out, _ = cli(capsys, "alerts", "show", seeded[:8], "--format", "json")
    shown = json.loads(out)
    assert code == 0 and shown["alert_id"] == seeded
    assert shown["evidence"]["new_session"]["ip"] == "86.150.3.7"

    code, out, _ = cli(capsys, "alerts", "ack", seeded, "--note", "calling the school", "--actor", "dana")
    assert code == 0 and "acknowledged" in out
    code, out, err = cli(capsys, "alerts", "resolve", seeded, "--verdict", "false_positive", "--note", "same teacher, VPN", "--actor", "dana")
    assert code == 0 and "false_positive" in out
    code, _, err = cli(capsys, "alerts", "resolve", seeded, "--verdict", "true_positive")
    assert code == 1 and "already resolved" in err
    code, _, err = cli(capsys, "alerts", "ack", seeded)
    assert code == 1 and "resolved" in err

    code, out, _ = cli(capsys, "alerts", "show", seeded)
    assert code == 0 and "dana" in out and "same teacher, VPN" in out and "false_positive" in out

    code, _, err = cli(capsys, "alerts", "show", "0000000000")
    assert code == 1 and "no alert" in err
    code, _, err = cli(capsys, "alerts", "list", "--since", "yesterday-ish")
    assert code == 2 and "not a time" in err


def test_cli_sessions_timeline(seeded, capsys):
    code, out, _ = cli(capsys, "sessions", "list", "--flagged", "--format", "json")
    assert code == 0 and sorted(s["session_id"] for s in json.loads(out)) == ["s1", "s2"]

    code, out, _ = cli(capsys, "sessions", "show", "s2", "--format", "json")
    session = json.loads(out)
    events = [(t["event"], t["resource"]) for t in session["timeline"]]
    assert events == [("login", None), ("download", "/pupils/4711/reports"), ("logout", None)]
    assert session["timeline"][0]["at"].startswith("2026-03-02T08:05:00")
    assert session["alerts"][0]["alert_id"] == seeded

    code, out, _ = cli(capsys, "sessions", "show", "s1", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["resource"] for r in rows] == ["", "/pupils/4711/attendance", "/pupils/4712/behaviour"]

    code, out, _ = cli(capsys, "sessions", "show", "s1")
    assert code == 0 and "timeline:" in out and "/pupils/4712/behaviour" in out

    code, _, err = cli(capsys, "sessions", "show", "nope")
    assert code == 1 and "no flagged session" in err


def test_cli_silences_add_list_remove(seeded, capsys):
    code, out, _ = cli(capsys, "silences", "add", "--network", "192.0.2.7/24", "--expires", "2h", "--reason", "pen test", "--format", "json")
    silence = json.loads(out)
    assert code == 0 and silence["network"] == "192.0.2.0/24"
    code, out, _ = cli(capsys, "silences", "list", "--format", "json")
    assert [s["silence_id"] for s in json.loads(out)] == [silence["silence_id"]]
    code, _, err = cli(capsys, "silences", "add", "--expires", "2h")
    assert code == 2 and "account, a detector or a network" in err
    code, _, err = cli(capsys, "silences", "add", "--network", "not-a-net", "--expires", "2h")
    assert code == 2 and "CIDR" in err
    code, out, _ = cli(capsys, "silences", "remove", str(silence["silence_id"]))
    assert code == 0
    code, out, _ = cli(capsys, "silences", "list")
    assert "(none)" in out


@pytest.mark.parametrize("value", HOSTILE)
def test_cli_hostile_filters_are_just_values(seeded, capsys, value):
    code, out, _ = cli(capsys, "alerts", "list", "--account", value, "--format", "json")
    assert code == 0 and json.loads(out) == []
    with pytest.raises(SystemExit) as stopped:  # a detector is checked against the registry's ids first
        cli(capsys, "alerts", "list", "--detector", value, "--format", "json")
    assert stopped.value.code == 2 and "unknown detector" in capsys.readouterr().err
    code, out, _ = cli(capsys, "sessions", "list", "--account", value, "--format", "json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = cli(capsys, "alerts", "list", "--format", "json")
    assert [a["alert_id"] for a in json.loads(out)] == [seeded]  # the table is still there, untouched


# -- HTTP API -----------------------------------------------------------------------------------


@pytest.fixture
async def client(postgres_dsn):
    alert_id = await seed(postgres_dsn)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    app = web.Application()
    assert api.mount(app, TOKEN, lambda: pool)
    async with TestClient(TestServer(app)) as http:
        http.alert_id = alert_id
        http.pool = pool
        yield http
    await pool.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_api_rejects_missing_or_wrong_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                    {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path in (("GET", "/api/v1/alerts"), ("GET", f"/api/v1/alerts/{client.alert_id}"),
                             ("POST", f"/api/v1/alerts/{client.alert_id}/resolve"), ("GET", "/api/v1/sessions/s1"),
                             ("POST", "/api/v1/silences")):
            response = await client.request(method, path, headers=headers, json={"verdict": "true_positive"})
            assert response.status == 401, (headers, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "alert_id" not in await response.text()
    assert (await client.pool.fetchrow("SELECT status FROM alerts"))["status"] == "open"
    response = await client.get("/api/v1/alerts", headers=AUTH)
    assert response.status == 200
    assert [a["alert_id"] for a in (await response.json())["alerts"]] == [client.alert_id]


async def test_api_openapi_document_is_served(client):
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    assert {"/alerts", "/alerts/{alert_id}", "/alerts/{alert_id}/ack", "/alerts/{alert_id}/resolve",
            "/sessions", "/sessions/{session_id}", "/silences"} <= set(document["paths"])
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("value", HOSTILE)
async def test_api_hostile_filters_are_harmless(client, value):
    for key in ("account", "detector"):
        response = await client.get("/api/v1/alerts", params={key: value}, headers=AUTH)
        assert response.status == 200 and (await response.json())["alerts"] == []
    response = await client.get("/api/v1/sessions", params={"account": value, "alert": value}, headers=AUTH)
    assert response.status == 200 and (await response.json())["sessions"] == []
    for key in ("severity", "status", "since", "limit"):
        response = await client.get("/api/v1/alerts", params={key: value}, headers=AUTH)
        assert response.status == 400, key
        assert "error" in await response.json()
    response = await client.get(f"/api/v1/sessions/{value}", headers=AUTH)
    assert response.status in (404, 400)  # a path never reaches SQL as text
    response = await client.get("/api/v1/alerts", headers=AUTH)
    assert [a["alert_id"] for a in (await response.json())["alerts"]] == [client.alert_id]


async def test_api_lifecycle_and_verdict_totals(client):
    alert_id = client.alert_id
    response = await client.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "on it", "actor": "sam"}, headers=AUTH)
    assert response.status == 200 and (await response.json())["status"] == "acknowledged"
    response = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"verdict": "maybe"}, headers=AUTH)
    assert response.status == 400
    response = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"verdict": "true_positive", "note": "shared password"}, headers=AUTH)
    body = await response.json()
    assert response.status == 200 and body["status"] == "resolved" and body["verdict"] == "true_positive"
    assert [a["action"] for a in body["actions"]] == ["acknowledge", "resolve"]
    response = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"verdict": "true_positive"}, headers=AUTH)
    assert response.status == 409
    response = await client.get("/api/v1/alerts/ffffffffffff", headers=AUTH)
    assert response.status == 404
    response = await client.get("/api/v1/alerts", params={"status": "resolved", "since": "2026-03-01"}, headers=AUTH)
    assert len((await response.json())["alerts"]) == 1

    metrics = Metrics(["simultaneous_logins"])
    metrics.alert_verdicts.update(await responder.verdict_totals(client.pool))
    samples = {tuple(s.labels.values()): s.value for fam in metrics.alert_verdicts.collect() for s in fam.samples}
    assert samples[("simultaneous_logins", "true_positive")] == 1
    assert samples[("simultaneous_logins", "false_positive")] == 0


async def test_api_session_timeline_and_silences(client):
    response = await client.get("/api/v1/sessions/s2", headers=AUTH)
    session = await response.json()
    assert [t["event"] for t in session["timeline"]] == ["login", "download", "logout"]
    response = await client.get("/api/v1/sessions", params={"alert": client.alert_id}, headers=AUTH)
    assert sorted(s["session_id"] for s in (await response.json())["sessions"]) == ["s1", "s2"]

    response = await client.post("/api/v1/silences", json={"account_id": "staff-0042", "expires": "2099-01-01T00:00:00Z", "reason": "known"}, headers=AUTH)
    assert response.status == 201
    silence = await response.json()
    gate = AlertGate(cooldown=900)
    await load_silences(client.pool, gate, [])
    assert [s.account_id for s in gate.silences] == ["staff-0042"]
    response = await client.delete(f"/api/v1/silences/{silence['silence_id']}", headers=AUTH)
    assert response.status == 200
    response = await client.delete("/api/v1/silences/1; DROP TABLE silences", headers=AUTH)
    assert response.status == 400
    response = await client.get("/api/v1/silences", headers=AUTH)
    assert (await response.json())["silences"] == []


async def test_api_not_mounted_without_a_token():
    app = web.Application()
    assert not api.mount(app, "", lambda: None)
    async with TestClient(TestServer(app)) as http:
        assert (await http.get("/api/v1/alerts")).status == 404
        assert (await http.get("/api/v1/openapi.json")).status == 404
