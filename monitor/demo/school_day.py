"""Synthetic school days of Schools' Portal and Parent Portal traffic, as `portal.event/v1` events.

Staff (about a fifth of the accounts) log in to the Schools' Portal from their school's NAT in
the morning, with a burst just before registration at 08:45, and again during the day; some look
at pupil records from home broadband in the evening. Parents log in to the Parent Portal from
their phones (mobile CGNAT) at lunchtime and from home broadband in the evening. Page views of
pupil records are about 80% of the events; about 0.1% are failed logins (a mistyped password
just before a successful login). The Parent Portal times idle sessions out itself and says so
(`session_expired`); the Schools' Portal does not, so its idle sessions simply go quiet.

Ordinary traffic never trips a detector: an account never has two sessions at once, never
starts a session within `QUIET_GAP` of its previous session's last activity, never leaves
Great Britain or uses a cybercafe, Tor or a VPN, and a member of staff never leaves more than
`MOST_LEFT_OPEN` Schools' Portal sessions to go idle within `LEFT_OPEN_SPAN` (past that, the
session ends with a logout instead, paid for with one of its page views). Everything a detector should notice, or must
not mistake for misuse, is injected on purpose and listed as an `Incident`.

All times of day are UK local time, which is UTC until the clocks change on 29 March 2026.
"""

from __future__ import annotations

import heapq
import os
import random
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from monitor.demo import incidents as _incidents
from monitor.demo.incidents import Incident
from monitor.demo.people import (
    DAY,
    HOME_PC,
    PARENT_PORTAL_TIMEOUT,
    PHONE,
    STAFF_SHARE,
    WORK_PC,
    Event,
    Person,
    Queue,
    Run,
    hm,
)
from monitor.demo.world import random_ip

__all__ = [
    "DEFAULT_START",
    "EVENTS_PER_INCIDENT_ROUND",
    "MIN_BACKGROUND_EVENTS",
    "PARENT_PORTAL_TIMEOUT",
    "QUIET_GAP",
    "STAFF_SHARE",
    "Event",
    "Incident",
    "generate",
    "generate_with_incidents",
    "write_jsonl",
]

#: The default first moment of traffic: Monday 2 March 2026, 06:00 UTC.
DEFAULT_START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
#: Ordinary traffic leaves at least this long (s) between an account's sessions.
QUIET_GAP = 3600
#: One round of incidents (one of each kind) per this many events, and at least one round.
EVENTS_PER_INCIDENT_ROUND = 50_000
#: Most Schools' Portal sessions a member of staff leaves without logging out (to go idle) within
#: `LEFT_OPEN_SPAN` of their starts, in ordinary traffic: one short of `session_left_open`'s 5 in
#: 7 days, counted over 8 days of starts so that the sessions' ends (up to 3.5 h later) stay
#: within it too.
MOST_LEFT_OPEN = 4
LEFT_OPEN_SPAN = 8 * DAY
#: Fewest events of ordinary traffic a run may ask for.
MIN_BACKGROUND_EVENTS = 50

# A planned session of ordinary traffic:
# (start, plan index, slot, page views, logout, mistyped password first, account holder or -1).
_Planned = tuple[int, int, int, int, bool, bool, int]


class _Slot(NamedTuple):
    """A part of the day in which one kind of account holder uses the portal from one place."""

    staff: bool
    place: str  # "school", "home", "mobile" or "out" (home or mobile, even odds)
    start: tuple[tuple[float, int, int, int | None], ...]  # (share, from, to, peak) mixture
    views: float  # mean page views per session
    gap: float  # mean seconds between page views
    logout: float  # chance the session ends with a logout rather than going idle
    per_person: float  # most sessions per account holder in this slot in a day, on average


def _window(share: float, start: str, end: str, peak: str | None = None) -> tuple[float, int, int, int | None]:
    return (share, hm(start), hm(end), hm(peak) if peak else None)


_STAFF_EVENING = _Slot(True, "home", (_window(1, "18:00", "22:30", "20:00"),), 7, 70, 0.7, 0.8)
_PARENT_EVENING = _Slot(False, "home", (_window(1, "17:00", "22:45", "20:15"),), 8, 45, 0.4, 1.2)

