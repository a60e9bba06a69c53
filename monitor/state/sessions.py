"""Portal sessions: opened by a login, kept alive by page views, closed by logout or expiry.

A session is "open at time t" while it has not been closed and t is within the idle timeout of
its last activity and within the absolute maximum of its login. Expiry is decided in event time
so replay and live agree; the table forgets a session once the watermark has passed its expiry.
"""

from __future__ import annotations

import heapq
import math
import struct
from array import array
from bisect import bisect_left
from typing import Iterator

import msgspec

from monitor.contract.events import PortalEvent
from monitor.places.geoip import Location
from monitor.state.interning import Interner, account_key
from monitor.places.networks import NetworkMap
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds

# A viewed item in a session's timeline: event time, action, length of the resource in UTF-8,
# then the resource. About 40 bytes an item instead of about 150 as objects.
_ITEM = struct.Struct("<dBH")
_ITEM_SIZE = _ITEM.size
ACTIONS: tuple[str, ...] = ("view", "download", "print", "export")  # PortalEvent's PageAction
_ACTION_CODE = {action: code for code, action in enumerate(ACTIONS)}


class ViewedItem(msgspec.Struct, array_like=True, gc=False):
    """One item (a pupil record, a report, a return) viewed during a session."""

    at: float
    resource: str
    action: str


class Session(msgspec.Struct, kw_only=True, gc=False):
    """What the monitor knows of one portal session.

    Not tracked by the garbage collector (`gc=False`: it never takes part in a reference
    cycle), which saves 16 bytes each and keeps a million live sessions out of every full
    collection.
    """

    session_id: str
    account_id: str
    opened_at: float
    last_activity: float
    ip: str | None
    network: str | None
    allowlisted: bool = False
    last_ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    portal: str | None = None
    login_seen: bool = True
    page_views: int = 0
    timeline: bytes = b""
    """The last `max_items` items viewed, packed (see `items`): kept in case the session is flagged.
    Immutable bytes, rebuilt on each view: exact size, where a bytearray over-allocates."""
    items_dropped: int = 0
    closed_at: float | None = None
    close_reason: str | None = None
    flagged: bool = False
    location: Location | None = None
    """Where GeoIP places `last_ip` (set at login and when a page view changes the IP)."""

    @property
    def items(self) -> list[ViewedItem]:
        """The items in the timeline, oldest first (unpacked on each call: for the sinks)."""
        data = self.timeline
        items = []
        offset, end, head = 0, len(data), _ITEM.size
        while offset < end:
            at, action, size = _ITEM.unpack_from(data, offset)
            offset += head
            items.append(ViewedItem(at, data[offset : offset + size].decode(), ACTIONS[action]))
            offset += size
        return items

    def expires_at(self, idle_timeout: float, max_duration: float) -> float:
        return min(self.last_activity + idle_timeout, self.opened_at + max_duration)

    def is_open_at(self, at: float, idle_timeout: float, max_duration: float) -> bool:
        return self.closed_at is None and at <= self.expires_at(idle_timeout, max_duration)


class OneSession(msgspec.Struct, array_like=True, gc=False):
    """An account's sessions while it has exactly one: a read-only mapping of session id to session.

    Nearly every account has a single live session, and a dict holding it costs about 190 bytes
    where this costs 24. `SessionTable` swaps in a dict when a second session opens and back
    when one is left, so readers of `AccountState.sessions` see a mapping either way: `get`,
    `in`, indexing, `len`, iteration, `keys`, `values` and `items`.
    """

    session: Session

    def get(self, session_id: str | None, default: Session | None = None) -> Session | None:
        session = self.session
        return session if session.session_id == session_id else default

    def __getitem__(self, session_id: str) -> Session:
        session = self.session
        if session.session_id != session_id:
            raise KeyError(session_id)
        return session

    def __contains__(self, session_id: object) -> bool:
        return self.session.session_id == session_id

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[str]:
        return iter((self.session.session_id,))

    def keys(self) -> tuple[str]:
        return (self.session.session_id,)

    def values(self) -> tuple[Session]:
        return (self.session,)

    def items(self) -> tuple[tuple[str, Session]]:
        return ((self.session.session_id, self.session),)


class AccountState(msgspec.Struct, kw_only=True, gc=False):
    """The per-account state the engine keeps for the detectors: the account's live sessions.

    `sessions` maps session id to session: a `OneSession` while there is one (nearly always),
    a dict while there are more, empty only between the last session closing and the table
    forgetting the account. Only `SessionTable` changes it.
    """

    account_id: str
    sessions: dict[str, Session] | OneSession = {}


