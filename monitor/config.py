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
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Mapping

import msgspec

from detectors.impossible_travel import ImpossibleTravelSettings
from detectors.new_country import NewCountrySettings
from detectors.risky_network import RiskyNetworkSettings
from detectors.dormant_account import DormantAccountSettings
from detectors.dormant_account_login import DormantAccountLoginSettings
from detectors.revoked_access_use import RevokedAccessUseSettings
from detectors.simultaneous_logins import SimultaneousLoginsSettings
from monitor.durations import Seconds

ENV_PREFIX = "PORTAL_MONITOR_"
SECRET_KEYS = ("password", "token", "secret")
Severity = Literal["low", "medium", "high", "critical"]


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key."""


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


class ServiceSettings(Section):
    shutdown_timeout: Seconds = Seconds(20)
    """After SIGTERM, how long to keep trying to deliver the batch in hand before exiting
    without committing it (it is read again on restart, so nothing is lost)."""


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
    max_clock_skew: Seconds = Seconds(300)
    """Events stamped further ahead of the wall clock are dead letters (`future_timestamp`):
    one producer with a wrong clock must not fast-forward event time for every account."""


class CheckpointSettings(Section):
    """Per-partition state checkpoints in PostgreSQL, written with the partition's offset."""

    enabled: bool = True
    interval: Seconds = Seconds(5)
    every_events: int = 100_000


class SessionSettings(Section):
    idle_timeout: Seconds = Seconds(30 * 60)
    max_duration: Seconds = Seconds(12 * 3600)
    max_items: int = 100


class RiskyListSettings(Section):
    """One list of risky networks for `risky_network`: entries from a file and/or inline.

    An entry is an IP address, a CIDR or an ASN (`AS1234`); `#` starts a comment. The Tor
    Project's exit lists can be used as they are. Files are reread on SIGHUP.
    """

    name: str
    kind: Literal["tor", "vpn", "proxy", "hosting", "public"]
    file: str = ""
    entries: list[str] = []


class SharedNetworkSettings(Section):
    """Learning organisation-shared networks (school NATs, council offices) from logins."""

    enabled: bool = True
    min_accounts: int = 20
    """Distinct accounts that must log in from one egress address (IPv4) or /64 (IPv6); at most 64."""
    min_span: Seconds = Seconds(86400)
    """...over at least this much event time, so a burst of logins from one address is not learnt."""
    forget_after: Seconds = Seconds(90 * 86400)
    max_tracked: int = 100_000
    sync_interval: Seconds = Seconds(60)
    """How often `run` merges this process's counts with the other processes' in PostgreSQL."""


class NetworkSettings(Section):
    """Networks that never count as different: a school's or the council's NAT egress."""

    allowlist: list[str] = []
    risky: list[RiskyListSettings] = []
    shared: SharedNetworkSettings = msgspec.field(default_factory=SharedNetworkSettings)


class GeoIPSettings(Section):
    """MaxMind-format databases (GeoLite2/GeoIP2 `.mmdb`), kept fresh by geoipupdate.

    Without `city_db` (or when it cannot be read) `impossible_travel` and `new_country` are
    disabled with one warning; `asn_db` adds the network's ASN and organisation;
    `anonymous_db` (GeoIP2 Anonymous IP) flags VPNs, Tor exits, proxies and hosting providers.
    """

    city_db: str = ""
    asn_db: str = ""
    anonymous_db: str = ""
    cache_size: int = 65_536


class DetectorSettings(Section):
    simultaneous_logins: SimultaneousLoginsSettings = msgspec.field(
        default_factory=SimultaneousLoginsSettings
    )
    impossible_travel: ImpossibleTravelSettings = msgspec.field(default_factory=ImpossibleTravelSettings)
    new_country: NewCountrySettings = msgspec.field(default_factory=NewCountrySettings)
    risky_network: RiskyNetworkSettings = msgspec.field(default_factory=RiskyNetworkSettings)
    dormant_account: DormantAccountSettings = msgspec.field(default_factory=DormantAccountSettings)
    dormant_account_login: DormantAccountLoginSettings = msgspec.field(default_factory=DormantAccountLoginSettings)
    revoked_access_use: RevokedAccessUseSettings = msgspec.field(default_factory=RevokedAccessUseSettings)


