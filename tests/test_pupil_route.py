"""Which detectors a page view calls: the pupil path only for views naming a pupil, and
`unlinked_pupil_access` (which never judges staff) not for the Schools' Portal's."""

from __future__ import annotations

import json

from bench.pupils import _settings
from monitor.service.shards import build_shard


def line(n: int, portal: str, account: str, resource: str, pupil: str | None = None) -> tuple[int, bytes]:
    event = {"event_id": f"e-{n}", "type": "page_view", "ts": f"2026-03-03T09:{n:02d}:00Z", "account_id": account,
             "session_id": f"s-{account}", "ip": "81.2.69.160", "portal": portal, "resource": resource}
    if pupil is not None:
        event["pupil_id"] = pupil
    return n, json.dumps(event).encode()


def test_the_pupil_path_is_taken_by_views_of_pupils_only_and_unlinked_is_not_called_for_staff(monkeypatch) -> None:
    shard = build_shard(_settings(True), 0)
    calls: list[tuple[str, str, str | None]] = []
    for detector in shard.detectors:
        if detector.id in ("bulk_record_access", "unlinked_pupil_access"):
            original = detector.on_event

            def spy(event, account, original=original, name=detector.id):
                calls.append((name, event.portal, event.pupil_id))
                return original(event, account)

            monkeypatch.setattr(detector, "on_event", spy)
    # The dispatch tables hold bound methods taken at construction: rebuild them with the spies.
    from monitor.engine import shard as shard_module

    shard._dispatch = {route: tuple(d.on_event for d in shard.detectors if shard_module._routed(d, route))
                       for route in shard_module.ROUTES}
    findings = shard.process([
        line(1, "parent", "parent-1", "/timetable"),             # no pupil: neither
        line(2, "parent", "parent-1", "/pupils/4711"),           # a parent's: both
        line(3, "schools", "staff-1", "/pupils/4712/reports"),   # staff's: bulk only
        line(4, "schools", "staff-1", "/staff/rota"),            # no pupil: neither
    ])
    findings = shard.drain()
    assert calls == [
        ("unlinked_pupil_access", "parent", "4711"), ("bulk_record_access", "parent", "4711"),
        ("bulk_record_access", "schools", "4712"),
    ] or calls == [
        ("bulk_record_access", "parent", "4711"), ("unlinked_pupil_access", "parent", "4711"),
        ("bulk_record_access", "schools", "4712"),
    ]
    assert findings is not None
