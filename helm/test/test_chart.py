"""The chart: lint, schema, Kubernetes API validation, and what the rendered
objects promise (flags the binaries know, defaults, drain timings, security,
ports, secrets, ingress, autoscaling, network policy)."""

from __future__ import annotations

import copy
import json
import math
import pathlib
import re

import jsonschema

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, VALUE_SETS, binary_flags, render, render_error

KUBE_VERSIONS = ["1.30.0", "1.37.0"]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute", "ScaledObject", "Certificate"}
# Vendored CRD schemas (helm/test/crds/): Gateway API's HTTPRoute and KEDA's
# ScaledObject, validated like the API server would (structure, types,
# enums, required fields, and no unknown field).
CRD_SCHEMAS = {
    (doc["group"], doc["version"], doc["kind"]): doc["openAPIV3Schema"]
    for doc in (json.loads(p.read_text()) for p in (pathlib.Path(__file__).parent / "crds").glob("*.json"))
}


def unknown_fields(obj, schema, path="") -> list[str]:
    """Fields the structural schema does not declare (the API server would
    prune or, with strict validation, refuse them)."""
    found = []
    if isinstance(obj, dict) and "properties" in schema:
        if schema.get("additionalProperties") or schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        for key, value in obj.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(value, schema["properties"][key], f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def validate_custom(obj: dict) -> None:
    group, version = obj["apiVersion"].split("/")
    schema = CRD_SCHEMAS[(group, version, obj["kind"])]
    doc = {k: v for k, v in obj.items() if k != "_source"}
    jsonschema.validate(doc, schema)
    assert unknown_fields(doc, schema) == [], unknown_fields(doc, schema)
SETS = sorted(VALUE_SETS)

# Variables the chart sets on purpose to something else than the binary's
# default, and why.
DELIBERATE = {
    "ARTHAS_LISTEN": "all interfaces in a pod",
    "ARTHAS_ADMIN_LISTEN": "all interfaces in a pod",
    "ARTHAS_INTERNAL_LISTEN": "all interfaces in a pod",
    "ARTHAS_GATEWAY_URL": "the gateway's internal Service",
    "ARTHAS_REDIS_URL": "redis.url",
    "ARTHAS_LOG_FORMAT": "json for log collectors",
}
# Flags the chart leaves to the binary.
UNSET = {
    "ARTHAS_NODE_ID": "hostname (the pod name) plus a random suffix, unique per start",
    "ARTHAS_TLS_CERT": "set with tls.enabled (the mounted Secret)",
    "ARTHAS_TLS_KEY": "set with tls.enabled (the mounted Secret)",
    "ARTHAS_GATEWAY_TLS_CA": "set with tls.enabled (the mounted Secret's CA)",
    "ARTHAS_GATEWAY_TLS_CERT": "set with tls.enabled and tls.mutualInternal",
    "ARTHAS_GATEWAY_TLS_KEY": "set with tls.enabled and tls.mutualInternal",
    "ARTHAS_INTERNAL_TLS_CLIENT_CA": "set with tls.enabled and tls.mutualInternal",
    "ARTHAS_REDIS_TLS_CA": "a mounted CA for rediss:// (extraEnv with a volume; docs/OPERATIONS.md)",
    "ARTHAS_REDIS_TLS_CERT": "a mounted client certificate for Redis (extraEnv with a volume)",
    "ARTHAS_REDIS_TLS_KEY": "a mounted client certificate for Redis (extraEnv with a volume)",
}


@pytest.mark.parametrize("name", SETS)
def test_lint_strict(name):
    report = helm.lint(str(CHART), VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == [], report
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


@pytest.mark.parametrize("name", SETS)
def test_gateway_api_and_keda_objects_validate_against_their_crd_schemas(name):
    rendered = render(name)
    for obj in rendered.objects:
        if obj["kind"] in {"HTTPRoute", "ScaledObject"}:
            try:
                validate_custom(obj)
            except jsonschema.ValidationError as e:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


def test_the_crd_check_refuses_a_broken_route():
    route = copy.deepcopy(render("gateway-api").get("HTTPRoute", RELEASE))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(route)
    route = copy.deepcopy(render("gateway-api").get("HTTPRoute", RELEASE))
    route["spec"]["rules"][0]["backendRef"] = []
    with pytest.raises(AssertionError):
        validate_custom(route)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", SETS)
def test_manifests_validate_against_the_kubernetes_api(name, version):
    rendered = render(name)
    checked = 0
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            continue
        doc = {k: v for k, v in obj.items() if k != "_source"}
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({version}): {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 8


def test_default_render_has_the_expected_objects():
    r = render("default")
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in r.objects)
    assert kinds == sorted(
        [
            ("ConfigMap", "arthas-gateway"),
            ("ConfigMap", "arthas-relay"),
            ("Deployment", "arthas-gateway"),
            ("Deployment", "arthas-relay"),
            ("PodDisruptionBudget", "arthas-gateway"),
            ("PodDisruptionBudget", "arthas-relay"),
            ("Secret", "arthas-redis"),
            ("Secret", "arthas-secrets"),
            ("Service", "arthas-gateway"),
            ("Service", "arthas-gateway-internal"),
            ("Service", "arthas-relay"),
            ("ServiceAccount", "arthas"),
        ]
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"redis": {"mode": "replicated"}}, "mode"),
        ({"redis": {"url": "http://redis:6379"}}, "url"),
        ({"relay": {"limits": {"maxConnections": 0}}}, "maxConnections"),
        ({"relay": {"limits": {"maxConections": 10}}}, "maxConections"),
        ({"relay": {"replicas": 3}}, "replicas"),
        ({"gateway": {"limits": {"argon2MaxPending": -1}}}, "argon2MaxPending"),
        ({"secrets": {"ticketSecret": "too-short"}}, "ticketSecret"),
        ({"log": {"format": "xml"}}, "format"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
)
def test_schema_refuses_bad_values(values, message):
    error = render_error(values)
    assert message in error, error


@pytest.mark.parametrize(
    "values, message",
    [
        ({"relay": {"terminationGracePeriodSeconds": 25}}, "terminationGracePeriodSeconds"),
        ({"gateway": {"terminationGracePeriodSeconds": 5}}, "terminationGracePeriodSeconds"),
        ({"ingress": {"enabled": True, "proxyTimeoutSeconds": 20}}, "proxyTimeoutSeconds"),
        ({"relay": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, "maxReplicas"),
        ({"redis": {"url": ""}}, "redis.url is required"),
    ],
)
def test_templates_refuse_inconsistent_values(values, message):
    error = render_error(values)
    assert message in error, error


@pytest.mark.parametrize("component", ["relay", "gateway"])
@pytest.mark.parametrize("name", SETS)
def test_every_variable_is_a_flag_of_the_binary(name, component):
    """clap ignores unknown variables: a misspelt one would silently keep the default."""
    flags = binary_flags(component)
    env = render(name).resolve_env(component, external_secrets=FAKE_EXTERNAL)
    unknown = sorted(k for k in env if k.startswith("ARTHAS_") and k not in flags and k != "ARTHAS_LOG")
    assert unknown == [], f"{component} has no flag for {unknown}"


@pytest.mark.parametrize("component", ["relay", "gateway"])
def test_every_flag_is_a_value_with_the_binarys_default(component):
    flags = binary_flags(component)
    env = render("default").resolve_env(component)
    missing = sorted(set(flags) - set(env) - set(UNSET))
    assert missing == [], f"the chart does not set {missing} for the {component}"
    for var, default in sorted(flags.items()):
        if var in UNSET or var in DELIBERATE or var in {"ARTHAS_INTERNAL_SECRET", "ARTHAS_TICKET_SECRET"}:
            continue
        assert env[var] == default, f"{component}: {var} is {env[var]!r} in the chart, {default!r} in the binary"
    assert env["ARTHAS_LOG"] == "info"


def test_tuned_values_reach_the_processes():
    r = render("tuned")
    relay = r.resolve_env("relay")
    gateway = r.resolve_env("gateway")
    assert relay["ARTHAS_MAX_CONNECTIONS"] == "50000"
    assert relay["ARTHAS_MAX_MESSAGE_BYTES"] == "65536"
    assert relay["ARTHAS_PING_INTERVAL_MS"] == "20000"
    assert relay["ARTHAS_READ_TIMEOUT_MS"] == "35000"
    assert relay["ARTHAS_DRAIN_WINDOW_MS"] == "8000"
    assert relay["ARTHAS_SHUTDOWN_GRACE_MS"] == "30000"
    assert relay["ARTHAS_WORKER_THREADS"] == "2"
    assert relay["ARTHAS_LOG"] == gateway["ARTHAS_LOG"] == "debug"
    assert relay["ARTHAS_LOG_FORMAT"] == "text"
    assert gateway["ARTHAS_MAX_ROOM_MEMBERS"] == "100"
    assert gateway["ARTHAS_ARGON2_MAX_CONCURRENT"] == "4"
    assert r.deployment("relay")["spec"]["replicas"] == 6
    pod = r.deployment("relay")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 15 + 30 + 10


@pytest.mark.parametrize("name", SETS)
def test_drain_fits_in_the_termination_grace_period(name):
    r = render(name)
    pod = r.deployment("relay")["spec"]["template"]["spec"]
    env = r.resolve_env("relay", external_secrets=FAKE_EXTERNAL)
    container = r.container("relay")
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace_ms = int(env["ARTHAS_SHUTDOWN_GRACE_MS"])
    drain_ms = int(env["ARTHAS_DRAIN_WINDOW_MS"])
    assert sleep >= 5, "endpoints and ingress controllers need a few seconds to drop the pod"
    assert drain_ms < grace_ms, "the 1001 closes must be spread within the grace period"
    assert pod["terminationGracePeriodSeconds"] > sleep + math.ceil(grace_ms / 1000)
    probe = {k: v for k, v in container["readinessProbe"]["httpGet"].items() if k != "scheme"}
    assert probe == {"path": "/readyz", "port": "admin"}
    probe = {k: v for k, v in container["livenessProbe"]["httpGet"].items() if k != "scheme"}
    assert probe == {"path": "/healthz", "port": "admin"}
    strategy = r.deployment("relay")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}
    gw = r.deployment("gateway")["spec"]["template"]["spec"]
    gw_sleep = r.container("gateway")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert gw["terminationGracePeriodSeconds"] > gw_sleep


@pytest.mark.parametrize("component", ["relay", "gateway"])
@pytest.mark.parametrize("name", SETS)
def test_pods_run_locked_down(name, component):
    r = render(name)
    pod = r.deployment(component)["spec"]["template"]["spec"]
    container = r.container(component)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # Service links would inject ARTHAS_RELAY_PORT, ARTHAS_GATEWAY_SERVICE_HOST...
    # for a release named "arthas": the binaries' own variable prefix.
    assert pod["enableServiceLinks"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "memory" in container["resources"]["limits"]
    assert "cpu" in container["resources"]["requests"]
    assert container["image"] == f"arthas:{r.values.get('image', {}).get('tag') or '0.1.0'}"
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    selector = r.deployment(component)["spec"]["selector"]["matchLabels"]
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)


@pytest.mark.parametrize("name", SETS)
def test_ports_and_addresses_line_up(name):
    r = render(name)

    def port_of(component, port_name):
        (p,) = [p["containerPort"] for p in r.container(component)["ports"] if p["name"] == port_name]
        return p

    relay_env = r.resolve_env("relay", external_secrets=FAKE_EXTERNAL)
    gateway_env = r.resolve_env("gateway", external_secrets=FAKE_EXTERNAL)
    assert relay_env["ARTHAS_LISTEN"].rsplit(":", 1)[1] == str(port_of("relay", "ws"))
    assert relay_env["ARTHAS_ADMIN_LISTEN"].rsplit(":", 1)[1] == str(port_of("relay", "admin"))
    assert gateway_env["ARTHAS_LISTEN"].rsplit(":", 1)[1] == str(port_of("gateway", "http"))
    assert gateway_env["ARTHAS_INTERNAL_LISTEN"].rsplit(":", 1)[1] == str(port_of("gateway", "internal"))
    assert gateway_env["ARTHAS_ADMIN_LISTEN"].rsplit(":", 1)[1] == str(port_of("gateway", "admin"))
    # Every Service targets a named port of the pods it selects.
    for svc in r.all("Service"):
        component = svc["spec"]["selector"]["app.kubernetes.io/component"]
        names = {p["name"] for p in r.container(component)["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in names, (svc["metadata"]["name"], p)
        assert "sessionAffinity" not in svc["spec"]
    # The relays reach the gateway's internal API through its ClusterIP Service.
    internal = r.get("Service", f"{RELEASE}-gateway-internal")
    assert internal["spec"]["type"] == "ClusterIP"
    # ... which also carries the gateways' admin port, for the ServiceMonitor.
    iport, aport = internal["spec"]["ports"]
    assert iport["targetPort"] == "internal"
    assert aport["targetPort"] == "admin"
    scheme = "https" if r.values.get("tls", {}).get("enabled") else "http"
    assert relay_env["ARTHAS_GATEWAY_URL"] == f"{scheme}://{RELEASE}-gateway-internal:{iport['port']}"
    public = r.get("Service", f"{RELEASE}-gateway")
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
    # Same Redis and same internal secret on both sides.
    for var in ("ARTHAS_REDIS_URL", "ARTHAS_REDIS_MODE", "ARTHAS_INTERNAL_SECRET", "ARTHAS_ALLOWED_ORIGINS"):
        assert relay_env[var] == gateway_env[var], var


FAKE_EXTERNAL = {
    "arthas-prod-secrets": {"internal": "x" * 40, "ticket": "y" * 40},
    "arthas-prod-redis": {"url": "redis://redis-master:6379"},
}


def test_secrets_are_generated_once_and_kept_out_of_configmaps():
    r = render("default")
    data = r.secret_data("arthas-secrets")
    assert set(data) == {"internal-secret", "ticket-secret"}
    assert all(len(v) == 48 for v in data.values())
    assert data["internal-secret"] != data["ticket-secret"]
    assert r.secret_data("arthas-redis") == {"redis-url": "redis://redis-master:6379"}
    for cm in r.all("ConfigMap"):
        text = yaml.safe_dump(cm)
        assert "SECRET" not in text and "REDIS_URL" not in text and data["internal-secret"] not in text
    # The chart's defaults hold no secret.
    with helm.Chart.load(str(CHART)) as chart:
        defaults = chart.values
    assert defaults["secrets"]["internalSecret"] == "" and defaults["secrets"]["ticketSecret"] == ""
    # Pods roll when a secret or a limit changes.
    for component in ("relay", "gateway"):
        annotations = r.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secret"} <= set(annotations)


def test_explicit_secret_values_are_used():
    values = {"secrets": {"internalSecret": "i" * 32, "ticketSecret": "t" * 32}}
    r = render("explicit", values)
    assert r.secret_data("arthas-secrets") == {"internal-secret": "i" * 32, "ticket-secret": "t" * 32}
    assert r.resolve_env("gateway")["ARTHAS_TICKET_SECRET"] == "t" * 32


def test_existing_secrets_are_referenced_not_created():
    r = render("existing-secret")
    assert r.all("Secret") == []
    relay = r.resolve_env("relay", external_secrets=FAKE_EXTERNAL)
    gateway = r.resolve_env("gateway", external_secrets=FAKE_EXTERNAL)
    assert relay["ARTHAS_INTERNAL_SECRET"] == gateway["ARTHAS_INTERNAL_SECRET"] == "x" * 40
    assert gateway["ARTHAS_TICKET_SECRET"] == "y" * 40
    assert relay["ARTHAS_REDIS_URL"] == "redis://redis-master:6379"
    annotations = r.deployment("relay")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations


def test_cluster_mode_passes_every_seed():
    env = render("cluster").resolve_env("relay")
    assert env["ARTHAS_REDIS_MODE"] == "cluster"
    assert len(env["ARTHAS_REDIS_URL"].split(",")) == 3


def test_ingress_routes_ws_to_relays_and_the_rest_to_the_gateway():
    r = render("ingress")
    ing = r.get("Ingress", RELEASE)
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "chat.example.com"
    routes = {(p["path"], p["pathType"]): p["backend"]["service"] for p in rule["http"]["paths"]}
    assert routes[("/ws", "Exact")] == {"name": f"{RELEASE}-relay", "port": {"name": "ws"}}
    assert routes[("/", "Prefix")] == {"name": f"{RELEASE}-gateway", "port": {"name": "http"}}
    ann = ing["metadata"]["annotations"]
    ping_s = int(r.resolve_env("relay")["ARTHAS_PING_INTERVAL_MS"]) / 1000
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(ann[f"nginx.ingress.kubernetes.io/{key}"]) > ping_s
    assert ing["spec"]["tls"][0]["secretName"] == "chat-example-com-tls"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert r.resolve_env("relay")["ARTHAS_TRUSTED_PROXIES"] == "10.244.0.0/16"
    assert r.resolve_env("gateway")["ARTHAS_TRUSTED_PROXIES"] == "10.244.0.0/16"
    assert "WARNING" not in r.notes


def test_notes_warn_about_forwarded_for_behind_an_ingress():
    r = render("ingress-untrusted", {"ingress": {"enabled": True}})
    assert "edge.trustedProxies is empty" in r.notes
    assert "edge.allowedOrigins is empty" in r.notes


def test_autoscaling():
    r = render("hpa")
    hpa = r.get("HorizontalPodAutoscaler", f"{RELEASE}-relay")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{RELEASE}-relay"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "arthas_relay_connections"
    assert metrics["Pods"]["pods"]["target"]["averageValue"] == "12000"
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    assert "replicas" not in r.deployment("relay")["spec"]
    assert "replicas" not in r.deployment("gateway")["spec"]
    assert r.get("HorizontalPodAutoscaler", f"{RELEASE}-gateway")
    # Without the HPA, replicas are fixed and there is none.
    assert render("default").all("HorizontalPodAutoscaler") == []


def test_disruption_budgets():
    r = render("default")
    for component in ("relay", "gateway"):
        pdb = r.get("PodDisruptionBudget", f"{RELEASE}-{component}")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == r.deployment(component)["spec"]["selector"]["matchLabels"]


def test_network_policy_keeps_the_internal_api_to_relays():
    r = render("ingress")
    gw = r.get("NetworkPolicy", f"{RELEASE}-gateway")
    relay_labels = r.deployment("relay")["spec"]["selector"]["matchLabels"]
    rules = {rule["ports"][0]["port"]: rule for rule in gw["spec"]["ingress"]}
    assert rules["internal"]["from"] == [{"podSelector": {"matchLabels": relay_labels}}]
    assert rules["http"]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    relay = r.get("NetworkPolicy", f"{RELEASE}-relay")
    rules = {rule["ports"][0]["port"]: rule for rule in relay["spec"]["ingress"]}
    assert set(rules) == {"ws", "admin"}
    assert rules["admin"]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_service_monitor_scrapes_the_admin_port_with_the_alerts_job_label():
    r = render("ingress")
    sm = r.get("ServiceMonitor", f"{RELEASE}-relay")
    svc = r.get("Service", f"{RELEASE}-relay")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["admin"]
    assert "admin" in {p["name"] for p in svc["spec"]["ports"]}
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "arthas-relay"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_image_digest_wins_over_tag():
    digest = "sha256:" + "a" * 64
    r = render("digest", {"image": {"repository": "registry.example.com/arthas", "tag": "1.2.3", "digest": digest}})
    assert r.container("relay")["image"] == f"registry.example.com/arthas@{digest}"


def test_components_can_be_turned_off():
    r = render("relays-only", {"gateway": {"enabled": False}})
    assert r.maybe("Deployment", f"{RELEASE}-gateway") is None
    assert r.deployment("relay")


def test_commands_name_the_binaries_in_the_image():
    r = render("default")
    assert r.container("relay")["command"] == ["/usr/local/bin/relay"]
    assert r.container("gateway")["command"] == ["/usr/local/bin/gateway"]
    assert "args" not in r.container("relay")


def test_values_file_documents_every_limit():
    """Every limit value has a comment naming its variable."""
    text = (CHART / "values.yaml").read_text()
    for component in ("relay", "gateway"):
        with helm.Chart.load(str(CHART)) as chart:
            limits = chart.values[component]["limits"]
        for key in limits:
            env = "ARTHAS_" + re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper().replace("ARGON2_", "ARGON2_")
            env = env.replace("ARGON_2", "ARGON2")
            assert f"# {env}:" in text, f"values.yaml: {component}.limits.{key} lacks a '# {env}:' comment"


def test_values_copy_is_not_mutated():
    # Rendering must not change the shared value sets (other tests reuse them).
    before = copy.deepcopy(VALUE_SETS)
    render("mutation-check", VALUE_SETS["tuned"])
    assert VALUE_SETS == before


def test_http_route_routes_ws_to_relays_and_the_rest_to_the_gateway():
    r = render("gateway-api")
    route = r.get("HTTPRoute", RELEASE)
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["chat.example.com"]
    ws, rest = route["spec"]["rules"]
    assert ws["matches"] == [{"path": {"type": "Exact", "value": "/ws"}}]
    relay_svc = r.get("Service", f"{RELEASE}-relay")
    gw_svc = r.get("Service", f"{RELEASE}-gateway")
    ws_port = [p["port"] for p in relay_svc["spec"]["ports"] if p["name"] == "ws"][0]
    assert ws["backendRefs"] == [{"name": f"{RELEASE}-relay", "port": ws_port}]
    assert rest["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rest["backendRefs"] == [{"name": f"{RELEASE}-gateway", "port": gw_svc["spec"]["ports"][0]["port"]}]
    assert r.all("Ingress") == []
    assert "httpRoute.parentRefs" in render_error({"httpRoute": {"enabled": True}})


def test_keda_scales_relays_on_connections_per_relay():
    r = render("keda")
    so = r.get("ScaledObject", f"{RELEASE}-relay")
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{RELEASE}-relay"}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (3, 20)
    prom, cpu = so["spec"]["triggers"]
    assert prom["type"] == "prometheus" and prom["metricType"] == "AverageValue"
    assert prom["metadata"]["query"] == f'sum(arthas_relay_connections{{job="arthas-relay", namespace="{NAMESPACE}"}})'
    assert prom["metadata"]["threshold"] == "12000"
    assert cpu["type"] == "cpu" and cpu["metadata"]["value"] == "60"
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    assert r.all("HorizontalPodAutoscaler") == [], "KEDA makes its own HPA"
    assert "choose one" in render_error({"relay": {"keda": {"enabled": True}, "autoscaling": {"enabled": True}}})


def test_extra_volumes_mounts_env_and_pod_annotations_reach_the_pods():
    r = render("gateway-api")
    for component in ("relay", "gateway"):
        pod = r.deployment(component)["spec"]["template"]
        assert pod["spec"]["volumes"] == [{"name": "redis-ca", "secret": {"secretName": "redis-ca"}}]
        assert r.container(component)["volumeMounts"] == [
            {"name": "redis-ca", "mountPath": "/etc/redis-ca", "readOnly": True}
        ]
        assert r.resolve_env(component)["SSL_CERT_FILE"] == "/etc/redis-ca/ca.crt"
    annotations = r.deployment("relay")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "chat"
    assert "volumes" not in render("default").deployment("relay")["spec"]["template"]["spec"]


def test_pods_name_themselves_in_trace_resources():
    env = render("default").container("relay")["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "k8s.pod.name=$(POD_NAME)" in by_name["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    names = [e["name"] for e in env]
    assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), "$(VAR) needs VAR defined first"


def test_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard():
    r = render("gateway-api")
    cm = r.get("ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Arthas"}
    shipped = json.loads(cm["data"]["arthas.json"])
    repo = pathlib.Path(__file__).resolve().parents[2]
    assert shipped == json.loads((repo / "deploy" / "grafana" / "arthas.json").read_text()), (
        "helm/arthas/dashboards/arthas.json must be a copy of deploy/grafana/arthas.json"
    )


def test_tls_mounts_the_secret_and_serves_it_on_every_port():
    r = render("tls")
    mount = "/etc/arthas/tls"
    for component in ("relay", "gateway"):
        pod = r.deployment(component)["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert volume["secret"]["secretName"] == f"{RELEASE}-tls"
        container = r.container(component)
        (mounted,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
        # A directory mount: a subPath mount would never see a renewal.
        assert mounted == {"name": "tls", "mountPath": mount, "readOnly": True}
        env = r.resolve_env(component)
        assert env["ARTHAS_TLS_CERT"] == f"{mount}/tls.crt"
        assert env["ARTHAS_TLS_KEY"] == f"{mount}/tls.key"
        assert env["ARTHAS_TLS_RELOAD_INTERVAL_MS"] == "10000"
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    relay = r.resolve_env("relay")
    assert relay["ARTHAS_GATEWAY_URL"].startswith("https://")
    assert relay["ARTHAS_GATEWAY_TLS_CA"] == f"{mount}/ca.crt"
    # Mutual TLS on the internal API (by default), the secret still required too.
    assert relay["ARTHAS_GATEWAY_TLS_CERT"] == f"{mount}/tls.crt"
    assert r.resolve_env("gateway")["ARTHAS_INTERNAL_TLS_CLIENT_CA"] == f"{mount}/ca.crt"
    assert relay["ARTHAS_INTERNAL_SECRET"]
    # Without TLS nothing of it is rendered.
    plain = render("default")
    assert "volumes" not in plain.deployment("relay")["spec"]["template"]["spec"]
    assert "ARTHAS_TLS_CERT" not in plain.resolve_env("relay")


def test_tls_certificate_names_every_service_and_allows_client_auth():
    r = render("tls")
    cert = r.get("Certificate", RELEASE)
    spec = cert["spec"]
    assert spec["secretName"] == f"{RELEASE}-tls"
    assert spec["issuerRef"] == {"name": "arthas-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert {"server auth", "client auth"} <= set(spec["usages"])
    for svc in ("relay", "gateway", "gateway-internal"):
        assert f"{RELEASE}-{svc}.{NAMESPACE}.svc" in spec["dnsNames"]
    assert "ws.chat.example.com" in spec["dnsNames"]
    assert len(spec["dnsNames"]) == len(set(spec["dnsNames"]))
    assert spec["privateKey"]["encoding"] == "PKCS8"
    # Asked for without an issuer: refused.
    error = render_error({"tls": {"enabled": True, "certificate": {"create": True}}})
    assert "issuerRef.name" in error, error


def test_direct_exposure_through_load_balancers_keeps_client_addresses():
    r = render("tls")
    for name in ("relay", "gateway"):
        svc = r.get("Service", f"{RELEASE}-{name}")
        assert svc["spec"]["type"] == "LoadBalancer"
        assert svc["spec"]["externalTrafficPolicy"] == "Local"
        assert svc["spec"]["ports"][0]["port"] == 443
    assert r.get("Service", f"{RELEASE}-relay")["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/wss"
    assert r.get("Service", f"{RELEASE}-relay")["spec"]["loadBalancerSourceRanges"] == ["0.0.0.0/0"]
    # The internal Service stays ClusterIP whatever the public ones are.
    assert r.get("Service", f"{RELEASE}-gateway-internal")["spec"]["type"] == "ClusterIP"
    default = render("default").get("Service", f"{RELEASE}-relay")["spec"]
    assert "externalTrafficPolicy" not in default and "loadBalancerSourceRanges" not in default


def test_metrics_are_scraped_over_https_with_the_secrets_ca():
    r = render("tls")
    for name, svc in (("relay", "relay"), ("gateway", "gateway-internal")):
        (endpoint,) = r.get("ServiceMonitor", f"{RELEASE}-{name}")["spec"]["endpoints"]
        assert endpoint["scheme"] == "https"
        assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": f"{RELEASE}-tls", "key": "ca.crt"}
        assert endpoint["tlsConfig"]["serverName"] == f"{RELEASE}-{svc}.{NAMESPACE}.svc"


def test_an_ingress_in_front_of_tls_pods_re_encrypts():
    values = copy.deepcopy(VALUE_SETS["ingress"])
    values["tls"] = {"enabled": True, "secretName": "arthas-pods-tls"}
    r = render("ingress-tls", values)
    annotations = r.get("Ingress", RELEASE)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert r.maybe("Certificate", RELEASE) is None
    pod = r.deployment("relay")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["secret"]["secretName"] == "arthas-pods-tls"
