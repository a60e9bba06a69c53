"""`unlinked_pupil_access`: a Parent Portal account opens the record of a pupil it is not linked to."""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import msgspec

from detectors.base import PUPIL_VIEW, Detector, DetectorContext
from monitor.contract import policy
from monitor.contract.accounts import LentLink
from monitor.contract.alerts import Alert, new_alert, utc
from monitor.contract.durations import Seconds
from monitor.contract.events import PROTECTIVE_UNLINK_REASONS, PortalEvent
from monitor.state.interning import account_key
from monitor.state.sessions import AccountState

Severity = Literal["low", "medium", "high", "critical"]
# How a Parent Portal view of a pupil's record was judged: the label values of
# `portal_monitor_pupil_record_views_total` (pre-initialised; `no_known_links` is coverage).
JUDGEMENTS: tuple[str, ...] = ("linked", "not_linked", "no_longer_linked", "no_known_links")
DAY = 86_400.0


class UnlinkedPupilAccessSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    severity: Severity = "high"
    severity_protective: Severity = "critical"
    """When the link was removed for one of `protective_reasons` (a court order, child protection)."""
    protective_reasons: list[str] = msgspec.field(default_factory=lambda: list(PROTECTIVE_UNLINK_REASONS))
    max_links: int = msgspec.field(default=32)
    """Links (current and removed) kept per account; beyond, removed links go first, oldest first."""
    forget_unlinked_after: Seconds = Seconds(400 * DAY)
    """A removed link is forgotten this long after its removal (a view after that is `not_linked`)."""

    def __post_init__(self) -> None:
        if self.max_links < 1:
            raise ValueError("max_links must be at least 1")


