"""PostgreSQL: the connection pool and the versioned schema migrations applied at start."""

from __future__ import annotations

import asyncio
import re
from importlib import resources

import asyncpg
import structlog

from monitor.support.redaction import redact_url
from monitor.contract.settings import Section
from monitor.contract.durations import Seconds


log = structlog.get_logger("monitor.store")
MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises migrations between processes starting together (any constant bigint will do).
MIGRATION_LOCK = 0x706F7274616C6D6F  # "portalmo"


class StoreUnreachable(ConnectionError):
    """The store could not be reached; the message names host, port, timeout and cause."""


def dsn_endpoint(dsn: str) -> tuple[str, int, str]:
    """(host, port, database) a DSN names, with PostgreSQL's defaults; ValueError if it is not
    a postgresql:// URL."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL URL (postgresql://user@host:5432/database): {redact_dsn(dsn)!r}")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError(f"bad port in {redact_dsn(dsn)!r}") from None
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    return host, port, parts.path.lstrip("/") or (parts.username or "")


def describe_failure(error: BaseException, timeout: float) -> str:
    """The cause of a failed connection in words: never empty (a timeout's text is)."""
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer within {timeout:g} s (connect_timeout)"
    text = str(error).strip()
    cause = error.__cause__ or error.__context__
    if not text and cause is not None:
        return describe_failure(cause, timeout)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def connect(settings: PostgresSettings) -> asyncpg.Pool:
    """A pool to the store; the password comes from settings (env or file), never the DSN in logs.

    Raises `StoreUnreachable` naming host, port, timeout and cause when it cannot connect; an
    authentication or permission refusal stays an `asyncpg.PostgresError`."""
    try:
        return await _connect(settings)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
        try:
            host, port, database = dsn_endpoint(settings.dsn)
            where = f"PostgreSQL at {host}:{port} (database {database or '?'})"
        except ValueError:
            where = f"PostgreSQL at {redact_dsn(settings.dsn)}"
        raise StoreUnreachable(
            f"{where} not reachable (connect_timeout {float(settings.connect_timeout):g} s): "
            f"{describe_failure(error, float(settings.connect_timeout))}"
        ) from error


async def _connect(settings: PostgresSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.dsn,
        password=settings.password or None,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        timeout=settings.connect_timeout,
        command_timeout=60,
        # asyncpg keeps statements prepared, and after five runs PostgreSQL may settle on a
        # generic plan for good. Ours are made while the tables are still small (the account
        # registry grows from empty as the monitor runs), and such a plan goes stale: the
        # registry's `account_id = ANY($1)` became a sequential scan comparing every row with
        # every id, 100 ms for 500 ids among 20,000 accounts and growing with the table.
        # Planning each run costs about 0.2 ms and keeps index lookups at any size.
        server_settings={"plan_cache_mode": "force_custom_plan"},
    )
    log.info("store connected", dsn=redact_dsn(settings.dsn))
    return pool


class Store:
    """The store as the composition root hands it out: made before it is connected, so every part
    that needs PostgreSQL (the sink, the account registry, checkpoints, the outbox, the API) gets
    it at construction; `open()` connects and migrates at start.

    It answers the pool calls the parts make (`acquire`, `execute`, `executemany`, `fetch`,
    `fetchrow`, `fetchval`), so a part written for an asyncpg pool takes either.
    """

    def __init__(self, settings: "PostgresSettings") -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    @property
    def connected(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the store is not connected yet")
        return self._pool

    def pool_or_none(self) -> asyncpg.Pool | None:
        return self._pool

    async def open(self) -> None:
        pool = await connect(self.settings)
        try:
            await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def acquire(self):
        return self.pool.acquire()

    async def execute(self, *args, **kwargs):
        return await self.pool.execute(*args, **kwargs)

    async def executemany(self, *args, **kwargs):
        return await self.pool.executemany(*args, **kwargs)

    async def fetch(self, *args, **kwargs):
        return await self.pool.fetch(*args, **kwargs)

    async def fetchrow(self, *args, **kwargs):
        return await self.pool.fetchrow(*args, **kwargs)

    async def fetchval(self, *args, **kwargs):
        return await self.pool.fetchval(*args, **kwargs)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("monitor.store").joinpath("sql").iterdir():
        match = MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Apply the migrations not yet applied, each in its own transaction; the versions applied."""
    applied_now = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS portal_monitor_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM portal_monitor_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO portal_monitor_migrations (version, name) VALUES ($1, $2)", version, name
                    )
                applied_now.append(version)
                log.info("migration applied", version=version, name=name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now


class PostgresSettings(Section):
    """The store: alerts, flagged sessions, migrations. TLS via `sslmode=` in the DSN."""

    dsn: str = "postgresql://localhost/portal_monitor"
    password: str = ""
    password_file: str = ""
    pool_min: int = 1
    pool_max: int = 4
    connect_timeout: Seconds = Seconds(10)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password (user info or `?password=`) replaced by `***`, fit for logs."""
    return redact_url(dsn)
