"""Incremental checkpoints: a full snapshot plus the deltas written after it restore exactly.

Every detector case runs with its GeoIP databases (so the keyed detectors, new_country and
impossible_travel, hold state). The shard is checkpointed after every record, a full snapshot
every few checkpoints (compaction) and a delta otherwise; at every point a fresh shard restored
from the last full snapshot and the deltas after it must hold the same state and, reading on
from the checkpoint's offset, give the same alerts as the shard that never stopped.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from monitor.places.geo import GeoServices
from monitor.service.shards import build_shard
from tests.test_detector_cases import case_settings

CASES = Path(__file__).parent / "detector_cases"
FOLDERS = sorted(p for p in CASES.iterdir() if p.is_dir())


def alert_keys(findings_list):
    return [(a.alert_id, a.detector, a.severity, a.session_ids) for f in findings_list for a in f.alerts]


def state_of(shard) -> dict:
    """The shard's snapshot as plain data, accounts by id (order in the table is not state)."""
    version, watermark, max_event_time, recent, accounts, detectors = msgspec.msgpack.decode(shard.snapshot())
    return {
        "clock": (watermark, max_event_time),
        "recent": recent,
        "accounts": {account["account_id"]: account for account in accounts},
        "detectors": detectors,
    }


def restored(settings, base: bytes, deltas: list[bytes], live):
    """A new owner's shard. The networks learnt as shared are the process's (PostgreSQL's in the
    daemon), not the shard's: the new owner gets a copy of what the live process had learnt."""
    geo = GeoServices.from_settings(settings)
    geo.shared.restore(live.geo.shared.snapshot())
    shard = build_shard(settings, 0, geo=geo)
    shard.restore(base)
    for delta in deltas:
        shard.apply_delta(delta)
    return shard


def records_of(folder: Path) -> list[tuple[int, bytes]]:
    lines = [line for line in (folder / "events.jsonl").read_bytes().splitlines() if line.strip()]
    return list(enumerate(lines, start=1))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_full_plus_deltas_restore_exactly_at_every_point(folder: Path, tmp_path: Path) -> None:
    settings = case_settings(folder, tmp_path)
    records = records_of(folder)
    whole = build_shard(settings, 0)
    expected = alert_keys([whole.process(records), whole.drain()])

    live = build_shard(settings, 0)
    produced = []
    base = live.checkpoint(full=True)
    live.checkpointed()
    deltas: list[bytes] = []
    for cut, record in enumerate(records, start=1):
        produced.append(live.process([record]))
        if cut % 4 == 0:  # compaction: a full snapshot replaces the chain
            base, deltas = live.checkpoint(full=True), []
        else:
            deltas.append(live.checkpoint(full=False))
        live.checkpointed()
        copy = restored(settings, base, deltas, live)
        assert state_of(copy) == state_of(live), f"state after {cut} records"
        resume_at = live.commit_offset() or 1
        rest = [r for r in records if r[0] >= resume_at]
        got = alert_keys(produced + [copy.process(rest), copy.drain()])
        assert got == expected, f"cut after {cut} records"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_a_delta_whose_write_failed_is_carried_by_the_next(folder: Path, tmp_path: Path) -> None:
    """A crash (or a failed transaction) between two delta writes: the delta never stored is
    not confirmed, so the next one written holds its changes too."""
    settings = case_settings(folder, tmp_path)
    records = records_of(folder)
    live = build_shard(settings, 0)
    base = live.checkpoint(full=True)
    live.checkpointed()
    stored: list[bytes] = []
    for cut, record in enumerate(records, start=1):
        live.process([record])
        delta = live.checkpoint(full=False)
        if cut % 3 == 1:
            continue  # this write failed: nothing stored, nothing confirmed
        stored.append(delta)
        live.checkpointed()
        assert state_of(restored(settings, base, stored, live)) == state_of(live), f"state after {cut} records"


def test_a_delta_holds_only_what_changed() -> None:
    settings = case_settings(CASES / "two_live_sessions_two_networks")
    shard = build_shard(settings, 0)
    login = (
        '{{"event_id": "{n}", "type": "login_succeeded", "ts": "2026-03-02T08:{m:02d}:00Z", '
        '"account_id": "acct-{n}", "session_id": "s-{n}", "ip": "81.2.69.{h}"}}'
    )
    shard.process([(n, login.format(n=n, m=n % 20, h=n % 250).encode()) for n in range(1, 2001)])
    shard.drain()
    full = shard.checkpoint(full=True)
    shard.checkpointed()
    again = login.format(n=7, m=59, h=7).replace('"7"', '"again-7"').replace("T08:59", "T08:25")
    shard.process([(2001, again.encode())])
    shard.drain()
    delta = shard.checkpoint(full=False)
    decoded = msgspec.msgpack.decode(delta)
    assert decoded[4] == ["acct-7"]  # changed
    assert decoded[3] == ["again-7"]  # the redelivery window's new id
    assert len(delta) * 100 < len(full)
    shard.checkpointed()
    empty = msgspec.msgpack.decode(shard.checkpoint(full=False))
    assert empty[3] == [] and empty[4] == []


def test_a_delta_from_a_newer_version_is_refused() -> None:
    shard = build_shard(case_settings(CASES / "two_live_sessions_two_networks"), 0)
    with pytest.raises(ValueError, match="delta version 99"):
        shard.apply_delta(msgspec.msgpack.encode([99, 0.0, 0.0, [], [], [], {}, {}]))


def test_a_shard_never_checkpointed_tracks_no_changes() -> None:
    """A replay never checkpoints: it must not remember every account it saw for a delta."""
    shard = build_shard(case_settings(CASES / "two_live_sessions_two_networks"), 0)
    line = '{{"event_id": "{n}", "type": "login_failed", "ts": "2026-03-02T08:00:00Z", "account_id": "guess-{n}", "ip": "81.2.69.1"}}'
    shard.process([(n, line.format(n=n).encode()) for n in range(1, 1001)])
    shard.drain()
    assert not shard._dirty and not shard._unconfirmed
    with pytest.raises(ValueError, match="needs a full checkpoint"):
        shard.checkpoint(full=False)
    shard.checkpoint(full=True)
    shard.process([(1001, line.format(n=1001).replace("08:00:00", "08:05:00").encode())])
    shard.drain()
    assert shard._dirty == {"guess-1001"}


def test_session_left_open_restores_the_format_written_before_deltas() -> None:
    shard = build_shard(case_settings(CASES / "two_live_sessions_two_networks"), 0)
    detector = next(d for d in shard.detectors if d.id == "session_left_open")
    old = {"accounts": {"staff-1": [[["s1", 1.0, 2.0, "idle_timeout", None, 3]], 0.0]}, "prune_at": 86400.0}
    detector.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(old)))
    assert list(detector.accounts) == ["staff-1"] and detector.accounts["staff-1"].sessions[0].session_id == "s1"
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(detector.snapshot())) == {"staff-1": old["accounts"]["staff-1"]}
