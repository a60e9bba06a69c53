"""`password_spray`: one source failing to log in to many different accounts, few of them getting in.

Unlike the account detectors this one is keyed by source, not by account: it runs in the
network stage (`monitor.engine.network_stage`), fed the login outcomes every shard publishes,
repartitioned by source network, in event time order.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from monitor.contract import policy
from monitor.contract.alerts import Alert, new_alert, utc
from monitor.contract.durations import Seconds
from monitor.contract.outcomes import LoginOutcome
from monitor.state.interning import account_key

Severity = Literal["low", "medium", "high", "critical"]


class PasswordSpraySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    accounts: int = 10
    """Distinct accounts failing from one source within `window` that make a spray (Microsoft
    Sentinel's rule needs 5 in 20 minutes, Elastic's Okta rule 5 users in an hour), and only
    while they outnumber the accounts that logged in from it."""
    window: Seconds = Seconds(1200)
    severity: Severity = "high"
    severity_worked: Severity = "critical"
    """A successful login from a spraying source onto an account it tried: the spray worked."""
    follow_for: Seconds = Seconds(86400)
    """How long after its last failure a spraying source's later logins are still checked."""
    max_accounts: int = 1000
    """Accounts kept per source and window; beyond, the least recently seen are dropped."""
    max_listed: int = 50
    """Accounts and addresses listed in an alert's evidence (the rest are counted)."""
    max_sources: int = 50_000
    """Sources tracked per stage partition; beyond, the least recently seen are dropped."""


class Tried(msgspec.Struct, array_like=True, gc=False):
    """One account seen from a source in the window."""

    last: float
    ip: str  # the address of the account's first failure (or its first login) from the source
    failed: float | None = None  # first failure from the source in the window
    succeeded: float | None = None  # latest success from the source


class Window(msgspec.Struct, array_like=True, gc=False):
    """A source's recent logins: the accounts tried, which failed and which got in."""

    network: str
    accounts: dict[str, Tried]  # insertion order = last seen
    failing: int = 0  # accounts with a failure and no later success
    succeeding: int = 0  # accounts with a success
    last: float = 0.0


class Episode(msgspec.Struct, array_like=True, gc=False):
    """A source found spraying: what the alert and a later success are judged by."""

    network: str
    started: float  # the window's first failure when the spray was found: names the alert
    last_failure: float
    addresses: list[str]
    more_addresses: int
    tried: dict[str, None]  # accounts tried, bounded by max_accounts
    more_tried: int
    failures: int
    user_agents: list[str]
    worked: list[str]  # accounts already reported as got into


