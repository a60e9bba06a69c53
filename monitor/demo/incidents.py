"""Situations injected into the synthetic traffic on purpose, and the manifest that lists them.

Each round of incidents has one of every kind, each on an account used for nothing else, so that
a test or the demo can hold the monitor's alerts against the manifest account by account: for
every account in the manifest, the alerts expected are exactly its records that name a detector.
Ordinary traffic (see `school_day`) never trips a detector on its own.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec

from monitor.demo.people import (
    CAFE_PC,
    COUNCIL_PC,
    DAY,
    HOME_PC,
    HOMES,
    OTHER_PC,
    PARENT_PORTAL_TIMEOUT,
    PHONE,
    TABLET,
    TOR_BROWSER,
    WORK_PC,
    Event,
    Person,
    Queue,
    Run,
    hm,
)
from monitor.demo.world import COUNCIL_NETWORK, NETWORK_BY_NAME, SCHOOLS, Network, School, distance_km, random_ip


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """One injected situation and what the monitor should make of it.

    `detector` is the detector that must raise an alert for `account_id` at about `ts` (the
    event time of the triggering event); `None` means no detector may raise any alert for that
    account. A situation that should trip two detectors (a login from Lagos is both impossible
    travel and a new country) is listed once for each.
    """

    kind: str
    account_id: str
    detector: str | None
    ts: str
    session_ids: tuple[str, ...] = ()
    note: str = ""


# An incident's event before it is queued: (t, type, fields, resource, action, pupil_id).
_Scripted = tuple[int, str, Event, str | None, str | None, str | None]


class _Script:
    """Writes the events of one incident for one account holder."""

    def __init__(self, run: Run, person: Person, events: list[_Scripted]) -> None:
        self.run, self.person, self.events = run, person, events

    def login(self, t: int, network: Network, device: int, ip: str | None = None) -> Event:
        """A successful login; returns the session's fields (its `session_id` among them)."""
        fields = self.run.fields(self.person, self.run.session_id(), ip or random_ip(network, self.run.rng), device)
        self.events.append((t, "login_succeeded", fields, None, None, None))
        return fields

    def browse(self, session: Event, t: int, views: int, gap: int = 90) -> int:
        """`views` page views after `t`, about `gap` s apart; returns the time of the last."""
        for resource, action, pupil in self.run.pages(self.person, views):
            t += gap // 2 + int(self.run.rng.random() * gap)
            self.events.append((t, "page_view", session, resource, action, pupil))
        return t

    def end(self, session: Event, t: int, kind: str = "logout") -> None:
        """The session ends: `logout`, or `session_expired` by the Parent Portal's timeout."""
        self.events.append((t, kind, session, None, None, None))

    def account(self, t: int, kind: str, reason: str, actor: str) -> None:
        """An account event such as `access_revoked`."""
        fields = {"event_id": "", "type": "", "ts": "", "account_id": self.person.account_id,
                  "portal": self.person.portal, "school_id": self.person.school.school_id,
                  "reason": reason, "actor": actor}
        self.events.append((t, kind, fields, None, None, None))

    def link(self, t: int, pupil: str) -> None:
        """The school links this (parent's) account to `pupil`: a `pupil_linked` event."""
        fields = {"event_id": "", "type": "", "ts": "", "account_id": self.person.account_id,
                  "portal": self.person.portal, "school_id": self.person.school.school_id,
                  "pupil_id": pupil, "actor": "school-office"}
        self.events.append((t, "pupil_linked", fields, None, None, None))

    def open_records(self, session: Event, t: int, pupils: list[str], action: str, suffix: str, gap: int) -> int:
        """One page view of each pupil's record, `gap` s or so apart; returns the time of the last."""
        for pupil in pupils:
            t += gap // 2 + int(self.run.rng.random() * gap)
            self.events.append((t, "page_view", session, f"/pupils/{pupil}{suffix}", action, pupil))
        return t

    def failed_login(self, t: int, ip: str, device: int, reason: str) -> None:
        """A login attempt the portal turned down, for `reason`."""
        fields = self.run.fields(self.person, None, ip, device)
        fields["reason"] = reason
        self.events.append((t, "login_failed", fields, None, None, None))


