"""`bulk_record_access`: an account opens far more pupils' records in a window than it and its role usually do."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import deque
from itertools import islice
from zlib import crc32
from typing import Literal

import msgspec

from detectors.base import PUPIL_VIEW, Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.alerts import Alert, new_alert, utc
from monitor.contract.durations import Seconds
from monitor.contract.events import PortalEvent
from monitor.state.interning import Interner, account_key, by_account
from monitor.state.sessions import AccountState

Severity = Literal["low", "medium", "high", "critical"]

# Buckets of the per-role histogram of windows' distinct pupils: a window of n pupils counts in
# the first bucket whose bound is >= n; a role's usual is the bound of its quantile's bucket.
BOUNDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300,
    400, 500, 600, 800, 1000, 1500, 2000, 3000, 5000, 10000, 1 << 40,
)
# The bucket of every window size up to 1000 (nearly all windows): a list index, not a bisection.
_BUCKETS: tuple[int, ...] = tuple(bisect_left(BOUNDS, n) for n in range(1001))
OTHER_ROLE = "other"
_NEVER = float("inf")
_SPACE = float(1 << 32)
_WINDOWS_CAP = 255
_FREE_WINDOWS = 4096  # closed Window objects kept for reuse (about 150 B each): a busy hour's worth
_SMALL = 8  # a window's first pupils are a tuple (64 bytes for 3, a set takes 216), then a set


class BulkRecordAccessSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    severity: Severity = "medium"
    severity_taken: Severity = "high"
    """When at least half the window's accesses were downloads, prints or exports."""
    window: Seconds = Seconds(3600)
    """A window opens at an account's first pupil record after the last window ended, and lasts this long."""
    factor: float = 3.0
    """Alert when the window's distinct pupils exceed this many times the account's usual AND its role's usual."""
    parent_min_pupils: int = 20
    """Never alert a Parent Portal account below this many distinct pupils in a window."""
    staff_min_pupils: int = 60
    """Never alert a Schools' Portal (or unknown portal) account below this many distinct pupils in a window."""
    staff_unknown_pupils: int = 300
    """A staff account whose own and role's usual are both unknown yet (a monitor just started) is
    alerted only above this many: a head of year opens 200 pupils on a normal morning."""
    min_windows: int = 5
    """Windows an account must have been seen in before its own usual counts; until then, its role's only."""
    role_min_windows: int = 20
    """Windows a role must have been seen in (over all its accounts) before the role's usual counts."""
    role_quantile: float = 0.95
    """A role's usual: this quantile of its accounts' windows' distinct pupils."""
    role_memory: int = 10_000
    """A role's histogram is halved when it holds more windows than this: recent windows weigh more."""
    decay: float = 0.97
    """An account's usual is the largest window it had, shrunk by this factor for each later window."""
    exact_pupils: int = 64
    """Distinct pupils counted exactly up to this many per window; beyond, estimated (KMV sketch, about 12% error at 64)."""
    evidence_pupils: int = 20
    """Pupil ids kept per window for the alert's evidence."""
    max_roles: int = 64
    """Roles given a baseline of their own; later roles share the role `other`."""
    max_accounts: int = 2_000_000
    """Accounts whose usual is kept (per shard); beyond, those first seen longest ago are
    forgotten, an eighth at a time (they start again from their role's usual)."""

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError("window must be positive")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 < self.role_quantile <= 1:
            raise ValueError("role_quantile must be in (0, 1]")
        if not 0 < self.decay <= 1:
            raise ValueError("decay must be in (0, 1]")
        if self.exact_pupils < 8:
            raise ValueError("exact_pupils must be at least 8")
        if self.max_accounts < 1:
            raise ValueError("max_accounts must be at least 1")


class WindowState(msgspec.Struct, array_like=True):
    """An open window as checkpointed: the exact set as pupil ids, or the sketch's hashes."""

    start: float
    role: int
    parent: bool
    threshold: float
    usual: float
    role_usual: float
    seen: list[str] | None
    hashes: bytes
    taken: int
    took: str | None
    alerted: str | None
    pupils: list[str]


def _hash(pupil: str) -> int:
    """A pupil id's 32-bit hash for the sketch: CRC-32 times the golden ratio, mod 2**32
    (stable across processes; measured unbiased for sequential ids, 1.00 +- 0.11 at 250)."""
    return (crc32(pupil.encode()) * 0x9E3779B1) & 0xFFFFFFFF


