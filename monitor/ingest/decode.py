"""Turn raw records into `PortalEvent`s, once, or into rejections with a reason.

A record that breaks the contract is never dropped silently and never stops the service: it
becomes a `Rejection` naming one of a fixed set of reasons (a bounded metric label) and is
sent on to the dead letters with the raw bytes.
"""

from __future__ import annotations

import msgspec

from monitor.contract.events import REJECTION_REASONS, REQUIRED_FIELDS, PortalEvent
from monitor.places.networks import NetworkMap

# Every reason a record can be rejected for. Metrics are pre-initialised from this tuple.


class Rejection(msgspec.Struct, frozen=True):
    """A record that broke the contract, and why."""

    reason: str
    detail: str


def classify(error: msgspec.MsgspecError) -> str:
    """Map a msgspec error to one of `REJECTION_REASONS`."""
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        return "not_json"
    message = str(error)
    if message.startswith("Expected `object`") and " - at `" not in message:
        return "not_object"
    if message.startswith("Object missing required field"):
        return "missing_field"
    if message.endswith("at `$.type`"):
        return "unknown_type"
    if message.endswith("at `$.ts`"):
        return "bad_timestamp"
    if "of length <=" in message:
        return "oversized_field"
    return "bad_field"


class EventDecoder:
    """Decodes one record at a time; the caller loops over a batch."""

    def __init__(self, networks: NetworkMap) -> None:
        self._decode = msgspec.json.Decoder(PortalEvent).decode
        self._lookup = networks.lookup
        self._known_ips = networks.known  # the map's cache: an address seen before is valid or not already

    def decode(self, raw: bytes | str) -> PortalEvent | Rejection:
        try:
            event = self._decode(raw)
        except msgspec.MsgspecError as error:
            return Rejection(classify(error), str(error))
        required = REQUIRED_FIELDS.get(event.type)
        if required is not None:
            for name in required:
                if getattr(event, name) is None:
                    return Rejection("missing_field", f"`{name}` is required for {event.type}")
        ip = event.ip
        if ip is not None:
            info = self._known_ips.get(ip, False)
            if info is None or (info is False and self._lookup(ip) is None):
                return Rejection("bad_ip", f"not an IPv4 or IPv6 address: {ip[:64]!r}")
        event.at = event.ts.timestamp()
        return event
