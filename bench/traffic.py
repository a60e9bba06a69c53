"""A minimal synthetic school day for the benchmark: `portal.event/v1` events in time order.

Stand-in until the full generator (`monitor.demo.school_day`) lands; same call shape:
`generate(accounts, events, seed=..., days=..., incidents=...)` and `write_jsonl(path, events)`.

Shape: sessions start in a burst before registration at 08:45, through the school day, at
lunchtime and in the evening; a session is a login, page views of pupil records (about 80% of
all events), and a logout about half the time; about 0.1% of events are failed logins. Every
account always uses its own network (staff: the school's NAT /24, parents: their home), so
ordinary traffic never trips a detector. Incidents, about one per 2,000 events: an account that
has a session open logs in again from another network a minute later (a shared login).
"""

from __future__ import annotations

import os
import random
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Iterable, Iterator

import msgspec

DEFAULT_START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
EVENTS_PER_INCIDENT = 2000
# (share of sessions, earliest, latest, peak) in seconds after midnight.
WINDOWS = (
    (0.30, 8 * 3600 + 30 * 60, 9 * 3600, 8 * 3600 + 45 * 60),
    (0.25, 9 * 3600, 16 * 3600, None),
    (0.15, 12 * 3600, 13 * 3600 + 30 * 60, 12 * 3600 + 30 * 60),
    (0.30, 17 * 3600, 22 * 3600 + 30 * 60, 20 * 3600),
)
PAGES = ("attendance", "behaviour", "reports", "summary")


def _ip(index: int, staff: bool) -> str:
    if staff:  # one /24 per school, 50 schools
        return f"10.{20 + index % 50}.{index % 7}.{1 + index % 200}"
    return f"{81 + (index >> 16) % 100}.{(index >> 8) & 255}.{index & 255}.{1 + index % 250}"


def _start(rng: random.Random, day: float) -> float:
    r = rng.random()
    for share, earliest, latest, peak in WINDOWS:
        if r < share:
            at = rng.triangular(earliest, latest, peak) if peak else rng.uniform(earliest, latest)
            return day + at
        r -= share
    return day + rng.uniform(17 * 3600, 22 * 3600)


def _ts(at: float) -> str:
    return datetime.fromtimestamp(round(at, 3), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate(
    accounts: int, events: int, *, seed: int = 7, days: int = 1, incidents: bool = True, start: datetime = DEFAULT_START
) -> Iterator[dict]:
    """`events` events (about) from `accounts` account holders over `days` days, in time order."""
    rng = random.Random(seed)
    first_day = start.timestamp()
    planned: list[tuple[float, int, dict]] = []
    seq = 0

    def add(at: float, event: dict) -> None:
        nonlocal seq
        seq += 1
        event["event_id"] = f"bench-{seed}-{seq}"
        event["ts"] = _ts(at)
        planned.append((at, seq, event))

    session_count = 0
    while len(planned) < events:
        index = rng.randrange(accounts)
        staff = index % 5 == 0
        account = f"{'staff' if staff else 'parent'}-{index:07d}"
        portal = "schools" if staff else "parent"
        ip = _ip(index, staff)
        session_count += 1
        session = f"s-{seed}-{session_count}"
        at = _start(rng, first_day + 86400 * rng.randrange(days))
        common = {"account_id": account, "portal": portal, "ip": ip, "user_agent": "Mozilla/5.0 (bench)"}
        if rng.random() < 0.01:
            add(at - 5, {"type": "login_failed", **common})
        add(at, {"type": "login_succeeded", "session_id": session, **common})
        for _ in range(max(1, int(rng.expovariate(1 / 6)))):
            at += rng.expovariate(1 / 60)
            pupil = 1000 + (index * 7 + rng.randrange(30)) % 100_000
            add(at, {"type": "page_view", "session_id": session, "resource": f"/pupils/{pupil}/{rng.choice(PAGES)}", **common})
        if incidents and rng.random() * EVENTS_PER_INCIDENT < 8:  # ~8 events per session
            other = f"{session}-shared"
            stranger = {**common, "ip": f"203.0.{rng.randrange(113, 200)}.{rng.randrange(1, 250)}", "user_agent": "curl/8"}
            add(at + 30, {"type": "login_succeeded", "session_id": other, **stranger})
            add(at + 40, {"type": "page_view", "session_id": other, "resource": f"/pupils/{1000 + index % 100_000}/reports", **stranger})
        if rng.random() < 0.5:
            add(at + 60, {"type": "logout", "session_id": session, **common})
    planned.sort(key=lambda item: (item[0], item[1]))
    return (event for _, _, event in planned[:events])


def write_jsonl(path: str | os.PathLike[str], events: Iterable[dict]) -> int:
    """Write events as JSON lines to `path` (`-` for standard output); how many."""
    encode = msgspec.json.Encoder().encode_lines
    written = 0
    batch: list[dict] = []
    target = nullcontext(sys.stdout.buffer) if str(path) == "-" else open(path, "wb")
    with target as out:
        for event in events:
            batch.append(event)
            if len(batch) == 4096:
                out.write(encode(batch))
                written += len(batch)
                batch.clear()
        if batch:
            out.write(encode(batch))
            written += len(batch)
    return written
