"""What the responder commands (alerts, sessions, silences) share: the store connection,
the acting person's name, and output as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import os
import sys
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Iterable, Sequence

import msgspec

from monitor.service.config import load_settings

FORMATS = ("table", "json", "csv")
_json = msgspec.json.Encoder(enc_hook=str)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    from monitor.commands.cli import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def add_actor_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", default=None, help="who acts (default: your login name)")


def actor(args: argparse.Namespace) -> str:
    return args.actor or os.environ.get("USER") or getpass.getuser()


@asynccontextmanager
async def store(args: argparse.Namespace):
    """A pool on the store named by [postgres] (--config, PORTAL_MONITOR_POSTGRES__*), migrated."""
    from monitor import store as store_module

    settings = load_settings(args.config)
    settings.postgres.pool_min = 1
    settings.postgres.pool_max = 2
    pool = await store_module.connect(settings.postgres)
    try:
        await store_module.migrate(pool)
        yield pool
    finally:
        await pool.close()


def cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = ""
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S%z").replace("+0000", "Z")
    elif isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def print_rows(rows: Sequence[dict], columns: Sequence[str], fmt: str, widths: dict[str, int] | None = None, out=None) -> None:
    """Rows as an aligned table, a JSON array or CSV with a header line."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(_json.encode(list(rows)).decode() + "\n")
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in columns])
        out.write(buffer.getvalue())
        return
    widths = widths or {}
    table = [[cell(row.get(c), widths.get(c)) for c in columns] for row in rows]
    sizes = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(sizes[i]) for i, c in enumerate(columns)).rstrip() + "\n")
    for r in table:
        out.write("  ".join(v.ljust(sizes[i]) for i, v in enumerate(r)).rstrip() + "\n")
    if not table:
        out.write("(none)\n")


def print_fields(data: dict, fields: Iterable[str], out=None) -> None:
    out = out or sys.stdout
    fields = list(fields)
    size = max(len(f) for f in fields)
    for field in fields:
        out.write(f"{field.replace('_', ' ') + ':':<{size + 2}}{cell(data.get(field))}\n")


def print_json(data: Any, out=None) -> None:
    (out or sys.stdout).write(_json.encode(data).decode() + "\n")


def fail(message: str, code: int = 1) -> int:
    print(f"portal-monitor: {message}", file=sys.stderr)
    return code


async def run_with_store(args: argparse.Namespace, action) -> int:
    """Run `action(pool)`; bad input exits 2, a missing alert/session, a state conflict or an
    unreachable store exit 1, each with one line on stderr."""
    import asyncpg

    from monitor.response import queries as responder
    from monitor.support.logging import configure_logging

    configure_logging("warning")
    try:
        async with store(args) as pool:
            return await action(pool)
    except ValueError as error:
        return fail(str(error), 2)
    except (responder.NotFound, responder.Conflict) as error:
        return fail(str(error.args[0]) if error.args else type(error).__name__)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
        return fail(f"store not reachable: {error}")
    except asyncpg.PostgresError as error:
        return fail(f"store error: {type(error).__name__}: {error}")
