"""The responder console: server-rendered pages under `/ui` on the daemon's HTTP server.

Alerts (filtered, paged), one alert with its evidence drawn and the timeline of each flagged
session, acknowledge and resolve with a verdict, an account's page, silences, and an overview
with the false-positive rate per detector. Signed in with a role's token (see `auth`); no
JavaScript and nothing fetched from elsewhere: Jinja2 templates and one small stylesheet.
"""

from __future__ import annotations

from typing import Any, Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.response.console.auth import ConsoleAuth
from monitor.response.console.metrics import ConsoleMetrics
from monitor.response.console.web import PREFIX, Console

log = structlog.get_logger("monitor.console")

__all__ = ["PREFIX", "Console", "ConsoleAuth", "mount"]


def mount(
    app: web.Application,
    *,
    responder_token: str,
    viewer_token: str,
    session_lifetime: float,
    pool: Callable[[], Any],
    detector_ids: tuple[str, ...],
    registry: CollectorRegistry | None = None,
) -> Console | None:
    """Add the console's routes to `app` if the responder token is set; the console, or None.
    `registry`: the monitor's Prometheus registry, for the console's counters."""
    if not responder_token:
        log.warning("console disabled: no responder token configured (set PORTAL_MONITOR_API__TOKEN or [api] token_file)")
        return None
    console = Console(ConsoleAuth(responder_token, viewer_token, session_lifetime), pool, detector_ids,
                      metrics=ConsoleMetrics(registry))
    app.router.add_routes(console.routes())
    log.info("console enabled", prefix=PREFIX, viewer_sign_in=console.auth.has_viewer)
    return console
