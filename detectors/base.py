"""The detector interface: pure, synchronous rules over one account's events, in event time.

A detector never does I/O, never reads the wall clock and never awaits. Given the same events
it gives the same alerts, live or in replay, so it is tested with plain lists of events.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

from monitor.accounts.model import Restriction
from monitor.alerts import Alert
from monitor.events import PortalEvent
from monitor.networks import NetworkMap
from monitor.sessions import AccountState, SessionTable


class DetectorContext:
    """What the engine lends every detector of a shard: read-only views of shared state."""

    def __init__(
        self,
        sessions: SessionTable,
        networks: NetworkMap,
        restricted: Mapping[str, Restriction] | None = None,
    ) -> None:
        self.sessions = sessions
        self.networks = networks
        # Disabled and revoked accounts as the account registry knew them when the shard was
        # built (they are few); the detectors follow later lifecycle events themselves.
        self.restricted: Mapping[str, Restriction] = restricted or {}


class Detector:
    """Base class. Subclasses set `id` and `event_types`, and quote their policy clause."""

    id: ClassVar[str]
    event_types: ClassVar[tuple[str, ...]]

    def on_event(self, event: PortalEvent, account: AccountState) -> Sequence[Alert] | None:
        """Called for each event of a type in `event_types`, after the session table saw it."""
        return None

    def on_tick(self, watermark: float) -> Sequence[Alert] | None:
        """Called after each batch with the shard's event-time watermark."""
        return None

    def snapshot(self) -> Any:
        """Detector-owned state as msgspec-encodable data, for checkpoints."""
        return None

    def restore(self, state: Any) -> None:
        """Load what `snapshot` returned."""