class _Builder:
    """Builds each round of incidents on a school day of the window, with their manifest."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.events: list[_Scripted] = []
        self.manifest: list[Incident] = []
        weekdays = [d for d in range(run.days) if run.weekday(d) < 5]
        self.school_days = weekdays or [0]
        self.preston = tuple(s for s in SCHOOLS if s.network.city == "Preston")

    def script(self, index: int, *, school: School | None = None, role: str | None = None) -> _Script:
        """A script for the account holder `index`, made to order if a school or role is given."""
        return _Script(self.run, self.run.people.person(index, school=school, role=role), self.events)

    def base(self, round_no: int, earliest: str) -> int:
        """Midnight of the round's school day, plus up to 40 minutes so rounds do not line up."""
        day = self.school_days[round_no % len(self.school_days)]
        return self.run.day_base(day, hm(earliest)) + self.jitter()

    def jitter(self) -> int:
        """Up to 40 minutes, to the second."""
        return int(self.run.rng.random() * 2400)

    def expect(self, kind: str, script: _Script, detector: str | None, t: int,
               sessions: tuple[Event, ...], note: str) -> None:
        """Add a record to the manifest: `detector` must alert (or, if None, nothing may)."""
        self.manifest.append(Incident(
            kind=kind, account_id=script.person.account_id, detector=detector, ts=self.run.clock.format(t),
            session_ids=tuple(s["session_id"] for s in sessions), note=note))

    def shared_login(self, r: int, index: int) -> None:
        """(a) Two people use one staff login at once, from a school and a home in another town."""
        s = self.script(index)
        school = s.person.school
        other = min((h for h in HOMES if h.version == 4 and h.city != school.network.city
                     and distance_km(h, school.network) >= 10), key=lambda h: distance_km(h, school.network))
        t1 = self.base(r, "09:05") + hm("09:05")
        first = s.login(t1, school.network, WORK_PC)
        s.browse(first, t1, 4, 100)
        t2 = t1 + 12 * 60
        second = s.login(t2, other, OTHER_PC)
        ta = tb = t2
        for _ in range(8):
            ta = s.browse(first, tb, 1)
            tb = s.browse(second, ta, 1)
        s.end(second, tb + 60)
        s.end(first, tb + 240)
        self.expect("shared_login", s, "simultaneous_logins", t2, (first, second),
                    f"logged in at {school.name} ({school.network.cidr}) when a second session starts on "
                    f"another device from {other.name} ({other.cidr}) in {other.city}, "
                    f"{distance_km(other, school.network):.0f} km away; both keep viewing pupil records")

    def logout_then_elsewhere(self, r: int, index: int) -> None:
        """(b) Logs out at school, then logs in from home: one session at a time."""
        s = self.script(index)
        p = s.person
        t1 = self.base(r, "14:50") + hm("14:50")
        at_school = s.login(t1, p.school.network, WORK_PC)
        t_out = s.browse(at_school, t1, 5) + 60
        s.end(at_school, t_out)
        t2 = t_out + 25 * 60
        at_home = s.login(t2, p.home, HOME_PC, p.home_ip)
        s.end(at_home, s.browse(at_home, t2, 4) + 30)
        self.expect("logout_then_login_elsewhere", s, None, t2, (at_school, at_home),
                    f"logs out at {p.school.name}, then 25 minutes later logs in from home broadband "
                    f"({p.home.name}); never two sessions at once")

    def same_network(self, r: int, index: int) -> None:
        """(b) A second session on a tablet from the same school NAT while the first is in use."""
        s = self.script(index)
        net = s.person.school.network
        rng = self.run.rng
        first_ip = random_ip(net, rng)
        second_ip = first_ip
        while second_ip == first_ip:
            second_ip = random_ip(net, rng)
        t1 = self.base(r, "10:05") + hm("10:05")
        pc = s.login(t1, net, WORK_PC, first_ip)
        s.browse(pc, t1, 3)
        t2 = t1 + 7 * 60
        tablet = s.login(t2, net, TABLET, second_ip)
        ta = tb = t2
        for _ in range(4):
            ta = s.browse(pc, tb, 1)
            tb = s.browse(tablet, ta, 1)
        s.end(tablet, tb + 30)
        s.end(pc, tb + 90)
        self.expect("second_session_same_network", s, None, t2, (pc, tablet),
                    f"a second session on a tablet from the same school NAT ({net.cidr}, same /24: "
                    f"{first_ip} and {second_ip}) while the first is in use: one person, two devices")

    def council_office(self, r: int, index: int, school: School) -> None:
        """(b) A head teacher leaves a school session idle and logs in at County Hall."""
        s = self.script(index, school=school, role="head")
        t1 = self.base(r, "11:00") + hm("11:00")
        at_school = s.login(t1, school.network, WORK_PC)
        idle_from = s.browse(at_school, t1, 4, 120)
        t2 = idle_from + 22 * 60
        council = s.login(t2, COUNCIL_NETWORK, COUNCIL_PC)
        s.end(council, s.browse(council, t2, 5) + 45)
        self.expect("allowlisted_council_network", s, None, t2, (at_school, council),
                    f"left the session at {school.name} idle and logged in at County Hall 22 minutes later; "
                    f"quiet only because {COUNCIL_NETWORK.name} ({COUNCIL_NETWORK.cidr}) is on the "
                    f"shared-network allowlist")

    def impossible_travel(self, r: int, index: int, school: School) -> None:
        """(c) Preston, then Lagos 90 minutes later."""
        s = self.script(index, school=school)
        base = self.base(r, "07:40")
        early = s.login(base + hm("07:40"), school.network, WORK_PC)
        s.end(early, s.browse(early, base + hm("07:40"), 3) + 30)
        t1 = base + hm("08:20")
        preston = s.login(t1, school.network, WORK_PC)
        s.end(preston, s.browse(preston, t1, 4) + 30)
        lagos = NETWORK_BY_NAME["eko-broadband-lagos"]
        t2 = t1 + 90 * 60
        abroad = s.login(t2, lagos, OTHER_PC)
        s.end(abroad, s.browse(abroad, t2, 6, 60) + 30)
        km = distance_km(school.network, lagos)
        self.expect("impossible_travel", s, "impossible_travel", t2, (preston, abroad),
                    f"logged in at {school.name}, Preston, then 90 minutes later from {lagos.name} in "
                    f"Lagos, {km:.0f} km away: {km / 1.5:.0f} km/h")
        self.expect("impossible_travel", s, "new_country", t2, (abroad,),
                    "the Lagos login is also the account's first from NG; it was only ever seen in GB")

    def risky_networks(self, r: int, index: int, school: School) -> None:
        """(d) A parent logs in from the Fishergate cybercafe, and later through Tor."""
        s = self.script(index, school=school)
        p = s.person
        base = self.base(r, "07:50")
        home = s.login(base + hm("07:50"), p.home, HOME_PC, p.home_ip)
        s.end(home, s.browse(home, base + hm("07:50"), 3, 40) + 20)
        cafe = NETWORK_BY_NAME["fishergate-netcafe"]
        t1 = base + hm("13:10")
        in_cafe = s.login(t1, cafe, CAFE_PC)
        s.end(in_cafe, s.browse(in_cafe, t1, 4, 40) + 20)
        tor = NETWORK_BY_NAME["tor-exit-london"]
        t2 = base + hm("21:30")
        via_tor = s.login(t2, tor, TOR_BROWSER)
        s.end(via_tor, s.browse(via_tor, t2, 3, 40) + PARENT_PORTAL_TIMEOUT, "session_expired")
        self.expect("cybercafe_login", s, "risky_network", t1, (in_cafe,),
                    f"Parent Portal login from a cybercafe ({cafe.name}, {cafe.cidr}), which the "
                    f"acceptable use policy names as an insecure place")
        self.expect("tor_exit_login", s, "risky_network", t2, (via_tor,),
                    f"Parent Portal login through a Tor exit relay ({tor.name}, {tor.cidr})")

    def holiday_abroad(self, r: int, index: int) -> None:
        """(e) A parent on holiday in Madrid, days after the last login at home."""
        s = self.script(index)
        p = s.person
        t1 = self.run.day_base(0, hm("19:30")) + hm("19:30") + self.jitter()
        home = s.login(t1, p.home, HOME_PC, p.home_ip)
        s.end(home, s.browse(home, t1, 4, 40) + 20)
        madrid = NETWORK_BY_NAME["meseta-fibra-madrid"]
        last = self.run.days - 1
        t2 = self.run.day_base(last, hm("10:00")) + hm("10:00") + self.jitter()
        away = s.login(t2, madrid, PHONE)
        s.end(away, s.browse(away, t2, 3, 40) + PARENT_PORTAL_TIMEOUT, "session_expired")
        self.expect("holiday_abroad", s, "new_country", t2, (away,),
                    f"logs in from Madrid ({madrid.name}) {(t2 - t1) / DAY:.1f} days after the last login "
                    f"at home: a new country, but no impossible travel")

    def revoked_access(self, r: int, index: int) -> None:
        """(f) Access revoked after a child protection concern, then a login all the same."""
        s = self.script(index)
        p = s.person
        base = self.base(r, "07:55")
        before = s.login(base + hm("07:55"), p.home, HOME_PC, p.home_ip)
        s.end(before, s.browse(before, base + hm("07:55"), 3, 40) + 20)
        s.account(base + hm("14:05"), "access_revoked", "child_protection", "school-office")
        t2 = base + hm("19:40")
        after = s.login(t2, p.home, HOME_PC, p.home_ip)
        s.end(after, s.browse(after, t2, 4, 40) + 20)
        self.expect("revoked_access_use", s, "revoked_access_use", t2, (after,),
                    "access was revoked at 14:05 over a child protection concern, yet the account logs in "
                    "and views pupil records in the evening")

    def sessions_left_open(self, r: int, index: int, times: int, detector: str | None) -> None:
        """(g) A teacher who does not log out: `times` Schools' Portal sessions on consecutive
        school days (several a day when the run is shorter), each left to go idle after a few
        page views, and one more session logged out properly."""
        s = self.script(index, role="teacher")
        net = s.person.school.network
        days = self.school_days
        first = min(r % len(days), max(0, len(days) - times))
        chosen = days[first:first + times]
        clock = ("08:10", "09:40", "11:10", "12:40", "14:10", "15:40")  # rising: a day's sessions never overlap
        left: list[Event] = []
        last_view = 0
        for k in range(times):
            day = chosen[k % len(chosen)]
            t = self.run.day_base(day, hm(clock[k])) + hm(clock[k]) + self.jitter() // 4
            session = s.login(t, net, WORK_PC)
            last_view = max(last_view, s.browse(session, t, 3, 60))
            left.append(session)  # no logout: the Schools' Portal session simply goes quiet
        t = last_view + 2 * 3600
        tidy = s.login(t, net, WORK_PC)
        s.end(tidy, s.browse(tidy, t, 2, 60) + 30)
        if detector is None:
            self.expect("sessions_left_open_below_the_habit", s, None, last_view, tuple(left),
                        f"left {times} Schools' Portal sessions at {s.person.school.name} to go idle in a "
                        f"week without logging out: one short of the habit the portal team hears about")
        else:
            self.expect("sessions_left_open", s, detector, last_view, tuple(left),
                        f"left {times} Schools' Portal sessions at {s.person.school.name} to go idle in a "
                        f"week without logging out, against 'Always log out of the Schools Portal'")

    def dormant_account(self, r: int, index: int) -> None:
        """(f) An account disabled as dormant, then a login attempt on it."""
        s = self.script(index)
        p = s.person
        base = self.base(r, "06:05")
        s.account(base + hm("06:05"), "account_disabled", "dormant", "system")
        t2 = base + hm("10:15")
        s.failed_login(t2, random_ip(p.home, self.run.rng), HOME_PC, "account_disabled")
        self.expect("dormant_account_login", s, "dormant_account_login", t2, (),
                    f"disabled after 180 days unused; a login is then attempted from {p.home.name}")


    def unlinked_pupil(self, r: int, index: int) -> None:
        """(g) A parent linked to their own children opens another pupil's record."""
        s = self.script(index)
        p = s.person
        base = self.base(r, "19:10")
        for pupil in p.pupils:
            s.link(base + hm("06:30"), pupil)
        t1 = base + hm("19:10")
        home = s.login(t1, p.home, HOME_PC, p.home_ip)
        t = s.browse(home, t1, 3, 40)
        other = str(int(max(p.pupils)) + 1)
        t = s.open_records(home, t, [other], "view", "/reports", 60)
        s.end(home, t + 30)
        self.expect("unlinked_pupil_view", s, "unlinked_pupil_access", t1, (home,),
                    f"linked by the school to {len(p.pupils)} pupil(s) of {p.school.name}, the account opens "
                    "the report of a pupil it is not linked to")

    def parent_enumeration(self, r: int, index: int) -> None:
        """(h) A parent of a few children opens 150 pupils' records in one session."""
        s = self.script(index)
        p = s.person
        t1 = self.base(r, "21:05") + hm("21:05")
        home = s.login(t1, p.home, HOME_PC, p.home_ip)
        t = s.browse(home, t1, 2, 40)
        others = [str(p.first_pupil + k) for k in range(150)]
        t = s.open_records(home, t, others, "view", "", 6)
        s.end(home, t + 30)
        self.expect("parent_enumeration", s, "bulk_record_access", t1, (home,),
                    "opens 150 pupils' records one after another in one evening session: the records of "
                    "children who are not theirs (no links known for the account: only the count judges it)")

    def bulk_export(self, r: int, index: int, school: School) -> None:
        """(i) A teacher exports 320 pupils' report cards in a quarter of an hour."""
        s = self.script(index, school=school, role="teacher")
        p = s.person
        t1 = self.base(r, "15:40") + hm("15:40")
        pc = s.login(t1, school.network, WORK_PC)
        t = s.browse(pc, t1, 4, 60)
        pupils = [str(p.first_pupil + k) for k in range(320)]
        t = s.open_records(pc, t, pupils, "export", "/reports", 5)
        s.end(pc, t + 60)
        self.expect("bulk_export", s, "bulk_record_access", t1, (pc,),
                    f"exports the report cards of 320 pupils of {school.name} in about a quarter of an hour, "
                    "where a teacher opens a class of 30")

    def brute_force(self, r: int, index: int) -> None:
        """(g) Someone guesses a staff password from New York at night: 24 failures in about six
        minutes from two addresses, then the right one from one of them."""
        s = self.script(index)
        net = NETWORK_BY_NAME["hudson-cable-new-york"]
        ips = [random_ip(net, self.run.rng) for _ in range(2)]
        t = self.base(r, "02:10") + hm("02:10")
        for n in range(24):
            t += 10 + int(self.run.rng.random() * 10)
            s.failed_login(t, ips[n % 2], OTHER_PC, "bad_password")
        t += 40
        guessed = s.login(t, net, OTHER_PC, ips[1])
        s.end(guessed, s.browse(guessed, t, 3, 40) + 20)
        self.expect("brute_force", s, "brute_force", t, (guessed,),
                    f"24 failed logins in about six minutes from two addresses of {net.name}, then a login "
                    f"from one of them: the password was guessed")

    def password_spray(self, r: int, index: int) -> None:
        """(h) One address in Paris tries a password on 14 usernames within 10 minutes, most of them
        made up; 25 minutes later it logs in to the one real account among them."""
        s = self.script(index)
        net = NETWORK_BY_NAME["lutece-telecom-paris"]
        ip = random_ip(net, self.run.rng)
        t = self.base(r, "03:20") + hm("03:20")
        guesses = [f"{name}{r}" for name in ("admin", "office", "head", "j.smith", "test", "reception", "bursar",
                                             "a.jones", "it.support", "s.brown", "governor", "finance", "m.taylor")]
        guesses.insert(3, s.person.account_id)
        crossed = None
        for n, username in enumerate(guesses):
            t += 25 + int(self.run.rng.random() * 20)
            fields = self.run.fields(s.person, None, ip, OTHER_PC)
            fields["account_id"] = username
            fields["reason"] = "bad_password"
            self.events.append((t, "login_failed", fields, None, None, None))
            if n == 9:
                crossed = t  # the tenth account: the spray alert's time
        t += 25 * 60
        worked = s.login(t, net, OTHER_PC, ip)
        s.end(worked, s.browse(worked, t, 3, 40) + 20)
        self.manifest.append(Incident(
            kind="password_spray", account_id="", detector="password_spray", ts=self.run.clock.format(crossed),
            note=f"{len(guesses)} usernames tried from {ip} ({net.name}) in about 10 minutes: an alert about the source"))
        self.expect("password_spray_worked", s, "password_spray", t, (worked,),
                    f"the spraying address {ip} logs in to {s.person.account_id}, one of the accounts it tried")


