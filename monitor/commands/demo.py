"""`portal-monitor demo`: a synthetic school day through the real engine, sinks and store.

No Kafka and no PostgreSQL install: the events are generated into a JSON-lines file and
replayed in event time; alerts and flagged sessions land in an embedded PostgreSQL; /metrics
is served while it runs. At the end it prints what it found, checks it against the incidents
it injected, and says how to look further.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import msgspec


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "demo",
        help="run a synthetic school day through the engine into an embedded PostgreSQL",
        description="Generate a realistic synthetic school day (staff behind school NATs, parents at "
        "home and on mobile networks) with injected incidents, run it through the same engine and "
        "sinks as the daemon into an embedded PostgreSQL, serve /metrics meanwhile, and report what "
        "was found against what was injected. Needs no Kafka or PostgreSQL install.",
    )
    add_config_argument(parser)
    parser.add_argument("--data-dir", default="portal-monitor-demo", type=Path,
                        help="where the embedded PostgreSQL and the generated events live (default: %(default)s)")
    parser.add_argument("--accounts", type=int, default=4000, help="accounts in the school day (default: %(default)s)")
    parser.add_argument("--events", type=int, default=100_000, help="events to generate (default: %(default)s)")
    parser.add_argument("--days", type=int, default=3, help="days of traffic (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="random seed: same seed, same day (default: %(default)s)")
    parser.add_argument("--serve", action="store_true",
                        help="keep PostgreSQL and /metrics up after the run, until Ctrl-C")
    parser.set_defaults(func=demo)


async def demo(args: argparse.Namespace) -> int:
    from monitor.commands._shared import log_level
    from monitor.commands.replay import require_files
    from monitor.demo.world import COUNCIL_NETWORK
    from monitor.service.config import load_settings
    from monitor.support.logging import configure_logging

    if args.accounts < 20 or args.events < 1000:
        print("portal-monitor: demo needs at least --accounts 20 and --events 1000", file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    configure_logging(log_level(args, "warning"), settings.logging.format)
    require_files(settings)
    settings.networks.allowlist.append(COUNCIL_NETWORK.cidr)  # the council's NAT is known and trusted
    # SIGTERM (and Ctrl-C) end the demo at any step through the same exit, which stops the
    # embedded PostgreSQL: its own clean-up runs only on a normal interpreter exit.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    state: dict = {}  # what was started, for `_stop`
    try:
        return await _demo(args, settings, state)
    except asyncio.CancelledError:
        say("demo: stopped by a signal; stopping the embedded PostgreSQL")
        return 0 if args.serve and state.get("served") else 143
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await _stop(state)


async def _stop(state: dict) -> None:
    """Close what the demo started, the embedded PostgreSQL last."""
    if state.get("http") is not None:
        await state.pop("http").close()
    if state.get("pool") is not None:
        await state.pop("pool").close()
    server = state.pop("server", None)
    if server is not None:
        server.cleanup()


async def _demo(args: argparse.Namespace, settings, state: dict) -> int:
    from detectors.registry import detector_ids
    from monitor import store
    from monitor.demo.embedded import start_embedded_postgres
    from monitor.demo.school_day import generate_with_incidents, write_jsonl
    from monitor.service.http import HttpServer, build_app
    from monitor.accounts.postgres import PostgresRegistry
    from monitor.response import console
    from monitor.support.metrics import Metrics
    from monitor.service.offline import build_offline_pipeline, start_offline
    from monitor.ingest.sources.files import JsonlEventFile
    from monitor.service.checks import describe_states, detector_states
    from sinks.dead_letters import FileDeadLetters
    from sinks.postgres import PostgresSink

    say(f"1/4 generating {args.events:,} events for {args.accounts:,} accounts over {args.days} day(s)")
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    events_file = data_dir / "school-day.jsonl"
    try:
        events, incidents = generate_with_incidents(args.accounts, args.events, seed=args.seed, days=args.days)
    except ValueError as error:  # too few accounts of a kind for the injected incidents
        print(f"portal-monitor: demo: {error} (try --accounts 100 or more)", file=sys.stderr)
        return 2
    write_jsonl(events_file, events)

    use_demo_geoip(settings, data_dir / "geoip")
    states = detector_states(settings)
    for line in describe_states(states):
        say(f"    {line}")

    say("2/4 starting an embedded PostgreSQL")
    server, dsn = start_embedded_postgres(data_dir)
    state["server"] = server
    settings.postgres.dsn = dsn
    pool = state["pool"] = await store.connect(settings.postgres)
    await store.migrate(pool)
    await pool.execute("TRUNCATE alerts, flagged_sessions, session_items, accounts CASCADE")  # each demo run starts clean

    postgres_sink = PostgresSink(pool)
    dead_letters = FileDeadLetters(str(data_dir / "dead-letters.jsonl"))
    metrics = Metrics(detector_ids(), [postgres_sink.name, dead_letters.name])
    # The account registry in the same PostgreSQL, as `run` keeps it.
    pipeline = build_offline_pipeline(settings, [postgres_sink, dead_letters], metrics, PostgresRegistry(pool))
    app = build_app(metrics, lambda: (True, "demo"))
    console_token = settings.api.token or secrets.token_urlsafe(24)  # a one-off responder token unless configured
    console.mount(app, responder_token=console_token, viewer_token=settings.api.viewer_token,
                  session_lifetime=settings.api.session_lifetime, pool=lambda: pool, detector_ids=detector_ids(),
                  registry=metrics.registry)
    http = state["http"] = HttpServer(app, settings.http.host, settings.http.port)
    try:
        await http.start()
        metrics_url = f"http://{settings.http.host}:{http.port}/metrics"
        console_url = f"http://{settings.http.host}:{http.port}/ui/"
    except OSError as error:
        metrics_url = console_url = f"(not served: {error.strerror})"

    say(f"3/4 running the engine (metrics at {metrics_url})")
    started = time.perf_counter()
    await start_offline(pipeline)
    await pipeline.run_file(JsonlEventFile(str(events_file)).batches())
    await pipeline.close()
    elapsed = time.perf_counter() - started

    say("4/4 what the monitor found")
    rows = await pool.fetch(
        "SELECT detector, severity, account_id, ts, summary FROM alerts ORDER BY ts"
    )
    flagged = await pool.fetchval("SELECT count(*) FROM flagged_sessions")
    items = await pool.fetchval("SELECT count(*) FROM session_items")
    print(f"\n{pipeline.events_seen:,} events in {elapsed:.1f} s ({pipeline.events_seen / elapsed:,.0f} events/s); "
          f"{len(rows)} alert(s); {flagged} flagged session(s) with {items} item(s) viewed on record\n")
    for row in rows:
        print(f"  [{row['severity']:>8}] {row['detector']:<22} {row['ts']:%a %H:%M}  {row['summary']}")
    print()
    report_against_incidents(rows, incidents, {s.detector for s in states if s.on})
    for line in describe_states(states):
        print(f"  {line}")
    me = command_name()
    serving = "" if args.serve else (
        f"\n  The embedded PostgreSQL stops with the demo: run `{me} demo --serve` to keep it (and "
        f"{metrics_url}) up,\n  then, in another terminal:")
    folder = os.path.dirname(me) if me.endswith("/portal-monitor") else ""
    hint = f"\n  (or `source {folder}/activate` once, then just `portal-monitor ...`)" if folder else ""
    print(f"""
