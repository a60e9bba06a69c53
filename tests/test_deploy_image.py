"""deploy/Dockerfile and the example configuration, offline: hadolint passes, the image is
built as documented (non-root, HEALTHCHECK on /livez, the package from the repository), and
the example TOML loads with the monitor's settings loader."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from monitor.service.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
EXAMPLE = ROOT / "deploy" / "portal-monitor.example.toml"


def hadolint() -> str:
    return shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def test_hadolint_passes(tmp_path: Path) -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install x\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3006" in result.stdout  # it does reject things


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_image_is_slim_python_311_non_root_with_a_livez_healthcheck() -> None:
    steps = instructions()
    args = dict(re.match(r"(\w+)=(\S+)", rest).groups() for kw, rest in steps if kw == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    froms = [rest for kw, rest in steps if kw == "FROM"]
    assert froms[-1] == "${PYTHON_IMAGE}"
    user = [rest for kw, rest in steps if kw == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    health = [rest for kw, rest in steps if kw == "HEALTHCHECK"]
    assert len(health) == 1 and "/livez" in health[0]
    assert [rest for kw, rest in steps if kw == "EXPOSE"] == ["9464"]
    assert any(kw == "RUN" and "pip wheel" in rest and rest.endswith(".") for kw, rest in steps)


def test_build_context_ignore_keeps_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().split()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for kw, rest in instructions():
        if kw == "COPY" and "--from" not in rest:
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert source.rstrip("/") in kept, source
                assert (ROOT / source).exists(), source


def test_example_config_loads_and_keeps_secrets_out(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = load_settings(EXAMPLE, environ={"PORTAL_MONITOR_POSTGRES__PASSWORD_FILE": str(secret)})
    assert settings.postgres.password == "s3cret"
    assert settings.http.port == 9464
    assert settings.source.topic == "portal.events"
    text = EXAMPLE.read_text()
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("password", "sasl_password"):
            raise AssertionError(f"a secret value in the example: {line}")
    assert "PORTAL_MONITOR_POSTGRES__PASSWORD" in text and "PORTAL_MONITOR_KAFKA__SASL_PASSWORD" in text


def test_environment_overrides_the_example() -> None:
    settings = load_settings(EXAMPLE, environ={
        "PORTAL_MONITOR_POSTGRES__PASSWORD": "from-env",
        "PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
    })
    assert settings.postgres.password == "from-env"
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
