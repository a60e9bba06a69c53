"""`portal-monitor accounts`: the account registry in PostgreSQL: import a roster, list, show, actions."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import datetime, timezone

import msgspec

from monitor.commands._shared import add_output_argument, fail, log_level, plain, print_item, print_rows, store_problem
from monitor.contract.accounts import STATUSES, Account
from monitor.service.config import load_settings

LIST_COLUMNS = ("account_id", "portal", "status", "idle_since", "idle_days", "last_login_at", "status_reason")
ACTION_COLUMNS = ("account_id", "portal", "action", "reason", "alert_id", "ts")

DAY = 86400.0


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "accounts",
        help="the account registry: import a roster, list accounts by status, show one, list actions",
        description="Every account seen in the events or imported from the portal's roster, with "
        "its last successful login, last activity and status (active, dormant, disabled, "
        "revoked), kept in PostgreSQL ([postgres] dsn).",
    )
    commands = parser.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)

    imp = commands.add_parser(
        "import",
        help="import a roster CSV (idempotent; rejected rows are reported with their line)",
        description="Import the portal's account roster, so accounts that never log in are covered "
        "by the dormancy rule too. Columns (header row, any order): account_id, portal, role, "
        "created_at, last_login_at, status, and optionally reason; see docs/accounts.md. "
        "Importing the same file again changes nothing. Rows that cannot be used are reported "
        "with their line number and reason and counted; the exit status is non-zero only if "
        "the file cannot be read or the store cannot be reached.",
    )
    imp.add_argument("roster", metavar="FILE.csv")
    imp.add_argument("--rejects", metavar="FILE", help="also write every rejected row (line,reason,detail) to this CSV")
    add_output_argument(imp)
    imp.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    add_config_argument(imp)
    imp.set_defaults(func=import_roster)

    links = commands.add_parser(
        "links",
        help="turn a links CSV (which pupils each parent's account may see) into pupil_linked/pupil_unlinked events",
        description="Read the school's links file (columns: account_id, pupil_id, and optionally status "
        "linked/unlinked, reason, since; see docs/accounts.md) and write one portal.event/v1 record per "
        "usable row: to standard output or --out FILE (for `replay --links` or a producer of your own), "
        "or, with --publish, onto the events topic ([source] topic) keyed by account, where the "
        "monitor reads them like the portal's own link events. Event ids come from the rows: "
        "importing the same file twice is harmless. Rejected rows are reported on standard error "
        "with their line and reason.",
    )
    links.add_argument("links", metavar="FILE.csv")
    links.add_argument("--out", metavar="FILE", default="-", help="write the events here (default: standard output)")
    links.add_argument("--publish", action="store_true", help="produce the events to the [source] topic instead")
    links.add_argument("--rejects", metavar="FILE", help="also write every rejected row (line,reason,detail) to this CSV")
    add_config_argument(links)
    links.set_defaults(func=import_links)

    lst = commands.add_parser("list", help="list accounts, e.g. --status dormant", description="List accounts, oldest idle first.")
    lst.add_argument("--status", choices=STATUSES, help="only accounts with this status")
    lst.add_argument("--portal", choices=("schools", "parent"), help="only accounts of this portal")
    lst.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    add_output_argument(lst)
    add_config_argument(lst)
    lst.set_defaults(func=list_accounts)

    show = commands.add_parser("show", help="one account: status, last login, recent alerts")
    show.add_argument("account_id", metavar="ID")
    add_output_argument(show)
    add_config_argument(show)
    show.set_defaults(func=show_account)

    actions = commands.add_parser(
        "actions",
        help="the accounts the policy says to disable, as portal.action/v1 JSON lines",
        description="The disable_account actions pending: every account the monitor found dormant "
        "and that the portal has not disabled yet, exactly as published on the portal.actions topic.",
    )
    actions.add_argument("--limit", type=int, default=100_000)
    add_output_argument(actions, default="jsonl", extra=("jsonl",))
    add_config_argument(actions)
    actions.set_defaults(func=list_actions)


async def _registry(args: argparse.Namespace, migrate: bool = False):
    from monitor import store
    from monitor.accounts.postgres import PostgresRegistry
    from monitor.support.logging import configure_logging

    settings = load_settings(args.config)
    configure_logging(log_level(args, "warning"), settings.logging.format)  # stdout is for the command's output
    pool = await store.connect(settings.postgres)
    if migrate:  # an operator's write (the roster import), like `run`; the query commands never migrate
        try:
            await store.migrate(pool)
        except BaseException:
            await pool.close()
            raise
    return PostgresRegistry(pool)


def _fail(message: str) -> int:
    return fail(message)


async def _connected(args: argparse.Namespace, migrate: bool = False):
    try:
        return await _registry(args, migrate), None
    except (OSError, Exception) as error:  # noqa: B014 - asyncpg raises many kinds
        from monitor.service.config import ConfigError

        if isinstance(error, ConfigError):
            raise
        from monitor.store import StoreUnreachable

        if isinstance(error, StoreUnreachable):
            return None, str(error)
        return None, store_problem(error) or f"cannot reach the store: {type(error).__name__}: {error}"


async def import_roster(args: argparse.Namespace) -> int:
    from monitor.accounts.registry import import_roster_file
    from monitor.accounts.roster import Rejections, RosterError, RosterReader
    from monitor.commands._progress import Progress

    try:  # read the header before connecting: a file that cannot be read fails fast
        RosterReader(args.roster).close()
    except RosterError as error:
        return _fail(str(error))
    rejects = writer = None
    if args.rejects:
        try:
            rejects = open(args.rejects, "w", newline="")
        except OSError as error:
            return _fail(f"cannot write {args.rejects}: {error.strerror}")
        writer = csv.writer(rejects)
        writer.writerow(["line", "reason", "detail"])
    registry, problem = await _connected(args, migrate=True)
    if registry is None:
        return _fail(problem)  # type: ignore[arg-type]
    progress = Progress(f"accounts import {args.roster}", "rows", enabled=not args.no_progress)

    def rows(count: int, finished: bool) -> None:
        # the file is read inside the COPY, synchronously: drawn from there, not from a task
        progress.update(count, extra="all read; merging into the registry" if finished else "", force=finished)

    def watch(reader) -> None:
        reader.on_rows = rows

    try:
        rejections = Rejections(also=(lambda row: writer.writerow(msgspec.structs.astuple(row))) if writer else None)
        report = await import_roster_file(registry, args.roster, time.time(), rejections, watch=watch)
    except RosterError as error:
        return _fail(str(error))
    finally:
        await registry.pool.close()
        if rejects is not None:
            rejects.close()
    progress.finish(report.rows_read, f"{report.rejected:,} rejected")
    if args.output == "json":
        print(msgspec.json.encode(report).decode())
    elif args.output == "csv":
        print_rows([msgspec.to_builtins(report)], ("path", "rows_read", "new", "updated", "unchanged", "rejected",
                                                  "seconds"), "csv")
    else:
        print(report.render())
    return 0


def _plain(account: Account, now: float) -> dict:
    idle = account.idle_since
    return {
        "account_id": account.account_id,
        "portal": account.portal,
        "role": account.role,
        "status": account.status,
        "status_reason": account.status_reason,
        "status_at": _iso(account.status_at),
        "idle_since": _iso(idle),
        "idle_basis": account.idle_basis,
        "idle_days": None if idle is None else round((now - idle) / DAY, 1),
        "created_at": _iso(account.created_at),
        "first_seen_at": _iso(account.first_seen_at),
        "last_login_at": _iso(account.last_login_at),
        "last_activity_at": _iso(account.last_activity_at),
        "dormant_alert_id": account.dormant_alert_id,
    }


def _iso(at: float | None) -> datetime | None:
    """A Unix time as a UTC datetime, printed in RFC 3339 by the output helpers."""
    return None if at is None else datetime.fromtimestamp(at, timezone.utc)


async def list_accounts(args: argparse.Namespace) -> int:
    registry, problem = await _connected(args)
    if registry is None:
        return _fail(problem)  # type: ignore[arg-type]
    try:
        accounts = await registry.list(args.status, args.portal, args.limit)
    except Exception as error:  # noqa: BLE001 - asyncpg's errors, said in one line
        return _fail(store_problem(error) or f"store error: {type(error).__name__}: {error}")
    finally:
        await registry.pool.close()
    now = time.time()
    print_rows([_plain(account, now) for account in accounts], LIST_COLUMNS, args.output)
    if args.output == "table":
        print(f"{len(accounts)} account(s)", file=sys.stderr)
    return 0


async def show_account(args: argparse.Namespace) -> int:
    registry, problem = await _connected(args)
    if registry is None:
        return _fail(problem)  # type: ignore[arg-type]
    try:
        account = await registry.get(args.account_id)
        alerts = await registry.recent_alerts(args.account_id) if account is not None else []
    except Exception as error:  # noqa: BLE001 - asyncpg's errors, said in one line
        return _fail(store_problem(error) or f"store error: {type(error).__name__}: {error}")
    finally:
        await registry.pool.close()
    if account is None:
        return _fail(f"no account {args.account_id!r} in the registry")
    data = _plain(account, time.time())
    recent = [
        {"alert_id": a["alert_id"], "detector": a["detector"], "severity": a["severity"], "ts": a["ts"],
         "summary": a["summary"]}
        for a in alerts
    ]
    fields = list(data)
    if args.output != "table":
        data["recent_alerts"] = recent
        print_item(data, fields, args.output)
        return 0
    print_item(data, fields, "table")
    print(f"\nrecent alerts ({len(recent)}):" if recent else "\nrecent alerts: none")
    if recent:
        print_rows(recent, ("ts", "severity", "detector", "alert_id", "summary"), "table")
    return 0


async def list_actions(args: argparse.Namespace) -> int:
    from sinks.actions import pending_action

    registry, problem = await _connected(args)
    if registry is None:
        return _fail(problem)  # type: ignore[arg-type]
    try:
        accounts = await registry.list("dormant", None, args.limit)
    except Exception as error:  # noqa: BLE001 - asyncpg's errors, said in one line
        return _fail(store_problem(error) or f"store error: {type(error).__name__}: {error}")
    finally:
        await registry.pool.close()
    encode = msgspec.json.Encoder().encode
    actions = []
    for a in accounts:
        if a.dormant_alert_id is None or a.status_at is None:
            continue  # dormant by the roster's word, not by an alert of ours: the portal knows
        actions.append(pending_action(
            a.account_id, a.portal, a.status_reason or "", a.dormant_alert_id,
            datetime.fromtimestamp(a.status_at, timezone.utc),
        ))
    if args.output == "jsonl":  # exactly as published on the portal.actions topic
        for action in actions:
            sys.stdout.write(encode(action).decode() + "\n")
    else:
        print_rows([plain(action) for action in actions], ACTION_COLUMNS, args.output)
    print(f"{len(actions)} action(s) pending", file=sys.stderr)
    return 0


async def import_links(args: argparse.Namespace) -> int:
    from monitor.accounts.links import LinksReader
    from monitor.accounts.roster import Rejections, RosterError

    rejects = writer = None
    if args.rejects:
        try:
            rejects = open(args.rejects, "w", newline="")
        except OSError as error:
            return _fail(f"cannot write {args.rejects}: {error.strerror}")
        writer = csv.writer(rejects)
        writer.writerow(["line", "reason", "detail"])
    rejections = Rejections(also=(lambda row: writer.writerow(msgspec.structs.astuple(row))) if writer else None)
    try:
        reader = LinksReader(args.links, time.time(), rejections)
    except RosterError as error:
        return _fail(str(error))
    written = 0
    try:
        with reader:
            if args.publish:
                from aiokafka.errors import KafkaError

                try:
                    written = await _publish_links(args, reader)
                except KafkaError as error:
                    return _fail(f"cannot publish to the events topic: {type(error).__name__}: {error}")
            else:
                out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")
                try:
                    for record in reader.records():
                        out.write(record + b"\n")
                        written += 1
                finally:
                    if out is not sys.stdout.buffer:
                        out.close()
                    else:
                        out.flush()
    except OSError as error:
        return _fail(f"cannot write {args.out}: {error.strerror or error}")
    finally:
        if rejects is not None:
            rejects.close()
    where = f"the topic" if args.publish else ("standard output" if args.out == "-" else args.out)
    print(f"{args.links}: {reader.rows_read:,} rows read: {written:,} link events to {where}, "
          f"{rejections.total:,} rejected", file=sys.stderr)
    for row in rejections.rows:
        print(f"  line {row.line}: {row.reason}: {row.detail}", file=sys.stderr)
    return 0


async def _publish_links(args: argparse.Namespace, reader) -> int:
    from aiokafka import AIOKafkaProducer

    from monitor.ingest.kafka_client import client_options

    settings = load_settings(args.config)
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all", enable_idempotence=settings.kafka.idempotent_producer)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    written = 0
    try:
        for event in reader:
            await producer.send(settings.source.topic, msgspec.json.encode(event), key=event.account_id.encode())
            written += 1
        await producer.flush()
    finally:
        await producer.stop()
    return written
