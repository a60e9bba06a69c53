"""Turn raw records into `PortalEvent`s, once, or into rejections with a reason.

A record that breaks the contract is never dropped silently and never stops the service: it
becomes a `Rejection` naming one of a fixed set of reasons (a bounded metric label) and is
sent on to the dead letters with the raw bytes. No exception escapes `EventDecoder.decode`.

Beyond what the `PortalEvent` Struct checks (types, lengths), a record is refused when it
holds something a later stage could not keep or would read differently from the portal:

- `empty`: a Kafka record with a null value, or a blank line in a file;
- `too_deep`: nested deeper than `MAX_DEPTH` (unknown fields included): msgspec would
  otherwise raise `RecursionError` near 1,000 levels;
- `bad_utf8`: invalid UTF-8 anywhere, member names included;
- `duplicate_key`: a member name given twice in the event object (which value counts would
  differ between readers);
- `control_character`: NUL (PostgreSQL text cannot hold it), another C0 control, DEL or a C1
  control in a text field;
- `bad_ip`: not an IPv4/IPv6 address, or one with a zone id (`fe80::1%eth0`);
- `bad_timestamp`: a `ts` before the plausible range (`engine.earliest_event_time`,
  2000-01-01 by default).

The checks cost next to nothing for an ordinary record: they run in full only for records
with an escape (`\\`), a non-ASCII byte, DEL, more than a few brackets, or more quotes than its
known fields account for (an unknown member, an explicit null, or a duplicate).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import datetime, timezone

from typing import Sequence

import msgspec
import msgspec.inspect

from monitor.contract.durations import Seconds
from monitor.contract.events import EVENT_TYPES, REJECTION_REASONS, REQUIRED_FIELDS, TEXT_FIELDS, PortalEvent
from monitor.places.networks import NetworkMap


MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a record may have, the event object being level 1."""

EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""Default start of the plausible time range (`engine.earliest_event_time`)."""

# C0 controls, DEL and C1 controls: what a text field may not hold.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# A JSON string, or one structural bracket: enough to measure nesting outside strings.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")
_QUOTE, _OPEN_ARRAY, _OPEN_OBJECT = b'"'[0], b"["[0], b"{"[0]  # off the fast path; on it, literals (below)
_DETAIL_LIMIT = 1024

# The fields the checks know: those msgspec requires, and the optional ones, each with its
# bit in `EventDecoder.decode`'s `absent` (bit n: `_OPTIONAL[n]` is absent or null). `at` is
# never read from the input.
_ALWAYS = ("event_id", "type", "ts", "account_id")
_OPTIONAL = ("session_id", "ip", "resource", "portal", "role", "user_agent", "device_id", "school_id",
             "pupil_id", "action", "reason", "actor")


def _check_tables(event: type[msgspec.Struct]) -> None:
    """Refuse to load when the fields of `event` (PortalEvent) and the decoder's tables differ: a field added to the contract without its place here would skip the quote count and
    the per-type checks. Each known field must also be what the quote count assumes: a JSON
    string (text, a Literal of strings or a datetime), absent as None if optional."""
    known, fields = (*_ALWAYS, *_OPTIONAL, "at"), event.__struct_fields__
    if fields != known:
        raise RuntimeError(
            f"monitor.ingest.decode knows the fields {known} but {event.__name__} has {fields}: "
            f"new or missing {sorted(set(fields) ^ set(known))}; update _ALWAYS / _OPTIONAL and the bits in EventDecoder.decode")
    if set(TEXT_FIELDS) - set(_ALWAYS + _OPTIONAL) or any(set(names) - set(_OPTIONAL) for names in REQUIRED_FIELDS.values()):
        raise RuntimeError("monitor.ingest.decode: TEXT_FIELDS or REQUIRED_FIELDS name a field the decoder does not know")
    for field in msgspec.inspect.type_info(event).fields:
        if field.name == "at":
            continue
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        strings = all(isinstance(kind, (msgspec.inspect.StrType, msgspec.inspect.DateTimeType, msgspec.inspect.NoneType))
                      or (isinstance(kind, msgspec.inspect.LiteralType) and all(type(v) is str for v in kind.values))
                      for kind in kinds)
        optional = field.name in _OPTIONAL
        if not strings or field.encode_name != field.name or field.required == optional or (optional and field.default is not None):
            raise RuntimeError(f"monitor.ingest.decode: {event.__name__}.{field.name} is not a string field as its quote count assumes")


_check_tables(PortalEvent)

_BIT = {name: 1 << n for n, name in enumerate(_OPTIONAL)}
# The fields each type requires (beyond `_ALWAYS`), (name, bit) in the contract's order.
_REQUIRED_BITS = {t: tuple((name, _BIT[name]) for name in REQUIRED_FIELDS.get(t, ())) for t in EVENT_TYPES}
_NEGATED = {quotes: -quotes for quotes in range(0, 4 * (len(_ALWAYS) + len(_OPTIONAL)) + 1, 4)}  # shared ints


@functools.cache  # one table per distinct mask: 6 for the 12 types, 32 KiB each
def _expected_quotes(required: int) -> tuple[int, ...]:
    """By `absent`: the quotes of a record without escapes, unknown members, nulls or duplicates,
    negated when a field of the mask `required` is absent."""
    table = []
    for absent in range(1 << len(_OPTIONAL)):
        quotes = 4 * (len(_ALWAYS) + len(_OPTIONAL) - bin(absent).count("1"))
        table.append(_NEGATED[quotes] if absent & required else quotes)
    return tuple(table)


# By type, then by `absent`: the quotes expected, negative when a required field is absent.
_EXPECTED = {t: _expected_quotes(sum(bit for _, bit in bits)) for t, bits in _REQUIRED_BITS.items()}


DEAD_LETTER_RAW_LIMIT = 64 * 1024
"""Bytes of a rejected record kept in its dead letter. Encoded as JSON a byte takes at most 6
(`\\u0001`), so a dead letter stays well under a broker's default 1 MB message limit."""


