"""The classic watchdog emulation, as a real process on a real port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from localfaas.classic import ClassicSettings, request_env


@dataclass
class Classic:
    """One ``python -m localfaas.classic`` process."""

    port: int
    lock: Path
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """SIGTERM it, wait, and return what it logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, errors = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        return errors


Start = Callable[..., Classic]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(classic: Classic, timeout: float = 15.0) -> None:
    """Poll ``/_/health`` until 200; fail with the process's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if classic.process.poll() is not None:
            pytest.fail(f"classic watchdog exited:\n{classic.stop()}")
        try:
            if httpx.get(f"{classic.url}/_/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    pytest.fail("classic watchdog never became healthy")


@pytest.fixture
def classic(tmp_path: Path) -> Iterator[Start]:
    """Start classic watchdogs for an fprocess and settings; stop them after."""
    started: list[Classic] = []

    def start(fprocess: str, **settings: str) -> Classic:
        port = free_port()
        lock = tmp_path / f"lock-{port}"
        env = {
            **os.environ,
            "fprocess": fprocess,
            "port": str(port),
            "listen_address": "127.0.0.1",
            "lock_file": str(lock),
            "healthcheck_interval": "0",
            **settings,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "localfaas.classic"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        instance = Classic(port, lock, process)
        started.append(instance)
        wait_healthy(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def env_lines(response: httpx.Response) -> dict[str, str]:
    """The ``env`` output of a response as a mapping."""
    pairs = (line.split("=", 1) for line in response.text.splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def test_cat_echoes_the_body_with_its_content_type(classic: Start) -> None:
    """stdin is the body, stdout the response; Content-Type is the request's."""
    fn = classic("cat")
    response = httpx.post(
        fn.url, content=b'{"a": 1}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.content == b'{"a": 1}'
    assert response.headers["content-type"] == "application/json"
    assert float(response.headers["x-duration-seconds"]) >= 0


def test_wc_counts_the_bytes_of_the_body(classic: Start) -> None:
    """A binary body reaches the process byte for byte."""
    fn = classic("wc -c")
    body = bytes(range(256)) * 40
    response = httpx.put(fn.url, content=body)
    assert response.text.strip() == str(len(body))


def test_headers_and_request_reach_the_process_as_env(classic: Start) -> None:
    """Http_<Header>, method, lengths, query, path and host, plus the env."""
    fn = classic("env", MY_SETTING="on")
    response = httpx.post(
        f"{fn.url}/a/b?x=1&y=2",
        content=b"hello",
        headers={"X-Hub-Signature": "sha1=abc", "Content-Type": "text/plain"},
    )
    env = env_lines(response)
    assert env["Http_X_Hub_Signature"] == "sha1=abc"
    assert env["Http_Content_Type"] == "text/plain"
    assert env["Http_Method"] == "POST"
    assert env["Http_ContentLength"] == env["Http_Content_Length"] == "5"
    assert env["Http_Query"] == "x=1&y=2"
    assert env["Http_Path"] == "/a/b"
    assert env["Http_Host"] == f"127.0.0.1:{fn.port}"
    assert env["MY_SETTING"] == "on"
    assert "Http_Transfer_Encoding" not in env


def test_no_query_means_no_http_query(classic: Start) -> None:
    """Http_Query is only set for a non-empty query, as in the original."""
    fn = classic("env")
    env = env_lines(httpx.get(f"{fn.url}/"))
    assert "Http_Query" not in env
    assert env["Http_Method"] == "GET"
    assert env["Http_ContentLength"] == "0"


def test_a_chunked_body_has_an_unknown_length(classic: Start) -> None:
    """A chunked request: Http_Transfer_Encoding=chunked and length -1."""
    fn = classic("env")

    def chunks() -> Iterator[bytes]:
        yield b"abc"
        yield b"def"

    env = env_lines(httpx.post(fn.url, content=chunks()))
    assert env["Http_Transfer_Encoding"] == "chunked"
    assert env["Http_ContentLength"] == env["Http_Content_Length"] == "-1"


def test_exec_timeout_kills_the_process_with_408(classic: Start) -> None:
    """Past exec_timeout: 408 and "Killed process."; the watchdog lives on."""
    fn = classic("sleep 5", exec_timeout="500ms")
    response = httpx.post(fn.url, timeout=10)
    assert response.status_code == 408
    assert response.text == "Killed process.\n"
    assert httpx.get(f"{fn.url}/_/health").status_code == 200


def test_a_failing_process_answers_500_with_its_output(classic: Start) -> None:
    """Non-zero exit: 500, Go's exit text, a newline, then the output."""
    fn = classic("ls /nonexistent-localfaas-dir")
    response = httpx.post(fn.url)
    assert response.status_code == 500
    assert response.text.startswith("exit status 2\n")
    assert "nonexistent-localfaas-dir" in response.text


def test_separate_stderr_is_logged_not_returned(classic: Start) -> None:
    """combine_output=false keeps stderr out of the response and logs it."""
    fn = classic("ls / /nonexistent-localfaas-dir", combine_output="false")
    response = httpx.post(fn.url)
    log = fn.stop()
    assert response.status_code == 500
    assert "nonexistent-localfaas-dir" not in response.text
    assert "stderr: " in log
    assert "nonexistent-localfaas-dir" in log


def test_a_missing_command_is_named(classic: Start) -> None:
    """A command not on PATH answers 500 with Go's exec error."""
    fn = classic("no-such-command-localfaas")
    response = httpx.post(fn.url)
    assert response.status_code == 500
    assert response.text == (
        'exec: "no-such-command-localfaas": executable file not found in $PATH\n'
    )


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("GET", 200),
        ("POST", 200),
        ("PUT", 200),
        ("PATCH", 200),
        ("DELETE", 200),
        ("HEAD", 405),
        ("OPTIONS", 405),
    ],
)
def test_only_the_classic_methods_are_served(
    classic: Start, method: str, status: int
) -> None:
    """GET, POST, PUT, PATCH and DELETE fork the process; others get 405."""
    fn = classic("cat")
    assert httpx.request(method, fn.url).status_code == status


