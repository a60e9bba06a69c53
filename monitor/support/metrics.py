"""Prometheus metrics of the monitor, in one registry built by the composition root.

Conventions: prefix `portal_monitor_`, base units, `_total` and `_seconds` suffixes, only
bounded label values (event type, outcome, reason, detector, severity, sink, partition),
every known label combination pre-initialised to zero so dashboards and rules see a series
before the first event. No account id, IP or pupil id is ever a label.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily

from monitor import __version__
from monitor.contract.alerts import SEVERITIES
from monitor.contract.events import REJECTION_REASONS
from monitor.contract.events import EVENT_TYPES, PORTAL_LABELS

# `unlinked_pupil_access`'s judgements (detectors.unlinked_pupil_access.JUDGEMENTS).
PUPIL_VIEW_JUDGEMENTS = ("linked", "not_linked", "no_longer_linked", "no_known_links")
SINK_OUTCOMES = ("delivered", "failed", "retried")
STAGE_OUTCOMES = ("processed", "late", "duplicate", "invalid")
SUPPRESSION_REASONS = ("grouped", "silenced")
VERDICTS = ("true_positive", "false_positive", "benign")
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DETECTOR_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Every metric the service exports. Built once; passed to what updates it."""

    def __init__(self, detector_ids: Iterable[str], sink_names: Iterable[str] = ()) -> None:
        from monitor.contract.events import OUTCOMES

        detector_ids = tuple(detector_ids)
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.build_info = Info("portal_monitor_build", "Version of the running monitor.", registry=registry)
        self.build_info.info({"version": __version__})
        self.events = Counter(
            "portal_monitor_events_total",
            "Events read, by type and outcome (processed, late: after the watermark, duplicate: a redelivery).",
            ["type", "outcome"],
            registry=registry,
        )
        self.invalid_events = Counter(
            "portal_monitor_invalid_events_total",
            "Records that broke the portal.event/v1 contract, by reason; each went to the dead letters.",
            ["reason"],
            registry=registry,
        )
        self.alerts = Counter(
            "portal_monitor_alerts_total",
            "Alerts raised, by detector and severity.",
            ["detector", "severity"],
            registry=registry,
        )
        self.event_lag = Gauge(
            "portal_monitor_event_lag_seconds",
            "Wall clock minus the newest event time processed, per partition.",
            ["partition"],
            registry=registry,
        )
        self.watermark = Gauge(
            "portal_monitor_watermark_timestamp_seconds",
            "Event-time watermark of each partition's shard, as Unix time.",
            ["partition"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "portal_monitor_consumer_lag_records",
            "Records in the partition not yet read by this monitor (high watermark minus position).",
            ["partition"],
            registry=registry,
        )
        self.last_event = Gauge(
            "portal_monitor_last_event_timestamp_seconds",
            "Wall-clock Unix time at which the last event was read.",
            registry=registry,
        )
        self.open_sessions = Gauge(
            "portal_monitor_open_sessions", "Portal sessions currently live in memory.", registry=registry
        )
        self.tracked_accounts = Gauge(
            "portal_monitor_tracked_accounts", "Accounts with in-memory state.", registry=registry
        )
        self.assigned_partitions = Gauge(
            "portal_monitor_assigned_partitions", "Kafka partitions assigned to this process.", registry=registry
        )
        self.batch_seconds = Histogram(
            "portal_monitor_batch_processing_seconds",
            "Time to decode and run the detectors over one batch (excluding sinks).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            "portal_monitor_batch_events",
            "Records per batch.",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000),
            registry=registry,
        )
        self.sink_deliveries = Counter(
            "portal_monitor_sink_deliveries_total",
            "Deliveries of a batch of findings to a sink, by outcome.",
            ["sink", "outcome"],
            registry=registry,
        )
        self.sink_seconds = Histogram(
            "portal_monitor_sink_write_seconds",
            "Time for a sink to acknowledge one batch.",
            ["sink"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.dormancy_sweep_seconds = Histogram(
            "portal_monitor_dormancy_sweep_seconds",
            "Time for one shard's sweep of the account registry for warnings and dormancy crossings.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commits = Counter(
            "portal_monitor_offset_commits_total",
            "Kafka offset commits, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "portal_monitor_checkpoint_age_seconds",
            "Seconds since the partition's state and offset were last checkpointed.",
            ["partition"],
            registry=registry,
        )
        self.checkpoints_written = Counter(
            "portal_monitor_checkpoints_total",
            "Partition checkpoints written, by kind: a delta (what changed) or a full snapshot.",
            ["kind"],
            registry=registry,
        )
        self.checkpoint_bytes = Counter(
            "portal_monitor_checkpoint_bytes_total",
            "Bytes of shard state written to checkpoints, by kind (delta or full).",
            ["kind"],
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "portal_monitor_checkpoint_seconds",
            "Time to take and write one checkpoint of every assigned partition (one transaction).",
            buckets=BATCH_BUCKETS + (5.0, 10.0, 30.0),
            registry=registry,
        )
        self.last_commit = Gauge(
            "portal_monitor_last_commit_timestamp_seconds",
            "Wall-clock Unix time of the last successful offset commit.",
            registry=registry,
        )
        self.detector_seconds = Histogram(
            "portal_monitor_detector_processing_seconds",
            "Time one detector spent on one batch (its on_event calls and on_tick).",
            ["detector"],
            buckets=DETECTOR_BUCKETS,
            registry=registry,
        )
        self.dormant_accounts = Gauge(
            "portal_monitor_dormant_accounts",
            "Accounts of this process's partitions past the dormancy threshold (no successful login for "
            "180 days by default) and not yet disabled; sum over processes for the total.",
            registry=registry,
        )
        self.sink_queue_depth = Gauge(
            "portal_monitor_sink_queue_depth",
            "Alerts in the outbox not yet delivered to the sink (outbox sinks: mqtt, kafka, webhook, alertmanager).",
            ["sink"],
            registry=registry,
        )
        self.sink_oldest_undelivered = Gauge(
            "portal_monitor_sink_oldest_undelivered_seconds",
            "Age of the oldest alert in the outbox not yet delivered to the sink (0 when none).",
            ["sink"],
            registry=registry,
        )
        self.alert_verdicts = VerdictTotals(detector_ids)
        registry.register(self.alert_verdicts)
        self.alerts_suppressed = Counter(
            "portal_monitor_alerts_suppressed_total",
            "Alerts not published: grouped into an earlier alert of the cool-down, or silenced.",
            ["detector", "reason"],
            registry=registry,
        )
        self.sessions_left_open = Counter(
            "portal_monitor_sessions_left_open",
            "Sessions that ended without a logout (the portal's session_expired or the monitor's idle "
            "timeout), by portal (schools, parent, unknown): the trend behind session_left_open.",
            ["portal"],
            registry=registry,
        )
        self.retention_purged = Counter(
            "portal_monitor_retention_purged_total",
            "Rows purged by the retention policy: sessions (with their timelines), alerts, and pupil_access rows (their own retention).",
            ["kind"],
            registry=registry,
        )
        for kind in ("sessions", "alerts", "pupil_access"):
            self.retention_purged.labels(kind)
        for portal in PORTAL_LABELS:
            self.sessions_left_open.labels(portal)
        self.pupil_record_views = Counter(
            "portal_monitor_pupil_record_views_total",
            "Parent Portal views (downloads, prints, exports) of a pupil's record, by how they were judged against "
            "the account's pupil links: linked, not_linked, no_longer_linked, or no_known_links (not judged: "
            "nothing is known of the account's links; the coverage gap).",
            ["judgement"],
            registry=registry,
        )
        for judgement in PUPIL_VIEW_JUDGEMENTS:
            self.pupil_record_views.labels(judgement)
        self._tallies = {"unlinked_pupil_access": self.pupil_record_views}
        self.login_failures = Counter(
            "portal_monitor_login_failures_total",
            "Failed logins run by the shards, by portal (schools, parent, unknown: the event named none).",
            ["portal"],
            registry=registry,
        )
        for portal in PORTAL_LABELS:
            self.login_failures.labels(portal)
        self.login_outcomes = Counter(
            "portal_monitor_login_outcomes_total",
            "Login outcomes read by the network stage from the repartition topic, by outcome "
            "(processed, late: after the stage's watermark, duplicate: a redelivery, invalid: a dead letter).",
            ["outcome"],
            registry=registry,
        )
        for outcome in STAGE_OUTCOMES:
            self.login_outcomes.labels(outcome)
        self.spray_sources_active = Gauge(
            "portal_monitor_spray_sources_active",
            "Sources (networks, or addresses of shared networks) found spraying passwords with a failed "
            "login within the spray window, by the network stage's clock; summed over this process's stage partitions.",
            registry=registry,
        )
        self.stage_partitions = Gauge(
            "portal_monitor_network_stage_partitions",
            "Partitions of the login-outcomes topic whose network stage this process runs.",
            registry=registry,
        )
        for event_type in EVENT_TYPES:
            for outcome in OUTCOMES:
                self.events.labels(event_type, outcome)
        for reason in REJECTION_REASONS:
            self.invalid_events.labels(reason)
        for detector in detector_ids:
            for severity in SEVERITIES:
                self.alerts.labels(detector, severity)
            for reason in SUPPRESSION_REASONS:
                self.alerts_suppressed.labels(detector, reason)
            self.detector_seconds.labels(detector)
        self._sinks: list[str] = []
        self.add_sinks(sink_names)
        for outcome in ("succeeded", "failed"):
            self.commits.labels(outcome)
        for kind in ("delta", "full"):
            self.checkpoints_written.labels(kind)
            self.checkpoint_bytes.labels(kind)

    def add_tallies(self, detector_id: str, tallies: dict[str, int]) -> None:
        """A detector's counts of one batch (`Detector.take_tallies`) into its counter."""
        counter = self._tallies.get(detector_id)
        if counter is not None:
            for label, n in tallies.items():
                counter.labels(label).inc(n)

    def add_sinks(self, sink_names: Iterable[str]) -> None:
        for sink in sink_names:
            self._sinks.append(sink)
            for outcome in SINK_OUTCOMES:
                self.sink_deliveries.labels(sink, outcome)
            self.sink_seconds.labels(sink)
            self.sink_queue_depth.labels(sink)
            self.sink_oldest_undelivered.labels(sink)

    def add_outbox_sinks(self, sink_names: Iterable[str]) -> None:
        """Sinks fed by an outbox relay: deliveries counted per alert, queue depth and oldest age."""
        self.add_sinks(sink_names)


class VerdictTotals:
    """`portal_monitor_alert_verdicts_total{detector,verdict}`: verdicts ever given, from the store.

    Responders resolve alerts from the CLI and from any monitor's API, so the count lives in
    PostgreSQL (`alert_verdict_totals`, never purged) and every monitor exports the same
    store-wide total: aggregate with `max by (detector, verdict)`, not `sum`; ratios such as
    the false-positive rate come out right either way.
    """

    def __init__(self, detector_ids: Iterable[str]) -> None:
        self.totals: dict[tuple[str, str], float] = {(d, v): 0.0 for d in detector_ids for v in VERDICTS}

    def update(self, totals: dict[tuple[str, str], float]) -> None:
        for key, value in totals.items():
            self.totals[key] = float(value)

    def describe(self):
        return [self._family()]

    def collect(self):
        family = self._family()
        for (detector, verdict), value in sorted(self.totals.items()):
            family.add_metric([detector, verdict], value)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "portal_monitor_alert_verdicts",
            "Responders' verdicts on alerts, by detector and verdict (true_positive, false_positive or benign), store-wide.",
            labels=["detector", "verdict"],
        )
