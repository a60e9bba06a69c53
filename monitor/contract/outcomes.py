"""The record between the shards and the network stage: one login attempt, `portal.login-outcome/v1`.

Events are keyed by account; a source's attempts land on every partition. Each shard hands on
its login attempts as these small records; they are published to the login-outcomes topic
keyed by `network` (the repartition of Kafka Streams' group-by), so every attempt from one
network reaches one partition of the network stage (`monitor.engine.network_stage`) whichever
account it was for. Encoded as a JSON array (msgspec `array_like`).
"""

from __future__ import annotations

import msgspec


class LoginOutcome(msgspec.Struct, array_like=True, gc=False):
    """One login attempt, succeeded or failed, with where it came from.

    `shared`: the address's network is allowlisted or learnt as organisation-shared, so it is
    judged per address (decided by the shard when it ran the event, and carried with it).
    """

    event_id: str
    at: float
    network: str  # the IPv4 /24 or IPv6 /64: the topic's key
    ip: str
    account_id: str  # the username tried
    succeeded: bool
    shared: bool = False
    user_agent: str | None = None
    portal: str | None = None
    session_id: str | None = None
