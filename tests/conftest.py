"""Fixtures shared by the suites: free ports and real function processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "template"


@pytest.fixture(autouse=True)
def _long_only_when_asked(request: pytest.FixtureRequest) -> None:
    """Skip ``long`` tests unless ``-m`` selects them (.ci/run does)."""
    asked = "long" in (request.config.option.markexpr or "")
    if request.node.get_closest_marker("long") and not asked:
        pytest.skip("the long suite runs with: pytest -m long")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def send_raw(
    port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = 10
) -> bytes:
    """Send ``data`` exactly as written; every byte answered until the
    server closes or falls silent for ``timeout`` seconds."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float = 20
) -> None:
    """Poll ``url`` until it answers 200; fail with the process's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"process exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{url} not healthy after {timeout}s")


@dataclass
class FunctionProcess:
    """A template runtime serving one handler on a free loopback port."""

    folder: Path
    secrets: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_secret(self, name: str, value: str | bytes) -> Path:
        path = self.secrets / name
        path.write_bytes(value.encode() if isinstance(value, str) else value)
        return path

    def start(self, **env: str) -> FunctionProcess:
        self.env = {
            **os.environ,
            "port": str(self.port),
            "listen_address": "127.0.0.1",
            "secret_mount_path": str(self.secrets),
            "lock_file": str(self.folder / ".lock"),
            "healthcheck_interval": "0",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "index.py"],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(f"{self.url}/_/health", self.process)
        return self

    def stop(self) -> str:
        """SIGTERM, wait, and return everything the process printed."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output.decode()


def lay_out_function(
    tmp: Path, handler_source: str, template: str = "python3-http-auth"
) -> Path:
    """A build folder as faas-cli lays it out: template + handler."""
    folder = tmp / "build"
    shutil.copytree(TEMPLATES / template, folder)
    (folder / "function" / "handler.py").write_text(handler_source)
    (folder / "function" / "__init__.py").touch()
    return folder


@pytest.fixture(autouse=True)
def secrets_recheck_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process verifiers see a rewritten secret file at once.

    The runtime asks whether a secret file changed at most once a second;
    tests that rotate keys in-process would otherwise wait. Runtime
    processes keep the real interval (tests/test_auth_middleware.py).
    """
    from faas_runtime import _secrets

    monkeypatch.setattr(_secrets, "RECHECK", 0.0)


@pytest.fixture
def function_process(tmp_path: Path) -> Iterator[object]:
    """Make function processes from handler source; stop them afterwards."""
    started: list[FunctionProcess] = []

    def make(
        handler_source: str, template: str = "python3-http-auth"
    ) -> FunctionProcess:
        base = tmp_path / f"fn{len(started)}"
        base.mkdir()
        secrets = base / "secrets"
        secrets.mkdir()
        folder = lay_out_function(base, handler_source, template)
        fn = FunctionProcess(folder=folder, secrets=secrets, port=free_port())
        started.append(fn)
        return fn

    yield make
    for fn in started:
        fn.stop()