class JsonlSinkSettings(Section):
    enabled: bool = False
    path: str = "-"
    min_severity: Severity = "low"


class PostgresSinkSettings(Section):
    enabled: bool = True
    min_severity: Severity = "low"


class MqttSinkSettings(Section):
    """Alerts to an MQTT broker on `{topic_prefix}/{severity}/{detector}`, QoS 1 (delivered once PUBACK'd)."""

    enabled: bool = False
    min_severity: Severity = "low"
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "portal-monitor"
    topic_prefix: str = "portal-monitor/alerts"
    username: str = ""
    password: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_check_hostname: bool = True
    keepalive: int = 60
    timeout: Seconds = Seconds(10)


class KafkaAlertSinkSettings(Section):
    """Alerts to a Kafka topic, key = account_id; connection, TLS and SASL from [kafka]."""

    enabled: bool = False
    min_severity: Severity = "low"
    topic: str = "portal.alerts"
    timeout: Seconds = Seconds(30)


class WebhookSinkSettings(Section):
    """Alerts as a signed JSON POST: `X-Portal-Monitor-Signature: sha256=HMAC(secret, "{timestamp}.{body}")`."""

    enabled: bool = False
    min_severity: Severity = "low"
    url: str = ""
    secret: str = ""
    secret_file: str = ""
    ca_file: str = ""
    tls_verify: bool = True
    timeout: Seconds = Seconds(10)


class AlertmanagerSinkSettings(Section):
    """Alerts to Prometheus Alertmanager's API v2 (`POST {url}/api/v2/alerts`)."""

    enabled: bool = False
    min_severity: Severity = "low"
    url: str = "http://127.0.0.1:9093"
    generator_url: str = ""
    """Base URL of the responder API or UI; `{generator_url}/alerts/{alert_id}` goes into generatorURL."""
    resolve_after: Seconds = Seconds(3600)
    """Alertmanager keeps the alert firing this long after delivery (endsAt), then resolves it."""
    bearer_token: str = ""
    bearer_token_file: str = ""
    username: str = ""
    password: str = ""
    password_file: str = ""
    ca_file: str = ""
    tls_verify: bool = True
    timeout: Seconds = Seconds(10)


class ActionsSinkSettings(Section):
    """`portal.action/v1` events for the portal to act on (disable a dormant account), on Kafka."""

    enabled: bool = True
    topic: str = "portal.actions"


class SinkSettings(Section):
    jsonl: JsonlSinkSettings = msgspec.field(default_factory=JsonlSinkSettings)
    postgres: PostgresSinkSettings = msgspec.field(default_factory=PostgresSinkSettings)
    mqtt: MqttSinkSettings = msgspec.field(default_factory=MqttSinkSettings)
    kafka: KafkaAlertSinkSettings = msgspec.field(default_factory=KafkaAlertSinkSettings)
    webhook: WebhookSinkSettings = msgspec.field(default_factory=WebhookSinkSettings)
    alertmanager: AlertmanagerSinkSettings = msgspec.field(default_factory=AlertmanagerSinkSettings)
    actions: ActionsSinkSettings = msgspec.field(default_factory=ActionsSinkSettings)


class DeliverySettings(Section):
    """The outbox relays: one per external sink, reading `alert_outbox` rows in PostgreSQL."""

    retry_initial: Seconds = Seconds(1)
    retry_max: Seconds = Seconds(300)
    batch_size: int = 100
    poll_interval: Seconds = Seconds(1)
    lease: Seconds = Seconds(120)
    """A claimed row is re-offered to any monitor process after this long without an answer."""


