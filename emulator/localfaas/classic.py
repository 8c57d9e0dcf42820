"""The classic OpenFaaS watchdog, emulated: one process per request.

Functions deployed as a bare command (``fprocess``, no template) ran behind
OpenFaaS's classic watchdog, which forks the command for every request: the
body goes to its stdin, its stdout is the response, and the request's
headers arrive as ``Http_*`` environment variables (tooling.md §2.6, §4.4).
This module serves the same contract on waitress::

    fprocess="wc -c" port=8081 python -m localfaas.classic

Settings are the classic watchdog's own variables, read the way it reads
them: ``fprocess`` (split on single spaces, no shell), ``port``,
``read_timeout``, ``write_timeout``, ``exec_timeout`` (0 = none, its
default), ``healthcheck_interval``, ``content_type``, ``combine_output``
(stderr into the response, default true), ``cgi_headers``, ``write_debug``,
``max_inflight``, ``suppress_lock``; plus ``listen_address`` and
``lock_file``, which the emulator sets so several functions can share a
host. Durations are whole seconds or Go durations (``30s``, ``1m5s``); a
value that does not parse falls back to the default, and a boolean is true
only when it is exactly ``true``, as in the original.

Differences, each for a reason: the command runs in its own process group,
so a timeout kills its children too; waitress de-chunks request bodies
before the app sees them, so only the request's ``chunked`` flag (taken from
waitress's parser) says a body came chunked; repeated headers arrive joined
with ", " (WSGI joins them), where the original passes the first value.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.task import WSGITask

__all__ = ["ClassicSettings", "ClassicWatchdog", "main", "serve"]

log = logging.getLogger("localfaas.classic")

Environ = dict[str, Any]
StartResponse = Any

_HEALTH = "/_/health"
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_CHUNKED = "localfaas.chunked"
_TEXT = "text/plain; charset=utf-8"

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}

# Go's http.DetectContentType treats these bytes as binary.
_BINARY = set(range(0x00, 0x09)) | {0x0B} | set(range(0x0E, 0x1B))
_BINARY |= set(range(0x1C, 0x20))
_HTML = re.compile(
    rb"\s*<(!DOCTYPE HTML|HTML|HEAD|SCRIPT|IFRAME|H1|DIV|FONT|TABLE|A|STYLE"
    rb"|TITLE|B|BODY|BR|P|!--)[ >]",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ClassicSettings:
    """The classic watchdog's settings; each field is one variable."""

    fprocess: str = ""
    port: int = 8080
    listen_address: str = "0.0.0.0"
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    exec_timeout: float = 0.0
    healthcheck_interval: float | None = None
    content_type: str = ""
    combine_output: bool = True
    cgi_headers: bool = True
    write_debug: bool = False
    max_inflight: int = 0
    # The classic watchdog's fixed path, which image health checks test.
    lock_file: str = "/tmp/.lock"  # noqa: S108
    suppress_lock: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClassicSettings:
        """Read the settings as the classic watchdog reads its environment."""
        write_timeout = _duration(env.get("write_timeout", ""), 30.0)
        return cls(
            fprocess=env.get("fprocess", ""),
            port=_count(env.get("port", ""), 8080),
            listen_address=env.get("listen_address") or "0.0.0.0",
            read_timeout=_duration(env.get("read_timeout", ""), 30.0),
            write_timeout=write_timeout,
            exec_timeout=_duration(env.get("exec_timeout", ""), 0.0),
            healthcheck_interval=_duration(
                env.get("healthcheck_interval", ""), write_timeout
            ),
            content_type=env.get("content_type", ""),
            combine_output=_flag(env.get("combine_output", ""), True),
            cgi_headers=_flag(env.get("cgi_headers", ""), True),
            write_debug=_flag(env.get("write_debug", ""), False),
            max_inflight=_count(env.get("max_inflight", ""), 0),
            lock_file=env.get("lock_file") or ClassicSettings.lock_file,
            suppress_lock=env.get("suppress_lock") == "true",
        )

    @property
    def drain_wait(self) -> float:
        """How long to keep serving after SIGTERM before draining."""
        if self.healthcheck_interval is None:
            return self.write_timeout
        return self.healthcheck_interval


