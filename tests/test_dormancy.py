"""Dormancy and account lifecycle: unit checks and `portal-monitor replay` end to end (no servers)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timezone

import msgspec
import pytest
from aiokafka.partitioner import murmur2

from detectors.base import DetectorContext
from detectors.revoked_access_use import RevokedAccessUse, RevokedAccessUseSettings
from monitor.contract.accounts import Restriction, key_hash
from monitor.service.config import ConfigError, load_settings
from monitor.places.networks import NetworkMap
from monitor.state.sessions import SessionTable
from monitor.service.shards import build_shard
from sinks.actions import action_id

DAY = 86400.0
T0 = datetime(2025, 9, 1, 8, 0, tzinfo=timezone.utc).timestamp()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_key_hash_is_kafkas_default_partitioner_hash() -> None:
    rng = random.Random(4)
    keys = ["staff-0042", "", "a", "ab", "abc", "Zoë Ă€", "parent-" + "x" * 300]
    keys += ["".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 40))) for _ in range(2000)]
    for key in keys:
        assert key_hash(key) == murmur2(key.encode()) & 0x7FFFFFFF, key


def test_per_portal_periods_are_checked() -> None:
    settings = load_settings(environ={"PORTAL_MONITOR_DETECTORS__DORMANT_ACCOUNT__PERIODS": '{parent = "365d"}'})
    assert settings.detectors.dormant_account.periods == {"parent": 365 * DAY}
    with pytest.raises(ConfigError, match="dormant_account.periods"):
        load_settings(environ={"PORTAL_MONITOR_DETECTORS__DORMANT_ACCOUNT__PERIODS": '{intranet = "30d"}'})


def test_shard_aggregates_activity_per_account_not_per_event() -> None:
    shard = build_shard(load_settings(environ={}), 0)
    events = []
    for day in range(0, 30):  # a daily user: 30 logins, no spell worth noting
        events.append({"event_id": f"d{day}", "type": "login_succeeded", "ts": iso(T0 + day * DAY),
                       "account_id": "staff-daily", "session_id": f"s{day}", "ip": "81.2.69.10"})
    events.append({"event_id": "x1", "type": "login_succeeded", "ts": iso(T0), "account_id": "staff-rare",
                   "session_id": "r1", "ip": "81.2.69.10", "portal": "schools"})
    events.append({"event_id": "x2", "type": "login_failed", "ts": iso(T0 + 200 * DAY), "account_id": "staff-rare",
                   "ip": "203.0.113.9"})
    events.append({"event_id": "x3", "type": "login_failed", "ts": iso(T0 + 5 * DAY), "account_id": "nobody",
                   "ip": "203.0.113.9"})
    findings = shard.process([(n, json.dumps(e).encode()) for n, e in enumerate(events)])
    findings.extend(shard.drain())
    daily = findings.account_activity["staff-daily"]
    assert daily.known and daily.last_login_at == T0 + 29 * DAY and not daily.spells
    assert daily.first is not None and daily.first.end == T0 and daily.first.attempt.at == T0
    rare = findings.account_activity["staff-rare"]
    assert rare.portal == "schools" and rare.spell_start == T0
    assert rare.spell_attempt.at == T0 + 200 * DAY and not rare.spell_attempt.succeeded
    assert [(s.start, s.end, s.attempt.at) for s in rare.closed_spells()] == [(T0, None, T0 + 200 * DAY)]
    assert not findings.account_activity["nobody"].known  # a failed login proves no account


def test_revoked_access_use_snapshot_restores_through_msgspec() -> None:
    context = DetectorContext(
        SessionTable(NetworkMap([]), 1800, 43200, 10), NetworkMap([]),
        restricted={"parent-1": Restriction("revoked", T0, "court ruling", None), "staff-2": Restriction("dormant", T0)},
    )
    detector = RevokedAccessUse(RevokedAccessUseSettings(), context)
    assert set(detector.restricted) == {"parent-1"}
    encoded = msgspec.json.encode(detector.snapshot())
    fresh = RevokedAccessUse(RevokedAccessUseSettings(), DetectorContext(context.sessions, context.networks))
    fresh.restore(msgspec.json.decode(encoded))
    assert fresh.restricted == detector.restricted
    # A shard restored from an older checkpoint keeps what the registry lent it since (a roster import).
    later = RevokedAccessUse(
        RevokedAccessUseSettings(),
        DetectorContext(context.sessions, context.networks, restricted={
            "parent-1": Restriction("revoked", T0 - DAY, "older", None),
            "parent-3": Restriction("disabled", T0 + DAY, "breach", None),
        }),
    )
    later.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(detector.snapshot())))
    assert {a: (r.status, r.since, r.reason) for a, r in later.restricted.items()} == {
        "parent-1": ("revoked", T0, "court ruling"),
        "parent-3": ("disabled", T0 + DAY, "breach"),
    }


def replay(tmp_path, events, roster=None, *extra):
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    args = [sys.executable, "-m", "monitor", "replay", str(events_file), "--summary", "json",
            "--alerts-out", str(tmp_path / "alerts.jsonl"), "--actions-out", str(tmp_path / "actions.jsonl"), *extra]
    if roster is not None:
        (tmp_path / "roster.csv").write_text(roster)
        args += ["--accounts", str(tmp_path / "roster.csv")]
    done = subprocess.run(args, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    actions_file = tmp_path / "actions.jsonl"
    actions = [json.loads(line) for line in actions_file.read_text().splitlines()] if actions_file.exists() else []
    return alerts, actions, done.stderr


def test_replay_fires_the_crossing_at_its_event_time_and_publishes_the_action(tmp_path) -> None:
    events = [
        {"event_id": "a1", "type": "login_succeeded", "ts": iso(T0), "account_id": "staff-0042",
         "session_id": "s1", "ip": "81.2.69.10", "portal": "schools"},
    ]
    for day in (30, 90, 150, 175, 181, 190):  # someone else's logins carry event time on
        events.append({"event_id": f"b{day}", "type": "login_succeeded", "ts": iso(T0 + day * DAY + 3600),
                       "account_id": "staff-0007", "session_id": f"t{day}", "ip": "81.2.69.11", "portal": "schools"})
    roster = (
        "account_id,portal,role,created_at,last_login_at,status\n"
        f"staff-0100,schools,teacher,{iso(T0 - 10 * DAY)},,active\n"
    )
    alerts, actions, stderr = replay(tmp_path, events, roster)
    assert "1 new accounts" in stderr
    dormant = [a for a in alerts if a["detector"] == "dormant_account" and a["severity"] == "medium"]
    assert [(a["account_id"], a["ts"]) for a in dormant] == [
        ("staff-0100", iso(T0 + 170 * DAY)),  # created ten days before T0, never used
        ("staff-0042", iso(T0 + 180 * DAY)),  # to the second: 180 days after its last login
    ]
    crossing = dormant[1]
    assert "2025-09-01 08:00Z" in crossing["summary"] and "disabled" in crossing["summary"]
    assert crossing["evidence"]["last_login_at"] == iso(T0) and crossing["evidence"]["period_days"] == 180
    assert "180 days" in crossing["policy"]
    warnings = [a for a in alerts if a["severity"] == "low"]
    assert [(a["account_id"], a["ts"]) for a in warnings] == [
        ("staff-0100", iso(T0 + 156 * DAY)), ("staff-0042", iso(T0 + 166 * DAY)),
    ]
    assert [(a["account_id"], a["action"], a["alert_id"]) for a in actions] == [
        (d["account_id"], "disable_account", d["alert_id"]) for d in dormant
    ]
    assert actions[0]["action_id"] == action_id("disable_account", dormant[0]["alert_id"])
    assert actions[0]["schema"] == "portal.action/v1" and actions[0]["ts"] == dormant[0]["ts"]

    again, _, _ = replay(tmp_path / ".." / tmp_path.name, events, roster, "--append")  # same files, run again
    assert [a["alert_id"] for a in again[len(alerts):]] == [a["alert_id"] for a in alerts]


def test_replay_login_after_181_days_alerts_and_after_179_does_not(tmp_path) -> None:
    def run(days: int, where):
        where.mkdir()
        events = [
            {"event_id": "1", "type": "login_succeeded", "ts": iso(T0), "account_id": "staff-1", "session_id": "a",
             "ip": "81.2.69.10", "portal": "schools"},
            {"event_id": "2", "type": "login_succeeded", "ts": iso(T0 + days * DAY), "account_id": "staff-1",
             "session_id": "b", "ip": "86.150.3.7", "portal": "schools"},
        ]
        return replay(where, events)[0]

    after_181 = run(181, tmp_path / "181")
    login = [a for a in after_181 if a["detector"] == "dormant_account_login"]
    assert len(login) == 1 and login[0]["severity"] == "high"
    assert login[0]["evidence"]["idle_days"] == 181.0 and "181 days idle" in login[0]["summary"]
    assert login[0]["session_ids"] == ["b"]
    after_179 = run(179, tmp_path / "179")
    assert [(a["detector"], a["severity"]) for a in after_179] == [("dormant_account", "low")]


def test_a_revocation_survives_a_shard_checkpoint() -> None:
    settings = load_settings(environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})
    before = build_shard(settings, 0)
    revoked = {"event_id": "r1", "type": "access_revoked", "ts": iso(T0), "account_id": "parent-7",
               "portal": "parent", "reason": "court ruling"}
    disabled = {"event_id": "r2", "type": "account_disabled", "ts": iso(T0), "account_id": "staff-8",
                "reason": "dormant"}
    before.process([(0, json.dumps(revoked).encode()), (1, json.dumps(disabled).encode())])
    after = build_shard(settings, 0)
    after.restore(before.snapshot())
    login = {"event_id": "l1", "type": "login_succeeded", "ts": iso(T0 + 3600), "account_id": "parent-7",
             "session_id": "s1", "ip": "86.150.3.7", "portal": "parent"}
    tried = {"event_id": "l2", "type": "login_failed", "ts": iso(T0 + 3600), "account_id": "staff-8",
             "ip": "86.150.3.7"}
    findings = after.process([(2, json.dumps(login).encode()), (3, json.dumps(tried).encode())])
    assert [(a.detector, a.account_id, a.severity) for a in findings.alerts] == [
        ("revoked_access_use", "parent-7", "critical"), ("dormant_account_login", "staff-8", "high"),
    ]


async def test_an_idle_spell_begun_by_re_enabling_is_stated_as_such(tmp_path) -> None:
    from tests.test_detector_cases import replay_case

    events = [
        {"event_id": "1", "type": "account_disabled", "ts": iso(T0), "account_id": "staff-5", "reason": "breach"},
        {"event_id": "2", "type": "account_enabled", "ts": iso(T0 + DAY), "account_id": "staff-5"},
        {"event_id": "3", "type": "login_failed", "ts": iso(T0 + 200 * DAY), "account_id": "staff-5", "ip": "203.0.113.9"},
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "expected.json").write_text("[]")
    for batch_size in (None, 1):
        alerts = (await replay_case(tmp_path, batch_size)).alerts
        login = [a for a in alerts if a.detector == "dormant_account_login"]
        assert len(login) == 1 and login[0].evidence["idle_basis"] == "re-enabled", alerts
        crossing = [a for a in alerts if a.detector == "dormant_account" and a.severity == "medium"]
        assert "re-enabled" in crossing[0].summary and crossing[0].ts.timestamp() == T0 + 181 * DAY