#: (share of sessions, slot) on a school day.
_SCHOOL_DAY: tuple[tuple[float, _Slot], ...] = (
    (0.15, _Slot(True, "school", (_window(0.35, "08:35", "08:55", "08:45"), _window(0.65, "07:30", "09:00")), 10, 75, 0.55, 0.8)),
    (0.14, _Slot(True, "school", (_window(0.25, "12:05", "13:25", "12:40"), _window(0.75, "09:00", "17:00")), 9, 80, 0.6, 1.5)),
    (0.05, _STAFF_EVENING),
    (0.06, _Slot(False, "home", (_window(1, "07:00", "08:40"),), 4, 40, 0.35, 0.8)),
    (0.09, _Slot(False, "out", (_window(1, "10:30", "11:50"),), 5, 40, 0.35, 0.8)),
    (0.17, _Slot(False, "mobile", (_window(1, "12:00", "13:45", "12:30"),), 5, 35, 0.3, 0.8)),
    (0.34, _PARENT_EVENING),
)
#: (share of sessions, slot) at the weekend.
_WEEKEND: tuple[tuple[float, _Slot], ...] = (
    (0.08, _Slot(True, "home", (_window(1, "09:30", "21:00"),), 7, 70, 0.7, 1.5)),
    (0.07, _STAFF_EVENING),
    (0.35, _Slot(False, "out", (_window(1, "09:00", "17:00"),), 6, 45, 0.4, 1.5)),
    (0.50, _PARENT_EVENING),
)
_SLOTS: tuple[_Slot, ...] = tuple(dict.fromkeys(s for _, s in _SCHOOL_DAY + _WEEKEND))
#: How busy each weekday is (Monday first), relative to each other.
_DAY_WEIGHT = (1.0, 1.0, 1.0, 1.0, 0.95, 0.3, 0.4)

# -- ordinary traffic -------------------------------------------------------------------------

#: Chance that a session starts with a mistyped password (about 0.1% of all events).
_MISTYPED = 0.0085


def _start_time(slot: _Slot, rng: random.Random) -> int:
    """A login time (s after midnight) drawn from the slot's mixture of windows."""
    r = rng.random()
    for share, lo, hi, peak in slot.start[:-1]:
        if r < share:
            break
        r -= share
    else:
        share, lo, hi, peak = slot.start[-1]
    if peak is None:
        return lo + int(rng.random() * (hi - lo))
    return int(rng.triangular(lo, hi, peak))


def _fixed_events(slot: _Slot, logout: bool, mistyped: bool) -> int:
    """Events of a session besides its page views: the login (perhaps after a mistyped
    password), then a logout or, on the Parent Portal, the portal's own expiry."""
    return 1 + (1 if logout or not slot.staff else 0) + (1 if mistyped else 0)


def _other_events(slot: _Slot) -> float:
    """Mean events of a session in the slot that are not page views."""
    return 1 + (slot.logout if slot.staff else 1) + _MISTYPED


def _plan(run: Run, budget: int, staff: int, parents: int) -> list[_Planned]:
    """The window's ordinary sessions, in start order, making exactly `budget` events together."""
    rng = run.rng
    days = [(_SCHOOL_DAY if run.weekday(d) < 5 else _WEEKEND, _DAY_WEIGHT[run.weekday(d)])
            for d in range(run.days)]
    total_weight = sum(w for _, w in days)
    mean_views = sum(w * share * slot.views for table, w in days for share, slot in table) / total_weight
    mean_other = sum(w * share * _other_events(slot) for table, w in days for share, slot in table) / total_weight
    sessions = max(1, round(budget / (mean_views + mean_other)))
    # Each slot's sessions must fit the people who can have them, or they would queue for hours.
    people = {True: staff, False: parents}
    most = min(slot.per_person * people[slot.staff] * total_weight / (w * share)
               for table, w in days for share, slot in table)
    stretch = 1.0
    if sessions > most:  # too few people for this much traffic: fewer, longer sessions instead
        sessions = max(1, int(most))
        stretch = (budget / sessions - mean_other) / mean_views
    tables = [list(_cumulative(share for share, _ in table)) for table, _ in days]
    slot_index = {slot: i for i, slot in enumerate(_SLOTS)}
    day_cum = list(_cumulative(w for _, w in days))
    starts, slots, views, logouts, mistyped = [], [], [], [], []
    for _ in range(sessions):
        day = _pick(day_cum, rng.random())
        table = days[day][0]
        slot = table[_pick(tables[day], rng.random())][1]
        tod = _start_time(slot, rng)
        starts.append(day * DAY + tod + (DAY if tod < run.first else 0))
        slots.append(slot_index[slot])
        views.append(min(120, int(rng.expovariate(1 / (slot.views * stretch + 0.5)))))
        logouts.append(rng.random() < slot.logout)
        mistyped.append(rng.random() < _MISTYPED)
    fixed = [_fixed_events(_SLOTS[s], lo, mt) for s, lo, mt in zip(slots, logouts, mistyped)]
    total_fixed = sum(fixed)
    while sessions and total_fixed > budget:  # only for tiny budgets
        sessions -= 1
        total_fixed -= fixed[-1]
        for column in (starts, slots, views, logouts, mistyped, fixed):
            column.pop()
    diff = budget - total_fixed - sum(views)  # now make the page views fill the budget exactly
    while diff > 0:
        views[int(rng.random() * sessions)] += 1
        diff -= 1
    while diff < 0:
        j = int(rng.random() * sessions)
        if views[j]:
            views[j] -= 1
            diff += 1
    plan = list(zip(starts, range(sessions), slots, views, logouts, mistyped, [-1] * sessions))
    plan.sort()
    return plan


