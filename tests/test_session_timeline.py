"""A session's timeline of viewed items: packed in memory, read back unchanged, bounded."""

from __future__ import annotations

import json

from monitor.service.config import load_settings
from monitor.state.sessions import ViewedItem
from monitor.service.shards import build_shard


def view(n: int, resource: str, action: str = "view") -> tuple[int, bytes]:
    event = {"event_id": f"v{n}", "type": "page_view", "ts": f"2026-03-02T08:{n // 60:02d}:{n % 60:02d}.25Z",
             "account_id": "parent-7", "session_id": "s1", "resource": resource, "action": action}
    return n, json.dumps(event).encode()


def test_items_come_back_in_order_with_their_times_and_actions() -> None:
    shard = build_shard(load_settings(None, environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"}), 0)
    shard.process([view(1, "/pupils/4711/attendance"), view(2, "/pupils/4711/reports", "download"),
                   view(3, "/élèves/Zoë/rapport ✓", "print"), view(4, "/returns/" + "x" * 2000, "export")])
    session = shard.sessions.accounts["parent-7"].sessions["s1"]
    base = 1772438400.0  # 2026-03-02T08:00:00Z
    assert session.items == [
        ViewedItem(base + 1.25, "/pupils/4711/attendance", "view"),
        ViewedItem(base + 2.25, "/pupils/4711/reports", "download"),
        ViewedItem(base + 3.25, "/élèves/Zoë/rapport ✓", "print"),
        ViewedItem(base + 4.25, "/returns/" + "x" * 2000, "export"),
    ]
    assert session.page_views == 4 and session.items_dropped == 0


def test_only_the_last_max_items_are_kept_and_the_rest_counted() -> None:
    settings = load_settings(None, environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s",
                                            "PORTAL_MONITOR_SESSIONS__MAX_ITEMS": "3"})
    shard = build_shard(settings, 0)
    shard.process([view(n, f"/pupils/{n}/attendance") for n in range(1, 8)])
    session = shard.sessions.accounts["parent-7"].sessions["s1"]
    assert [item.resource for item in session.items] == [f"/pupils/{n}/attendance" for n in (5, 6, 7)]
    assert session.page_views == 7 and session.items_dropped == 4
