"""What operators load: alert and recording rules (promtool), Grafana dashboards (the
Grafana dashboard JSON schema, panel ids, datasource variable), runbook anchors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import find_binary

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "dashboards" / "prometheus"
GRAFANA = ROOT / "dashboards" / "grafana"
SCHEMA = Path(__file__).resolve().parent / "data" / "grafana" / "dashboard.jsonschema.json"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
RULE_FILES = [PROM / "recording.yml", PROM / "alerts.yml", PROM / "masks.yml"]


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", (PROM / "alerts.yml").read_text(), re.M)


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_promtool_check_rules() -> None:
    promtool = find_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", *map(str, RULE_FILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_test_rules() -> None:
    promtool = find_binary("promtool")
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=PROM,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    tests = (PROM / "alerts_test.yml").read_text()
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", tests)
    names = alert_names()
    assert len(names) >= 25 and len(set(names)) == len(names)
    for name in names:
        kinds = {bool(empty) for alert, empty in cases if alert == name}
        assert kinds == {True, False}, f"{name}: needs a firing and a silent case"


def test_every_alert_has_severity_annotations_and_a_readme_runbook() -> None:
    text = (PROM / "alerts.yml").read_text()
    readme_anchors = {_github_anchor(h) for h in
                      re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)}
    blocks = re.split(r"^\s*- alert: ", text, flags=re.M)[1:]
    assert len(blocks) == len(alert_names())
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"severity: (critical|warning)\n", block), name
        for key in ("summary", "description", "runbook_url"):
            assert f"{key}: " in block, (name, key)
        anchor = re.search(r"runbook_url: \"[^\"#]+README\.md#([\w-]+)\"", block).group(1)
        assert anchor == name.lower(), name
        assert anchor in readme_anchors, f"README.md has no section for #{anchor}"


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "dashboards" / "generate.py"),
                             "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_mask_limits_match_the_analysis_library() -> None:
    from timemon.analysis.masks import MASKS

    text = (PROM / "masks.yml").read_text()
    rules = re.findall(r'expr: \|\n((?:\s+(?:or )?label_replace.*\n)+)\s+labels: '
                       r'\{mask: "([^"]+)", statistic: (\w+)\}', text)
    assert len(rules) >= 5
    checked = 0
    for body, mask, statistic in rules:
        for value, tau in re.findall(r'vector\(([^)]+)\), "tau", "([^"]+)"', body):
            expected = MASKS[mask].limit_seconds(statistic, float(tau))
            assert float(value) == pytest.approx(expected, rel=1e-12), (mask, statistic, tau)
            checked += 1
    assert checked > 50


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


def test_schema_copy_is_grafanas(schema: dict) -> None:
    assert (SCHEMA.parent / "LICENSE").exists() and (SCHEMA.parent / "README.md").exists()
    assert schema["$ref"] == "#/definitions/Dashboard"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_validates_against_grafana_schema(path: Path, schema: dict) -> None:
    dashboard = json.loads(path.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(dashboard),
                    key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def test_the_schema_check_catches_a_broken_dashboard(schema: dict) -> None:
    dashboard = json.loads(DASHBOARDS[0].read_text())
    dashboard["panels"][0]["gridPos"]["w"] = 30  # wider than Grafana's 24 columns
    dashboard["__inputs"] = []  # an unnormalised UI export
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(dashboard))) == 2


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_ids_uid_variables_and_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == f"timemon-{path.stem}"
    assert dashboard["schemaVersion"] >= 41
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "job" in variables
    if path.stem != "fleet":
        assert {"instance", "source"} <= variables.keys()
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}", var["name"]
    queries = 0
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip()
            if path.stem != "fleet" and "ALERTS" not in target["expr"]:
                assert "$job" in target["expr"] or "timemon:mask_limit" in target["expr"], \
                    (panel["title"], target["expr"])
            queries += 1
    assert queries >= 10


def test_provisioning_example_points_at_the_dashboards() -> None:
    text = (ROOT / "dashboards" / "grafana" / "provisioning.yml").read_text()
    assert "apiVersion: 1" in text and "providers:" in text and "type: file" in text
    assert re.search(r"path: .*dashboards", text)
