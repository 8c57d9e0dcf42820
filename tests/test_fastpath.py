"""The gateway's fast path: ``/function/`` proxied on uvicorn's event loop.

Each test runs a real :class:`GatewayServer` on a free port in front of
functions that speak HTTP/1.1 by hand over real sockets, so a test decides
every byte a function sends and sees every connection the proxy opens.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port

from localfaas.errors import ConfigurationError
from localfaas.fastpath import FastPath, GatewayServer
from localfaas.gateway import Gateway
from localfaas.metrics import GatewayMetrics
from localfaas.proxy import Address, Proxy, UnknownFunction, Unreachable
from localfaas.queue import QueuedCall
from localfaas.tls import TlsFiles, ensure_certificates

# How long a test waits for something that should happen at once.
PATIENCE = 10.0


@dataclass
class Request:
    """One request as a function received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int
    call: int


Answer = Callable[[Request, socket.socket], bool]


class RawFunction:
    """A function on a free port that answers with ``answer``, by hand.

    ``answer`` writes the reply and returns whether to keep the connection.
    Each connection gets a thread; ``connections`` counts them and
    ``hung_up`` is set when the gateway closes one.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections = 0
        self.hung_up = threading.Event()
        self.requests: list[Request] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            args = (sock, self.connections - 1)
            threading.Thread(target=self._serve, args=args, daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        reader = sock.makefile("rb")
        for call in range(1_000_000):
            request = _read_request(reader, number, call)
            if request is None:
                self.hung_up.set()
                break
            self.requests.append(request)
            if not self.answer(request, sock):
                break
        sock.close()


def _read_request(reader: Any, connection: int, call: int) -> Request | None:
    line = reader.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (header := reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _read_chunks(reader)
    else:
        body = reader.read(int(headers.get("content-length", 0)))
    return Request(method, target, headers, body, connection, call)


def _read_chunks(reader: Any) -> bytes:
    parts = []
    while size := int(reader.readline().strip(), 16):
        parts.append(reader.read(size))
        reader.readline()
    reader.readline()
    return b"".join(parts)


def reply(
    sock: socket.socket,
    body: bytes,
    headers: dict[str, str] | None = None,
    status: str = "200 OK",
    send_body: bool = True,
) -> None:
    """Write a whole answer with Content-Length."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    sock.sendall(head + (body if send_body else b""))


def echo(request: Request, sock: socket.socket) -> bool:
    """Describe the request as JSON; ``/big?N`` answers N bytes instead."""
    if request.target.startswith("/big?"):
        reply(sock, _pattern(int(request.target[5:])))
        return True
    seen = {
        "method": request.method,
        "target": request.target,
        "headers": request.headers,
        "length": len(request.body),
        "sha256": hashlib.sha256(request.body).hexdigest(),
        "connection": request.connection,
    }
    body = json.dumps(seen).encode()
    headers = {"Content-Type": "application/json", "X-Served-By": "the-function"}
    if request.target.startswith("/untyped"):
        del headers["Content-Type"]
    reply(sock, body, headers, send_body=request.method != "HEAD")
    return True


def _pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@dataclass
class Stack:
    """A gateway in front of named functions; names map to their ports."""

    ports: dict[str, int] = field(default_factory=dict)
    system_lines: list[threading.Event] = field(default_factory=list)
    # Functions with no ready replica: only the blocking resolve finds one,
    # in a thread, as when scaling from zero.
    cold: set[str] = field(default_factory=set)
    # For each lookup: whether it ran on an event loop's thread.
    on_loop: list[bool] = field(default_factory=list)

    def locate(self, name: str) -> Address | None:
        if name in self.cold:
            return None
        return self.resolve(name)

    def resolve(self, name: str) -> Address:
        self.on_loop.append(_on_event_loop())
        if name not in self.ports:
            raise UnknownFunction(name)
        if self.ports[name] == 0:
            raise Unreachable(name)
        return ("127.0.0.1", self.ports[name])