Look further:{serving}
  PostgreSQL:   {dsn}
  export PORTAL_MONITOR_POSTGRES__DSN='{dsn}'
  {me} alerts list                   # newest first; -o json or -o csv for scripts
  {me} alerts show ALERT_ID          # evidence, policy clause, sessions (an id prefix will do)
  {me} sessions list                 # flagged sessions; `sessions show ID` for a timeline
  {me} accounts list --status dormant
  {me} replay {events_file}
  psql "$PORTAL_MONITOR_POSTGRES__DSN"   # tables alerts, flagged_sessions, session_items, accounts{hint}""")
    if args.serve:  # the responder console over these alerts; a printed one-off token, never logged
        signin = "the token in PORTAL_MONITOR_API__TOKEN" if settings.api.token else f"the token {console_token}"
        print(f"  console:      {console_url}   (sign in with your name and {signin})")
    if args.serve:
        print("\nserving; Ctrl-C or SIGTERM stops it and the embedded PostgreSQL", flush=True)
        state["served"] = True
        await asyncio.Event().wait()
    return 0


def command_name() -> str:
    """How to call this program from the current directory: `portal-monitor` when that is on
    the PATH and is this one, else the path to the script (`.venv/bin/portal-monitor`)."""
    import os
    import shutil

    script = Path(sys.executable).parent / "portal-monitor"
    found = shutil.which("portal-monitor")
    if found and (not script.exists() or Path(found).resolve() == script.resolve()):
        return "portal-monitor"
    if script.exists():
        relative = os.path.relpath(script)
        return relative if not relative.startswith("..") else str(script)
    return f"{sys.executable} -m monitor"


