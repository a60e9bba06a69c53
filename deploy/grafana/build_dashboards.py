"""Write the Grafana dashboards of portal-monitor as JSON into deploy/grafana/dashboards/.

The JSON files are what Grafana provisions; this script is their source, so that the queries
stay consistent (one label selector, one set of variables) and reviewable as code.

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 if a file differs from the script

Dashboards use datasource variables (`prometheus`, `postgres`) whose defaults are the uids
provisioned by deploy/grafana/provisioning/datasources/, so they also import into an existing
Grafana. Metric names and labels: docs/metrics.md. PromQL is tested against a real Prometheus
scraping the monitor (tests/test_prometheus_queries.py) and the SQL against PostgreSQL
(tests/test_deploy_grafana.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "dashboards"
SCHEMA_VERSION = 39
PROM = {"type": "prometheus", "uid": "${prometheus}"}
PG = {"type": "grafana-postgresql-datasource", "uid": "${postgres}"}
DETECTORS = (
    "simultaneous_logins",
    "impossible_travel",
    "new_country",
    "risky_network",
    "dormant_account",
    "dormant_account_login",
    "revoked_access_use",
    "session_left_open",
    "brute_force",
    "password_spray",
)
SEVERITIES = ("low", "medium", "high", "critical")
CRITICAL, PROCESSED, FAILED = 'severity="critical"', 'outcome="processed"', 'outcome="failed"'
SEVERITY_COLOURS = {"low": "blue", "medium": "yellow", "high": "orange", "critical": "red"}


def m(name: str, *matchers: str) -> str:
    """A metric selected by the dashboard's job and instance variables (and extra matchers)."""
    return name + "{" + ", ".join(('job=~"$job"', 'instance=~"$instance"', *matchers)) + "}"


# -- variables ----------------------------------------------------------------------------------


def datasource_variable(name: str, plugin: str, default_uid: str, label: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "datasource",
        "query": plugin,
        "current": {"text": default_uid, "value": default_uid},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
    }


def prometheus_variables() -> list[dict]:
    def query_variable(name: str, query: str) -> dict:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": PROM,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-variable"},
            "refresh": 2,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "current": {"text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "hide": 0,
        }

    return [
        datasource_variable("prometheus", "prometheus", "prometheus", "Prometheus"),
        query_variable("job", "label_values(portal_monitor_build_info, job)"),
        query_variable("instance", 'label_values(portal_monitor_build_info{job=~"$job"}, instance)'),
    ]


def custom_variable(name: str, values: tuple[str, ...], label: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "options": [{"text": v, "value": v, "selected": False} for v in values],
        "includeAll": True,
        "multi": True,
        "current": {"text": ["All"], "value": ["$__all"]},
        "hide": 0,
    }


# -- panels -------------------------------------------------------------------------------------


