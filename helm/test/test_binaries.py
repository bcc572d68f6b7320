"""The rendered Deployments, run for real: a real redis-server (standalone,
or a 3-master Redis Cluster for the cluster value set) and the built
`relay` and `gateway` started with exactly the environment and command the
rendered pods get (listen addresses, Redis and gateway URLs rewritten to
loopback ports). Then: both /readyz answer 200, a WebSocket chat goes
through the relay (room creation and a password check over the gateway's
internal API with the chart's secret), /metrics carries every series the
alerts, the dashboard and the HPA use, no secret reaches a log, and SIGTERM
drains as the chart's timings assume."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import BIN_DIR, Rendered, binary, render
from test_chart import FAKE_EXTERNAL
from test_monitoring import PENDING, metrics_used

START_TIMEOUT = 20.0
LOOPBACK = "127.0.0.1"

# Message types (docs/PROTOCOL.md).
CREATE_ROOM, JOIN_ROOM, SEND_MESSAGE = 0x01, 0x02, 0x03
ROOM_CREATED, ROOM_JOINED, MEMBER_JOINED, RELAY_MESSAGE, ERROR, PING = 0x10, 0x11, 0x12, 0x14, 0x17, 0x18


def free_port(with_bus: bool = False) -> int:
    """A free loopback port (and port + 10000 free too, for a cluster bus)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if not with_bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def http_status(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def http_text(url: str, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.read().decode()


class Processes:
    """Started processes with their output in files; all stopped at the end."""

    def __init__(self, tmp: pathlib.Path):
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def alive(self, name: str) -> None:
        code = self.procs[name].poll()
        if code is not None:
            pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def start_redis(procs: Processes, cluster: bool) -> str:
    """A standalone redis-server or a 3-master cluster; returns the URL the
    processes get (comma-separated seeds for a cluster)."""
    if not cluster:
        port = free_port()
        procs.start(
            "redis",
            ["redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"],
            {"PATH": os.environ["PATH"]},
        )
        wait_port(port)
        return f"redis://{LOOPBACK}:{port}"
    ports = []
    for i in range(3):
        port = free_port(with_bus=True)
        ports.append(port)
        procs.start(
            f"redis-{i}",
            [
                "redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--dir", str(procs.tmp), "--cluster-node-timeout", "2000",
            ],
            {"PATH": os.environ["PATH"]},
        )
    for port in ports:
        wait_port(port)
    subprocess.run(
        ["redis-cli", "--cluster", "create", *[f"{LOOPBACK}:{p}" for p in ports], "--cluster-replicas", "0",
         "--cluster-yes"],
        check=True, capture_output=True, timeout=30,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = [
            subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True).stdout
            for p in ports
        ]
        if all("cluster_state:ok" in s for s in states):
            break
        time.sleep(0.1)
    else:
        raise TimeoutError("the Redis cluster did not become ok")
    return ",".join(f"redis://{LOOPBACK}:{p}" for p in ports)


def rewrite_listen(env: dict[str, str], var: str) -> int:
    """`0.0.0.0:PORT` (a pod address) -> a free loopback port."""
    host, port = env[var].rsplit(":", 1)
    assert host in {"0.0.0.0", "[::]"}, f"{var}={env[var]}: a pod must listen on all interfaces"
    assert port.isdigit()
    new = free_port()
    env[var] = f"{LOOPBACK}:{new}"
    return new


def argv_of(container: dict[str, Any]) -> list[str]:
    """The container's command and args, with the image path mapped to the build."""
    command = list(container.get("command", [])) + list(container.get("args", []))
    assert command, "the chart must choose the entrypoint"
    exe = pathlib.Path(command[0])
    assert exe.parent == pathlib.Path("/usr/local/bin"), command[0]
    return [str(binary(exe.name)), *command[1:]]


def probe_port(rendered: Rendered, component: str, probe: str, ports: dict[str, int]) -> tuple[str, int]:
    """The probe's path and the loopback port its named port now listens on."""
    get = rendered.container(component)[probe]["httpGet"]
    return get["path"], ports[get["port"]]


def make_tls_secret(directory: pathlib.Path) -> None:
    """What cert-manager writes into the TLS Secret: ca.crt, and tls.crt
    (for 127.0.0.1, server and client auth, then the CA) with tls.key."""
    directory.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=arthas chart test CA", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "tls.key", "-out", "tls.csr")
    (directory / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "subjectAltName=IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "leaf.crt")
    (directory / "tls.crt").write_text((directory / "leaf.crt").read_text() + (directory / "ca.crt").read_text())


class Stack:
    """Redis + gateway + relay of one rendered value set, running."""

    def __init__(self, rendered: Rendered, tmp: pathlib.Path, cluster: bool):
        self.rendered = rendered
        self.procs = Processes(tmp)
        redis_url = start_redis(self.procs, cluster)
        base = {"PATH": os.environ["PATH"]}

        gw_env = rendered.resolve_env("gateway", external_secrets=FAKE_EXTERNAL)
        relay_env = rendered.resolve_env("relay", external_secrets=FAKE_EXTERNAL)
        # tls.enabled: the Secret's mount becomes a directory with a CA and
        # a certificate made here; clients trust that CA.
        self.ssl: ssl.SSLContext | None = None
        mount = rendered.values.get("tls", {}).get("mountPath", "/etc/arthas/tls")
        if "ARTHAS_TLS_CERT" in relay_env:
            secret = tmp / "tls-secret"
            make_tls_secret(secret)
            for env in (gw_env, relay_env):
                for key, value in env.items():
                    if value.startswith(mount + "/"):
                        env[key] = str(secret / value[len(mount) + 1:])
            self.ssl = ssl.create_default_context(cafile=str(secret / "ca.crt"))
        self.scheme = "https" if self.ssl else "http"
        self.secrets = [
            gw_env["ARTHAS_INTERNAL_SECRET"],
            gw_env["ARTHAS_TICKET_SECRET"],
        ]
        self.gateway_ports = {
            "http": rewrite_listen(gw_env, "ARTHAS_LISTEN"),
            "internal": rewrite_listen(gw_env, "ARTHAS_INTERNAL_LISTEN"),
            "admin": rewrite_listen(gw_env, "ARTHAS_ADMIN_LISTEN"),
        }
        self.relay_ports = {
            "ws": rewrite_listen(relay_env, "ARTHAS_LISTEN"),
            "admin": rewrite_listen(relay_env, "ARTHAS_ADMIN_LISTEN"),
        }
        # The relay reaches the gateway's internal Service: same port, loopback host.
        gateway_url = re.fullmatch(r"(https?)://([a-z0-9-]+):(\d+)", relay_env["ARTHAS_GATEWAY_URL"])
        assert gateway_url and gateway_url.group(1) == self.scheme, relay_env["ARTHAS_GATEWAY_URL"]
        relay_env["ARTHAS_GATEWAY_URL"] = f"{self.scheme}://{LOOPBACK}:{self.gateway_ports['internal']}"
        for env in (gw_env, relay_env):
            assert env["ARTHAS_REDIS_URL"].startswith("redis://")
            env["ARTHAS_REDIS_URL"] = redis_url
        self.relay_env = relay_env
        self.gateway_env = gw_env

        self.procs.start("gateway", argv_of(rendered.container("gateway")), {**base, **gw_env, "HOSTNAME": "arthas-gateway-0"})
        self.procs.start("relay", argv_of(rendered.container("relay")), {**base, **relay_env, "HOSTNAME": "arthas-relay-0"})

    def url(self, component: str, probe: str) -> str:
        ports = self.relay_ports if component == "relay" else self.gateway_ports
        path, port = probe_port(self.rendered, component, probe, ports)
        return f"{self.scheme}://{LOOPBACK}:{port}{path}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = {"gateway", "relay"}
        while pending and time.monotonic() < deadline:
            for component in sorted(pending):
                self.procs.alive(component)
                try:
                    if http_status(self.url(component, "readinessProbe"), timeout=1, context=self.ssl) == 200:
                        pending.discard(component)
                except OSError:
                    pass
            time.sleep(0.1)
        if pending:
            pytest.fail(f"not ready: {pending}\n" + "\n".join(self.procs.log(c)[-2000:] for c in pending))

    def origin(self) -> str | None:
        """An allowed Origin, when the chart pins them (browsers always send one)."""
        allowed = [o.strip() for o in self.relay_env["ARTHAS_ALLOWED_ORIGINS"].split(",") if o.strip()]
        return allowed[0] if allowed else None

    def ws(self, **kwargs):
        kwargs.setdefault("origin", self.origin())
        scheme = "wss" if self.ssl else "ws"
        if self.ssl:
            kwargs.setdefault("ssl", self.ssl)
        return connect(f"{scheme}://{LOOPBACK}:{self.relay_ports['ws']}/ws", open_timeout=5, close_timeout=5, **kwargs)

    def metrics(self) -> str:
        return http_text(f"{self.scheme}://{LOOPBACK}:{self.relay_ports['admin']}/metrics", self.ssl)

    def gateway_metrics(self) -> str:
        return http_text(f"{self.scheme}://{LOOPBACK}:{self.gateway_ports['admin']}/metrics", self.ssl)


def send(ws, kind: int, data: dict[str, Any]) -> None:
    """Sends one envelope."""
    ws.send(msgpack.packb({"type": kind, "data": data}))


def receive(ws, kind: int, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame of `kind`, skipping server pings."""
    deadline = time.monotonic() + timeout
    while True:
        frame = msgpack.unpackb(ws.recv(timeout=max(0.1, deadline - time.monotonic())), raw=False)
        if frame["type"] == PING:
            continue
        assert frame["type"] == kind, f"expected 0x{kind:02x}, got {frame}"
        return frame["data"]


def chat(stack: Stack, alice) -> None:
    """Alice creates a room and chats with Bob; error paths on other
    sockets (closed here). Alice's socket stays open."""
    send(alice, CREATE_ROOM, {"name": "alice", "password": "", "ephemeral": 0, "expiry": 3600})
    room = receive(alice, ROOM_CREATED)["roomId"]
    assert receive(alice, ROOM_JOINED)["roomId"] == room

    with stack.ws() as bob:
        send(bob, JOIN_ROOM, {"roomId": room, "name": "bob", "password": ""})
        joined = receive(bob, ROOM_JOINED)
        assert [m["name"] for m in joined["members"]] == ["alice", "bob"]
        assert receive(alice, MEMBER_JOINED)["name"] == "bob"
        send(alice, SEND_MESSAGE, {"iv": "aXZpdml2aXZpdg", "ciphertext": "Y2lwaGVydGV4dA"})
        relayed = receive(bob, RELAY_MESSAGE)
        assert relayed["senderName"] == "alice" and relayed["ciphertext"] == "Y2lwaGVydGV4dA"
        # Not msgpack: an error frame (E005), the connection stays.
        bob.send(b"\xc1\xc1")
        assert receive(bob, ERROR)["code"] == "E005"

    # A password room: creation and the wrong-password check both go over
    # the gateway's internal API with the internal secret.
    with stack.ws() as carol, stack.ws() as dave:
        send(carol, CREATE_ROOM, {"name": "carol", "password": "a" * 64, "ephemeral": 0, "expiry": 0})
        locked = receive(carol, ROOM_CREATED)["roomId"]
        assert receive(carol, ROOM_JOINED)["hasPassword"] is True
        send(dave, JOIN_ROOM, {"roomId": locked, "name": "dave", "password": "b" * 64})
        assert receive(dave, ERROR)["code"] == "E006"


def series(exposition: str) -> dict[str, float]:
    samples = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def check_gateway_metrics(stack: Stack) -> None:
    # The relay created both rooms through the internal API; the wrong
    # password was checked there too (E006).
    samples = series(stack.gateway_metrics())
    assert samples['arthas_gateway_operations_total{operation="create_room",outcome="ok"}'] >= 2
    assert samples['arthas_gateway_operations_total{operation="check_password",outcome="E006"}'] >= 1
    assert samples['arthas_gateway_http_requests_total{api="internal",route="/internal/v1/rooms",status="200"}'] >= 2


def families(*expositions: str) -> set[str]:
    return {line.split()[2] for text in expositions for line in text.splitlines() if line.startswith("# TYPE ")}


def check_metrics(stack: Stack) -> dict[str, float]:
    text = stack.metrics()
    samples = series(text)
    if stack.ssl:
        # The certificate's expiry, for the alert on renewals that fail.
        for certificate in ("server", "client"):
            key = f'arthas_tls_certificate_expiry_timestamp_seconds{{certificate="{certificate}"}}'
            assert samples[key] > time.time(), key
    names = families(text, stack.gateway_metrics())
    # Exported only by processes that serve TLS.
    tls_only = set() if stack.ssl else {"arthas_tls_certificate_expiry_timestamp_seconds"}
    missing = sorted(metrics_used() - names - PENDING - tls_only)
    assert missing == [], f"the relay and gateway export no {missing} (renamed?): alerts/dashboard/autoscalers would break"
    assert samples["arthas_relay_connections"] == 1
    assert samples["arthas_relay_publishes_total"] >= 1
    assert samples["arthas_relay_deliveries_total"] >= 1
    assert samples['arthas_relay_errors_out_total{code="E005"}'] >= 1
    assert samples['arthas_relay_errors_out_total{code="E006"}'] >= 1
    assert samples['arthas_relay_closes_total{code="1000"}'] >= 1
    assert samples["arthas_relay_publish_errors_total"] == 0
    # Alice's room, and the rooms emptied meanwhile while they linger
    # (ARTHAS_ROOM_LINGER_MS).
    assert samples["arthas_relay_local_rooms"] >= 1
    return samples


def no_secret_in_logs(stack: Stack) -> None:
    for name in ("relay", "gateway"):
        log = stack.procs.log(name)
        for secret in stack.secrets:
            assert secret not in log, f"a secret appears in the {name}'s log"


RUNS = {
    # value set -> (Redis Cluster?, drain checked?)
    "default": (False, True),
    "existing-secret": (False, False),
    "cluster": (True, False),
    "tuned": (False, False),
    "ingress": (False, False),
    # TLS on every port, mutual TLS on the internal API, the Secret's files.
    "tls": (False, True),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_rendered_deployments_run(name):
    cluster, check_drain = RUNS[name]
    rendered = render(name)
    with tempfile.TemporaryDirectory(prefix=f"arthas-{name}-") as tmp:
        stack = Stack(rendered, pathlib.Path(tmp), cluster)
        try:
            stack.wait_ready()
            # Gateway liveness (/ping) and readiness (/readyz, Redis) both answer.
            assert http_status(stack.url("gateway", "livenessProbe"), context=stack.ssl) == 200
            assert http_status(stack.url("relay", "livenessProbe"), context=stack.ssl) == 200
            if stack.origin():
                # Pinned origins: another web origin is refused (HTTP 403).
                with pytest.raises(InvalidStatus) as refused:
                    stack.ws(origin="https://evil.example.net")
                assert refused.value.response.status_code == 403
            with stack.ws() as alice:
                chat(stack, alice)
                check_metrics(stack)
                check_gateway_metrics(stack)
                no_secret_in_logs(stack)
                if check_drain:
                    drain(stack, alice)
            if not check_drain:
                stop(stack, "relay", expect_within=float(stack.relay_env["ARTHAS_SHUTDOWN_GRACE_MS"]) / 1000)
            stop(stack, "gateway", expect_within=5)
            no_secret_in_logs(stack)
        finally:
            stack.procs.stop_all()


def stop(stack: Stack, name: str, expect_within: float) -> float:
    proc = stack.procs.procs[name]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=expect_within + 2)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not exit within {expect_within}s of SIGTERM")
    assert code == 0, f"{name} exited {code}:\n{stack.procs.log(name)[-2000:]}"
    return time.monotonic() - started


def drain(stack: Stack, alice) -> None:
    """SIGTERM: /readyz 503 at once, no new WebSockets, the open one closed
    with 1001 within the drain window, exit within the grace period."""
    drain_s = int(stack.relay_env["ARTHAS_DRAIN_WINDOW_MS"]) / 1000
    grace_s = int(stack.relay_env["ARTHAS_SHUTDOWN_GRACE_MS"]) / 1000
    closed: dict[str, Any] = {}

    def wait_close():
        try:
            while True:
                alice.recv(timeout=drain_s + 5)
        except ConnectionClosed as e:
            closed["code"] = e.rcvd.code if e.rcvd else None
            closed["at"] = time.monotonic()
        except TimeoutError:
            closed["code"] = "timeout"

    watcher = threading.Thread(target=wait_close, daemon=True)
    watcher.start()
    proc = stack.procs.procs["relay"]
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    ready = stack.url("relay", "readinessProbe")
    deadline = sent + 1.0
    status = None
    while time.monotonic() < deadline:
        status = http_status(ready, timeout=0.5, context=stack.ssl)
        if status == 503:
            break
        time.sleep(0.02)
    assert status == 503, f"/readyz answered {status} after SIGTERM"
    assert http_status(stack.url("relay", "livenessProbe"), context=stack.ssl) == 200, "liveness must hold during the drain"
    try:
        with stack.ws():
            pytest.fail("a draining relay accepted a WebSocket")
    except Exception as e:  # refused, or HTTP 503
        assert "accepted a WebSocket" not in str(e)
    watcher.join(timeout=drain_s + 6)
    assert closed.get("code") == 1001, f"the open socket was not closed with 1001: {closed}"
    assert closed["at"] - sent <= drain_s + 1.5
    code = proc.wait(timeout=grace_s + 2)
    assert code == 0, stack.procs.log("relay")[-2000:]
    assert time.monotonic() - sent <= grace_s + 1


def test_binaries_are_built():
    for name in ("relay", "gateway", "arthas"):
        assert (BIN_DIR / name).exists(), f"{BIN_DIR / name}: run cargo build --bins"
