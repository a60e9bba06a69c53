"""What incident responders use: queries over the store (`queries`), the `/api/v1` routes
(`api`) and the console under /ui (`console`).

Their settings are here, away from aiohttp, so reading the configuration does not load the HTTP stack.
"""

from __future__ import annotations

from monitor.contract.durations import Seconds
from monitor.contract.settings import Section


class ApiSettings(Section):
    """The responder HTTP API under /api/v1 and the console under /ui; both off while no token is configured."""

    token: str = ""
    """The responder token: the API's bearer token, and the console's sign-in as a responder
    (acknowledge, resolve, silence)."""
    token_file: str = ""
    viewer_token: str = ""
    """Signs in to the console as a viewer: every page, no action. Empty: no viewer sign-in."""
    viewer_token_file: str = ""
    console: bool = True
    """Serve the responder console under /ui (needs `token`)."""
    session_lifetime: Seconds = Seconds(8 * 3600)
    """A console sign-in lasts this long, then asks for the token again."""
    max_limit: int = 1000
