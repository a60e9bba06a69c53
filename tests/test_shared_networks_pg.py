"""The organisation-wide shared-network sketches in a real PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid

import pytest

from monitor.places import shared_networks
from monitor.places.shared_networks import SharedNetworks

asyncpg = pytest.importorskip("asyncpg")
pytestmark = pytest.mark.integration

DSN = os.environ.get("PORTAL_MONITOR_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def conn():
    try:
        connection = await asyncpg.connect(DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"no PostgreSQL at {DSN}: {error}")
    schema = f"pm_test_{uuid.uuid4().hex[:12]}"
    await connection.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}")
    await shared_networks.apply_migration(connection)
    try:
        yield connection
    finally:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()


async def test_two_processes_learn_a_network_neither_sees_enough_of(conn) -> None:
    first = SharedNetworks(min_accounts=20, min_span=0)
    second = SharedNetworks(min_accounts=20, min_span=0)
    for n in range(12):
        first.observe("194.72.10.5/32", f"staff-{n}", 1_772_000_000.0 + n)
    for n in range(12, 22):
        second.observe("194.72.10.5/32", f"staff-{n}", 1_772_000_100.0 + n)
    second.observe("2a02:c7f:1234:5600::/64", "parent-1", 1_772_000_200.0)
    assert "194.72.10.5/32" not in first and "194.72.10.5/32" not in second

    assert await shared_networks.flush(conn, first) == 1
    assert await shared_networks.flush(conn, second) == 2
    assert await shared_networks.flush(conn, second) == 0  # nothing new
    assert await shared_networks.load(conn, first) == 1
    await shared_networks.sync(conn, second)
    assert "194.72.10.5/32" in first and "194.72.10.5/32" in second

    listed = await shared_networks.list_networks(conn, 1, 20, 0)
    assert [(e.network, e.accounts, e.shared) for e in listed] == [
        ("194.72.10.5/32", 22, True),
        ("2a02:c7f:1234:5600::/64", 1, False),
    ]


async def test_sketches_stay_capped_and_old_rows_are_deleted(conn) -> None:
    shared = SharedNetworks(min_accounts=20, min_span=0, forget_after=86_400)
    for n in range(500):
        shared.observe("195.194.120.10/32", f"acct-{n}", 1_000_000.0)
    shared.observe("81.2.69.10/32", "parent-1", 1_000_000.0)
    await shared_networks.flush(conn, shared)
    other = SharedNetworks(min_accounts=20, min_span=0, forget_after=86_400)
    for n in range(400, 900):
        other.observe("195.194.120.10/32", f"acct-{n}", 1_000_000.0 + 2 * 86_400)
    await shared_networks.flush(conn, other)  # also deletes rows unseen for a day
    rows = await conn.fetch("SELECT network::text, cardinality(account_hashes) AS k FROM shared_networks")
    assert [(r["network"], r["k"]) for r in rows] == [("195.194.120.10/32", 64)]
    listed = await shared_networks.list_networks(conn, 1, 20, 0)
    assert 600 < listed[0].accounts < 1300  # 900 distinct accounts, estimated from 64 hashes
