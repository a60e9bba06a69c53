"""deploy/grafana, offline: the dashboards are what build_dashboards.py writes, well-formed
(unique uids and panel ids, panels inside the grid and not overlapping, every query on a
declared data source), and the provisioning files agree with them. Their PromQL and SQL run
against real servers in tests/test_prometheus_dashboards.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
TITLES = {"Overview", "Detectors", "Flagged sessions", "Service health"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def walk(panels):
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


def test_json_files_are_up_to_date_with_the_script() -> None:
    result = subprocess.run([sys.executable, str(GRAFANA / "build_dashboards.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_four_dashboards() -> None:
    dashboards = [load(p) for p in DASHBOARDS]
    assert {d["title"].split(" / ", 1)[1] for d in dashboards} == TITLES
    uids = [d["uid"] for d in dashboards]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_fit_the_grid_without_overlap(path: Path) -> None:
    dashboard = load(path)
    cells: dict[tuple[int, int], str] = {}
    ids = set()
    for panel in walk(dashboard["panels"]):
        assert panel["id"] not in ids
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_uses_a_declared_datasource_variable(path: Path) -> None:
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource_vars = {f"${{{name}}}": v["query"] for name, v in variables.items() if v["type"] == "datasource"}
    queries = 0
    for panel in walk(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries += 1
            ref = target["datasource"]
            assert ref["uid"] in datasource_vars, f"{panel['title']}: {ref}"
            assert datasource_vars[ref["uid"]] == ref["type"]
            assert ("expr" in target) == (ref["type"] == "prometheus"), panel["title"]
            assert ("rawSql" in target) == (ref["type"] == "grafana-postgresql-datasource"), panel["title"]
            if "expr" in target:
                for name in ("job", "instance"):
                    if "portal_monitor_" in target["expr"] and "ALERTS" not in target["expr"]:
                        assert f"${name}" in target["expr"], f"{panel['title']}: not filtered by ${name}"
    assert queries


def test_provisioned_datasources_are_the_dashboards_defaults() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "portal-monitor.yaml").read_text())
    by_uid = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for path in DASHBOARDS:
        for variable in load(path)["templating"]["list"]:
            if variable["type"] == "datasource":
                assert by_uid[variable["current"]["value"]] == variable["query"], path.name


def test_the_postgres_datasource_is_read_only_and_its_password_a_file() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "portal-monitor.yaml").read_text())
    postgres = next(d for d in provisioned["datasources"] if d["type"] == "grafana-postgresql-datasource")
    assert postgres["user"] == "${PORTAL_MONITOR_DB_READER}"
    assert postgres["secureJsonData"]["password"].startswith("$__file{")
    init = (GRAFANA.parent / "postgres" / "initdb" / "20-grafana-reader.sh").read_text()
    assert "GRANT SELECT" in init and "INSERT" not in init and "ALL PRIVILEGES" not in init


def test_flagged_sessions_sql_quotes_every_variable() -> None:
    dashboard = load(GRAFANA / "dashboards" / "flagged-sessions.json")
    for panel in walk(dashboard["panels"]):
        for target in panel.get("targets", []):
            sql = target.get("rawSql", "")
            for name in ("detector", "severity", "alert", "session"):
                assert f"${name} " not in sql and f"'${name}'" not in sql and f"${{{name}}}" not in sql
                if name in sql and f"${{{name}:" in sql:
                    assert f"${{{name}:sqlstring}}" in sql


def test_dashboard_provider_loads_the_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "portal-monitor.yaml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["folder"] == "portal-monitor"
