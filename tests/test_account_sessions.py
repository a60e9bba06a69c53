"""An account's live sessions: a `OneSession` while there is one, a dict while there are more."""

from __future__ import annotations

import heapq
import json
import random

from monitor.service.config import load_settings
from monitor.state.sessions import ExpirySchedule, OneSession
from monitor.service.shards import build_shard


def event(n: int, kind: str, session_id: str) -> tuple[int, bytes]:
    record = {"event_id": f"e{n}", "type": kind, "ts": f"2026-03-02T08:00:{n:02d}Z", "account_id": "parent-7",
              "session_id": session_id, "ip": "81.2.69.10"}
    if kind == "page_view":
        record["resource"] = "/pupils/4711/attendance"
    return n, json.dumps(record).encode()


def test_sessions_read_the_same_whether_one_or_several() -> None:
    shard = build_shard(load_settings(None, environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"}), 0)
    shard.process([event(1, "login_succeeded", "s1")])
    account = shard.sessions.accounts["parent-7"]
    sessions = account.sessions
    assert type(sessions) is OneSession
    assert len(sessions) == 1 and sessions and "s1" in sessions and "s2" not in sessions
    assert sessions.get("s2") is None and sessions.get("s2", 0) == 0
    assert list(sessions) == list(sessions.keys()) == ["s1"]
    assert sessions["s1"] is sessions.get("s1") is sessions.values()[0] is dict(sessions.items())["s1"]

    shard.process([event(2, "login_succeeded", "s2"), event(3, "page_view", "s1")])
    assert type(account.sessions) is dict and list(account.sessions) == ["s1", "s2"]
    assert account.sessions["s1"].page_views == 1 and shard.sessions.open_sessions == 2

    shard.process([event(4, "logout", "s1")])
    assert type(account.sessions) is OneSession and list(account.sessions) == ["s2"]
    shard.process([event(5, "login_succeeded", "s2")])  # a repeated login re-opens it
    assert type(account.sessions) is OneSession and shard.sessions.open_sessions == 1

    shard.process([event(6, "logout", "s9")])  # not a live session: nothing changes
    assert list(account.sessions) == ["s2"]
    shard.process([event(7, "logout", "s2")])
    assert "parent-7" not in shard.sessions.accounts and shard.sessions.open_sessions == 0


def test_expiry_schedule_hands_out_due_entries_in_the_heaps_order() -> None:
    """Against the heap of (expires_at, account_id, session_id) it replaces, ties included."""
    rng = random.Random(8)
    schedule, heap = ExpirySchedule(), []
    watermark = 1772438400.0
    for step in range(5000):
        at = watermark + rng.choice([0.0, 0.25, rng.uniform(0, 30), float(rng.randrange(30))])
        entry = (at, f"parent-{rng.randrange(40)}", f"s{rng.randrange(3)}")
        schedule.add(*entry)
        heapq.heappush(heap, entry)
        if step % 7 == 0:
            watermark += rng.choice([0.0, 0.5, rng.uniform(0, 10), float(rng.randrange(10))])
            expected = []
            while heap and heap[0][0] < watermark:
                expected.append(heapq.heappop(heap))
            assert schedule.take_due(watermark) == expected
    assert schedule.take_due(float("inf")) == sorted(heap)