class ExpirySchedule:
    """When live sessions may expire, filed by whole second: what `SessionTable.expire` walks.

    A heap of (expires_at, account_id, session_id) tuples cost about 100 bytes a session (the
    tuple, the float, the heap's slot). Here the three go into three flat arrays of their
    second's bucket, about 26 bytes an entry, and `take_due` hands them out in the heap's order
    (time, account id, session id). Entries are never updated: the caller checks a due entry
    against the session's current expiry and files it again if that moved on.
    """

    def __init__(self) -> None:
        self._seconds: list[int] = []  # a heap of the seconds that have a bucket
        self._buckets: dict[int, tuple[array, list[str], list[str]]] = {}  # times, account ids, session ids
        self._sorted: int | None = None  # the second whose bucket is in time order (the watermark's)

    def add(self, at: float, account_id: str, session_id: str) -> None:
        second = math.floor(at)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = (array("d"), [], [])
            heapq.heappush(self._seconds, second)
        if second == self._sorted:
            self._sorted = None
        bucket[0].append(at)
        bucket[1].append(account_id)
        bucket[2].append(session_id)

    def take_due(self, watermark: float) -> list[tuple[float, str, str]]:
        """Remove the entries before `watermark`: (at, account id, session id), in order."""
        seconds, buckets = self._seconds, self._buckets
        due: list[tuple[float, str, str]] = []
        while seconds and seconds[0] < watermark:
            second = seconds[0]
            if second + 1 <= watermark:  # the whole second is past
                due.extend(zip(*buckets.pop(second)))
                heapq.heappop(seconds)
                continue
            # The watermark is inside this second: its entries before the watermark are due. Put
            # the bucket in time order once, so each later call takes a prefix at C speed.
            if self._sorted != second:
                buckets[second] = _in_time_order(buckets[second])
                self._sorted = second
            times, account_ids, session_ids = buckets[second]
            cut = bisect_left(times, watermark)
            due.extend(zip(times[:cut], account_ids[:cut], session_ids[:cut]))
            if cut < len(times):
                del times[:cut], account_ids[:cut], session_ids[:cut]
                break
            del buckets[second]
            heapq.heappop(seconds)
        due.sort()
        return due

    def clear(self) -> None:
        self._seconds.clear()
        self._buckets.clear()
        self._sorted = None


def _in_time_order(bucket: tuple[array, list[str], list[str]]) -> tuple[array, list[str], list[str]]:
    times, account_ids, session_ids = bucket
    order = sorted(range(len(times)), key=times.__getitem__)
    return array("d", [times[i] for i in order]), [account_ids[i] for i in order], [session_ids[i] for i in order]


