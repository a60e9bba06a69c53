"""SIGHUP reloads the risky-network lists of a running daemon; learnt shared networks are synced."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.daemon import Daemon, create_topic, fetch, produce, wait_until

pytestmark = pytest.mark.integration


def login(n: int, at: float, ip: str) -> dict:
    return {"event_id": f"l-{n}", "type": "login_succeeded", "account_id": f"parent-{n}", "session_id": f"s-{n}",
            "ip": ip, "portal": "parent",
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))}


async def test_sighup_reloads_the_tor_exit_list(kafka_broker, postgres_dsn, tmp_path):
    exits = tmp_path / "tor-exits.txt"
    exits.write_text("# no exits known yet\n")
    await create_topic(kafka_broker.bootstrap, 2)
    daemon = Daemon(
        kafka_broker.bootstrap, postgres_dsn,
        NETWORKS__RISKY=f'[{{name = "tor-exits", kind = "tor", file = "{exits}"}}]',
        DETECTORS__DORMANT_ACCOUNT__ENABLED="false",
    ).start()
    try:
        await daemon.wait_ready()
        now = time.time() - 5  # within engine.wall_clock_grace: a quiet partition's clock follows the wall
        await produce(kafka_broker.bootstrap, [login(1, now, "185.220.101.4")])
        await wait_until(lambda: _true(daemon.metric("portal_monitor_events_total") >= 1),
                         what="the first login processed")
        exits.write_text("185.220.101.4\n")
        daemon.process.send_signal(signal.SIGHUP)
        await wait_until(lambda: _true("reloading" in daemon.output()), what="the reload logged")
        await produce(kafka_broker.bootstrap, [login(2, now + 1, "185.220.101.4")])
        rows = await wait_until(lambda: fetch(postgres_dsn, "SELECT detector, account_id, summary FROM alerts"),
                                what="the risky_network alert after the reload")
        assert daemon.stop() == 0, daemon.output()[-3000:]
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
    assert [(r["detector"], r["account_id"]) for r in rows] == [("risky_network", "parent-2")]
    assert "tor-exits" in rows[0]["summary"]


async def _true(value):
    return value