def use_demo_geoip(settings, folder: Path) -> None:
    """GeoIP databases and risky-network lists from the synthetic world, unless configured.

    The demo needs no download: City, ASN and Anonymous-IP `.mmdb` files are written from
    `monitor.demo.world`, the world's cybercafes and Tor exits become the portal team's lists,
    and since the demo covers days, not weeks, an account has its new-country baseline after
    one login instead of waiting 14 days.
    """
    from monitor.service.config import RiskyListSettings
    from monitor.demo.world import NETWORKS, networks_of_kind
    from monitor.places.geoip_demo import write_databases

    if settings.geoip.city_db:
        return
    paths = write_databases(NETWORKS, folder)
    settings.geoip.city_db = paths["city_db"]
    settings.geoip.asn_db = paths["asn_db"]
    settings.geoip.anonymous_db = paths.get("anonymous_db", "")
    if not settings.networks.risky:
        settings.networks.risky = [
            RiskyListSettings(name="tor-exits", kind="tor", entries=[n.cidr for n in networks_of_kind("tor_exit")]),
            RiskyListSettings(name="cybercafes", kind="public", entries=[n.cidr for n in networks_of_kind("cybercafe")]),
        ]
    settings.detectors.new_country.baseline_logins = 1


def report_against_incidents(rows, incidents, enabled: set[str]) -> None:
    """Compare the alerts with the injected incidents the enabled detectors should catch."""
    found = {(row["detector"], row["account_id"]) for row in rows}
    expected = {(i.detector, i.account_id) for i in incidents if i.detector in enabled}
    quiet = {i.account_id for i in incidents if i.detector is None}
    caught = expected & found
    missed = expected - found
    false_alarms = {(d, a) for d, a in found if a in quiet}
    not_yet = sorted({i.detector for i in incidents if i.detector and i.detector not in enabled})
    print(f"Injected incidents for the enabled detectors: {len(expected)}; caught {len(caught)}, "
          f"missed {len(missed)}; alerts on must-stay-quiet accounts: {len(false_alarms)}")
    for detector, account in sorted(missed):
        print(f"  missed: {detector} on {account}")
    for detector, account in sorted(false_alarms):
        print(f"  false alarm: {detector} on {account}")
    if not_yet:
        print(f"  (injected for detectors not enabled in this build: {', '.join(not_yet)})")
    attacks = [i for i in incidents if i.detector in ("brute_force", "password_spray") and i.detector in enabled]
    if attacks:
        alerts = {(d, sev): 0 for d in ("brute_force", "password_spray") for sev in ("high", "critical")}
        for row in rows:
            key = (row["detector"], row["severity"])
            if key in alerts:
                alerts[key] += 1
        print(f"Credential attacks injected: {sum(i.kind == 'brute_force' for i in incidents)} brute force(s), "
              f"{sum(i.kind == 'password_spray' for i in incidents)} password spray(s) with one success each; "
              f"alerts: brute_force {alerts['brute_force', 'high']} high + {alerts['brute_force', 'critical']} critical "
              f"(password guessed), password_spray {alerts['password_spray', 'high']} high (about the source) + "
              f"{alerts['password_spray', 'critical']} critical (the spray worked)")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
