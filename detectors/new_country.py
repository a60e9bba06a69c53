"""`new_country`: a login from a country the account has never used, once it has a baseline."""

from __future__ import annotations

from typing import Any, Sequence

import math
import struct
from datetime import date

import msgspec

from detectors._places import where
from detectors.base import Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.settings import Section
from monitor.contract.alerts import Alert, Severity, new_alert, utc
from monitor.contract.durations import Seconds
from monitor.contract.events import PortalEvent
from monitor.state.interning import Interner, account_key
from monitor.state.sessions import AccountState



class NewCountrySettings(Section):
    enabled: bool = True
    baseline_logins: int = 10
    """The account has a baseline after this many located logins..."""
    baseline_period: Seconds = Seconds(14 * 86400)
    """...or this long after its first one, whichever comes first."""
    allowed_countries: list[str] = msgspec.field(default_factory=lambda: ["GB"])
    """Where the portal expects its users (ISO 3166-1 alpha-2 codes)."""
    severity: Severity = "high"
    """A new country outside `allowed_countries`."""
    severity_allowed: Severity = "low"
    """A new country inside `allowed_countries`."""
    severity_known_network: Severity = "low"
    """A new country from a network (ASN) the account already uses: a corporate VPN's other exit."""
    max_countries: int = 8
    max_networks: int = 8
    forget_after: Seconds = Seconds(180 * 86400)
    """An account with no located login for this long (in event time) has its history dropped,
    and its next login starts a new baseline: memory stays bounded by the accounts active within
    this period. 180 days is the Schools' Portal's own dormancy limit, after which the portal
    disables the account (and `dormant_account_login` reports attempts on it). 0: never forget."""


DAY = 86400
_COUNTRY = struct.Struct("<2sH")  # ISO code, last seen (days since 1970)
_ASN = struct.Struct("<IH")  # ASN, last seen (days since 1970)
_ASN_KEY = struct.Struct("<I")


class History(msgspec.Struct, array_like=True, gc=False):
    """What one account's located logins have shown: compact and bounded, not a list of logins.

    `countries` and `asns` are packed records of (country or ASN, last day seen), most recently
    seen first, at most `max_countries` and `max_networks` of each (the least recently seen is
    dropped): about 110 bytes per account in memory (equal packed records are one shared copy,
    see `_shared`), a few dozen in a checkpoint.
    """

    first_at: int  # Unix seconds of the first located login (the organisation's networks too)
    logins: int  # located logins counted, up to `baseline_logins` (the organisation's networks too)
    countries: bytes = b""
    asns: bytes = b""
    last_day: int = -1  # day (since 1970) of the last located login, organisation's networks too; -1: not known (written before it was kept)

    def country_days(self) -> list[tuple[str, int]]:
        return [(code.decode(), day) for code, day in _COUNTRY.iter_unpack(self.countries)]

    def asn_days(self) -> list[tuple[int, int]]:
        return list(_ASN.iter_unpack(self.asns))


_CODES: dict[str, bytes] = {}
_DAYS = Interner[int](4096)  # one int object per day number in use, not one per account


