"""The async queue: durable calls, callbacks as OpenFaaS sends them."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from localfaas.queue import (
    USER_AGENT,
    AsyncQueue,
    BodyTooLarge,
    InvalidCallbackUrl,
    InvocationResult,
    QueuedCall,
    _Ledger,
    validate_callback_url,
)

FUNCTION = "echo.openfaas-fn"
NO_HOST = "no host; give the receiver as http://<host>:<port>/<path>"
NO_SCHEME = "no scheme; give an absolute http:// or https:// URL"


@dataclass
class Hit:
    """One request a receiver got."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A callback receiver: answers from a script, records every request."""

    url: str = ""
    script: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    hold_first: threading.Event | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def answer(self, hit: Hit) -> tuple[int, list[tuple[str, str]]]:
        """Record ``hit`` and pick the next scripted answer (200 when done)."""
        with self.changed:
            self.hits.append(hit)
            self.changed.notify_all()
            first = len(self.hits) == 1
            scripted = self.script.pop(0) if self.script else (200, [])
        if first and self.hold_first is not None:
            self.hold_first.wait(30)
        return scripted

    def wait_for(self, count: int, timeout: float = 10) -> list[Hit]:
        """Wait until ``count`` requests arrived; return them all."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.hits) >= count, timeout)
            return list(self.hits)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._record()

        def do_GET(self) -> None:
            self._record()

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            hit = Hit(
                self.command,
                self.path,
                list(self.headers.items()),
                self.rfile.read(length),
                time.monotonic(),
            )
            status, headers = receiver.answer(hit)
            try:
                self.send_response(status)
                for name, value in [*headers, ("Content-Length", "0")]:
                    self.send_header(name, value)
                self.end_headers()
            except OSError:
                pass  # the caller was killed while we held its request

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on a free port, answering 200 unless scripted."""
    result = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(result))
    result.url = f"http://127.0.0.1:{server.server_address[1]}/cb"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield result
    if result.hold_first is not None:
        result.hold_first.set()
    server.shutdown()
    server.server_close()


class FakeGateway:
    """Stands for the gateway: answers each call, counts concurrency."""

    def __init__(
        self,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"done",
        duration: float = 0.5,
        gate: threading.Event | None = None,
    ) -> None:
        self.answer = InvocationResult(status, headers or [], body, duration)
        self.gate = gate
        self.calls: list[QueuedCall] = []
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def __call__(self, call: QueuedCall) -> InvocationResult:
        with self.lock:
            self.calls.append(call)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.gate is not None:
                self.gate.wait(30)
            return self.answer
        finally:
            with self.lock:
                self.active -= 1

    def call_ids(self) -> list[str]:
        """The call ids invoked so far, in order."""
        with self.lock:
            return [call.call_id for call in self.calls]


def make_call(
    callback_url: str | None, body: bytes = b"payload", call_id: str = ""
) -> QueuedCall:
    """A call as the gateway would queue it."""
    call_id = call_id or str(uuid.uuid4())
    headers = [
        ("Content-Type", "text/plain"),
        ("X-Call-Id", call_id),
        ("X-Start-Time", str(time.time_ns())),
    ]
    if callback_url is not None:
        headers.append(("X-Callback-Url", callback_url))
    return QueuedCall(
        call_id=call_id,
        function=FUNCTION,
        path="/a/b",
        query="x=1",
        method="POST",
        headers=headers,
        body=body,
        callback_url=callback_url,
        accepted_at=time.time(),
    )


@pytest.fixture
def queues(tmp_path: Path) -> Iterator[list[AsyncQueue]]:
    """Queues made by a test, closed after it."""
    made: list[AsyncQueue] = []
    yield made
    for queue in made:
        queue.close(timeout=1)


def new_queue(
    queues: list[AsyncQueue], state: Path, gateway: FakeGateway, **options: Any
) -> AsyncQueue:
    """An AsyncQueue on ``state`` that the ``queues`` fixture closes."""
    queue = AsyncQueue(state, gateway, **options)
    queues.append(queue)
    return queue


def run_one(
    queues: list[AsyncQueue],
    tmp_path: Path,
    gateway: FakeGateway,
    call: QueuedCall,
    **options: Any,
) -> AsyncQueue:
    """Queue ``call``, run it to the end, and return the queue."""
    queue = new_queue(queues, tmp_path, gateway, **options)
    queue.enqueue(call)
    queue.start()
    assert queue.wait_idle(10)
    return queue


def header(hit: Hit, name: str) -> list[str]:
    """Every value of ``name`` on ``hit``."""
    return [value for key, value in hit.headers if key.lower() == name.lower()]


