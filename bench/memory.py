"""Memory per tracked account: one process per size, state built through the real engine.

    python -m bench.memory --accounts 1000000 --owners

Every account gets the state of every detector (issue 19): `--links` pupil links (Parent Portal
accounts; `pupil_linked` events: `unlinked_pupil_access`'s links), `--failed` failed logins
(`brute_force`'s credential state, the network stage's outcomes), then one live session from its
home broadband in the demo world (so the session is located: `new_country`,
`impossible_travel`), and `--views` views of pupils' records, of its linked pupils
(`bulk_record_access`'s window and pupil count; `unlinked_pupil_access` judges them). Every
`--staff-every`-th account is a Schools' Portal account (staff) that first left `--left-open`
sessions without logging out (ended by the portal's `session_expired`: `session_left_open`).
An account's failures, sessions left open and login come one after the other, as a person mistyping
a password does (no password spray); the whole run spans `--span` seconds of event time, within
`brute_force`'s 10-minute window, so no state is forgotten before it is measured.

The records go through a shard built from the default settings with every detector on, in
batches of 5,000 as in replay, and its login outcomes through the network stage, as replay
does. With no `PORTAL_MONITOR_GEOIP__*` in the environment the demo world's GeoIP databases
are written to a temporary folder (`bench/locations.py`; `--without-locations`: none).

Printed as JSON: resident memory before (interpreter, imports, the shard) and after
(everything drained and collected), peak RSS (VmHWM), and (after - before) / tracked
accounts. The redelivery windows (the last `engine.dedup_window` event ids of the shard and of
the stage) are part of "after": bounded, so their share per account falls as accounts grow.
`--owners` walks the structures after the RSS is read and attributes every object reachable
from each owner (the session table, each detector, the network stage, ...) to the first owner
that reaches it, in bytes per account (`owners_bytes_per_account`). `--trace N` traces
allocations (slow) and prints the N files and N lines holding most to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import msgspec

from detectors.registry import detector_ids
from monitor.service.config import load_settings
from monitor.service.shards import build_network_stage, build_shard

BASE = 1772438400  # 2026-03-02T08:00:00Z


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


_HOMES: tuple = ()


def home_ip(index: int) -> str:
    """The account's home address, in one of the demo world's home broadband networks (so the
    demo GeoIP databases of bench/locations.py place it and the session gets location state)."""
    global _HOMES
    from monitor.demo.world import ip_at, networks_of_kind

    if not _HOMES:
        _HOMES = networks_of_kind("home_broadband")
    return ip_at(_HOMES[index % len(_HOMES)], index // len(_HOMES))


def _ts(at: float) -> str:
    seconds = int(at)
    return (f"2026-03-02T{8 + (seconds - BASE) // 3600:02d}:{(seconds // 60) % 60:02d}:{seconds % 60:02d}."
            f"{int((at % 1) * 1000):03d}Z")


def records(
    accounts: int, views: int, links: int = 0, failed: int = 0, staff_every: int = 0, left_open: int = 1,
    pupils: int = 90_000, span: float = 540.0, batch: int = 5000,
) -> Iterator[list[tuple[int, bytes]]]:
    """The accounts' events in rounds (links, then logins, then views), event time rising over `span`."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    rounds = links + 1 + views
    per_round = max(1, accounts)
    for round_ in range(rounds):
        for i in range(accounts):
            at = BASE + span * (round_ * per_round + i) / (rounds * per_round)
            ts = _ts(at)
            account = f"acct-{i:07d}"
            staff = bool(staff_every) and i % staff_every == 0
            portal = "schools" if staff else "parent"
            lines: list[str] = []
            if round_ < links:
                if staff:
                    continue  # staff see pupils by their role, not by links
                pupil = 1000 + (i * 7 + round_) % pupils
                lines.append(f'{{"event_id":"m-{offset}","type":"pupil_linked","ts":"{ts}","account_id":"{account}",'
                             f'"pupil_id":"{pupil}","portal":"parent"}}')
            elif round_ == links:
                ip = home_ip(i)
                for n in range(failed):
                    lines.append(f'{{"event_id":"m-{offset}-f{n}","type":"login_failed","ts":"{ts}","account_id":"{account}",'
                                 f'"ip":"{ip}","portal":"{portal}","user_agent":"Mozilla/5.0 (bench)"}}')
                for n in range(left_open if staff else 0):
                    lines.append(f'{{"event_id":"m-{offset}-o{n}","type":"login_succeeded","ts":"{ts}","account_id":"{account}",'
                                 f'"session_id":"s-{i}-{n}","ip":"{ip}","portal":"{portal}","user_agent":"Mozilla/5.0 (bench)"}}')
                    lines.append(f'{{"event_id":"m-{offset}-e{n}","type":"session_expired","ts":"{ts}","account_id":"{account}",'
                                 f'"session_id":"s-{i}-{n}","portal":"{portal}"}}')
                lines.append(f'{{"event_id":"m-{offset}","type":"login_succeeded","ts":"{ts}","account_id":"{account}",'
                             f'"session_id":"s-{i}","ip":"{ip}","portal":"{portal}","user_agent":"Mozilla/5.0 (bench)"}}')
            else:
                view = round_ - links - 1
                # A parent views its own linked pupils (in turn); staff, pupils of the school.
                pick = view % links if links and not staff else links + view
                pupil = 1000 + (i * 7 + pick) % pupils
                lines.append(f'{{"event_id":"m-{offset}","type":"page_view","ts":"{ts}","account_id":"{account}",'
                             f'"session_id":"s-{i}","ip":"{home_ip(i)}","portal":"{portal}",'
                             f'"resource":"/pupils/{pupil}/attendance"}}')
            for line in lines:
                out.append((offset, line.encode()))
                offset += 1
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


