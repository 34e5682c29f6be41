"""Fixtures for running the official Dapr Python SDK against real `outrigger run` processes.

Nothing here listens on a fixed port: outrigger is started with `--dapr-http-port 0
--dapr-grpc-port 0` and reports the ports it picked; redis-server gets a port the kernel
just handed out. Everything binds to 127.0.0.1.

Environment:
  OUTRIGGER_BIN   path of the outrigger binary (default: <repo>/target/debug/outrigger)
  REDIS_SERVER    path of redis-server (default: redis-server on PATH, then /usr/bin/redis-server)
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "outrigger"

STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LISTENING = re.compile(
    r"outrigger sidecar listening app_id=(?P<app_id>\S+) http_port=(?P<http>\d+) grpc_port=(?P<grpc>\d+)"
    r"(?: mesh_port=(?P<mesh>\d+))?(?: admin_port=(?P<admin>\d+))?"
)

# Environment variables that would redirect the SDK (or grpc/urllib) somewhere else.
_CLIENT_ENV_TO_CLEAR = (
    "DAPR_API_TOKEN",
    "DAPR_HTTP_ENDPOINT",
    "DAPR_GRPC_ENDPOINT",
    "DAPR_API_TIMEOUT_SECONDS",
    "DAPR_API_MAX_RETRIES",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "grpc_proxy",
)


def outrigger_bin() -> Path:
    return Path(os.environ.get("OUTRIGGER_BIN") or DEFAULT_BIN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------
# outrigger process
# --------------------------------------------------------------------------------------


class Sidecar:
    """One `outrigger run` process; stdout (with stderr merged) is drained by a thread."""

    def __init__(
        self,
        app_id: str,
        resources_path: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
        extra_args: Optional[List[str]] = None,
    ):
        binary = outrigger_bin()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            pytest.fail(
                f"outrigger binary not found at {binary}: build it with `cargo build` "
                "or point OUTRIGGER_BIN at it",
                pytrace=False,
            )
        self.app_id = app_id
        self.stopped = False
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self._ready: "queue.Queue[Optional[re.Match]]" = queue.Queue()

        args = [
            str(binary),
            "run",
            "--app-id",
            app_id,
            "--dapr-http-port",
            "0",
            "--dapr-grpc-port",
            "0",
            "--mesh-port",
            "0",
            "--admin-port",
            "0",
        ]
        if resources_path is not None:
            args += ["--resources-path", str(resources_path)]
        args += list(extra_args or [])

        # Hermetic: the command line above is the whole configuration. outrigger reads every
        # OUTRIGGER_* variable as configuration and refuses unknown ones, so this harness's
        # own OUTRIGGER_BIN / OUTRIGGER_VENV must not leak into it either.
        proc_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OUTRIGGER_") and k not in ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE")
        }
        proc_env["NO_COLOR"] = "1"
        proc_env.update(env or {})

        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=proc_env,
        )
        self._reader = threading.Thread(target=self._drain, name=f"outrigger-{app_id}", daemon=True)
        self._reader.start()

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        match = None
        while match is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(
                    f"outrigger ({app_id}) did not log its listening line within "
                    f"{STARTUP_TIMEOUT_S}s; output:\n{self.output()}",
                    pytrace=False,
                )
            try:
                match = self._ready.get(timeout=remaining)
            except queue.Empty:
                continue
            if match is None:  # EOF before the line appeared
                self.proc.wait(timeout=5)
                pytest.fail(
                    f"outrigger ({app_id}) exited with {self.proc.returncode} before listening; "
                    f"output:\n{self.output()}",
                    pytrace=False,
                )
        assert match.group("app_id") == app_id, match.group(0)
        self.http_port = int(match.group("http"))
        self.grpc_port = int(match.group("grpc"))
        self.mesh_port = int(match.group("mesh") or 0)
        self.admin_port = int(match.group("admin") or 0)
        assert self.http_port > 0 and self.grpc_port > 0
        assert self.http_port != self.grpc_port

    def _drain(self) -> None:
        found = False
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
            with self._lock:
                self.lines.append(line)
            if not found:
                m = _LISTENING.search(line)
                if m:
                    found = True
                    self._ready.put(m)
        if not found:
            self._ready.put(None)

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, wait, return the exit code."""
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"outrigger ({self.app_id}) did not exit within {STOP_TIMEOUT_S}s of SIGTERM"
                )
        self._reader.join(timeout=5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def start_sidecar():
    """Factory: start_sidecar(app_id, resources_path=None, env=None) -> Sidecar.

    Every sidecar still running at the end of the session is stopped with SIGTERM and must
    exit 0 (a crash or a non-zero exit shows up as a teardown error)."""
    started: List[Sidecar] = []

    def _start(app_id: str, resources_path: Optional[Path] = None, env=None, extra_args=None):
        sc = Sidecar(app_id, resources_path=resources_path, env=env, extra_args=extra_args)
        started.append(sc)
        return sc

    yield _start

    problems = []
    for sc in started:
        if sc.stopped:
            continue  # the test that stopped it checked the exit code
        if not sc.alive():
            problems.append(
                f"{sc.app_id}: died during the session with exit code {sc.proc.returncode}\n"
                f"{sc.output()[-4000:]}"
            )
            continue
        try:
            rc = sc.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if rc != 0:
            problems.append(f"{sc.app_id}: exit code {rc} after SIGTERM\n{sc.output()[-4000:]}")
    if problems:
        pytest.fail("outrigger sidecars misbehaved:\n" + "\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------------------
# redis-server
# --------------------------------------------------------------------------------------


def redis_command(port: int, *args: str, timeout: float = 2.0):
    """Send one command in RESP and return the decoded reply (tiny client, no dependency)."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        payload += f"${len(b)}\r\n".encode() + b + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        f = s.makefile("rb")
        return _resp_read(f)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected redis reply {line!r}")


def _redis_binary() -> Optional[str]:
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    return None


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory):
    binary = _redis_binary()
    if binary is None:
        pytest.fail(
            "redis-server not found: install the Debian package redis-server "
            "or set REDIS_SERVER",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("redis")
    last_log = ""
    for _attempt in range(3):
        port = free_port()
        log_path = workdir / f"redis-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if redis_command(port, "PING", timeout=0.5) == "PONG":
                    ready = True
                    break
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        if ready:
            break
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        last_log = log_path.read_text(errors="replace")
    else:
        pytest.fail(f"redis-server did not start:\n{last_log}", pytrace=False)

    yield port

    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def write_redis_component(directory: Path, port: int, name: str = "statestore") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\n"
        "kind: Component\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        "  type: state.redis\n"
        "  version: v1\n"
        "  metadata:\n"
        "  - name: redisHost\n"
        f"    value: 127.0.0.1:{port}\n"
    )
    return directory


# --------------------------------------------------------------------------------------
# the sidecars the state scenarios run against, and SDK clients
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=["memory", "redis"])
def store_sidecar(request, start_sidecar, tmp_path_factory):
    """A running sidecar whose `statestore` is the embedded in-memory store or Redis."""
    if request.param == "memory":
        sc = start_sidecar(f"py-mem-{uuid.uuid4().hex[:6]}")
        sc.redis_port = None
    else:
        port = request.getfixturevalue("redis_port")
        resources = write_redis_component(tmp_path_factory.mktemp("resources-redis"), port)
        sc = start_sidecar(f"py-redis-{uuid.uuid4().hex[:6]}", resources_path=resources)
        sc.redis_port = port
    sc.store_kind = request.param
    yield sc
    # Stop it here (before redis-server goes away) and insist on a clean exit.
    assert sc.alive(), f"outrigger died during the session:\n{sc.output()[-4000:]}"
    rc = sc.stop()
    assert rc == 0, f"outrigger exited {rc} after SIGTERM:\n{sc.output()[-4000:]}"


@pytest.fixture
def connect(monkeypatch):
    """Factory: connect(sidecar, token=None) -> dapr.clients.DaprClient.

    The SDK resolves its settings from the environment when they are read, so pointing
    DAPR_HTTP_PORT / DAPR_GRPC_PORT at the sidecar makes `DaprClient()` (which first polls
    GET /v1.0/healthz/outbound on the HTTP port) talk to exactly that sidecar."""
    from dapr.clients import DaprClient

    clients = []

    def _connect(sidecar: Sidecar, token: Optional[str] = None):
        for name in _CLIENT_ENV_TO_CLEAR:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
        monkeypatch.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
        monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
        if token is not None:
            monkeypatch.setenv("DAPR_API_TOKEN", token)
        client = DaprClient()
        clients.append(client)
        return client

    yield _connect
    for c in clients:
        c.close()


@pytest.fixture
def client(store_sidecar, connect):
    return connect(store_sidecar)