class ClassicWatchdog:
    """WSGI app: fork ``fprocess`` per request, answer with its output."""

    def __init__(
        self,
        settings: ClassicSettings,
        base_env: Mapping[str, str],
    ) -> None:
        self.settings = settings
        self.base_env = dict(base_env)
        self.accepting = False
        self._inflight = 0
        self._idle = threading.Condition()

    @property
    def inflight(self) -> int:
        """Requests being answered now."""
        return self._inflight

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        method = environ["REQUEST_METHOD"]
        if environ.get("PATH_INFO") == _HEALTH:
            return self._health(method, start_response)
        if method not in _METHODS:
            return _respond(start_response, 405, b"")

        if not self._enter():
            # The concurrency limiter's answer, as of-watchdog gives it.
            text = (
                "Concurrent request limit exceeded. Max concurrent requests: "
                f"{self.settings.max_inflight}"
            )
            return _respond(start_response, 429, text.encode(), _TEXT)
        try:
            return self._fork(environ, start_response)
        finally:
            self._leave()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no request is in flight; False if time ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def _health(self, method: str, start_response: StartResponse) -> Any:
        if method != "GET":
            return _respond(start_response, 405, b"")
        lock = Path(self.settings.lock_file)
        if not self.accepting or not lock.exists():
            return _respond(start_response, 503, b"")
        return _respond(start_response, 200, b"OK", _TEXT)

    def _enter(self) -> bool:
        with self._idle:
            limit = self.settings.max_inflight
            if limit and self._inflight >= limit:
                return False
            self._inflight += 1
            return True

    def _leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def _fork(self, environ: Environ, start_response: StartResponse) -> Any:
        started = time.perf_counter()
        log.info("Forking fprocess.")
        body = _read_body(environ)
        argv = self.settings.fprocess.split(" ")
        env = self.base_env
        if self.settings.cgi_headers:
            env = {**self.base_env, **request_env(environ)}

        try:
            output, failure = self._execute(argv, env, body)
        except subprocess.TimeoutExpired:
            log.info("Killing process: %s", self.settings.fprocess)
            return _respond(start_response, 408, b"Killed process.\n", _TEXT)
        if failure is not None:
            text = failure.encode() + b"\n" + output
            return _respond(start_response, 500, text, _sniff(text))

        duration = time.perf_counter() - started
        kind = self.settings.content_type or environ.get("CONTENT_TYPE", "")
        headers = [("X-Duration-Seconds", f"{duration:f}")]
        response = _respond(
            start_response, 200, output, kind or _sniff(output), headers
        )
        if self.settings.write_debug:
            sys.stdout.buffer.write(output)
            sys.stdout.flush()
            log.info("Duration: %fs", duration)
        else:
            log.info("Wrote %d Bytes - Duration: %fs", len(output), duration)
        return response

    def _execute(
        self, argv: list[str], env: dict[str, str], body: bytes
    ) -> tuple[bytes, str | None]:
        """Run ``argv``; its output, and the error text if it failed."""
        combine = self.settings.combine_output
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if combine else subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return b"", _exec_error(argv[0], exc)

        timeout = self.settings.exec_timeout or None
        try:
            output, errors = process.communicate(body, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise
        if errors:
            log.info("stderr: %s", errors.decode(errors="replace"))
        if process.returncode != 0:
            return output, _exit_error(process.returncode)
        return output, None


def request_env(environ: Environ) -> dict[str, str]:
    """The ``Http_*`` variables the classic watchdog sets for a request."""
    env: dict[str, str] = {}
    for key, value in environ.items():
        name = _header_name(key)
        if name is not None and isinstance(value, str):
            env[f"Http_{name}"] = _text(value)

    length = _content_length(environ)
    env["Http_Method"] = environ["REQUEST_METHOD"]
    # Http_ContentLength is the old spelling, still set for old functions.
    env["Http_ContentLength"] = str(length)
    env["Http_Content_Length"] = str(length)
    if environ.get(_CHUNKED):
        env["Http_Transfer_Encoding"] = "chunked"
    for name, value in (
        ("Http_Query", environ.get("QUERY_STRING", "")),
        ("Http_Path", _text(environ.get("PATH_INFO", ""))),
        ("Http_Host", environ.get("HTTP_HOST", "")),
    ):
        if value:
            env[name] = value
    return env


def serve(settings: ClassicSettings, env: Mapping[str, str]) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    app = ClassicWatchdog(settings, env)
    server = waitress.create_server(
        app,
        host=settings.listen_address,
        port=settings.port,
        threads=max(16, settings.max_inflight),
        channel_timeout=max(settings.read_timeout, settings.write_timeout),
        ident="",
        clear_untrusted_proxy_headers=False,
    )
    server.channel_class = _Channel
    stopper = _Stopper(app, settings)
    stopper.install()

    log.info(
        "Timeouts: read: %gs write: %gs hard: %gs health: %gs.",
        settings.read_timeout,
        settings.write_timeout,
        settings.exec_timeout,
        settings.drain_wait,
    )
    log.info("Listening on port: %d", settings.port)
    stopper.write_lock()
    try:
        server.run()
    finally:
        stopper.remove_lock()


def main() -> None:
    """Entry point of ``python -m localfaas.classic``."""
    # Go's log package: date and time, then the message, on stderr.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%Y/%m/%d %H:%M:%S",
        stream=sys.stderr,
    )
    settings = ClassicSettings.from_env(os.environ)
    if not settings.fprocess:
        log.error("Provide a valid process via fprocess environmental variable.")
        sys.exit(1)
    serve(settings, os.environ)