class Window:
    """One account's current window: the distinct pupils it opened since `start`.

    `seen` is the exact set of pupil ids while it holds at most `exact_pupils` (a tuple while
    it holds at most `_SMALL`: most windows stay that small); past that it
    becomes `hashes`, the `exact_pupils` smallest 32-bit hashes of the pupils (a KMV sketch),
    and `pupils` keeps the first `evidence_pupils` ids for the alert.
    """

    __slots__ = (
        "start", "role", "parent", "threshold", "usual", "role_usual", "seen", "hashes",
        "taken", "took", "alerted", "pupils", "account_id", "end",
    )

    def __init__(self, start: float, role: int, parent: bool, threshold: float, usual: float, role_usual: float) -> None:
        self.account_id = ""  # whose window (set by `BulkRecordAccess._open`)
        self.end = start  # when it closes (start + window)
        self.start = start
        self.role = role
        self.parent = parent
        self.threshold = threshold  # alert above this many distinct pupils
        self.usual = usual  # the account's usual when the window opened (0: not known yet)
        self.role_usual = role_usual  # its role's usual then (0: not known yet)
        self.seen: tuple[str, ...] | set[str] | None = ()
        self.hashes: array | None = None
        self.taken = 0  # downloads, prints and exports
        self.took: str | None = None
        self.alerted: str | None = None  # the severity already alerted in this window
        self.pupils: list[str] | None = None  # once saturated: the first `evidence_pupils` pupils

    @property
    def saturated(self) -> bool:
        return self.seen is None

    def count(self, k: int) -> int:
        """Distinct pupils: exact, or the KMV estimate (k - 1) / (k-th smallest hash / 2**32)."""
        seen = self.seen
        if seen is not None:
            return len(seen)
        hashes = self.hashes
        return max(k + 1, round((k - 1) / ((hashes[-1] + 1) / _SPACE)))  # type: ignore[index]

    def saturate(self, k: int, evidence: int) -> None:
        """More than k distinct pupils: from the set to the sketch of its k smallest hashes."""
        seen = self.seen
        self.pupils = sorted(seen)[:evidence]  # type: ignore[arg-type]
        self.hashes = array("I", sorted(map(_hash, seen))[:k])  # type: ignore[arg-type]
        self.seen = None

    def add_to_sketch(self, pupil: str, k: int) -> None:
        hashes = self.hashes
        value = _hash(pupil)
        if value < hashes[-1]:  # type: ignore[index]
            index = bisect_left(hashes, value)  # type: ignore[arg-type]
            if hashes[index] != value:  # type: ignore[index]
                hashes.insert(index, value)  # type: ignore[union-attr]
                hashes.pop()  # type: ignore[union-attr]

    def evidence(self, limit: int) -> list[str]:
        seen = self.seen
        return sorted(seen)[:limit] if seen is not None else list(self.pupils or ())

    def state(self) -> WindowState:
        return WindowState(
            self.start, self.role, self.parent, self.threshold, self.usual, self.role_usual,
            sorted(self.seen) if self.seen is not None else None,
            self.hashes.tobytes() if self.hashes is not None else b"",
            self.taken, self.took, self.alerted, list(self.pupils or ()),
        )

    @classmethod
    def from_state(cls, state: WindowState, pupil_ids: Interner[str]) -> "Window":
        window = cls(state.start, state.role, state.parent, state.threshold, state.usual, state.role_usual)
        if state.seen is None:
            window.seen = None
            window.hashes = array("I")
            window.hashes.frombytes(state.hashes)
        else:
            seen = tuple(map(pupil_ids, state.seen))
            window.seen = seen if len(seen) <= _SMALL else set(seen)
        window.taken = state.taken
        window.took = state.took
        window.alerted = state.alerted
        window.pupils = state.pupils if state.seen is None else None
        return window


