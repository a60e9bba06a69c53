"""deploy/k8s, offline: every manifest validates strictly against the Kubernetes 1.30 schemas
bundled with kubernetes-validate, and the pieces fit together (selectors, probes, secrets,
the ConfigMap's settings load with the monitor's own loader)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from monitor.service.config import load_settings

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
VERSION = "1.30.0"


def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def by_kind(kind: str) -> dict:
    return next(doc for doc in manifests().values() if doc["kind"] == kind)


@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_is_valid_kubernetes(path: str) -> None:
    for doc in yaml.safe_load_all((K8S / path).read_text()):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_validation_rejects_an_unknown_field() -> None:
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files


def test_deployment_probes_resources_and_security() -> None:
    deployment = by_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    port = container["ports"][0]
    assert port["containerPort"] == 9464
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"cpu", "memory"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"] == ["run", "--config", "/etc/portal-monitor/portal-monitor.toml"]
    assert not any("PASSWORD" in e["name"] and "value" in e for e in container.get("env", []))


def test_selectors_match_the_pods() -> None:
    labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        doc = by_kind(kind)
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    assert by_kind("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    service_port = by_kind("Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "http-metrics"


def test_configmap_settings_load_and_secrets_are_mounted_files(tmp_path: Path) -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes["secrets"]["secret"]["secretName"]
    assert secret == yaml.safe_load((K8S / "secret.example.yaml").read_text())["metadata"]["name"]
    example_keys = set(yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"])

    toml = by_kind("ConfigMap")["data"]["portal-monitor.toml"]
    assert volumes["config"]["configMap"]["name"] == by_kind("ConfigMap")["metadata"]["name"]
    # Stand in for the mounted Secret, then load the settings as the container would.
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    for key in example_keys:
        (secret_dir / key).write_text(f"value-of-{key}\n")
    text = toml.replace(mounts["secrets"], str(secret_dir))
    (tmp_path / "portal-monitor.toml").write_text(text)
    settings = load_settings(tmp_path / "portal-monitor.toml", environ={})
    assert settings.postgres.password == "value-of-postgres-password"
    assert settings.kafka.sasl_password == "value-of-kafka-sasl-password"
    assert settings.http.port == 9464 and settings.http.host == "0.0.0.0"
    assert "password" not in settings.postgres.dsn.split("@")[0].split("//")[1]
