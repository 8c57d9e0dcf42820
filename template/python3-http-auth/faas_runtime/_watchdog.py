"""The watchdog's duties, as WSGI middleware around the function.

OpenFaaS puts its Go watchdog in front of every function; here waitress
serves the function itself, so this layer answers what the watchdog would:
``/_/health`` and ``/_/ready``, ``max_inflight`` (429), ``exec_timeout``
(504), ``X-Duration-Seconds`` on every answer, and one log line per request
with its ``X-Call-Id``. It also knows when the function is draining after
SIGTERM, so the health check turns 503 and load balancers stop sending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ._wsgi import Environ, StartResponse, WSGIApp, simple_response

request_log = logging.getLogger("faas_runtime.request")

_HEALTH = "/_/health"
_READY = "/_/ready"


class Watchdog:
    """WSGI middleware: health, concurrency, timeouts, duration, logs."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        max_inflight: int = 0,
        exec_timeout: float = 0.0,
        workers: int = 8,
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.exec_timeout = exec_timeout
        self.healthy = False
        self._inflight = 0
        self._idle = threading.Condition()
        # Handlers run on their own pool when a timeout is set: a Python
        # thread cannot be interrupted, so the request thread waits for the
        # handler with a deadline and answers 504 itself when it passes.
        self._pool = (
            ThreadPoolExecutor(workers * 2, thread_name_prefix="handler")
            if exec_timeout > 0
            else None
        )

    @property
    def inflight(self) -> int:
        return self._inflight

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO", "")
        if path in (_HEALTH, _READY):
            return self._probe(path, environ, start_response)

        started = time.perf_counter()
        if not self._enter():
            return self._too_busy(environ, start_response, started)

        try:
            status, headers, body = self._run(environ)
        except BaseException:
            self._leave()
            raise

        duration = time.perf_counter() - started
        headers.append(("X-Duration-Seconds", f"{duration:.6f}"))
        start_response(status, headers)
        return _Finished(body, self, environ, status, started)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no request is in flight; False if time ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def _enter(self) -> bool:
        with self._idle:
            if self.max_inflight and self._inflight >= self.max_inflight:
                return False
            self._inflight += 1
            return True

    def _leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def _run(self, environ: Environ) -> tuple[str, list[tuple[str, str]], Any]:
        if self._pool is None:
            return _call(self.app, environ)

        future: Future[tuple[str, list[tuple[str, str]], Any]]
        future = self._pool.submit(_call, self.app, environ)
        try:
            return future.result(timeout=self.exec_timeout)
        except FutureTimeout:
            future.add_done_callback(_close_abandoned)
            return (
                "504 Gateway Timeout",
                [("Content-Length", "0"), ("X-OpenFaaS-Internal", "of-watchdog")],
                [],
            )

    def _probe(
        self, path: str, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "GET":
            return simple_response(start_response, 405, b"")
        if not self.healthy:
            return simple_response(start_response, 503, b"")
        busy = self.max_inflight and self._inflight >= self.max_inflight
        if path == _READY and busy:
            return simple_response(start_response, 429, b"")
        return simple_response(start_response, 200, b"OK")

    def _too_busy(
        self, environ: Environ, start_response: StartResponse, started: float
    ) -> Iterable[bytes]:
        # of-watchdog's exact answer, which OpenFaaS clients and autoscalers
        # recognise by the internal header.
        body = (
            "Concurrent request limit exceeded. Max concurrent requests: "
            f"{self.max_inflight}"
        ).encode()
        headers = [
            ("Content-Type", "text/plain"),
            ("X-OpenFaaS-Internal", "faas-middleware"),
            ("X-Duration-Seconds", f"{time.perf_counter() - started:.6f}"),
        ]
        _log(environ, "429", len(body), started)
        return simple_response(start_response, 429, body, headers)


def _call(app: WSGIApp, environ: Environ) -> tuple[str, list[tuple[str, str]], Any]:
    """Run ``app`` and return its status, headers and body iterable."""
    captured: list[Any] = []
    written: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        captured[:] = [status, list(headers)]
        return written.append

    body = app(environ, start_response)
    if not captured:
        # A generator app calls start_response on its first chunk.
        iterator = iter(body)
        first = next(iterator, b"")
        body = _Chained(first, iterator, body)
    if written:
        body = _Chained(b"".join(written), iter(body), body)
    return captured[0], captured[1], body


def _close_abandoned(future: Future[tuple[str, list[tuple[str, str]], Any]]) -> None:
    if future.exception() is None:
        _close(future.result()[2])


def _close(body: Any) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _log(environ: Environ, status: str, size: int, started: float) -> None:
    request_log.info(
        "request method=%s path=%s status=%s bytes=%d duration=%.6f call_id=%s",
        environ.get("REQUEST_METHOD"),
        environ.get("PATH_INFO"),
        status.split(" ", 1)[0],
        size,
        time.perf_counter() - started,
        environ.get("HTTP_X_CALL_ID", "-"),
    )


class _Chained:
    """A body whose first chunk was already taken."""

    def __init__(self, first: bytes, rest: Iterator[bytes], source: Any) -> None:
        self.first, self.rest, self.source = first, rest, source

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            yield self.first
        yield from self.rest

    def close(self) -> None:
        _close(self.source)


class _Finished:
    """The response body, counted; closing it ends the request."""

    def __init__(
        self,
        body: Any,
        watchdog: Watchdog,
        environ: Environ,
        status: str,
        started: float,
    ) -> None:
        self.body = body
        self.watchdog = watchdog
        self.environ = environ
        self.status = status
        self.started = started
        # Most answers are a list of chunks already made: count them now
        # and hand waitress the list's own iterator, not a generator.
        self.size = sum(map(len, body)) if isinstance(body, list) else 0

    def __iter__(self) -> Iterator[bytes]:
        if isinstance(self.body, list):
            return iter(self.body)
        return self._counted()

    def _counted(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            _close(self.body)
        finally:
            self.watchdog._leave()
            _log(self.environ, self.status, self.size, self.started)