def accounts_per_round(days: int) -> tuple[int, int]:
    """Staff and parent accounts one round of incidents takes (a holiday needs three days)."""
    return 11, 5 if days >= 3 else 4


def build(run: Run, rounds: int, staff: list[int], parents: list[int]) -> tuple[Queue, list[Incident]]:
    """`rounds` of every incident on the given accounts: their queued events and the manifest."""
    builder = _Builder(run)
    rng = run.rng
    preston = builder.preston
    per_staff, per_parent = accounts_per_round(run.days)
    for r in range(rounds):
        st = staff[r * per_staff:(r + 1) * per_staff]
        pa = parents[r * per_parent:(r + 1) * per_parent]
        builder.shared_login(r, st[0])
        builder.logout_then_elsewhere(r, st[1])
        builder.same_network(r, st[2])
        builder.council_office(r, st[3], preston[int(rng.random() * len(preston))])
        builder.impossible_travel(r, st[4], preston[int(rng.random() * len(preston))])
        builder.dormant_account(r, st[5])
        builder.sessions_left_open(r, st[6], 5, "session_left_open")
        builder.sessions_left_open(r, st[7], 4, None)
        builder.bulk_export(r, st[8], preston[int(rng.random() * len(preston))])
        builder.brute_force(r, st[9])
        builder.password_spray(r, st[10])
        builder.risky_networks(r, pa[0], preston[int(rng.random() * len(preston))])
        builder.revoked_access(r, pa[1])
        builder.unlinked_pupil(r, pa[2])
        builder.parent_enumeration(r, pa[3])
        if run.days >= 3:
            builder.holiday_abroad(r, pa[4])
    queue: Queue = defaultdict(list)
    for t, kind, fields, resource, action, pupil in sorted(builder.events, key=lambda e: e[0]):
        queue[t].append((kind, fields, resource, action, pupil))  # sorted is stable: order kept
    builder.manifest.sort(key=lambda i: (i.ts, i.kind, i.account_id))
    return queue, builder.manifest
