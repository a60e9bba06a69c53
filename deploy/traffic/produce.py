"""Send portal.event/v1 records to Kafka: the compose stack's traffic generator.

Events come from `monitor.demo.school_day.generate(accounts, events, seed=...)` (a simulated
school day), or, with `--stdin`, from JSON lines on standard input, e.g.

    python bench/generate.py ... | python deploy/traffic/produce.py --stdin

Each record's key is the event's account_id, as the portals produce them, so one account's
events stay in one partition and one monitor shard. `--rate` paces sending (events per
second, 0 = as fast as the broker takes them); `--shift-to-now` moves each pass's event times
so its first event happens now (relative times are kept); `--loop` repeats the generated day
with the next seed until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--topic", default="portal.events")
    parser.add_argument("--stdin", action="store_true", help="read JSON lines from stdin instead of generating")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts in the generated school (default 1000)")
    parser.add_argument("--events", type=int, default=50_000, help="events per generated day (default 50000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="events per second; 0 = unpaced")
    parser.add_argument("--shift-to-now", action="store_true", help="move event times so each pass starts now")
    parser.add_argument("--loop", action="store_true", help="generate day after day (seed+1) until stopped")
    parser.add_argument("--connect-timeout", type=float, default=120.0, help="seconds to wait for the broker")
    return parser.parse_args(argv)


def read_stdin(stream=None) -> Iterator[dict]:
    for number, line in enumerate(stream or sys.stdin, 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise SystemExit(f"stdin line {number}: not JSON: {error}") from None


def generated(args: argparse.Namespace) -> Iterator[Iterable[dict]]:
    """One iterable of events per pass."""
    if args.stdin:
        yield read_stdin()
        return
    from monitor.demo.school_day import generate

    seed = args.seed
    while True:
        yield generate(args.accounts, args.events, seed=seed)
        if not args.loop:
            return
        seed += 1


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def shifted(events: Iterable[dict]) -> Iterator[dict]:
    """The events with times moved by one offset so that the first one is now."""
    offset: timedelta | None = None
    for event in events:
        try:
            at = parse_ts(event["ts"])
        except (KeyError, TypeError, ValueError):
            yield event  # broken on purpose or not: the monitor decides, not the generator
            continue
        if offset is None:
            offset = datetime.now(timezone.utc) - at
        yield {**event, "ts": (at + offset).isoformat().replace("+00:00", "Z")}


async def start_producer(args: argparse.Namespace):
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    deadline = time.monotonic() + args.connect_timeout
    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap_servers,
            client_id="portal-traffic",
            acks="all",
            linger_ms=20,
            enable_idempotence=False,
        )
        try:
            await producer.start()
            return producer
        except KafkaConnectionError:
            await producer.stop()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(2)


async def produce(args: argparse.Namespace) -> int:
    producer = await start_producer(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    sent = 0
    started = time.monotonic()
    try:
        for events in generated(args):
            if args.shift_to_now:
                events = shifted(events)
            pending = []
            for event in events:
                if stop.is_set():
                    break
                key = str(event.get("account_id", "")).encode()
                value = json.dumps(event, separators=(",", ":")).encode()
                pending.append(await producer.send(args.topic, value=value, key=key))
                sent += 1
                if args.rate > 0:
                    ahead = sent / args.rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if len(pending) >= 1000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            if stop.is_set():
                break
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    print(json.dumps({"event": "traffic_done", "sent": sent, "seconds": round(elapsed, 3)}), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(produce(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
