"""The account holders of a synthetic run, their devices, what they look at, and the run itself.

Shared by the ordinary traffic of `school_day` and the injected situations of `incidents`: one
`Run` holds the random streams, the people (made the first time they are needed), the clock
that formats event time and the counters that hand out session ids.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from monitor.demo.world import NETWORK_BY_NAME, NETWORKS, SCHOOLS, Network, School, distance_km, random_ip

Event = dict[str, str]

DAY = 86_400
#: Share of accounts that are staff on the Schools' Portal; the rest are parents.
STAFF_SHARE = 0.2
#: The Parent Portal's own idle timeout (s), after which it emits `session_expired`.
PARENT_PORTAL_TIMEOUT = 1200

# An event waiting for its second to come: (type, fields, resource, action, pupil_id). `fields`
# is shared by the events of a session and starts with placeholders for event_id, type and ts.
Queued = tuple[str, Event, str | None, str | None, str | None]
#: Events waiting to be emitted, by their time (s after the first midnight).
Queue = defaultdict[int, list[Queued]]


class Person(NamedTuple):
    """An account holder: a member of staff at a school, or a parent of pupils at one."""

    index: int
    account_id: str
    portal: str  # "schools" or "parent"
    role: str
    school: School
    home: Network
    home_ip: str
    mobile: Network
    pupils: tuple[str, ...]  # a parent's own children; empty for staff
    first_pupil: int  # the number of the first pupil at the school; the rest follow on


def hm(text: str) -> int:
    """Seconds after midnight of a `HH:MM` time of day."""
    hours, minutes = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60


# What a page view looks at.
_ATTENDANCE, _BEHAVIOUR, _REPORTS, _SUMMARY, _RETURNS = range(5)
_SUFFIX = ("/attendance", "/behaviour", "/reports", "")


def _lookup(weights: dict[int, int]) -> tuple[int, ...]:
    """A 100-entry table to draw a page kind from with one uniform number."""
    assert sum(weights.values()) == 100
    return tuple(kind for kind, weight in weights.items() for _ in range(weight))


_TEACHER_PAGES = _lookup({_ATTENDANCE: 35, _BEHAVIOUR: 25, _REPORTS: 20, _SUMMARY: 17, _RETURNS: 3})
_OFFICE_PAGES = _lookup({_ATTENDANCE: 30, _BEHAVIOUR: 10, _REPORTS: 15, _SUMMARY: 15, _RETURNS: 30})
_PARENT_PAGES = _lookup({_ATTENDANCE: 45, _BEHAVIOUR: 25, _REPORTS: 15, _SUMMARY: 15})
_STAFF_ROLES = _lookup({0: 70, 1: 15, 2: 10, 3: 5})
_ROLE_NAMES = ("teacher", "office", "admin", "head")

# Devices an account holder uses, and the browsers they run.
WORK_PC, HOME_PC, PHONE, TABLET, COUNCIL_PC, OTHER_PC, CAFE_PC, TOR_BROWSER = range(8)
_EDGE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36 Edg/133.0.3065.69"
_CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36"
_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:135.0) Gecko/20100101 Firefox/135.0"
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Safari/605.1.15"
_CHROMEBOOK = "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36"
_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1"
_ANDROID = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Mobile Safari/537.36"
_SAMSUNG = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/27.0 Chrome/125.0.0.0 Mobile Safari/537.36"
_IPAD = "Mozilla/5.0 (iPad; CPU OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1"
_TOR = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0"
_BROWSERS: tuple[tuple[str, ...], ...] = (
    (_EDGE, _EDGE, _CHROME),  # work PC
    (_CHROME, _EDGE, _FIREFOX, _MAC, _CHROMEBOOK, _IPAD),  # home PC or tablet
    (_IPHONE, _IPHONE, _ANDROID, _SAMSUNG),  # phone
    (_IPAD,),  # tablet
    (_EDGE,),  # council PC
    (_CHROME, _FIREFOX, _MAC),  # someone else's computer
    (_CHROME,),  # cafe PC
    (_TOR,),  # Tor Browser
)

_MOBILE_CARRIERS = _lookup({0: 30, 1: 15, 2: 35, 3: 20})
_MOBILES = tuple(NETWORK_BY_NAME[n] for n in ("albion-mobile", "albion-mobile-v6", "tricorn-mobile", "meridian-mobile"))
HOMES = tuple(n for n in NETWORKS if n.kind == "home_broadband")
#: Staff and parents live within this distance (km) of their school.
_HOME_RADIUS_KM = 30.0


def _mix64(x: int) -> int:
    """SplitMix64's finaliser: a bijection on 64-bit integers, so distinct inputs stay distinct."""
    m = 0xFFFFFFFFFFFFFFFF
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


class Clock:
    """Formats event time, held as whole seconds since the first midnight, as RFC 3339 `Z`."""

    def __init__(self, midnight: datetime) -> None:
        self.midnight = midnight
        self._dates: list[str] = []

    def format(self, t: int) -> str:
        day, s = divmod(t, DAY)
        while len(self._dates) <= day:
            self._dates.append((self.midnight + timedelta(days=len(self._dates))).strftime("%Y-%m-%dT"))
        return f"{self._dates[day]}{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"