class _Task(WSGITask):  # type: ignore[misc]
    """Waitress's task, telling the app whether the body came chunked."""

    def get_environment(self) -> Environ:
        environ: Environ = super().get_environment()
        environ[_CHUNKED] = bool(getattr(self.request, "chunked", False))
        return environ


class _Channel(HTTPChannel):  # type: ignore[misc]
    task_class = _Task


class _Stopper:
    """SIGTERM as the classic watchdog takes it: unhealthy, wait, drain."""

    def __init__(self, app: ClassicWatchdog, settings: ClassicSettings) -> None:
        self.app = app
        self.settings = settings
        self.lock = Path(settings.lock_file)
        self.stopping = False
        self.drained = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def write_lock(self) -> None:
        if self.settings.suppress_lock:
            log.info(
                'Warning: "suppress_lock" is enabled. No automated '
                "health-checks will be in place for your function."
            )
            self.app.accepting = True
            return
        log.info("Writing lock-file to: %s", self.lock)
        self.lock.touch()
        self.app.accepting = True

    def remove_lock(self) -> None:
        if not self.settings.suppress_lock:
            self.lock.unlink(missing_ok=True)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.drained:
            # Sent by _drain: waitress's run() turns the KeyboardInterrupt
            # into a clean close.
            raise KeyboardInterrupt
        if self.stopping:
            log.info("second signal: exiting without draining")
            os._exit(1)
        self.stopping = True
        log.info("SIGTERM: no new connections in %gs", self.settings.drain_wait)
        self.app.accepting = False
        log.info("Removing lock-file : %s", self.lock)
        self.remove_lock()
        threading.Thread(target=self._drain, name="drain", daemon=True).start()

    def _drain(self) -> None:
        time.sleep(self.settings.drain_wait)
        waiting = self.app.inflight
        log.info("No new connections allowed, draining: %d requests", waiting)
        self.app.wait_idle(self.settings.write_timeout)
        log.info("Exiting. Active connections: %d", self.app.inflight)
        self.drained = True
        # A real signal to the main thread, not _thread.interrupt_main():
        # only a signal cuts short waitress's select(), which otherwise
        # sleeps up to a second before it notices.
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)


def _respond(
    start_response: StartResponse,
    status: int,
    body: bytes,
    content_type: str = "",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    sent = [("Content-Length", str(len(body))), *headers]
    if content_type:
        sent.append(("Content-Type", content_type))
    start_response(f"{status} {_REASONS[status]}", sent)
    return [body]


_REASONS = {
    200: "OK",
    405: "Method Not Allowed",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _read_body(environ: Environ) -> bytes:
    length = environ.get("CONTENT_LENGTH") or "0"
    data: bytes = environ["wsgi.input"].read(int(length))
    return data


def _header_name(key: str) -> str | None:
    # Go canonicalises header names (X-Hub-Signature); the watchdog then
    # turns dashes into underscores. Host is not a header in Go's request.
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        raw = key
    elif key.startswith("HTTP_") and key != "HTTP_HOST":
        raw = key[5:]
    else:
        return None
    return "_".join(part.capitalize() for part in raw.split("_"))


def _content_length(environ: Environ) -> int:
    # Go's Request.ContentLength: -1 when the body came chunked (unknown).
    if environ.get(_CHUNKED):
        return -1
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return -1


def _text(value: str) -> str:
    # WSGI strings carry the raw bytes as latin-1; the child gets them back
    # as the bytes that came in.
    return value.encode("latin-1").decode("utf-8", "surrogateescape")


def _sniff(body: bytes) -> str:
    # What Go's http.DetectContentType would say for the usual outputs:
    # nothing for no body, HTML, XML, else text unless a byte is binary.
    if not body:
        return ""
    head = body[:512]
    if _HTML.match(head):
        return "text/html; charset=utf-8"
    if head.lstrip().startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    if any(byte in _BINARY for byte in head):
        return "application/octet-stream"
    return _TEXT


def _exit_error(returncode: int) -> str:
    # Go's ExitError text: "exit status 1", or "signal: killed".
    if returncode >= 0:
        return f"exit status {returncode}"
    name = signal.strsignal(-returncode) or f"signal {-returncode}"
    return f"signal: {name.lower()}"


def _exec_error(command: str, error: OSError) -> str:
    if isinstance(error, FileNotFoundError) and "/" not in command:
        return f'exec: "{command}": executable file not found in $PATH'
    reason = (error.strerror or str(error)).lower()
    return f"fork/exec {command}: {reason}"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.communicate()


def _duration(text: str, default: float) -> float:
    text = text.strip()
    if not text:
        return default
    if text.isdigit():
        return float(text)
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return default
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _count(text: str, default: int) -> int:
    try:
        value = int(text)
    except ValueError:
        return default
    return value if value >= 0 else default


def _flag(text: str, default: bool) -> bool:
    return text == "true" if text else default


if __name__ == "__main__":
    main()
