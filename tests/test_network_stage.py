"""The network stage (monitor.engine.network_stage): restored at any point it carries on exactly, and
the interleaving of several shards' login outcomes on its topic does not change what it finds."""

from __future__ import annotations

import zlib
from pathlib import Path

import msgspec
import pytest

from monitor.service.config import load_settings
from monitor.service.shards import build_network_stage, build_shard

CASES = Path(__file__).parent / "detector_cases"
SPRAY_CASES = sorted(p for p in CASES.iterdir() if p.is_dir() and p.name.startswith("password_spray"))


def settings_for(folder: Path):
    file = folder / "settings.toml"
    return load_settings(file if file.exists() else None, environ={})


def records_of(folder: Path) -> list[tuple[int, bytes]]:
    lines = [line for line in (folder / "events.jsonl").read_bytes().splitlines() if line.strip()]
    return list(enumerate(lines, start=1))


def outcomes_through(settings, records, partitions: int = 1) -> list[list]:
    """Each shard's login outcomes, the events split between `partitions` by account as Kafka would."""
    shards = [build_shard(settings, p) for p in range(partitions)]
    split: list[list] = [[] for _ in range(partitions)]
    for offset, raw in records:
        account = msgspec.json.decode(raw)["account_id"]
        split[zlib.crc32(account.encode()) % partitions].append((offset, raw))
    out = []
    for shard, mine in zip(shards, split):
        first, last = shard.process(mine), shard.drain()
        out.append(first.login_outcomes + last.login_outcomes)
    return out


def keys(findings_list) -> list:
    return [(a.alert_id, a.detector, a.severity, a.account_id, a.source) for f in findings_list for a in f.alerts]


@pytest.mark.parametrize("folder", SPRAY_CASES, ids=lambda p: p.name)
def test_restore_at_every_point_gives_the_same_alerts(folder: Path) -> None:
    settings = settings_for(folder)
    (outcomes,) = outcomes_through(settings, records_of(folder))
    topic = [(offset, msgspec.json.encode(o)) for offset, o in enumerate(outcomes)]
    whole = build_network_stage(settings, 0)
    expected = keys([whole.process(topic), whole.drain()])
    assert expected or "not_a_spray" in folder.name
    for cut in range(len(topic) + 1):
        first = build_network_stage(settings, 0)
        before = first.process(topic[:cut])
        resume_at = first.commit_offset() or 0
        second = build_network_stage(settings, 0)
        second.restore(first.snapshot())
        after = second.process([r for r in topic if r[0] >= resume_at])
        assert keys([before, after, second.drain()]) == expected, f"cut after {cut} records"


@pytest.mark.parametrize("folder", SPRAY_CASES, ids=lambda p: p.name)
def test_four_shards_interleaved_find_what_one_shard_finds(folder: Path) -> None:
    """Events keyed by account land on four partitions; their outcomes meet on the topic in
    some interleaving (here: round robin, one at a time, and each shard's whole output in
    turn). Within the allowed lateness the stage orders them by event time: the same alerts."""
    settings = settings_for(folder)
    records = records_of(folder)
    (single,) = outcomes_through(settings, records)
    stage = build_network_stage(settings, 0)
    expected = sorted(keys([stage.feed(single), stage.drain()]))
    parts = outcomes_through(settings, records, partitions=4)
    assert sum(map(len, parts)) == len(single)
    round_robin = [o for group in zip(*[p + [None] * (max(map(len, parts)) - len(p)) for p in parts]) for o in group if o]
    for order in (round_robin, [o for p in parts for o in p]):
        stage = build_network_stage(settings, 0)
        lateness = max(o.at for o in order) - min(o.at for o in order) + 1  # wide enough for the whole case
        stage.allowed_lateness = lateness
        got = sorted(keys([stage.feed(order), stage.drain()]))
        assert got == expected


def test_a_redelivered_outcome_counts_once_and_a_bad_record_is_a_dead_letter() -> None:
    folder = CASES / "password_spray_50_accounts_from_one_hosting_address"
    settings = settings_for(folder)
    (outcomes,) = outcomes_through(settings, records_of(folder))
    topic = [(offset, msgspec.json.encode(o)) for offset, o in enumerate(outcomes)]
    stage = build_network_stage(settings, 0)
    again = topic[:20] + topic[5:15] + [(len(topic), b'{"not": "an outcome"}')]
    found = stage.process([(n, raw) for n, (_, raw) in enumerate(again)])
    assert len(found.alerts) == 1 and stage.counts["duplicate"] == 10
    assert [d.reason for d in found.dead_letters] == ["invalid_login_outcome"]
