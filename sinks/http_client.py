"""The aiohttp client session of the HTTP sinks (webhook, Alertmanager), with their TLS options."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from monitor import __version__

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = f"portal-monitor/{__version__}"


def client_session(timeout: float, ca_file: str = "", tls_verify: bool = True) -> aiohttp.ClientSession:
    """A session with a total timeout per request; `ca_file` adds a private CA for https URLs."""
    import aiohttp  # here, not at import: settings and the CLI need not load the HTTP client

    context: ssl.SSLContext | bool
    if not tls_verify:
        context = False
    else:
        context = ssl.create_default_context(cafile=ca_file or None)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        connector=aiohttp.TCPConnector(ssl=context, limit=16),
        headers={"User-Agent": USER_AGENT},
    )


class DeliveryRefused(Exception):
    """The receiver (a webhook, Alertmanager) answered, but not with 2xx."""
