"""Hostile input without servers (issue 13): the contract's rejection reasons, dead letters
that fit a broker, replay over poison and its output files, secrets masked, /readyz stalls.

The same records against a real daemon, Kafka and PostgreSQL: tests/test_hostile_daemon.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pytest
import structlog

from detectors.registry import detector_ids
from monitor.contract.events import REJECTION_REASONS, PortalEvent
from monitor.delivery.delivery import Delivery
from monitor.engine.shards import Shards
from monitor.engine.findings import DeadLetter, Findings, dead_letter
from monitor.ingest.decode import MAX_DEPTH, EventDecoder, Rejection
from monitor.ingest.sources.kafka import KafkaEventSource
from monitor.places.networks import NetworkMap
from monitor.response.queries import parse_time
from monitor.service.config import load_settings, masked, secret_values
from monitor.service.lifecycle import Service
from monitor.service.shards import build_shard
from monitor.support.logging import configure_logging
from monitor.support.metrics import Metrics
from monitor.support.retry import Backoff
from sinks.dead_letters import FileDeadLetters, shortened

LOGIN = b'{"event_id":"e1","type":"login_succeeded","ts":"2026-03-02T08:00:00Z","account_id":"staff-1","session_id":"s1","ip":"81.2.69.10"'


def record(extra: bytes = b"") -> bytes:
    return LOGIN + extra + b"}"


REFUSED = [
    (record(b',"x":' + b"[" * 1000 + b"]" * 1000), "too_deep"),
    (record(b',"x":' + b"{\"a\":" * 200 + b"1" + b"}" * 200), "too_deep"),
    (record(b',"x":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)), "too_deep"),
    (record(b',"role":"head\\u0000of year"'), "control_character"),
    (LOGIN.replace(b"staff-1", b"staff-\\u00001") + b"}", "control_character"),
    (record(b',"user_agent":"Firefox\\u001b[31m"'), "control_character"),
    (record(b',"role":"a\\u007fb"'), "control_character"),
    (record(',"role":"a\u0085b"'.encode()), "control_character"),  # C1 (NEL), raw UTF-8
    (record(b',"role":"a\\nb"'), "control_character"),
    (record(b',"\xff\xfe":1'), "bad_utf8"),  # a member name
    (record(b',"x":"\xc3"'), "bad_utf8"),  # an unknown member's value
    (record(b',"role":"\xed\xa0\x80"'), "bad_utf8"),  # a UTF-8-encoded surrogate
    (record(b',"account_id":"staff-2"'), "duplicate_key"),
    (record(b',"role":null,"role":"teacher"'), "duplicate_key"),
    (record(b',"x":1,"x":2'), "duplicate_key"),
    (record(b' ,  "account_id" : "staff-2"'), "duplicate_key"),
    (b'{"event_id":"e1","type":"page_view","ts":"2026-03-02T08:00:00Z","account_id":"a","session_id":"s",'
     b'"resource":"/r","resource":"/q"}', "duplicate_key"),
    (b'{"event_id":"e1","type":"page_view","ts":"2026-03-02T08:00:00Z","account_id":"a","session_id":"s",'
     b'"resource":"/r","action":"view","action":"export"}', "duplicate_key"),
    (record().replace(b"81.2.69.10", b"2c0f:f5c0::1%x"), "bad_ip"),
    (record().replace(b"81.2.69.10", b"fe80::1%25eth0"), "bad_ip"),
    (record().replace(b"2026-03-02", b"0001-01-01"), "bad_timestamp"),
    (record().replace(b"2026-03-02", b"1969-12-31"), "bad_timestamp"),
    (record().replace(b"2026-03-02", b"1999-12-31"), "bad_timestamp"),
    (b"", "empty"),
    (b"  \r\n", "empty"),
    (None, "empty"),
]

ACCEPTED = [
    record(),
    record(b',"role":null,"portal":null'),  # explicit nulls
    record(b',"future_field":{"nested":[1,2,{"deeper":true}]}'),  # unknown members
    record(',"role":"Zoë Ødegård","user_agent":"Mozilla/5.0 (中文)"'.encode()),  # non-ASCII text
    record(b',"resource":"/a\\"quoted\\"/\\u00e9"'),  # escapes without control characters
    record(b',"x":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)),  # as deep as allowed
    record(b',"x":[' + b"[]," * 60 + b"[]]"),  # many brackets, shallow
    b'{ "event_id" : "e1", "type" : "login_failed", "ts" : "2026-03-02T08:00:00Z", "account_id" : "a", "ip" : "::1" }',
    b'{"event_id":"e1","type":"page_view","ts":"2026-03-02T08:00:00Z","account_id":"a","session_id":"s",'
    b'"resource":"/r","action":"view"}',
    b'{"event_id":"e1","type":"page_view","ts":"2026-03-02T08:00:00Z","account_id":"a","session_id":"s",'
    b'"resource":"/r","x":"action"}',
    b'{"event_id":"e1","type":"page_view","ts":"2026-03-02T08:00:00Z","account_id":"a","session_id":"s",'
    b'"resource":"/r","action":null}',  # an explicit null: the default, as for every optional field
    record().replace(b"2026-03-02", b"2000-01-01"),
    '{"event_id":"e1","type":"login_failed","ts":"2026-03-02T08:00:00Z","account_id":"a","ip":"1.2.3.4"}',  # str
]


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder(NetworkMap([]))


def test_msgspec_itself_raises_recursion_error_on_deep_nesting():
    """What the decoder guards against: without it, this escaped decode and stopped `run`."""
    with pytest.raises(RecursionError):
        msgspec.json.Decoder(PortalEvent).decode(REFUSED[0][0])


@pytest.mark.parametrize("raw,reason", REFUSED, ids=[f"{n}-{reason}" for n, (_, reason) in enumerate(REFUSED)])
def test_refused_with_its_reason(decoder, raw, reason):
    outcome = decoder.decode(raw)
    assert type(outcome) is Rejection, outcome
    assert (outcome.reason, reason in REJECTION_REASONS) == (reason, True), outcome.detail
    assert outcome.detail


@pytest.mark.parametrize("raw", ACCEPTED, ids=range(len(ACCEPTED)))
def test_hard_negatives_are_accepted(decoder, raw):
    outcome = decoder.decode(raw)
    assert type(outcome) is PortalEvent, outcome
    assert outcome.action in ("view", "download", "print", "export")


def test_every_reason_is_counted_from_zero():
    metrics = Metrics(detector_ids())
    samples = {s.labels["reason"]: s.value for family in metrics.invalid_events.collect() for s in family.samples
               if s.name.endswith("_total")}
    assert set(samples) == set(REJECTION_REASONS) and not any(samples.values())
    assert {"empty", "too_deep", "bad_utf8", "duplicate_key", "control_character"} <= set(REJECTION_REASONS)


def test_the_plausible_time_range_is_configurable():
    settings = load_settings(environ={"PORTAL_MONITOR_ENGINE__EARLIEST_EVENT_TIME": "2026-01-01T00:00:00Z"})
    shard = build_shard(settings, 0)
    old = record().replace(b"2026-03-02", b"2025-12-31")
    assert shard.decoder.decode(old).reason == "bad_timestamp"
    assert type(shard.decoder.decode(record())) is PortalEvent
    with pytest.raises(Exception, match="earliest_event_time"):
        load_settings(environ={"PORTAL_MONITOR_ENGINE__EARLIEST_EVENT_TIME": "2026-01-01T00:00:00"})
    assert EventDecoder(NetworkMap([]), datetime(2027, 1, 1, tzinfo=timezone.utc)).decode(record()).reason == "bad_timestamp"


def test_a_huge_record_becomes_a_dead_letter_a_broker_accepts():
    raw = b'{"event_id":"' + b"\x01" * 400_000 + b'"}'
    letter = dead_letter(Rejection("not_json", "x" * 5000), 3, 17, raw)
    encoded = msgspec.json.encode(letter)
    assert len(encoded) < 1_000_000  # a broker's default message.max.bytes is 1,048,588
    assert letter.raw_length == len(raw) and letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert len(letter.detail) <= 1024
    short = shortened(letter)
    assert len(msgspec.json.encode(short)) < 8 * 1024
    assert (short.raw_length, short.raw_sha256) == (letter.raw_length, letter.raw_sha256)
    small = dead_letter(Rejection("not_json", "bad"), 0, 1, b"not json\n")
    assert msgspec.json.decode(msgspec.json.encode(small)) == {
        "reason": "not_json", "detail": "bad", "partition": 0, "offset": 1, "raw": "not json"}
    assert msgspec.json.decode(msgspec.json.encode(small), type=DeadLetter) == small


def replay(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", "replay", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_replay_survives_poison_and_detects_after_it(tmp_path):
    good = [json.dumps(e) for e in (
        {"event_id": "a1", "type": "access_revoked", "ts": "2026-03-01T08:00:00Z", "account_id": "staff-9", "reason": "left"},
        {"event_id": "a2", "type": "login_succeeded", "ts": "2026-03-02T08:00:00Z", "account_id": "staff-9",
         "session_id": "s9", "ip": "81.2.69.10"},
    )]
    poison = [raw.decode("utf-8", "surrogateescape") for raw, _ in REFUSED if raw is not None and raw.strip()]
    revoked_long_ago = [json.dumps({"event_id": f"r{n}", "type": "access_revoked", "ts": ts, "account_id": "staff-8"})
                        for n, ts in enumerate(("0001-01-01T00:00:00Z", "1969-07-20T20:17:00Z"))]
    later_login = json.dumps({"event_id": "l8", "type": "login_succeeded", "ts": "2026-03-02T09:00:00Z",
                              "account_id": "staff-8", "session_id": "s8", "ip": "81.2.69.10"})
    events = tmp_path / "events.jsonl"
    events.write_bytes("\n".join([*poison, *revoked_long_ago, "", "   ", *good, later_login]).encode("utf-8", "surrogateescape") + b"\n")
    # 27 of 30 records are poison: over replay's default --max-invalid 0.5, so allow them all here
    done = replay(str(events), "--alerts-out", str(tmp_path / "alerts.jsonl"), "--summary", "json",
                  "--max-invalid", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    assert "processing_error" not in summary["invalid"]
    assert summary["invalid"]["bad_timestamp"] == 5  # three in REFUSED, the two revocations
    assert summary["invalid"]["empty"] == 2
    assert summary["outcomes"] == {"processed": 3}
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(a["detector"], a["account_id"]) for a in alerts] == [("revoked_access_use", "staff-9")]


def test_replay_replaces_its_output_files_unless_told_to_append(tmp_path):
    case = Path(__file__).parent / "detector_cases" / "two_live_sessions_two_networks" / "events.jsonl"
    events = tmp_path / "events.jsonl"
    events.write_text(case.read_text() + "not json\n")
    outputs = ("--alerts-out", str(tmp_path / "alerts.jsonl"), "--dead-letters", str(tmp_path / "dead.jsonl"),
               "--actions-out", str(tmp_path / "actions.jsonl"))
    for _ in range(3):
        assert replay(str(events), *outputs, cwd=tmp_path).returncode == 0
    alerts = (tmp_path / "alerts.jsonl").read_text().splitlines()
    dead = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert len(alerts) == 1 and len(dead) == 1
    assert replay(str(events), *outputs, "--append", cwd=tmp_path).returncode == 0
    ids = lambda lines: [json.loads(line)["alert_id"] for line in lines]  # noqa: E731 (detected_at differs)
    assert ids((tmp_path / "alerts.jsonl").read_text().splitlines()) == ids(alerts) * 2
    assert (tmp_path / "dead.jsonl").read_text().splitlines() == dead * 2
    (tmp_path / "clean.jsonl").write_text(case.read_text())
    assert replay(str(tmp_path / "clean.jsonl"), *outputs, cwd=tmp_path).returncode == 0
    assert not (tmp_path / "dead.jsonl").exists()  # no stale dead letters from an earlier run


@pytest.mark.parametrize("text", ["1000000d", "99999999999d", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00",
                                  "99999999999999999999999999999s", "2026-13-01", "\x00"])
def test_api_times_out_of_range_are_a_clear_error(text):
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text)


SECRETS = {
    "PORTAL_MONITOR_POSTGRES__DSN": "postgresql://pm:UserInfoPw1@db:5432/pm?password=QueryPw2&sslmode=verify-full",
    "PORTAL_MONITOR_SINKS__WEBHOOK__URL": "https://hook:HookPw3@hooks.example/in?token=HookTok4&channel=ops",
    "PORTAL_MONITOR_SINKS__ALERTMANAGER__URL": "https://am:AmPw5@am.example:9093/?access_token=AmTok6",
    "PORTAL_MONITOR_SINKS__WEBHOOK__SECRET": "HookSecret7",
    "PORTAL_MONITOR_API__TOKEN": "ApiTok8",
}
MARKERS = ("UserInfoPw1", "QueryPw2", "HookPw3", "HookTok4", "AmPw5", "AmTok6", "HookSecret7", "ApiTok8")


def test_check_config_masks_credentials_inside_dsns_and_urls(tmp_path):
    import os

    env = {**os.environ, **SECRETS}
    done = subprocess.run([sys.executable, "-m", "monitor", "check-config"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for marker in MARKERS:
        assert marker not in done.stdout + done.stderr, marker
    effective = json.loads(done.stdout)
    assert effective["postgres"]["dsn"] == "postgresql://pm:***@db:5432/pm?password=***&sslmode=verify-full"
    assert effective["sinks"]["webhook"]["url"] == "https://hook:***@hooks.example/in?token=***&channel=ops"
    assert effective["sinks"]["alertmanager"]["url"] == "https://am:***@am.example:9093/?access_token=***"
    settings = load_settings(environ=SECRETS)
    assert set(MARKERS) <= set(secret_values(settings))
    assert "***" not in json.dumps(masked(load_settings(environ={})))  # nothing to mask, nothing masked


def test_every_log_line_is_redacted_whatever_logged_it():
    import logging

    settings = load_settings(environ=SECRETS)
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, secrets=secret_values(settings))
    try:
        structlog.get_logger("t").warning("connect failed", dsn=SECRETS["PORTAL_MONITOR_POSTGRES__DSN"])
        logging.getLogger("aiohttp.client").error("POST %s failed", SECRETS["PORTAL_MONITOR_SINKS__WEBHOOK__URL"])
        try:
            raise ValueError(f"bad token {SECRETS['PORTAL_MONITOR_API__TOKEN']}")
        except ValueError:
            structlog.get_logger("t").exception("boom")
    finally:
        configure_logging("warning", "json")
    text = out.getvalue()
    assert text.count("\n") >= 3 and "***" in text
    for marker in MARKERS:
        assert marker not in text, marker


class FailingSink:
    """A real sink that cannot deliver: its file's directory does not exist."""

    def __init__(self, path: Path) -> None:
        self.inner = FileDeadLetters(str(path / "missing" / "dead.jsonl"))
        self.name = "dead_letters"

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        await self.inner.write(findings)

    async def close(self) -> None:
        pass


async def test_readyz_reports_a_stalled_delivery(tmp_path):
    settings = load_settings(environ={"PORTAL_MONITOR_SERVICE__STALL_AFTER": "300ms"})
    metrics = Metrics(detector_ids(), ["dead_letters"])
    shards = Shards(lambda p: build_shard(settings, p), metrics)
    delivery = Delivery([FailingSink(tmp_path)], metrics, backoff=Backoff(0.05, 0.1))
    service = Service(settings, shards, delivery, KafkaEventSource(settings.kafka, settings.source), [])
    service.started, service.assigned = True, {0}
    assert service.readiness()[0]
    findings = shards.run({0: [(1, b"not json")]})
    service._delivery = asyncio.ensure_future(delivery.deliver(findings, shards.clocks))  # as the loop starts one
    service._delivery_started = time.monotonic()
    await asyncio.sleep(0.6)
    ready, reason = service.readiness()
    assert not ready and reason.startswith("stalled:") and "dead_letters" in reason, reason
    delivery.give_up.set()
    assert await service._delivery is False
    assert service.readiness()[0]
