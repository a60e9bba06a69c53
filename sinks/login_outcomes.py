"""Login outcomes to the repartition topic: the shards' half of the network stage's group-by.

Each login attempt a shard ran goes to `portal.login-outcomes` (`[network_stage] topic`) keyed
by its source network, so every attempt from one network lands on one partition of that topic
and one network stage (`monitor.engine.network_stage`) whichever account it was for. Written
like every sink: the batch's shard offsets are committed only after the broker acknowledged, so
an outcome reaches the topic at least once; the stage drops a repeat by its event id.
"""

from __future__ import annotations

import asyncio

import msgspec

from monitor.contract.accounts import key_hash
from monitor.engine.findings import Findings


class KafkaLoginOutcomes:
    """Produces a batch's login outcomes and waits for the broker's acknowledgement."""

    name = "login_outcomes"

    def __init__(self, producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.written = 0
        self._encode = msgspec.json.Encoder().encode
        self._partition_of: dict[str, int] = {}  # network -> its key's murmur2 hash

    async def start(self) -> None:
        pass

    async def write(self, findings: Findings) -> None:
        """One produce batch per partition, not one await per outcome: a batch of events holds
        about one login in ten. The partition is Kafka's default partitioner's (murmur2 of the
        key), so a producer elsewhere keying by network lands on the same partitions."""
        outcomes = findings.login_outcomes
        if not outcomes:
            return
        producer = self.producer
        partitions = sorted(await producer.partitions_for(self.topic))
        count = len(partitions)
        encode = self._encode
        of = self._partition_of
        if len(of) > 100_000:
            of.clear()
        batches: dict[int, object] = {}
        deliveries = []
        for outcome in outcomes:
            network = outcome.network
            index = of.get(network)
            if index is None:
                index = of[network] = key_hash(network)
            partition = partitions[index % count]
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            key, value = network.encode(), encode(outcome)
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                deliveries.append(await producer.send_batch(batch, self.topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            deliveries.append(await producer.send_batch(batch, self.topic, partition=partition))
        # Every batch acknowledged before this returns; gathered so one failure leaves no other
        # delivery's outcome unretrieved.
        for outcome in await asyncio.gather(*deliveries, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        self.written += len(outcomes)

    async def close(self) -> None:
        pass
