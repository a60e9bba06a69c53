"""Write a synthetic school day of portal events to a JSONL file, and say how fast it was made.

    python bench/generate.py --accounts 20000 --events 200000 --days 1 --seed 7 \\
        --out day.jsonl --incidents-out incidents.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path

# Run as a script from a checkout: make the repository importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402

from monitor.demo.school_day import DEFAULT_START, generate_with_incidents, write_jsonl  # noqa: E402


def _start(text: str) -> datetime:
    start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if start.tzinfo is None:
        raise argparse.ArgumentTypeError("give the start with a UTC offset or Z, e.g. 2026-03-02T06:00:00Z")
    return start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Generate synthetic Schools' Portal and Parent Portal traffic (portal.event/v1) as JSON "
        "Lines, in event-time order, and print the generation rate to stderr.",
    )
    parser.add_argument("--accounts", type=int, default=20_000,
                        help="account holders; about a fifth are staff, the rest parents (default: %(default)s)")
    parser.add_argument("--events", type=int, default=200_000,
                        help="exact number of events to write, incidents included (default: %(default)s)")
    parser.add_argument("--days", type=int, default=1,
                        help="days of traffic from the start; the holiday-abroad incident needs 3 or more "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7,
                        help="random seed; the same arguments always give the same events (default: %(default)s)")
    parser.add_argument("--start", type=_start, default=DEFAULT_START,
                        help="first moment of the window, RFC 3339 (default: 2026-03-02T06:00:00Z, a Monday)")
    parser.add_argument("--no-incidents", dest="incidents", action="store_false",
                        help="ordinary traffic only: inject no incidents")
    parser.add_argument("--out", required=True,
                        help="JSONL file to write, one event per line ('-' for standard output)")
    parser.add_argument("--incidents-out", metavar="FILE",
                        help="also write the manifest of injected incidents, as a JSON array, to FILE")
    args = parser.parse_args(argv)

    generating = 0.0  # seconds spent making events, apart from encoding and writing them

    def timed(events: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
        nonlocal generating
        while True:
            began = time.perf_counter()
            chunk = list(islice(events, 4096))
            generating += time.perf_counter() - began
            if not chunk:
                return
            yield from chunk

    began = time.perf_counter()
    try:
        events, incidents = generate_with_incidents(args.accounts, args.events, seed=args.seed, start=args.start,
                                                    days=args.days, incidents=args.incidents)
    except ValueError as error:
        parser.error(str(error))
    generating += time.perf_counter() - began
    written = write_jsonl(args.out, timed(events))
    total = time.perf_counter() - began
    if args.incidents_out:
        Path(args.incidents_out).write_bytes(msgspec.json.format(msgspec.json.encode(incidents)) + b"\n")
    print(f"generated {written} events ({len(incidents)} incident records) in {generating:.2f} s: "
          f"{written / generating:,.0f} events/s; with encoding and writing {total:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
