"""The responder's side: queries over the store (`queries`) and the `/api/v1` routes (`api`).

Its settings are here, away from aiohttp, so reading the configuration does not load the HTTP stack.
"""

from __future__ import annotations

from monitor.contract.settings import Section


class ApiSettings(Section):
    """The responder HTTP API under /api/v1; disabled while no token is configured."""

    token: str = ""
    token_file: str = ""
    max_limit: int = 1000
