"""Hostile input against a real daemon (`portal-monitor run`, tansu, PostgreSQL), issue 13.

One daemon for the module, configured with marker secrets in every place a secret can go and
logging at debug level. Poison records must not stop or stall it; schemathesis drives the
responder API with generated requests (no 5xx, answers as the OpenAPI document says); and at
the end no marker may appear in any log line or command output.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support.daemon import Daemon, create_topic, fetch, wait_until
from tests.support.servers import PostgresServer, TansuBroker, free_port

pytestmark = pytest.mark.integration
TOPIC = "portal.events"
DLQ = "portal.events.dlq"

# Every secret the daemon is given: none may appear in its output or in check-config's.
MARKERS = {
    "pg_user_info": "PgUserInfoMark7351",
    "pg_query": "PgQueryMark8462",
    "pg_password": "PgPasswordMark9573",
    "kafka": "KafkaSaslMark1684",
    "hook_user_info": "HookUserInfoMark2795",
    "hook_token": "HookTokenMark3806",
    "hook_secret": "HookSecretMark4917",
    "am_user_info": "AmUserInfoMark5028",
    "am_token": "AmTokenMark6139",
    "am_bearer": "AmBearerMark7240",
    "am_password": "AmPasswordMark8351",
    "mqtt": "MqttPasswordMark9462",
    "api": "ApiTokenMark0573",
    "presented": "PresentedTokenMark1684",
}


def marked_environment(dsn: str) -> dict[str, str]:
    """PORTAL_MONITOR_* overrides (without the prefix, for `Daemon`) putting a marker in every secret."""
    base, _, database = dsn.rpartition("/")
    scheme, _, hostpart = base.partition("://")
    user = hostpart.split("@", 1)[0] if "@" in hostpart else "postgres"
    host = hostpart.split("@", 1)[-1]
    closed = free_port()  # nothing listens: the relays fail and log their errors
    return {
        "postgres__dsn": f"{scheme}://{user}:{MARKERS['pg_user_info']}@{host}/{database}?password={MARKERS['pg_query']}",
        "postgres__password": MARKERS["pg_password"],
        "kafka__sasl_password": MARKERS["kafka"],
        "sinks__webhook__enabled": "true",
        "sinks__webhook__url": f"http://hook:{MARKERS['hook_user_info']}@127.0.0.1:{closed}/in?token={MARKERS['hook_token']}",
        "sinks__webhook__secret": MARKERS["hook_secret"],
        "sinks__alertmanager__enabled": "true",
        "sinks__alertmanager__url": f"http://am:{MARKERS['am_user_info']}@127.0.0.1:{closed}/?token={MARKERS['am_token']}",
        "sinks__alertmanager__bearer_token": MARKERS["am_bearer"],
        "sinks__alertmanager__password": MARKERS["am_password"],
        "sinks__mqtt__password": MARKERS["mqtt"],
        "api__token": MARKERS["api"],
        "logging__level": "debug",
        "delivery__retry_initial": "200ms",
        "delivery__retry_max": "1s",
        "detectors__dormant_account__enabled": "false",
    }


def login(n: int, minute: int, session: str, ip: str, account: str = "staff-0042") -> dict:
    return {"event_id": f"good-{n}", "type": "login_succeeded", "ts": f"2026-03-02T08:{minute:02d}:00Z",
            "account_id": account, "portal": "schools", "session_id": session, "ip": ip}


def page_view(n: int, minute: int, session: str, ip: str, account: str = "staff-0042") -> dict:
    return {"event_id": f"good-{n}", "type": "page_view", "ts": f"2026-03-02T08:{minute:02d}:00Z",
            "account_id": account, "portal": "schools", "session_id": session, "ip": ip,
            "resource": "/pupils/4711/attendance"}


BASE = b'{"event_id":"p%d","type":"login_succeeded","ts":"2026-03-02T07:00:00Z","account_id":"staff-0099","session_id":"s","ip":"81.2.69.10"'
HUGE = b'{"event_id":"' + b"\x01" * 400_000 + b'"}'  # 400 KB; as a dead letter naively 2.4 MB
POISON: list[tuple[bytes | None, str]] = [
    (BASE % 1 + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep"),  # msgspec: RecursionError
    (BASE.replace(b"staff-0099", b"staff-\\u0000-0099") % 2 + b"}", "control_character"),  # NUL in account_id
    ((BASE % 3).replace(b"81.2.69.10", b"2c0f:f5c0::1%x") + b"}", "bad_ip"),  # a zone id
    (b'{"event_id":"p4","type":"access_revoked","ts":"0001-01-01T00:00:00Z","account_id":"staff-0042"}', "bad_timestamp"),
    (b'{"event_id":"p5","type":"access_revoked","ts":"1969-12-31T23:59:59Z","account_id":"staff-0042"}', "bad_timestamp"),
    (BASE % 6 + b',"account_id":"staff-0001"}', "duplicate_key"),
    (BASE % 7 + b',"\xff\xfe":1}', "bad_utf8"),  # an invalid UTF-8 member name
    (None, "empty"),  # a tombstone
    (HUGE, "not_json"),
]


@pytest.fixture(scope="module")
def world():
    broker = TansuBroker().start()
    server = PostgresServer()
    database = asyncio.run(server.create_database())
    dsn = server.dsn_for(database)
    overrides = marked_environment(dsn)
    daemon = Daemon(broker.bootstrap, overrides.pop("postgres__dsn"), group="pm-hostile", **overrides)
    asyncio.run(create_topic(broker.bootstrap, 2))
    asyncio.run(create_topic(broker.bootstrap, 1, DLQ))
    daemon.start()
    try:
        asyncio.run(daemon.wait_ready(60))
        # an alert with its flagged sessions, so the API has something to show and act on
        seed = [login(101, 0, "k1", "81.2.69.10", "staff-0007"), login(102, 3, "k2", "86.150.3.7", "staff-0007"),
                page_view(103, 4, "k1", "81.2.69.10", "staff-0007")]
        asyncio.run(produce_raw(broker.bootstrap, [(b"staff-0007", json.dumps(e).encode()) for e in seed]))
        asyncio.run(wait_until(lambda: fetch(dsn, "SELECT 1 FROM alerts WHERE account_id = 'staff-0007'"), what="the seed alert"))
        yield {"daemon": daemon, "broker": broker, "dsn": dsn}
    finally:
        try:
            daemon.stop()
        finally:
            broker.stop()
            asyncio.run(server.drop_database(database))


async def produce_raw(bootstrap: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(TOPIC, value, key=key)
    finally:
        await producer.stop()


async def dead_letters(bootstrap: str, want: int, timeout: float = 60) -> list[dict]:
    consumer = AIOKafkaConsumer(DLQ, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                fetch_max_bytes=8 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    letters: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(letters) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                letters.extend(json.loads(record.value) for record in records)
    finally:
        await consumer.stop()
    return letters


def test_poison_records_become_dead_letters_and_detection_goes_on(world):
    daemon, bootstrap, dsn = world["daemon"], world["broker"].bootstrap, world["dsn"]
    shared = [login(1, 0, "s1", "81.2.69.10"), page_view(2, 1, "s1", "81.2.69.10"),
              login(3, 5, "s2", "86.150.3.7"), page_view(4, 6, "s2", "86.150.3.7"), page_view(5, 7, "s1", "81.2.69.10")]
    records = [(b"staff-0042", raw) for raw, _ in POISON] + [(b"staff-0042", json.dumps(e).encode()) for e in shared]
    asyncio.run(produce_raw(bootstrap, records))

    alerts = asyncio.run(wait_until(
        lambda: fetch(dsn, "SELECT detector FROM alerts WHERE account_id = 'staff-0042'"), what="the alert after the poison"))
    assert [row["detector"] for row in alerts] == ["simultaneous_logins"]
    letters = asyncio.run(dead_letters(bootstrap, len(POISON)))
    assert sorted(letter["reason"] for letter in letters) == sorted(reason for _, reason in POISON)
    [huge] = [letter for letter in letters if letter.get("raw_length")]
    assert huge["raw_length"] == len(HUGE)
    assert huge["raw_sha256"] == hashlib.sha256(HUGE).hexdigest()
    assert len(huge["raw"]) <= 64 * 1024
    for _, reason in POISON:
        assert daemon.metric("portal_monitor_invalid_events_total", f'reason="{reason}"') >= 1, reason
    assert daemon.metric("portal_monitor_invalid_events_total", 'reason="processing_error"') == 0
    assert daemon.process.poll() is None and daemon.ready()
    # the account registry took the good records (a NUL would have failed its writes forever)
    rows = asyncio.run(wait_until(
        lambda: fetch(dsn, "SELECT account_id FROM accounts WHERE account_id LIKE 'staff-00_2' ORDER BY 1"),
        what="the account registry's write (about once a second)"))
    assert [row["account_id"] for row in rows] == ["staff-0042"]  # not staff-0001 (the duplicate), no NUL


SCHEMATHESIS_EXAMPLES = 40  # per operation; 10 operations, plus the coverage phase's cases


def test_api_answers_generated_requests_without_5xx_and_as_documented(world, tmp_path):
    daemon = world["daemon"]
    base = f"http://127.0.0.1:{daemon.port}"
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", f"{base}/api/v1/openapi.json",
         "--header", f"Authorization: Bearer {MARKERS['api']}",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
         "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--seed", "13", "--workers", "2",
         "--phases", "examples,coverage,fuzzing", "--generation-allow-x00", "true",
         "--request-timeout", "10", "--max-time", "30"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    failures = done.stdout.split("FAILURES", 1)[-1].split("WARNINGS", 1)[0]
    assert done.returncode == 0, failures[:8000] + done.stderr[-2000:]
    generated = int(done.stdout.rsplit(" generated", 1)[0].rsplit(None, 1)[-1])
    assert generated >= 300, done.stdout[-2000:]  # a few hundred requests, every operation
    assert "Tested: 10" in done.stdout  # the nine of the responder API and GET /pupils/{pupil_id}/access
    assert elapsed < 90
    assert MARKERS["api"] not in done.stdout.replace(f"Bearer {MARKERS['api']}", "")  # only where we passed it


def request(daemon: Daemon, path: str, token: bytes) -> tuple[int, str]:
    connection = __import__("http.client").client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    connection.putrequest("GET", path)
    connection.putheader("Authorization", b"Bearer " + token)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_api_refuses_hostile_parameters_with_400_and_odd_tokens_with_401(world):
    daemon = world["daemon"]
    presented = MARKERS["presented"].encode()
    for token in (presented + b"\xff", b"\xc3\xa9" + presented, presented):
        for path in ("/api/v1/alerts", "/api/v1/sessions", "/api/v1/silences", "/api/v1/alerts/x"):
            status, _ = request(daemon, path, token)
            assert status == 401, (token, path)
    for token in (presented + b"\x00", presented + b"\x7f\x01"):  # refused by aiohttp's parser itself
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as raw:
            raw.sendall(b"GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\r\n\r\n")
            assert raw.recv(4096).split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), token
    api = MARKERS["api"].encode()
    for path in ("/api/v1/alerts?since=1000000d", "/api/v1/alerts?since=9999-12-31T23:59:59-23:59",
                 "/api/v1/alerts?until=0001-01-01T00:00:00%2B01:00",
                 "/api/v1/alerts?account=a%00b", "/api/v1/sessions?account=a%00b", "/api/v1/alerts/a%00b",
                 "/api/v1/sessions/a%00b", "/api/v1/alerts?detector=%00"):
        status, body = request(daemon, path, api)
        assert status == 400, (path, status, body)
        assert json.loads(body)["error"]
    body = json.dumps({"expires": "99999999999d", "account_id": "staff-1"}).encode()
    for payload in (body, json.dumps({"expires": "2099-01-01T00:00:00Z", "account_id": "a\u0000b"}).encode(),
                    json.dumps({"expires": "2099-01-01T00:00:00Z", "account_id": "a", "actor": "x\u0000"}).encode()):
        post = urllib.request.Request(f"http://127.0.0.1:{daemon.port}/api/v1/silences", data=payload, method="POST",
                                      headers={"Authorization": f"Bearer {MARKERS['api']}", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=10)
        assert refused.value.code == 400, payload
    status, body = request(daemon, "/api/v1/sessions?flagged=false", api)
    assert (status, json.loads(body)) == (200, {"sessions": []})


def test_no_secret_in_any_log_line_or_command_output(world):
    """Last in the module: everything above has been logged at debug level by now."""
    daemon, dsn = world["daemon"], world["dsn"]
    time.sleep(2)  # let the failing relays log a few retries with their URLs
    env = dict(daemon.env)
    check = subprocess.run([sys.executable, "-m", "monitor", "check-config"], env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    effective = json.loads(check.stdout)
    assert effective["postgres"]["dsn"].count("***") == 2
    assert "***" in effective["sinks"]["webhook"]["url"] and "***" in effective["sinks"]["alertmanager"]["url"]
    outputs = {"check-config": check.stdout + check.stderr, "daemon log": daemon.output()}
    assert '"store connected"' in outputs["daemon log"]
    assert "sink failing" in outputs["daemon log"]  # the relays' errors, with their URLs' hosts
    assert "malformed request refused" in outputs["daemon log"]  # the NUL in a presented token
    for where, text in outputs.items():
        for name, marker in MARKERS.items():
            assert marker not in text, f"{name} marker in {where}"
