"""Credentials inside DSNs and URLs, masked for logs and `check-config`.

A DSN or URL can carry a secret in its user info (`user:pass@host`) or in its query
(`?password=...` for libpq, `?token=...` for many webhooks). `redact_url` masks both;
`monitor.service.config.secret_values` collects them so the log redactor
(`monitor.support.logging.Redacting`) masks them in every line, whatever logged them.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that carry a credential (libpq's `password`, `sslpassword`; webhook and
# API conventions: token, access_token, api_key, sig, signature, secret, auth...).
SECRET_PARAMETERS = re.compile(r"pass|pwd|token|secret|key|sig|auth|credential|session", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with the password of its user info and every secret-looking query parameter
    replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"  # not a URL at all: show nothing of it
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, "***" if SECRET_PARAMETERS.search(name) else value) for name, value in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> list[str]:
    """The secrets inside `url`: its user info's password and its secret query parameters."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found.extend(value for name, value in parse_qsl(parts.query) if SECRET_PARAMETERS.search(name) and value)
    except ValueError:
        return []
    return found
