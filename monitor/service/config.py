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

from detectors.brute_force import BruteForceSettings
from detectors.impossible_travel import ImpossibleTravelSettings
from detectors.password_spray import PasswordSpraySettings
from detectors.new_country import NewCountrySettings
from detectors.risky_network import RiskyNetworkSettings
from detectors.dormant_account import DormantAccountSettings
from detectors.dormant_account_login import DormantAccountLoginSettings
from detectors.revoked_access_use import RevokedAccessUseSettings
from detectors.session_left_open import SessionLeftOpenSettings
from detectors.simultaneous_logins import SimultaneousLoginsSettings
from detectors.bulk_record_access import BulkRecordAccessSettings
from detectors.unlinked_pupil_access import UnlinkedPupilAccessSettings
from monitor.contract.durations import Seconds
from monitor.contract.settings import Section, dec_hook, enc_hook
from monitor.accounts.lifecycle import AccountSettings
from monitor.alerting.gate import SilenceSettings, AlertingSettings
from monitor.delivery.outbox import DeliverySettings
from monitor.engine.network_stage import NetworkStageSettings
from monitor.engine.shard import EngineSettings
from monitor.ingest.decode import PupilSettings
from monitor.ingest.kafka_client import KafkaSettings, SourceSettings
from monitor.places.geo import NetworkSettings, GeoIPSettings
from monitor.places.risky import RiskyListSettings
from monitor.places.shared_networks import SharedNetworkSettings
from monitor.response import ApiSettings
from monitor.service.checkpoints import CheckpointSettings
from monitor.state.sessions import SessionSettings
from monitor.store import PostgresSettings
from monitor.support.redaction import redact_url, url_secrets
from monitor.store.retention import RetentionSettings
from sinks.actions import ActionsSinkSettings
from sinks.alertmanager import AlertmanagerSinkSettings
from sinks.jsonl import JsonlSinkSettings
from sinks.kafka_alerts import KafkaAlertSinkSettings
from sinks.mqtt import MqttSinkSettings
from sinks.postgres import PostgresSinkSettings
from sinks.webhook import WebhookSinkSettings

ENV_PREFIX = "PORTAL_MONITOR_"
SECRET_KEYS = ("password", "token", "secret")


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key."""


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = msgspec.field(default=9464)
    enabled: bool = True


class ServiceSettings(Section):
    shutdown_timeout: Seconds = Seconds(20)
    """After SIGTERM, how long to keep trying to deliver the batch in hand before exiting
    without committing it (it is read again on restart, so nothing is lost)."""
    stall_after: Seconds = Seconds(60)
    """`/readyz` answers 503 ("stalled") while a batch's delivery has waited this long for a
    sink or the account registry: the daemon is alive but not moving."""


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


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
    session_left_open: SessionLeftOpenSettings = msgspec.field(default_factory=SessionLeftOpenSettings)
    unlinked_pupil_access: UnlinkedPupilAccessSettings = msgspec.field(default_factory=UnlinkedPupilAccessSettings)
    bulk_record_access: BulkRecordAccessSettings = msgspec.field(default_factory=BulkRecordAccessSettings)
    brute_force: BruteForceSettings = msgspec.field(default_factory=BruteForceSettings)
    password_spray: PasswordSpraySettings = msgspec.field(default_factory=PasswordSpraySettings)


class SinkSettings(Section):
    jsonl: JsonlSinkSettings = msgspec.field(default_factory=JsonlSinkSettings)
    postgres: PostgresSinkSettings = msgspec.field(default_factory=PostgresSinkSettings)
    mqtt: MqttSinkSettings = msgspec.field(default_factory=MqttSinkSettings)
    kafka: KafkaAlertSinkSettings = msgspec.field(default_factory=KafkaAlertSinkSettings)
    webhook: WebhookSinkSettings = msgspec.field(default_factory=WebhookSinkSettings)
    alertmanager: AlertmanagerSinkSettings = msgspec.field(default_factory=AlertmanagerSinkSettings)
    actions: ActionsSinkSettings = msgspec.field(default_factory=ActionsSinkSettings)


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
    pupils: PupilSettings = msgspec.field(default_factory=PupilSettings)
    sinks: SinkSettings = msgspec.field(default_factory=SinkSettings)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)
    alerting: AlertingSettings = msgspec.field(default_factory=AlertingSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    accounts: AccountSettings = msgspec.field(default_factory=AccountSettings)
    network_stage: NetworkStageSettings = msgspec.field(default_factory=NetworkStageSettings)

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
        (settings.api, "viewer_token"),
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
        settings = msgspec.convert(tree, Settings, dec_hook=dec_hook)
    except msgspec.ValidationError as error:
        raise ConfigError(_explain(error)) from None
    _read_secret_files(settings)
    from monitor.service.checks import SettingsProblem, validate

    try:
        validate(settings)  # ranges, DSNs, URLs, detector names: what the types alone accept
    except SettingsProblem as error:
        raise ConfigError(str(error)) from None
    return settings


def _explain(error: msgspec.ValidationError) -> str:
    message = str(error)
    reason, _, where = message.partition(" - at `$")
    if where:
        key = where.rstrip("`").lstrip(".")
        return f"{key}: {reason}"
    return reason


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret replaced by `***`: secret keys, and the
    password and secret query parameters inside every DSN and URL."""
    tree = msgspec.to_builtins(settings, enc_hook=enc_hook)

    def mask(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(key, v) for v in value]
        if value and any(s in key for s in SECRET_KEYS) and not key.endswith("_file"):
            return "***"
        if isinstance(value, str) and "://" in value:
            return redact_url(value)
        return value

    return mask("", tree)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold (secret keys; passwords and tokens inside DSNs and URLs),
    as given and URL-encoded: for the log redactor (`monitor.support.logging`)."""
    from urllib.parse import quote, unquote

    found: set[str] = set()

    def walk(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, v)
        elif isinstance(value, list):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and value:
            if any(s in key for s in SECRET_KEYS) and not key.endswith("_file"):
                found.add(value)
            elif "://" in value:
                found.update(url_secrets(value))

    walk("", msgspec.to_builtins(settings, enc_hook=enc_hook))
    values = set()
    for secret in found:
        if len(secret) >= 4:  # shorter would blank out ordinary words
            values.update({secret, quote(secret, safe=""), unquote(secret)})
    return sorted(values, key=len, reverse=True)
