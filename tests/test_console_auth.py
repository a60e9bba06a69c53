"""The console's sign-in pieces without a server: tokens, signed session cookies, CSRF tokens,
and the evidence laid out for the pages."""

from __future__ import annotations

import pytest

from monitor.response.console import present
from monitor.response.console.auth import ConsoleAuth, check_name


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_give_roles_and_nothing_else():
    auth = ConsoleAuth("responder-token-1", "viewer-token-2")
    assert auth.role_for("responder-token-1") == "responder"
    assert auth.role_for(" viewer-token-2 ") == "viewer"
    for wrong in ("", "responder-token", "responder-token-1x", "viewer-token-2\x00", "RESPONDER-TOKEN-1"):
        assert auth.role_for(wrong) is None
    assert ConsoleAuth("responder-token-1").role_for("viewer-token-2") is None
    with pytest.raises(ValueError):
        ConsoleAuth("")
    with pytest.raises(ValueError):
        ConsoleAuth("same", "same")


def test_session_cookie_is_signed_expires_and_can_be_revoked():
    clock = Clock()
    auth = ConsoleAuth("responder-token-1", "viewer-token-2", lifetime=3600, clock=clock)
    cookie, principal = auth.issue("Dana Okafor", "viewer")
    read = auth.read(cookie)
    assert read == principal and read.role == "viewer" and not read.may_act

    payload, signature = cookie.split(".")
    # A viewer who rewrites the payload to say responder: the signature no longer fits.
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["role"] = "responder"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    assert auth.read(f"{forged}.{signature}") is None
    for junk in (None, "", "x", "a.b.c", f"{payload}.", "." + signature, "é.é"):
        assert auth.read(junk) is None
    # Another deployment's key (other tokens) does not accept it; a rotated token signs everyone out.
    assert ConsoleAuth("responder-token-9", "viewer-token-2").read(cookie) is None

    clock.now += 3599
    assert auth.read(cookie) is not None
    clock.now += 2
    assert auth.read(cookie) is None

    cookie, principal = auth.issue("Sam", "responder")
    assert auth.read(cookie).may_act
    auth.revoke(principal)
    assert auth.read(cookie) is None


def test_csrf_token_belongs_to_one_session():
    auth = ConsoleAuth("responder-token-1")
    _, one = auth.issue("a", "responder")
    _, two = auth.issue("b", "responder")
    assert auth.csrf_ok(one, auth.csrf_token(one))
    assert not auth.csrf_ok(one, auth.csrf_token(two))
    assert not auth.csrf_ok(one, "")
    assert not auth.csrf_ok(one, None)


def test_names_are_checked():
    assert check_name("  Dana   Okafor ") == "Dana Okafor"
    for bad in ("", "   ", "x" * 61, "evil\x1b[31m"):
        with pytest.raises(ValueError):
            check_name(bad)


def test_travel_is_drawn_inside_the_picture_and_figures_kept():
    evidence = {
        "from": {"ip": "81.86.12.92", "at": "2026-03-02T08:51:06Z", "city": "Preston", "country": "GB",
                 "latitude": 53.76, "longitude": -2.7},
        "to": {"ip": "102.89.5.97", "at": "2026-03-02T10:14:02Z", "city": "Lagos", "country": "NG",
               "latitude": 6.45, "longitude": 3.39},
        "distance_km": 5281.4, "elapsed_seconds": 4976.0, "speed_kmh": 3781.1,
    }
    view = present.evidence_view(evidence)
    travel = view["travel"]
    for end in ("from", "to"):
        assert 0 <= travel[end]["x"] <= travel["width"] and 0 <= travel[end]["y"] <= travel["height"]
    assert travel["from"]["y"] < travel["to"]["y"]  # Preston is north of Lagos: higher on the picture
    assert travel["from"]["label"] == "Preston, GB" and travel["elapsed"] == "1 h 23 min"
    assert view["sessions"] is None and view["count"] is None
    assert ("from › city", "Preston") in view["rows"]
    # Places at the same spot, or without coordinates, do not break it.
    same = {"from": {"latitude": 51.5, "longitude": -0.1}, "to": {"latitude": 51.5, "longitude": -0.1}}
    assert present.travel(same)["from"]["x"] == present.travel(same)["to"]["x"]
    assert present.travel({"from": {"city": "?"}, "to": {}}) is None


def test_sessions_side_by_side_and_count_against_usual_and_unknown_evidence():
    sessions = present.sessions_side_by_side({
        "new_session": {"session_id": "s2", "ip": "86.150.3.7", "network": "86.150.3.0/24", "page_views": 0},
        "live_sessions": [{"session_id": "s1", "ip": "81.2.69.10", "network": "86.150.3.0/24", "page_views": 4}],
    })
    assert [c["session_id"] for c in sessions["columns"]] == ["s2", "s1"]
    rows = {r["label"]: r for r in sessions["rows"]}
    assert rows["IP address"]["differs"] and not rows["network"]["differs"]

    count = present.count_against_usual({"distinct_pupils": 240, "usual": 12, "window": "1 h"})
    assert count["times"] == 20.0 and count["count_bar"][0]["width"] == 100.0 and count["usual_bar"][0]["width"] == 5.0

    unknown = present.evidence_view({"weird": {"nested": [1, 2], "deeper": [{"a": None}]}, "flag": True})
    assert unknown["travel"] is None and unknown["sessions"] is None and unknown["count"] is None
    assert ("weird › nested", "1, 2") in unknown["rows"] and ("weird › deeper 1 › a", "(none)") in unknown["rows"]
    assert ("flag", "True") in unknown["rows"]
    assert present.evidence_view("just text")["rows"] == [("value", "just text")]


def test_verdict_rates_count_benign_apart_from_false_positives():
    rates = present.verdict_rates(
        {("impossible_travel", "true_positive"): 3, ("impossible_travel", "false_positive"): 1,
         ("impossible_travel", "benign"): 4, ("new_country", "benign"): 0},
        ("true_positive", "false_positive", "benign"),
    )
    [travel] = rates
    assert travel["total"] == 8 and travel["false_positive_rate"] == 1 / 8
    assert [s["name"] for s in travel["shares"]] == ["true_positive", "false_positive", "benign"]
    assert travel["shares"][-1]["x"] + travel["shares"][-1]["width"] == pytest.approx(100)


def test_two_sessions_interleave_in_time_order():
    from datetime import datetime, timezone

    def at(minute: int) -> datetime:
        return datetime(2026, 3, 2, 9, minute, tzinfo=timezone.utc)

    one = {"session_id": "s1", "timeline": [{"at": at(0), "event": "login"}, {"at": at(10), "event": "view"}]}
    two = {"session_id": "s2", "timeline": [{"at": at(5), "event": "login"}, {"at": at(10), "event": "view"}]}
    gone = {"session_id": "s3", "missing": True}
    lines = present.interleave([one, gone, two])
    assert [(line["tag"], line["at"].minute) for line in lines] == [("A", 0), ("B", 5), ("A", 10), ("B", 10)]
    assert present.interleave([one, gone]) == []
    sessions = [gone, one, two]
    present.tag_sessions(sessions)
    assert [s.get("tag") for s in sessions] == [None, "A", "B"]