def _cumulative(weights: Iterable[float]) -> Iterator[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def _pick(cumulative: list[float], r: float) -> int:
    """Index drawn from cumulative weights with a uniform `r` in [0, 1)."""
    target = r * cumulative[-1]
    for i, c in enumerate(cumulative):
        if target < c:
            return i
    return len(cumulative) - 1


def _open_session(run: Run, queue: Queue, session: _Planned, person: Person) -> int:
    """Queue the events of one planned session; returns when the person may start another."""
    start, _, slot_no, views, logout, mistyped, _ = session
    slot = _SLOTS[slot_no]
    rng = run.rng
    if run.owed_views and views:  # a logout added earlier is paid for with a page view here
        paid = min(run.owed_views, views)
        views -= paid
        run.owed_views -= paid
    if slot.staff and not logout:
        left = run.left_open.setdefault(person.index, [])
        while left and left[0] <= start - LEFT_OPEN_SPAN:
            left.pop(0)
        if len(left) >= MOST_LEFT_OPEN:  # the habit is for incidents only: this one logs out
            logout = True
            if views:
                views -= 1
            else:
                run.owed_views += 1
        else:
            left.append(start)
    place = slot.place
    if place == "out":
        place = "home" if rng.random() < 0.5 else "mobile"
    if place == "school":
        ip, device = random_ip(person.school.network, rng), WORK_PC
    elif place == "home":
        ip, device = person.home_ip, HOME_PC
    else:
        ip, device = random_ip(person.mobile, rng), PHONE
    t = start
    if mistyped:
        attempt = run.fields(person, None, ip, device)
        attempt["reason"] = "bad_password"
        queue[t].append(("login_failed", attempt, None, None, None))
        t += 5 + int(rng.random() * 35)
    fields = run.fields(person, run.session_id(), ip, device)
    queue[t].append(("login_succeeded", fields, None, None, None))
    length = min(3 * 3600.0, views * slot.gap * (0.5 + rng.random())) if views else 10 + rng.random() * 110
    gaps = [0.05 + rng.random() for _ in range(views + 1)]
    scale = length / sum(gaps)
    last, elapsed = t, 0.0
    for g, (resource, action, pupil) in zip(gaps, run.pages(person, views)):
        elapsed += g
        last = t + int(elapsed * scale)
        queue[last].append(("page_view", fields, resource, action, pupil))
    if logout:
        last = t + int(length) + 1
        queue[last].append(("logout", fields, None, None, None))
    elif not slot.staff:
        queue[last + PARENT_PORTAL_TIMEOUT].append(("session_expired", fields, None, None, None))
    return last + QUIET_GAP


def _emit(run: Run, plan: list[_Planned], queue: Queue, pools: tuple[list[int], list[int]]) -> Iterator[Event]:
    """Stream every event in time order: the queued ones, and those of the planned sessions, each
    opened on an account holder who is free at the time (`pools` holds parents, then staff)."""
    pop, push = heapq.heappop, heapq.heappush
    rnd = run.rng.random
    person = run.people.person
    busy: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])  # (free at, index) heaps
    deferred: list[_Planned] = []
    id_prefix = f"e{run.seed}-"
    n = 0
    now = 0  # every event before this second has been emitted
    i, planned = 0, len(plan)
    while True:
        if deferred and (i >= planned or deferred[0] < plan[i]):
            session: _Planned | None = pop(deferred)
        elif i < planned:
            session = plan[i]
            i += 1
        else:
            session = None
        until = session[0] if session is not None else max(queue, default=now - 1) + 1
        for t in range(now, until):
            entries = queue.pop(t, None)
            if entries is None:
                continue
            ts = run.clock.format(t)
            for kind, fields, resource, action, pupil in entries:
                n += 1
                event = fields.copy()
                event["event_id"] = id_prefix + str(n)
                event["type"] = kind
                event["ts"] = ts
                if resource is not None:
                    event["resource"] = resource
                    event["action"] = action  # type: ignore[assignment]
                    if pupil is not None:
                        event["pupil_id"] = pupil
                yield event
        now = max(now, until)
        if session is None:
            return
        staff = _SLOTS[session[2]].staff
        free, waiting = pools[staff], busy[staff]
        while waiting and waiting[0][0] <= now:
            free.append(pop(waiting)[1])
        who = session[6]
        if who < 0:
            if not free:  # everyone is busy: the first to be free has this session then
                free_at, who = pop(waiting)
                push(deferred, (free_at,) + session[1:6] + (who,))
                continue
            j = int(rnd() * len(free))
            who = free[j]
            free[j] = free[-1]
            free.pop()
        push(waiting, (_open_session(run, queue, session, person(who)), who))


