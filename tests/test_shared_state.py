"""Per-account state shares one copy of each account id and pupil id, and its compact forms
round-trip through checkpoints in the format older checkpoints were written in (issue 19)."""

from __future__ import annotations

import msgspec

from bench.memory import records
from detectors.brute_force import Attempts
from detectors.registry import detector_ids
from monitor.service.config import load_settings
from monitor.service.shards import build_shard
from monitor.state.interning import account_key, pupil_ids


def _shard():
    env = {f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()}
    return build_shard(load_settings(None, environ=env), 0)


def _run(shard, accounts: int = 40) -> None:
    for batch in records(accounts, views=3, links=3, failed=2, staff_every=5, left_open=1, pupils=50):
        shard.process(batch)
    shard.drain()


def test_one_copy_of_each_account_id_and_pupil_id() -> None:
    shard = _shard()
    _run(shard)
    table = shard.sessions.accounts
    assert len(table) == 40
    ids = {account_id: account_id for account_id in table}  # the table's own key objects
    detectors = {d.id: d for d in shard.detectors}
    held = {
        "brute_force": detectors["brute_force"].attempts,
        "bulk_record_access": detectors["bulk_record_access"].live,
        "unlinked_pupil_access": detectors["unlinked_pupil_access"].links,
    }
    for name, entries in held.items():
        assert entries, name
        for account_id in entries:
            assert account_id is ids[account_id], name
    for account in table.values():
        for session in account.sessions.values():
            assert session.account_id is account.account_id
    pupils = {}
    for window in detectors["bulk_record_access"].live.values():
        assert type(window.seen) is tuple and len(window.seen) == 3  # small: a tuple, not a set
        for pupil in window.seen:
            assert pupils.setdefault(pupil, pupil) is pupil
    for links in detectors["unlinked_pupil_access"].links.values():
        for link in links:
            assert pupils.setdefault(link.pupil_id, link.pupil_id) is link.pupil_id


def test_compact_state_checkpoints_as_before_and_restores() -> None:
    shard = _shard()
    _run(shard)
    brute = next(d for d in shard.detectors if d.id == "brute_force")
    written = brute.snapshot()
    assert all(type(attempts) is Attempts and attempts.count == 2 and len(attempts.recent) == 2 for _, attempts in written)
    # What a checkpoint of the Struct-holding code decodes to, restored into fresh state.
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(written))
    restored = _shard()
    restored.restore(shard.snapshot())
    again = next(d for d in restored.detectors if d.id == "brute_force")
    again.restore(decoded)
    assert msgspec.msgpack.encode(again.snapshot()) == msgspec.msgpack.encode(written)
    assert msgspec.msgpack.encode(restored.snapshot()) == msgspec.msgpack.encode(shard.snapshot())
    for account_id in next(d for d in restored.detectors if d.id == "bulk_record_access").live:
        assert account_id is account_key(account_id) is restored.sessions.accounts.get(account_id).account_id


def test_pupil_ids_share_equal_ids() -> None:
    shared = pupil_ids()
    a, b = "".join(("pupil-", "42")), "".join(("pupil-", "42"))
    assert a is not b and shared(a) is shared(b)


def test_the_shards_of_a_process_share_one_copy_of_each_pupil_id() -> None:
    """The composition root lends one interner to every partition's shard (no module-level
    state); a shard built alone has its own."""
    env = {f"PORTAL_MONITOR_DETECTORS__{d.upper()}__ENABLED": "true" for d in detector_ids()}
    settings = load_settings(None, environ=env)
    shared = pupil_ids()
    first, second = (build_shard(settings, partition, pupil_ids=shared) for partition in (0, 1))
    alone = _shard()
    for shard in (first, second, alone):
        _run(shard, accounts=10)

    def held(shard) -> dict[str, str]:
        bulk = next(d for d in shard.detectors if d.id == "bulk_record_access")
        unlinked = next(d for d in shard.detectors if d.id == "unlinked_pupil_access")
        assert bulk.pupil_ids is unlinked.pupil_ids
        found = {p: p for window in bulk.live.values() for p in window.seen}
        found.update({link.pupil_id: link.pupil_id for links in unlinked.links.values() for link in links})
        assert found
        return found

    one, two, own = held(first), held(second), held(alone)
    common = one.keys() & two.keys()
    assert common and all(one[p] is two[p] for p in common)  # the same objects across the two shards
    assert all(own[p] is not one[p] for p in own.keys() & one.keys())  # the lone shard's own copies