class PasswordSpray:
    """Many distinct accounts failing from one source within minutes, failed accounts
    outnumbering those that logged in: someone trying one password on many accounts.

    A source is an IPv4 /24 or an IPv6 /64; an allowlisted network or one learnt as
    organisation-shared (a school's NAT) is judged per address, so one spraying device does
    not hide among the school's good logins and the school is not blamed for it. A school's
    NAT at 08:45 (40 good logins, 6 typos) is not a spray: its failed accounts are few and
    outnumbered. The alert is about the source: its network, each address that took part and
    the accounts tried. A successful login afterwards from the spraying source onto an account
    it tried is a second alert, critical, about that account: the spray worked.

    Enforces the Schools' Portal Site Terms: "The Schools' Portal is a secure site. Only
    registered users with valid passwords can access the entire system." and "To prevent
    unauthorised access to the system"; and the Parent Portal Acceptable Use Policy, whose
    first named risk is "The intentional or unintentional disclosure of login details to
    Parent Portal by authorised users."

    Not built: a spread-out spray (many addresses, one user agent): user agents are whatever
    the client says, and a school's pupils share a handful of them, so grouping by user agent
    across networks would join unrelated failures; it needs a signal we do not have yet.
    """

    id = "password_spray"

    def __init__(self, settings: PasswordSpraySettings) -> None:
        self.settings = settings
        self.windows: dict[str, Window] = {}  # source -> window; insertion order = last seen
        self.episodes: dict[str, Episode] = {}  # source -> episode; insertion order = last failure

    @staticmethod
    def source_of(outcome: LoginOutcome) -> str:
        """Where an outcome is judged: its address on a shared network, else its network."""
        return outcome.ip if outcome.shared else outcome.network

    def on_outcome(self, outcome: LoginOutcome) -> list[Alert] | None:
        s = self.settings
        source = outcome.ip if outcome.shared else outcome.network
        at = outcome.at
        windows = self.windows
        window = windows.pop(source, None)
        if window is None:
            window = Window(network=outcome.network, accounts={})
        windows[source] = window
        if len(windows) > s.max_sources:
            del windows[next(iter(windows))]
        if at > window.last:
            window.last = at
        _prune(window, at - s.window)
        accounts = window.accounts
        tried = accounts.pop(outcome.account_id, None)
        if tried is None:
            tried = Tried(last=at, ip=outcome.ip)
        accounts[account_key(outcome.account_id)] = tried  # the id's one copy in the process
        if at > tried.last:
            tried.last = at
        if len(accounts) > s.max_accounts:
            _forget(window, next(iter(accounts)))
        episode = self.episodes.get(source)
        if outcome.succeeded:
            if tried.succeeded is None:
                window.succeeding += 1
                if tried.failed is not None:
                    window.failing -= 1
            tried.succeeded = at
            if episode is not None:
                return self._worked(source, episode, outcome)
            return None
        if tried.failed is None:
            tried.failed = at
            tried.ip = outcome.ip
            if tried.succeeded is None:
                window.failing += 1
        if episode is not None and at - episode.last_failure <= s.window:
            self._note(episode, outcome)  # the spray goes on: one alert for it
            return None
        if window.failing < s.accounts or window.failing <= window.succeeding:
            return None
        # Named by the window's first failure, not by the outcome that crossed the threshold:
        # outcomes from several shards may arrive a little out of order, and the alert found
        # again after a takeover must keep its id.
        started = min(t.failed for t in accounts.values() if t.failed is not None)
        episode = Episode(
            network=window.network, started=started, last_failure=at, addresses=[], more_addresses=0,
            tried={}, more_tried=0, failures=0, user_agents=[], worked=[],
        )
        self.episodes.pop(source, None)
        self.episodes[source] = episode
        for account_id, earlier in accounts.items():
            if earlier.failed is not None and account_id != outcome.account_id:
                self._try(episode, account_id)
                self._address(episode, earlier.ip)
        self._note(episode, outcome)
        episode.failures = window.failing  # at least one failure per failing account
        alerts = [self._alert(source, episode, window, outcome)]
        # Accounts it already got into during the window, after failing on them first.
        for account_id, earlier in accounts.items():
            if earlier.failed is not None and earlier.succeeded is not None and earlier.succeeded > earlier.failed:
                episode.worked.append(account_id)
                alerts.append(self._worked_alert(source, episode, account_id, earlier.succeeded, None, None, None))
        return alerts

    def _try(self, episode: Episode, account_id: str) -> None:
        if account_id in episode.tried:
            return
        if len(episode.tried) < self.settings.max_accounts:
            episode.tried[account_id] = None
        else:
            episode.more_tried += 1

    def _note(self, episode: Episode, outcome: LoginOutcome) -> None:
        episode.failures += 1
        if outcome.at > episode.last_failure:
            episode.last_failure = outcome.at
            self.episodes[self.source_of(outcome)] = self.episodes.pop(self.source_of(outcome))
        self._try(episode, outcome.account_id)
        self._address(episode, outcome.ip)
        agent = outcome.user_agent or ""
        if agent not in episode.user_agents and len(episode.user_agents) < 5:
            episode.user_agents.append(agent)

    def _address(self, episode: Episode, ip: str) -> None:
        if ip not in episode.addresses:
            if len(episode.addresses) < self.settings.max_listed:
                episode.addresses.append(ip)
            else:
                episode.more_addresses += 1

    def _worked(self, source: str, episode: Episode, outcome: LoginOutcome) -> list[Alert] | None:
        account_id = outcome.account_id
        if account_id not in episode.tried or account_id in episode.worked:
            return None
        if outcome.at - episode.last_failure > self.settings.follow_for or outcome.at < episode.started:
            return None
        episode.worked.append(account_id)
        return [self._worked_alert(source, episode, account_id, outcome.at, outcome.session_id, outcome.ip, outcome.portal)]

    def _alert(self, source: str, episode: Episode, window: Window, outcome: LoginOutcome) -> Alert:
        s = self.settings
        count = len(episode.tried) + episode.more_tried
        per = "address" if source != window.network else "network"
        summary = (
            f"Failed logins to {window.failing} different accounts from {per} {source} within "
            f"{s.window / 60:.0f} minutes (to {utc(outcome.at):%Y-%m-%d %H:%M:%S}Z), against "
            f"{window.succeeding} account(s) that logged in from it: a password spray."
        )
        return new_alert(
            detector=self.id,
            severity=s.severity,
            account_id="",
            source=source,
            at=outcome.at,
            trigger=f"spray:{source}:{episode.started!r}",
            session_ids=[],
            summary=summary,
            evidence={
                "source": source,
                "network": episode.network,
                "judged_per": per,
                "addresses": list(episode.addresses),
                "more_addresses": episode.more_addresses,
                "accounts_tried": list(episode.tried)[: s.max_listed],
                "accounts_tried_count": count,
                "failed_accounts": window.failing,
                "succeeded_accounts": window.succeeding,
                "user_agents": list(episode.user_agents),
                "window_seconds": float(s.window),
            },
            policy=_clause(outcome.portal),
            portal=outcome.portal,
        )

    def _worked_alert(
        self, source: str, episode: Episode, account_id: str, at: float,
        session_id: str | None, ip: str | None, portal: str | None,
    ) -> Alert:
        summary = (
            f"Account {account_id} logged in at {utc(at):%Y-%m-%d %H:%M:%S}Z from {ip or source}, "
            f"a source that was spraying passwords at {len(episode.tried) + episode.more_tried} accounts "
            f"(this one among them) since {utc(episode.started):%Y-%m-%d %H:%M}Z: the spray worked."
        )
        return new_alert(
            detector=self.id,
            severity=self.settings.severity_worked,
            account_id=account_id,
            source=source,
            at=at,
            trigger=f"worked:{source}:{episode.started!r}:{account_id}",
            session_ids=[session_id] if session_id else [],
            summary=summary,
            evidence={
                "source": source,
                "network": episode.network,
                "ip": ip,
                "session_id": session_id,
                "spray_started": utc(episode.started),
                "spray_alert_id": alert_id_of_spray(source, episode.started),
                "accounts_tried_count": len(episode.tried) + episode.more_tried,
            },
            policy=_clause(portal),
            portal=portal,
        )

    def on_tick(self, watermark: float) -> None:
        """Forget windows idle for `window` and episodes idle for `follow_for`."""
        s = self.settings
        for table, horizon in ((self.windows, watermark - s.window), (self.episodes, watermark - s.follow_for)):
            stale = []
            for source, state in table.items():
                if (state.last if type(state) is Window else state.last_failure) >= horizon:
                    break
                stale.append(source)
            for source in stale:
                del table[source]

    def active(self, watermark: float) -> int:
        """Sources spraying now: with a failure within `window` of the watermark."""
        horizon = watermark - self.settings.window
        return sum(1 for episode in self.episodes.values() if episode.last_failure >= horizon)

    def snapshot(self) -> Any:
        if not self.windows and not self.episodes:
            return None
        return [list(self.windows.items()), list(self.episodes.items())]

    def restore(self, state: Any) -> None:
        if not state:  # a checkpoint delta's "nothing held now"
            self.windows, self.episodes = {}, {}
            return
        windows, episodes = msgspec.convert(state, tuple[list[tuple[str, Window]], list[tuple[str, Episode]]])
        self.windows = dict(windows)
        self.episodes = dict(episodes)


def alert_id_of_spray(source: str, started: float) -> str:
    from monitor.contract.alerts import alert_id

    return alert_id(PasswordSpray.id, "", f"spray:{source}:{started!r}")


def _prune(window: Window, horizon: float) -> None:
    accounts = window.accounts
    while accounts:
        account_id = next(iter(accounts))
        if accounts[account_id].last >= horizon:
            return
        _forget(window, account_id)


def _forget(window: Window, account_id: str) -> None:
    tried = window.accounts.pop(account_id)
    if tried.succeeded is not None:
        window.succeeding -= 1
    elif tried.failed is not None:
        window.failing -= 1


def _clause(portal: str | None) -> str:
    return policy.for_portal(
        portal,
        f"{policy.SCHOOLS_SECURE_SITE} {policy.SCHOOLS_UNAUTHORISED_ACCESS}",
        policy.PARENT_LOGIN_DISCLOSURE,
    )
