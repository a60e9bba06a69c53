"""One typed settings object, from a TOML file plus `PORTAL_MONITOR_*` environment variables.

Precedence: built-in defaults < the TOML file < environment. An environment variable names a
key by its path with `__` between levels: `PORTAL_MONITOR_SESSIONS__IDLE_TIMEOUT=45m`,
`PORTAL_MONITOR_KAFKA__SASL_PASSWORD=...`. Values are read as TOML when they parse as TOML
(numbers, booleans, arrays) and as plain strings otherwise.

Secrets (passwords, tokens, DSNs) come from the environment or from a `*_file` key naming a
file; they are never accepted on the command line and are masked by `check-config`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

import msgspec

from detectors.simultaneous_logins import SimultaneousLoginsSettings

ENV_PREFIX = "PORTAL_MONITOR_"
SECRET_KEYS = ("password", "token", "secret")
Severity = Literal["low", "medium", "high", "critical"]


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key."""


class Seconds(float):
    """A duration in seconds, written in config as a number or as `500ms`, `30s`, `15m`, `12h`, `180d`."""

    UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0))

    @classmethod
    def parse(cls, value: object) -> "Seconds":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return cls(value)
        if isinstance(value, str):
            for unit, factor in cls.UNITS:
                number = value[: -len(unit)].strip()
                if value.endswith(unit) and number.replace(".", "", 1).isdigit():
                    return cls(float(number) * factor)
        raise ValueError(f"not a duration: {value!r} (write e.g. 500ms, 30s, 15m, 12h or 180d)")


def _dec_hook(type_: type, value: object) -> object:
    if type_ is Seconds:
        return Seconds.parse(value)
    raise NotImplementedError(type_)


def _enc_hook(value: object) -> object:
    if isinstance(value, Seconds):
        return float(value)
    raise NotImplementedError(type(value))


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every settings section: unknown keys are errors, not silently ignored."""


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = msgspec.field(default=9464)
    enabled: bool = True


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class KafkaSettings(Section):
    """Connection to the Kafka cluster, shared by the event source and the Kafka sinks."""

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "portal-monitor"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    idempotent_producer: bool = True
    """Idempotent producers for dead letters and alerts; turn off for brokers without InitProducerId (tansu)."""


class SourceSettings(Section):
    """Where events are read from in `run`: the Kafka topic and consumer group."""

    topic: str = "portal.events"
    group_id: str = "portal-monitor"
    dead_letter_topic: str = "portal.events.dlq"
    batch_max_records: int = 5000
    poll_timeout: Seconds = Seconds(0.2)
    fetch_max_wait: Seconds = Seconds(0.1)
    """Longest the broker may hold a fetch waiting for new records (Kafka's fetch.max.wait.ms).
    Some brokers (tansu) answer only when it runs out, so it bounds event-to-alert latency."""
    session_timeout: Seconds = Seconds(10)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"


class PostgresSettings(Section):
    """The store: alerts, flagged sessions, migrations. TLS via `sslmode=` in the DSN."""

    dsn: str = "postgresql://localhost/portal_monitor"
    password: str = ""
    password_file: str = ""
    pool_min: int = 1
    pool_max: int = 4
    connect_timeout: Seconds = Seconds(10)


class EngineSettings(Section):
    """The event-time clock and redelivery window of each shard."""

    allowed_lateness: Seconds = Seconds(2)
    dedup_window: int = 200_000
    wall_clock_grace: Seconds = Seconds(30)


class SessionSettings(Section):
    idle_timeout: Seconds = Seconds(30 * 60)
    max_duration: Seconds = Seconds(12 * 3600)
    max_items: int = 100


class NetworkSettings(Section):
    """Networks that never count as different: a school's or the council's NAT egress."""

    allowlist: list[str] = []


class DetectorSettings(Section):
    simultaneous_logins: SimultaneousLoginsSettings = msgspec.field(
        default_factory=SimultaneousLoginsSettings
    )


class JsonlSinkSettings(Section):
    enabled: bool = False
    path: str = "-"
    min_severity: Severity = "low"


class PostgresSinkSettings(Section):
    enabled: bool = True
    min_severity: Severity = "low"


class SinkSettings(Section):
    jsonl: JsonlSinkSettings = msgspec.field(default_factory=JsonlSinkSettings)
    postgres: PostgresSinkSettings = msgspec.field(default_factory=PostgresSinkSettings)


class Settings(Section):
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    source: SourceSettings = msgspec.field(default_factory=SourceSettings)
    postgres: PostgresSettings = msgspec.field(default_factory=PostgresSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    sessions: SessionSettings = msgspec.field(default_factory=SessionSettings)
    networks: NetworkSettings = msgspec.field(default_factory=NetworkSettings)
    detectors: DetectorSettings = msgspec.field(default_factory=DetectorSettings)
    sinks: SinkSettings = msgspec.field(default_factory=SinkSettings)

    def __post_init__(self) -> None:
        import ipaddress

        for cidr in self.networks.allowlist:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"networks.allowlist: not a CIDR: {cidr!r}") from None


def _env_value(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_env(tree: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = _env_value(text)


def _read_secret_files(settings: Settings) -> None:
    for section, key in (
        (settings.kafka, "sasl_password"),
        (settings.postgres, "password"),
    ):
        path = getattr(section, f"{key}_file")
        if path and not getattr(section, key):
            try:
                setattr(section, key, Path(path).read_text().strip())
            except OSError as error:
                raise ConfigError(f"{key}_file: cannot read {path}: {error.strerror}") from None


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the effective settings; raise `ConfigError` with one line naming the bad key."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    _apply_env(tree, os.environ if environ is None else environ)
    try:
        settings = msgspec.convert(tree, Settings, dec_hook=_dec_hook)
    except msgspec.ValidationError as error:
        raise ConfigError(_explain(error)) from None
    _read_secret_files(settings)
    return settings


def _explain(error: msgspec.ValidationError) -> str:
    message = str(error)
    reason, _, where = message.partition(" - at `$")
    if where:
        key = where.rstrip("`").lstrip(".")
        return f"{key}: {reason}"
    return reason


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced by `***`."""
    tree = msgspec.to_builtins(settings, enc_hook=_enc_hook)

    def mask(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(k, v) for k, v in value.items()}
        if key == "dsn":
            return redact_dsn(value)
        if value and any(s in key for s in SECRET_KEYS) and not key.endswith("_file"):
            return "***"
        return value

    return mask("", tree)


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***`, fit for logs and `check-config`."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))