def bounded_raw(raw: bytes | str | None, limit: int = DEAD_LETTER_RAW_LIMIT) -> tuple[str, int | None, str | None]:
    """A rejected record as a dead letter keeps it: (text, length, sha256). A record longer than
    `limit` bytes is cut to that many; then `length` is its whole length in bytes and `sha256`
    the hex SHA-256 of all of it (else both None). Never raises."""
    if raw is None:
        raw = b""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    length = digest = None
    if len(data) > limit:
        length, digest = len(data), hashlib.sha256(data).hexdigest()
        data = data[:limit]
    return data.decode("utf-8", "backslashreplace").rstrip("\r\n"), length, digest


class Rejection(msgspec.Struct, frozen=True):
    """A record that broke the contract, and why."""

    reason: str
    detail: str


class _Duplicate(Exception):
    pass


def classify(error: msgspec.MsgspecError) -> str:
    """Map a msgspec error to one of `REJECTION_REASONS`."""
    message = str(error)
    if isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError):
        return "bad_utf8" if "UTF-8" in message else "not_json"
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


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw` (valid JSON), strings skipped."""
    depth = deepest = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if len(token) != 1:
            continue
        if token[0] in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        seen = set()
        for name in names:
            if name in seen:
                raise _Duplicate(name)
            seen.add(name)
    return dict(pairs)


def duplicate_member(raw: bytes) -> str | None:
    """A member name given twice in one object of `raw` (valid JSON), or None."""
    try:
        json.loads(raw, object_pairs_hook=_no_duplicates)
    except _Duplicate as duplicate:
        return str(duplicate.args[0])
    except ValueError:  # what msgspec accepted and `json` does not is not a duplicate
        return None
    return None


DEFAULT_PUPIL_PATHS = [r"^/pupils/(?P<pupil>[^/?#]+)"]


class PupilSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[pupils]`: how a page view names the pupil whose record it shows, and who viewed each pupil."""

    paths: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_PUPIL_PATHS))
    """Regular expressions over a page view's resource, each with a group `(?P<pupil>...)`: the
    pupil of a view that carries no `pupil_id`. Tried in order; the first match wins. `[]`: only
    `pupil_id` names pupils."""
    access_log: bool = True
    """Keep who viewed each pupil's record (one row per account, pupil and day) in PostgreSQL's
    `pupil_access`, for `portal-monitor pupils access` and `GET /api/v1/pupils/{id}/access`."""
    access_keep_for: Seconds = Seconds(400 * 86400)
    """Rows of `pupil_access` older than this (by day) are purged by the retention job."""

    def __post_init__(self) -> None:
        for pattern in self.paths:
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pupils.paths: {pattern!r} is not a regular expression: {error}") from None
            if "pupil" not in compiled.groupindex:
                raise ValueError(f"pupils.paths: {pattern!r} has no group named `pupil`: write (?P<pupil>...)")


class EventDecoder:
    """Decodes one record at a time; the caller loops over a batch.

    A page view without `pupil_id` whose resource matches one of `pupil_paths` gets the pupil
    the path names as its `pupil_id`, here, once: detectors and the access log read `pupil_id` only.
    """

    def __init__(self, networks: NetworkMap, earliest: datetime = EARLIEST_EVENT_TIME, pupil_paths: Sequence[str] = ()) -> None:
        self._decode = msgspec.json.Decoder(PortalEvent).decode
        self._lookup = networks.lookup
        self._known_ips = networks.known  # the map's cache: an address seen before is valid or not already
        self.earliest = earliest
        self._earliest_at = earliest.timestamp()
        self._pupil_paths = tuple(re.compile(pattern).match for pattern in pupil_paths)

    def decode(self, raw: bytes | str | None) -> PortalEvent | Rejection:
        # The checks are inline and in the order below (each refusal is the first check a record
        # fails); `_check_tables` at import makes sure they cover every field of PortalEvent.
        try:
            if type(raw) is not bytes:
                if raw is None:
                    return Rejection("empty", "a record with no value (a Kafka tombstone)")
                if type(raw) is str:
                    raw = raw.encode("utf-8", "surrogatepass")
            try:
                e = self._decode(raw)
            except msgspec.MsgspecError as error:
                if not raw.strip():
                    return Rejection("empty", "a blank record")
                return Rejection(classify(error), str(error)[:_DETAIL_LIMIT])
            except RecursionError:
                return Rejection("too_deep", f"nested deeper than {MAX_DEPTH} levels")
            # -- what the Struct cannot see: cheap tests first, the full check only when needed.
            # Bytes are searched by int: with a bytes needle CPython makes and drops a TypeError
            # per call (it tries the needle as an int first), which costs more than the search.
            # On this path the ints are literals, a constant costs less than a global: 92 is
            # the backslash, 127 DEL, 34 the quote.
            escaped = 92 in raw
            if not raw.isascii():
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    return Rejection("bad_utf8", f"invalid UTF-8 at byte {error.start}")
                escaped = True  # a raw C1 control (U+0080-U+009F) is possible
            if escaped or 127 in raw:
                for name in TEXT_FIELDS:
                    value = getattr(e, name)
                    if value is not None and _CONTROL.search(value) is not None:
                        return Rejection("control_character", f"`{name}` holds a control character (NUL, C0, DEL or C1)")
            # One bit per absent optional field, bit n for `_OPTIONAL[n]` (the literals follow
            # its order; tests/test_decode_checks.py tries every combination), found once: an
            # `if` per field costs less than arithmetic on each test's bool, and absent is the
            # exception.
            absent = 0
            if e.session_id is None:
                absent += 1
            if e.ip is None:
                absent += 2
            if e.resource is None:
                absent += 4
            if e.portal is None:
                absent += 8
            if e.role is None:
                absent += 16
            if e.user_agent is None:
                absent += 32
            if e.device_id is None:
                absent += 64
            if e.school_id is None:
                absent += 128
            if e.pupil_id is None:
                absent += 256
            if e.action is None:
                absent += 512
                e.action = "view"  # the contract's default
            if e.reason is None:
                absent += 1024
            if e.actor is None:
                absent += 2048
            # Every known, non-null member accounts for four quotes (name and string value);
            # without an escape a quote is always a string delimiter. Exactly that many quotes:
            # no unknown member (so no nesting either: known fields are scalars), no null, no
            # duplicate. More: look closer. The table gives the count negated when a field the
            # type requires is absent: then the record is refused for it after these checks.
            expected = _EXPECTED[e.type][absent]
            if escaped or raw.count(34) != expected:
                if escaped or raw.count(_QUOTE) != -expected:  # more than a required field absent
                    if raw.count(_OPEN_ARRAY) + raw.count(_OPEN_OBJECT) > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
                        return Rejection("too_deep", f"nested deeper than {MAX_DEPTH} levels")
                    name = duplicate_member(raw)
                    if name is not None:
                        return Rejection("duplicate_key", f"member {name[:64]!r} is given twice")
                # -- the contract's per-type rules: the type's required fields
                if expected < 0:
                    for name, bit in _REQUIRED_BITS[e.type]:
                        if absent & bit:
                            return Rejection("missing_field", f"`{name}` is required for {e.type}")
            ip = e.ip
            if ip is not None:
                info = self._known_ips.get(ip, False)
                if info is None or (info is False and self._lookup(ip) is None):
                    return Rejection("bad_ip", f"not an IPv4 or IPv6 address without zone id: {ip[:64]!r}")
            at = e.ts.timestamp()
            if at < self._earliest_at:
                return Rejection("bad_timestamp", f"ts {e.ts.isoformat()} is before {self.earliest.date().isoformat()}")
            e.at = at
            if e.pupil_id is None:  # after the contract's checks: they count the members as sent
                resource = e.resource
                if resource is not None and self._pupil_paths:
                    for match in self._pupil_paths:
                        found = match(resource)
                        if found is not None:
                            e.pupil_id = found.group("pupil") or None
                            break
            elif not e.pupil_id:
                e.pupil_id = None
            return e
        except Exception as error:  # never let one record stop the partition
            return Rejection("processing_error", f"decode failed: {type(error).__name__}: {error}"[:_DETAIL_LIMIT])
