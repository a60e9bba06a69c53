"""`portal-monitor replay`: the same engine over a JSON-lines file, in event time.

Needs no configuration and no server: alerts go out as JSON lines, dead letters to a file,
and a summary closes the run. Time-driven rules fire exactly as they would have live, and so
do the cool-down grouping and the config file's silences (the alert gate works in event time).
With `--sinks` the external sinks of the config are written to directly (there is no outbox
without PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from detectors.registry import detector_ids
from monitor.accounts.roster import RosterError
from monitor.alerting.gate import build_gate
from monitor.service.config import load_settings
from monitor.support.metrics import Metrics
from monitor.service.offline import build_offline_pipeline, start_offline
from monitor.service.runtime import tune_garbage_collector
from monitor.ingest.sources.files import JsonlEventFile
from sinks.actions import FileActions
from sinks.dead_letters import FileDeadLetters
from sinks.jsonl import JsonlAlertSink


def register(subcommands: argparse._SubParsersAction) -> None:
    from monitor.commands.cli import add_config_argument

    parser = subcommands.add_parser(
        "replay",
        help="run the detectors over a JSON-lines file of events (no servers needed)",
        description="Replay portal.event/v1 records from a JSON-lines file (or - for stdin) "
        "through the same engine as the daemon, in event time. Alerts are written as "
        "portal.alert/v1 JSON lines; records that break the contract go to a dead-letter file; "
        "a summary (events, invalid by reason, alerts by detector, events/s) ends the run.",
    )
    parser.add_argument("events", metavar="EVENTS.jsonl",
                        help="events file (gzip-compressed is read as it is), or - for standard input")
    add_config_argument(parser)
    parser.add_argument(
        "--alerts-out", metavar="FILE", default="-", help="write alerts here (default: standard output)"
    )
    parser.add_argument(
        "--dead-letters",
        metavar="FILE",
        help="write rejected records here (default: EVENTS.jsonl.dead-letters.jsonl, "
        "or dead-letters.jsonl for stdin)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="append to the --alerts-out, --dead-letters and --actions-out files "
        "(default: a file of an earlier run is replaced)",
    )
    parser.add_argument(
        "--links",
        metavar="LINKS.csv",
        help="read the school's pupil links (account_id, pupil_id[, status, reason, since]; docs/accounts.md) "
        "and run them as pupil_linked/pupil_unlinked events before the file",
    )
    parser.add_argument(
        "--accounts",
        metavar="ROSTER.csv",
        help="import this roster into the replay's in-memory account registry first, so accounts "
        "that never log in are covered too (format: docs/accounts.md)",
    )
    parser.add_argument(
        "--actions-out",
        metavar="FILE",
        help="write portal.action/v1 events (accounts the policy says to disable) here as JSON lines",
    )
    parser.add_argument(
        "--summary", choices=("text", "json"), default="text", help="format of the closing summary (stderr)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress line even on a terminal")
    parser.add_argument(
        "--max-invalid",
        type=_share,
        default=0.5,
        metavar="SHARE",
        help="exit 1 with a one-line reason when more than this share of the records break the "
        "contract (dead letters), e.g. 0.5 = half (default); 1 never fails",
    )
    parser.add_argument(
        "--sinks",
        action="store_true",
        help="also deliver alerts to the external sinks enabled in the config ([sinks.mqtt], "
        "[sinks.kafka], [sinks.webhook], [sinks.alertmanager]) directly, without the outbox",
    )
    parser.add_argument(
        "--all-alerts",
        action="store_true",
        help="write every alert raised: no cool-down grouping, no silences (as live would not)",
    )
    parser.set_defaults(func=replay)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number between 0 and 1: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"not a number between 0 and 1: {text!r}")
    return value


class Progress:
    """Events, alerts, events/s and the time left, on one terminal line (`_progress.Progress`)."""

    def __init__(self, source: JsonlEventFile, enabled: bool) -> None:
        from monitor.commands._progress import Progress as Line

        self.source = source
        self.line = Line(f"replay {source.path}", "events", enabled)

    def update(self, events: int, alerts: int) -> None:
        size = self.source.size
        self.line.update(events, share=self.source.bytes_read / size if size else None, extra=f"{alerts:,} alerts")


async def replay(args: argparse.Namespace) -> int:
    from monitor.commands._shared import log_level
    from monitor.ingest.sources.files import UnreadableInput
    from monitor.service.checks import check_files, describe_states, detector_states
    from monitor.support.logging import configure_logging

    settings = load_settings(args.config)
    # No store here: the access log of pupils' records would be folded per batch and dropped.
    settings.pupils.access_log = False
    configure_logging(log_level(args, "warning"), settings.logging.format)  # to stderr: stdout may carry the alerts
    require_files(settings)
    try:
        source = JsonlEventFile(args.events)
    except UnreadableInput as error:
        print(f"portal-monitor: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"portal-monitor: cannot read {args.events}: {error.strerror}", file=sys.stderr)
        return 1
    states = detector_states(settings)
    for line in describe_states(states):
        print(line, file=sys.stderr)
    dead_letter_path = args.dead_letters or (
        "dead-letters.jsonl" if args.events == "-" else f"{args.events}.dead-letters.jsonl"
    )
    alerts_sink = JsonlAlertSink(args.alerts_out, append=args.append)
    dead_letters = FileDeadLetters(dead_letter_path, append=args.append)
    sinks: list = [alerts_sink, dead_letters]
    if args.actions_out:
        sinks.append(FileActions(args.actions_out, append=args.append))
    if args.sinks:
        from monitor.service.app import build_publishers
        from sinks.outbound import DirectAlertSink

        sinks.extend(DirectAlertSink(publisher) for publisher in build_publishers(settings))
    metrics = Metrics(detector_ids(), [sink.name for sink in sinks])
    gate = None if args.all_alerts else build_gate(settings)
    pipeline = build_offline_pipeline(settings, sinks, metrics, gate=gate)
    try:
        roster = await start_offline(pipeline, args.accounts)
    except RosterError as error:
        print(f"portal-monitor: {error}", file=sys.stderr)
        return 1
    if roster is not None:
        print(roster.render(), file=sys.stderr)
    tune_garbage_collector()
    batches = source.batches()
    if args.links:
        try:
            batches = _with_links(args.links, batches)
        except RosterError as error:
            print(f"portal-monitor: {error}", file=sys.stderr)
            return 1
    progress = Progress(source, enabled=not args.no_progress)
    started, started_cpu = time.perf_counter(), time.process_time()
    try:
        first_event_after = await pipeline.run_file(
            batches, lambda: progress.update(pipeline.events_seen, pipeline.alerts_raised)
        )
        await pipeline.accounts.publish_gauge(force=True)
    except UnreadableInput as error:
        print(f"portal-monitor: {error}", file=sys.stderr)
        return 1
    finally:
        await pipeline.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if progress.line.live:  # the summary below says the rest; on a terminal, end the progress line
        progress.line.finish(pipeline.events_seen, f"{pipeline.alerts_raised:,} alerts")
    summary = build_summary(metrics, pipeline.events_seen, elapsed, first_event_after, dead_letters, cpu, states)
    invalid = sum(summary["invalid"].values())
    failure = None
    if pipeline.events_seen and invalid / pipeline.events_seen > args.max_invalid:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["invalid"].items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        failure = (
            f"replay failed: {invalid:,} of {pipeline.events_seen:,} records "
            f"({100 * invalid / pipeline.events_seen:.0f}%) are not portal.event/v1 ({reasons}), more than "
            f"--max-invalid {args.max_invalid:g}; is {args.events} a portal event log? "
            f"Each is in {dead_letters.path} with its line number"
        )
        summary["failed"] = failure
    if args.summary == "json":  # the JSON summary stays the last line
        if failure:
            print(f"portal-monitor: {failure}", file=sys.stderr)
        print(json.dumps(summary), file=sys.stderr)
    else:
        print(render_summary(summary, states), file=sys.stderr)
        if failure:
            print(f"portal-monitor: {failure}", file=sys.stderr)
    return 1 if failure else 0


def _with_links(path: str, batches):
    """The links file's events as a first batch (offset 0: before the file's first line), then `batches`."""
    from monitor.accounts.links import LinksReader

    reader = LinksReader(path, time.time())
    with reader:
        records = [(0, record) for record in reader.records()]
    rejected = reader.rejections
    print(f"{path}: {reader.rows_read:,} rows read: {len(records):,} link events, {rejected.total:,} rejected", file=sys.stderr)
    for row in rejected.rows:
        print(f"  line {row.line}: {row.reason}: {row.detail}", file=sys.stderr)

    def chained():
        if records:
            yield records
        yield from batches

    return chained()


def require_files(settings) -> None:
    """Every file the settings name must be there (GeoIP databases, lists, TLS, secrets): a
    missing one stops the start with its name (exit 2) rather than a detector quietly off."""
    from monitor.service.checks import SettingsProblem, check_files
    from monitor.service.config import ConfigError

    try:
        check_files(settings)
    except SettingsProblem as error:
        raise ConfigError(str(error)) from None


def build_summary(metrics, events, elapsed, first_event_after, dead_letters, cpu=None, states=None) -> dict:
    def by_label(counter, keep):
        totals: dict[str, int] = {}
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    key = keep(sample.labels)
                    totals[key] = totals.get(key, 0) + int(sample.value)
        return dict(sorted(totals.items()))

    summary = {
        "events": events,
        "seconds": round(elapsed, 3),
        "events_per_second": round(events / elapsed) if elapsed > 0 else None,
        # CPU time of this process over the same interval: what other load on the machine does not change
        "cpu_seconds": round(cpu, 3) if cpu is not None else None,
        "first_event_seconds": round(first_event_after, 4) if first_event_after is not None else None,
        "outcomes": by_label(metrics.events, lambda labels: labels["outcome"]),
        "invalid": by_label(metrics.invalid_events, lambda labels: labels["reason"]),
        "alerts": by_label(metrics.alerts, lambda labels: labels["detector"]),
        "suppressed": by_label(metrics.alerts_suppressed, lambda labels: labels["reason"]),
        "dead_letters": dead_letters.path if dead_letters.written else None,
    }
    if states is not None:
        summary["detectors_on"] = [s.detector for s in states if s.on]
        summary["detectors_off"] = {s.detector: s.why for s in states if not s.on}
    return summary


def render_summary(summary: dict, states=None) -> str:
    events = summary["events"]
    lines = [
        f"replayed {events:,} events in {summary['seconds']:.2f} s ({summary['events_per_second'] or 0:,} events/s)",
        "  outcomes: " + (", ".join(f"{k} {v:,}" for k, v in summary["outcomes"].items()) or "none"),
        "  invalid:  " + (", ".join(f"{k} {v:,}" for k, v in summary["invalid"].items()) or "none"),
        "  alerts:   " + (", ".join(f"{k} {v:,}" for k, v in summary["alerts"].items()) or "none"),
    ]
    if summary["suppressed"]:
        lines.append("  not published: " + ", ".join(f"{k} {v:,}" for k, v in summary["suppressed"].items()))
    if summary["dead_letters"]:
        lines.append(f"  dead letters written to {summary['dead_letters']} (with their line numbers)")
    if states is not None:
        from monitor.service.checks import describe_states

        lines.extend(f"  {line}" for line in describe_states(states))
    return "\n".join(lines)
