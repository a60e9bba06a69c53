"""structlog set-up: JSON lines in production, pretty on a terminal; stdlib logs routed through it.

Following structlog's performance guide: filtering bound logger (levels below the threshold
cost one method call), cached loggers, and orjson-free JSON via the stdlib. Nothing on the
hot path logs per event; context (partition, batch size) is bound per batch.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Iterable

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Redacting:
    """A renderer that replaces every known secret in the rendered line with `***`, whatever
    logged it (our code, aiohttp, asyncpg, an exception's text)."""

    def __init__(self, renderer, secrets: Iterable[str]) -> None:
        self.renderer = renderer
        forms = set()
        for secret in secrets:
            if secret:
                forms.update({secret, json.dumps(secret)[1:-1]})  # as is, and as a JSON line escapes it
        self.secrets = tuple(sorted(forms, key=len, reverse=True))

    def __call__(self, logger, name, event_dict):
        line = self.renderer(logger, name, event_dict)
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, "***")
        return line


class ClientErrorFilter(logging.Filter):
    """aiohttp logs a malformed request (a control character in a header, say) as an error with
    the offending header line, which can be a presented `Authorization` token. It is the
    client's fault and answered 400: keep a one-line note, never the request's bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__module__ == "aiohttp.http_exceptions":
            record.msg, record.args = "malformed request refused: %s", (type(error).__name__,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(level: str = "info", fmt: str = "auto", stream=None, secrets: Iterable[str] = ()) -> None:
    """Configure structlog and the stdlib root logger (aiokafka, asyncpg, aiohttp) alike.

    `secrets` (from `monitor.config.secret_values`) are masked in every line."""
    stream = stream or sys.stderr
    pretty = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    secrets = tuple(secrets)
    if secrets:
        renderer = Redacting(renderer, secrets)
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info, renderer]
        if not pretty
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(LEVELS[level], logging.INFO))
    logging.getLogger("aiohttp.server").filters[:] = [ClientErrorFilter()]
    # aiokafka is chatty at INFO about group coordination; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(LEVELS[level], logging.WARNING))
