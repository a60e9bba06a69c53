"""Live traffic at a fixed offered rate, and event-to-alert latency measured on it.

What is measured, exactly: for each alert, the harness's wall clock when the alert's JSON line
arrived through a named pipe that the daemon's JSONL sink writes to (the sink writes and
flushes once the batch is through the engine; PostgreSQL is written in the same `deliver`),
minus the harness's wall clock just before it handed the alert's trigger event to the Kafka
producer. The trigger is found by (account_id, event time): the alert's `ts` is its trigger's
event time. The engine-side share, `detected_at` (stamped when the detector built the alert)
minus the same send time, is reported beside it.

Traffic: every event carries `ts` = the wall clock at send, so event time and wall time agree
as in production, and the reorder buffer (`engine.allowed_lateness`) holds each event until an
event that much newer arrived on its partition. Background sessions are a login, page views and
a logout, always from the account's own network; every `incident_every` events an account with a
session open logs in from a stranger's network (one `simultaneous_logins` alert) and out again.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from datetime import datetime, timezone

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


class LiveTraffic:
    """Endless plausible events for `accounts` accounts; an incident every `incident_every`."""

    def __init__(self, accounts: int, seed: int = 11, incident_every: int = 1000) -> None:
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.incident_every = incident_every
        self.count = 0
        self.sessions = 0
        self.open: list[tuple[str, str, str]] = []  # (account, session, ip)
        self.open_accounts: set[str] = set()
        self.pending: list[dict] = []

    def _account(self, index: int) -> tuple[str, str]:
        return f"live-{index:07d}", f"81.{(index >> 8) & 255}.{index & 255}.{1 + index % 250}"

    def next(self) -> dict:
        self.count += 1
        if self.pending:
            return self.pending.pop()
        rng = self.rng
        if self.count % self.incident_every == 0 and self.open:
            account, _, _ = self.open[rng.randrange(len(self.open))]
            self.sessions += 1
            session = f"live-x-{self.sessions}"
            ip = f"203.0.{rng.randrange(113, 200)}.{rng.randrange(1, 250)}"
            common = {"account_id": account, "session_id": session, "ip": ip, "portal": "parent"}
            self.pending.append({"type": "logout", **common})
            return {"type": "login_succeeded", "user_agent": "curl/8", **common}
        r = rng.random()
        if r < 0.12 or len(self.open) < 50:
            index = rng.randrange(self.accounts)
            account, ip = self._account(index)
            if account not in self.open_accounts:
                self.sessions += 1
                session = f"live-{self.sessions}"
                self.open.append((account, session, ip))
                self.open_accounts.add(account)
                return {"type": "login_succeeded", "account_id": account, "session_id": session, "ip": ip,
                        "portal": "parent", "user_agent": "Mozilla/5.0 (bench)"}
        if r < 0.22 and len(self.open) > 50:
            account, session, ip = self.open.pop(rng.randrange(len(self.open)))
            self.open_accounts.discard(account)
            return {"type": "logout", "account_id": account, "session_id": session, "ip": ip, "portal": "parent"}
        account, session, ip = self.open[rng.randrange(len(self.open))]
        return {"type": "page_view", "account_id": account, "session_id": session, "ip": ip, "portal": "parent",
                "resource": f"/pupils/{rng.randrange(1000, 99000)}/attendance"}


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def at_key(account: str, at: float) -> tuple[str, int]:
    return account, round(at * 1_000_000)


class AlertPipe:
    """A named pipe the daemon's JSONL sink writes to; each alert line stamped on arrival."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.mkfifo(path)
        self.arrivals: list[tuple[float, dict]] = []  # (wall clock, alert)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        decode = msgspec.json.decode
        with open(self.path, "rb", buffering=0) as pipe:  # blocks until the daemon opens it
            buffer = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    return
                now = time.time()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.arrivals.append((now, decode(line)))

    def close(self) -> None:
        self._thread.join(5)
        try:
            os.unlink(self.path)
        except OSError:
            pass


class BareLatency:
    """The limit for latency: a bare consumer in its own group, read beside the daemon.

    Per record: the wall clock when `getmany` handed it over minus its Kafka timestamp (the
    producer's create time, in ms). Same fetch settings as the daemon's source.
    """

    def __init__(self, bootstrap: str, topic: str, fetch_max_wait: float, session_timeout: float) -> None:
        self.options = dict(
            bootstrap_servers=bootstrap, group_id=f"bench-bare-live-{os.getpid()}-{id(self)}",
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=int(fetch_max_wait * 1000),
            session_timeout_ms=int(session_timeout * 1000), heartbeat_interval_ms=max(100, int(session_timeout * 1000) // 3),
        )
        self.topic = topic
        self.consumer: AIOKafkaConsumer | None = None
        self.samples: list[tuple[float, float]] = []  # (create time, latency) in seconds
        self.stopping = False

    async def start(self, timeout: float = 60.0) -> None:
        from bench.broker import FETCH_OPTIONS

        self.consumer = AIOKafkaConsumer(self.topic, **self.options, **FETCH_OPTIONS)
        await self.consumer.start()
        deadline = time.monotonic() + timeout
        while not self.consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("bare latency consumer got no partitions")
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        assert self.consumer is not None
        try:
            while not self.stopping:
                batch = await self.consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    self.samples.extend((r.timestamp / 1000, now - r.timestamp / 1000) for r in records)
        finally:
            await self.consumer.stop()

    def latencies(self, since: float, until: float) -> list[float]:
        return [latency for created, latency in self.samples if since <= created < until]


async def produce_paced(
    bootstrap: str, topic: str, traffic: LiveTraffic, rate: float, seconds: float, tail: float,
    bare: BareLatency | None = None,
) -> tuple[dict[tuple[str, int], float], float, int, list[float]]:
    """Send at `rate` events/s for `seconds` (measured) then `tail` more seconds (unmeasured).

    Returns the send wall time of every measured event by (account_id, event time), the
    achieved rate over the measured window, how many events were sent in all, and the bare
    consumer's latencies of the measured events (when `bare` is given).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, linger_ms=0)
    await producer.start()
    reader = None
    if bare is not None:
        await bare.start()
        reader = asyncio.create_task(bare.run())
    encode = msgspec.json.encode
    sent_at: dict[tuple[str, int], float] = {}
    tick = 0.005
    started = time.perf_counter()
    wall_offset = time.time() - started
    window = (started + wall_offset, started + wall_offset + seconds)
    total = measured = 0
    pending = []
    try:
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= seconds + tail:
                break
            due = int(min(elapsed + tick, seconds + tail) * rate) - total
            for _ in range(due):
                event = traffic.next()
                now = time.perf_counter() + wall_offset
                event["event_id"] = f"live-{total}"
                event["ts"] = rfc3339(now)
                pending.append(await producer.send(topic, encode(event), key=event["account_id"].encode()))
                if elapsed < seconds:
                    sent_at.setdefault(at_key(event["account_id"], datetime.fromisoformat(event["ts"]).timestamp()), now)
                    measured += 1
                total += 1
            if len(pending) > 5000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
        if reader is not None:
            await asyncio.sleep(1.0)
    finally:
        await producer.stop()
        if reader is not None and bare is not None:
            bare.stopping = True
            await reader
    bare_latencies = bare.latencies(*window) if bare is not None else []
    return sent_at, measured / seconds, total, bare_latencies


def latencies(arrivals: list[tuple[float, dict]], sent_at: dict[tuple[str, int], float]) -> tuple[list[float], list[float]]:
    """(arrival - send, detected_at - send) in seconds, for the alerts whose trigger was measured."""
    to_sink, to_detection = [], []
    for arrived, alert in arrivals:
        ts = datetime.fromisoformat(alert["ts"].replace("Z", "+00:00")).timestamp()
        sent = sent_at.get(at_key(alert["account_id"], ts))
        if sent is None:
            continue
        detected = datetime.fromisoformat(alert["detected_at"].replace("Z", "+00:00")).timestamp()
        to_sink.append(arrived - sent)
        to_detection.append(detected - sent)
    return to_sink, to_detection


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]
