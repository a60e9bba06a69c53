"""The console's counters, on the monitor's registry: sign-ins by outcome, and forms refused.

Both pre-initialised to zero for every outcome; no name, token or address is ever a label.
A rising `wrong_token` is someone guessing; `csrf` refusals are forms from elsewhere.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

SIGNIN_OUTCOMES = ("responder", "viewer", "wrong_token", "expired_form")
REFUSAL_OUTCOMES = ("csrf", "viewer_action")


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.signins = Counter(
            "portal_monitor_console_signins_total",
            "Console sign-in attempts by outcome: signed in as responder or viewer, wrong token, or an expired or forged sign-in form.",
            ["outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "portal_monitor_console_refusals_total",
            "Console forms refused by outcome: csrf (missing or wrong CSRF token, or another site's Origin), viewer_action (a viewer tried to act).",
            ["outcome"],
            registry=registry,
        )
        for outcome in SIGNIN_OUTCOMES:
            self.signins.labels(outcome)
        for outcome in REFUSAL_OUTCOMES:
            self.refusals.labels(outcome)
        # Label children looked up once: a sign-in or refusal costs one increment.
        self.signed_in = {role: self.signins.labels(role) for role in ("responder", "viewer")}
        self.wrong_token = self.signins.labels("wrong_token")
        self.expired_form = self.signins.labels("expired_form")
        self.csrf = self.refusals.labels("csrf")
        self.viewer_action = self.refusals.labels("viewer_action")