@dataclass
class Running:
    """A served gateway: its URL, its parts, and the stack behind it."""

    url: str
    stack: Stack
    gateway: Gateway
    server: GatewayServer
    thread: threading.Thread

    def stop(self) -> None:
        """Stop serving and wait until the server's loop has ended."""
        self.server.stop()
        self.thread.join(PATIENCE)
        assert not self.thread.is_alive()


def streaming_system(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """A WSGI stand-in for /system/logs?follow=true: a line per event set."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    events = environ["test.events"]
    for number, event in enumerate(events):
        yield f"line {number}\n".encode()
        event.wait(PATIENCE)


def serve(
    stack: Stack,
    *,
    timeout: float = 10.0,
    tls: TlsFiles | None = None,
    drain: float = 1.0,
) -> Running:
    """Start a gateway for ``stack`` on a free port, in a thread."""
    app = fast_path(stack, timeout)
    server = GatewayServer(app, "127.0.0.1", 0, tls=tls, drain=drain)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    host = "localhost" if tls else "127.0.0.1"
    url = f"{scheme}://{host}:{server.port}"
    _wait_serving(server.port)
    return Running(url, stack, app.gateway, server, thread)


def fast_path(stack: Stack, timeout: float = 10.0) -> FastPath:
    """The gateway's ASGI app in front of ``stack``."""
    metrics = GatewayMetrics(lambda: dict.fromkeys(stack.ports, 1))
    proxy = Proxy(
        stack.resolve,
        metrics,
        timeout=timeout,
        served_by="localfaas/test",
        locate=stack.locate,
    )

    def system(environ: dict[str, Any], start_response: Any) -> Any:
        environ["test.events"] = stack.system_lines
        return streaming_system(environ, start_response)

    gateway = Gateway(proxy=proxy, system=system, metrics=metrics)
    return FastPath(gateway, threads=4)


def call_once(stack: Stack, path: str, **options: Any) -> httpx.Response:
    """GET ``path`` from a gateway served for this one call."""
    served = serve(stack, **options)
    try:
        return httpx.get(served.url + path)
    finally:
        served.stop()


def _wait_serving(port: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"gateway on {port} never listened")


@pytest.fixture
def stack() -> Iterator[Stack]:
    """A stack whose ``echo`` function describes each request."""
    function = RawFunction(echo)
    yield Stack(ports={"echo": function.port})
    function.close()


@pytest.fixture
def running(stack: Stack) -> Iterator[Running]:
    """The gateway in front of ``stack``."""
    served = serve(stack)
    yield served
    served.stop()


def drop_second_call(request: Request, sock: socket.socket) -> bool:
    """Echo, but hang up unanswered on the first connection's second call."""
    if request.connection == 0 and request.call == 1:
        return False
    return echo(request, sock)


def tick_forever(request: Request, sock: socket.socket) -> bool:
    """Start a chunked answer that never ends, then read on."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock.sendall(head + _chunk(b"tick\n"))
    return True


@pytest.fixture
def ticking() -> Iterator[RawFunction]:
    """A function whose answers stream until the gateway hangs up."""
    function = RawFunction(tick_forever)
    yield function
    function.close()


@contextmanager
def first_tick(served: Running) -> Iterator[httpx.Response]:
    """The stream from ``ticks``, open, once its first piece has arrived."""
    url = f"{served.url}/function/ticks"
    with httpx.stream("GET", url, timeout=PATIENCE) as response:
        pieces = response.iter_raw()  # held: dropping it closes the stream
        assert next(pieces) == b"tick\n"
        yield response


@pytest.fixture
def stale() -> Iterator[tuple[Running, RawFunction]]:
    """A gateway in front of ``fn``, whose first connection goes stale."""
    function = RawFunction(drop_second_call)
    served = serve(Stack(ports={"fn": function.port}))
    yield served, function
    served.stop()
    function.close()


class TestForwarding:
    """What the function receives and what the client gets back (§9)."""

    def test_the_function_sees_the_rest_of_the_path_and_the_gateways_headers(
        self, running: Running
    ) -> None:
        """Path after the name, raw query, call ids, forwarded host and for."""
        response = httpx.put(
            f"{running.url}/function/echo.openfaas-fn/a/b/?x=1&y=%20",
            content=b"payload",
            headers={"X-Custom": "v", "Content-Type": "text/plain"},
        )
        seen = response.json()
        assert (seen["method"], seen["target"]) == ("PUT", "/a/b/?x=1&y=%20")
        headers = seen["headers"]
        assert headers["host"] == f"127.0.0.1:{running.stack.ports['echo']}"
        assert headers["x-custom"] == "v"
        assert headers["x-call-id"] == response.headers["x-call-id"]
        assert headers["x-start-time"] == response.headers["x-start-time"]
        assert headers["x-forwarded-for"].startswith("127.0.0.1:")
        assert headers["x-forwarded-host"] == running.url.removeprefix("http://")
        assert headers["content-length"] == "7"
        assert seen["length"] == 7

    def test_hop_by_hop_headers_and_those_connection_names_stay_behind(
        self, running: Running
    ) -> None:
        """Connection, Keep-Alive, TE and X-Private named in Connection."""
        response = httpx.get(
            f"{running.url}/function/echo",
            headers={
                "Connection": "keep-alive, X-Private",
                "X-Private": "secret",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "X-Public": "yes",
            },
        )
        headers = response.json()["headers"]
        assert headers["x-public"] == "yes"
        for name in ("connection", "x-private", "keep-alive", "te"):
            assert name not in headers

    def test_a_client_call_id_is_kept_and_not_echoed(self, running: Running) -> None:
        """The client's X-Call-Id reaches the function; the reply adds none."""
        response = httpx.get(
            f"{running.url}/function/echo", headers={"X-Call-Id": "mine"}
        )
        assert response.json()["headers"]["x-call-id"] == "mine"
        assert "x-call-id" not in response.headers
        assert int(response.headers["x-start-time"]) > 1_600_000_000 * 10**9

    def test_a_function_header_replaces_the_gateways_and_date_is_single(
        self, running: Running
    ) -> None:
        """X-Served-By from the function wins; the server's Date is the one."""
        response = httpx.get(f"{running.url}/function/echo")
        assert response.headers.get_list("x-served-by") == ["the-function"]
        assert len(response.headers.get_list("date")) == 1
        assert response.headers["content-type"] == "application/json"

    @pytest.mark.parametrize(
        ("sent", "expected"),
        [({"Content-Type": "text/csv"}, "text/csv"), ({}, "text/plain")],
    )
    def test_content_type_defaults_to_the_requests_then_text_plain(
        self, running: Running, sent: dict[str, str], expected: str
    ) -> None:
        """A function answer without Content-Type gets one (§9.3)."""
        response = httpx.post(
            f"{running.url}/function/echo/untyped", content=b"x", headers=sent
        )
        assert response.headers["content-type"] == expected

    def test_escaped_paths_reach_the_function_escaped(self, running: Running) -> None:
        """A space in the path stays %20 on the way to the function."""
        response = httpx.get(f"{running.url}/function/echo/a%20b/c")
        assert response.json()["target"] == "/a%20b/c"

    def test_head_has_the_functions_length_and_no_body(self, running: Running) -> None:
        """HEAD: headers only, and the connection serves the next call."""
        with httpx.Client(base_url=running.url) as client:
            head = client.head("/function/echo")
            after = client.get("/function/echo")
        assert head.status_code == 200
        assert int(head.headers["content-length"]) > 0
        assert head.content == b""
        assert after.json()["connection"] == 0


class TestPool:
    """Persistent upstream connections, and what happens when one goes stale."""

    def test_keep_alive_connections_are_reused(self, running: Running) -> None:
        """Sequential calls travel on one connection to the function."""
        connections = {
            httpx.get(f"{running.url}/function/echo").json()["connection"]
            for _ in range(5)
        }
        assert connections == {0}

    def test_a_connection_closed_while_idle_is_retried_on_a_new_one(
        self, stale: tuple[Running, RawFunction]
    ) -> None:
        """The function drops the reused connection unanswered: sent again."""
        served, _ = stale
        first = httpx.post(f"{served.url}/function/fn", content=b"one")
        second = httpx.post(f"{served.url}/function/fn", content=b"two")
        assert first.json()["connection"] == 0
        assert second.status_code == 200
        assert second.json()["connection"] == 1
        assert second.json()["length"] == 3

    def test_a_body_too_large_to_replay_is_not_sent_twice(
        self, stale: tuple[Running, RawFunction]
    ) -> None:
        """A streamed body on a stale connection is the gateway's 502."""
        served, function = stale
        httpx.get(f"{served.url}/function/fn")
        large = httpx.post(f"{served.url}/function/fn", content=_pattern(3 << 20))
        assert large.status_code == 502
        assert large.content == b""
        assert large.headers["x-call-id"]
        assert large.headers["x-start-time"]
        assert function.connections == 1


class TestStreaming:
    """Answers are relayed as they arrive, and bodies are never cut."""

    def test_a_slow_chunked_answer_arrives_piece_by_piece(self) -> None:
        """The second event is sent only after the first reached the client."""
        first_seen = threading.Event()

        def events(request: Request, sock: socket.socket) -> bool:
            head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
            sock.sendall(_chunk(b"data: 1\n\n"))
            first_seen.wait(PATIENCE)
            sock.sendall(_chunk(b"data: 2\n\n") + b"0\r\n\r\n")
            return True

        function = RawFunction(events)
        served = serve(Stack(ports={"sse": function.port}))
        received = []
        try:
            url = f"{served.url}/function/sse"
            with httpx.stream("GET", url, timeout=PATIENCE) as response:
                for piece in response.iter_raw():
                    received.append(piece)
                    first_seen.set()
        finally:
            served.stop()
            function.close()
        assert b"".join(received) == b"data: 1\n\ndata: 2\n\n"
        assert received[0] == b"data: 1\n\n"
        assert response.headers["content-type"] == "text/event-stream"

    def test_a_client_leaving_mid_stream_frees_the_functions_connection(
        self, ticking: RawFunction
    ) -> None:
        """The gateway closes the function's connection when the client goes."""
        served = serve(Stack(ports={"ticks": ticking.port}))
        try:
            with first_tick(served) as response:
                response.close()
            assert ticking.hung_up.wait(PATIENCE)
        finally:
            served.stop()

    def test_large_bodies_pass_both_ways_intact(self, running: Running) -> None:
        """5 MB up with a length, 3 MB up chunked, 5 MB down."""
        data = _pattern(5 << 20)
        sized = httpx.post(f"{running.url}/function/echo", content=data)
        assert sized.json()["length"] == len(data)
        assert sized.json()["sha256"] == hashlib.sha256(data).hexdigest()

        pieces = [_pattern(1 << 20)] * 3
        chunked = httpx.post(f"{running.url}/function/echo", content=iter(pieces))
        assert chunked.json()["length"] == 3 << 20
        assert chunked.json()["headers"]["transfer-encoding"] == "chunked"

        down = httpx.get(f"{running.url}/function/echo/big?{5 << 20}")
        assert down.content == data


class TestAnswers:
    """Answers the gateway makes itself, and the router's, unchanged."""

    def test_unknown_function_is_the_pre_checks_404(self, running: Running) -> None:
        """No call-id headers, no trailing newline (§9.4)."""
        response = httpx.post(f"{running.url}/function/nope.openfaas-fn")
        assert response.status_code == 404
        assert response.content == (
            b"error finding function nope.openfaas-fn: server returned non-200 "
            b"status code (404) for function, nope, body: "
        )
        assert "x-call-id" not in response.headers

    @pytest.mark.parametrize(
        ("path", "status", "body", "location"),
        [
            ("/function//echo?x=1", 301, b"", "/function/echo?x=1"),
            ("/function/./echo/a/", 301, b"", "/function/echo/a/"),
            ("/function/bad%20name", 404, b"404 page not found\n", None),
            ("/function/", 404, b"404 page not found\n", None),
            ("/nothing", 404, b"404 page not found\n", None),
        ],
    )
    def test_router_answers_are_unchanged(
        self,
        running: Running,
        path: str,
        status: int,
        body: bytes,
        location: str | None,
    ) -> None:
        """Non-canonical paths redirect; names outside the regex are 404."""
        # http.client sends the path as written; httpx would clean it first.
        port = running.server.port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
        connection.request("GET", path)
        response = connection.getresponse()
        assert (response.status, response.read()) == (status, body)
        assert response.getheader("location") == location
        connection.close()

    def test_a_function_with_no_ready_replica_is_waited_for_in_a_thread(
        self, stack: Stack
    ) -> None:
        """Scale from zero: the blocking lookup runs off the event loop."""
        stack.cold.add("echo")
        response = call_once(stack, "/function/echo")
        assert response.status_code == 200
        assert stack.on_loop == [False]

    def test_a_function_whose_replicas_never_start_is_a_500(self) -> None:
        """No replica in time: Can't reach service, as the provider says."""
        stack = Stack(ports={"stuck": 0}, cold={"stuck"})
        response = call_once(stack, "/function/stuck")
        assert response.status_code == 500
        assert response.content == b"Can't reach service for: stuck.\n"

    def test_a_function_that_refuses_connections_is_a_500(self) -> None:
        """Can't reach service, as the provider says it (§9.4)."""
        response = call_once(Stack(ports={"down": free_port()}), "/function/down")
        assert response.status_code == 500
        assert response.content == b"Can't reach service for: down.\n"
        assert response.headers["x-openfaas-internal"] == "proxy"

    def test_a_function_too_slow_to_answer_is_an_empty_502(self) -> None:
        """The upstream timeout gives 502 with the call-id headers."""
        release = threading.Event()

        def silent(request: Request, sock: socket.socket) -> bool:
            release.wait(PATIENCE)
            return False

        function = RawFunction(silent)
        try:
            stack = Stack(ports={"slow": function.port})
            response = call_once(stack, "/function/slow", timeout=0.3)
        finally:
            release.set()
            function.close()
        assert (response.status_code, response.content) == (502, b"")
        assert response.headers["x-call-id"]
        assert response.headers["x-served-by"] == "localfaas/test"

    def test_a_method_the_provider_does_not_proxy_is_405(
        self, running: Running
    ) -> None:
        """Only GET, POST, PUT, PATCH, DELETE, OPTIONS and HEAD pass (§9.2)."""
        response = httpx.request("PROPFIND", f"{running.url}/function/echo")
        assert (response.status_code, response.content) == (405, b"")
        assert response.headers["x-openfaas-internal"] == "proxy"

    def test_calls_are_counted_by_code_on_metrics(self, running: Running) -> None:
        """Started and finished counters under OpenFaaS's names (§13)."""
        httpx.get(f"{running.url}/function/echo")
        httpx.request("PROPFIND", f"{running.url}/function/echo")
        text = httpx.get(f"{running.url}/metrics").text
        function = 'function_name="echo.openfaas-fn"'
        assert f'gateway_function_invocation_total{{code="200",{function}}} 1.0' in text
        assert f'gateway_function_invocation_total{{code="405",{function}}} 1.0' in text
        assert f"gateway_function_invocation_started{{{function}}} 2.0" in text


class TestRouter:
    """Everything else is the WSGI router's, run in threads."""

    def test_system_answers_stream_line_by_line(self, stack: Stack) -> None:
        """A follow=true log stream reaches the client as lines are made."""
        stack.system_lines = [threading.Event(), threading.Event()]
        served = serve(stack)
        lines = []
        try:
            url = f"{served.url}/system/logs?follow=true"
            with httpx.stream("GET", url, timeout=PATIENCE) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    stack.system_lines[len(lines) - 1].set()
        finally:
            served.stop()
        assert lines == ["line 0", "line 1"]

    def test_healthz_is_answered_by_the_router(self, running: Running) -> None:
        """GET 200, HEAD 405, as the Go router does (§4)."""
        assert httpx.get(f"{running.url}/healthz").status_code == 200
        assert httpx.head(f"{running.url}/healthz").status_code == 405

    def test_queued_calls_go_through_the_same_proxy(self, running: Running) -> None:
        """The queue worker's call: its path, query, body and User-Agent."""
        call = QueuedCall(
            call_id="queued-1",
            function="echo.openfaas-fn",
            path="/sub",
            query="q=1",
            method="POST",
            headers=[("X-Call-Id", "queued-1"), ("Content-Type", "text/plain")],
            body=b"later",
            callback_url=None,
            accepted_at=time.time(),
        )
        result = running.gateway.invoke_queued(call)
        seen = json.loads(result.body)
        assert result.status == 200
        assert (seen["target"], seen["length"]) == ("/sub?q=1", 5)
        assert seen["headers"]["x-call-id"] == "queued-1"
        assert seen["headers"]["user-agent"] == "openfaas-ce/nats-queue-worker"


class TestTls:
    """``up --tls``: uvicorn serving the gateway with the local CA's files."""

    @pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
    def test_a_client_trusting_the_ca_calls_a_function(
        self, secure: Running, tls_files: TlsFiles, host: str
    ) -> None:
        """A strictly verified call by name and by address, keep-alive too."""
        url = f"https://{host}:{secure.server.port}/function/echo"
        with httpx.Client(verify=trusting(tls_files)) as client:
            first = client.post(url, content=b"one")
            second = client.post(url, content=b"two")
            assert client_address(first) == client_address(second)

        assert first.status_code == second.status_code == 200
        assert (first.json()["length"], second.json()["length"]) == (3, 3)
        forwarded = first.json()["headers"]["x-forwarded-for"]
        assert forwarded.startswith("127.0.0.1:")

    def test_a_client_without_the_ca_is_refused(
        self, secure: Running, tls_files: TlsFiles
    ) -> None:
        """The system's CAs alone do not trust the local CA; serving goes on."""
        url = f"{secure.url}/healthz"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
            httpx.get(url, verify=ssl.create_default_context())

        assert httpx.get(url, verify=trusting(tls_files)).status_code == 200

    def test_the_host_name_is_checked_against_the_certificate(
        self, secure: Running, tls_files: TlsFiles
    ) -> None:
        """A name in the certificate passes; one outside it is refused."""
        address = ("127.0.0.1", secure.server.port)
        context = trusting(tls_files)

        with (
            socket.create_connection(address, timeout=PATIENCE) as raw,
            context.wrap_socket(raw, server_hostname="gateway.test") as tls,
        ):
            assert tls.getpeercert() is not None

        with (
            socket.create_connection(address, timeout=PATIENCE) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
        ):
            context.wrap_socket(raw, server_hostname="elsewhere.test")

    def test_large_bodies_pass_both_ways_intact(
        self, secure: Running, tls_files: TlsFiles
    ) -> None:
        """5 MiB up and 5 MiB down arrive whole over TLS."""
        data = _pattern(5 << 20)
        with httpx.Client(verify=trusting(tls_files), timeout=PATIENCE) as client:
            up = client.post(f"{secure.url}/function/echo", content=data)
            down = client.get(f"{secure.url}/function/echo/big?{5 << 20}")

        assert up.json()["length"] == len(data)
        assert up.json()["sha256"] == hashlib.sha256(data).hexdigest()
        assert down.content == data

    def test_a_streamed_answer_arrives_complete(self, tls_files: TlsFiles) -> None:
        """500 chunks sent one by one reach the client all, in order."""
        function = RawFunction(five_hundred_lines)
        served = serve(Stack(ports={"lines": function.port}), tls=tls_files)
        try:
            url = f"{served.url}/function/lines"
            answer = httpx.get(url, verify=trusting(tls_files), timeout=PATIENCE)
        finally:
            served.stop()
            function.close()

        lines = answer.text.splitlines()
        assert lines == [f'{{"line": {n}}}' for n in range(500)]


def trusting(files: TlsFiles) -> ssl.SSLContext:
    """A client context that trusts only the local CA, checked strictly."""
    context = ssl.create_default_context(cafile=files.ca)
    # Python 3.13 makes strict X.509 checks the default; pass them now.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def client_address(response: httpx.Response) -> Any:
    """The client's end of the connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


def five_hundred_lines(request: Request, sock: socket.socket) -> bool:
    """A chunked answer of 500 JSON lines, each written on its own."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
    for number in range(500):
        sock.sendall(_chunk(f'{{"line": {number}}}\n'.encode()))
    sock.sendall(b"0\r\n\r\n")
    return True


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A local CA and a server certificate for localhost and gateway.test."""
    return ensure_certificates(tmp_path / "tls", ["gateway.test"])


@pytest.fixture
def secure(stack: Stack, tls_files: TlsFiles) -> Iterator[Running]:
    """The gateway in front of ``stack``, over TLS."""
    served = serve(stack, tls=tls_files)
    yield served
    served.stop()


class TestServer:
    """Listening and stopping."""

    def test_a_busy_port_is_one_configuration_error(self) -> None:
        """The address and the fix, before anything is served."""
        with socket.create_server(("127.0.0.1", 0)) as busy:
            port = busy.getsockname()[1]
            with pytest.raises(ConfigurationError) as error:
                GatewayServer(fast_path(Stack()), "127.0.0.1", port)
        assert str(error.value).startswith(f"cannot listen on 127.0.0.1:{port}: ")
        assert "--port" in (error.value.hint or "")

    def test_stop_ends_run_and_an_endless_stream(self, ticking: RawFunction) -> None:
        """stop() from another thread: run() returns after the drain, and
        the function's connection is closed."""
        served = serve(Stack(ports={"ticks": ticking.port}), drain=0.2)
        with first_tick(served):
            served.stop()
            assert ticking.hung_up.wait(PATIENCE)

    def test_up_serves_https_and_stops_cleanly_on_sigterm(self, tmp_path: Path) -> None:
        """``localfaas up --tls``: HTTPS with the CA it made; SIGTERM exits 0."""
        (tmp_path / "stack.yml").write_text(
            "version: 1.0\nprovider:\n  name: openfaas\nfunctions: {}\n"
        )
        port = free_port()
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "LOCALFAAS_CACHE_DIR": str(tmp_path / "cache"),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "-m", "localfaas", "up", "--tls", "--port", str(port)]
        up = subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_line(up, "Press Ctrl-C to stop.")
            ca = tmp_path / "data" / "localfaas" / "tls" / "ca.pem"
            trust = ssl.create_default_context(cafile=ca)
            health = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trust)
            up.send_signal(signal.SIGTERM)
            output = up.communicate(timeout=60)[0].decode()
        finally:
            up.kill()
        assert health.status_code == 200
        assert up.returncode == 0
        assert "localfaas stopped" in output


def _wait_for_line(process: subprocess.Popen[bytes], text: str) -> None:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line.decode())
        if text in seen[-1]:
            return
    raise AssertionError("".join(seen))


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
