"""The links file: a school's export of which pupils each parent's account may see.

Rows become pupil_linked / pupil_unlinked events (`portal-monitor accounts links`), run in front
of a replay (`replay --links`) or published onto the events topic keyed by account (tested
against a real tansu broker); bad rows are rejected with their line and reason.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from monitor.accounts.links import LinksReader
from monitor.accounts.roster import RosterError

LINKS = """account_id,pupil_id,status,reason,since
parent-0101,4711,linked,,
parent-0101,4712,unlinked,court_order,2026-03-03T11:00:00Z
parent-0101,,linked,,
parent-0202,4800,maybe,,
parent-0303,4900,linked,,yesterday
"""

EVENTS = [
    {"type": "login_succeeded", "ts": "2026-03-03T20:00:00Z", "session_id": "k1", "ip": "86.150.3.7"},
    {"type": "page_view", "ts": "2026-03-03T20:00:30Z", "session_id": "k1", "resource": "/pupils/4711/attendance", "pupil_id": "4711"},
    {"type": "page_view", "ts": "2026-03-03T20:01:00Z", "session_id": "k1", "resource": "/pupils/4712/reports"},
    {"type": "logout", "ts": "2026-03-03T20:02:00Z", "session_id": "k1"},
]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rows_become_link_events_and_bad_rows_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "links.csv"
    path.write_text(LINKS)
    reader = LinksReader(str(path), now=1_800_000_000.0)
    with reader:
        events = [msgspec.to_builtins(e) for e in reader]
    assert [(e["type"], e["account_id"], e["pupil_id"], e["ts"], e.get("reason")) for e in events] == [
        ("pupil_linked", "parent-0101", "4711", "2000-01-01T00:00:00Z", None),
        ("pupil_unlinked", "parent-0101", "4712", "2026-03-03T11:00:00Z", "court_order"),
    ]
    assert [(r.line, r.reason) for r in reader.rejections.rows] == [(4, "missing_pupil_id"), (5, "bad_status"), (6, "bad_timestamp")]
    again = LinksReader(str(path), now=1_900_000_000.0)
    with again:
        assert [e.event_id for e in again] == [e["event_id"] for e in events]  # the same file, the same ids


def test_a_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "links.csv"
    path.write_text("account,pupil\nparent-0101,4711\n")
    with pytest.raises(RosterError, match="lacks account_id, pupil_id"):
        LinksReader(str(path), now=0.0)


def test_replay_with_links_judges_views_against_them(tmp_path: Path) -> None:
    (tmp_path / "links.csv").write_text(LINKS)
    lines = [json.dumps(dict(e, event_id=f"k{n}", account_id="parent-0101", portal="parent")) for n, e in enumerate(EVENTS)]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    done = run("replay", "events.jsonl", "--links", "links.csv", "--alerts-out", "alerts.jsonl", "--summary", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "5 rows read: 2 link events, 3 rejected" in done.stderr
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(a["detector"], a["severity"], a["evidence"]["pupil_records"]["pupil_id"]) for a in alerts] == [
        ("unlinked_pupil_access", "critical", "4712")  # found by the [pupils] paths pattern: no pupil_id
    ]
    # Without the links nothing is known of the account: no judgement.
    done = run("replay", "events.jsonl", "--alerts-out", "none.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "none.jsonl").read_text() == ""


def test_accounts_links_writes_events_to_a_file(tmp_path: Path) -> None:
    (tmp_path / "links.csv").write_text(LINKS)
    done = run("accounts", "links", "links.csv", "--out", "links.jsonl", "--rejects", "rejects.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in (tmp_path / "links.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == ["pupil_linked", "pupil_unlinked"]
    assert (tmp_path / "rejects.csv").read_text().count("\n") == 4  # header + 3 rows


@pytest.mark.integration
def test_accounts_links_publishes_onto_the_events_topic_keyed_by_account(tmp_path: Path, kafka_broker) -> None:
    from aiokafka import AIOKafkaConsumer

    (tmp_path / "links.csv").write_text(LINKS)
    topic = f"portal.events.links-{tmp_path.name[-8:]}"
    env_config = tmp_path / "pm.toml"
    env_config.write_text(f'[kafka]\nbootstrap_servers = "{kafka_broker.bootstrap}"\nidempotent_producer = false\n[source]\ntopic = "{topic}"\n')
    done = run("accounts", "links", "links.csv", "--publish", "--config", str(env_config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 link events to the topic" in done.stderr

    async def consume() -> list:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            got = []
            while len(got) < 2:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
                for records in batch.values():
                    got.extend(records)
            return got
        finally:
            await consumer.stop()

    records = asyncio.run(consume())
    assert sorted((r.key, json.loads(r.value)["type"]) for r in records) == [
        (b"parent-0101", "pupil_linked"), (b"parent-0101", "pupil_unlinked")
    ]
