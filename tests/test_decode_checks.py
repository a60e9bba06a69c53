"""The contract's checks in `EventDecoder.decode`, one refusal path at a time (issue 19).

The checks were rewritten for speed (one bit per absent field, a table of expected quote
counts, a bitmask per type for its required fields); what is accepted and refused, and the
message of each refusal, must not change. tests/test_hostile_input.py covers the reasons;
this covers every required field of every type, every text field, every combination of
absent optional fields, and `at` against `ts.timestamp()`.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Literal

import msgspec
import msgspec.structs
import pytest

from monitor.contract.events import EVENT_TYPES, REQUIRED_FIELDS, TEXT_FIELDS, PortalEvent
from monitor.ingest import decode as decode_module
from monitor.ingest.decode import MAX_DEPTH, EventDecoder, Rejection
from monitor.places.networks import NetworkMap

BASE = {"event_id": "e1", "type": "account_created", "ts": "2026-03-02T08:00:00Z", "account_id": "staff-1"}
# A valid value for every optional member.
OPTIONAL = {
    "session_id": "s1", "ip": "81.2.69.10", "resource": "/pupils/2000011/report", "portal": "parent",
    "role": "parent", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "device_id": "d1", "school_id": "8884002",
    "pupil_id": "2000011", "action": "download", "reason": "left_school", "actor": "school-office",
}
OPTIONAL_NAMES = tuple(OPTIONAL)


def encode(members: dict) -> bytes:
    return json.dumps(members, separators=(",", ":")).encode()


def event(type_: str, **members) -> dict:
    return {**BASE, "type": type_, **members}


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder(NetworkMap([]), pupil_paths=[r"^/pupils/(?P<pupil>[^/?#]*)"])


def refused(decoder: EventDecoder, raw) -> tuple[str, str]:
    outcome = decoder.decode(raw)
    assert type(outcome) is Rejection, outcome
    return outcome.reason, outcome.detail


def test_the_decoders_tables_name_every_field_of_the_event():
    """The import-time guard: a field added to PortalEvent without a place in the decoder's
    tables would skip its checks silently, so the module refuses to load; so does a known field
    that is not a JSON string (the quote count assumes four quotes a member)."""
    assert set(OPTIONAL) | set(BASE) | {"at"} == set(PortalEvent.__struct_fields__)
    decode_module._check_tables(PortalEvent)

    def variant(**changes):  # PortalEvent with some fields changed: name=type or name=(type, default)
        fields = []
        for f in [*msgspec.structs.fields(PortalEvent)[:-1], *(msgspec.structs.FieldInfo(n, n, None) for n in changes
                                                            if n not in PortalEvent.__struct_fields__)]:
            change = changes.get(f.name, f.type if f.required else (f.type, f.default))
            fields.append((f.name, *change) if type(change) is tuple else (f.name, change))
        return msgspec.defstruct("Event", [*fields, ("at", float, 0.0)], kw_only=True)

    decode_module._check_tables(variant())
    for bad, message in [
        (variant(new_field=(str | None, None)), "new_field"),
        (variant(school_id=(int | None, None)), "school_id is not a string field"),
        (variant(portal=(Literal[1, 2] | None, None)), "portal is not a string field"),
        (variant(role=(str | None, "teacher")), "role is not a string field"),  # absent would not be None
        (variant(role=str | None), "role is not a string field"),  # required
        (variant(account_id=(str, "a")), "account_id is not a string field"),  # optional
    ]:
        with pytest.raises(RuntimeError, match=message):
            decode_module._check_tables(bad)
    missing = msgspec.defstruct("Event", [(n, str) for n in ("event_id", "type", "ts", "account_id")] + [("at", float, 0.0)])
    with pytest.raises(RuntimeError, match="session_id"):
        decode_module._check_tables(missing)


@pytest.mark.parametrize("type_,name", [(t, n) for t, names in REQUIRED_FIELDS.items() for n in names])
@pytest.mark.parametrize("how", ["absent", "null", "null-and-escaped"])
def test_each_required_field_of_each_type(decoder, type_, name, how):
    members = event(type_, **OPTIONAL)
    if how == "absent":
        del members[name]
    else:
        members[name] = None
    if how == "null-and-escaped":
        members["role"] = "a\"b"
    assert refused(decoder, encode(members)) == ("missing_field", f"`{name}` is required for {type_}")


@pytest.mark.parametrize("type_", sorted(REQUIRED_FIELDS))
def test_the_first_missing_field_is_named(decoder, type_):
    members = event(type_, **{k: v for k, v in OPTIONAL.items() if k not in REQUIRED_FIELDS[type_]})
    first = REQUIRED_FIELDS[type_][0]
    assert refused(decoder, encode(members)) == ("missing_field", f"`{first}` is required for {type_}")


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_combination_of_absent_optional_fields(decoder, type_):
    """All 4,096 subsets of the optional members, for every type: refused exactly when a
    required one is absent (naming the first), else accepted with every member as sent."""
    required = REQUIRED_FIELDS.get(type_, ())
    for present in itertools.product((False, True), repeat=len(OPTIONAL_NAMES)):
        members = event(type_, **{n: OPTIONAL[n] for n, p in zip(OPTIONAL_NAMES, present) if p})
        outcome = decoder.decode(encode(members))
        missing = [n for n in required if n not in members]
        if missing:
            assert outcome == Rejection("missing_field", f"`{missing[0]}` is required for {type_}")
            continue
        assert type(outcome) is PortalEvent, (members, outcome)
        for name in OPTIONAL_NAMES:
            expected = members.get(name)
            if name == "action" and expected is None:
                expected = "view"
            if name == "pupil_id" and expected is None and "resource" in members:
                expected = "2000011"  # from the pupil path
            assert getattr(outcome, name) == expected, (name, members)
        assert outcome.at == 1772438400.0


@pytest.mark.parametrize("extra,reason", [
    (b',"x":1', None),  # an unknown member: accepted
    (b',"role":null', None),  # an explicit null: accepted
    (b',"account_id":"b"', "duplicate_key"),
    (b',"x":1,"x":2', "duplicate_key"),
])
def test_extra_members_with_any_absent_fields(decoder, extra, reason):
    for n in range(len(OPTIONAL_NAMES) + 1):
        members = event("account_created", **{k: OPTIONAL[k] for k in OPTIONAL_NAMES[n:] if k != "role"})
        raw = encode(members)[:-1] + extra + b"}"
        outcome = decoder.decode(raw)
        if reason is None:
            assert type(outcome) is PortalEvent, outcome
        else:
            assert outcome.reason == reason


@pytest.mark.parametrize("name", TEXT_FIELDS)
@pytest.mark.parametrize("control", ["\\u0000", "\\u001f", "\\n", "\x7f", "\\u007f", "\u0085", "\\u009f"])
def test_each_text_field_with_a_control_character(decoder, name, control):
    members = event("page_view", **OPTIONAL)
    member = f'"{name}":{json.dumps(members[name])}'.encode()
    assert member in encode(members)
    raw = encode(members).replace(member, member[:-1] + control.encode() + b'"')
    assert msgspec.json.decode(raw)[name].endswith(msgspec.json.decode(b'"' + control.encode() + b'"'))
    assert refused(decoder, raw) == ("control_character", f"`{name}` holds a control character (NUL, C0, DEL or C1)")


def test_the_first_text_field_with_a_control_character_is_named(decoder):
    members = event("page_view", **OPTIONAL)
    members["actor"] = "a\x01"
    members["device_id"] = "b\x01"
    assert refused(decoder, encode(members))[1] == "`device_id` holds a control character (NUL, C0, DEL or C1)"


@pytest.mark.parametrize("raw,expected", [
    (None, ("empty", "a record with no value (a Kafka tombstone)")),
    (b" \n", ("empty", "a blank record")),
    (b"{", ("not_json", "Input data was truncated")),
    (b"[]", ("not_object", "Expected `object`, got `array`")),
    (b'{"event_id":"e1"}', ("missing_field", "Object missing required field `type`")),
    (encode(event("nope")), ("unknown_type", "Invalid enum value 'nope' - at `$.type`")),
    (encode({**BASE, "ts": "yesterday"}), ("bad_timestamp", "Invalid RFC3339 encoded datetime - at `$.ts`")),
    (encode({**BASE, "ts": "2026-03-02T08:00:00"}), ("bad_timestamp", "Expected `datetime` with a timezone component - at `$.ts`")),
    (encode({**BASE, "event_id": ""}), ("bad_field", "Expected `str` of length >= 1 - at `$.event_id`")),
    (encode({**BASE, "role": "r" * 257}), ("oversized_field", "Expected `str` of length <= 256 - at `$.role`")),
    (encode({**BASE, "portal": "other"}), ("bad_field", "Invalid enum value 'other' - at `$.portal`")),
    (encode({**BASE, "ip": 5}), ("bad_field", "Expected `str | null`, got `int` - at `$.ip`")),
    (b'{"event_id":"e\xff"}', ("bad_utf8", "Invalid UTF-8 encoded string")),  # msgspec's
    (encode(BASE)[:-1] + b',"x":"\xc3"}', ("bad_utf8", "invalid UTF-8 at byte 98")),  # the decoder's
    (encode(BASE)[:-1] + b',"\xff":1}', ("bad_utf8", "invalid UTF-8 at byte 94")),
    (encode(event("login_failed", ip="fe80::1%eth0")), ("bad_ip", "not an IPv4 or IPv6 address without zone id: 'fe80::1%eth0'")),
    (encode(event("login_failed", ip="no")), ("bad_ip", "not an IPv4 or IPv6 address without zone id: 'no'")),
    (encode(event("logout", session_id="s", ip="1.2.3.4.5")), ("bad_ip", "not an IPv4 or IPv6 address without zone id: '1.2.3.4.5'")),
    (encode({**BASE, "ts": "1999-12-31T23:59:59.999999Z"}), ("bad_timestamp", "ts 1999-12-31T23:59:59.999999+00:00 is before 2000-01-01")),
    (encode({**BASE, "ts": "2000-01-01T00:30:00+01:00"}), ("bad_timestamp", "ts 2000-01-01T00:30:00+01:00 is before 2000-01-01")),
    (encode({**BASE, "session_id": "s"})[:-1] + b',"session_id":"t"}', ("duplicate_key", "member 'session_id' is given twice")),
    (encode(BASE)[:-1] + b',"x":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", ("too_deep", "nested deeper than 32 levels")),
    (encode(BASE)[:-1] + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}", ("too_deep", "nested deeper than 32 levels")),
])
def test_each_refusal_keeps_its_message(decoder, raw, expected):
    assert refused(decoder, raw) == expected


def test_the_checks_run_in_their_order(decoder):
    """One record with several faults is refused for the first check it fails."""
    members = event("login_succeeded", ip="fe80::1%eth0", ts="1990-01-01T00:00:00Z", role="a\x01")
    raw = encode(members)
    assert refused(decoder, raw)[0] == "control_character"
    assert refused(decoder, raw[:-1] + b',"type":"login_succeeded"}')[0] == "control_character"
    del members["role"]
    raw = encode(members)
    assert refused(decoder, raw[:-1] + b',"ip":"x"}')[0] == "duplicate_key"
    assert refused(decoder, raw)[0] == "missing_field"  # session_id
    members["session_id"] = "s"
    assert refused(decoder, encode(members))[0] == "bad_ip"
    members["ip"] = "1.2.3.4"
    assert refused(decoder, encode(members))[0] == "bad_timestamp"


TIMESTAMPS = [
    "2026-03-02T08:00:00Z", "2026-03-02T08:00:00.5Z", "2026-03-02T08:00:00.000001Z", "2026-03-02T08:00:00.999999Z",
    "2026-03-02T08:00:00.123456+05:30", "2026-03-02T08:00:00-08:00", "2026-03-02T08:00:00.1-00:01",
    "2000-01-01T00:00:00Z", "2000-01-01T00:00:00.000001+00:00", "2024-02-29T23:59:59.999999Z",
    "2038-01-19T03:14:08Z", "9999-12-31T23:59:59.999999Z", "2100-03-01T00:00:00.333333+14:00",
    "2000-01-01T00:00:00-23:59",
]


@pytest.mark.parametrize("ts", TIMESTAMPS)
def test_at_is_exactly_ts_timestamp(decoder, ts):
    outcome = decoder.decode(encode(event("account_created", ts=ts)))
    assert type(outcome) is PortalEvent, outcome
    assert type(outcome.at) is float and repr(outcome.at) == repr(outcome.ts.timestamp())
    assert outcome.ts == datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_at_is_exactly_ts_timestamp_over_many_times(decoder):
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    step = timedelta(days=3, seconds=7_777, microseconds=123_457)
    offsets = [timezone.utc, timezone(timedelta(hours=2)), timezone(-timedelta(hours=9, minutes=30))]
    for n in range(3_000):
        ts = (start + n * step).astimezone(offsets[n % 3])
        text = ts.isoformat() if n % 2 else ts.replace(microsecond=0).isoformat()
        outcome = decoder.decode(encode(event("account_created", ts=text)))
        assert repr(outcome.at) == repr(outcome.ts.timestamp()), text


def test_accepted_events_are_as_sent(decoder):
    members = event("page_view", **OPTIONAL)
    outcome = decoder.decode(encode(members))
    assert outcome == PortalEvent(**{**members, "ts": datetime(2026, 3, 2, 8, tzinfo=timezone.utc)}, at=1772438400.0)
    # the default action, the pupil from the path, an empty pupil_id as none
    del members["action"], members["pupil_id"]
    outcome = decoder.decode(encode(members))
    assert (outcome.action, outcome.pupil_id) == ("view", "2000011")
    outcome = decoder.decode(encode({**members, "pupil_id": ""}))
    assert outcome.pupil_id is None
    outcome = decoder.decode(encode({**members, "resource": "/pupils/"}))
    assert outcome.pupil_id is None
    # str input, surrogates as the caller gave them are refused as invalid UTF-8 later
    assert decoder.decode(encode(members).decode()) == decoder.decode(encode(members))
