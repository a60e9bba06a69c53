from __future__ import annotations

import asyncio

import pytest

from tests.support.servers import PostgresServer, TansuBroker


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    return PostgresServer()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer):
    """A fresh, empty database for one test, dropped afterwards."""
    name = asyncio.run(postgres_server.create_database())
    yield postgres_server.dsn_for(name)
    asyncio.run(postgres_server.drop_database(name))


@pytest.fixture
def kafka_broker():
    """A fresh tansu broker for one test (memory storage, so nothing leaks between tests)."""
    broker = TansuBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def owned_postgres():
    """A PostgreSQL server of the test's own, which it may stop and restart."""
    from tests.support.servers import OwnedPostgres

    server = OwnedPostgres()
    yield server
    server.cleanup()


@pytest.fixture
def durable_kafka_broker():
    """A tansu broker whose log lives in a local S3 endpoint, so it can be restarted."""
    from tests.support.servers import DurableTansuBroker, S3Endpoint

    s3 = S3Endpoint().start()
    broker = DurableTansuBroker(s3).start()
    yield broker
    broker.stop()
    s3.stop()