class BulkRecordAccess(Detector):
    """Far more distinct pupils' records in a window than the account and its role usually open.

    Enforces the Schools' Portal Site Terms: "It also records each item that is viewed by the
    end user during a logged session." and "Data must only be shared with authorised persons.";
    for copies, "Confidentiality of data can be compromised by end users who save data from the
    system onto portable media" and "by printing out 'hard copy'"; and the Parent Portal
    Acceptable Use Policy, whose first named risk is "The wrongful disclosure of private,
    sensitive, and confidential information".

    Per account, a window opens at its first pupil record (a `page_view` naming a pupil) and
    lasts `window` (1 h). The window's distinct pupils are counted exactly up to `exact_pupils`,
    then estimated by a KMV sketch of the same size (bounded memory). It alerts, once per window
    and severity, when the count reaches the portal's floor (parents 20, staff 60) and is more
    than `factor` (3) times the account's own usual (once it was seen in `min_windows` windows)
    AND `factor` times its role's usual (once the role was seen in `role_min_windows` windows).
    A staff account with neither usual known yet is alerted above `staff_unknown_pupils` (300) only.
    Both usuals are learnt in event time from closed windows: the account's usual is its largest window,
    decaying by `decay` per later window; the role's is a quantile of its accounts' windows. A
    head of year who opens 200 pupils every morning learns a usual of 200; a teacher taking the
    register or exporting their own class's 30 report cards stays under the staff floor; a parent
    of two opening 150 pupils, or a teacher who usually sees 30 exporting 250 report cards, do
    not. Alerted windows are not learnt from. Severity `severity_taken` (high) when the window's
    downloads, prints and exports are at least half its distinct pupils, else `severity` (medium).

    Hot path: a page view naming a pupil costs a dict lookup, and for a pupil other than the
    last one a CRC-32 and a bisection; evidence (the account's live sessions) is gathered only
    when alerting. State: per account a packed baseline (usual, windows seen, role) in one int;
    per account with an open window a `Window` (at most `exact_pupils` 4-byte hashes and
    `evidence_pupils` ids); per role a histogram of 34 buckets.
    """

    id = "bulk_record_access"
    event_types = (PUPIL_VIEW,)

    def __init__(self, settings: BulkRecordAccessSettings, context: DetectorContext) -> None:
        self.settings = settings
        # One copy of each pupil id (the process's, lent by the engine): `share(id, id)` at C speed.
        self.pupil_ids = context.pupil_ids
        self._share = context.pupil_ids.share
        # account -> usual (tenths of a pupil) << 16 | windows seen << 8 | role code
        self.baselines: dict[str, int] = {}
        self.live: dict[str, Window] = {}
        self.ends: deque[Window] = deque()  # the open windows, in the order they opened (and end)
        self.roles: list[str] = []
        self.role_codes: dict[str, int] = {}
        self.histograms: list[list[float]] = []
        self._role_usuals: list[float | None] = []  # a role's usual, until its histogram changes
        self._role_totals: list[float] = []  # windows in each role's histogram
        self._next_end = _NEVER  # the end of the oldest open window
        self._window = settings.window
        self._evidence_pupils = settings.evidence_pupils
        self._exact = settings.exact_pupils
        self._parent_floor = float(settings.parent_min_pupils) - 1
        self._staff_floor = float(settings.staff_min_pupils) - 1
        self._staff_unknown = float(settings.staff_unknown_pupils)
        self._factor = settings.factor
        self._min_windows = settings.min_windows
        self._decay = settings.decay
        self._role_memory = settings.role_memory
        self._role_min_windows = settings.role_min_windows
        self._max_accounts = settings.max_accounts
        self._free: list[Window] = []  # closed windows' objects, reused by `_open`

    # -- events ----------------------------------------------------------------------------------

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        pupil = event.pupil_id  # a PUPIL_VIEW: never None
        at = event.at
        if at >= self._next_end:
            self._expire(at)  # in event time: the same windows close whatever the batches
        window = self.live.get(event.account_id)
        if window is None:
            window = self._open(event, account, at)
        action = event.action
        if action != "view":
            window.taken += 1
            window.took = action
        seen = window.seen
        if seen is not None:  # exact: a set of pupil ids
            if pupil in seen:
                return None  # seen in this window already
            pupil = self._share(pupil, pupil)  # one copy of the id for all who view the pupil (`pupil_ids`)
            if type(seen) is tuple:
                seen = window.seen = seen + (pupil,) if len(seen) < _SMALL else {*seen, pupil}
            else:
                seen.add(pupil)
            size = len(seen)
            if size <= window.threshold:
                return None
            if size > self._exact:
                window.saturate(self._exact, self._evidence_pupils)
        else:
            window.add_to_sketch(pupil, self._exact)
        count = window.count(self._exact)
        if count <= window.threshold:
            return None
        severity = self.settings.severity_taken if window.taken * 2 >= count else self.settings.severity
        if window.alerted == severity or window.alerted == self.settings.severity_taken:
            return None
        window.alerted = severity
        return [self._alert(event, account, window, count, severity)]

    def on_tick(self, watermark: float) -> None:
        """Close the windows that ended by the watermark: learn from them and free them."""
        self.pupil_ids.bound()  # the shared pupil ids `on_event` added since the last tick
        if watermark >= self._next_end:
            self._expire(watermark)
        return None

    def _expire(self, until: float) -> None:
        ends = self.ends
        popleft = ends.popleft
        close = self._close
        while ends and ends[0].end <= until:
            close(popleft())
        self._next_end = ends[0].end if ends else _NEVER

    # -- windows ---------------------------------------------------------------------------------

    def _open(self, event: PortalEvent, account: AccountState, at: float) -> Window:
        # The id's shared copy (the session table's, `account_key`): the key below.
        account_id = account.account_id if account is not None else account_key(event.account_id)
        packed = self.baselines.get(account_id)
        if packed is None:
            name = event.role or ("parent" if event.portal == "parent" else "staff" if event.portal == "schools" else "unknown")
            role = self.role_codes.get(name)  # `_role_code`'s common case, inline: a known role
            if role is None:
                role = self._role_code(name)
            usual = 0.0
            seen = 0
        else:
            role = packed & 0xFF
            seen = (packed >> 8) & 0xFF
            usual = (packed >> 16) / 10
        parent = event.portal == "parent"
        threshold = self._parent_floor if parent else self._staff_floor
        own = usual if seen >= self._min_windows else 0.0
        if own:
            threshold = max(threshold, self._factor * own)
        role_usual = self._role_usuals[role]
        if role_usual is None:
            role_usual = self._role_usuals[role] = self._quantile(role)
        if role_usual:
            threshold = max(threshold, self._factor * role_usual)
        elif not own and not parent:
            threshold = max(threshold, self._staff_unknown)
        free = self._free
        if free:  # a closed window's object, reset: cheaper than a new one
            window = free.pop()
            window.start = at
            window.role = role
            window.parent = parent
            window.threshold = threshold
            window.usual = own
            window.role_usual = role_usual
            window.taken = 0
            window.took = None
            window.alerted = None
        else:
            window = Window(at, role, parent, threshold, own, role_usual)
        window.account_id = account_id
        self.live[account_id] = window
        end = window.end = at + self._window
        ends = self.ends
        if not ends:
            self._next_end = end
        ends.append(window)
        if packed is None:
            baselines = self.baselines
            if len(baselines) >= self._max_accounts:
                self._forget_accounts()
                baselines = self.baselines
            baselines[account_id] = role
        return window

    def _forget_accounts(self) -> None:
        """`max_accounts` reached: forget the eighth of the baselines first seen longest ago
        (the dict's order), in one pass (amortised O(1)). Not the least recently used: moving
        an account to the end at each close leaves the dict's deleted slots behind, 20% more
        bytes per account."""
        baselines = self.baselines
        drop = max(1, len(baselines) // 8)
        self.baselines = dict(islice(baselines.items(), drop, None))

    def _close(self, window: Window) -> None:
        account_id = window.account_id
        del self.live[account_id]
        alerted = window.alerted is not None
        seen = window.seen
        count = 0 if alerted else len(seen) if seen is not None else window.count(self._exact)
        role = window.role
        free = self._free
        if len(free) < _FREE_WINDOWS:  # its object is reused by `_open`
            window.seen = ()  # emptied for `_open`
            window.hashes = None
            window.pupils = None
            free.append(window)
        if alerted:
            return  # not learnt from: an alerted window must not become the usual
        baselines = self.baselines
        packed = baselines.get(account_id)
        if packed is None:  # forgotten while its window was open
            packed = role
            if len(baselines) >= self._max_accounts:
                self._forget_accounts()
                baselines = self.baselines
        usual = (packed >> 16) / 10 * self._decay
        if count > usual:
            usual = count
        seen = (packed >> 8) & 0xFF
        baselines[account_id] = (round(usual * 10) << 16) | ((seen + 1 if seen < _WINDOWS_CAP else seen) << 8) | (packed & 0xFF)
        histogram = self.histograms[role]
        histogram[_BUCKETS[count] if count <= 1000 else bisect_left(BOUNDS, count)] += 1.0
        totals = self._role_totals
        total = totals[role] = totals[role] + 1.0
        if total > self._role_memory:
            histogram[:] = [n / 2 for n in histogram]
            total = totals[role] = sum(histogram)
        # The role's usual is read again after every 16th window it learnt from (and while it
        # has too few to count): a quantile need not move with each window.
        if total < self._role_min_windows + 16 or not int(total) % 16:
            self._role_usuals[role] = None

    def _role_code(self, role: str) -> int:
        code = self.role_codes.get(role)
        if code is not None:
            return code
        if len(self.roles) >= min(self.settings.max_roles, 255):
            role = OTHER_ROLE
            code = self.role_codes.get(role)
            if code is not None:
                return code
        code = len(self.roles)
        self.roles.append(role)
        self.role_codes[role] = code
        self.histograms.append([0.0] * len(BOUNDS))
        self._role_usuals.append(None)
        self._role_totals.append(0.0)
        return code

    def _role_usual(self, role: int) -> float:
        usual = self._role_usuals[role]
        if usual is None:
            usual = self._role_usuals[role] = self._quantile(role)
        return usual

    def _quantile(self, role: int) -> float:
        histogram = self.histograms[role]
        total = self._role_totals[role]
        if total < self.settings.role_min_windows:
            return 0.0
        wanted = total * self.settings.role_quantile
        running = 0.0
        for bound, n in zip(BOUNDS, histogram):
            running += n
            if running >= wanted:
                return float(bound)
        return float(BOUNDS[-1])

    # -- the alert -------------------------------------------------------------------------------

    def _alert(self, event: PortalEvent, account: AccountState, window: Window, count: int, severity: str) -> Alert:
        at = event.at
        about = "about " if window.saturated else ""
        pupils = window.evidence(self._evidence_pupils)
        minutes = max(1, round((at - window.start) / 60))
        role = self.roles[window.role]
        taken = window.taken * 2 >= count
        did = f"took copies of ({window.took}s among them)" if taken and window.took else "opened"
        usual = (
            f"it usually opens at most {window.usual:.0f} in {_span(self.settings.window)}"
            if window.usual else "it has no usual of its own yet"
        )
        role_usual = (
            f"accounts with the role {role} at most {window.role_usual:.0f}"
            if window.role_usual else f"the role {role} has no usual yet"
        )
        summary = (
            f"Account {event.account_id} ({role}) {did} {about}{count} distinct pupils' records in {minutes} "
            f"minute(s) ({utc(window.start):%Y-%m-%d %H:%M}–{utc(at):%H:%M}Z); {usual}, and "
            f"{role_usual}: check why it needed so many records."
        )
        clause = (
            policy.PARENT_PUPIL_RECORDS if window.parent
            else policy.SCHOOLS_COPIES if taken
            else policy.SCHOOLS_ITEMS_VIEWED
        )
        # The account's sessions active in the window (live ones: the table keeps no others).
        sessions = [s.session_id for s in account.sessions.values() if s.last_activity >= window.start][:4] if account else []
        if event.session_id and event.session_id not in sessions:
            sessions.insert(0, event.session_id)
        return new_alert(
            detector=self.id,
            severity=severity,
            account_id=event.account_id,
            at=at,
            trigger=f"{window.start!r}\x1f{severity}",
            session_ids=sessions,
            summary=summary,
            evidence={
                "distinct_pupils": count,
                "exact": not window.saturated,
                "window_start": utc(window.start),
                "last_access": utc(at),
                "copies_taken": window.taken,
                "account_usual": window.usual or None,
                "role": role,
                "role_usual": window.role_usual or None,
                "threshold": window.threshold,
                "sessions": list(sessions),
                # Names pupils: dropped by outbound sinks unless their `include_pupils` is set.
                "pupil_records": {"pupils": pupils, "pupils_listed": len(pupils)},
            },
            policy=clause,
            portal=event.portal,
        )

    # -- checkpoints -----------------------------------------------------------------------------

    def snapshot(self) -> dict:
        return {
            "baselines": self.baselines,
            "windows": {account_id: window.state() for account_id, window in self.live.items()},
            "ends": [(window.end, window.account_id) for window in self.ends],
            "roles": self.roles,
            "histograms": self.histograms,
        }

    def restore(self, state: object) -> None:
        saved = msgspec.convert(state, dict[str, object])
        self.baselines = by_account(msgspec.convert(saved["baselines"], dict[str, int]))
        self.roles = msgspec.convert(saved["roles"], list[str])
        self.role_codes = {role: code for code, role in enumerate(self.roles)}
        self.histograms = msgspec.convert(saved["histograms"], list[list[float]])
        self._role_usuals = [None] * len(self.roles)
        self._role_totals = [sum(histogram) for histogram in self.histograms]
        windows = msgspec.convert(saved["windows"], dict[str, WindowState])
        self.live = {}
        for account_id, state in windows.items():
            account_id = account_key(account_id)
            window = self.live[account_id] = Window.from_state(state, self.pupil_ids)
            window.account_id = account_id
        # The open windows in the order they end, with the ends saved (one entry per window).
        self.ends = deque()
        queued: set[str] = set()
        for end, account_id in msgspec.convert(saved["ends"], list[tuple[float, str]]):
            window = self.live.get(account_id)
            if window is not None and account_id not in queued:
                queued.add(account_id)
                window.end = end
                self.ends.append(window)
        self._next_end = self.ends[0].end if self.ends else _NEVER


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "an hour" if hours == 1 else f"{hours} hours"
    return f"{seconds / 60:.0f} minutes"
