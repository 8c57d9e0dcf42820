"""The runtime as OpenFaaS runs it: a real process on a real port."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from conftest import lay_out_function

SLOW = """
import time

def handle(event, context):
    time.sleep(float(event.query.get("sleep", "0")))
    return {"statusCode": 200, "body": "done"}
"""


def test_health_lock_file_and_duration_header(function_process) -> None:
    """Ready means /_/health 200 and the lock file; answers carry a duration."""
    fn = function_process(SLOW).start(auth_scheme="none")
    assert (fn.folder / ".lock").exists()
    assert httpx.get(f"{fn.url}/_/health").text == "OK"
    assert httpx.post(f"{fn.url}/_/health").status_code == 405

    response = httpx.post(f"{fn.url}/anything?sleep=0")
    assert response.text == "done"
    assert float(response.headers["x-duration-seconds"]) >= 0


def test_one_log_line_per_request_with_the_call_id(function_process) -> None:
    """The request log names method, path, status and X-Call-Id."""
    fn = function_process(SLOW).start(auth_scheme="none")
    httpx.post(f"{fn.url}/p", headers={"X-Call-Id": "call-123"})
    output = fn.stop()
    lines = [line for line in output.splitlines() if "call_id=call-123" in line]
    assert len(lines) == 1
    assert "method=POST path=/p status=200" in lines[0]


def test_max_inflight_answers_429_like_of_watchdog(function_process) -> None:
    """Past max_inflight, the exact of-watchdog 429 answer."""
    fn = function_process(SLOW).start(auth_scheme="none", max_inflight="1")
    slow = threading.Thread(target=httpx.get, args=(f"{fn.url}/?sleep=1.5",))
    slow.start()
    time.sleep(0.5)

    busy = httpx.get(f"{fn.url}/")
    ready = httpx.get(f"{fn.url}/_/ready")
    slow.join()

    assert busy.status_code == 429
    assert busy.text == (
        "Concurrent request limit exceeded. Max concurrent requests: 1"
    )
    assert busy.headers["x-openfaas-internal"] == "faas-middleware"
    assert ready.status_code == 429
    assert httpx.get(f"{fn.url}/_/ready").status_code == 200


def test_exec_timeout_answers_504(function_process) -> None:
    """A handler slower than exec_timeout gets 504 from the watchdog."""
    fn = function_process(SLOW).start(auth_scheme="none", exec_timeout="0.5s")
    response = httpx.get(f"{fn.url}/?sleep=3", timeout=10)
    assert response.status_code == 504
    assert response.headers["x-openfaas-internal"] == "of-watchdog"
    assert 0.4 < float(response.headers["x-duration-seconds"]) < 2.5
    assert httpx.get(f"{fn.url}/?sleep=0").text == "done"


def test_sigterm_drains_in_flight_requests(function_process) -> None:
    """SIGTERM: health turns 503, the lock goes, running requests finish."""
    fn = function_process(SLOW).start(
        auth_scheme="none", healthcheck_interval="1s", write_timeout="10s"
    )
    results: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: results.append(httpx.get(f"{fn.url}/?sleep=2", timeout=10))
    )
    slow.start()
    time.sleep(0.3)

    fn.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert httpx.get(f"{fn.url}/_/health").status_code == 503
    assert not (fn.folder / ".lock").exists()
    # Still serving during healthcheck_interval, while endpoints update.
    assert httpx.get(f"{fn.url}/?sleep=0").text == "done"

    slow.join()
    assert results[0].status_code == 200
    assert results[0].text == "done"
    assert fn.process.wait(timeout=15) == 0


def start_failing(
    tmp_path: Path, handler: str, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """Run a runtime expected to stop at start-up; return how it ended."""
    folder = lay_out_function(tmp_path, handler)
    return subprocess.run(
        [sys.executable, "index.py"],
        cwd=folder,
        env={"auth_scheme": "none", "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        timeout=30,
    )


def test_a_handler_that_cannot_be_imported_exits_non_zero(tmp_path: Path) -> None:
    """A syntax error is shown with its traceback, and the process fails."""
    done = start_failing(tmp_path, "def handle(event, context)\n", {"port": "0"})
    assert done.returncode == 1
    assert b"SyntaxError" in done.stderr
    assert b"cannot import the handler" in done.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    """An unparseable timeout stops start-up with the variable and value."""
    handler = "def handle(e, c):\n    return 'x'\n"
    done = start_failing(tmp_path, handler, {"exec_timeout": "soon"})
    assert done.returncode == 2
    assert b"exec_timeout='soon'" in done.stderr
