"""What the commands share: the store connection (never migrating), the acting person's name,
detector names checked as they are typed, and one way to print: `-o/--output table|json|csv`.

The output contract, the same for every listing and showing command:
- `table` (default): aligned columns fitted to the terminal's width (long text cut with `…`;
  a pipe gets whole lines), severities in colour on a terminal unless NO_COLOR is set.
- `json`: one JSON document on one line: an array of objects for a listing, one object for
  a showing command (`alerts show`, `sessions show`, `accounts show`, ...).
- `csv`: a header line, then one row per item.
Times are RFC 3339 in UTC with a `Z` everywhere (`2026-03-02T08:05:00Z`).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import ipaddress
import os
import shutil
import sys
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Sequence

import msgspec

from monitor.service.config import load_settings

OUTPUTS = ("table", "json", "csv")
OUTPUT_HELP = (
    "table (default: fitted to the terminal), json (an array for a listing, an object for one item) "
    "or csv; times are RFC 3339 UTC"
)
# Columns whose text may be cut to fit the terminal, in the order they give way.
FLEXIBLE = ("summary", "reason", "detail", "resource", "note", "last_error", "alert_ids", "where", "status_reason",
            "user_agent", "session_ids")
MIN_FLEX = 12
MIN_OTHER = 8
EXIT_USAGE = 2


# -- arguments -----------------------------------------------------------------------------------


def add_output_argument(parser: argparse.ArgumentParser, default: str = "table", extra: tuple[str, ...] = ()) -> None:
    """`-o/--output`; the older `--format` (and `text` for table) still works, unlisted."""
    choices = OUTPUTS + extra
    parser.add_argument("-o", "--output", dest="output", choices=choices, default=default, help=OUTPUT_HELP)
    parser.add_argument("--format", dest="output", type=_old_format, choices=choices, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def _old_format(text: str) -> str:
    return "table" if text == "text" else text


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    from monitor.commands.cli import add_config_argument

    add_config_argument(parser)
    add_output_argument(parser)


def add_actor_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", default=None, help="who acts (default: your login name)")


def actor(args: argparse.Namespace) -> str:
    return args.actor or os.environ.get("USER") or getpass.getuser()


def detector_name(text: str) -> str:
    """An argparse `type`: a detector id as `detectors.registry` knows it, or a one-line error
    with the nearest id ("did you mean ...?") and the list."""
    from detectors.registry import detector_ids
    from monitor.service.checks import check_detector

    return check_detector(text, detector_ids(), argparse.ArgumentTypeError)


def log_level(args: argparse.Namespace, default: str) -> str:
    """`--log-level` if given, else `default`."""
    return getattr(args, "log_level", None) or default


# -- the store -------------------------------------------------------------------------------------


@asynccontextmanager
async def store(args: argparse.Namespace):
    """A small pool on the store named by [postgres]; never migrates, so a read-only role works."""
    from monitor import store as store_module

    settings = load_settings(args.config)
    settings.postgres.pool_min = 1
    settings.postgres.pool_max = 2
    pool = await store_module.connect(settings.postgres)
    try:
        yield pool
    finally:
        await pool.close()


def fail(message: str, code: int = 1) -> int:
    print(f"portal-monitor: {message}", file=sys.stderr)
    return code


def store_problem(error: BaseException) -> str | None:
    """One line for a store error a person can act on, or None if it is not one of those."""
    import asyncpg

    if isinstance(error, asyncpg.UndefinedTableError):
        return (f"the store has no portal-monitor schema yet ({error}): run `portal-monitor migrate` "
                "with the owner's credentials")
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        return (f"the store refused: {error}; grant the responder role what docs/deployment.md "
                "(Read-only responders) lists")
    return None


async def run_with_store(args: argparse.Namespace, action) -> int:
    """Run `action(pool)`; bad input exits 2, a missing alert/session, a state conflict or an
    unreachable store exit 1, each with one line on stderr."""
    import asyncpg

    from monitor.response import queries as responder
    from monitor.store import StoreUnreachable
    from monitor.support.logging import configure_logging

    configure_logging(log_level(args, "warning"))
    try:
        async with store(args) as pool:
            return await action(pool)
    except (ValueError, OverflowError) as error:
        return fail(str(error), EXIT_USAGE)
    except (responder.NotFound, responder.Conflict) as error:
        return fail(str(error.args[0]) if error.args else type(error).__name__)
    except StoreUnreachable as error:
        return fail(str(error))
    except BrokenPipeError:
        raise  # stdout's reader left (`| head`): not the store's doing
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
        return fail(f"store not reachable: {type(error).__name__}: {error or 'no reason given'}")
    except asyncpg.PostgresError as error:
        return fail(store_problem(error) or f"store error: {type(error).__name__}: {error}")


# -- output ------------------------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    """`2026-03-02T08:05:00Z`: UTC, seconds (milliseconds when there are any)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds").replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: times in RFC 3339 UTC, addresses and the rest as text."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, msgspec.Struct):
        return plain(msgspec.to_builtins(value))
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    return str(value)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return msgspec.json.encode(plain(value)).decode()
    return str(value).replace("\n", " ").replace("\r", " ")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def terminal_width(out) -> int | None:
    """Columns to fit a table in: the terminal's (or $COLUMNS); None for a pipe (whole lines)."""
    isatty = getattr(out, "isatty", lambda: False)()
    if not isatty and "COLUMNS" not in os.environ:
        return None
    columns = shutil.get_terminal_size(fallback=(100, 24)).columns
    return max(columns, 40)


