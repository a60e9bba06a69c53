"""The event contract `portal.event/v1`: one login, logout, page view, account change or pupil link.

`pupil_linked` / `pupil_unlinked` say that a parent's account (`account_id`) may, or may no
longer, see a pupil's records (`pupil_id`); `reason` says why a link was removed.

Events are decoded once, with msgspec, straight into `PortalEvent`. The Struct checks the
types and length limits; the per-type rules of the contract (which fields each type needs,
a valid IP address) are checked by `monitor.ingest.decode`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

EventType = Literal[
    "login_succeeded",
    "login_failed",
    "logout",
    "page_view",
    "session_expired",
    "account_created",
    "account_disabled",
    "account_enabled",
    "access_revoked",
    "access_restored",
    "pupil_linked",
    "pupil_unlinked",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

Portal = Literal["schools", "parent"]
PageAction = Literal["view", "download", "print", "export"]

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
AccountId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Resource = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
UserAgent = Annotated[str, msgspec.Meta(max_length=1024)]

# Fields each type must carry, beyond event_id, type, ts and account_id.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "login_succeeded": ("session_id", "ip"),
    "login_failed": ("ip",),
    "logout": ("session_id",),
    "page_view": ("session_id", "resource"),
    "session_expired": ("session_id",),
    "pupil_linked": ("pupil_id",),
    "pupil_unlinked": ("pupil_id",),
}

# The free-text fields (not the Literals): none may hold a control character (`monitor.decode`).
TEXT_FIELDS: tuple[str, ...] = (
    "event_id", "account_id", "session_id", "ip", "resource", "role", "user_agent",
    "device_id", "school_id", "pupil_id", "reason", "actor",
)

# Why a link between a parent's account and a pupil was removed (`reason` of `pupil_unlinked`).
# Free text is accepted; these are the reasons the Parent Portal's policy names, and the first
# two make a later view of that pupil's record critical (`unlinked_pupil_access`).
PROTECTIVE_UNLINK_REASONS: tuple[str, ...] = ("court_order", "child_protection")
UNLINK_REASONS: tuple[str, ...] = PROTECTIVE_UNLINK_REASONS + ("left_school", "parental_responsibility_questioned")


class PortalEvent(msgspec.Struct, gc=False):
    """One record of the portal's audit log, as the portal produced it.

    `at` is the event time as Unix seconds. It is never read from the input: the decoder
    sets it from `ts` so the hot path compares floats, not datetimes. `action` is None only
    between msgspec and the decoder, which sets the default, `view` (so that it can tell an
    explicit `action` from an absent one when it counts the members, `monitor.ingest.decode`).
    """

    event_id: EventId
    type: EventType
    ts: Timestamp
    account_id: AccountId
    session_id: ShortText | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    resource: Resource | None = None
    portal: Portal | None = None
    role: ShortText | None = None
    user_agent: UserAgent | None = None
    device_id: ShortText | None = None
    school_id: ShortText | None = None
    pupil_id: ShortText | None = None
    action: PageAction | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    actor: ShortText | None = None
    at: float = msgspec.field(default=0.0, name="__portal_monitor_at")


# Why a record was refused (monitor.ingest.decode), each a value of the `reason` metric label.
REJECTION_REASONS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "empty",
    "too_deep",
    "bad_utf8",
    "duplicate_key",
    "control_character",
    "unknown_type",
    "missing_field",
    "oversized_field",
    "bad_timestamp",
    "bad_ip",
    "bad_field",
    "future_timestamp",
    "processing_error",
)

# What became of a decoded event, each a value of the events metric's `outcome` label.
OUTCOMES: tuple[str, ...] = ("processed", "late", "duplicate")
# A portal as a metric label: the two portals, and "unknown" for events that do not say.
PORTAL_LABELS: tuple[str, ...] = ("schools", "parent", "unknown")