class Layout:
    """Places panels left to right in a 24-column grid, wrapping to a new row."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_height = max(self.row_height, h)
        return pos

    def row(self, title: str) -> dict:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = {"type": "row", "title": title, "id": self.take_id(), "collapsed": False, "panels": []}
        panel["gridPos"] = {"x": 0, "y": self.y, "w": 24, "h": 1}
        self.y += 1
        return panel

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def prom_target(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> dict:
    return {
        "refId": ref,
        "datasource": PROM,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
    }


def sql_target(sql: str, fmt: str = "table", ref: str = "A") -> dict:
    return {
        "refId": ref,
        "datasource": PG,
        "editorMode": "code",
        "rawQuery": True,
        "format": fmt,
        "rawSql": " ".join(sql.split()),
    }


def panel(
    layout: Layout,
    kind: str,
    title: str,
    targets: list[dict],
    *,
    w: int = 12,
    h: int = 8,
    unit: str = "short",
    description: str = "",
    options: dict | None = None,
    custom: dict | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    overrides: list[dict] | None = None,
    decimals: int | None = None,
    min_value: float | None = None,
    links: list[dict] | None = None,
    transformations: list[dict] | None = None,
) -> dict:
    defaults: dict = {"unit": unit}
    if custom is not None:
        defaults["custom"] = custom
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_value is not None:
        defaults["min"] = min_value
    if links:
        defaults["links"] = links
    steps = thresholds or [(None, "green")]
    defaults["thresholds"] = {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}
    return {
        "id": layout.take_id(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "gridPos": layout.place(w, h),
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        "transformations": transformations or [],
    }


def timeseries(layout: Layout, title: str, targets: list[dict], *, stack: bool = False, bars: bool = False, **kw) -> dict:
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "stacking": {"mode": "normal" if stack or bars else "none", "group": "A"},
        "spanNulls": False,
    }
    options = {
        "legend": {"displayMode": "table", "placement": "right", "calcs": ["max", "lastNotNull"], "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel(layout, "timeseries", title, targets, custom=custom, options=options, **kw)


def stat(layout: Layout, title: str, targets: list[dict], *, w: int = 4, h: int = 4, **kw) -> dict:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "textMode": "auto",
        "orientation": "auto",
    }
    return panel(layout, "stat", title, targets, w=w, h=h, options=options, **kw)


def table(layout: Layout, title: str, targets: list[dict], *, w: int = 24, h: int = 10, **kw) -> dict:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return panel(layout, "table", title, targets, w=w, h=h, options=options, **kw)


def severity_overrides() -> list[dict]:
    return [
        {
            "matcher": {"id": "byRegexp", "options": f".*{severity}.*"},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}],
        }
        for severity, colour in SEVERITY_COLOURS.items()
    ]


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict], *, tags=(), time_from="now-6h", refresh="30s", links=None) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["portal-monitor", *tags],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": links
        or [
            {"title": "portal-monitor", "type": "dashboards", "tags": ["portal-monitor"], "asDropdown": True, "includeVars": False, "keepTime": True}
        ],
        "panels": panels,
    }


# -- the dashboards -----------------------------------------------------------------------------


def overview() -> dict:
    L = Layout()
    rate = "[$__rate_interval]"
    panels = [
        stat(L, "Events read /s", [prom_target(f"sum(rate({m('portal_monitor_events_total')}{rate}))")], unit="reqps",
             description="Portal events read by all selected replicas, every type and outcome."),
        stat(L, "Alerts in range", [prom_target(f"sum(increase({m('portal_monitor_alerts_total')}[$__range]))", instant=True)],
             decimals=0, thresholds=[(None, "green"), (1, "orange")], description="Alerts raised over the dashboard's time range."),
        stat(L, "Critical alerts in range",
             [prom_target(f"sum(increase({m('portal_monitor_alerts_total', CRITICAL)}[$__range]))", instant=True)],
             decimals=0, thresholds=[(None, "green"), (1, "red")]),
        stat(L, "Consumer lag (records)",
             [prom_target(f"sum(max by (partition) ({m('portal_monitor_consumer_lag_records')}))")],
             thresholds=[(None, "green"), (1000, "orange"), (10000, "red")], decimals=0,
             description="Unread records over all partitions of the events topic."),
        stat(L, "Replicas up", [prom_target('sum(up{job=~"$job", instance=~"$instance"})')], decimals=0,
             thresholds=[(None, "red"), (1, "orange"), (2, "green")]),
        stat(L, "Invalid events /s", [prom_target(f"sum(rate({m('portal_monitor_invalid_events_total')}{rate}))")], unit="reqps",
             thresholds=[(None, "green"), (0.01, "orange")], description="Records that broke the event contract (sent to the dead letters)."),
        L.row("Events"),
        timeseries(L, "Events /s by type", [prom_target(
            f"sum by (type) (rate({m('portal_monitor_events_total', PROCESSED)}{rate}))", "{{type}}")],
            unit="reqps", stack=True, description="Processed events (not late, not redelivered) by event type."),
        timeseries(L, "Events /s by outcome", [prom_target(
            f"sum by (outcome) (rate({m('portal_monitor_events_total')}{rate}))", "{{outcome}}")],
            unit="reqps", description="processed; late: older than the watermark allows; duplicate: a redelivered event_id."),
        timeseries(L, "Invalid events /s by reason", [prom_target(
            f"sum by (reason) (rate({m('portal_monitor_invalid_events_total')}{rate}))", "{{reason}}")], unit="reqps"),
        timeseries(L, "Event lag by partition", [prom_target(
            f"max by (partition) ({m('portal_monitor_event_lag_seconds')})", "partition {{partition}}")], unit="s",
            description="Wall clock minus the newest event time processed. Grows when the portals are quiet, too."),
        L.row("Alerts"),
        timeseries(L, "Alerts by detector and severity", [prom_target(
            f"sum by (detector, severity) (increase({m('portal_monitor_alerts_total')}{rate}))", "{{detector}} {{severity}}")],
            bars=True, w=16, decimals=0, overrides=severity_overrides(),
            description="Alerts raised per interval. Details are in the Flagged sessions dashboard."),
        table(L, "Alerts in range by detector and severity", [prom_target(
            f"sum by (detector, severity) (increase({m('portal_monitor_alerts_total')}[$__range]))", "", instant=True)],
            w=8, h=8, decimals=0),
        L.row("Kafka"),
        timeseries(L, "Consumer lag by partition", [prom_target(
            f"max by (partition) ({m('portal_monitor_consumer_lag_records')})", "partition {{partition}}")], decimals=0,
            description="High watermark minus the position of the replica that holds the partition."),
        timeseries(L, "Assigned partitions by replica", [prom_target(
            f"sum by (instance) ({m('portal_monitor_assigned_partitions')})", "{{instance}}")], decimals=0, stack=True),
    ]
    return dashboard("portal-monitor-overview", "portal-monitor / Overview",
                     "Events read, alerts raised and Kafka lag across the monitor replicas.", panels, prometheus_variables())


def detectors() -> dict:
    L = Layout()
    rate = "[$__rate_interval]"
    # Verdict totals are read from the store, so every replica exports the same store-wide
    # count: take max across replicas, never sum.
    verdicts = m("portal_monitor_alert_verdicts_total")
    fp = m("portal_monitor_alert_verdicts_total", 'verdict="false_positive"')
    panels = [
        timeseries(L, "Alerts /h by detector", [prom_target(
            f"sum by (detector) (rate({m('portal_monitor_alerts_total')}[1h])) * 3600", "{{detector}}")], w=12, decimals=1,
            description="Alert rate per detector, averaged over the last hour."),
        timeseries(L, "Alerts by severity", [prom_target(
            f"sum by (severity) (increase({m('portal_monitor_alerts_total')}{rate}))", "{{severity}}")], bars=True, w=12,
            decimals=0, overrides=severity_overrides()),
        L.row("Responders' verdicts"),
        panel(L, "bargauge", "False-positive rate by detector (time range)", [prom_target(
            f"max by (detector) (increase({fp}[$__range])) / clamp_min(sum by (detector) (max by (detector, verdict) (increase({verdicts}[$__range]))), 1)",
            "{{detector}}", instant=True)], unit="percentunit", min_value=0, w=12, h=8,
            thresholds=[(None, "green"), (0.2, "orange"), (0.5, "red")],
            options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
            description="Share of judged alerts that responders marked false_positive. 0 when no alert was judged."),
        timeseries(L, "False-positive rate by detector (1 day window)", [prom_target(
            f"max by (detector) (increase({fp}[1d])) / clamp_min(sum by (detector) (max by (detector, verdict) (increase({verdicts}[1d]))), 1)",
            "{{detector}}")], unit="percentunit", min_value=0, w=12),
        table(L, "Verdicts in range", [prom_target(
            f"max by (detector, verdict) (increase({verdicts}[$__range]))", "", instant=True)], w=12, h=8, decimals=0),
        timeseries(L, "Alerts not yet judged (range)", [prom_target(
            f"clamp_min(sum by (detector) (increase({m('portal_monitor_alerts_total')}[$__range])) - sum by (detector) (max by (detector, verdict) (increase({verdicts}[$__range]))), 0)",
            "{{detector}}")], w=12, h=8, decimals=0, description="Alerts raised minus verdicts given, per detector."),
        L.row("Cost"),
        timeseries(L, "Detector time p99 per batch", [prom_target(
            f"histogram_quantile(0.99, sum by (detector, le) (rate({m('portal_monitor_detector_processing_seconds_bucket')}{rate})))",
            "{{detector}}")], unit="s", w=12),
        timeseries(L, "Detector time share", [prom_target(
            f"sum by (detector) (rate({m('portal_monitor_detector_processing_seconds_sum')}{rate}))", "{{detector}}")],
            unit="percentunit", stack=True, w=12, description="Seconds spent per second of wall clock, by detector."),
        L.row("State"),
        timeseries(L, "Accounts", [
            prom_target(f"sum({m('portal_monitor_tracked_accounts')})", "tracked"),
            prom_target(f"sum({m('portal_monitor_dormant_accounts')})", "dormant", ref="B")], w=12, decimals=0),
        timeseries(L, "Open sessions", [prom_target(f"sum({m('portal_monitor_open_sessions')})", "open sessions")], w=12, decimals=0),
        timeseries(L, "Sessions left open per day, by portal", [prom_target(
            f"sum by (portal) (increase({m('portal_monitor_sessions_left_open_total')}[1d]))", "{{portal}}")],
            w=24, decimals=0,
            description="Sessions that ended without a logout (the portal's expiry or the idle timeout), over the "
                        "last day: the trend behind session_left_open, alerted on or not."),
        L.row("Credential attacks"),
        timeseries(L, "Failed logins /min by portal", [prom_target(
            f"sum by (portal) (rate({m('portal_monitor_login_failures_total')}{rate})) * 60", "{{portal}}")], w=12,
            description="Failed logins the shards ran. A brute force or a spray shows up here first; the "
                        "alerts say which account or source (no address is ever a metric label)."),
        timeseries(L, "Sources spraying passwords now", [
            prom_target(f"sum({m('portal_monitor_spray_sources_active')})", "spraying sources"),
            prom_target(f"sum({m('portal_monitor_network_stage_partitions')})", "network stage partitions held", ref="B")],
            w=12, decimals=0,
            description="Networks (or addresses of shared networks) with a password_spray alert and a failed login "
                        "within the spray window. Which ones: `portal-monitor alerts list --detector password_spray`, "
                        "or `--source CIDR`."),
    ]
    return dashboard("portal-monitor-detectors", "portal-monitor / Detectors",
                     "What each detector raises, how often responders judge it wrong, and what it costs.", panels,
                     prometheus_variables(), time_from="now-7d", refresh="1m")


def flagged_sessions() -> dict:
    L = Layout()
    where_alerts = "$__timeFilter(a.ts) AND a.detector IN (${detector:sqlstring}) AND a.severity IN (${severity:sqlstring})"
    panels = [
        panel(L, "timeseries", "Alerts per hour by detector", [sql_target(f"""
            SELECT $__timeGroupAlias(a.ts, '1h'), a.detector AS metric, count(*) AS value
            FROM alerts a WHERE {where_alerts} GROUP BY 1, 2 ORDER BY 1""", fmt="time_series")],
            w=16, h=7, decimals=0,
            custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal", "group": "A"}, "showPoints": "never"}),
        panel(L, "piechart", "Alerts by status", [sql_target(f"""
            SELECT coalesce(a.status, 'new') AS status, count(*) AS alerts FROM alerts a WHERE {where_alerts}
            GROUP BY 1 ORDER BY 2 DESC""")], w=8, h=7,
            options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True}, "pieType": "donut",
                     "legend": {"displayMode": "table", "placement": "right", "values": ["value"], "showLegend": True}}),
        table(L, "Alerts", [sql_target(f"""
            SELECT a.ts AS "time", a.severity, a.detector, a.account_id, a.source, a.summary, a.portal, a.status, a.policy,
                   array_to_string(a.session_ids, ' ') AS sessions, a.alert_id
            FROM alerts a WHERE {where_alerts} ORDER BY a.ts DESC LIMIT 500""")], h=10,
            description="Newest first. Click an alert id to open it in the flagged-sessions table below.",
            overrides=[{"matcher": {"id": "byName", "options": "alert_id"}, "properties": [{"id": "links", "value": [
                {"title": "Sessions of this alert",
                 "url": "/d/portal-monitor-flagged?${__url_time_range}&${detector:queryparam}&${severity:queryparam}&var-alert=${__value.raw}"}]}]}]),
        table(L, "Flagged sessions", [sql_target("""
            SELECT s.opened_at AS "time", s.account_id, s.portal, s.ip, s.network, s.user_agent, s.device_id,
                   s.last_activity, s.closed_at, s.close_reason, s.page_views,
                   array_to_string(s.alert_ids, ' ') AS alerts, s.session_id
            FROM flagged_sessions s
            WHERE $__timeFilter(s.opened_at) AND (${alert:sqlstring} = '' OR ${alert:sqlstring} = ANY (s.alert_ids))
            ORDER BY s.opened_at DESC LIMIT 500""")], h=10,
            description="Sessions an alert flagged; their timelines are kept. Click a session id for its timeline.",
            overrides=[{"matcher": {"id": "byName", "options": "session_id"}, "properties": [{"id": "links", "value": [
                {"title": "Timeline of this session",
                 "url": "/d/portal-monitor-flagged?${__url_time_range}&var-alert=${alert}&var-session=${__value.raw}"}]}]}]),
        table(L, "Session timeline: what was viewed", [sql_target("""
            SELECT i.at AS "time", i.action, i.resource, i.ip, i.session_id FROM session_items i
            WHERE i.session_id = ${session:sqlstring} ORDER BY i.at LIMIT 2000""")], h=12,
            description="Every item viewed in the chosen session, in order. Set the session variable or click a session id above."),
    ]
    variables = [
        datasource_variable("postgres", "grafana-postgresql-datasource", "portal-monitor-postgres", "PostgreSQL"),
        custom_variable("detector", DETECTORS, "Detector"),
        custom_variable("severity", SEVERITIES, "Severity"),
        {"name": "alert", "label": "Alert id", "type": "textbox", "query": "", "current": {"text": "", "value": ""}, "hide": 0},
        {"name": "session", "label": "Session id", "type": "textbox", "query": "", "current": {"text": "", "value": ""}, "hide": 0},
    ]
    return dashboard("portal-monitor-flagged", "portal-monitor / Flagged sessions",
                     "Alerts and the sessions they flagged, with what was viewed, from the monitor's PostgreSQL store. "
                     "Shows account ids and IP addresses: restrict this dashboard's folder to incident responders.",
                     panels, variables, tags=("responders",), time_from="now-7d", refresh="1m")


def service_health() -> dict:
    L = Layout()
    rate = "[$__rate_interval]"
    panels = [
        stat(L, "Replicas up", [prom_target('sum(up{job=~"$job", instance=~"$instance"})')], decimals=0,
             thresholds=[(None, "red"), (1, "orange"), (2, "green")]),
        stat(L, "Monitor alerts firing", [prom_target(
            'sum(ALERTS{alertname=~"PortalMonitor.*", alertstate="firing"}) or vector(0)')], decimals=0,
            thresholds=[(None, "green"), (1, "red")], description="Alerts of deploy/prometheus/rules firing now."),
        stat(L, "Since last commit", [prom_target(
            f"time() - max({m('portal_monitor_last_commit_timestamp_seconds')})")], unit="s",
            thresholds=[(None, "green"), (300, "orange"), (900, "red")]),
        stat(L, "Oldest checkpoint", [prom_target(f"max({m('portal_monitor_checkpoint_age_seconds')})")], unit="s",
             thresholds=[(None, "green"), (300, "orange"), (900, "red")]),
        stat(L, "Oldest undelivered alert", [prom_target(f"max({m('portal_monitor_sink_oldest_undelivered_seconds')})")],
             unit="s", thresholds=[(None, "green"), (60, "orange"), (300, "red")]),
        stat(L, "Sink failures /s", [prom_target(
            f"sum(rate({m('portal_monitor_sink_deliveries_total', FAILED)}{rate}))")], unit="reqps",
            thresholds=[(None, "green"), (0.001, "red")]),
        table(L, "Replicas", [prom_target(
            f"max by (instance, version) ({m('portal_monitor_build_info')})", "", instant=True),
            prom_target(f"sum by (instance) ({m('portal_monitor_assigned_partitions')})", "", ref="B", instant=True)],
            h=6, description="Version and partitions held by each replica.",
            transformations=[{"id": "merge", "options": {}},
                             {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {"Value #A": "running", "Value #B": "partitions"}}}]),
        L.row("Sinks"),
        timeseries(L, "Deliveries /s by sink and outcome", [prom_target(
            f"sum by (sink, outcome) (rate({m('portal_monitor_sink_deliveries_total')}{rate}))", "{{sink}} {{outcome}}")],
            unit="reqps"),
        timeseries(L, "Sink write time p99", [prom_target(
            f"histogram_quantile(0.99, sum by (sink, le) (rate({m('portal_monitor_sink_write_seconds_bucket')}{rate})))",
            "{{sink}}")], unit="s"),
        timeseries(L, "Sink queue depth", [prom_target(
            f"sum by (sink) ({m('portal_monitor_sink_queue_depth')})", "{{sink}}")], decimals=0),
        timeseries(L, "Oldest undelivered finding by sink", [prom_target(
            f"max by (sink) ({m('portal_monitor_sink_oldest_undelivered_seconds')})", "{{sink}}")], unit="s"),
        L.row("Processing"),
        timeseries(L, "Batch processing time", [
            prom_target(f"histogram_quantile(0.5, sum by (le) (rate({m('portal_monitor_batch_processing_seconds_bucket')}{rate})))", "p50"),
            prom_target(f"histogram_quantile(0.99, sum by (le) (rate({m('portal_monitor_batch_processing_seconds_bucket')}{rate})))", "p99", ref="B")],
            unit="s", description="Decode and detectors over one batch, sinks excluded."),
        timeseries(L, "Records per batch", [
            prom_target(f"sum(rate({m('portal_monitor_batch_events_sum')}{rate})) / sum(rate({m('portal_monitor_batch_events_count')}{rate}))", "mean"),
            prom_target(f"histogram_quantile(0.99, sum by (le) (rate({m('portal_monitor_batch_events_bucket')}{rate})))", "p99", ref="B")]),
        timeseries(L, "Watermark behind wall clock by partition", [prom_target(
            f"time() - max by (partition) ({m('portal_monitor_watermark_timestamp_seconds')})", "partition {{partition}}")], unit="s"),
        timeseries(L, "State checkpoint age by partition", [prom_target(
            f"max by (partition) ({m('portal_monitor_checkpoint_age_seconds')})", "partition {{partition}}")], unit="s"),
        timeseries(L, "Offset commits /s by outcome", [prom_target(
            f"sum by (outcome) (rate({m('portal_monitor_offset_commits_total')}{rate}))", "{{outcome}}")], unit="reqps"),
        timeseries(L, "In memory", [
            prom_target(f"sum by (instance) ({m('portal_monitor_open_sessions')})", "{{instance}} sessions"),
            prom_target(f"sum by (instance) ({m('portal_monitor_tracked_accounts')})", "{{instance}} accounts", ref="B")],
            decimals=0),
    ]
    return dashboard("portal-monitor-health", "portal-monitor / Service health",
                     "Is the monitor up, keeping up, delivering alerts and checkpointing its state?",
                     panels, prometheus_variables(), time_from="now-3h")


DASHBOARDS = {
    "overview.json": overview,
    "detectors.json": detectors,
    "flagged-sessions.json": flagged_sessions,
    "service-health.json": service_health,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date, run {Path(__file__).name}: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
