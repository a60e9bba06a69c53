"""A shard restored from a checkpoint carries on exactly as if it had never stopped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest

from monitor.service.config import load_settings
from monitor.service.shards import build_shard

CASES = Path(__file__).parent / "detector_cases"


def alert_keys(findings_list):
    return [(a.alert_id, a.detector, a.severity, a.session_ids) for f in findings_list for a in f.alerts]


def settings_for(folder: Path):
    file = folder / "settings.toml"
    return load_settings(file if file.exists() else None, environ={})


@pytest.mark.parametrize("folder", sorted(p for p in CASES.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_restore_at_every_point_gives_the_same_alerts(folder: Path) -> None:
    settings = settings_for(folder)
    lines = [line for line in (folder / "events.jsonl").read_bytes().splitlines() if line.strip()]
    records = list(enumerate(lines, start=1))

    whole = build_shard(settings, 0)
    expected = alert_keys([whole.process(records), whole.drain()])

    for cut in range(len(records) + 1):
        first = build_shard(settings, 0)
        before = first.process(records[:cut])
        resume_at = first.commit_offset() or 1
        second = build_shard(settings, 0)
        second.restore(first.snapshot())
        # Re-read from the checkpoint's offset, as a new owner of the partition would.
        after = second.process([r for r in records if r[0] >= resume_at])
        got = alert_keys([before, after, second.drain()])
        assert got == expected, f"cut after {cut} records"


def as_version_1(data: bytes) -> bytes:
    """A checkpoint as version 1 wrote it: every account's sessions as a map by session id."""
    version, watermark, max_event_time, recent, accounts, detectors = msgspec.msgpack.decode(data)
    assert version == 2
    for account in accounts:
        if isinstance(account["sessions"], list):  # OneSession: [session]
            account["sessions"] = {session["session_id"]: session for session in account["sessions"]}
    return msgspec.msgpack.encode([1, watermark, max_event_time, recent, accounts, detectors])


@pytest.mark.parametrize("folder", sorted(p for p in CASES.iterdir() if p.is_dir()), ids=lambda p: p.name)
def test_a_version_1_checkpoint_is_restored_the_same(folder: Path) -> None:
    settings = settings_for(folder)
    lines = [line for line in (folder / "events.jsonl").read_bytes().splitlines() if line.strip()]
    records = list(enumerate(lines, start=1))
    for cut in range(0, len(records) + 1, 3):
        first = build_shard(settings, 0)
        first.process(records[:cut])
        resume_at = first.commit_offset() or 1
        current, old = build_shard(settings, 0), build_shard(settings, 0)
        current.restore(first.snapshot())
        old.restore(as_version_1(first.snapshot()))
        assert old.snapshot() == current.snapshot(), f"cut after {cut} records"
        rest = [r for r in records if r[0] >= resume_at]
        assert alert_keys([old.process(rest), old.drain()]) == alert_keys([current.process(rest), current.drain()])


def test_a_checkpoint_from_a_newer_version_is_refused() -> None:
    shard = build_shard(load_settings(None, environ={}), 0)
    newer = msgspec.msgpack.encode([99, 0.0, 0.0, [], [], {}])
    with pytest.raises(ValueError, match="version 99"):
        shard.restore(newer)


def test_future_timestamp_is_a_dead_letter_and_does_not_move_the_clock() -> None:
    shard = build_shard(load_settings(None, environ={}), 0)
    now = time.time()
    stamp = lambda at: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))  # noqa: E731
    good = {"event_id": "a", "type": "login_succeeded", "ts": stamp(now - 60), "account_id": "x", "session_id": "s", "ip": "81.2.69.1"}
    skewed = dict(good, event_id="b", ts=stamp(now + 86400 * 365), session_id="t")
    findings = shard.process([(1, json.dumps(good).encode()), (2, json.dumps(skewed).encode())])
    assert [d.reason for d in findings.dead_letters] == ["future_timestamp"]
    assert shard.max_event_time < now
    assert shard.commit_offset() == 1  # the good login still waits in the reorder buffer
    shard.drain()
    assert shard.commit_offset() == 3


def test_a_poison_record_becomes_a_dead_letter_and_the_shard_goes_on() -> None:
    from detectors.base import Detector

    class Exploding(Detector):
        id = "exploding"
        event_types = ("login_succeeded",)

        def on_event(self, event, account):
            if event.account_id == "poison":
                raise RuntimeError("detector bug")
            return None

    shard = build_shard(load_settings(None, environ={}), 0)
    shard.detectors.append(Exploding())
    shard._dispatch["login_succeeded"] += (shard.detectors[-1].on_event,)
    login = {"type": "login_succeeded", "ts": "2026-03-02T08:00:00Z", "session_id": "s", "ip": "81.2.69.1"}
    records = [
        (1, json.dumps(dict(login, event_id="1", account_id="poison")).encode()),
        (2, json.dumps(dict(login, event_id="2", account_id="fine")).encode()),
    ]
    findings = shard.process(records)
    findings.extend(shard.drain())
    assert [(d.reason, d.offset) for d in findings.dead_letters] == [("processing_error", 1)]
    assert "detector bug" in findings.dead_letters[0].detail
    assert shard.counts[("login_succeeded", "processed")] == 2
    assert shard.commit_offset() == 3


def test_sampled_batches_time_each_detector_and_others_pay_nothing() -> None:
    settings = load_settings(None, environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})
    shard = build_shard(settings, 0)
    records = list(enumerate((CASES / "two_live_sessions_two_networks" / "events.jsonl").read_bytes().splitlines(), 1))
    shard.process(records[:2])
    assert shard.detector_seconds == {}  # untimed batch
    shard.timed(True)
    findings = shard.process(records[2:])
    shard.timed(False)
    assert [a.detector for a in findings.alerts] == ["simultaneous_logins"]  # timing changes nothing
    assert shard.detector_seconds.get("simultaneous_logins", 0) > 0