# -- who holds the bytes ---------------------------------------------------------------------------

_LEAVES = (str, bytes, float, int, bool, type(None), complex, bytearray)
_SKIP = (type, type(len), type(lambda: 0), type(sys), type(print.__call__))


def _rounded(size: int) -> int:
    return (size + 15) & ~15  # pymalloc's and glibc's 16-byte granularity


def walk(root: Any, seen: set[int], skip: set[int]) -> int:
    """Bytes of every object reachable from `root` not in `seen` (which it joins) nor in `skip`."""
    total = 0
    stack = [root]
    getsize = sys.getsizeof
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in seen or key in skip or isinstance(obj, _SKIP):
            continue
        seen.add(key)
        total += _rounded(getsize(obj))
        if isinstance(obj, _LEAVES) or type(obj) is array:
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            stack.extend(obj)
        elif isinstance(obj, msgspec.Struct):
            stack.extend(getattr(obj, name) for name in obj.__struct_fields__)
        else:
            for cls in type(obj).__mro__:
                for name in cls.__dict__.get("__slots__", ()):
                    if hasattr(obj, name) and name not in ("__weakref__", "__dict__"):
                        stack.append(getattr(obj, name))
            state = getattr(obj, "__dict__", None)
            if isinstance(state, dict):
                stack.extend(state.values())  # the instance's attributes (its dict counted with it)
    return total


def owners(shard: Any, stage: Any, tracked: int) -> dict[str, float]:
    """Bytes per tracked account by owner: each object counts once, for the first owner reaching it."""
    from monitor.state import interning

    seen: set[int] = set()
    # Lent, configured or process-wide: not per-account state of any owner.
    skip = {id(shard.geo), id(shard.sessions._networks), id(shard.decoder)}
    for detector in shard.detectors:
        skip.add(id(detector.settings))
        for name in ("geo", "networks", "lent", "sessions", "context"):
            if hasattr(detector, name):
                skip.add(id(getattr(detector, name)))
    result: dict[str, float] = {}

    def note(name: str, *roots: Any) -> None:
        size = sum(walk(root, seen, skip) for root in roots)
        result[name] = round(size / max(tracked, 1), 1)

    table = shard.sessions
    note("session table", table.accounts, table._expiry, table.closed)
    for detector in shard.detectors:
        note(detector.id, *(value for name, value in vars(detector).items() if name != "settings"))
    if stage is not None:
        note("network stage", *(vars(d) for d in stage.detectors), stage._buffer)
    shared = [value for module in _interning_modules() for value in vars(module).values() if isinstance(value, interning.Interner)]
    note("shared copies (interners)", table._texts, *shared)
    skip.discard(id(shard.geo))
    note("geo services (bounded)", shard.geo)
    note("redelivery windows (bounded)", shard.redeliveries, *( [stage.redeliveries] if stage is not None else []))
    result["total"] = round(sum(result.values()), 1)
    return result


def _interning_modules() -> list[Any]:
    return [module for name, module in list(sys.modules.items())
            if module is not None and (name.startswith("detectors.") or name.startswith("monitor."))]


