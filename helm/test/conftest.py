"""Shared helpers of the deployment tests (run by deploy/test.sh).

The chart is rendered with Helm 4's Go SDK through helm-python-sdk (no helm
binary), once per value set, and the rendered manifests are what every test
looks at: kubernetes-validate checks them against the API schemas, and
test_binaries.py starts the real relay and gateway with exactly the
environment the rendered Deployments give them.
"""

from __future__ import annotations

import base64
import os
import pathlib
import re
import subprocess
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "arthas"
VALUES_DIR = pathlib.Path(__file__).resolve().parent / "values"
RELEASE = "arthas"
NAMESPACE = "chat"
TARGET_DIR = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BIN_DIR = TARGET_DIR / "debug"


def value_sets() -> dict[str, dict[str, Any]]:
    """`default` (no values) and every helm/test/values/*.yaml."""
    sets: dict[str, dict[str, Any]] = {"default": {}}
    for path in sorted(VALUES_DIR.glob("*.yaml")):
        sets[path.stem] = yaml.safe_load(path.read_text()) or {}
    return sets


VALUE_SETS = value_sets()


class Rendered:
    """One rendering of the chart: its objects, indexed."""

    def __init__(self, name: str, values: dict[str, Any], files: dict[str, str]):
        self.name = name
        self.values = values
        self.files = files
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("metadata", {})
                    doc["_source"] = path
                    self.objects.append(doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def maybe(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def deployment(self, component: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-{component}")

    def container(self, component: str) -> dict[str, Any]:
        pod = self.deployment(component)["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == component]
        return container

    def secret_data(self, name: str) -> dict[str, str] | None:
        secret = self.maybe("Secret", name)
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def resolve_env(
        self, component: str, external_secrets: dict[str, dict[str, str]] | None = None
    ) -> dict[str, str]:
        """The container's environment as the kubelet would build it:
        envFrom first, then env (later entries win)."""
        external_secrets = external_secrets or {}
        container = self.container(component)

        def secret(name: str) -> dict[str, str]:
            data = self.secret_data(name)
            if data is None:
                assert name in external_secrets, f"{component}: Secret {name} is neither rendered nor provided"
                data = external_secrets[name]
            return data

        def configmap(name: str) -> dict[str, str]:
            return {k: str(v) for k, v in (self.get("ConfigMap", name).get("data") or {}).items()}

        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(configmap(source["configMapRef"]["name"]))
            elif "secretRef" in source:
                env.update(secret(source["secretRef"]["name"]))
        fields = {
            "metadata.name": f"{RELEASE}-{component}-0",
            "metadata.namespace": NAMESPACE,
            "spec.nodeName": "node-0",
        }
        for item in container.get("env", []):
            if "value" in item:
                # The kubelet expands $(VAR) of variables defined before.
                env[item["name"]] = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                    lambda m: env.get(m.group(1), m.group(0)),
                    str(item["value"]),
                )
                continue
            ref = item["valueFrom"]
            if "secretKeyRef" in ref:
                env[item["name"]] = secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                env[item["name"]] = configmap(ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
            elif "fieldRef" in ref:
                env[item["name"]] = fields[ref["fieldRef"]["fieldPath"]]
            else:
                raise AssertionError(f"{component}: unsupported env source {ref}")
        return env


_RENDER_CACHE: dict[str, Rendered] = {}


def render(name: str, values: dict[str, Any] | None = None) -> Rendered:
    """Renders the chart (cached per value-set name) as an install would."""
    if values is None and name in _RENDER_CACHE:
        return _RENDER_CACHE[name]
    vals = VALUE_SETS[name] if values is None else values
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(vals)
        files = chart.render(vals, name=RELEASE, namespace=NAMESPACE, is_install=True, revision=1)
    rendered = Rendered(name, vals, files)
    if values is None:
        _RENDER_CACHE[name] = rendered
    return rendered


def render_error(values: dict[str, Any]) -> str:
    """The error a value set is refused with (schema or template `fail`)."""
    with helm.Chart.load(str(CHART)) as chart:
        try:
            chart.validate_schema(values)
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except helm.HelmError as e:
            return str(e)
    raise AssertionError(f"values were accepted: {values}")


HELP_OPTION = re.compile(r"^\s+--(?P<flag>[a-z0-9-]+)")
HELP_ENV = re.compile(r"\[env: (?P<env>ARTHAS_[A-Z0-9_]+)")
HELP_DEFAULT = re.compile(r"\[default: (?P<default>[^\]]*)\]")


def binary(name: str) -> pathlib.Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --bins` (deploy/test.sh does)")
    return path


def binary_flags(name: str) -> dict[str, str | None]:
    """ARTHAS_* variable -> the binary's default (None: no default), from --help."""
    text = subprocess.run(
        [str(binary(name)), "--help"], check=True, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    ).stdout
    flags: dict[str, str | None] = {}
    blocks = re.split(r"\n(?=\s+-(?:-|[a-zA-Z],))", text)
    for block in blocks:
        env = HELP_ENV.search(block)
        if not env:
            continue
        default = HELP_DEFAULT.search(block)
        if default:
            value: str | None = default.group("default").strip('"')
        elif re.search(r"^\s+--[a-z0-9-]+\s*$", block.splitlines()[0]):
            value = "false"  # a boolean switch
        else:
            value = None
        flags[env.group("env")] = value
    return flags