# -- the public API ---------------------------------------------------------------------------


def generate_with_incidents(
    accounts: int,
    events: int,
    *,
    seed: int = 7,
    start: datetime = DEFAULT_START,
    days: int = 1,
    incidents: bool = True,
) -> tuple[Iterator[Event], list[Incident]]:
    """`events` portal events from `accounts` account holders over `days` days from `start`,
    and the manifest of incidents injected among them.

    The events come in non-decreasing `ts` order and are the same for the same arguments; a
    naive `start` is taken as UTC. Sessions start inside the window of `days` days from `start`
    (a late-evening session may run a little past its end). With `incidents`, one round of every
    incident is injected per `EVENTS_PER_INCIDENT_ROUND` events (at least one round; as many as
    the accounts allow), each on accounts used for nothing else. With fewer accounts than about
    events / 10 per day, sessions grow longer rather than more numerous, so page views exceed
    80%. Raises `ValueError` for a run too small to hold the incidents and some ordinary traffic.
    """
    run = Run(accounts, seed, start, days)
    people = run.people
    staff_pool = list(range(people.staff))
    parent_pool = list(range(people.staff, accounts))
    queue: Queue = defaultdict(list)
    manifest: list[Incident] = []
    if incidents:
        per_staff, per_parent = _incidents.accounts_per_round(days)
        # Keep at least one account of each kind for ordinary traffic.
        rounds = min(max(1, events // EVENTS_PER_INCIDENT_ROUND),
                     (people.staff - 1) // per_staff, (people.parents - 1) // per_parent)
        if rounds < 1:
            raise ValueError(f"incidents need at least {per_staff + 1} staff and {per_parent + 1} parent "
                             f"accounts; {accounts} accounts give {people.staff} and {people.parents}")
        staff = run.rng.sample(staff_pool, rounds * per_staff)
        parents = run.rng.sample(parent_pool, rounds * per_parent)
        queue, manifest = _incidents.build(run, rounds, staff, parents)
        taken = set(staff) | set(parents)
        staff_pool = [i for i in staff_pool if i not in taken]
        parent_pool = [i for i in parent_pool if i not in taken]
    scripted = sum(map(len, queue.values()))
    budget = events - scripted
    if budget < MIN_BACKGROUND_EVENTS:
        raise ValueError(f"events must leave at least {MIN_BACKGROUND_EVENTS} for ordinary traffic "
                         f"after the {scripted} incident events; got {events}")
    plan = _plan(run, budget, len(staff_pool), len(parent_pool))
    return _emit(run, plan, queue, (parent_pool, staff_pool)), manifest


def generate(
    accounts: int,
    events: int,
    *,
    seed: int = 7,
    start: datetime = DEFAULT_START,
    days: int = 1,
    incidents: bool = True,
) -> Iterator[Event]:
    """`events` portal events in time order; see `generate_with_incidents` for the details."""
    stream, _ = generate_with_incidents(accounts, events, seed=seed, start=start, days=days, incidents=incidents)
    return stream


def write_jsonl(path: str | os.PathLike[str], events: Iterable[Event]) -> int:
    """Write events as JSON Lines to `path` (`-` for standard output); returns how many."""
    encoder = msgspec.json.Encoder()
    written = 0
    batch: list[Event] = []
    target = nullcontext(sys.stdout.buffer) if str(path) == "-" else open(path, "wb")
    with target as out:
        for event in events:
            batch.append(event)
            if len(batch) == 4096:
                out.write(encoder.encode_lines(batch))
                written += len(batch)
                batch.clear()
        if batch:
            out.write(encoder.encode_lines(batch))
            written += len(batch)
        out.flush()
    return written
