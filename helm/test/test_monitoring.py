"""Alerts and dashboard: promtool on the rule file and on the chart's
PrometheusRule, the two kept identical, and the dashboard well-formed. The
metric names they use are checked against a live relay in test_binaries.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import NAMESPACE, REPO, RELEASE, render

PROM = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "arthas.json"
METRIC = re.compile(r"\b(arthas_relay_[a-z_]+)\b")

EXPECTED_ALERTS = {
    "ArthasRelayDown",
    "ArthasNoRelayUp",
    "ArthasNoReadyRelays",
    "ArthasBusPublishErrors",
    "ArthasSlowConsumersSpike",
    "ArthasRelayConnectionsNearLimit",
    "ArthasErrorFramesHigh",
}


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is missing: apt-get install prometheus (deploy/test.sh does)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def static_rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    (group,) = doc["groups"]
    return group["rules"]


def chart_rules(values=None) -> list[dict]:
    r = render("ingress") if values is None else render("rules-custom", values)
    rule = r.get("PrometheusRule", f"{RELEASE}-relay")
    (group,) = rule["spec"]["groups"]
    return rule, group["rules"]


def metrics_used() -> set[str]:
    """Every arthas_relay_* name the alerts, the chart and the dashboard use."""
    names = set(METRIC.findall((PROM / "alerts.yml").read_text()))
    names |= set(METRIC.findall(DASHBOARD.read_text()))
    _, rules = chart_rules()
    names |= set(METRIC.findall(json.dumps(rules)))
    hpa = render("hpa").get("HorizontalPodAutoscaler", f"{RELEASE}-relay")
    names |= set(METRIC.findall(json.dumps(hpa)))
    # humanize/humanizePercentage mention no metric; annotations may mention
    # a family by name (errors_out_total): keep only real series names.
    return names


def test_rule_file_passes_promtool_check():
    result = promtool("check", "rules", str(PROM / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_rule_unit_tests_pass():
    result = promtool("test", "rules", str(PROM / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_entry():
    names = {r["alert"] for r in static_rules()}
    assert names == EXPECTED_ALERTS
    tests = (PROM / "alerts_test.yml").read_text()
    ops = (REPO / "docs" / "OPERATIONS.md").read_text()
    for name in names:
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"
        assert name in ops, f"docs/OPERATIONS.md does not explain {name}"
    for rule in static_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_chart_rules_pass_promtool(tmp_path):
    _, rules = chart_rules()
    path = tmp_path / "chart-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "arthas-relay", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def normalise(text: str) -> str:
    return " ".join(str(text).split())


def test_chart_rules_are_the_rule_file_narrowed_to_the_release():
    rule, rules = chart_rules()
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    static = {r["alert"]: r for r in static_rules()}
    assert [r["alert"] for r in rules] == list(static)
    for r in rules:
        s = static[r["alert"]]
        expr = normalise(r["expr"])
        expr = expr.replace(f', namespace="{NAMESPACE}"', "")
        expr = expr.replace(f'namespace="{NAMESPACE}", deployment="{RELEASE}-relay"', 'deployment=~".*arthas-relay"')
        assert expr == normalise(s["expr"]), r["alert"]
        assert r["for"] == s["for"] and r["labels"] == s["labels"], r["alert"]
        for key in ("summary", "description"):
            assert normalise(r["annotations"][key]) == normalise(s["annotations"][key]), (r["alert"], key)


def test_chart_rule_thresholds_follow_values():
    values = {
        "relay": {"limits": {"maxConnections": 40000}},
        "metrics": {
            "job": "chat-relays",
            "prometheusRule": {"enabled": True, "connectionsHighRatio": 0.8, "publishErrorRatio": 0.05},
        },
    }
    _, rules = chart_rules(values)
    by_name = {r["alert"]: normalise(r["expr"]) for r in rules}
    assert by_name["ArthasRelayConnectionsNearLimit"].endswith("> 0.8")
    assert by_name["ArthasBusPublishErrors"].endswith("> 0.05")
    assert 'job="chat-relays"' in by_name["ArthasRelayDown"]
    assert "80% of --max-connections:" in normalise(
        [r for r in rules if r["alert"] == "ArthasRelayConnectionsNearLimit"][0]["annotations"]["description"]
    )


def test_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "arthas-relays" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "job", "namespace", "pod"}
    titles = set()
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert 'job=~"$job"' in target["expr"], target["expr"]
    for wanted in (
        "Connections per relay",
        "Deliveries / s",
        "Publishes / s",
        "Publish errors / s",
        "Slow consumers / min",
        "Error frames / s by code",
        "Closes / s by close code",
        "Local rooms per relay",
    ):
        assert wanted in titles


def test_dashboard_queries_parse(tmp_path):
    """promtool parses every dashboard query (as a recording rule)."""
    dash = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m")
            expr = re.sub(r'=~"\$[a-z]+"', '=~".*"', expr)
            rules.append({"record": f"arthas:dashboard:{panel['id']}_{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_names_are_collected():
    names = metrics_used()
    assert {
        "arthas_relay_connections",
        "arthas_relay_deliveries_total",
        "arthas_relay_publishes_total",
        "arthas_relay_publish_errors_total",
        "arthas_relay_slow_consumers_total",
        "arthas_relay_errors_out_total",
        "arthas_relay_closes_total",
        "arthas_relay_local_rooms",
    } <= names