class Population:
    """The account holders of one run, each made the first time they are needed."""

    def __init__(self, accounts: int, rng: random.Random) -> None:
        self.accounts = accounts
        self.staff = max(1, round(accounts * STAFF_SHARE))
        self.parents = accounts - self.staff
        self.pupils_per_school = min(99_999, max(60, math.ceil(self.parents * 1.35 / len(SCHOOLS))))
        self._rng = rng
        self._people: list[Person | None] = [None] * accounts
        self._near: dict[str, tuple[Network, ...]] = {}
        for school in SCHOOLS:
            near = sorted(
                (h for h in HOMES if distance_km(h, school.network) <= _HOME_RADIUS_KM),
                key=lambda h: (round(distance_km(h, school.network)), h.version),
            )
            self._near[school.school_id] = tuple(near)

    def person(self, index: int, *, school: School | None = None, role: str | None = None) -> Person:
        """The account holder with this index (staff first, then parents)."""
        found = self._people[index]
        if found is None:
            found = self._people[index] = self._make(index, school, role)
        return found

    def _make(self, index: int, school: School | None, role: str | None) -> Person:
        rng = self._rng
        school = school or SCHOOLS[int(rng.random() * len(SCHOOLS))]
        near = self._near[school.school_id]
        home = near[0] if rng.random() < 0.6 else near[int(rng.random() * len(near))]
        mobile = _MOBILES[_MOBILE_CARRIERS[int(rng.random() * 100)]]
        first_pupil = 1_000_000 + SCHOOLS.index(school) * 100_000
        if index < self.staff:
            role = role or _ROLE_NAMES[_STAFF_ROLES[int(rng.random() * 100)]]
            return Person(index, f"staff-{index + 1:06d}", "schools", role, school, home,
                          random_ip(home, rng), mobile, (), first_pupil)
        r = rng.random()
        children = 1 if r < 0.7 else 2 if r < 0.95 else 3
        pupils = tuple(str(first_pupil + int(rng.random() * self.pupils_per_school)) for _ in range(children))
        return Person(index, f"parent-{index - self.staff + 1:06d}", "parent", "parent", school, home,
                      random_ip(home, rng), mobile, pupils, first_pupil)



class Run:
    """One generated run: its random streams, account holders, clock and id counters."""

    def __init__(self, accounts: int, seed: int, start: datetime, days: int) -> None:
        if days < 1:
            raise ValueError("days must be at least 1")
        if accounts < 2:
            raise ValueError("accounts must be at least 2 (one member of staff and one parent)")
        start = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        self.seed = seed
        self.days = days
        self.first = int((start - midnight).total_seconds())  # window start, s after midnight
        self.clock = Clock(midnight)
        self.rng = random.Random(f"{seed}/traffic")
        self.people = Population(accounts, random.Random(f"{seed}/people"))
        self._salt = (seed & 0xFFFF) << 48
        self._sessions = 0
        # Ordinary traffic's bookkeeping (`school_day`): each member of staff's recent session
        # starts left to go idle, and page views owed for logouts added to keep the event count.
        self.left_open: dict[int, list[int]] = {}
        self.owed_views = 0

    # -- ids ---------------------------------------------------------------------------------

    def session_id(self) -> str:
        """A fresh, opaque session id."""
        self._sessions += 1
        return f"{_mix64(self._salt | self._sessions):016x}"

    def device(self, person: Person, kind: int) -> tuple[str, str]:
        """The device id and user agent of one of a person's devices; the same every time."""
        key = _mix64(self._salt | 1 << 47 | person.index << 3 | kind)
        browsers = _BROWSERS[kind]
        return f"{key:016x}", browsers[key % len(browsers)]

    # -- time --------------------------------------------------------------------------------

    def day_base(self, day: int, earliest: int) -> int:
        """Midnight of the window's `day`-th day, moved a day on if `earliest` would precede it."""
        base = day * DAY
        return base + DAY if base + earliest < self.first + day * DAY else base

    def weekday(self, day: int) -> int:
        return (self.clock.midnight + timedelta(days=day)).weekday()

    # -- what a session looks at --------------------------------------------------------------

    def pages(self, person: Person, n: int) -> list[tuple[str, str, str | None]]:
        """`n` page views (resource, action, pupil_id) of a session, in the order viewed."""
        rnd = self.rng.random
        out = []
        if person.portal == "parent":
            pupils = person.pupils
            for _ in range(n):
                kind = _PARENT_PAGES[int(rnd() * 100)]
                pupil = pupils[0] if len(pupils) == 1 else pupils[int(rnd() * len(pupils))]
                action = "download" if kind == _REPORTS and rnd() < 0.05 else "view"
                out.append((f"/pupils/{pupil}{_SUFFIX[kind]}", action, pupil))
            return out
        table = _TEACHER_PAGES if person.role == "teacher" else _OFFICE_PAGES
        count = self.people.pupils_per_school
        base = person.first_pupil
        form = int(rnd() * count)  # the class being looked at: 30 pupils from here
        returns = f"/school/{person.school.school_id}/returns"
        for _ in range(n):
            kind = table[int(rnd() * 100)]
            r = rnd()
            if kind == _RETURNS:
                out.append((returns, "export" if r < 0.15 else "view", None))
                continue
            pupil = str(base + (form + int(rnd() * 30)) % count)
            action = "view" if r >= 0.025 else "download" if r < 0.012 else "print"
            out.append((f"/pupils/{pupil}{_SUFFIX[kind]}", action, pupil))
        return out

    def fields(self, person: Person, session_id: str | None, ip: str, device: int) -> Event:
        """The fields every event of one session (or one login attempt) carries."""
        device_id, user_agent = self.device(person, device)
        fields = {"event_id": "", "type": "", "ts": "", "account_id": person.account_id}
        if session_id is not None:
            fields["session_id"] = session_id
        fields.update(ip=ip, portal=person.portal, role=person.role, user_agent=user_agent,
                      device_id=device_id, school_id=person.school.school_id)
        return fields
