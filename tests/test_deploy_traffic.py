"""deploy/traffic/produce.py against the real tansu broker: records keyed by account_id, every
event delivered, valid portal.event/v1, and --shift-to-now moves times while keeping gaps."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

import msgspec

from monitor.contract.events import PortalEvent

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
PRODUCE = ROOT / "deploy" / "traffic" / "produce.py"
CASE = ROOT / "tests" / "detector_cases" / "three_networks_is_critical" / "events.jsonl"


def run_producer(bootstrap: str, topic: str, *args: str, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PRODUCE), f"--bootstrap-servers={bootstrap}", f"--topic={topic}", *args],
        input=stdin, capture_output=True, timeout=60,
    )


async def consume_all(bootstrap: str, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records = []
    try:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=250)
            records += [r for rs in batch.values() for r in rs]
            if len(records) >= expected:
                break
    finally:
        await consumer.stop()
    return records


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_stdin_events_are_sent_keyed_by_account(kafka_broker) -> None:
    lines = [line for line in CASE.read_bytes().splitlines() if line.strip()]
    result = run_producer(kafka_broker.bootstrap, "traffic-test", "--stdin", stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stderr.decode().strip().splitlines()[-1])["sent"] == len(lines)
    records = asyncio.run(consume_all(kafka_broker.bootstrap, "traffic-test", len(lines)))
    sent = [json.loads(line) for line in lines]
    assert sorted(json.loads(r.value)["event_id"] for r in records) == sorted(e["event_id"] for e in sent)
    for record in records:
        event = msgspec.json.decode(record.value, type=PortalEvent)
        assert record.key.decode() == event.account_id


def test_shift_to_now_keeps_the_gaps(kafka_broker) -> None:
    lines = [line for line in CASE.read_bytes().splitlines() if line.strip()]
    before = datetime.now(timezone.utc)
    result = run_producer(kafka_broker.bootstrap, "traffic-shifted", "--stdin", "--shift-to-now", stdin=b"\n".join(lines))
    assert result.returncode == 0, result.stderr.decode()
    records = asyncio.run(consume_all(kafka_broker.bootstrap, "traffic-shifted", len(lines)))
    shifted = {json.loads(r.value)["event_id"]: parse(json.loads(r.value)["ts"]) for r in records}
    original = {e["event_id"]: parse(e["ts"]) for e in map(json.loads, lines)}
    first = min(original, key=original.get)
    assert abs((shifted[first] - before).total_seconds()) < 10
    for event_id, at in original.items():
        assert shifted[event_id] - shifted[first] == at - original[first]


def test_generator_mode_uses_the_school_day_module() -> None:
    spec = importlib.util.spec_from_file_location("produce", PRODUCE)
    produce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(produce)
    args = produce.parse_args(["--accounts=100", "--events=2000", "--seed=3"])
    events = list(next(produce.generated(args)))
    assert events and all({"event_id", "type", "ts", "account_id"} <= set(e) for e in events)