def test_the_content_type_setting_wins(classic: Start) -> None:
    """content_type overrides the request's Content-Type."""
    fn = classic("cat", content_type="text/csv")
    response = httpx.post(
        fn.url, content=b"a,b", headers={"Content-Type": "application/json"}
    )
    assert response.headers["content-type"] == "text/csv"


def test_max_inflight_answers_429(classic: Start) -> None:
    """Past max_inflight a request is refused at once with 429."""
    fn = classic("sleep 1", max_inflight="1")
    options = {"timeout": 10}
    slow = threading.Thread(target=httpx.post, args=(fn.url,), kwargs=options)
    slow.start()
    time.sleep(0.3)
    busy = httpx.post(fn.url)
    slow.join()
    assert busy.status_code == 429
    limit = "Concurrent request limit exceeded. Max concurrent requests: 1"
    assert busy.text == limit


def test_health_lock_file_and_the_log_lines(classic: Start) -> None:
    """Health and lock file while serving; the certifier's log lines per call."""
    fn = classic("cat")
    assert fn.lock.exists()
    health = httpx.get(f"{fn.url}/_/health")
    assert (health.status_code, health.text) == (200, "OK")
    assert httpx.post(f"{fn.url}/_/health").status_code == 405

    httpx.post(fn.url, content=b"hello")
    log = fn.stop()

    assert "Forking fprocess." in log
    assert re.search(r"Wrote 5 Bytes - Duration: \d+\.\d{6}s", log)
    assert fn.process.returncode == 0
    assert not fn.lock.exists()


def test_sigterm_turns_health_off_and_drains(classic: Start) -> None:
    """After SIGTERM: health 503 during healthcheck_interval; calls finish."""
    fn = classic("sleep 1", healthcheck_interval="1")
    results: list[httpx.Response] = []
    call = threading.Thread(
        target=lambda: results.append(httpx.post(fn.url, timeout=10))
    )
    call.start()
    time.sleep(0.2)

    fn.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert httpx.get(f"{fn.url}/_/health").status_code == 503
    call.join()

    assert results[0].status_code == 200
    assert fn.process.wait(timeout=10) == 0


def test_settings_fall_back_as_the_original_does() -> None:
    """Unparseable values keep defaults (Go wants a unit: "0.5" is not one);
    booleans are only exactly "true"."""
    settings = ClassicSettings.from_env(
        {
            "fprocess": "cat",
            "exec_timeout": "0.5",
            "write_timeout": "1m5s",
            "combine_output": "1",
            "port": "-3",
        }
    )
    assert settings.exec_timeout == 0.0
    assert settings.write_timeout == 65.0
    assert settings.drain_wait == 65.0
    assert settings.combine_output is False
    assert settings.port == 8080


def test_header_names_are_go_canonical() -> None:
    """x-github-event becomes Http_X_Github_Event; Host is not a header."""
    env = request_env(
        {
            "REQUEST_METHOD": "GET",
            "HTTP_X_GITHUB_EVENT": "push",
            "HTTP_HOST": "example.com",
            "PATH_INFO": "/caf\xc3\xa9",
        }
    )
    assert env["Http_X_Github_Event"] == "push"
    assert env["Http_Host"] == "example.com"
    assert env["Http_Path"] == "/café"
    assert not [key for key in env if key.startswith("Http_Host_")]
    assert set(env) == {
        "Http_X_Github_Event",
        "Http_Method",
        "Http_ContentLength",
        "Http_Content_Length",
        "Http_Path",
        "Http_Host",
    }
