"""Checks of the effective settings beyond their types, and which detectors they leave on.

- `validate(settings)`: ranges (ports, speeds, counts never negative), DSNs and URLs that
  parse, broker lists of host:port, detector names where they are typed; every settings load
  runs it (`load_settings`), so `run` and `check-config` refuse the same things.
- `check_files(settings)`: every file the settings name exists and can be read, and a GeoIP
  database configured is one; `run`, `replay`, `demo` and `check-config` run it, so a missing
  file stops the start with its name instead of a warning and a detector silently off.
- `detector_states(settings)`: each detector on or off, and why; said at start and in the
  summary of `run`, `replay` and `demo`.
- `try_connections(settings)`: `check-config --connect`: PostgreSQL, Kafka, MQTT, GeoIP.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec

from detectors.registry import detector_ids, location_detector_ids
from monitor.contract.durations import Seconds

NO_CITY_DB = "no GeoIP city database configured (set geoip.city_db)"


class SettingsProblem(ValueError):
    """A value the types accept but that cannot work; the message names the key."""


# -- values --------------------------------------------------------------------------------------


def _walk(value: Any, path: str):
    """(dotted key, value) of every leaf in the settings tree."""
    if isinstance(value, msgspec.Struct):
        for field in value.__struct_fields__:
            yield from _walk(getattr(value, field), f"{path}.{field}" if path else field)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _walk(item, f"{path}[{n}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    else:
        yield path, value


def validate(settings: Any) -> None:
    """Raise `SettingsProblem` naming the first key whose value cannot work."""
    for key, value in _walk(settings, ""):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = key.rsplit(".", 1)[-1]
        if value != value:  # NaN
            raise SettingsProblem(f"{key}: not a number")
        if name == "port" or name.endswith("_port"):
            lowest = 0 if key == "http.port" else 1  # http.port 0: any free port (tests)
            if not lowest <= value <= 65535:
                raise SettingsProblem(f"{key}: {value} is not a port ({lowest}-65535)")
        elif value < 0:
            raise SettingsProblem(f"{key}: {value:g} is negative")
        elif isinstance(value, Seconds) and value == float("inf"):
            raise SettingsProblem(f"{key}: not a finite duration")
    _check_positive(settings)
    _check_endpoints(settings)
    _check_detector_names(settings)


def _check_positive(settings: Any) -> None:
    for key, value in (
        ("detectors.impossible_travel.min_speed_kmh", settings.detectors.impossible_travel.min_speed_kmh),
        ("detectors.impossible_travel.min_distance_km", settings.detectors.impossible_travel.min_distance_km),
        ("postgres.pool_max", settings.postgres.pool_max),
        ("postgres.connect_timeout", settings.postgres.connect_timeout),
        ("source.batch_max_records", settings.source.batch_max_records),
        ("sessions.idle_timeout", settings.sessions.idle_timeout),
        ("sessions.max_duration", settings.sessions.max_duration),
        ("geoip.cache_size", settings.geoip.cache_size),
    ):
        if not value > 0:
            raise SettingsProblem(f"{key}: must be more than 0, not {value:g}")
    if settings.postgres.pool_min > settings.postgres.pool_max:
        raise SettingsProblem(
            f"postgres.pool_min: {settings.postgres.pool_min} is more than pool_max {settings.postgres.pool_max}"
        )


def _check_endpoints(settings: Any) -> None:
    from monitor.ingest.kafka_client import bootstrap_endpoints
    from monitor.store import dsn_endpoint

    try:
        dsn_endpoint(settings.postgres.dsn)
    except ValueError as error:
        raise SettingsProblem(f"postgres.dsn: {error}") from None
    try:
        bootstrap_endpoints(settings.kafka.bootstrap_servers)
    except ValueError as error:
        raise SettingsProblem(f"kafka.bootstrap_servers: {error}") from None
    sinks = settings.sinks
    for key, section in (("sinks.webhook.url", sinks.webhook), ("sinks.alertmanager.url", sinks.alertmanager)):
        if section.enabled and section.url:
            parts = urlsplit(section.url)
            try:
                parts.port
            except ValueError:
                raise SettingsProblem(f"{key}: bad port in {section.url!r}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingsProblem(f"{key}: not an http(s) URL: {section.url!r}")


def check_detector(text: str, known: tuple[str, ...] | list[str], error: type[Exception] = ValueError) -> str:
    """`text` if it is a detector id, else `error` with the nearest id and the list (one line)."""
    import difflib

    if text in known:
        return text
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise error(f"unknown detector {text!r}; {hint}detectors: {', '.join(known)}")


def _check_detector_names(settings: Any) -> None:
    known = detector_ids()
    for name in settings.alerting.cooldowns:
        try:
            check_detector(name, known)
        except ValueError as error:
            raise SettingsProblem(f"alerting.cooldowns.{name}: {error}") from None
    for n, silence in enumerate(settings.alerting.silences):
        if silence.detector:
            try:
                check_detector(silence.detector, known)
            except ValueError as error:
                raise SettingsProblem(f"alerting.silences[{n}].detector: {error}") from None


# -- files ---------------------------------------------------------------------------------------


def named_files(settings: Any) -> list[tuple[str, str]]:
    """(key, path) of every file the settings name, set or not needed excluded."""
    files = []
    for key, value in _walk(settings, ""):
        name = key.rsplit(".", 1)[-1]
        if not isinstance(value, str) or not value:
            continue
        if name in ("city_db", "asn_db", "anonymous_db") or name.endswith("_file") or name.startswith("ssl_") and (
            name.endswith("file")
        ) or (name == "file" and key.startswith("networks.risky")):
            files.append((key, value))
    return files


def check_files(settings: Any) -> None:
    """Raise `SettingsProblem` naming the first file that is missing or unreadable, or a GeoIP
    database that is not the kind its key wants."""
    from monitor.places.geoip import open_reader

    for key, path in named_files(settings):
        if not os.path.isfile(path):
            raise SettingsProblem(f"{key}: file not found: {path}")
        if not os.access(path, os.R_OK):
            raise SettingsProblem(f"{key}: cannot read {path}: permission denied")
    for name in ("city_db", "asn_db", "anonymous_db"):
        path = getattr(settings.geoip, name)
        if path:
            reader, problem = open_reader(name, path)
            if problem is not None:
                raise SettingsProblem(f"geoip.{name}: {path}: {problem.error}")
            reader.close()


# -- detectors on and off ------------------------------------------------------------------------


class DetectorState(NamedTuple):
    detector: str
    on: bool
    why: str  # why it is off ("" when on)


def detector_states(settings: Any, registry: bool = True) -> list[DetectorState]:
    """Each detector of `detectors.registry`, on or off and why. `registry`: whether an account
    registry backs this process (the swept `dormant_account` needs one)."""
    states = []
    location = location_detector_ids()
    for detector in detector_ids():
        section = getattr(settings.detectors, detector)
        why = ""
        if not section.enabled:
            why = f"detectors.{detector}.enabled = false"
        elif detector in location and not settings.geoip.city_db:
            why = NO_CITY_DB
        elif detector == "risky_network" and not settings.networks.risky and not settings.geoip.anonymous_db:
            why = "nothing to match: no networks.risky lists and no geoip.anonymous_db"
        elif detector == "dormant_account" and not registry:
            why = "no account registry (accounts.registry = false)"
        states.append(DetectorState(detector, not why, why))
    return states


def describe_states(states: list[DetectorState]) -> list[str]:
    """`detectors on: a, b, c` and one `<id> off: <why>` line per detector off."""
    on = [s.detector for s in states if s.on]
    lines = [f"detectors on: {', '.join(on) or 'none'}"]
    lines.extend(f"{s.detector} off: {s.why}" for s in states if not s.on)
    return lines


# -- connections (check-config --connect) --------------------------------------------------------


class Check(NamedTuple):
    component: str
    ok: bool | None  # None: not configured, nothing tried
    detail: str


async def try_connections(settings: Any, timeout: float = 5.0) -> list[Check]:
    """Try each server the settings name, at most `timeout` each; what works and what not."""
    results = await asyncio.gather(
        _try_postgres(settings, timeout), _try_kafka(settings, timeout), _try_mqtt(settings, timeout)
    )
    return [*results, *_try_geoip(settings)]


async def _try_postgres(settings: Any, timeout: float) -> Check:
    import asyncpg

    from monitor import store

    config = msgspec.structs.replace(settings.postgres, pool_min=1, pool_max=1,
                                     connect_timeout=Seconds(min(float(settings.postgres.connect_timeout), timeout)))
    try:
        pool = await store.connect(config)
    except store.StoreUnreachable as error:
        return Check("postgres", False, str(error))
    except asyncpg.PostgresError as error:
        return Check("postgres", False, f"refused: {type(error).__name__}: {error}")
    try:
        version = await pool.fetchval("SHOW server_version")
        applied = await pool.fetchval(
            "SELECT max(version) FROM portal_monitor_migrations"
        ) if await pool.fetchval("SELECT to_regclass('portal_monitor_migrations') IS NOT NULL") else None
    finally:
        await pool.close()
    latest = max(v for v, _, _ in store.migrations())
    host, port, database = store.dsn_endpoint(settings.postgres.dsn)
    schema = "not migrated (run `portal-monitor migrate`)" if applied is None else (
        f"schema at {applied:04d}" + ("" if applied >= latest else f", {latest:04d} available (run `portal-monitor migrate`)")
    )
    return Check("postgres", True, f"{host}:{port}/{database}: PostgreSQL {version}, {schema}")


async def _try_kafka(settings: Any, timeout: float) -> Check:
    from aiokafka.admin import AIOKafkaAdminClient

    from monitor.ingest.kafka_client import bootstrap_endpoints, client_options, probe

    servers = settings.kafka.bootstrap_servers
    unreachable = [p for p in [await probe(h, port, timeout) for h, port in bootstrap_endpoints(servers)] if p]
    if len(unreachable) == len(bootstrap_endpoints(servers)):
        return Check("kafka", False, "; ".join(unreachable))
    admin = AIOKafkaAdminClient(**{**client_options(settings.kafka), "request_timeout_ms": int(timeout * 1000)})
    try:
        await asyncio.wait_for(admin.start(), timeout)
        topics = await asyncio.wait_for(admin.list_topics(), timeout)
    except Exception as error:  # noqa: BLE001 - aiokafka raises many kinds; each said in one line
        return Check("kafka", False, f"{servers}: accepts connections but no Kafka answer within {timeout:g} s "
                                     f"({type(error).__name__}: {error or 'timed out'})")
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: BLE001 - closing a client that never started
            pass
    topic = settings.source.topic
    found = "present" if topic in topics else "MISSING (create it, or the consumer waits for it)"
    return Check("kafka", True, f"{servers}: {len(topics)} topic(s); source topic {topic} {found}")


async def _try_mqtt(settings: Any, timeout: float) -> Check:
    from monitor.ingest.kafka_client import probe

    mqtt = settings.sinks.mqtt
    if not mqtt.enabled:
        return Check("mqtt", None, "sinks.mqtt not enabled; not tried")
    from sinks.mqtt import MqttPublisher

    # its own client id: the daemon's would be taken over (MQTT drops the older connection)
    sink = MqttPublisher(msgspec.structs.replace(mqtt, timeout=Seconds(timeout), client_id=f"{mqtt.client_id}-check"))
    problem = await probe(mqtt.host, mqtt.port, timeout)
    if problem:
        return Check("mqtt", False, problem)
    try:
        client = await asyncio.wait_for(sink._connected(), timeout)
    except Exception as error:  # noqa: BLE001 - one line whatever the client raised
        return Check("mqtt", False, f"{mqtt.host}:{mqtt.port}: {type(error).__name__}: {error or 'no CONNACK'}")
    try:
        await client.__aexit__(None, None, None)
    except Exception:  # noqa: BLE001 - the check is done; a failed DISCONNECT changes nothing
        pass
    return Check("mqtt", True, f"{mqtt.host}:{mqtt.port}: connected")


def _try_geoip(settings: Any) -> list[Check]:
    from monitor.places.geoip import open_reader

    checks = []
    for name in ("city_db", "asn_db", "anonymous_db"):
        path = getattr(settings.geoip, name)
        if not path:
            why = f" ({', '.join(location_detector_ids())} off)" if name == "city_db" else ""
            checks.append(Check(f"geoip.{name}", None, f"not configured{why}"))
            continue
        reader, problem = open_reader(name, path)
        if problem is not None:
            checks.append(Check(f"geoip.{name}", False, f"{path}: {problem.error}"))
            continue
        meta = reader.metadata()
        reader.close()
        checks.append(Check(f"geoip.{name}", True, f"{path}: {meta.database_type}, built "
                                                   f"{_built(meta.build_epoch)}"))
    return checks


def _built(epoch: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")