def _last_day(history: History) -> int:
    """The last day a history shows, for one written before `last_day` was kept."""
    days = [history.first_at // DAY]
    if history.countries:
        days.append(_COUNTRY.unpack_from(history.countries, 0)[1])  # most recently seen first
    if history.asns:
        days.append(_ASN.unpack_from(history.asns, 0)[1])
    return max(days)


def _code(country: str) -> bytes:
    """The 2-byte form of an ISO country code, memoised (there are about 250)."""
    code = _CODES.get(country)
    if code is None:
        code = _CODES[country] = country.encode("ascii", "replace")[:2].ljust(2)
    return code


# One copy of a packed history many accounts hold alike. Most accounts log in from one
# country on one network, so the accounts first or last seen there on the same day hold equal
# bytes; unshared, each would keep its own copy of about 40 bytes for the countries and 40
# for the networks.
_shared = Interner[bytes](65_536)


def _find(packed: bytes, record: struct.Struct, key: bytes) -> int:
    """Offset of the record whose key bytes are `key`, or -1 (a C-speed search)."""
    size = record.size
    index = packed.find(key)
    while index >= 0 and index % size:
        index = packed.find(key, index + 1)
    return index


def _touch(packed: bytes, record: struct.Struct, key: bytes, day: int, limit: int) -> tuple[bytes, bool]:
    """`packed` with `key` (the record's key field as bytes) seen on `day`; whether it was known.

    A place seen again the same day costs a search and nothing else; a place seen on a new day
    moves to the front; past `limit` records the last (least recently seen) is dropped.
    """
    size = record.size
    index = _find(packed, record, key)
    if index >= 0:
        seen = record.unpack_from(packed, index)[1]
        if day <= seen:
            return packed, True
        updated = record.pack(record.unpack_from(packed, index)[0], day)
        return _shared(updated + packed[:index] + packed[index + size :]), True
    return _shared((record.pack(_key_value(record, key), day) + packed)[: limit * size]), False


def _key_value(record: struct.Struct, key: bytes) -> object:
    return key if record is _COUNTRY else _ASN_KEY.unpack(key)[0]


class NewCountry(Detector):
    """A successful login from a country absent from the account's history.

    Someone logging in from where the account's holder has never been is the strongest sign
    of a login used by another person, which the Schools' Portal Site Terms forbid: "An end
    user must only use login details which have been issued to them for their personal
    use."; and the Parent Portal Acceptable Use Policy: "You must never use anyone else's
    username or password".

    Only once the account has a baseline: the earlier of `baseline_logins` located logins or
    `baseline_period` after its first. Higher severity outside the portal's
    `allowed_countries`; lower when the network (ASN) is one the account already uses. Logins
    from allowlisted or organisation-shared networks, and from Tor, VPN, proxy and hosting
    networks, never alert and never add their country: their place is not the person's. The
    organisation's networks still count towards the baseline, and an account seen only there
    is taken to belong in `allowed_countries` (a teacher who only ever logged in at school,
    then from Lagos, is alerted on; the same teacher at home in Preston is not).

    Shared networks stay out of the history on purpose, unlike in `impossible_travel` where they
    are places: a country is remembered as the person's, and an organisation's network says
    where the organisation egresses (a filtering proxy in Amsterdam would make NL "known" for
    every member of staff and hide a real login from the Netherlands), and is never new to the
    people who use it.
    """

    id = "new_country"
    event_types = ("login_succeeded",)
    requires_geoip = True

    def __init__(self, settings: NewCountrySettings, context: DetectorContext) -> None:
        self.settings = settings
        self.geo = context.geo
        self.networks = context.networks
        self.allowed = frozenset(code.upper() for code in settings.allowed_countries)
        self.history: dict[str, History] = {}
        # Event-time eviction: a history idle more than `forget_days` is treated as absent when
        # its account logs in again, and dropped by the daily sweep in `on_tick`.
        self.forget_days = int(settings.forget_after // DAY) if settings.forget_after > 0 else None
        self._swept_day: int | None = None
        self._forgotten: list[str] = []

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        session = account.sessions.get(event.session_id)  # type: ignore[arg-type]
        ip = event.ip
        if session is None or ip is None:
            return None
        location = session.location
        if location is None or location.country is None:
            return None
        at = int(event.at)
        day = at // DAY
        country = _code(location.country)
        asn = location.asn
        asn_key = _ASN_KEY.pack(asn) if asn is not None else b""
        history = self.history.get(event.account_id)
        settings = self.settings
        if history is not None:
            forget = self.forget_days
            if forget is not None and day - history.last_day > forget:
                history = None  # idle past `forget_after`: a new baseline (a new History replaces it)
            elif day > history.last_day:
                history.last_day = _DAYS(day)
        if (
            history is not None
            and _find(history.countries, _COUNTRY, country) >= 0
            and (not asn_key or _find(history.asns, _ASN, asn_key) >= 0)
        ):
            # a known country from a known network (the usual login): refresh, never an alert
            if history.logins < settings.baseline_logins:
                history.logins += 1
            if at < history.first_at:
                history.first_at = at
            history.countries, _ = _touch(history.countries, _COUNTRY, country, day, settings.max_countries)
            if asn_key:
                history.asns, _ = _touch(history.asns, _ASN, asn_key, day, settings.max_networks)
            return None
        unreliable = self.geo.unreliable(ip, location, self.networks)  # type: ignore[union-attr]
        if unreliable is not None:
            if unreliable[0] in ("shared", "allowlisted"):
                # Used at the organisation: the account is active, but the place is not its own.
                if history is None:
                    self.history[account.account_id] = History(first_at=at, logins=1, last_day=_DAYS(day))
                else:
                    history.first_at = min(history.first_at, at)
                    history.logins = min(history.logins + 1, settings.baseline_logins)
            return None
        if history is None:
            self.history[account.account_id] = History(  # keyed by the id's shared copy
                first_at=at,
                logins=1,
                countries=_shared(_COUNTRY.pack(country, day)),
                asns=_shared(_ASN.pack(asn, day)) if asn is not None else b"",
                last_day=_DAYS(day),
            )
            return None
        baseline = history.logins >= settings.baseline_logins or at - history.first_at >= settings.baseline_period
        if at < history.first_at:
            history.first_at = at
        if history.logins < settings.baseline_logins:
            history.logins += 1
        own_places = bool(history.countries)
        history.countries, known_country = _touch(history.countries, _COUNTRY, country, day, settings.max_countries)
        if not own_places and location.country in self.allowed:
            known_country = True  # seen only at the organisation so far: its countries are the expected ones
        known_network = False
        if asn_key:
            history.asns, known_network = _touch(history.asns, _ASN, asn_key, day, settings.max_networks)
        if known_country or not baseline:
            return None
        outside = location.country not in self.allowed
        if known_network:
            severity = settings.severity_known_network
        elif outside:
            severity = settings.severity
        else:
            severity = settings.severity_allowed
        return [self._alert(event, session.session_id, location, history, outside, known_network, severity)]

    def _alert(
        self,
        event: PortalEvent,
        session_id: str,
        location: Any,
        history: History,
        outside: bool,
        known_network: bool,
        severity: str,
    ) -> Alert:
        # What the history held before this login: the new country (and a new ASN) are first.
        known = history.country_days()[1:]
        known_asns = history.asn_days()
        if location.asn is not None and not known_network:
            known_asns = known_asns[1:]
        at = event.at
        ip = event.ip or ""
        codes = ", ".join(code for code, _ in known) or "only the organisation's own networks"
        why = f"a country it had never logged in from (before: {codes} since {utc(history.first_at):%Y-%m-%d})"
        if outside:
            why += f", outside the portal's allowed countries ({', '.join(sorted(self.allowed)) or 'none'})"
        if known_network:
            why += f", though from a network it already uses (AS{location.asn})"
        summary = (
            f"Account {event.account_id} logged in from {where(location, ip)} at "
            f"{utc(at):%Y-%m-%d %H:%M}Z, {why}."
        )
        return new_alert(
            detector=self.id,
            severity=severity,
            account_id=event.account_id,
            at=at,
            trigger=event.event_id,
            session_ids=[session_id],
            summary=summary,
            evidence={
                "ip": ip,
                "country": location.country,
                "city": location.city,
                "latitude": location.latitude,
                "longitude": location.longitude,
                "accuracy_radius_km": location.radius_km,
                "asn": location.asn,
                "org": location.org,
                "known_countries": [{"country": code, "last_seen": _date(day)} for code, day in known],
                "known_asns": [{"asn": asn, "last_seen": _date(day)} for asn, day in known_asns],
                "baseline": {"first_login": utc(history.first_at), "located_logins": history.logins},
                "allowed_countries": sorted(self.allowed),
                "outside_allowed_countries": outside,
                "known_network": known_network,
            },
            policy=policy.for_portal(event.portal, policy.SCHOOLS_PERSONAL_LOGIN, policy.PARENT_OWN_LOGIN),
            portal=event.portal,
        )

    def on_tick(self, watermark: float) -> None:
        """Once per event-time day: drop the histories idle past `forget_after`.

        Only memory changes: such a history is already treated as absent at its account's
        next login. A day's margin is left for late events (a login more than a day behind
        the watermark may find its history dropped a day early).
        """
        forget = self.forget_days
        if forget is None or not math.isfinite(watermark):
            return None
        today = int(watermark // DAY)
        if today == self._swept_day:
            return None
        self._swept_day = today
        cutoff = today - forget - 1
        history = self.history
        stale = [account_id for account_id, entry in history.items() if entry.last_day < cutoff]
        for account_id in stale:
            del history[account_id]
        self._forgotten.extend(stale)
        return None

    def snapshot(self) -> Any:
        return self.history

    def restore(self, state: Any) -> None:
        self.history = {}
        self._forgotten = []
        if state:
            self._load(msgspec.convert(state, dict[str, History]))

    def accounts_state(self) -> dict[str, History]:
        return self.history

    def restore_accounts(self, account_ids: Sequence[str], entries: Any) -> None:
        history = self.history
        for account_id in account_ids:
            history.pop(account_id, None)
        if entries:
            self._load(msgspec.convert(entries, dict[str, History]))

    def take_forgotten(self) -> list[str]:
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    def _load(self, entries: dict[str, History]) -> None:
        history = self.history
        for account_id, entry in entries.items():
            entry.countries, entry.asns = _shared(entry.countries), _shared(entry.asns)
            entry.last_day = _DAYS(entry.last_day if entry.last_day >= 0 else _last_day(entry))
            history[account_key(account_id)] = entry


def _date(day: int) -> str:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat()
