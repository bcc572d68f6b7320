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
METRIC = re.compile(r"\b((?:arthas|process)_[a-z0-9_]+)\b")
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
# Metrics the alerts may use before the code exports them (none today).
PENDING: set[str] = set()
# Histogram series names map to their family.
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

EXPECTED_ALERTS = {
    "ArthasRelayDown",
    "ArthasNoRelayUp",
    "ArthasNoReadyRelays",
    "ArthasBusPublishErrors",
    "ArthasSlowConsumersSpike",
    "ArthasRelayConnectionsNearLimit",
    "ArthasErrorFramesHigh",
    "ArthasRelayBusDown",
    "ArthasRelayMetricsAbsent",
    "ArthasLiveRelaysDisagree",
    "ArthasDeliveryLatencyHigh",
    "ArthasFileDescriptorsNearLimit",
    "ArthasGatewayDown",
    "ArthasNoGatewayUp",
    "ArthasGatewayNotReady",
    "ArthasArgon2Saturated",
    "ArthasGatewayUnavailable",
    "ArthasNoReadyGateways",
    "ArthasCertificateExpiresSoon",
    "ArthasPanicsCaught",
}


def documented_metrics() -> set[str]:
    """Every metric of the docs/OPERATIONS.md table (tests/observability.rs
    checks the table against scrapes of the binaries)."""
    ops = (REPO / "docs" / "OPERATIONS.md").read_text()
    table = ops.split("### Metrics reference", 1)[1]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M))


def family(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in documented_metrics():
            return name[: -len(suffix)]
    return name


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is missing: apt-get install prometheus (deploy/test.sh does)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def static_rules() -> list[dict]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    (group,) = doc["groups"]
    assert group["name"] == "arthas"
    return group["rules"]


def chart_rules(values=None) -> list[dict]:
    r = render("ingress") if values is None else render("rules-custom", values)
    rule = r.get("PrometheusRule", f"{RELEASE}-relay")
    (group,) = rule["spec"]["groups"]
    assert group["name"] == "arthas"
    return rule, group["rules"]


def metrics_used() -> set[str]:
    """Every metric family the alerts, the chart and the dashboard use
    (pending ones included)."""
    rule_exprs = [r["expr"] for r in static_rules()]
    names = set(METRIC.findall(json.dumps(rule_exprs)))
    names |= set(METRIC.findall(json.dumps([t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])])))
    _, rules = chart_rules()
    names |= set(METRIC.findall(json.dumps([r["expr"] for r in rules])))
    hpa = render("hpa").get("HorizontalPodAutoscaler", f"{RELEASE}-relay")
    names |= set(METRIC.findall(json.dumps(hpa)))
    keda = render("keda")
    for obj in keda.all("ScaledObject"):
        names |= set(METRIC.findall(json.dumps(obj)))
    return {family(n) for n in names}


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
        assert name in ops, f"docs/OPERATIONS.md does not list {name}"
    runbook = RUNBOOK.read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (\w+)\s*$", runbook, re.M)}
    for rule in static_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        url = rule["annotations"]["runbook_url"]
        base, anchor = url.split("#")
        assert base.endswith("docs/RUNBOOK.md"), url
        assert anchor == rule["alert"].lower(), url
        assert anchor in anchors, f"docs/RUNBOOK.md has no section {rule['alert']}"


def test_chart_rules_pass_promtool(tmp_path):
    _, rules = chart_rules()
    path = tmp_path / "chart-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "arthas", "rules": rules}]}))
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
        expr = expr.replace(f'namespace="{NAMESPACE}", deployment="{RELEASE}-gateway"', 'deployment=~".*arthas-gateway"')
        assert expr == normalise(s["expr"]), r["alert"]
        assert r.get("for") == s.get("for") and r["labels"] == s["labels"], r["alert"]
        for key in ("summary", "description", "runbook_url"):
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
    assert variables == {"datasource", "job", "gateway_job", "namespace", "pod"}
    titles = set()
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert 'job=~"$job"' in target["expr"] or 'job=~"$gateway_job"' in target["expr"] or 'job=~"$job|$gateway_job"' in target["expr"], target["expr"]
    for wanted in (
        "Connections per relay",
        "Deliveries / s",
        "Publishes / s",
        "Publish errors / s",
        "Slow consumers / min",
        "Error frames / s by code",
        "Closes / s by close code",
        "Local rooms per relay",
        "Delivery latency p50 / p99",
        "Bus up per relay",
        "Draining relays",
        "Connections / limit",
        "Open files / limit",
        "Gateway requests / s by route and status",
        "argon2 queue",
    ):
        assert wanted in titles


def test_dashboard_queries_parse(tmp_path):
    """promtool parses every dashboard query (as a recording rule)."""
    dash = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m")
            expr = re.sub(r'=~"\$[a-z_]+(\|\$[a-z_]+)?"', '=~".*"', expr)
            rules.append({"record": f"arthas:dashboard:{panel['id']}_{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_dashboard_and_autoscalers_use_only_documented_metrics():
    """The metric table is checked against the binaries (tests/observability.rs);
    everything that queries a metric must find it there."""
    documented = documented_metrics()
    used = metrics_used()
    unknown = sorted(n for n in used - documented - PENDING if n != "up" and not n.startswith("kube_"))
    assert unknown == [], f"used but not in docs/OPERATIONS.md's metric table: {unknown}"
    assert PENDING.isdisjoint(documented), "a pending metric is documented as exported: drop it from PENDING"


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