def use_colour(out) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(out, "isatty", lambda: False)())


COLOURS = {
    "critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m", "low": "\033[2m",
    "open": "\033[33m", "resolved": "\033[32m", "silenced": "\033[2m",
    "on": "\033[32m", "off": "\033[33m",
}
RESET = "\033[0m"


def fit(sizes: list[int], columns: Sequence[str], width: int | None) -> list[int]:
    """Shrink the flexible columns (summary, reason, ...) until the row fits `width`."""
    if width is None:
        return sizes
    sizes = list(sizes)
    total = sum(sizes) + 2 * (len(sizes) - 1)
    order = sorted((i for i, c in enumerate(columns) if c in FLEXIBLE), key=lambda i: FLEXIBLE.index(columns[i]))
    if not order and sizes:
        order = [len(sizes) - 1]  # no named flexible column: the last gives way
    for i in reversed(order):  # the least important gives way first
        excess = total - width
        if excess <= 0:
            break
        give = min(excess, max(sizes[i] - MIN_FLEX, 0))
        sizes[i] -= give
        total -= give
    # still too wide: the widest of the others give way too (ids: a prefix is accepted
    # everywhere), but never a time, which is no use cut
    others = [i for i in range(len(sizes)) if not _is_time_column(columns[i])]
    for i in sorted(others, key=lambda i: -sizes[i]):
        excess = total - width
        if excess <= 0:
            break
        give = min(excess, max(sizes[i] - MIN_OTHER, 0))
        sizes[i] -= give
        total -= give
    return sizes


def _is_time_column(name: str) -> bool:
    return name in ("ts", "at", "last_seen", "first_seen", "idle_since", "last_activity") or name.endswith("_at")


def print_rows(rows: Sequence[dict], columns: Sequence[str], fmt: str, out=None, **_ignored: Any) -> None:
    """A listing: an aligned table, one JSON array, or CSV with a header line."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(msgspec.json.encode(plain(list(rows))).decode() + "\n")
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c)) for c in columns])
        out.write(buffer.getvalue())
        return
    if not rows:
        out.write("(none)\n")
        return
    table = [[cell(row.get(c)) for c in columns] for row in rows]
    sizes = [max([len(c)] + [len(r[i]) for r in table]) for i, c in enumerate(columns)]
    sizes = fit(sizes, columns, terminal_width(out))
    colour = use_colour(out)
    out.write("  ".join(_cut(c.upper(), sizes[i]).ljust(sizes[i]) for i, c in enumerate(columns)).rstrip() + "\n")
    for r in table:
        cells = []
        for i, value in enumerate(r):
            text = _cut(value, sizes[i]).ljust(sizes[i])
            if colour and value in COLOURS and columns[i] in ("severity", "status", "state"):
                text = f"{COLOURS[value]}{text}{RESET}"
            cells.append(text)
        out.write("  ".join(cells).rstrip() + "\n")


def print_fields(data: dict, fields: Iterable[str], out=None) -> None:
    """One item as `field: value` lines (the table form of a showing command)."""
    out = out or sys.stdout
    fields = list(fields)
    size = max(len(f) for f in fields)
    width = terminal_width(out)
    colour = use_colour(out)
    for field in fields:
        text = cell(data.get(field))
        if width is not None:
            text = _cut(text, max(width - size - 2, MIN_FLEX))
        if colour and text in COLOURS and field in ("severity", "status"):
            text = f"{COLOURS[text]}{text}{RESET}"
        out.write(f"{field.replace('_', ' ') + ':':<{size + 2}}{text}\n")


def print_json(data: Any, out=None) -> None:
    (out or sys.stdout).write(msgspec.json.encode(plain(data)).decode() + "\n")


def print_item(data: dict, fields: Sequence[str], fmt: str, out=None) -> None:
    """A showing command's item: `field: value` lines, one JSON object, or CSV of one row."""
    if fmt == "json":
        print_json(data, out)
    elif fmt == "csv":
        print_rows([data], fields, "csv", out)
    else:
        print_fields(data, fields, out)
