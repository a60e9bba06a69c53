"""The responder HTTP API under `/api/v1`: the CLI's queries as JSON, behind a bearer token.

`Authorization: Bearer <token>` on every route but `/api/v1/openapi.json` (the OpenAPI 3
document, public). The token comes from `PORTAL_MONITOR_API__TOKEN` or `[api] token_file`;
with no token configured the API is not mounted at all. Tokens are compared in constant time.
Errors are JSON `{"error": "..."}`: 400 bad filter, 401 no or wrong token, 404, 409 state
conflict, 503 store not reachable.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

import asyncpg
import msgspec
import structlog
from aiohttp import web

from monitor import __version__

from monitor.response import queries as responder
from monitor.contract.alerts import SEVERITIES

log = structlog.get_logger("monitor.response.api")
PREFIX = "/api/v1"
ALERT_FILTERS = {"since", "until", "detector", "severity", "account", "source", "status", "limit"}
PUPIL_ACCESS_FILTERS = {"since", "until", "limit"}
SESSION_FILTERS = {"since", "until", "account", "alert", "limit", "flagged"}
_encode = msgspec.json.Encoder(enc_hook=str).encode


def _check_text(name: str, value: str) -> None:
    """A text parameter the store can hold: no NUL (PostgreSQL text cannot), valid UTF-8."""
    if "\x00" in value:
        raise ValueError(f"{name}: must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise ValueError(f"{name}: not valid UTF-8") from None


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(data), status=status, content_type="application/json")


def error(status: int, message: str, **headers: str) -> web.Response:
    response = json_response({"error": message}, status)
    response.headers.update(headers)
    return response


class ResponderApi:
    """Handlers over a pool getter (the pool exists only once the store is connected)."""

    def __init__(self, token: str, pool: Callable[[], Any], max_limit: int = 1000) -> None:
        if not token:
            raise ValueError("the API needs a token")
        self._token = token.encode()
        self._pool = pool
        self.max_limit = max_limit

    def routes(self) -> list[web.RouteDef]:
        guard = self._guarded
        return [
            web.get(f"{PREFIX}/openapi.json", self.openapi),
            web.get(f"{PREFIX}/alerts", guard(self.list_alerts)),
            web.get(f"{PREFIX}/alerts/{{alert_id}}", guard(self.show_alert)),
            web.post(f"{PREFIX}/alerts/{{alert_id}}/ack", guard(self.ack_alert)),
            web.post(f"{PREFIX}/alerts/{{alert_id}}/resolve", guard(self.resolve_alert)),
            web.get(f"{PREFIX}/sessions", guard(self.list_sessions)),
            web.get(f"{PREFIX}/sessions/{{session_id}}", guard(self.show_session)),
            web.get(f"{PREFIX}/pupils/{{pupil_id}}/access", guard(self.pupil_access)),
            web.get(f"{PREFIX}/silences", guard(self.list_silences)),
            web.post(f"{PREFIX}/silences", guard(self.add_silence)),
            web.delete(f"{PREFIX}/silences/{{silence_id}}", guard(self.remove_silence)),
        ]

    # -- auth and errors -------------------------------------------------------------------------

    def authorised(self, request: web.Request) -> bool:
        """Whether the request presents the token. Never raises and never logs what was presented:
        a header with bytes that are not UTF-8 is simply not the token."""
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        try:
            candidate = presented.strip().encode("utf-8", "surrogateescape")
        except UnicodeError:
            return False
        return hmac.compare_digest(candidate, self._token)

    def _guarded(self, handler: Callable[[web.Request], Awaitable[web.Response]]):
        async def guarded(request: web.Request) -> web.Response:
            if not self.authorised(request):
                return error(401, "missing or wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="portal-monitor"'})
            pool = self._pool()
            if pool is None:
                return error(503, "store not connected yet")
            try:
                for name, value in (*request.query.items(), *request.match_info.items()):
                    _check_text(name, value)
                return await handler(request)
            except ValueError as problem:
                return error(400, str(problem))
            except responder.NotFound as problem:
                return error(404, str(problem.args[0]) if problem.args else "not found")
            except responder.Conflict as problem:
                return error(409, str(problem))
            except (OSError, ConnectionError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as problem:
                return error(503, f"store not reachable: {type(problem).__name__}")
            except (asyncpg.DataError, asyncpg.ProgramLimitExceededError) as problem:
                # a value the store cannot take (out of range, too long): the client's to fix
                return error(400, f"a value is out of the store's range ({type(problem).__name__})")
            except asyncpg.PostgresError as problem:
                log.warning("api query failed", route=request.rel_url.path, error=type(problem).__name__)
                return error(500, "store error")
            except Exception as problem:  # a bug: say so without echoing the request (it may hold secrets)
                log.error("api handler failed", route=request.rel_url.path, error=type(problem).__name__)
                return error(500, "internal error")

        return guarded

    @staticmethod
    def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
        unknown = set(request.query) - allowed
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}")
        return {key: request.query[key] for key in request.query}

    @staticmethod
    async def _body(request: web.Request) -> dict:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise ValueError("body: not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("body: a JSON object please")
        return body

    @staticmethod
    def _actor(request: web.Request, body: dict) -> str:
        actor = body.get("actor") or request.headers.get("X-Portal-Monitor-Actor") or "api"
        if not isinstance(actor, str) or len(actor) > 200:
            raise ValueError("actor: a name of at most 200 characters")
        _check_text("actor", actor)
        return actor

    @staticmethod
    def _text(body: dict, key: str, default: str = "") -> str:
        value = body.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str) or len(value) > 10_000:
            raise ValueError(f"{key}: text of at most 10000 characters")
        _check_text(key, value)
        return value

    # -- alerts ------------------------------------------------------------------------------------

    async def list_alerts(self, request: web.Request) -> web.Response:
        q = self._query(request, ALERT_FILTERS)
        rows = await responder.list_alerts(
            self._pool(),
            since=responder.parse_time(q.get("since")),
            until=responder.parse_time(q.get("until")),
            detector=q.get("detector"),
            severity=q.get("severity"),
            account=q.get("account"),
            source=q.get("source"),
            status=q.get("status"),
            limit=responder.check_limit(q.get("limit"), self.max_limit),
        )
        return json_response({"alerts": rows})

    async def show_alert(self, request: web.Request) -> web.Response:
        return json_response(await responder.get_alert(self._pool(), request.match_info["alert_id"]))

    async def ack_alert(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        alert = await responder.acknowledge(
            self._pool(), request.match_info["alert_id"], self._actor(request, body), self._text(body, "note")
        )
        return json_response(alert)

    async def resolve_alert(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        alert = await responder.resolve(
            self._pool(),
            request.match_info["alert_id"],
            self._actor(request, body),
            self._text(body, "verdict"),
            self._text(body, "note"),
        )
        return json_response(alert)

    # -- sessions ----------------------------------------------------------------------------------

    async def list_sessions(self, request: web.Request) -> web.Response:
        q = self._query(request, SESSION_FILTERS)
        flagged = q.get("flagged", "true")
        if flagged not in ("true", "1", "false", "0"):
            raise ValueError("flagged: true or false")
        responder.parse_time(q.get("since")), responder.parse_time(q.get("until"))  # checked either way
        responder.check_limit(q.get("limit"), self.max_limit)
        if flagged in ("false", "0"):
            return json_response({"sessions": []})  # only flagged sessions are stored
        rows = await responder.list_sessions(
            self._pool(),
            since=responder.parse_time(q.get("since")),
            until=responder.parse_time(q.get("until")),
            account=q.get("account"),
            alert_id=q.get("alert"),
            limit=responder.check_limit(q.get("limit"), self.max_limit),
        )
        return json_response({"sessions": rows})

    async def pupil_access(self, request: web.Request) -> web.Response:
        q = self._query(request, PUPIL_ACCESS_FILTERS)
        found = await responder.pupil_access(
            self._pool(),
            request.match_info["pupil_id"],
            since=responder.parse_time(q.get("since")),
            until=responder.parse_time(q.get("until")),
            limit=responder.check_limit(q.get("limit"), self.max_limit, default=self.max_limit),
        )
        return json_response(found)

    async def show_session(self, request: web.Request) -> web.Response:
        return json_response(await responder.get_session(self._pool(), request.match_info["session_id"]))

    # -- silences ------------------------------------------------------------------------------------

    async def list_silences(self, request: web.Request) -> web.Response:
        q = self._query(request, {"expired"})
        rows = await responder.list_silences(self._pool(), include_expired=q.get("expired") in ("true", "1"))
        return json_response({"silences": rows})

    async def add_silence(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        expires = responder.parse_time(self._text(body, "expires"))
        if expires is None:
            raise ValueError("expires: required (RFC 3339 time)")
        silence = await responder.add_silence(
            self._pool(),
            actor=self._actor(request, body),
            expires=expires,
            starts=responder.parse_time(self._text(body, "starts")),
            account_id=self._text(body, "account_id") or None,
            detector=self._text(body, "detector") or None,
            network=self._text(body, "network") or None,
            reason=self._text(body, "reason"),
        )
        return json_response(silence, 201)

    async def remove_silence(self, request: web.Request) -> web.Response:
        raw = request.match_info["silence_id"]
        if not raw.isdigit() or len(raw) > 18:
            raise ValueError("silence id: a number")
        await responder.remove_silence(self._pool(), int(raw))
        return json_response({"removed": int(raw)})

    # -- the document ------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi_document())


def mount(app: web.Application, token: str, pool: Callable[[], Any], max_limit: int = 1000) -> bool:
    """Add the API's routes to `app` if a token is configured; whether it was mounted."""
    if not token:
        log.warning("responder API disabled: no token configured (set PORTAL_MONITOR_API__TOKEN or [api] token_file)")
        return False
    app.router.add_routes(ResponderApi(token, pool, max_limit).routes())
    log.info("responder API enabled", prefix=PREFIX)
    return True