class SessionTable:
    """The live sessions of every account in one shard, with event-time expiry."""

    def __init__(self, networks: NetworkMap, idle_timeout: float, max_duration: float, max_items: int) -> None:
        self.accounts: dict[str, AccountState] = {}
        self.idle_timeout = idle_timeout
        self.max_duration = max_duration
        self.max_items = max_items
        self._networks = networks
        self._expiry = ExpirySchedule()
        self.open_sessions = 0
        # Sessions that ended without a logout since the engine last looked: expired by the idle
        # timeout or the maximum duration (here), or by the portal's own `session_expired`.
        self.closed: list[Session] = []
        self._texts = Interner[str](100_000)  # user agents, network names

    def shared(self, text: str | None) -> str | None:
        """One copy of a text that many sessions repeat (`monitor.state.interning`)."""
        return None if text is None else self._texts(text)

    def account(self, account_id: str) -> AccountState:
        state = self.accounts.get(account_id)
        if state is None:
            # The id's one shared copy (`account_key`): what the detectors key their entries by.
            account_id = account_key(account_id)
            state = self.accounts[account_id] = AccountState(account_id=account_id, sessions={})
        return state

    def load(self, accounts: list[AccountState]) -> None:
        """Replace the table with checkpointed accounts, rebuilding the expiry schedule."""
        for account in accounts:
            _share_ids(account)
        self.accounts = {account.account_id: account for account in accounts}
        for account in accounts:
            sessions = account.sessions
            if len(sessions) == 1 and type(sessions) is dict:  # snapshot version 1 wrote a lone session as a dict
                account.sessions = OneSession(*sessions.values())
        self._expiry = ExpirySchedule()
        self.open_sessions = 0
        for account in accounts:
            for session in account.sessions.values():
                ends = session.expires_at(self.idle_timeout, self.max_duration)
                self._expiry.add(ends, account.account_id, session.session_id)
                self.open_sessions += 1

    def replace(self, account_ids: list[str], accounts: list[AccountState]) -> None:
        """Put checkpointed `accounts` in place of what `account_ids` had (a checkpoint delta):
        an account named but not given has no live session any more."""
        table = self.accounts
        for account_id in account_ids:
            previous = table.pop(account_id, None)
            if previous is not None:
                self.open_sessions -= len(previous.sessions)
        # Entries the schedule still holds for replaced sessions are checked when due (`expire`).
        for account in accounts:
            _share_ids(account)
            sessions = account.sessions
            if len(sessions) == 1 and type(sessions) is dict:
                account.sessions = OneSession(*sessions.values())
            table[account.account_id] = account
            for session in account.sessions.values():
                ends = session.expires_at(self.idle_timeout, self.max_duration)
                self._expiry.add(ends, account.account_id, session.session_id)
                self.open_sessions += 1

    def open(self, event: PortalEvent, account: AccountState, login_seen: bool = True) -> Session:
        """Open (or re-open on a repeated login) the event's session."""
        info = self._networks.lookup(event.ip) if event.ip else None
        session = Session(
            session_id=event.session_id,  # type: ignore[arg-type]
            account_id=account.account_id,
            opened_at=event.at,
            last_activity=event.at,
            ip=event.ip,
            last_ip=event.ip,
            network=self.shared(info.network) if info else None,
            allowlisted=info.allowlisted if info else False,
            user_agent=self.shared(event.user_agent),
            device_id=event.device_id,
            portal=event.portal,
            login_seen=login_seen,
            timeline=b"",
        )
        sessions = account.sessions
        previous = sessions.get(session.session_id)
        if previous is not None:
            session.flagged = previous.flagged
        else:
            self.open_sessions += 1
        if not sessions or (previous is not None and len(sessions) == 1):
            account.sessions = OneSession(session)
        elif type(sessions) is OneSession:
            account.sessions = {sessions.session.session_id: sessions.session, session.session_id: session}
        else:
            sessions[session.session_id] = session  # type: ignore[index]
        self._expiry.add(session.expires_at(self.idle_timeout, self.max_duration), account.account_id, session.session_id)
        return session

    def view(self, event: PortalEvent, account: AccountState, session: Session | None) -> Session:
        """Record a page view in `session` (the account's session of that id, as the caller
        looked it up); a view of a session never seen opening, or expired, starts one implicitly."""
        at = event.at
        if session is not None and (
            at > session.last_activity + self.idle_timeout or at > session.opened_at + self.max_duration
        ):  # session.expires_at, inline: this runs for every page view
            # Expired in event time, whether or not the sweep got to it yet: the view starts anew.
            self._expire(account, session)
            session = None
        if session is None:
            session = self.open(event, account, login_seen=False)
        elif at > session.last_activity:
            session.last_activity = at
        ip = event.ip
        if ip is not None and ip != session.last_ip:  # keep the copy held already when unchanged
            session.last_ip = ip
        # Session.add_item, inline (one call fewer on every page view): append the item to the
        # packed timeline; beyond max_items the oldest goes, counted in items_dropped.
        page_views = session.page_views = session.page_views + 1
        data = event.resource.encode()  # type: ignore[union-attr]
        timeline = session.timeline
        if page_views - session.items_dropped > self.max_items:
            timeline = timeline[_ITEM_SIZE + _ITEM.unpack_from(timeline, 0)[2] :]
            session.items_dropped += 1
        session.timeline = b"".join((timeline, _ITEM.pack(at, _ACTION_CODE[event.action], len(data)), data))  # type: ignore[index]
        return session

    def close(self, event: PortalEvent, account: AccountState, reason: str) -> Session | None:
        """Close the event's session (logout or the portal's own expiry); the closed session."""
        session = self._take(account, event.session_id)  # type: ignore[arg-type]
        if session is None:
            return None
        self.open_sessions -= 1
        session.closed_at = event.at
        session.close_reason = reason
        if reason != "logout":
            self.closed.append(session)
        if not account.sessions:
            del self.accounts[account.account_id]
        return session

    @staticmethod
    def _take(account: AccountState, session_id: str) -> Session | None:
        """Remove the session from the account's live sessions; it, or None if it was not there."""
        sessions = account.sessions
        if type(sessions) is OneSession:
            if sessions.session.session_id != session_id:
                return None
            account.sessions = {}
            return sessions.session
        session = sessions.pop(session_id, None)  # type: ignore[union-attr]
        if len(sessions) == 1:
            account.sessions = OneSession(*sessions.values())
        return session

    def _expire(self, account: AccountState, session: Session) -> None:
        ends = session.expires_at(self.idle_timeout, self.max_duration)
        self._take(account, session.session_id)
        self.open_sessions -= 1
        session.closed_at = ends
        session.close_reason = "idle_timeout" if ends < session.opened_at + self.max_duration else "max_duration"
        self.closed.append(session)

    def expire(self, watermark: float) -> None:
        """Close every session whose idle timeout or maximum duration ended before the watermark."""
        expiry = self._expiry
        idle, longest = self.idle_timeout, self.max_duration
        for _, account_id, session_id in expiry.take_due(watermark):
            account = self.accounts.get(account_id)
            session = account.sessions.get(session_id) if account else None
            if session is None:
                continue
            ends = session.expires_at(idle, longest)
            if ends >= watermark:
                expiry.add(ends, account_id, session_id)
                continue
            self._expire(account, session)  # type: ignore[arg-type]
            if not account.sessions:  # type: ignore[union-attr]
                del self.accounts[account_id]


def _share_ids(account: AccountState) -> None:
    """A checkpointed account's id as its one shared copy, in its sessions too (`account_key`)."""
    account_id = account.account_id = account_key(account.account_id)
    for session in account.sessions.values():
        session.account_id = account_id


class SessionSettings(Section):
    idle_timeout: Seconds = Seconds(30 * 60)
    max_duration: Seconds = Seconds(12 * 3600)
    max_items: int = 100
