"""promtool on deploy/prometheus: the rules and the scrape config are valid, and each alert fires
on the condition it names and stays silent on a healthy monitor (promtool's rule unit tests).

Needs Debian's `prometheus` package (it ships `prometheus` and `promtool`):
    apt-get install -y prometheus
CI installs it (scripts/services). Without the binary these tests are skipped, with that reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "portal-monitor.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "portal-monitor.rules.test.yml"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install -y prometheus)"
)


def promtool(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


def test_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_check_config_finds_the_rules() -> None:
    result = promtool("check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c.get("exp_alerts")}
    silent = {c["alertname"] for t in cases for c in t["alert_rule_test"] if not c.get("exp_alerts")}
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - silent == set(), "alerts never shown silent"


def test_rules_are_labelled_and_explained() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["labels"]["service"] == "portal-monitor", rule["alert"]
            assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert anchor == rule["alert"].lower(), rule["alert"]


def test_runbook_has_a_section_per_alert() -> None:
    guide = (DEPLOY.parent / "docs" / "deployment.md").read_text()
    headings = {line.lstrip("#").strip().lower() for line in guide.splitlines() if line.startswith("### ")}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].lower() in headings, f"docs/deployment.md has no '### {rule['alert']}'"


def test_check_metrics_rejects_a_badly_named_counter() -> None:
    """The linter the live test relies on does reject things (so its pass means something)."""
    result = promtool("check", "metrics", stdin="# HELP foo_bytes x\n# TYPE foo_bytes counter\nfoo_bytes 1\n")
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr
