"""The account registry's write-behind buffer (monitor.accounts.unwritten): activity recorded but
not yet written still counts, nothing is lost when a write fails, and a fold of batches writes
what the batches one by one would have written."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest

from detectors.registry import detector_ids
from monitor.accounts.memory import MemoryRegistry
from monitor.contract.accounts import Account, AccountActivity
from monitor.accounts.unwritten import UnwrittenActivity
from monitor.service.config import load_settings
from monitor.support.metrics import Metrics
from monitor.service.offline import build_offline_pipeline

DAY = 86400.0
T0 = datetime(2025, 9, 1, 8, 0, tzinfo=timezone.utc).timestamp()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.alerts = []

    async def start(self) -> None:
        pass

    async def write(self, findings) -> None:
        self.alerts.extend(findings.alerts)

    async def close(self) -> None:
        pass


class FlakyRegistry(MemoryRegistry):
    """The in-memory registry, whose next `record` fails as a lost connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def record(self, activity, changes, marks) -> int:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("connection lost mid-write")
        return await super().record(activity, changes, marks)


def login(n: int, at: float, account: str = "staff-1") -> bytes:
    return json.dumps({"event_id": f"e{n}", "type": "login_succeeded", "ts": iso(at), "account_id": account,
                       "session_id": f"s{n}", "ip": "81.2.69.10", "portal": "schools"}).encode()


def live_pipeline(registry, write_every: str):
    """The offline pipeline with the lifecycle as `run` has it: sweeps paced by the wall clock."""
    settings = load_settings(environ={"PORTAL_MONITOR_ACCOUNTS__WRITE_EVERY": write_every,
                                      "PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})
    sink = Collect()
    pipeline = build_offline_pipeline(settings, [sink], Metrics(detector_ids(), [sink.name]), registry)
    pipeline.accounts.drain = False
    pipeline.retry_initial = 0.01
    return pipeline, sink


async def deliver_one(pipeline, offset: int, record: bytes) -> None:
    findings = pipeline.run_batch({0: [(offset, record)]})
    assert await pipeline.deliver(findings)


async def test_a_login_not_yet_written_resets_the_idle_clock() -> None:
    """Logins 100 days apart, then 160: never idle long enough even for the 14-day early warning,
    so no alert, although the registry still says the last login was 260 days before the third."""
    registry = MemoryRegistry()
    pipeline, sink = live_pipeline(registry, "1h")
    await deliver_one(pipeline, 0, login(0, T0))  # the first sweep writes it
    await deliver_one(pipeline, 1, login(1, T0 + 100 * DAY))  # unwritten: no sweep for an hour
    assert registry.accounts["staff-1"].last_login_at == T0
    assert len(pipeline.accounts.unwritten) == 1
    await deliver_one(pipeline, 2, login(2, T0 + 260 * DAY))
    assert [a.detector for a in sink.alerts] == []
    await pipeline.flush_accounts()
    assert registry.accounts["staff-1"].last_login_at == T0 + 260 * DAY
    assert len(pipeline.accounts.unwritten) == 0


async def test_the_same_logins_written_every_batch_alert_alike() -> None:
    """The control for the test above: a long gap does alert, buffered or not."""
    for write_every in ("0s", "1h"):
        registry = MemoryRegistry()
        pipeline, sink = live_pipeline(registry, write_every)
        await deliver_one(pipeline, 0, login(0, T0))
        await deliver_one(pipeline, 1, login(1, T0 + 10 * DAY))
        await deliver_one(pipeline, 2, login(2, T0 + 200 * DAY))
        assert [a.detector for a in sink.alerts if a.detector == "dormant_account_login"] == ["dormant_account_login"], write_every


async def test_a_failed_background_write_loses_nothing() -> None:
    registry = FlakyRegistry()
    pipeline, sink = live_pipeline(registry, "0.000001s")  # every batch starts a background write
    await deliver_one(pipeline, 0, login(0, T0, "staff-1"))  # the first sweep writes it
    registry.failures = 1
    await deliver_one(pipeline, 1, login(1, T0 + DAY, "staff-2"))  # its background write fails
    await deliver_one(pipeline, 2, login(2, T0 + 2 * DAY, "staff-3"))  # raises it; the pipeline retries
    await pipeline.flush_accounts()
    assert {a: registry.accounts[a].last_login_at for a in ("staff-1", "staff-2", "staff-3")} == {
        "staff-1": T0, "staff-2": T0 + DAY, "staff-3": T0 + 2 * DAY,
    }
    retried = pipeline.metrics.sink_deliveries.labels("account_registry", "retried")._value.get()
    assert retried == 1


def activity(rng: random.Random, base: float) -> AccountActivity:
    first = base + rng.uniform(0, DAY)
    login = rng.choice([None, first + rng.uniform(0, DAY)])
    return AccountActivity(
        partition=0, first_at=first, known=True, portal=rng.choice([None, "schools", "parent"]),
        last_login_at=login, last_activity_at=max(first, login or first) + rng.uniform(0, 3600),
        created_at=rng.choice([None, None, base - rng.uniform(0, 400 * DAY)]),
    )


async def test_a_fold_of_batches_writes_what_the_batches_one_by_one_would() -> None:
    """Idle clocks, times and portal alike; a dormant account is made active again by the fold
    as by the batches (its status_at is then the latest login of the fold, not the first)."""
    rng = random.Random(11)
    for trial in range(200):
        one_by_one, folded = MemoryRegistry(), MemoryRegistry()
        start = Account(account_id="acct", key_hash=0, last_login_at=T0 - 300 * DAY,
                        status=rng.choice(["active", "dormant"]), status_at=T0 - 100 * DAY)
        one_by_one.accounts["acct"] = start.__copy__()
        folded.accounts["acct"] = start.__copy__()
        unwritten = UnwrittenActivity()
        for batch in range(rng.randrange(1, 6)):
            aggregate = {"acct": activity(rng, T0 + batch * DAY)}
            await one_by_one.record(aggregate, [], [])
            unwritten.add(aggregate)
            if rng.random() < 0.3:  # a write in flight, more recorded meanwhile, and it fails
                unwritten.take()
                unwritten.failed()
        expected = one_by_one.accounts["acct"]
        assert unwritten.apply_to("acct", folded.accounts["acct"].__copy__()).idle_since == expected.idle_since
        await folded.record(unwritten.take(), [], [])
        unwritten.written()
        got = folded.accounts["acct"]
        fields = ("first_seen_at", "last_login_at", "last_activity_at", "created_at", "portal", "status", "idle_since")
        assert [getattr(got, f) for f in fields] == [getattr(expected, f) for f in fields], trial


def test_one_write_in_flight_at_a_time() -> None:
    unwritten = UnwrittenActivity()
    unwritten.add({"a": AccountActivity(partition=0, first_at=T0, known=True)})
    unwritten.take()
    with pytest.raises(RuntimeError, match="already in flight"):
        unwritten.take()


def test_failed_logins_alone_are_not_accounts() -> None:
    unwritten = UnwrittenActivity()
    unwritten.add({"nobody": AccountActivity(partition=0, first_at=T0, known=False)})
    assert len(unwritten) == 0 and unwritten.apply_to("nobody", None) is None
