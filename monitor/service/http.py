"""The HTTP side: `/metrics` for Prometheus, `/livez` and `/readyz` for orchestrators.

Other features add their routes (the responder API) to the same application before start.
"""

from __future__ import annotations

from typing import Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.support.metrics import Metrics

log = structlog.get_logger("monitor.service.http")


def build_app(metrics: Metrics, readiness: Callable[[], tuple[bool, str]]) -> web.Application:
    """`readiness()` returns (ready, reason); /readyz answers 503 with the reason until ready."""

    async def metrics_page(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        ready, reason = readiness()
        return web.json_response({"status": "ready" if ready else "not ready", "reason": reason}, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app


class HttpServer:
    """Runs an aiohttp application on one host and port until closed."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # noqa: SLF001
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("http listening", host=self.host, port=self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