# -- the run ---------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k.startswith("PORTAL_MONITOR_")}  # e.g. bench/locations.py's
    folder = None
    if not args.without_locations and not any(k.startswith("PORTAL_MONITOR_GEOIP__") for k in env):
        from bench.locations import location_environment

        folder = tempfile.TemporaryDirectory(prefix="bench-memory-")
        env.update(location_environment(Path(folder.name)))
    env.update({f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()})
    settings = load_settings(None, environ=env)
    shard = build_shard(settings, 0)
    stage = build_network_stage(settings, 0) if settings.detectors.password_spray.enabled else None
    gc.collect()
    if args.trace:
        tracemalloc.start()
    before = rss_kib()
    started = time.perf_counter()
    events = alerts = 0
    batches = records(args.accounts, args.views, args.links, args.failed, args.staff_every, args.left_open,
                      args.pupils, args.span)
    for batch in batches:
        findings = shard.process(batch)
        events += len(batch)
        alerts += len(findings.alerts)
        if stage is not None and findings.login_outcomes:
            alerts += len(stage.feed(findings.login_outcomes).alerts)
    findings = shard.drain()
    alerts += len(findings.alerts)
    if stage is not None:
        if findings.login_outcomes:
            alerts += len(stage.feed(findings.login_outcomes).alerts)
        alerts += len(stage.drain().alerts)
    seconds = time.perf_counter() - started
    del batches, findings
    gc.collect()
    after = rss_kib()
    tracked = len(shard.sessions.accounts)
    if args.trace:
        report_allocations(tracemalloc.take_snapshot(), tracked, args.trace)
        tracemalloc.stop()
    result = {
        "accounts": args.accounts,
        "tracked_accounts": tracked,
        "open_sessions": shard.sessions.open_sessions,
        "events": events,
        "alerts": alerts,
        "views_per_session": args.views,
        "links": args.links,
        "failed_logins": args.failed,
        "staff_every": args.staff_every,
        "located": folder is not None or any(k.startswith("PORTAL_MONITOR_GEOIP__") for k in env),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "peak_rss_mib": round(rss_kib("VmHWM") / 1024, 1),
        "bytes_per_account": round((after - before) * 1024 / max(tracked, 1)),
        "seconds": round(seconds, 3),
    }
    if args.owners:
        result["owners_bytes_per_account"] = owners(shard, stage, tracked)
    if folder is not None:
        folder.cleanup()
    return result


def report_allocations(snapshot: "tracemalloc.Snapshot", tracked: int, top: int) -> None:
    """The `top` files and source lines holding the most memory still allocated, per tracked account (stderr)."""
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    for kind in ("filename", "lineno"):
        stats = snapshot.statistics(kind)
        if kind == "filename":
            total = sum(stat.size for stat in stats)
            print(f"tracemalloc: {total / max(tracked, 1):.0f} B/account allocated since the shard was built", file=sys.stderr)
        print(f"-- by {'file' if kind == 'filename' else 'line'}", file=sys.stderr)
        for stat in stats[:top]:
            frame = stat.traceback[0]
            where = frame.filename.replace(root, "")
            line = f":{frame.lineno}" if kind == "lineno" else ""
            print(f"{stat.size / max(tracked, 1):8.1f} B/account {stat.count:>10,} blocks  {where}{line}", file=sys.stderr)


def main() -> None:
    from monitor.support.logging import configure_logging

    configure_logging("warning", "json", stream=sys.stderr)  # stdout carries the result
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, required=True, help="accounts to track")
    parser.add_argument("--views", type=int, default=3, help="pupils' records viewed per session (default 3)")
    parser.add_argument("--links", type=int, default=3, help="pupil links per Parent Portal account (default 3; 0: none)")
    parser.add_argument("--failed", type=int, default=1, help="failed logins per account before its login (default 1)")
    parser.add_argument("--staff-every", type=int, default=5, metavar="K",
                        help="every K-th account is staff (Schools' Portal; default 5; 0: parents only)")
    parser.add_argument("--left-open", type=int, default=1, help="sessions each staff account left open before (default 1)")
    parser.add_argument("--pupils", type=int, default=90_000, help="distinct pupils viewed and linked (default 90,000)")
    parser.add_argument("--span", type=float, default=540.0, help="seconds of event time the run spans (default 540)")
    parser.add_argument("--without-locations", action="store_true",
                        help="no demo GeoIP databases when none is configured: the location detectors stay off")
    parser.add_argument("--owners", action="store_true",
                        help="also attribute the bytes to their owners (session table, each detector, ...) by walking them")
    parser.add_argument("--trace", type=int, default=0, metavar="N",
                        help="also trace allocations (slow) and print the N files and lines holding most to stderr")
    args = parser.parse_args()
    print(json.dumps(measure(args)))


if __name__ == "__main__":
    main()
