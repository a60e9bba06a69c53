"""The detector interface: pure, synchronous rules over one account's events, in event time.

A detector never does I/O, never reads the wall clock and never awaits. Given the same events
it gives the same alerts, live or in replay, so it is tested with plain lists of events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import msgspec

from monitor.contract.accounts import Restriction
from monitor.contract.alerts import Alert
from monitor.contract.events import PortalEvent
from monitor.places.networks import NetworkMap
from monitor.state.interning import Interner, pupil_ids as new_pupil_ids
from monitor.state.sessions import AccountState, Session, SessionTable

if TYPE_CHECKING:
    from monitor.contract.accounts import LentLink
    from monitor.places.geo import GeoServices

# A pseudo event type a detector may list in `event_types`: it is then called with each
# page_view that changed its session's IP address (or opened a session not seen logging in),
# after the session's `location` was updated. Cheaper than listing every "page_view".
IP_CHANGED = "ip_changed"
# A pseudo event type a detector may list in `event_types`: it is then called with each
# page_view that names a pupil (`pupil_id`, set by the decoder from the resource if need be),
# and never with the page views that name none. In the same place among the detectors as
# "page_view" (registry order); a detector lists one of the two, not both.
PUPIL_VIEW = "pupil_view"


class DetectorContext:
    """What the engine lends every detector of a shard: read-only views of shared state."""

    def __init__(
        self,
        sessions: SessionTable,
        networks: NetworkMap,
        geo: "GeoServices | None" = None,
        restricted: Mapping[str, Restriction] | None = None,
        links: "Mapping[str, Sequence[LentLink]] | None" = None,
        pupil_ids: Interner[str] | None = None,
    ) -> None:
        self.sessions = sessions
        self.networks = networks
        self.geo = geo
        # Disabled and revoked accounts as the account registry knew them when the shard was
        # built (they are few); the detectors follow later lifecycle events themselves.
        self.restricted: Mapping[str, Restriction] = restricted or {}
        # Pupil links imported with a roster (parent's account -> its links), as the account
        # registry knew them when the shard was built; `pupil_linked`/`pupil_unlinked` events follow.
        self.links: Mapping[str, Sequence[LentLink]] = links or {}
        # One copy of each pupil id the detectors keep, shared by the process's shards (the
        # composition root builds it); a shard built alone (a replay, a test) gets its own.
        self.pupil_ids: Interner[str] = pupil_ids if pupil_ids is not None else new_pupil_ids()


class Detector:
    """Base class. Subclasses set `id` and `event_types`, and quote their policy clause."""

    id: ClassVar[str]
    event_types: ClassVar[tuple[str, ...]]
    staff_pupil_views: ClassVar[bool] = True
    """False for a `PUPIL_VIEW` detector that ignores the Schools' Portal's (staff) views of
    pupils: the shard then does not call it for them (no call where nothing happens)."""
    requires_geoip: ClassVar[bool] = False
    """True for detectors that need a GeoIP City database: they stay idle (sessions carry no
    location) until one can be read, and `GeoServices` warns once that they are disabled."""

    def on_event(self, event: PortalEvent, account: AccountState) -> Sequence[Alert] | None:
        """Called for each event of a type in `event_types`, after the session table saw it."""
        return None

    def on_tick(self, watermark: float) -> Sequence[Alert] | None:
        """Called after each batch with the shard's event-time watermark."""
        return None

    def on_sessions_ended(self, sessions: Sequence[Session]) -> Sequence[Alert] | None:
        """Called after each expiry sweep with the sessions that ended without a logout since
        the last call: `close_reason` "idle_timeout" or "max_duration" (the monitor's expiry,
        `closed_at` its event time) or "session_expired" (the portal's). Every session that
        ended before the watermark has been handed over by then, so a detector that takes each
        call's sessions in `closed_at` order sees them in the same order live and in replay.
        The sessions are closed: read them, keep only what is needed."""
        return None

    def take_tallies(self) -> dict[str, int] | None:
        """Counts kept since the last call, for a metric (bounded keys; never ids); None if none."""
        return None

    def snapshot(self) -> Any:
        """Detector-owned state as msgspec-encodable data, for checkpoints."""
        return None

    def restore(self, state: Any) -> None:
        """Load what `snapshot` returned; None (a checkpoint delta's "nothing held now"): empty."""

    # -- per-account state, for incremental checkpoints --------------------------------------

    def accounts_state(self) -> Mapping[str, Any] | None:
        """The detector's state as one mapping of account id to entry (read only), or None.

        A detector whose state grows with the accounts keeps it as such a mapping and returns
        it here; incremental checkpoints then write only the entries of accounts that changed
        (those of the events it was given, and those `take_forgotten` names), and load them
        with `restore_accounts`. The state of any other detector is written whole each time.
        An entry may change only in `on_event` for its own account, or be dropped (named by
        `take_forgotten`).
        """
        return None

    def restore_accounts(self, account_ids: Sequence[str], entries: Any) -> None:
        """Replace what `account_ids` had with `entries` (decoded from entries of
        `accounts_state()`); an account named but absent from `entries` has none."""
        raise NotImplementedError(f"{type(self).__name__} keeps no per-account state")

    def take_forgotten(self) -> Sequence[str]:
        """The accounts whose entries were dropped (evicted) since the last call."""
        return ()


def snapshots(detectors: "Sequence[Detector]") -> dict[str, msgspec.Raw]:
    """Each detector's `snapshot()` encoded (msgpack), by id; those with nothing to keep left out.
    What a shard's and the network stage's checkpoints carry of their detectors."""
    encode = msgspec.msgpack.encode
    states = {}
    for detector in detectors:
        state = detector.snapshot()
        if state is not None:
            states[detector.id] = msgspec.Raw(encode(state))
    return states
