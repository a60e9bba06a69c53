"""The alert gate: cool-down grouping and silences, decided in event time only."""

from __future__ import annotations

from datetime import datetime, timezone

from monitor.alerting.gate import AlertGate, Silence, silences_from_settings
from monitor.contract.alerts import new_alert
from monitor.service.config import load_settings
from monitor.engine.findings import Findings, FlaggedSession
from monitor.state.sessions import Session

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()


def alert(trigger: str, at: float, account: str = "staff-1", detector: str = "simultaneous_logins",
          severity: str = "high", ip: str = "81.2.69.10"):
    return new_alert(
        detector=detector, severity=severity, account_id=account, at=at, trigger=trigger,
        session_ids=[trigger], summary=f"alert {trigger}", evidence={"new_session": {"ip": ip}}, policy="p",
    )


def findings(*alerts) -> Findings:
    out = Findings()
    out.alerts.extend(alerts)
    return out


def test_repeats_within_cooldown_are_grouped_into_the_first_alert():
    gate = AlertGate(cooldown=900)
    first = alert("s1", T0)
    out = gate.apply(findings(first, alert("s2", T0 + 60), alert("s3", T0 + 899)))
    assert [a.alert_id for a in out.alerts] == [first.alert_id]
    assert [r.alert_id for r in out.repeats] == [first.alert_id, first.alert_id]
    # after the cool-down of the first alert, the next one is published and opens a new group
    later = alert("s4", T0 + 900)
    out = gate.apply(findings(later, alert("s5", T0 + 950)))
    assert [a.alert_id for a in out.alerts] == [later.alert_id]
    assert [r.alert_id for r in out.repeats] == [later.alert_id]


def test_groups_are_per_detector_and_account_with_per_detector_cooldown():
    gate = AlertGate(cooldown=900, cooldowns={"impossible_travel": 60})
    a = alert("s1", T0)
    b = alert("s2", T0 + 10, account="staff-2")
    c = alert("s3", T0, detector="impossible_travel")
    d = alert("s4", T0 + 61, detector="impossible_travel")
    out = gate.apply(findings(a, b, c, d))
    assert len(out.alerts) == 4 and not out.repeats


def test_escalation_is_published_and_redelivery_passes_through():
    gate = AlertGate(cooldown=900)
    first = alert("s1", T0)
    worse = alert("s2", T0 + 30, severity="critical")
    out = gate.apply(findings(first, first, worse))  # the second `first`: a redelivered event
    assert [a.alert_id for a in out.alerts] == [first.alert_id, first.alert_id, worse.alert_id]
    assert not out.repeats


def test_same_decisions_in_any_batching():
    """Replay (one big batch) and live (one alert per batch) group identically."""
    alerts = [alert(f"s{n}", T0 + n * 400, account=f"staff-{n % 2}") for n in range(12)]
    whole = AlertGate(cooldown=900).apply(findings(*alerts))
    single = AlertGate(cooldown=900)
    published, repeats = [], []
    for a in alerts:
        out = single.apply(findings(a))
        published += [x.alert_id for x in out.alerts]
        repeats += [(r.repeat_id, r.alert_id) for r in out.repeats]
    assert published == [x.alert_id for x in whole.alerts]
    assert repeats == [(r.repeat_id, r.alert_id) for r in whole.repeats]
    assert len(published) == 6 and len(repeats) == 6


def test_silences_by_account_detector_and_network_in_event_time():
    gate = AlertGate(
        cooldown=900,
        silences=[
            Silence(account_id="staff-9", expires=T0 + 3600),
            Silence(detector="new_country", starts=T0, expires=T0 + 60, silence_id=7),
            Silence(network="10.0.0.0/8", expires=T0 + 3600),
        ],
    )
    by_account = alert("s1", T0, account="staff-9")
    by_detector = alert("s2", T0 + 10, detector="new_country")
    detector_expired = alert("s3", T0 + 60, detector="new_country")
    by_network = alert("s4", T0, account="staff-3", ip="10.1.2.3")
    other = alert("s5", T0, account="staff-4", ip="81.2.69.10")
    expired = alert("s6", T0 + 3600, account="staff-9")
    out = gate.apply(findings(by_account, by_detector, detector_expired, by_network, other, expired))
    assert {a.alert_id for a, _ in out.silenced} == {by_account.alert_id, by_detector.alert_id, by_network.alert_id}
    assert dict((a.alert_id, sid) for a, sid in out.silenced)[by_detector.alert_id] == 7
    assert {a.alert_id for a in out.alerts} == {detector_expired.alert_id, other.alert_id, expired.alert_id}


def test_silenced_alert_opens_no_group():
    gate = AlertGate(cooldown=900, silences=[Silence(account_id="staff-1", expires=T0 + 100)])
    out = gate.apply(findings(alert("s1", T0), alert("s2", T0 + 200)))
    assert len(out.silenced) == 1 and len(out.alerts) == 1 and not out.repeats


def test_flagged_sessions_point_at_the_group_alert():
    gate = AlertGate(cooldown=900)
    first, repeat = alert("s1", T0), alert("s2", T0 + 5)
    batch = findings(first, repeat)
    session = Session(session_id="s2", account_id="staff-1", opened_at=T0, last_activity=T0, ip=None, network=None)
    batch.flagged_sessions["s2"] = FlaggedSession(session=session, alert_ids=[repeat.alert_id])
    out = gate.apply(batch)
    assert out.flagged_sessions["s2"].alert_ids == [first.alert_id]


def test_remembered_group_from_the_store_absorbs_repeats_after_restart():
    gate = AlertGate(cooldown=900)
    gate.remember("simultaneous_logins", "staff-1", "earlier", T0, "high")
    out = gate.apply(findings(alert("s2", T0 + 100)))
    assert not out.alerts and out.repeats[0].alert_id == "earlier"


def test_silences_from_config(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        '[[alerting.silences]]\nnetwork = "192.0.2.0/24"\nexpires = 2026-04-01T00:00:00Z\nreason = "pen test"\n'
    )
    [silence] = silences_from_settings(load_settings(config, environ={}))
    assert silence.network == "192.0.2.0/24" and silence.reason == "pen test"
    assert silence.expires == datetime(2026, 4, 1, tzinfo=timezone.utc).timestamp()
