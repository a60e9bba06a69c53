"""The reorder buffer: release in event-time order (arrival order on ties), and the commit offset.

Events arriving in order take the buffer's fast path; out-of-order ones go to the stragglers'
heap. Whatever the mix, what the detectors see and what may be committed must not change.
"""

from __future__ import annotations

import json

from monitor.service.config import load_settings
from monitor.service.shards import build_shard


def record(offset: int, second: int, account: str = "staff-1") -> tuple[int, bytes]:
    event = {
        "event_id": f"e{offset}",
        "type": "page_view",
        "ts": f"2026-03-02T08:00:{second:02d}Z",
        "account_id": account,
        "session_id": f"s-{account}",
        "resource": f"/pupils/{offset}/attendance",
    }
    return offset, json.dumps(event).encode()


def shard(lateness: str = "2s"):
    settings = load_settings(None, environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": lateness})
    return build_shard(settings, partition=0)


def viewed(s) -> list[str]:
    state = s.sessions.accounts["staff-1"]
    return [item.resource for item in state.sessions["s-staff-1"].items]


def test_out_of_order_events_are_released_in_event_time_order() -> None:
    s = shard()
    # arrival: 10, 12, 11 (straggler), 12 again (tie: arrival order), 9 (straggler), 20 (moves the watermark to 18)
    s.process([record(0, 10), record(1, 12), record(2, 11), record(3, 12), record(4, 9), record(5, 20)])
    assert viewed(s) == [f"/pupils/{n}/attendance" for n in (4, 0, 2, 1, 3)]


def test_commit_offset_is_the_oldest_still_buffered() -> None:
    s = shard()
    s.process([record(0, 10), record(1, 11)])
    assert s.commit_offset() == 0  # both held: nothing may be committed past them
    s.process([record(2, 13), record(3, 12)])  # watermark 11: 10 and 11 released; 3 is a straggler
    assert s.commit_offset() == 2
    s.process([record(4, 14)])  # watermark 12: offset 3 (at 12) released, offset 2 (at 13) still held
    assert s.commit_offset() == 2
    s.process([record(5, 30)])  # everything up to 28 released
    assert s.commit_offset() == 5
    s.drain()
    assert s.commit_offset() == 6


def test_a_straggler_alone_holds_the_commit() -> None:
    s = shard()
    s.process([record(0, 10), record(1, 20)])  # watermark 18: offset 0 released, offset 1 held
    s.process([record(2, 19)])  # after the held one in offset, before it in event time
    assert s.commit_offset() == 1
    s.process([record(3, 22)])  # watermark 20: releases both
    assert s.commit_offset() == 3


def test_without_lateness_nothing_is_held() -> None:
    s = shard("0s")
    s.process([record(0, 10), record(1, 9)])
    assert viewed(s) == ["/pupils/0/attendance", "/pupils/1/attendance"]
    assert s.commit_offset() == 2
