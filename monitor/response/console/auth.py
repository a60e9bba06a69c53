"""Console sign-in: a role's token exchanged for a signed session cookie, and CSRF tokens.

Two roles: `responder` (the API token: every page, acknowledge, resolve, silence) and `viewer`
(its own token: every page, no action). The sign-in form takes the token and the person's name;
actions are recorded under that name. Tokens are compared in constant time and never logged.

The session cookie is `payload.signature`: the payload (session id, name, role, expiry) signed
with HMAC-SHA256 under a key derived from the configured tokens, so every monitor process
behind one address accepts it and rotating a token signs everyone out. It is HttpOnly,
SameSite=Strict, and Secure when the request came over TLS (directly, or per
`X-Forwarded-Proto: https` from the proxy in front). Signing out revokes the session id in
this process and clears the cookie; a session otherwise ends at its expiry.

CSRF: every form carries a token derived from the session id (HMAC under the same key);
a POST without it, or with another session's, is refused. The sign-in form, before any
session, uses a double-submit token: a random value in a SameSite=Strict cookie and the form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Callable

ROLES = ("viewer", "responder")
SESSION_COOKIE = "portal_monitor_console"
SIGNIN_COOKIE = "portal_monitor_signin"
NAME_MAX = 60


@dataclass(frozen=True)
class Principal:
    """Who is signed in: the name they gave, their role, their session id and its expiry."""

    name: str
    role: str
    session_id: str
    expires: float

    @property
    def may_act(self) -> bool:
        return self.role == "responder"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def same(presented: str, expected: str) -> bool:
    """Constant-time equality of two texts (any characters: compared as UTF-8 bytes)."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def check_name(name: str) -> str:
    """The name a person signs in with: 1 to 60 printable characters, kept as the actor of actions."""
    name = " ".join(name.split())
    if not name:
        raise ValueError("give your name: actions are recorded under it")
    if len(name) > NAME_MAX or not name.isprintable():
        raise ValueError(f"a name of at most {NAME_MAX} printable characters please")
    return name


class ConsoleAuth:
    def __init__(self, responder_token: str, viewer_token: str = "", lifetime: float = 8 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        if not responder_token:
            raise ValueError("the console needs the responder (API) token")
        self._tokens = [(responder_token.encode(), "responder")]
        if viewer_token:
            if hmac.compare_digest(viewer_token.encode(), responder_token.encode()):
                raise ValueError("the viewer token must differ from the responder token")
            self._tokens.append((viewer_token.encode(), "viewer"))
        self._key = hashlib.sha256(
            b"portal-monitor console session v1\0" + b"\0".join(token for token, _ in self._tokens)
        ).digest()
        self.lifetime = float(lifetime)
        self._clock = clock
        self._revoked: dict[str, float] = {}

    @property
    def has_viewer(self) -> bool:
        return len(self._tokens) > 1

    def role_for(self, presented: str) -> str | None:
        """The role whose token this is, or None; every token is compared, in constant time."""
        given = presented.strip().encode("utf-8", "surrogatepass")
        found = None
        for token, role in self._tokens:
            if hmac.compare_digest(given, token) and found is None:
                found = role
        return found

    def issue(self, name: str, role: str) -> tuple[str, Principal]:
        """A new session for `name` in `role`: the cookie value and who it stands for."""
        if role not in ROLES:
            raise ValueError(f"role: one of {', '.join(ROLES)}")
        principal = Principal(check_name(name), role, secrets.token_urlsafe(18), self._clock() + self.lifetime)
        payload = _b64(json.dumps(
            {"sid": principal.session_id, "name": principal.name, "role": role, "exp": int(principal.expires)},
            separators=(",", ":"),
        ).encode())
        return f"{payload}.{self._sign(b'session', payload.encode())}", principal

    def read(self, cookie: str | None) -> Principal | None:
        """The signed-in principal of a cookie, or None if absent, forged, expired or signed out."""
        if not cookie or len(cookie) > 1024 or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not same(signature, self._sign(b"session", payload.encode("utf-8", "surrogatepass"))):
            return None
        try:
            data = json.loads(_unb64(payload))
            principal = Principal(str(data["name"]), str(data["role"]), str(data["sid"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if principal.role not in ROLES or principal.expires <= self._clock() or principal.session_id in self._revoked:
            return None
        return principal

    def revoke(self, principal: Principal) -> None:
        now = self._clock()
        self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
        self._revoked[principal.session_id] = principal.expires

    def csrf_token(self, principal: Principal) -> str:
        return self._sign(b"csrf", principal.session_id.encode())

    def csrf_ok(self, principal: Principal, presented: str | None) -> bool:
        return bool(presented) and same(presented, self.csrf_token(principal))

    def _sign(self, purpose: bytes, data: bytes) -> str:
        return _b64(hmac.new(self._key, purpose + b"\0" + data, hashlib.sha256).digest())


def new_signin_token() -> str:
    """The double-submit token of the sign-in form (cookie and hidden field)."""
    return secrets.token_urlsafe(18)