def openapi_document() -> dict:
    """The OpenAPI 3.0 description of the API."""

    def param(name: str, description: str, schema: dict | None = None) -> dict:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or {"type": "string"}}

    def path_param(name: str) -> dict:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    def ok(ref: str, description: str = "OK") -> dict:
        return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}

    errors = {
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "503": {"$ref": "#/components/responses/Unavailable"},
    }
    since = param("since", "RFC 3339 time, date, or age such as 24h or 7d")
    until = param("until", "RFC 3339 time or date (exclusive)")
    limit = param("limit", "at most this many (1-1000, default 100)", {"type": "integer", "minimum": 1, "maximum": 1000})
    account = param("account", "account id")
    note_body = {
        "type": "object",
        "properties": {"note": {"type": "string"}, "actor": {"type": "string", "description": "who acts (default: the X-Portal-Monitor-Actor header, else 'api')"}},
    }
    timestamp = {"type": "string", "format": "date-time"}
    optional_time = {"type": "string", "format": "date-time", "nullable": True}  # null until it happened
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "portal-monitor responder API",
            "version": __version__,
            "description": "Alerts, flagged sessions with the timeline of what was viewed, and silences.",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": {
            "/alerts": {
                "get": {
                    "summary": "List alerts, newest first",
                    "parameters": [
                        since, until, param("detector", "detector id"),
                        param("severity", "severity", {"type": "string", "enum": list(SEVERITIES)}),
                        account,
                        param("source", "alerts about a source (password_spray) within or containing this address or CIDR network"),
                        param("status", "lifecycle status", {"type": "string", "enum": list(responder.STATUSES)}), limit,
                    ],
                    "responses": {"200": ok("AlertList"), **errors},
                }
            },
            "/alerts/{alert_id}": {
                "get": {
                    "summary": "One alert: evidence, policy, responder actions, repeats, deliveries",
                    "parameters": [path_param("alert_id")],
                    "responses": {"200": ok("AlertDetail"), "404": {"$ref": "#/components/responses/NotFound"}, **errors},
                }
            },
            "/alerts/{alert_id}/ack": {
                "post": {
                    "summary": "Acknowledge an open alert",
                    "parameters": [path_param("alert_id")],
                    "requestBody": {"content": {"application/json": {"schema": note_body}}},
                    "responses": {"200": ok("AlertDetail"), "404": {"$ref": "#/components/responses/NotFound"},
                                  "409": {"$ref": "#/components/responses/Conflict"}, **errors},
                }
            },
            "/alerts/{alert_id}/resolve": {
                "post": {
                    "summary": "Resolve an alert with a verdict",
                    "parameters": [path_param("alert_id")],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["verdict"],
                        "properties": {**note_body["properties"], "verdict": {"type": "string", "enum": list(responder.VERDICTS)}},
                    }}}},
                    "responses": {"200": ok("AlertDetail"), "404": {"$ref": "#/components/responses/NotFound"},
                                  "409": {"$ref": "#/components/responses/Conflict"}, **errors},
                }
            },
            "/sessions": {
                "get": {
                    "summary": "List flagged sessions, most recent first",
                    "parameters": [since, until, account, param("alert", "sessions flagged by this alert id"),
                                   param("flagged", "only flagged sessions are stored", {"type": "boolean"}), limit],
                    "responses": {"200": ok("SessionList"), **errors},
                }
            },
            "/sessions/{session_id}": {
                "get": {
                    "summary": "A flagged session and its timeline: login, items viewed, logout or expiry",
                    "parameters": [path_param("session_id")],
                    "responses": {"200": ok("SessionDetail"), "404": {"$ref": "#/components/responses/NotFound"}, **errors},
                }
            },
            "/pupils/{pupil_id}/access": {
                "get": {
                    "summary": "Who viewed, downloaded, printed or exported a pupil's record: per account, counts by "
                               "action, first and last time, days and addresses (subject access requests, breaches)",
                    "parameters": [path_param("pupil_id"), since, until, limit],
                    "responses": {"200": ok("PupilAccess"), **errors},
                }
            },
            "/silences": {
                "get": {
                    "summary": "Silences (active, or all with expired=true)",
                    "parameters": [param("expired", "include expired silences", {"type": "boolean"})],
                    "responses": {"200": ok("SilenceList"), **errors},
                },
                "post": {
                    "summary": "Add a silence (by account, detector and/or network, until expires)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewSilence"}}}},
                    "responses": {"201": ok("Silence", "Created"), **errors},
                },
            },
            "/silences/{silence_id}": {
                "delete": {
                    "summary": "Remove a silence",
                    "parameters": [path_param("silence_id")],
                    "responses": {"200": {"description": "Removed"}, "404": {"$ref": "#/components/responses/NotFound"}, **errors},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3 document"}}}
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                name: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for name, text in (
                    ("BadRequest", "A filter or body value is not valid"),
                    ("Unauthorized", "Missing or wrong bearer token"),
                    ("NotFound", "No such alert, session or silence"),
                    ("Conflict", "Not possible in the alert's current state"),
                    ("Unavailable", "The store is not reachable"),
                )
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
                "Alert": {
                    "type": "object",
                    "properties": {
                        "alert_id": {"type": "string"}, "ts": timestamp, "detector": {"type": "string"},
                        "severity": {"type": "string", "enum": list(SEVERITIES)}, "account_id": {"type": "string"},
                        "source": {"type": "string", "nullable": True,
                                   "description": "the network or address an alert about a source is about; empty account_id then"},
                        "portal": {"type": "string", "nullable": True},
                        "status": {"type": "string", "enum": list(responder.STATUSES)},
                        "verdict": {"type": "string", "nullable": True, "enum": [*responder.VERDICTS, None]},
                        "repeat_count": {"type": "integer"}, "last_seen": timestamp, "summary": {"type": "string"},
                    },
                },
                "AlertList": {"type": "object", "properties": {"alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}},
                "AlertDetail": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Alert"},
                        {"type": "object", "properties": {
                            "detected_at": timestamp, "session_ids": {"type": "array", "items": {"type": "string"}},
                            "evidence": {"type": "object"}, "policy": {"type": "string"},
                            "acknowledged_at": optional_time, "acknowledged_by": {"type": "string", "nullable": True},
                            "resolved_at": optional_time, "resolved_by": {"type": "string", "nullable": True},
                            "actions": {"type": "array", "items": {"type": "object", "properties": {
                                "at": timestamp, "actor": {"type": "string"}, "action": {"type": "string"},
                                "verdict": {"type": "string", "nullable": True}, "note": {"type": "string", "nullable": True},
                            }}},
                            "repeats": {"type": "array", "items": {"type": "object"}},
                            "deliveries": {"type": "array", "items": {"type": "object"}},
                        }},
                    ]
                },
                "Session": {
                    "type": "object",
                    "properties": {
                        "session_id": {"type": "string"}, "account_id": {"type": "string"}, "portal": {"type": "string", "nullable": True},
                        "opened_at": timestamp, "last_activity": timestamp, "closed_at": optional_time,
                        "close_reason": {"type": "string", "nullable": True}, "ip": {"type": "string", "nullable": True},
                        "last_ip": {"type": "string", "nullable": True}, "page_views": {"type": "integer"},
                        "alert_ids": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "PupilAccess": {"type": "object", "properties": {
                    "pupil_id": {"type": "string"},
                    "since": {"type": "string", "format": "date-time", "nullable": True},
                    "until": {"type": "string", "format": "date-time", "nullable": True},
                    "accounts": {"type": "array", "items": {"type": "object", "properties": {
                        "account_id": {"type": "string"},
                        "views": {"type": "integer"}, "downloads": {"type": "integer"},
                        "prints": {"type": "integer"}, "exports": {"type": "integer"},
                        "first_at": {"type": "string", "format": "date-time"},
                        "last_at": {"type": "string", "format": "date-time"},
                        "days": {"type": "integer"},
                        "addresses": {"type": "array", "items": {"type": "string"}},
                    }}},
                }},
                "SessionList": {"type": "object", "properties": {"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}}},
                "SessionDetail": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Session"},
                        {"type": "object", "properties": {
                            "timeline": {"type": "array", "items": {"type": "object", "properties": {
                                "at": timestamp, "event": {"type": "string"}, "resource": {"type": "string", "nullable": True},
                                "ip": {"type": "string", "nullable": True}, "detail": {"type": "string", "nullable": True},
                            }}},
                            "alerts": {"type": "array", "items": {"type": "object"}},
                        }},
                    ]
                },
                "NewSilence": {
                    "type": "object", "required": ["expires"],
                    "properties": {
                        "account_id": {"type": "string"}, "detector": {"type": "string"},
                        "network": {"type": "string", "description": "CIDR, e.g. 192.0.2.0/24"},
                        "starts": timestamp, "expires": timestamp, "reason": {"type": "string"}, "actor": {"type": "string"},
                    },
                },
                "Silence": {"type": "object", "properties": {
                    "silence_id": {"type": "integer"}, "account_id": {"type": "string", "nullable": True},
                    "detector": {"type": "string", "nullable": True}, "network": {"type": "string", "nullable": True},
                    "starts_at": timestamp, "expires_at": timestamp, "reason": {"type": "string"},
                    "created_by": {"type": "string"}, "created_at": timestamp,
                }},
                "SilenceList": {"type": "object", "properties": {"silences": {"type": "array", "items": {"$ref": "#/components/schemas/Silence"}}}},
            },
        },
    }
