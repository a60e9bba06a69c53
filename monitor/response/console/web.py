"""The console's pages and forms under `/ui`, rendered on the server from the responder queries."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode, urlsplit

import asyncpg
import jinja2
import structlog
from aiohttp import web

from monitor.response import queries
from monitor.contract.alerts import SEVERITIES
from monitor.response.console import present
from monitor.response.console.metrics import ConsoleMetrics
from monitor.response.console.auth import (
    SESSION_COOKIE, SIGNIN_COOKIE, ConsoleAuth, Principal, check_name, new_signin_token, same,
)

log = structlog.get_logger("monitor.console")
PREFIX = "/ui"
HERE = Path(__file__).parent
PAGE_SIZE = 50
OVERVIEW_DAYS = 14
VERDICT_LABELS = {"true_positive": "true positive", "false_positive": "false positive", "benign": "benign"}
# Messages after a form, by code: a redirect never carries text of the user's into the page.
NOTICES = {
    "acknowledged": "Acknowledged.",
    "resolved": "Resolved; the verdict is counted.",
    "silence-added": "Silence added.",
    "silence-removed": "Silence removed.",
    "signed-out": "Signed out.",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Typed keys where aiohttp has them (3.12+), plain names before.
_Key = getattr(web, "RequestKey", None)
PRINCIPAL: Any = _Key("principal", Principal) if _Key else "principal"
FORM: Any = _Key("form", object) if _Key else "form"


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    value = value.astimezone(timezone.utc) if value.tzinfo else value
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value.second else value.strftime("%Y-%m-%d %H:%M UTC")


def _short_when(value: Any) -> str:
    if not isinstance(value, datetime):
        return _when(value)
    return value.astimezone(timezone.utc).strftime("%a %d %b %H:%M")


def _clock(value: Any) -> str:
    if not isinstance(value, datetime):
        return _when(value)
    return value.astimezone(timezone.utc).strftime("%H:%M:%S")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, short_when=_short_when, clock=_clock, number=_number, verdict=lambda v: VERDICT_LABELS.get(v, v or ""))
    env.globals.update(prefix=PREFIX, severities=SEVERITIES, statuses=queries.STATUSES, verdicts=queries.VERDICTS,
                       verdict_labels=VERDICT_LABELS, portals=queries.PORTALS)
    return env


class Console:
    """Pages over a pool getter (the pool exists once the store is connected)."""

    def __init__(self, auth: ConsoleAuth, pool: Callable[[], Any], detector_ids: tuple[str, ...],
                 page_size: int = PAGE_SIZE, metrics: ConsoleMetrics | None = None) -> None:
        self.auth = auth
        self.metrics = metrics or ConsoleMetrics(registry=None)
        self.page_size = page_size
        self._pool = pool
        self.detector_ids = tuple(detector_ids)
        self.env = templates()
        self.css = (HERE / "static" / "console.css").read_bytes()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get(PREFIX, self.root),
            web.get(f"{PREFIX}/static/console.css", self.stylesheet),
            web.get(f"{PREFIX}/signin", self.signin_page),
            web.post(f"{PREFIX}/signin", self.signin),
            web.post(f"{PREFIX}/signout", self._guarded(self.signout, store=False)),
            web.get(f"{PREFIX}/", self._guarded(self.overview)),
            web.get(f"{PREFIX}/alerts", self._guarded(self.alerts)),
            web.get(f"{PREFIX}/alerts/{{alert_id}}", self._guarded(self.alert)),
            web.post(f"{PREFIX}/alerts/{{alert_id}}/ack", self._guarded(self.ack, act=True)),
            web.post(f"{PREFIX}/alerts/{{alert_id}}/resolve", self._guarded(self.resolve, act=True)),
            web.get(f"{PREFIX}/accounts/{{account_id}}", self._guarded(self.account)),
            web.get(f"{PREFIX}/sessions/{{session_id}}", self._guarded(self.session)),
            web.get(f"{PREFIX}/silences", self._guarded(self.silences)),
            web.post(f"{PREFIX}/silences", self._guarded(self.add_silence, act=True)),
            web.post(f"{PREFIX}/silences/{{silence_id}}/remove", self._guarded(self.remove_silence, act=True)),
        ]

    # -- rendering and the guard ---------------------------------------------------------------------

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        principal: Principal | None = request.get(PRINCIPAL)
        notice = NOTICES.get(request.query.get("done", ""))
        body = self.env.get_template(template).render(
            principal=principal,
            csrf=self.auth.csrf_token(principal) if principal else "",
            notice=notice,
            path=request.path,
            **context,
        )
        response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        self._headers(response)
        return response

    @staticmethod
    def _headers(response: web.StreamResponse) -> None:
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"

    def _signin_redirect(self, request: web.Request) -> web.Response:
        target = request.path_qs if request.method == "GET" else PREFIX + "/"
        raise web.HTTPSeeOther(f"{PREFIX}/signin?{urlencode({'next': target})}")

    def _guarded(self, handler: Handler, act: bool = False, store: bool = True) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = self.auth.read(request.cookies.get(SESSION_COOKIE))
            if principal is None:
                return self._signin_redirect(request)
            request[PRINCIPAL] = principal
            if request.method == "POST":
                form = await request.post()
                request[FORM] = form
                if not self._same_origin(request) or not self.auth.csrf_ok(principal, _field(form, "csrf")):
                    log.warning("console form refused: CSRF token missing or wrong", path=request.path)
                    self.metrics.csrf.inc()
                    return self.render(request, "error.html", 403, title="Refused",
                                       message="This form was not sent from this console (its CSRF token is missing or "
                                               "out of date). Go back, reload the page and try again.")
                if act and not principal.may_act:
                    self.metrics.viewer_action.inc()
                    return self.render(request, "error.html", 403, title="Not allowed",
                                       message="You are signed in as a viewer; only responders acknowledge, resolve and silence.")
            if store and self._pool() is None:
                return self.render(request, "error.html", 503, title="Store not connected",
                                   message="The monitor has not connected to PostgreSQL yet. Try again in a moment.")
            try:
                return await handler(request)
            except queries.NotFound as problem:
                return self.render(request, "error.html", 404, title="Not found", message=str(problem.args[0]) if problem.args else "not found")
            except (OSError, ConnectionError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as problem:
                return self.render(request, "error.html", 503, title="Store not reachable",
                                   message=f"PostgreSQL did not answer ({type(problem).__name__}). Try again in a moment.")
            except asyncpg.PostgresError as problem:
                log.warning("console query failed", route=request.path, error=type(problem).__name__)
                return self.render(request, "error.html", 500, title="Store error", message="The query failed; see the monitor's log.")

        return guarded

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """A POST whose Origin (if the browser sent one) is this host, or the host a proxy in front
        says it was asked for (X-Forwarded-Host). The CSRF token is the defence; this is a second."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        hosts = {request.host, *(h.strip() for h in request.headers.get("X-Forwarded-Host", "").split(",") if h.strip())}
        return urlsplit(origin).netloc in hosts

    def _cookie_secure(self, request: web.Request) -> bool:
        return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"

    # -- public routes -------------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{PREFIX}/")

    async def stylesheet(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.css, content_type="text/css", charset="utf-8")
        response.headers["Cache-Control"] = "max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def _signin_form(self, request: web.Request, status: int = 200, error: str = "", name: str = "") -> web.Response:
        token = new_signin_token()
        nxt = _safe_next(request.query.get("next") or _field(request.get(FORM) or {}, "next"))
        response = self.render(request, "signin.html", status, title="Sign in", signin_csrf=token, error=error, name=name,
                               next=nxt, viewer=self.auth.has_viewer)
        response.set_cookie(SIGNIN_COOKIE, token, path=f"{PREFIX}/signin", httponly=True, samesite="Strict",
                            secure=self._cookie_secure(request), max_age=1800)
        return response

    async def signin_page(self, request: web.Request) -> web.Response:
        if self.auth.read(request.cookies.get(SESSION_COOKIE)) is not None:
            raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
        return self._signin_form(request)

    async def signin(self, request: web.Request) -> web.Response:
        form = await request.post()
        request[FORM] = form
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        presented = _field(form, "csrf")
        if not expected or not presented or not same(expected, presented) or not self._same_origin(request):
            log.warning("console sign-in refused: CSRF token missing or wrong")
            self.metrics.expired_form.inc()
            return self._signin_form(request, 403, "The sign-in form had expired. Please try again.")
        name = _field(form, "name")
        role = self.auth.role_for(_field(form, "token"))
        try:
            name = check_name(name)
        except ValueError as problem:
            return self._signin_form(request, 400, str(problem))
        if role is None:
            log.warning("console sign-in refused: wrong token", remote=request.remote)
            self.metrics.wrong_token.inc()
            await asyncio.sleep(1.0)  # slows guessing; the token itself is never logged
            return self._signin_form(request, 401, "That token is not valid.", name=name)
        cookie, principal = self.auth.issue(name, role)
        log.info("console sign-in", name=principal.name, role=role, remote=request.remote)
        self.metrics.signed_in[role].inc()
        response = web.HTTPSeeOther(_safe_next(_field(form, "next")))
        response.set_cookie(SESSION_COOKIE, cookie, path=PREFIX, httponly=True, samesite="Strict",
                            secure=self._cookie_secure(request), max_age=int(self.auth.lifetime))
        response.del_cookie(SIGNIN_COOKIE, path=f"{PREFIX}/signin")
        raise response

    async def signout(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        self.auth.revoke(principal)
        log.info("console sign-out", name=principal.name, role=principal.role)
        response = web.HTTPSeeOther(f"{PREFIX}/signin?done=signed-out")
        response.del_cookie(SESSION_COOKIE, path=PREFIX)
        raise response

    # -- pages -----------------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        pool = self._pool()
        counts = await queries.alert_counts(pool, days=OVERVIEW_DAYS)
        verdicts = await queries.verdict_totals(pool)
        statuses = counts["by_status"]
        return self.render(
            request, "overview.html", title="Overview",
            counts=counts, statuses=statuses, total=sum(statuses.values()),
            per_day=present.alerts_per_day(counts["by_day"], counts["since"], counts["newest"]),
            per_detector=present.by_detector(counts["by_day"]),
            rates=present.verdict_rates(verdicts, queries.VERDICTS),
            days=OVERVIEW_DAYS,
        )

    async def alerts(self, request: web.Request) -> web.Response:
        q = {key: request.query.get(key, "").strip() for key in ("since", "until", "detector", "severity", "status", "account", "source", "page")}
        rows: list[dict] = []
        error = ""
        page = 1
        try:
            page = int(q["page"] or 1)
            if not 1 <= page <= 10_000:
                raise ValueError
        except ValueError:
            error = "page: a number from 1"
            page = 1
        try:
            if error:
                raise ValueError(error)
            if q["detector"] and q["detector"] not in self.detector_ids:
                raise ValueError(f"detector: {q['detector']!r} is not one of this monitor's detectors")
            rows = await queries.list_alerts(
                self._pool(),
                since=queries.parse_time(q["since"]), until=queries.parse_time(q["until"]),
                detector=q["detector"] or None, severity=q["severity"] or None, account=q["account"] or None,
                status=q["status"] or None, portal=q["source"] or None,
                limit=self.page_size + 1, offset=(page - 1) * self.page_size,
            )
        except ValueError as problem:
            error = str(problem)
        filters = {k: v for k, v in q.items() if v and k != "page"}
        more = len(rows) > self.page_size
        return self.render(
            request, "alerts.html", 400 if error else 200, title="Alerts",
            rows=rows[:self.page_size], q=q, error=error, page=page,
            previous_page=f"{PREFIX}/alerts?{urlencode({**filters, 'page': page - 1})}" if page > 1 else None,
            next_page=f"{PREFIX}/alerts?{urlencode({**filters, 'page': page + 1})}" if more else None,
            detectors=self.detector_ids, filtered=bool(filters),
        )

    async def alert(self, request: web.Request, status: int = 200, error: str = "") -> web.Response:
        pool = self._pool()
        alert = await queries.get_alert(pool, request.match_info["alert_id"])
        sessions = []
        for session_id in alert["session_ids"]:
            try:
                sessions.append(await queries.get_session(pool, session_id))
            except queries.NotFound:
                sessions.append({"session_id": session_id, "missing": True})
        present.tag_sessions(sessions)
        return self.render(
            request, "alert.html", status, title=f"Alert: {alert['detector'].replace('_', ' ')}",
            alert=alert, evidence=present.evidence_view(alert["evidence"]), sessions=sessions, error=error,
            merged=present.interleave(sessions), tags={s["session_id"]: s for s in sessions if s.get("tag")},
            form_note=_field(request.get(FORM) or {}, "note"),
        )

    async def ack(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        form = request[FORM]
        try:
            alert = await queries.acknowledge(self._pool(), request.match_info["alert_id"], principal.name, _text(form, "note"))
        except (queries.Conflict, ValueError) as problem:
            return await self.alert(request, 409 if isinstance(problem, queries.Conflict) else 400, str(problem))
        log.info("console acknowledged", alert_id=alert["alert_id"], actor=principal.name)
        raise web.HTTPSeeOther(f"{PREFIX}/alerts/{alert['alert_id']}?done=acknowledged")

    async def resolve(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        form = request[FORM]
        try:
            alert = await queries.resolve(self._pool(), request.match_info["alert_id"], principal.name,
                                          _field(form, "verdict"), _text(form, "note"))
        except (queries.Conflict, ValueError) as problem:
            return await self.alert(request, 409 if isinstance(problem, queries.Conflict) else 400, str(problem))
        log.info("console resolved", alert_id=alert["alert_id"], verdict=alert["verdict"], actor=principal.name)
        raise web.HTTPSeeOther(f"{PREFIX}/alerts/{alert['alert_id']}?done=resolved")

    async def account(self, request: web.Request) -> web.Response:
        pool = self._pool()
        account_id = request.match_info["account_id"]
        account = await queries.get_account(pool, account_id)
        alerts = await queries.list_alerts(pool, account=account_id, limit=50)
        sessions = await queries.list_sessions(pool, account=account_id, limit=50)
        silences = await queries.list_silences(pool, account=account_id)
        if account is None and not alerts and not sessions:
            raise queries.NotFound(f"no account {account_id!r} in the registry, the alerts or the flagged sessions")
        return self.render(request, "account.html", title=f"Account {account_id}", account_id=account_id,
                           account=account, alerts=alerts, sessions=sessions, silences=silences,
                           detectors=self.detector_ids)

    async def session(self, request: web.Request) -> web.Response:
        session = await queries.get_session(self._pool(), request.match_info["session_id"])
        return self.render(request, "session.html", title=f"Session {session['session_id']}", session=session)

    async def silences(self, request: web.Request, status: int = 200, error: str = "") -> web.Response:
        rows = await queries.list_silences(self._pool(), include_expired=request.query.get("expired") == "1")
        form = request.get(FORM) or {}
        prefill = {key: _field(form, key) or request.query.get(key, "") for key in ("account_id", "detector", "network", "expires", "reason")}
        return self.render(request, "silences.html", status, title="Silences", rows=rows, error=error,
                           detectors=self.detector_ids, prefill=prefill, expired=request.query.get("expired") == "1")

    async def add_silence(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        form = request[FORM]
        try:
            detector = _field(form, "detector") or None
            if detector is not None and detector not in self.detector_ids:
                raise ValueError(f"detector: {detector!r} is not one of {', '.join(self.detector_ids)}")
            expires = queries.parse_expiry(_field(form, "expires"))
            if expires is None:
                raise ValueError("until: required (a time such as 2026-03-09T17:00:00Z, a date, or 2h or 7d from now)")
            silence = await queries.add_silence(
                self._pool(), actor=principal.name, expires=expires,
                account_id=_field(form, "account_id") or None, detector=detector,
                network=_field(form, "network") or None, reason=_text(form, "reason"),
            )
        except ValueError as problem:
            return await self.silences(request, 400, str(problem))
        log.info("console silence added", silence_id=silence["silence_id"], actor=principal.name)
        raise web.HTTPSeeOther(f"{PREFIX}/silences?done=silence-added")

    async def remove_silence(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        raw = request.match_info["silence_id"]
        if not raw.isdigit() or len(raw) > 18:
            raise queries.NotFound(f"no silence {raw!r}")
        await queries.remove_silence(self._pool(), int(raw))
        log.info("console silence removed", silence_id=int(raw), actor=principal.name)
        raise web.HTTPSeeOther(f"{PREFIX}/silences?done=silence-removed")


def _field(form: Any, key: str) -> str:
    value = form.get(key, "") if form else ""
    return value.strip() if isinstance(value, str) else ""


def _text(form: Any, key: str) -> str:
    value = _field(form, key)
    if len(value) > 10_000:
        raise ValueError(f"{key}: at most 10000 characters")
    return value


def _safe_next(target: str | None) -> str:
    """Only a path of this console: never another site (no open redirect)."""
    if not target or not target.startswith(PREFIX) or target.startswith("//") or "\\" in target:
        return f"{PREFIX}/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return f"{PREFIX}/"
    return target