class UnlinkedPupilAccess(Detector):
    """A Parent Portal account views, downloads, prints or exports a pupil's record without a link to the pupil.

    Enforces the Parent Portal Acceptable Use Policy: "Preston School Parent Portal is provided
    for use only by persons who are legally responsible for a child currently attending the
    school – those who our records show have 'parental responsibility'." The risk it names first
    is "The wrongful disclosure of private, sensitive, and confidential information"; and access
    ends when a "Court ruling preventing access to child or family members is issued" or "If any
    child protection concerns are raised".

    Links come from `pupil_linked` / `pupil_unlinked` events and from roster imports (lent by
    the account registry when the shard is built). A page view is about a pupil by its
    `pupil_id`, else by the `[pupils] paths` patterns over its resource. Judged in event time
    (the reorder buffer puts a link that arrives late, within the allowed lateness, before the
    view it precedes):
    - the pupil is linked at the view's time: fine;
    - the account has links but none to this pupil: `severity` (high);
    - the link was removed before the view: `severity`, or `severity_protective` (critical) when
      it was removed for a court order or child protection.
    Accounts of which no link is known are not judged (the school's link feed may not cover
    them): their views are counted in `portal_monitor_pupil_record_views_total{judgement=
    "no_known_links"}` so operators see the coverage. Schools' Portal accounts are staff:
    never judged by links. One alert per session and severity.

    State: the links of each parent's account (at most `max_links`, removed ones forgotten
    after `forget_unlinked_after`), and the sessions already alerted on.
    """

    id = "unlinked_pupil_access"
    event_types = (PUPIL_VIEW, "pupil_linked", "pupil_unlinked")
    staff_pupil_views = False  # staff are never judged by links: not called for their views

    def __init__(self, settings: UnlinkedPupilAccessSettings, context: DetectorContext) -> None:
        self.settings = settings
        self.protective = frozenset(settings.protective_reasons)
        self.lent: Mapping[str, Sequence[LentLink]] = context.links
        self.pupil_ids = context.pupil_ids  # one copy of each pupil id (the process's, lent by the engine)
        # A tuple per account (about 30 bytes less than a list), keyed by the account id's shared
        # copy, the pupil ids shared too (`monitor.state.interning`).
        self.links: dict[str, tuple[LentLink, ...]] = {}
        for account_id, links in self.lent.items():
            for link in links:
                self._apply(account_id, link.pupil_id, link.at, link.linked, link.reason)
        self.alerted: dict[str, list[str]] = {}
        # Views by judgement since the last `take_tallies` (the common two as plain ints).
        self.linked = 0
        self.unjudged = 0
        self.tallies: dict[str, int] = {}

    # -- events --------------------------------------------------------------------------------

    def on_event(self, event: PortalEvent, account: AccountState) -> list[Alert] | None:
        if event.type == "page_view":
            links = self.links.get(event.account_id)
            if links is None:  # nothing known of its links: counted, not judged
                if event.portal == "parent":
                    self.unjudged += 1
                return None
            if event.portal == "schools":
                return None  # staff: not judged by links (the shard does not call for them)
            pupil = event.pupil_id  # a PUPIL_VIEW: never None
            at = event.at
            for link in links:
                if link.pupil_id == pupil:
                    if link.linked:
                        if link.at <= at:
                            self.linked += 1
                            return None
                    elif link.at > at:  # removed only after this view
                        self.linked += 1
                        return None
                    return self._judge(event, pupil, links, link)
            return self._judge(event, pupil, links, None)
        self._apply(account.account_id, event.pupil_id, event.at, event.type == "pupil_linked", event.reason)  # type: ignore[arg-type]
        return None

    def take_tallies(self) -> dict[str, int] | None:
        if not (self.linked or self.unjudged or self.tallies):
            return None
        tallies, self.tallies = self.tallies, {}
        if self.linked:
            tallies["linked"] = self.linked
        if self.unjudged:
            tallies["no_known_links"] = self.unjudged
        self.linked = self.unjudged = 0
        return tallies

    def _judge(self, event: PortalEvent, pupil: str, links: tuple[LentLink, ...], link: LentLink | None) -> list[Alert] | None:
        """A view of a pupil not linked at its time: linked only later, never, or no longer."""
        judgement = "not_linked" if link is None or link.linked else "no_longer_linked"
        self.tallies[judgement] = self.tallies.get(judgement, 0) + 1
        protective = judgement == "no_longer_linked" and link is not None and link.reason in self.protective
        severity = self.settings.severity_protective if protective else self.settings.severity
        session_id = event.session_id or ""
        key = f"{session_id}\x1f{severity}"
        alerted = self.alerted.setdefault(event.account_id, [])
        if key in alerted:
            return None
        alerted.append(key)
        if len(alerted) > 16:
            del alerted[0]
        return [self._alert(event, pupil, links, link if judgement == "no_longer_linked" else None, severity)]

    def _apply(self, account_id: str, pupil: str, at: float, linked: bool, reason: str | None) -> None:
        """Note a link or its removal (an older fact than the one known for the pupil is ignored)."""
        links = list(self.links.get(account_id, ()))
        pupil = self.pupil_ids(pupil)
        for index, link in enumerate(links):
            if link.pupil_id == pupil:
                if at >= link.at:
                    links[index] = LentLink(pupil, at, linked, None if linked else reason)
                break
        else:
            links.append(LentLink(pupil, at, linked, None if linked else reason))
        forget_before = at - self.settings.forget_unlinked_after
        if len(links) > self.settings.max_links or any(not l.linked and l.at < forget_before for l in links):
            kept = [l for l in links if l.linked or l.at >= forget_before]
            while len(kept) > self.settings.max_links:
                removed = [l for l in kept if not l.linked]
                oldest = min(removed or kept, key=lambda l: l.at)
                kept.remove(oldest)
            links = kept
        self.links[account_key(account_id)] = tuple(links)

    # -- the alert -------------------------------------------------------------------------------

    def _alert(self, event: PortalEvent, pupil: str, links: tuple[LentLink, ...], removed: LentLink | None, severity: str) -> Alert:
        at = event.at
        linked = sum(1 for l in links if l.linked and l.at <= at)
        what = {"view": "viewed", "download": "downloaded", "print": "printed", "export": "exported"}[event.action]
        where = f" from {event.ip}" if event.ip else ""
        if removed is not None:
            because = f" for {removed.reason.replace('_', ' ')}" if removed.reason else ""
            whose = f"a pupil whose link to this account was removed on {utc(removed.at):%Y-%m-%d %H:%M}Z{because}"
            clause = policy.PARENT_COURT_RULING if severity == self.settings.severity_protective else policy.PARENT_PUPIL_RECORDS
        else:
            whose = "a pupil it is not linked to"
            clause = policy.PARENT_PUPIL_RECORDS
        summary = (
            f"Parent Portal account {event.account_id} {what} the record of {whose}{where} at "
            f"{utc(at):%Y-%m-%d %H:%M:%S}Z (session {event.session_id}); the account is linked to "
            f"{linked} pupil(s): check how the portal let it open this record and who used the login."
        )
        return new_alert(
            detector=self.id,
            severity=severity,
            account_id=event.account_id,
            at=at,
            trigger=f"{event.session_id}\x1f{severity}",
            session_ids=[event.session_id] if event.session_id else [],
            summary=summary,
            evidence={
                "judgement": "no_longer_linked" if removed is not None else "not_linked",
                "linked_pupils": linked,
                "action": event.action,
                "session_id": event.session_id,
                "ip": event.ip,
                "user_agent": event.user_agent,
                "link_removed_at": utc(removed.at) if removed is not None else None,
                "link_removed_reason": removed.reason if removed is not None else None,
                # Names pupils: kept by the store, the API and the console; dropped by outbound
                # sinks (MQTT, Kafka, webhook, Alertmanager) unless their `include_pupils` is set.
                "pupil_records": {"pupil_id": pupil, "resource": event.resource},
            },
            policy=clause,
            portal=event.portal,
        )

    # -- checkpoints -----------------------------------------------------------------------------

    def snapshot(self) -> dict:
        return {"links": self.links, "alerted": self.alerted}

    def restore(self, state: object) -> None:
        """Load a checkpoint; a link the registry lent that is newer (a roster imported since) stands."""
        saved = msgspec.convert(state, dict[str, dict])
        self.links = {
            account_key(account_id): tuple(LentLink(self.pupil_ids(l.pupil_id), l.at, l.linked, l.reason) for l in links)
            for account_id, links in msgspec.convert(saved.get("links", {}), dict[str, list[LentLink]]).items()
        }
        self.alerted = msgspec.convert(saved.get("alerted", {}), dict[str, list[str]])
        for account_id, links in self.lent.items():
            for link in links:
                self._apply(account_id, link.pupil_id, link.at, link.linked, link.reason)
