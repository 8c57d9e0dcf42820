"""The gateway: one WSGI app that routes as OpenFaaS's gateway does.

``/function/`` goes to the proxy, ``/async-function/`` to the queue,
``/system/`` to the admin API behind its auth, ``/healthz`` and ``/metrics``
answer here. Names in routes must match ``[-a-zA-Z_0-9.]+`` and anything
else is the router's plain 404 (gateway-contract.md §4, §12).

The server runs the proxy on its event loop itself (``fastpath``); here
it is reached through an ASGI bridge, which is how queued calls go.
"""

from __future__ import annotations

import http.client
import io
import posixpath
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from a2wsgi import ASGIMiddleware

from . import __version__
from .metrics import CONTENT_TYPE, GatewayMetrics
from .proxy import NAME, Proxy, target_of
from .queue import (
    AsyncQueue,
    BodyTooLarge,
    InvalidCallbackUrl,
    InvocationResult,
    QueuedCall,
    validate_callback_url,
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Any]

SERVED_BY = f"localfaas/{__version__}"
_NOT_FOUND = b"404 page not found\n"
# What the queue worker sends as, like OpenFaaS's NATS queue worker.
QUEUE_USER_AGENT = "openfaas-ce/nats-queue-worker"


class Gateway:
    """Routes each request to the part of the emulator that answers it."""

    def __init__(
        self,
        *,
        proxy: Proxy,
        system: WSGIApp,
        metrics: GatewayMetrics,
        queue: AsyncQueue | None = None,
    ) -> None:
        self.proxy = proxy
        self.system = system
        self.metrics = metrics
        self.queue = queue
        self._calls: ASGIMiddleware | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        path = environ.get("PATH_INFO") or "/"
        clean = canonical(path)
        if clean != path:
            return _redirect(start_response, clean, environ.get("QUERY_STRING", ""))

        if path.startswith("/function/"):
            return self._invoke(environ, start_response, path)
        if path.startswith("/async-function/"):
            rest = path[len("/async-function/") :]
            return self._enqueue(environ, start_response, rest)
        if path.startswith("/system/"):
            return self.system(environ, start_response)
        if path == "/healthz":
            return self._healthz(environ, start_response)
        if path == "/metrics":
            body = self.metrics.render()
            return _reply(start_response, 200, body, [("Content-Type", CONTENT_TYPE)])
        if path == "/":
            return _reply(start_response, 307, b"", [("Location", "/ui/")])
        return _plain_404(start_response)

    def invoke_queued(self, call: QueuedCall) -> InvocationResult:
        """Run a queued call through ``/function/``, as the queue worker does."""
        path = f"/function/{call.function}{call.path or '/'}"
        environ = _environ_for(call, path)
        captured: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> None:
            captured[:] = [int(status.split(" ", 1)[0]), headers]

        started = time.perf_counter()
        body = self(environ, start_response)
        try:
            content = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close:
                close()
        return InvocationResult(
            status=captured[0],
            headers=list(captured[1]),
            body=content,
            duration=time.perf_counter() - started,
        )

    def _invoke(
        self, environ: Environ, start_response: StartResponse, path: str
    ) -> Any:
        if target_of(path) is None:
            return _plain_404(start_response)
        return self._bridge()(cast(Any, environ), start_response)

    def _bridge(self) -> ASGIMiddleware:
        # The bridge runs the proxy on an event loop of its own, in a
        # thread, made on first use; WSGI callers wait for it.
        with self._lock:
            if self._calls is None:
                self._calls = ASGIMiddleware(cast(Any, self.proxy))
            return self._calls

    def _enqueue(
        self, environ: Environ, start_response: StartResponse, rest: str
    ) -> Any:
        segment, slash, tail = rest.partition("/")
        if not NAME.fullmatch(segment):
            return _plain_404(start_response)
        if self.queue is None:
            return _plain_404(start_response)
        if environ["REQUEST_METHOD"] != "POST":
            return _reply(start_response, 405, b"", [])

        callback = environ.get("HTTP_X_CALLBACK_URL") or None
        if callback:
            try:
                validate_callback_url(callback)
            except InvalidCallbackUrl as exc:
                return _error(start_response, 400, f"{exc}\n")

        started = str(time.time_ns())
        call_id = environ.get("HTTP_X_CALL_ID") or ""
        generated = not call_id
        call_id = call_id or str(uuid.uuid4())
        headers = _request_headers(environ)
        if generated:
            headers.append(("X-Call-Id", call_id))
        headers.append(("X-Start-Time", started))

        call = QueuedCall(
            call_id=call_id,
            function=segment,
            path=slash + tail,
            query=environ.get("QUERY_STRING", ""),
            method="POST",
            headers=headers,
            body=_read_body(environ),
            callback_url=callback,
            accepted_at=time.time(),
        )
        try:
            self.queue.enqueue(call)
        except BodyTooLarge as exc:
            return _error(start_response, 500, f"Error queuing request: {exc}\n")
        except (OSError, sqlite3.Error) as exc:
            # A full or unwritable state disk: refuse the call, say why.
            return _error(start_response, 500, f"Error queuing request: {exc}\n")

        answer = [("X-Start-Time", started), ("X-Served-By", SERVED_BY)]
        if generated:
            answer.insert(0, ("X-Call-Id", call_id))
        return _reply(start_response, 202, b"", answer)

    def _healthz(self, environ: Environ, start_response: StartResponse) -> Any:
        if environ["REQUEST_METHOD"] != "GET":
            return _reply(start_response, 405, b"", [])
        return _reply(start_response, 200, b"", [])


def canonical(path: str) -> str:
    """``path`` cleaned as Go's router does before it redirects (§4)."""
    # //, /./ and /../ are redirected to the cleaned path, with 301.
    if "//" not in path and "/." not in path:
        return path
    clean = posixpath.normpath(path)
    clean = "/" + clean.lstrip("/")
    if path.endswith("/") and clean != "/":
        clean += "/"
    return clean


def _redirect(start_response: StartResponse, path: str, query: str) -> list[bytes]:
    location = f"{path}?{query}" if query else path
    return _reply(start_response, 301, b"", [("Location", location)])


def _request_headers(environ: Environ) -> list[tuple[str, str]]:
    headers = [
        (key[5:].replace("_", "-").title(), value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").title(), environ[key]))
    return headers


def _read_body(environ: Environ) -> bytes:
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    return bytes(stream.read(int(length)) if length else stream.read())


def _environ_for(call: QueuedCall, path: str) -> Environ:
    environ: Environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": call.query,
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        # The ASGI bridge reads the server's name and the URL scheme too.
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "0",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(call.body),
        "CONTENT_LENGTH": str(len(call.body)),
    }
    for name, value in call.headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_LENGTH",):
            continue
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        environ[f"HTTP_{key}"] = value
    environ["HTTP_USER_AGENT"] = QUEUE_USER_AGENT
    return environ


def _plain_404(start_response: StartResponse) -> list[bytes]:
    return _error(start_response, 404, _NOT_FOUND.decode())


def _error(start_response: StartResponse, code: int, text: str) -> list[bytes]:
    # Go's http.Error: text/plain, nosniff, the message and a newline.
    return _reply(
        start_response,
        code,
        text.encode(),
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )


def _reply(
    start_response: StartResponse,
    code: int,
    body: bytes,
    headers: list[tuple[str, str]],
) -> list[bytes]:
    headers = [*headers, ("Content-Length", str(len(body)))]
    start_response(f"{code} {http.client.responses.get(code, '')}", headers)
    return [body]
