"""Sessions that end without a logout reach the detectors the same way however the stream is cut.

`Shard._sessions_ended` hands `Detector.on_sessions_ended` the sessions closed by the idle
timeout (in the expiry sweep, or in a page view that found its session expired) and by the
portal's `session_expired`. `session_left_open` relies on two things, checked here on a few
days of synthetic traffic cut into batches of very different sizes, and restored from a
checkpoint half way: every such session is handed over exactly once, and taking each call's
sessions in `closed_at` order gives one and the same order for any cut.
"""

from __future__ import annotations

import msgspec
import pytest

from detectors.base import Detector
from monitor.demo.school_day import generate
from monitor.engine.shard import Shard
from monitor.service.config import load_settings
from monitor.service.shards import build_shard


class Recorder(Detector):
    id = "recorder"
    event_types = ()

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, str]] = []

    def on_sessions_ended(self, sessions):
        batch = sorted((s.closed_at, s.account_id, s.session_id, s.close_reason) for s in sessions)
        self.seen.extend(batch)
        return None


@pytest.fixture(scope="module")
def records() -> list[tuple[int, bytes]]:
    encode = msgspec.json.encode
    return [(n, encode(e)) for n, e in enumerate(generate(120, 12_000, seed=5, days=3), 1)]


def recording_shard(settings, recorder: Recorder) -> Shard:
    """The shard `build_shard` makes, with `recorder` as one more detector."""
    built = build_shard(settings, 0)
    return Shard(
        0, decoder=built.decoder, sessions=built.sessions, detectors=[*built.detectors, recorder],
        allowed_lateness=built.allowed_lateness, dedup_window=built.redeliveries.size,
        max_clock_skew=built.max_clock_skew, geo=built.geo, gap_floor=built.gap_floor,
    )


def replay(records, batch: int, restore_at: int | None = None) -> tuple[list, dict[str, int]]:
    settings = load_settings(None, environ={})
    recorder = Recorder()
    shard = recording_shard(settings, recorder)
    counts: dict[str, int] = {}
    start = 0
    if restore_at is not None:
        for i in range(0, restore_at, batch):
            shard.process(records[i : min(i + batch, restore_at)])
        resume = shard.commit_offset() or 1
        data = shard.snapshot()
        for portal, n in shard.sessions_left_open.items():
            counts[portal] = counts.get(portal, 0) + n
        seen = recorder.seen
        recorder = Recorder()
        recorder.seen = seen
        shard = recording_shard(settings, recorder)
        shard.restore(data)
        start = resume - 1  # offsets are 1-based here
    for i in range(start, len(records), batch):
        shard.process(records[i : i + batch])
    shard.drain()
    for portal, n in shard.sessions_left_open.items():
        counts[portal] = counts.get(portal, 0) + n
    return recorder.seen, counts


def test_every_session_ended_without_logout_is_handed_over_once_in_event_time_order(records) -> None:
    whole, counts = replay(records, len(records))
    assert len({(account, session, at) for at, account, session, _ in whole}) == len(whole), "each once"
    assert [item[0] for item in whole] == sorted(item[0] for item in whole), "in closed_at order"
    reasons = {item[3] for item in whole}
    assert {"idle_timeout", "session_expired"} <= reasons
    staff_idle = sum(1 for _, account, _, reason in whole if account.startswith("staff-") and reason == "idle_timeout")
    assert staff_idle > 0
    assert sum(counts.values()) == sum(1 for item in whole if item[3] != "max_duration")
    for batch in (1, 7, 500):
        assert replay(records, batch) == (whole, counts), f"batches of {batch}"


def test_a_restored_shard_hands_over_the_same_sessions(records) -> None:
    whole, counts = replay(records, len(records))
    for cut in (len(records) // 3, len(records) // 2):
        seen, restored_counts = replay(records, 250, restore_at=cut)
        assert seen == whole
        assert restored_counts == counts


def test_sessions_left_open_are_counted_by_portal_from_zero() -> None:
    """`portal_monitor_sessions_left_open_total{portal}` exists at zero for every portal before
    any event, and counts every session ended without a logout, staff or parent."""
    import asyncio
    from pathlib import Path

    from prometheus_client import generate_latest

    from detectors.registry import detector_ids
    from monitor.service.offline import build_offline_pipeline, start_offline
    from monitor.support.metrics import Metrics
    from tests.test_detector_cases import Collect

    metrics = Metrics(detector_ids(), ["collect"])
    text = generate_latest(metrics.registry).decode()
    for portal in ("schools", "parent", "unknown"):
        assert f'portal_monitor_sessions_left_open_total{{portal="{portal}"}} 0.0' in text

    async def replay(folder: Path) -> None:
        lines = [line for line in (folder / "events.jsonl").read_bytes().splitlines() if line.strip()]
        pipeline = build_offline_pipeline(load_settings(None, environ={}), [Collect()], metrics)
        await start_offline(pipeline)
        await pipeline.run_file(iter([list(enumerate(lines, 1))]))

    cases = Path(__file__).parent / "detector_cases"
    asyncio.run(replay(cases / "session_left_open_five_times_in_a_week"))
    asyncio.run(replay(cases / "session_left_open_parent_account_is_not_judged"))
    value = metrics.registry.get_sample_value
    # Five-in-a-week: six sessions left open, one of them twice (taken up again after the idle
    # timeout, so two idle spells); the parent's six ended by the Parent Portal's expiry.
    assert value("portal_monitor_sessions_left_open_total", {"portal": "schools"}) == 7
    assert value("portal_monitor_sessions_left_open_total", {"portal": "parent"}) == 6
    assert value("portal_monitor_sessions_left_open_total", {"portal": "unknown"}) == 0
