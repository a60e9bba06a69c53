"""Configuration: one typed object from TOML plus environment; one clear line on a bad key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.service.config import ConfigError, load_settings, masked


def test_defaults_need_no_file():
    settings = load_settings(None, environ={})
    assert settings.sessions.idle_timeout == 1800 and settings.source.topic == "portal.events"


def test_toml_then_environment_with_durations(tmp_path):
    file = tmp_path / "monitor.toml"
    file.write_text('[sessions]\nidle_timeout = "45m"\nmax_items = 10\n[networks]\nallowlist = ["10.0.0.0/8"]\n')
    settings = load_settings(file, environ={"PORTAL_MONITOR_SESSIONS__MAX_ITEMS": "25",
                                            "PORTAL_MONITOR_ENGINE__ALLOWED_LATENESS": "500ms"})
    assert settings.sessions.idle_timeout == 2700
    assert settings.sessions.max_items == 25
    assert settings.engine.allowed_lateness == 0.5
    assert settings.networks.allowlist == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[sessions]\nidle_timeout = "soon"', "sessions.idle_timeout: not a duration"),
        ("[sessions]\nmax_items = \"many\"", "sessions.max_items: Expected `int`, got `str`"),
        ("[sesions]\nidle_timeout = 5", "unknown field `sesions`"),
        ('[detectors.simultaneous_logins]\nseverity = "urgent"', "detectors.simultaneous_logins.severity"),
        ('[networks]\nallowlist = ["10.0.0.0/33"]', "networks.allowlist: not a CIDR"),
        ("[sessions\n", "not valid TOML"),
        ('[detectors.impossible_travel]\norganisation_networks = { "council" = 300.0 }',
         "detectors.impossible_travel.organisation_networks: not a CIDR: 'council'"),
        ("[detectors.impossible_travel]\norganisation_radius_km = -1.0",
         "detectors.impossible_travel.organisation_radius_km: must not be negative"),
        ("[detectors.session_left_open]\nsessions = 0", "detectors.session_left_open.sessions: must be between 1 and 100"),
        ('[detectors.session_left_open]\nperiod = "0s"', "detectors.session_left_open.period: must be positive"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path, toml, message):
    file = tmp_path / "bad.toml"
    file.write_text(toml)
    with pytest.raises(ConfigError, match=None) as raised:
        load_settings(file, environ={})
    assert message in str(raised.value)


def test_secrets_come_from_files_and_are_masked(tmp_path):
    secret = tmp_path / "kafka-password"
    secret.write_text("hunter2\n")
    settings = load_settings(None, environ={
        "PORTAL_MONITOR_KAFKA__SASL_PASSWORD_FILE": str(secret),
        "PORTAL_MONITOR_POSTGRES__DSN": "postgresql://monitor:s3cret@db.example/portal",
    })
    assert settings.kafka.sasl_password == "hunter2"
    shown = json.dumps(masked(settings))
    assert "hunter2" not in shown and "s3cret" not in shown
    assert "postgresql://monitor:***@db.example/portal" in shown


def test_check_config_exits_2_with_one_line(tmp_path):
    file = tmp_path / "bad.toml"
    file.write_text('[source]\npoll_timeout = "fast"\n')
    done = subprocess.run([sys.executable, "-m", "monitor", "check-config", "--config", str(file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "portal-monitor: configuration error: source.poll_timeout: not a duration: 'fast' "
        "(write e.g. 500ms, 30s, 15m, 12h or 180d)"
    ]
