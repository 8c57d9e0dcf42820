"""The emulator under faults: an auth plugin that allows, denies or is gone,
and an emulator killed with async calls still queued."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from emulator_support import Emulator, make_project, start


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The reference basic-auth plugin as its own process."""
    folder = tmp_path / "plugin-secrets"
    folder.mkdir()
    (folder / "basic-auth-user").write_text("ops\n")
    (folder / "basic-auth-password").write_text("pl4gin\n")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localfaas",
            "auth-plugin",
            "basic",
            "--port",
            str(port),
            "--secret-mount-path",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}/validate", process
    process.kill()
    process.wait()


def test_auth_plugin_contract_end_to_end(
    tmp_path: Path, cache: Path, plugin: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """200 from the plugin allows; its 401 reaches the client; down is 500."""
    url, process = plugin
    emulator = start(make_project(tmp_path / "p"), cache, "--auth-proxy-url", url)
    try:
        allowed = httpx.get(f"{emulator.url}/system/functions", auth=("ops", "pl4gin"))
        assert allowed.status_code == 200
        assert {f["name"] for f in allowed.json()} >= {"echo", "signed"}

        denied = httpx.get(f"{emulator.url}/system/functions", auth=("ops", "no"))
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == 'Basic realm="Restricted"'
        assert denied.content == b"invalid credentials"

        process.kill()
        process.wait()
        down = httpx.get(f"{emulator.url}/system/functions", auth=("ops", "pl4gin"))
        assert down.status_code == 500
        assert down.text.endswith("\n")
        # Functions do not depend on the plugin.
        assert httpx.get(f"{emulator.url}/function/echo").status_code == 200
    finally:
        assert emulator.stop() == 130


class _Callbacks(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.server.calls.append((self.headers["X-Call-Id"], body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_killed_emulator_delivers_every_accepted_call_after_restart(
    tmp_path: Path, cache: Path
) -> None:
    """SIGKILL with calls queued: a restart delivers each one, none twice."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    server.calls = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{server.server_address[1]}/cb"

    project = make_project(tmp_path / "p")
    handler = project / "echo" / "handler.py"
    handler.write_text(
        "import time\n\n"
        "def handle(event, context):\n"
        "    time.sleep(0.3)\n"
        "    return event.body.decode()\n"
    )
    first = start(project, cache)
    accepted = []
    for number in range(12):
        response = httpx.post(
            f"{first.url}/async-function/echo",
            content=f"call-{number}".encode(),
            headers={"X-Callback-Url": callback},
        )
        assert response.status_code == 202
        accepted.append(response.headers["x-call-id"])
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    before = len(server.calls)  # type: ignore[attr-defined]
    assert before < len(accepted), "the kill came too late to test anything"

    orphans = _processes_under(project)
    assert orphans, "SIGKILL leaves the function processes running"
    second = start(project, cache)
    try:
        # The new emulator reaped what the killed one left behind.
        assert not [pid for pid in orphans if _alive(pid)]
        deadline = time.monotonic() + 60
        while len({c for c, _ in server.calls}) < len(accepted):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, server.calls  # type: ignore[attr-defined]
            time.sleep(0.2)
        time.sleep(1)
        ids = [call_id for call_id, _ in server.calls]  # type: ignore[attr-defined]
        assert sorted(set(ids)) == sorted(accepted)
        bodies = {body for _, body in server.calls}  # type: ignore[attr-defined]
        assert bodies == {f"call-{n}".encode() for n in range(12)}
        duplicates = len(ids) - len(set(ids))
        # A call cut off mid-invocation is invoked again (as NATS redelivers),
        # so at most the in-flight ones may call back twice.
        assert duplicates <= 4
    finally:
        second.stop()
        server.shutdown()


def _processes_under(project: Path) -> list[int]:
    """Processes whose working folder is in the project's state folder."""
    marker = str(project / ".localfaas")
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and _cwd(p).startswith(marker)
    ]


def test_ctrl_c_leaves_no_function_process(tmp_path: Path, cache: Path) -> None:
    """SIGINT stops the gateway and every function process it started."""
    project = make_project(tmp_path / "p")
    emulator: Emulator = start(project, cache)
    assert httpx.get(f"{emulator.url}/function/echo").status_code == 200
    assert emulator.stop(signal.SIGINT) == 130
    assert _processes_under(project) == []
    assert "every function process has exited" in emulator.output()


def test_a_busy_port_fails_before_any_function_starts(
    tmp_path: Path, cache: Path
) -> None:
    """The gateway's port is taken first, so no function can take it, and a
    port in use costs the user no dependency install."""
    project = make_project(tmp_path / "p")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "localfaas", "up", "--port", str(port)],
            cwd=project,
            env={**os.environ, "LOCALFAAS_CACHE_DIR": str(cache)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "starting" not in result.stderr
    assert _processes_under(project) == []


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for an init that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cwd(pid: str) -> str:
    try:
        return str(Path(f"/proc/{pid}/cwd").resolve())
    except OSError:
        return ""