class TestCallback:
    """What the callback receiver gets."""

    def test_headers_are_the_function_headers_then_the_worker_headers(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Function headers pass; status, name, duration and call id replace."""
        gateway = FakeGateway(
            status=201,
            headers=[
                ("Content-Type", "application/octet-stream"),
                ("X-Duration-Seconds", "0.100"),
                ("X-Call-Id", "from-the-function"),
                ("X-Custom", "one"),
                ("X-Custom", "two"),
                ("Content-Length", "999"),
                ("Connection", "keep-alive"),
                ("X-Start-Time", "123"),
            ],
            body=b"hello",
            duration=1.25,
        )
        call = make_call(receiver.url)

        run_one(queues, tmp_path, gateway, call)

        [hit] = receiver.wait_for(1)
        port = receiver.url.split(":")[2].split("/")[0]
        assert (hit.method, hit.path) == ("POST", "/cb")
        assert hit.headers == [
            ("Host", f"127.0.0.1:{port}"),
            ("Content-Type", "application/octet-stream"),
            ("X-Custom", "one"),
            ("X-Custom", "two"),
            ("X-Start-Time", "123"),
            ("X-Function-Status", "201"),
            ("X-Function-Name", FUNCTION),
            ("X-Duration-Seconds", "1.250000"),
            ("X-Call-Id", call.call_id),
            ("Content-Length", "5"),
            ("User-Agent", USER_AGENT),
        ]

    def test_a_user_agent_from_the_function_is_kept(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """The worker's User-Agent is only a default."""
        gateway = FakeGateway(headers=[("User-Agent", "fn/1.0")])

        run_one(queues, tmp_path, gateway, make_call(receiver.url))

        [hit] = receiver.wait_for(1)
        assert header(hit, "User-Agent") == ["fn/1.0"]

    def test_binary_body_arrives_intact(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Every byte value, CRLFs and NULs included, reaches the receiver."""
        body = bytes(range(256)) * 300 + b"\r\n\r\n\x00"
        gateway = FakeGateway(body=body)

        run_one(queues, tmp_path, gateway, make_call(receiver.url))

        [hit] = receiver.wait_for(1)
        assert hit.body == body

    @pytest.mark.parametrize(
        ("duration", "text"),
        [(2, "2.000000"), (0.0000004, "0.000000"), (12.3456789, "12.345679")],
    )
    def test_duration_has_six_decimals(
        self,
        receiver: Receiver,
        queues: list[AsyncQueue],
        tmp_path: Path,
        duration: float,
        text: str,
    ) -> None:
        """X-Duration-Seconds is printed like Go's %f."""
        gateway = FakeGateway(duration=duration)

        run_one(queues, tmp_path, gateway, make_call(receiver.url))

        [hit] = receiver.wait_for(1)
        assert header(hit, "X-Duration-Seconds") == [text]

    def test_unreachable_function_is_reported_as_503(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """An invoke that raises gives the callback status 503, no body."""

        def broken(call: QueuedCall) -> InvocationResult:
            raise ConnectionRefusedError("gateway down")

        queue = AsyncQueue(tmp_path, broken)
        queues.append(queue)
        queue.enqueue(make_call(receiver.url))
        queue.start()

        assert queue.wait_idle(10)
        [hit] = receiver.wait_for(1)
        assert header(hit, "X-Function-Status") == ["503"]
        assert hit.body == b""

    def test_userinfo_in_the_url_becomes_basic_auth(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """http://user:pass@host/ sends Basic credentials, as Go's client does."""
        url = receiver.url.replace("http://", "http://hook:s%40cret@")

        run_one(queues, tmp_path, FakeGateway(), make_call(url))

        [hit] = receiver.wait_for(1)
        assert header(hit, "Authorization") == ["Basic aG9vazpzQGNyZXQ="]

    def test_call_without_callback_is_done_after_invoking(
        self, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """No X-Callback-Url: the call ends once the function answered."""
        gateway = FakeGateway()
        call = make_call(None)

        queue = run_one(queues, tmp_path, gateway, call)

        assert gateway.call_ids() == [call.call_id]
        record = queue.lookup(call.call_id)
        assert record is not None
        assert (record.state, record.status, record.attempts) == ("done", 200, 0)


class TestRetries:
    """Failed deliveries: which are retried, and what is recorded."""

    def test_500_is_retried_with_backoff_then_delivered(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Two 500s, then 200: three attempts, waits doubling, one invoke."""
        receiver.script = [(500, []), (500, [])]
        gateway = FakeGateway(body=b"result")
        call = make_call(receiver.url)

        queue = run_one(queues, tmp_path, gateway, call, backoff=0.05)

        hits = receiver.wait_for(3)
        assert [hit.body for hit in hits] == [b"result"] * 3
        assert hits[1].at - hits[0].at >= 0.05
        assert hits[2].at - hits[1].at >= 0.1
        assert gateway.call_ids() == [call.call_id]
        record = queue.lookup(call.call_id)
        assert record is not None
        assert (record.state, record.attempts, record.reason) == ("done", 3, None)

    def test_gives_up_after_the_retries_with_the_reason(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """A receiver that keeps failing is tried 1 + retries times."""
        receiver.script = [(503, [])] * 10
        call = make_call(receiver.url)

        queue = run_one(
            queues,
            tmp_path,
            FakeGateway(),
            call,
            backoff=0.01,
            callback_retries=2,
        )

        assert len(receiver.wait_for(3)) == 3
        record = queue.lookup(call.call_id)
        assert record is not None
        assert record.state == "failed"
        assert record.reason == (
            "callback failed after 3 attempt(s): receiver answered 503"
        )

    def test_connection_refused_is_retried_then_recorded(
        self, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Nothing listening: the call fails with the connection error."""
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        call = make_call(f"http://127.0.0.1:{port}/cb")

        queue = run_one(
            queues, tmp_path, FakeGateway(), call, backoff=0.01, callback_retries=1
        )

        record = queue.lookup(call.call_id)
        assert record is not None
        assert (record.state, record.attempts) == ("failed", 2)
        assert record.reason is not None
        assert "ConnectionRefusedError" in record.reason

    def test_redirect_is_not_followed_nor_retried(
        self,
        receiver: Receiver,
        queues: list[AsyncQueue],
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A 302 fails the call once, logged with its Location (nqw#102)."""
        receiver.script = [(302, [("Location", "/moved")])]
        call = make_call(receiver.url)
        caplog.set_level(logging.INFO, logger="localfaas.queue")

        queue = run_one(queues, tmp_path, FakeGateway(), call, backoff=0.01)

        assert [hit.path for hit in receiver.hits] == ["/cb"]
        record = queue.lookup(call.call_id)
        assert record is not None
        assert (record.state, record.attempts) == ("failed", 1)
        assert "302 redirect to '/moved' not followed" in str(record.reason)
        assert "'/moved'" in caplog.text

    def test_client_error_is_not_retried(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """A 404 from the receiver will not change: one attempt, failed."""
        receiver.script = [(404, [])]
        call = make_call(receiver.url)

        queue = run_one(queues, tmp_path, FakeGateway(), call, backoff=0.01)

        assert len(receiver.hits) == 1
        assert queue.stats()["failed"] == 1

    def test_too_many_requests_is_retried(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """429 means "later" (RFC 6585 §4): the next attempt delivers."""
        receiver.script = [(429, [])]
        call = make_call(receiver.url)

        queue = run_one(queues, tmp_path, FakeGateway(), call, backoff=0.01)

        assert len(receiver.wait_for(2)) == 2
        assert queue.stats()["done"] == 1


class TestAccepting:
    """What enqueue() refuses, and how."""

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("ftp://x/cb", 'unsupported scheme "ftp"; use http:// or https://'),
            ("ht tp://x", "first path segment in URL cannot contain colon"),
            ("http:///cb", NO_HOST),
            ("http://", NO_HOST),
            ("://x/cb", "missing protocol scheme"),
            ("x.example/cb", NO_SCHEME),
            ("http://a b/cb", 'invalid character " " in host name'),
            ("http://x:99999/cb", "Port out of range 0-65535"),
            ("http://x/\ncb", "net/url: invalid control character in URL"),
        ],
    )
    def test_bad_callback_url_is_refused_with_the_problem(
        self, url: str, problem: str
    ) -> None:
        """The message names the URL and what is wrong with it."""
        with pytest.raises(InvalidCallbackUrl) as caught:
            validate_callback_url(url)

        assert str(caught.value).startswith("parse ")
        assert url.replace("\n", "\\n") in str(caught.value)
        assert str(caught.value).endswith(f": {problem}")

    def test_go_parse_error_text_is_reproduced(self) -> None:
        """OpenFaaS's own example answer (contract §10.1), byte for byte."""
        with pytest.raises(InvalidCallbackUrl) as caught:
            validate_callback_url("ht tp://foo.com")

        assert str(caught.value) == (
            'parse "ht tp://foo.com": first path segment in URL cannot contain colon'
        )

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:9999/cb",
            "HTTPS://example.com/a?b=c",
            "http://[::1]:8000/",
            "http://host.docker.internal/hook",
        ],
    )
    def test_good_callback_url_is_returned(self, url: str) -> None:
        """An absolute http(s) URL with a host passes unchanged."""
        assert validate_callback_url(url) == url

    def test_enqueue_refuses_a_bad_callback_url(
        self, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Nothing is stored for a call that cannot be called back."""
        queue = new_queue(queues, tmp_path, FakeGateway())

        with pytest.raises(InvalidCallbackUrl):
            queue.enqueue(make_call("ftp://x/cb"))

        assert sum(queue.stats().values()) == 0

    @pytest.mark.parametrize("limit", [256_000, 10])
    def test_body_over_the_limit_is_refused_with_openfaas_text(
        self, queues: list[AsyncQueue], tmp_path: Path, limit: int
    ) -> None:
        """One byte over the limit: OpenFaaS CE's message, nothing stored."""
        queue = new_queue(queues, tmp_path, FakeGateway(), max_body=limit)
        queue.enqueue(make_call(None, body=b"x" * limit))

        with pytest.raises(BodyTooLarge) as caught:
            queue.enqueue(make_call(None, body=b"x" * (limit + 1)))

        assert str(caught.value) == (
            f"request body too large for OpenFaaS CE ({limit + 1} bytes), "
            f"maximum: {limit} bytes"
        )
        assert queue.stats()["pending"] == 1


class TestDurability:
    """Accepted calls survive a stop or a crash of the emulator."""

    def test_calls_enqueued_before_a_stop_are_delivered_once_after(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """20 calls, never started: a new queue delivers each exactly once."""
        first = new_queue(queues, tmp_path, FakeGateway())
        calls = [make_call(receiver.url, body=b"%d" % n) for n in range(20)]
        for call in calls:
            first.enqueue(call)
        first.close()

        gateway = FakeGateway()
        second = new_queue(queues, tmp_path, gateway)
        second.start()

        assert second.wait_idle(10)
        expected = sorted(call.call_id for call in calls)
        assert sorted(gateway.call_ids()) == expected
        hits = receiver.wait_for(20)
        assert sorted(header(hit, "X-Call-Id")[0] for hit in hits) == expected
        assert second.stats()["done"] == 20

    def test_only_the_accepting_commit_waits_for_the_disk(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """The INSERT behind a 202 commits with synchronous=FULL; every other
        commit with NORMAL (a power cut may then run a call twice, as
        OpenFaaS's queue worker may; it never loses an accepted one)."""
        queue = new_queue(queues, tmp_path, FakeGateway())
        statements: list[str] = []
        queue._ledger._db.set_trace_callback(statements.append)

        queue.enqueue(make_call(receiver.url))

        levels = [s.split()[0] if s.startswith("INSERT") else s for s in statements]
        assert levels == [
            "PRAGMA synchronous=FULL",
            "BEGIN",
            "INSERT",
            "COMMIT",
            "PRAGMA synchronous=NORMAL",
        ]
        # A worker's own connection: 1 is NORMAL, 2 would be FULL.
        worker = _Ledger(queue.path)
        try:
            assert worker._db.execute("PRAGMA synchronous").fetchone()[0] == 1
        finally:
            worker.close()

    def test_calls_accepted_together_each_get_their_own_row(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """16 threads enqueueing at once: every call is on disk once, even
        when one commit accepts several (group commit)."""
        queue = new_queue(queues, tmp_path, FakeGateway())
        commits: list[str] = []
        queue._ledger._db.set_trace_callback(
            lambda statement: (
                commits.append(statement) if statement == "COMMIT" else None
            )
        )
        calls = [make_call(receiver.url, body=b"%d" % n) for n in range(400)]

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(queue.enqueue, calls))

        assert queue.stats()["pending"] == 400
        stored = queue._ledger._db.execute("SELECT call_id FROM calls").fetchall()
        assert sorted(row[0] for row in stored) == sorted(c.call_id for c in calls)
        assert 1 <= len(commits) <= 400

    def test_calls_interrupted_in_the_function_are_delivered_once(
        self,
        receiver: Receiver,
        queues: list[AsyncQueue],
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Stopped mid-invoke: re-invoked after restart, one callback each.

        The old workers' late results are dropped, not delivered a second
        time.
        """
        caplog.set_level(logging.INFO, logger="localfaas.queue")
        gate = threading.Event()
        stuck = FakeGateway(gate=gate)
        first = new_queue(queues, tmp_path, stuck, workers=2)
        calls = [make_call(receiver.url) for _ in range(20)]
        for call in calls:
            first.enqueue(call)
        first.start()
        _wait_until(lambda: stuck.active == 2)
        assert not first.stop(timeout=0.1)

        gateway = FakeGateway()
        second = new_queue(queues, tmp_path, gateway)
        second.start()
        assert second.wait_idle(10)
        gate.set()
        _wait_until(lambda: stuck.active == 0)

        _wait_until(lambda: caplog.text.count("result dropped") == 2)

        expected = sorted(call.call_id for call in calls)
        assert sorted(gateway.call_ids()) == expected
        assert set(stuck.call_ids()) < set(expected)
        hits = receiver.wait_for(20)
        assert len(receiver.hits) == 20
        assert sorted(header(hit, "X-Call-Id")[0] for hit in hits) == expected

    def test_crash_after_invoking_retries_only_the_callback(
        self, receiver: Receiver, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Killed mid-callback: the restart calls back, not the function."""
        receiver.hold_first = threading.Event()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path), receiver.url]
        )
        try:
            receiver.wait_for(1)
            child.kill()
            child.wait(10)
        finally:
            receiver.hold_first.set()

        gateway = FakeGateway()
        queue = new_queue(queues, tmp_path, gateway)
        queue.start()

        assert queue.wait_idle(10)
        assert gateway.call_ids() == []
        first, second = receiver.wait_for(2)
        assert second.body == first.body == b"from the first run"
        assert header(second, "X-Duration-Seconds") == ["0.250000"]
        assert header(second, "X-Call-Id") == ["crash-1"]
        record = queue.lookup("crash-1")
        assert record is not None
        assert (record.state, record.status, record.attempts) == ("done", 200, 2)


class TestWorkers:
    """Concurrency, counts and logs."""

    def test_no_more_invocations_at_once_than_workers(
        self, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """12 calls on 3 workers: 3 run together, never a 4th."""
        gate = threading.Event()
        gateway = FakeGateway(gate=gate)
        queue = new_queue(queues, tmp_path, gateway, workers=3)
        for _ in range(12):
            queue.enqueue(make_call(None))
        queue.start()

        _wait_until(lambda: gateway.active == 3)
        time.sleep(0.1)  # a 4th worker, if there were one, would start now
        gate.set()

        assert queue.wait_idle(10)
        assert gateway.most_active == 3
        assert len(gateway.calls) == 12

    def test_stats_counts_every_state(
        self, queues: list[AsyncQueue], tmp_path: Path
    ) -> None:
        """Each state is listed, with zero for an empty one."""
        queue = new_queue(queues, tmp_path, FakeGateway())
        queue.enqueue(make_call(None))

        assert queue.stats() == {
            "pending": 1,
            "running": 0,
            "invoked": 0,
            "done": 0,
            "failed": 0,
        }

    def test_one_log_line_per_invocation_and_attempt_without_secrets(
        self,
        receiver: Receiver,
        queues: list[AsyncQueue],
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Logs name function, call id and status; never a body or a token."""
        receiver.script = [(500, [])]
        url = receiver.url.replace("http://", "http://u:pw-123@") + "?token=t-456"
        call = make_call(url, body=b"request-body-789")
        caplog.set_level(logging.INFO, logger="localfaas.queue")

        gateway = FakeGateway(body=b"response-body-0")
        run_one(queues, tmp_path, gateway, call, backoff=0.01)

        messages = [record.getMessage() for record in caplog.records]
        lines = [line for line in messages if call.call_id in line]
        assert [line.split()[0] for line in lines] == [
            "invoked",
            "callback",
            "callback",
        ]
        assert all(f"function={FUNCTION}" in line for line in lines)
        assert "status=200" in lines[0]
        assert "status=500" in lines[1]
        assert "status=200" in lines[2]
        for secret in ("request-body-789", "response-body-0", "pw-123", "t-456"):
            assert secret not in caplog.text


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition`` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


# The first run of the crash test: invokes once, then is SIGKILLed by the
# test while its first callback is held open by the receiver.
_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from localfaas.queue import AsyncQueue, InvocationResult, QueuedCall

    state, url = Path(sys.argv[1]), sys.argv[2]

    def invoke(call):
        return InvocationResult(
            200, [("Content-Type", "text/plain")], b"from the first run", 0.25
        )

    queue = AsyncQueue(state, invoke, workers=1)
    queue.enqueue(QueuedCall(
        "crash-1", "echo", "", "", "POST", [("X-Call-Id", "crash-1")],
        b"in", url, time.time(),
    ))
    queue.start()
    time.sleep(60)
    """
)
