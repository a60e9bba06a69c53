"""deploy/compose.yaml, offline (no Docker engine here): valid against the Compose
specification bundled with check-jsonschema, and consistent with the files it mounts and the
Prometheus config that scrapes it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("check-jsonschema") or str(Path(__import__("sys").executable).parent / "check-jsonschema")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_valid_against_the_compose_spec(tmp_path: Path) -> None:
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the schema does reject things, so that pass means something.
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  monitor:\n    image: x\n    restart_policy: always\n")
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(broken))
    assert result.returncode == 1 and "restart_policy" in result.stdout


def test_the_services_of_the_stack() -> None:
    services = compose()["services"]
    assert {"kafka", "kafka-init", "postgres", "mosquitto", "monitor-1", "monitor-2", "traffic",
            "prometheus", "alertmanager", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kraft = services["kafka"]["environment"]
    assert kraft["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in COMPOSE.read_text().lower()


def test_two_monitor_replicas_in_one_consumer_group() -> None:
    services = compose()["services"]
    replicas = [services["monitor-1"], services["monitor-2"]]
    assert replicas[0]["build"]["dockerfile"] == "deploy/Dockerfile"
    groups = {r["environment"]["PORTAL_MONITOR_SOURCE__GROUP_ID"] for r in replicas}
    assert len(groups) == 1
    ids = {r["environment"]["PORTAL_MONITOR_KAFKA__CLIENT_ID"] for r in replicas}
    assert len(ids) == 2
    for replica in replicas:
        env = replica["environment"]
        assert env["PORTAL_MONITOR_HTTP__HOST"] == "0.0.0.0"
        assert env["PORTAL_MONITOR_POSTGRES__PASSWORD_FILE"] == "/run/secrets/postgres_password"
        assert "postgres_password" in replica["secrets"]
        assert not any("PASSWORD=" in str(v) or k.endswith("__PASSWORD") for k, v in env.items())
        assert replica["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        assert "ports" not in replica  # scraped on the compose network only


def test_prometheus_scrapes_both_replicas_and_loads_the_rules() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "portal-monitor")
    targets = set(job["static_configs"][0]["targets"])
    assert targets == {f"{services[s]['hostname']}:9464" for s in ("monitor-1", "monitor-2")}
    assert config["rule_files"] == ["rules/*.rules.yml"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


def test_every_bind_mount_and_secret_file_is_in_the_repository() -> None:
    doc = compose()
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
        for secret in service.get("secrets", []):
            assert secret in doc["secrets"], f"{name}: secret {secret} not declared"
    for name, secret in doc["secrets"].items():
        assert secret["file"].startswith("./secrets/"), name
    made = (DEPLOY / "secrets" / "make-secrets.sh").read_text()
    assert all(name in made for name in doc["secrets"])
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text().split()
    assert ignored[ignored.index("*") :] == ["*", "!.gitignore", "!make-secrets.sh"]


def test_only_the_uis_are_published_and_only_on_loopback() -> None:
    published = {
        name: service["ports"] for name, service in compose()["services"].items() if "ports" in service
    }
    assert set(published) == {"prometheus", "alertmanager", "grafana"}
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports)


def test_grafana_is_provisioned_from_the_repository() -> None:
    grafana = compose()["services"]["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/portal-monitor:ro" in grafana["volumes"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "portal-monitor.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/portal-monitor"
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    datasources = (DEPLOY / "grafana" / "provisioning" / "datasources" / "portal-monitor.yaml").read_text()
    for variable in ("PROMETHEUS_URL", "PORTAL_MONITOR_DB_HOST", "PORTAL_MONITOR_DB_NAME",
                     "PORTAL_MONITOR_DB_READER", "PORTAL_MONITOR_DB_SSLMODE"):
        assert "${" + variable + "}" in datasources and variable in env
    assert "$__file{/run/secrets/grafana_db_password}" in datasources


def test_the_traffic_generator_runs_the_producer_script() -> None:
    traffic = compose()["services"]["traffic"]
    assert traffic["entrypoint"] == ["python", "/opt/traffic/produce.py"]
    assert "./traffic/produce.py:/opt/traffic/produce.py:ro" in traffic["volumes"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("produce", DEPLOY / "traffic" / "produce.py")
    produce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(produce)
    args = produce.parse_args(traffic["command"])  # the arguments parse
    assert args.bootstrap_servers == "kafka:9092" and args.topic == "portal.events" and args.loop
