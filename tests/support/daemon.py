"""Run `portal-monitor run` as a real subprocess and produce portal events to a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.servers import free_port

TOPIC = "portal.events"


class Daemon:
    """One monitor process, configured through PORTAL_MONITOR_* variables only."""

    def __init__(self, bootstrap: str, dsn: str, group: str = "pm-test", **overrides: str) -> None:
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
            PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER="false",  # tansu has no InitProducerId
            PORTAL_MONITOR_SOURCE__GROUP_ID=group,
            PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT="6s",
            PORTAL_MONITOR_POSTGRES__DSN=dsn,
            PORTAL_MONITOR_HTTP__PORT=str(self.port),
            PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS="0s",
            PORTAL_MONITOR_CHECKPOINT__INTERVAL="500ms",
            PORTAL_MONITOR_LOGGING__FORMAT="json",
        )
        self.env.update({f"PORTAL_MONITOR_{key.upper()}": value for key, value in overrides.items()})
        self.process: subprocess.Popen | None = None
        self.log_path = None

    def start(self) -> "Daemon":
        import tempfile

        self.log_file = tempfile.NamedTemporaryFile(prefix="pm-daemon-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run"], env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        return self

    def output(self) -> str:
        with open(self.log_file.name, encoding="utf-8", errors="replace") as log:
            return log.read()

    def ready(self) -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status == 200
        except OSError:
            return False

    async def wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if self.ready():
                return
            await asyncio.sleep(0.2)
        raise AssertionError("daemon not ready in time:\n" + self.output()[-3000:])

    def metric(self, name: str, labels: str = "") -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith(name) and (not labels or labels in line)
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s of SIGTERM:\n{self.output()[-3000:]}")


async def create_topic(bootstrap: str, partitions: int, topic: str = TOPIC) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except Exception:
        pass  # already there
    finally:
        await admin.close()
    # Wait until the broker reports a leader for every partition: producing the moment a topic
    # is created can meet NotLeaderForPartition on a loaded machine.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(100):
            known = await producer.partitions_for(topic)
            if known is not None and len(known) >= partitions:
                break
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


async def produce(bootstrap: str, events: list[dict], topic: str = TOPIC) -> list[bytes]:
    """Produce events keyed by account; the raw records in production order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    raws = []
    try:
        sent = []
        for event in events:
            raw = event if isinstance(event, bytes) else json.dumps(event).encode()
            key = b"poison" if isinstance(event, bytes) else event["account_id"].encode()
            raws.append(raw)
            sent.append(await producer.send(topic, raw, key=key))
        for delivery in sent:
            await delivery
    finally:
        await producer.stop()
    return raws


async def fetch(dsn: str, query: str, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def wait_until(probe, timeout: float = 60, interval: float = 0.3, what: str = "condition"):
    """Poll an async `probe()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
        except (asyncpg.UndefinedTableError, OSError, asyncpg.CannotConnectNowError):
            last = None
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
