"""`portal-monitor migrate`: bring the store's schema up to date (the only command that does,
with `run` at its start), so responders can query with read-only credentials."""

from __future__ import annotations

import argparse
import sys

from monitor.service.config import load_settings


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "migrate",
        help="apply the store's schema migrations (needs the schema owner's credentials)",
        description="Apply the numbered migrations in monitor/store/sql/ not yet applied to the "
        "PostgreSQL store named by [postgres] (--config, PORTAL_MONITOR_POSTGRES__DSN). `run` does "
        "this at its start; the query commands (alerts, sessions, silences, accounts, networks) "
        "never do, so they work with a read-only role. Safe to run again and from several hosts.",
    )
    add_config_argument(parser)
    parser.set_defaults(func=migrate)


async def migrate(args: argparse.Namespace) -> int:
    import asyncpg

    from monitor import store
    from monitor.commands._shared import fail, log_level, store_problem
    from monitor.support.logging import configure_logging

    settings = load_settings(args.config)
    configure_logging(log_level(args, "warning"), settings.logging.format)
    settings.postgres.pool_min, settings.postgres.pool_max = 1, 1
    try:
        pool = await store.connect(settings.postgres)
    except store.StoreUnreachable as error:
        return fail(str(error))
    except asyncpg.PostgresError as error:
        return fail(f"store refused the connection: {type(error).__name__}: {error}")
    try:
        applied = await store.migrate(pool)
        latest = max(version for version, _, _ in store.migrations())
    except asyncpg.PostgresError as error:
        return fail(store_problem(error) or f"migration failed: {type(error).__name__}: {error}")
    finally:
        await pool.close()
    if applied:
        print(f"applied migration(s) {', '.join(f'{v:04d}' for v in applied)}; schema at {latest:04d}")
    else:
        print(f"schema already at {latest:04d}; nothing to apply", file=sys.stdout)
    return 0
