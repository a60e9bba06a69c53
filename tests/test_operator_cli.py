"""The command line as an operator meets it (issue 18): nothing fails quietly, one way to ask,
read-only responders. One test (or a few) per failure listed in the issue, each feeding the bad
input and asserting the one-line message and the exit status; real PostgreSQL and Mosquitto."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import lzma
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
import structlog

from monitor import store
from monitor.commands.cli import build_parser, main
from monitor.places.geoip_demo import SAMPLE_NETWORKS, write_databases
from monitor.service.config import load_settings
from monitor.service.shards import build_shard
from sinks.postgres import PostgresSink
from tests.support.servers import free_port
from tests.test_responder import EVENTS, event

ROOT = Path(__file__).resolve().parent.parent
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    finally:
        structlog.reset_defaults()  # the CLI bound its logs to capsys's stderr, closed after the test
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def problems(err: str) -> list[str]:
    """The lines a command wrote as its own error messages."""
    return [line for line in err.splitlines() if line.startswith("portal-monitor")]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(EVENTS) + b"\n")  # two sessions from two networks: one alert
    return path


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


# -- "Detectors switch off without a word" ------------------------------------------------------


def test_replay_says_which_detectors_are_off_and_why_at_start_and_in_the_summary(events_file, tmp_path, capsys):
    code, _, err = cli(capsys, "replay", str(events_file), "--alerts-out", str(tmp_path / "alerts.jsonl"))
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("detectors on: simultaneous_logins")
    why = "impossible_travel off: no GeoIP city database configured (set geoip.city_db)"
    assert lines[1] == why  # at start...
    assert f"  {why}" in lines and "  new_country off: no GeoIP city database configured (set geoip.city_db)" in lines

    code, _, err = cli(capsys, "replay", str(events_file), "--alerts-out", str(tmp_path / "alerts.jsonl"),
                       "--summary", "json")
    summary = json.loads(err.splitlines()[-1])  # ...and in the JSON summary
    assert summary["detectors_off"]["impossible_travel"].startswith("no GeoIP city database configured")
    assert "simultaneous_logins" in summary["detectors_on"]


def test_a_configured_geoip_file_that_is_missing_or_not_a_database_stops_the_start(events_file, tmp_path, capsys):
    missing = tmp_path / "GeoLite2-City.mmdb"
    config = tmp_path / "monitor.toml"
    config.write_text(f'[geoip]\ncity_db = "{missing}"\n')
    for argv in (
        ("replay", str(events_file), "--alerts-out", str(tmp_path / "a.jsonl")),
        ("check-config",),
        ("run",),
        ("demo", "--data-dir", str(tmp_path / "demo")),
    ):
        code, _, err = cli(capsys, *argv, "--config", str(config))
        assert code == 2, (argv, err)
        assert problems(err) == [f"portal-monitor: configuration error: geoip.city_db: file not found: {missing}"]
    missing.write_bytes(b"not a database" * 100)
    code, _, err = cli(capsys, "check-config", "--config", str(config))
    assert code == 2 and problems(err)[0].startswith(
        f"portal-monitor: configuration error: geoip.city_db: {missing}: not a readable MaxMind database")


def test_run_logs_the_detectors_off_as_warnings(tmp_path):
    """`run` says it in its log at start (and again when it stops), as warnings, not info."""
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PORTAL_MONITOR_LOGGING__FORMAT": "json", "PORTAL_MONITOR_HTTP__ENABLED": "false",
             "PORTAL_MONITOR_SINKS__POSTGRES__ENABLED": "false", "PORTAL_MONITOR_ACCOUNTS__REGISTRY": "false",
             "PORTAL_MONITOR_CHECKPOINT__ENABLED": "false",
             "PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
             "PORTAL_MONITOR_KAFKA__REQUEST_TIMEOUT": "1s"},
    )
    time.sleep(4)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    off = [(e["detector"], e["when"]) for e in logs if e.get("level") == "warning" and "detector" in e]
    assert ("impossible_travel", "starting") in off and ("new_country", "starting") in off
    assert ("dormant_account", "starting") in off  # accounts.registry = false
    assert ("impossible_travel", "stopped") in off
    [on] = [e for e in logs if e["event"] == "detectors on (starting)"]
    assert "simultaneous_logins" in on["on"] and "impossible_travel" not in on["on"]


# -- "replay of 2 MB of random bytes, or of a gzip file, exits 0" --------------------------------


def test_replay_of_random_bytes_exits_1_with_a_one_line_reason(tmp_path, capsys):
    noise = tmp_path / "noise.bin"
    noise.write_bytes(random.Random(18).randbytes(2_000_000))
    dead = tmp_path / "dead.jsonl"
    code, _, err = cli(capsys, "replay", str(noise), "--alerts-out", str(tmp_path / "a.jsonl"), "--dead-letters", str(dead))
    assert code == 1
    [reason] = problems(err)
    assert re.match(r"portal-monitor: replay failed: [\d,]+ of [\d,]+ records \(100%\) are not portal.event/v1 "
                    r"\(not_json [\d,]+.*\), more than --max-invalid 0.5; is .*noise.bin a portal event log\?", reason)
    # dead letters from a file say which line
    first, second = (json.loads(line) for line in dead.read_text().splitlines()[:2])
    assert (first["line"], second["line"]) == (first["offset"], second["offset"]) and 1 <= first["line"] < second["line"]
    # the threshold is the operator's
    code, _, err = cli(capsys, "replay", str(noise), "--alerts-out", str(tmp_path / "a.jsonl"),
                       "--dead-letters", str(dead), "--max-invalid", "1")
    assert code == 0 and problems(err) == []
    code, _, err = cli(capsys, "replay", str(noise), "--max-invalid", "2")
    assert code == 2 and "not a number between 0 and 1" in err


def test_replay_reads_gzip_and_refuses_other_compression_by_name(events_file, tmp_path, capsys):
    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(events_file.read_bytes()))
    for source, out in ((events_file, "plain.jsonl"), (packed, "gzip.jsonl")):
        code, _, err = cli(capsys, "replay", str(source), "--alerts-out", str(tmp_path / out))
        assert code == 0, err
    def alerts(name: str) -> list[dict]:
        found = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        for alert in found:
            del alert["detected_at"]  # the wall clock
        return found

    assert len(alerts("plain.jsonl")) == 1 and alerts("gzip.jsonl") == alerts("plain.jsonl")

    xz = tmp_path / "events.jsonl.xz"
    xz.write_bytes(lzma.compress(events_file.read_bytes()))
    code, _, err = cli(capsys, "replay", str(xz))
    assert code == 1
    assert problems(err) == [f"portal-monitor: {xz} is xz-compressed, not JSON lines: xz -dc {xz} | portal-monitor replay -"]


# -- "silences add --detector impossible_travle is accepted" -------------------------------------


@pytest.mark.parametrize("argv", [
    ("silences", "add", "--detector", "impossible_travle", "--expires", "2h"),
    ("alerts", "list", "--detector", "impossible_travle"),
])
def test_detector_names_are_checked_where_they_are_typed(capsys, argv):
    code, out, err = cli(capsys, *argv)  # refused before any connection: no store needed
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert "unknown detector 'impossible_travle'; did you mean impossible_travel? detectors: simultaneous_logins" in line


def test_detector_names_in_the_settings_are_checked_too(tmp_path, capsys):
    config = tmp_path / "monitor.toml"
    config.write_text('[alerting.cooldowns]\nimpossible_travle = "1h"\n')
    code, _, err = cli(capsys, "check-config", "--config", str(config))
    assert code == 2 and problems(err) == [
        "portal-monitor: configuration error: alerting.cooldowns.impossible_travle: unknown detector "
        "'impossible_travle'; did you mean impossible_travel? detectors: " + ", ".join(
            __import__("detectors.registry", fromlist=["detector_ids"]).detector_ids())
    ]


# -- "check-config accepts port = 99999, min_speed_kmh = -5, dsn = 'not a dsn', missing files" ----


@pytest.mark.parametrize("toml, message", [
    ("[http]\nport = 99999", "http.port: 99999 is not a port (0-65535)"),
    ("[sinks.mqtt]\nport = 0", "sinks.mqtt.port: 0 is not a port (1-65535)"),
    ("[detectors.impossible_travel]\nmin_speed_kmh = -5", "detectors.impossible_travel.min_speed_kmh: -5 is negative"),
    ("[detectors.impossible_travel]\nmin_speed_kmh = 0", "detectors.impossible_travel.min_speed_kmh: must be more than 0"),
    ('[postgres]\ndsn = "not a dsn"', "postgres.dsn: not a PostgreSQL URL (postgresql://user@host:5432/database): 'not a dsn'"),
    ('[postgres]\ndsn = "postgresql://db:99999/x"', "postgres.dsn: bad port in 'postgresql://db:99999/x'"),
    ('[kafka]\nbootstrap_servers = "kafka-1"', "kafka.bootstrap_servers: not host:port (port 1-65535): 'kafka-1'"),
    ('[sessions]\nidle_timeout = "-5m"', "sessions.idle_timeout: not a duration: '-5m'"),
    ('[sessions]\nidle_timeout = "soon"', "sessions.idle_timeout: not a duration: 'soon'"),
    ('[sinks.webhook]\nenabled = true\nurl = "ftp://x"\nsecret = "s"', "sinks.webhook.url: not an http(s) URL: 'ftp://x'"),
    ('[[networks.risky]]\nname = "tor"\nkind = "tor"\nfile = "/nope/tor-exits.txt"',
     "networks.risky[0].file: file not found: /nope/tor-exits.txt"),
    ('[geoip]\nasn_db = "/nope/GeoLite2-ASN.mmdb"', "geoip.asn_db: file not found: /nope/GeoLite2-ASN.mmdb"),
])
def test_check_config_refuses_values_that_cannot_work(tmp_path, capsys, toml, message):
    config = tmp_path / "monitor.toml"
    config.write_text(toml + "\n")
    code, out, err = cli(capsys, "check-config", "--config", str(config))
    assert code == 2 and out == ""
    [line] = problems(err)
    assert line.startswith(f"portal-monitor: configuration error: {message}"), line


def test_check_config_connect_says_what_works(postgres_dsn, tmp_path, monkeypatch, capsys):
    databases = write_databases(SAMPLE_NETWORKS, tmp_path / "geoip")
    closed = free_port()
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    monkeypatch.setenv("PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{closed}")
    monkeypatch.setenv("PORTAL_MONITOR_SINKS__MQTT__ENABLED", "true")
    monkeypatch.setenv("PORTAL_MONITOR_GEOIP__CITY_DB", databases["city_db"])
    code, _, err = cli(capsys, "check-config", "--connect", "--timeout", "3", "--quiet")
    assert code == 1  # Kafka does not work
    assert err.splitlines() == [f"kafka              FAILED   127.0.0.1:{closed}: connection refused (nothing listening there)"]
    code, _, err = cli(capsys, "check-config", "--connect", "--timeout", "3")
    lines = {line.split()[0]: line for line in err.splitlines() if line.split() and line.split()[0] in (
        "postgres", "kafka", "mqtt", "geoip.city_db", "geoip.asn_db")}
    assert re.search(r"^postgres +ok +127\.0\.0\.1:5432/pm_test_\w+: PostgreSQL [\d.]+.*not migrated \(run `portal-monitor "
                     r"migrate`\)$", lines["postgres"]), lines["postgres"]
    assert re.search(r"^mqtt +ok +127\.0\.0\.1:1883: connected$", lines["mqtt"])
    assert re.search(r"^geoip\.city_db +ok +.*demo-City\.mmdb: .*City.*, built \d{4}-\d\d-\d\d$", lines["geoip.city_db"])
    assert re.search(r"^geoip\.asn_db +skipped +not configured$", lines["geoip.asn_db"])


# -- "Tracebacks: --since 99999999d, --expires 99999999d, geoip write-demo /proc/nope" -------------


def test_no_traceback_for_times_out_of_range_or_an_unwritable_folder(postgres_dsn, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    assert cli(capsys, "migrate")[0] == 0
    code, _, err = cli(capsys, "alerts", "list", "--since", "99999999d")
    assert code == 2 and problems(err) == ["portal-monitor: not a time: '99999999d' is further back than the calendar goes"]
    code, _, err = cli(capsys, "silences", "add", "--account", "staff-0042", "--expires", "99999999d")
    assert code == 2 and problems(err) == ["portal-monitor: expires: '99999999d' is too far ahead (the latest is year 9999)"]
    code, _, err = cli(capsys, "geoip", "write-demo", "/proc/nope")
    assert code == 1 and len(problems(err)) == 1 and problems(err)[0].startswith(
        "portal-monitor: geoip write-demo: cannot write /proc/nope")
    code, _, err = cli(capsys, "sessions", "list", "--until", "99999-01-01")
    assert code == 2 and "not a time" in err and "Traceback" not in err


# -- "Empty reasons: a PostgreSQL that never answers; a Kafka that never answers" ----------------


def test_a_store_that_never_answers_is_named_with_host_port_timeout_and_cause(silent_port, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", f"postgresql://responder@127.0.0.1:{silent_port}/portal_monitor")
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__CONNECT_TIMEOUT", "1s")
    started = time.monotonic()
    code, _, err = cli(capsys, "alerts", "list")
    assert code == 1 and time.monotonic() - started < 10
    assert problems(err) == [
        f"portal-monitor: PostgreSQL at 127.0.0.1:{silent_port} (database portal_monitor) not reachable "
        "(connect_timeout 1 s): no answer within 1 s (connect_timeout)"
    ]
    closed = free_port()
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", f"postgresql://responder@127.0.0.1:{closed}/portal_monitor")
    code, _, err = cli(capsys, "accounts", "list")
    assert code == 1 and problems(err)[0].startswith(
        f"portal-monitor: PostgreSQL at 127.0.0.1:{closed} (database portal_monitor) not reachable (connect_timeout 1 s): "
        "ConnectionRefusedError")


def test_run_names_a_store_that_never_answers_and_retries_with_a_log_line(silent_port):
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PORTAL_MONITOR_LOGGING__FORMAT": "json", "PORTAL_MONITOR_HTTP__ENABLED": "false",
             "PORTAL_MONITOR_POSTGRES__DSN": f"postgresql://monitor@127.0.0.1:{silent_port}/portal_monitor",
             "PORTAL_MONITOR_POSTGRES__CONNECT_TIMEOUT": "1s"},
    )
    time.sleep(5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    waiting = [e for e in logs if e["event"] == "connecting to the store"]
    retries = [e for e in logs if e["event"] == "connecting to the store failed, retrying"]
    assert len(waiting) >= 2 and (waiting[0]["host"], waiting[0]["port"], waiting[0]["timeout_s"]) == (
        "127.0.0.1", silent_port, 1.0)
    assert len(retries) >= 2 and retries[0]["error"] == (
        f"StoreUnreachable: PostgreSQL at 127.0.0.1:{silent_port} (database portal_monitor) not reachable "
        "(connect_timeout 1 s): no answer within 1 s (connect_timeout)")


def test_a_kafka_that_never_answers_is_named_and_retried_with_a_log_line(silent_port):
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PORTAL_MONITOR_LOGGING__FORMAT": "json", "PORTAL_MONITOR_HTTP__ENABLED": "false",
             "PORTAL_MONITOR_SINKS__POSTGRES__ENABLED": "false", "PORTAL_MONITOR_ACCOUNTS__REGISTRY": "false",
             "PORTAL_MONITOR_CHECKPOINT__ENABLED": "false",
             "PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{silent_port}",
             "PORTAL_MONITOR_KAFKA__REQUEST_TIMEOUT": "1s"},
    )
    time.sleep(6)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    waiting = [e for e in logs if e["event"].startswith("connecting to Kafka")]
    retries = [e for e in logs if e["event"] == "starting the kafka producer failed, retrying"]
    assert len(waiting) >= 2 and waiting[0]["servers"] == f"127.0.0.1:{silent_port}" and waiting[0]["timeout_s"] == 1.0
    assert len(retries) >= 2
    assert retries[0]["error"] == (
        f"KafkaUnreachable: Kafka at 127.0.0.1:{silent_port} not reachable for the producer (request_timeout 1 s): "
        f"127.0.0.1:{silent_port}: accepts connections but gave no Kafka answer within 1 s (kafka.request_timeout; "
        "is it a Kafka listener, are TLS and SASL right?)"
    )
    for entry in logs:  # aiokafka's own line never ends with an empty reason
        assert not re.search(r'": *$', entry["event"]), entry


# -- "Every query command runs the schema migrations first" --------------------------------------


def read_only_grants(role: str, database: str) -> list[str]:
    """The read-only responder's grants exactly as docs/deployment.md gives them."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    block = text.split("-- read-only responder: may look, may not change anything\n", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in block.split(";") if s.strip() and not s.strip().startswith("--")]
    statements = [re.sub(r"^--.*\n", "", s, flags=re.M).strip() for s in statements]
    return [s.replace("portal_responder_ro", f'"{role}"').replace("DATABASE portal_monitor", f'DATABASE "{database}"')
            .replace("'change-me'", "'responder-pw'") for s in statements if "ALTER DEFAULT PRIVILEGES" not in s]