class SilenceSettings(Section):
    """Alerts matching every given field (account, detector, network) raised in [starts, expires) are silenced."""

    expires: datetime
    account_id: str | None = None
    detector: str | None = None
    network: str | None = None
    starts: datetime | None = None
    reason: str = ""


class AlertingSettings(Section):
    """Noise control, in event time: cool-down per (detector, account) and silences."""

    cooldown: Seconds = Seconds(15 * 60)
    """Repeats of a detector for one account within this long of its first alert are grouped into it."""
    cooldowns: dict[str, Seconds] = {}
    """Per-detector cool-downs, e.g. `simultaneous_logins = "30m"`."""
    silences: list[SilenceSettings] = []
    silence_refresh: Seconds = Seconds(30)
    """How often the daemon reloads silences added with `portal-monitor silences add`."""


class ApiSettings(Section):
    """The responder HTTP API under /api/v1; disabled while no token is configured."""

    token: str = ""
    token_file: str = ""
    max_limit: int = 1000


class RetentionSettings(Section):
    """Session timelines and resolved alerts are purged this long after they ended."""

    enabled: bool = True
    keep_for: Seconds = Seconds(400 * 86400)
    interval: Seconds = Seconds(3600)
    chunk: int = 1000


class AccountSettings(Section):
    """The account registry in PostgreSQL (`run`): every account seen or imported, and its status."""

    registry: bool = True
    write_every: Seconds = Seconds(1)
    """How often the activity of delivered batches (logins, page views) is written to the
    registry, one row per account; status changes and dormancy marks are written at once, and
    everything before each checkpoint. 0 writes every batch."""
    write_limit: int = 100_000
    """Accounts with unwritten activity that start a write whatever the time."""


class Settings(Section):
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    source: SourceSettings = msgspec.field(default_factory=SourceSettings)
    postgres: PostgresSettings = msgspec.field(default_factory=PostgresSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    checkpoint: CheckpointSettings = msgspec.field(default_factory=CheckpointSettings)
    sessions: SessionSettings = msgspec.field(default_factory=SessionSettings)
    networks: NetworkSettings = msgspec.field(default_factory=NetworkSettings)
    geoip: GeoIPSettings = msgspec.field(default_factory=GeoIPSettings)
    detectors: DetectorSettings = msgspec.field(default_factory=DetectorSettings)
    sinks: SinkSettings = msgspec.field(default_factory=SinkSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    alerting: AlertingSettings = msgspec.field(default_factory=AlertingSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    accounts: AccountSettings = msgspec.field(default_factory=AccountSettings)

    def __post_init__(self) -> None:
        import ipaddress

        for cidr in self.networks.allowlist:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"networks.allowlist: not a CIDR: {cidr!r}") from None
        shared = self.networks.shared
        if not 1 <= shared.min_accounts <= 64:
            raise ValueError(f"networks.shared.min_accounts: must be between 1 and 64, not {shared.min_accounts}")
        names = [risky.name for risky in self.networks.risky]
        for risky in self.networks.risky:
            if not risky.file and not risky.entries:
                raise ValueError(f"networks.risky: list {risky.name!r} needs a file or entries")
            if names.count(risky.name) > 1:
                raise ValueError(f"networks.risky: list name {risky.name!r} is used twice")
        for n, silence in enumerate(self.alerting.silences):
            if not (silence.account_id or silence.detector or silence.network):
                raise ValueError(f"alerting.silences[{n}]: name an account_id, a detector or a network")
            if silence.network:
                try:
                    ipaddress.ip_network(silence.network, strict=False)
                except ValueError:
                    raise ValueError(f"alerting.silences[{n}].network: not a CIDR: {silence.network!r}") from None
            if silence.expires.tzinfo is None or (silence.starts and silence.starts.tzinfo is None):
                raise ValueError(f"alerting.silences[{n}]: write times with an offset or Z")


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
        (settings.sinks.mqtt, "password"),
        (settings.sinks.webhook, "secret"),
        (settings.sinks.alertmanager, "bearer_token"),
        (settings.sinks.alertmanager, "password"),
        (settings.api, "token"),
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

