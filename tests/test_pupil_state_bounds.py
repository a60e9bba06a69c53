"""`bulk_record_access` keeps a usual for at most `max_accounts` accounts per shard.

Beyond, the accounts first seen longest ago are forgotten (an eighth at a time):
they start again from their role's usual, as a new account does. Checkpoints keep the bound
and the windows' order.
"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import pytest

from detectors.base import DetectorContext
from detectors.bulk_record_access import BulkRecordAccess, BulkRecordAccessSettings
from monitor.contract.events import PortalEvent
from monitor.places.networks import NetworkMap
from monitor.state.sessions import SessionTable

DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)
HOUR = 3600.0


def detector(**settings) -> BulkRecordAccess:
    networks = NetworkMap([])
    context = DetectorContext(SessionTable(networks, idle_timeout=1800, max_duration=43200, max_items=50), networks)
    return BulkRecordAccess(BulkRecordAccessSettings(**settings), context)


def view(account: str, pupil: str, at: float) -> PortalEvent:
    event = PortalEvent(event_id="e", type="page_view", ts=DAY, account_id=account, session_id="s",  # type: ignore[arg-type]
                        portal="schools", role="teacher", resource=f"/pupils/{pupil}", pupil_id=pupil, action="view")
    event.at = at
    return event


def test_max_accounts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BulkRecordAccessSettings(max_accounts=0)


def test_baselines_never_exceed_max_accounts() -> None:
    bulk = detector(max_accounts=100)
    for n in range(1000):
        bulk.on_event(view(f"staff-{n:04d}", "4711", n * 10.0), None)  # type: ignore[arg-type]
        assert len(bulk.baselines) <= 100
    bulk.on_tick(10 ** 9)
    assert 0 < len(bulk.baselines) <= 100
    assert "staff-0999" in bulk.baselines  # the newest stay
    assert "staff-0000" not in bulk.baselines


def test_the_accounts_forgotten_first_are_those_first_seen_longest_ago() -> None:
    bulk = detector(max_accounts=16)
    for n in range(16):  # 16 accounts, one window each, all closed
        bulk.on_event(view(f"staff-{n:02d}", "4711", n * 1.0), None)  # type: ignore[arg-type]
    bulk.on_tick(2 * HOUR)
    bulk.on_event(view("staff-05", "4712", 3 * HOUR), None)  # type: ignore[arg-type]
    bulk.on_tick(5 * HOUR)
    assert (bulk.baselines["staff-05"] >> 8) & 0xFF == 2  # two windows seen
    bulk.on_event(view("staff-new", "4711", 6 * HOUR), None)  # type: ignore[arg-type]
    assert len(bulk.baselines) <= 16
    assert "staff-new" in bulk.baselines and "staff-05" in bulk.baselines
    assert "staff-00" not in bulk.baselines and "staff-01" not in bulk.baselines  # the first seen


def test_an_account_forgotten_while_its_window_is_open_learns_from_it_afresh() -> None:
    bulk = detector(max_accounts=8)
    bulk.on_event(view("staff-open", "4711", 0.0), None)  # type: ignore[arg-type]
    for n in range(20):
        bulk.on_event(view(f"staff-{n:02d}", "4711", 1.0 + n), None)  # type: ignore[arg-type]
    assert "staff-open" not in bulk.baselines
    bulk.on_tick(HOUR + 0.5)  # its window only ends
    assert list(bulk.live) == [f"staff-{n:02d}" for n in range(20)]
    assert (bulk.baselines["staff-open"] >> 8) & 0xFF == 1
    assert len(bulk.baselines) <= 8


def test_checkpoint_keeps_windows_in_order_and_they_close() -> None:
    bulk = detector()
    for n in range(5):
        bulk.on_event(view(f"staff-{n}", "4711", n * 60.0), None)  # type: ignore[arg-type]
    saved = msgspec.msgpack.decode(msgspec.msgpack.encode(bulk.snapshot()))
    again = detector()
    again.restore(saved)
    assert [w.account_id for w in again.ends] == [f"staff-{n}" for n in range(5)]
    again.on_tick(HOUR + 120.0)  # the first three windows ended
    assert sorted(again.live) == ["staff-3", "staff-4"]
    assert set(again.baselines) == {f"staff-{n}" for n in range(5)}
    assert (again.baselines["staff-0"] >> 8) & 0xFF == 1