def import_roster(capsys, folder: Path) -> None:
    """staff-0042 into the account registry, as the owner would (`accounts import`)."""
    roster = folder / "roster.csv"
    roster.write_text("account_id,portal,role,created_at,last_login_at,status\n"
                      "staff-0042,schools,teacher,2019-09-02,2026-03-02T08:05:00Z,active\n")
    code, _, err = cli(capsys, "accounts", "import", str(roster))
    assert code == 0, err


async def seed_store(dsn: str, events: list[bytes]) -> list[str]:
    settings = load_settings(environ={"PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "0s"})
    shard = build_shard(settings, 0)
    findings = shard.process(list(enumerate(events)))
    findings.extend(shard.drain())
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await store.migrate(pool)
        await PostgresSink(pool).write(findings)
    finally:
        await pool.close()
    structlog.reset_defaults()
    return [alert.alert_id for alert in findings.alerts]


def test_query_commands_work_for_a_read_only_role(postgres_dsn, tmp_path, monkeypatch, capsys):
    [alert_id] = asyncio.run(seed_store(postgres_dsn, EVENTS))
    capsys.readouterr()  # the seeding shard's own log lines
    database = postgres_dsn.rsplit("/", 1)[1].split("?")[0]
    role = f"pm_reader_{uuid.uuid4().hex[:8]}"

    async def as_owner(statements: list[str]) -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    import_roster(capsys, tmp_path)
    asyncio.run(as_owner(read_only_grants(role, database)))
    try:
        reader = re.sub(r"^postgresql://[^@/]*@?", f"postgresql://{role}@", postgres_dsn)
        monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", reader)
        monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__PASSWORD", "responder-pw")
        for argv in (
            ("alerts", "list", "-o", "json"),
            ("alerts", "show", alert_id[:8]),
            ("sessions", "list"),
            ("sessions", "show", "s1", "-o", "json"),
            ("silences", "list"),
            ("accounts", "list", "-o", "csv"),
            ("accounts", "show", "staff-0042"),
            ("accounts", "actions"),
            ("networks", "list"),
        ):
            code, out, err = cli(capsys, *argv)
            assert code == 0, (argv, err)
        code, out, _ = cli(capsys, "alerts", "list", "-o", "json")
        assert [a["alert_id"] for a in json.loads(out)] == [alert_id]
        # and it can change nothing: one line saying what is missing
        code, _, err = cli(capsys, "alerts", "ack", alert_id)
        assert code == 1 and problems(err)[0].startswith("portal-monitor: the store refused: permission denied for table")
        code, _, err = cli(capsys, "migrate")
        assert code == 1 and "permission denied" in err
    finally:
        asyncio.run(as_owner([f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"']))


def test_query_commands_never_migrate_and_say_so(postgres_dsn, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    code, _, err = cli(capsys, "alerts", "list")
    assert code == 1 and problems(err)[0].startswith("portal-monitor: the store has no portal-monitor schema yet")
    assert "run `portal-monitor migrate`" in err

    async def tables() -> set[str]:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            return {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        finally:
            await conn.close()

    for argv in (("sessions", "list"), ("silences", "list"), ("accounts", "list"), ("networks", "list")):
        cli(capsys, *argv)
    assert asyncio.run(tables()) == set()  # nothing was created behind the responder's back
    code, out, _ = cli(capsys, "migrate")
    assert code == 0 and out.startswith("applied migration(s) 0001")
    code, out, _ = cli(capsys, "migrate")
    assert code == 0 and "nothing to apply" in out
    assert cli(capsys, "alerts", "list")[0] == 0


# -- "Output differs by command" -------------------------------------------------------------------

LISTING_AND_SHOWING = {
    ("alerts", "list"), ("alerts", "show"), ("alerts", "ack"), ("alerts", "resolve"),
    ("sessions", "list"), ("sessions", "show"), ("silences", "list"), ("silences", "add"),
    ("accounts", "list"), ("accounts", "show"), ("accounts", "actions"), ("accounts", "import"),
    ("networks", "list"), ("geoip", "lookup"), ("pupils", "access"),
}


def leaf_commands(parser, path=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from leaf_commands(child, path + (name,))
            return
    yield path, parser


def test_every_listing_and_showing_command_has_the_shared_output_option():
    leaves = dict(leaf_commands(build_parser()))
    assert LISTING_AND_SHOWING <= set(leaves), LISTING_AND_SHOWING - set(leaves)
    for path in LISTING_AND_SHOWING:
        text = " ".join(leaves[path].format_help().split())
        assert re.search(r"-o \{table,json,csv(,jsonl)?\}, --output \{table,json,csv(,jsonl)?\}", text), path
        assert "RFC 3339 UTC" in text, path
    for path, parser in leaves.items():  # and every command has --help that says something
        assert parser.description or parser.format_help(), path


ID_EVENTS = [
    event(1, 0, "login_succeeded", "7f3a9c21-aaaa-4d00", "81.2.69.10", user_agent="Firefox"),
    event(2, 1, "page_view", "7f3a9c21-aaaa-4d00", "81.2.69.10", resource="/pupils/4711/attendance"),
    event(3, 5, "login_succeeded", "7f3a9c21-bbbb-4d00", "86.150.3.7", user_agent="Chrome"),
    event(4, 6, "page_view", "7f3a9c21-bbbb-4d00", "86.150.3.7", resource="/pupils/4711/reports"),
]


def test_one_json_shape_one_time_format_fitted_tables_and_id_prefixes(postgres_dsn, tmp_path, monkeypatch, capsys):
    [alert_id] = asyncio.run(seed_store(postgres_dsn, ID_EVENTS))
    capsys.readouterr()  # the seeding shard's own log lines
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    import_roster(capsys, tmp_path)

    # JSON: an array for every listing, an object for one item; times RFC 3339 UTC
    for argv in (("alerts", "list"), ("sessions", "list"), ("accounts", "list"), ("silences", "list")):
        code, out, _ = cli(capsys, *argv, "-o", "json")
        assert code == 0 and isinstance(json.loads(out), list) and out.count("\n") == 1, argv
    [alert] = json.loads(cli(capsys, "alerts", "list", "-o", "json")[1])
    assert RFC3339_UTC.match(alert["ts"]) and RFC3339_UTC.match(json.loads(
        cli(capsys, "alerts", "show", alert_id, "-o", "json")[1])["detected_at"])
    [account] = json.loads(cli(capsys, "accounts", "list", "-o", "json")[1])
    assert RFC3339_UTC.match(account["last_login_at"])
    code, out, _ = cli(capsys, "accounts", "show", "staff-0042", "-o", "json")
    assert isinstance(json.loads(out), dict) and RFC3339_UTC.match(json.loads(out)["idle_since"])
    # the old spellings still work
    assert json.loads(cli(capsys, "alerts", "list", "--format", "json")[1])[0]["alert_id"] == alert_id
    code, out, _ = cli(capsys, "accounts", "list", "--format", "text")
    assert code == 0 and out.startswith("ACCOUNT_ID")

    # tables: the same time format, fitted to the terminal's width
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = cli(capsys, "alerts", "list")
    assert alert["ts"] in out and max(map(len, out.splitlines())) <= 100 and "…" in out
    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = cli(capsys, "alerts", "list")
    assert alert_id in out and "…" not in out  # the whole summary when there is room
    monkeypatch.delenv("COLUMNS")

    # id prefixes: unique is enough, ambiguous says so
    code, out, _ = cli(capsys, "sessions", "show", "7f3a9c21-b", "-o", "json")
    assert code == 0 and json.loads(out)["session_id"] == "7f3a9c21-bbbb-4d00"
    code, _, err = cli(capsys, "sessions", "show", "7f3a9c21")
    assert code == 1 and problems(err) == [
        "portal-monitor: session id prefix '7f3a9c21' is ambiguous (7f3a9c21-aaaa-4d00, 7f3a9c21-bbbb-4d00, ...); "
        "give more characters"]
    code, out, _ = cli(capsys, "alerts", "ack", alert_id[:7], "--actor", "dana")
    assert code == 0 and out == f"acknowledged {alert_id} (simultaneous_logins, staff-0042)\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    from monitor.commands._shared import print_rows

    rows = [{"alert_id": "a1", "severity": "critical", "summary": "x"}]
    for stream, no_color, coloured in ((Terminal(), None, True), (Terminal(), "1", False), (io.StringIO(), None, False)):
        if no_color is None:
            monkeypatch.delenv("NO_COLOR", raising=False)
        else:
            monkeypatch.setenv("NO_COLOR", no_color)
        monkeypatch.setenv("TERM", "xterm")
        print_rows(rows, ("alert_id", "severity", "summary"), "table", out=stream)
        assert ("\033[" in stream.getvalue()) is coloured


# -- "demo ends with `portal-monitor replay ...`; demo --serve leaves PostgreSQL running" ----------


def test_demo_ends_with_the_dsn_and_next_commands_and_sigterm_stops_its_postgres():
    # embedded PostgreSQL runs as its own user when we are root: a folder it can enter
    folder = Path(tempfile.mkdtemp(prefix="pm-demo-"))
    folder.chmod(0o755)
    try:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "portal-monitor"), "demo", "--data-dir", str(folder / "demo"),
             "--accounts", "100", "--events", "2000", "--serve"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PORTAL_MONITOR_HTTP__PORT": "0"},
        )
        out: list[str] = []
        serving = threading.Event()

        def read() -> None:  # a reader thread: the wait below has a deadline whatever the demo does
            for line in process.stdout:
                out.append(line)
                if line.startswith("serving;"):
                    serving.set()

        threading.Thread(target=read, daemon=True).start()
        serving.wait(timeout=240)
        text = "".join(out)
        if not serving.is_set():
            process.kill()
        assert "serving;" in text, text[-3000:] + process.stderr.read()[-3000:]
        dsn = re.search(r"^  export PORTAL_MONITOR_POSTGRES__DSN='(postgresql://[^']+)'$", text, re.M)
        assert dsn, text
        assert "  .venv/bin/portal-monitor alerts list" in text  # not on the PATH: the path that works
        assert "(or `source .venv/bin/activate` once" in text
        postmaster = int((folder / "demo" / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, 0)  # up while serving

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        err = process.stderr.read()
        assert process.returncode == 0, err[-2000:]
        assert "detectors on: simultaneous_logins" in err and "impossible_travel off" not in err
        for _ in range(100):
            try:
                os.kill(postmaster, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the embedded PostgreSQL is still running after SIGTERM")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- "accounts import of 1,000,000 rows shows nothing; networks list --from-events likewise" --------


def test_long_work_ends_with_a_progress_line_off_a_terminal(postgres_dsn, events_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_MONITOR_POSTGRES__DSN", postgres_dsn)
    assert cli(capsys, "migrate")[0] == 0
    roster = tmp_path / "roster.csv"
    roster.write_text("account_id,portal,role,created_at,last_login_at,status\n" + "".join(
        f"staff-{n:05d},schools,teacher,2024-09-02,2025-06-30T15:12:00Z,active\n" for n in range(3000)))
    code, out, err = cli(capsys, "accounts", "import", str(roster))
    assert code == 0 and "3,000 new accounts" in out
    assert re.search(rf"^accounts import {re.escape(str(roster))}: 3,000 rows in [\d.]+ s \([\d,]+ rows/s\), 0 rejected$",
                     err, re.M), err
    code, out, err = cli(capsys, "networks", "list", "--from-events", str(events_file), "--all", "-o", "json")
    assert code == 0 and re.search(r"^networks list --from-events .*events.jsonl: 6 events in [\d.]+ s", err, re.M), err
    assert json.loads(out) == []  # stdout carries the listing only, no log line


def test_progress_on_a_terminal_redraws_one_line_with_the_time_left():
    from monitor.commands._progress import Progress

    terminal = Terminal()
    progress = Progress("replay big.jsonl", "events", stream=terminal)
    progress.started -= 10  # ten seconds in
    progress.update(250_000, share=0.25)
    progress.finish(1_000_000)
    drawn = terminal.getvalue()
    assert drawn.startswith("\r\033[Kreplay big.jsonl: 250,000 events (25.0%, ETA 30 s), ")
    assert drawn.endswith(" events/s)\n") and "\r\033[Kreplay big.jsonl: 1,000,000 events in " in drawn


# -- config where operators look, --log-level, completion, the systemd unit -----------------------


def test_config_from_portal_monitor_config_and_etc(tmp_path, monkeypatch, capsys):
    from monitor.commands import cli as cli_module

    config = tmp_path / "monitor.toml"
    config.write_text("[http]\nport = 99999\n")  # a bad value proves the file was read
    monkeypatch.setenv("PORTAL_MONITOR_CONFIG", str(config))
    code, _, err = cli(capsys, "check-config")
    assert code == 2 and "http.port: 99999 is not a port" in err
    good = tmp_path / "good.toml"
    good.write_text("[http]\nport = 9999\n")
    assert cli(capsys, "check-config", "--config", str(good))[0] == 0  # --config wins
    monkeypatch.delenv("PORTAL_MONITOR_CONFIG")
    monkeypatch.setattr(cli_module, "SYSTEM_CONFIG", str(config))
    assert cli_module.default_config() == str(config)
    monkeypatch.setattr(cli_module, "SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    assert cli_module.default_config() is None


def test_log_level_on_the_command_line(events_file, tmp_path, capsys):
    code, _, err = cli(capsys, "replay", str(events_file), "--alerts-out", str(tmp_path / "a.jsonl"), "--log-level", "info")
    assert code == 0 and "geoip.city_db is not set" in err  # an info line, hidden at replay's default (warning)
    code, _, err = cli(capsys, "replay", str(events_file), "--log-level", "loud")
    assert code == 2 and "invalid choice: 'loud'" in err


def test_bash_completion_completes_commands_actions_and_choices(tmp_path, capsys):
    code, script, _ = cli(capsys, "completion", "bash")
    assert code == 0
    (tmp_path / "completion.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        done = subprocess.run(
            ["bash", "-c", f"source {tmp_path}/completion.bash; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                           "_portal_monitor; echo \"${COMPREPLY[@]}\""],
            capture_output=True, text=True, timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("portal-monitor", "al") == ["alerts"]
    assert complete("portal-monitor", "alerts", "l") == ["list"]
    assert complete("portal-monitor", "alerts", "list", "--sev") == ["--severity"]
    assert complete("portal-monitor", "alerts", "list", "--severity", "h") == ["high"]
    assert complete("portal-monitor", "alerts", "list", "-o", "j") == ["json"]
    code, script, _ = cli(capsys, "completion", "zsh")
    assert code == 0 and script.startswith("#compdef portal-monitor")


def test_systemd_unit_reloads_with_sighup_and_checks_the_config_first():
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keys are case-sensitive
    unit.read(ROOT / "deploy" / "systemd" / "portal-monitor.service")
    service = unit["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["ExecStart"].endswith("portal-monitor run")
    assert service["ExecStartPre"].endswith("portal-monitor check-config --quiet")
    assert service["RestartPreventExitStatus"] == "2"
    assert "deploy/systemd/portal-monitor.service" in (ROOT / "docs" / "deployment.md").read_text()
    if shutil.which("systemd-analyze"):  # systemd's own check; the install path does not exist here
        done = subprocess.run(["systemd-analyze", "verify", str(ROOT / "deploy" / "systemd" / "portal-monitor.service")],
                              capture_output=True, text=True, timeout=60)
        complaints = [line for line in (done.stdout + done.stderr).splitlines()
                      if line.strip() and "/opt/portal-monitor/.venv/bin/portal-monitor is not executable" not in line]
        assert complaints == [], complaints
