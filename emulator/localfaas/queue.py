"""The asynchronous invocation queue behind ``/async-function/<name>``.

OpenFaaS CE puts an async request on NATS and answers ``202``; a queue
worker later POSTs it to ``/function/<name>`` and, when the client gave an
``X-Callback-Url``, POSTs the function's response there
(openfaas/nats-queue-worker). The emulator keeps the queue on disk instead,
so an accepted call survives an emulator that is stopped or killed.

A call moves through these states::

    pending ──► running ──┬─────────────► done     no callback was asked for
                          └─► invoked ──┬─► done   callback delivered
                                        └─► failed callback refused or given
                                                   up on; ``reason`` says why

A stop or a crash puts a running call back to pending at the next start.

Delivery guarantee: exactly once to the callback, or retried with a record
of why. The function's response is written to disk before the callback is
tried, so a restart after the invocation retries only the callback, never
the function. A call interrupted *during* its invocation is invoked again
after a restart, with the same ``X-Call-Id`` so the function can tell; this
is the redelivery NATS does when a worker dies (contract §10.3).

Only one started ``AsyncQueue`` may use a state directory at a time: a
second one would take over the first one's running calls and invoke them
twice.
"""

from __future__ import annotations

import base64
import heapq
import http.client
import json
import logging
import sqlite3
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import SplitResult, quote, unquote, urlsplit

from . import __version__

# OpenFaaS CE refuses larger async bodies (contract §10.1); the "1MB" in
# its docs is the NATS limit, not this check.
MAX_BODY = 256_000

STATES = ("pending", "running", "invoked", "done", "failed")

# CE's worker sends whatever Go's client defaults to; the emulator names
# itself so a receiver's log shows who called.
USER_AGENT = f"localfaas-queue-worker/{__version__}"

# Headers of the function's response that describe its connection, not
# its content (RFC 9110 §7.6.1), plus the two this module sets itself.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

# Characters a request target may carry as they are (RFC 3986 §2.2, plus
# "%" so an already-encoded URL is not encoded twice).
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"

# A receiver that says "not now" (RFC 9110 §15.5.9, RFC 6585 §4) is
# asked again, like a 5xx.
_RETRY_STATUSES = frozenset({408, 429})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    function TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    method TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    callback_url TEXT,
    accepted_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    owner TEXT,
    status INTEGER,
    result_headers TEXT,
    result_body BLOB,
    duration REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_state ON calls (state);
CREATE INDEX IF NOT EXISTS calls_by_call_id ON calls (call_id);
"""


class QueueError(Exception):
    """A call the queue cannot accept; the gateway answers with the text."""


class BodyTooLarge(QueueError):
    """The body is over the limit; OpenFaaS CE answers 500 with this text."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request body too large for OpenFaaS CE ({size} bytes), "
            f"maximum: {limit} bytes"
        )
        self.size = size
        self.limit = limit


class InvalidCallbackUrl(QueueError):
    """``X-Callback-Url`` is not an absolute http(s) URL (the gateway: 400)."""


@dataclass(frozen=True)
class QueuedCall:
    """One accepted ``/async-function/`` request, as it will be replayed."""

    call_id: str
    function: str
    path: str
    query: str
    method: str
    headers: list[tuple[str, str]]
    body: bytes
    callback_url: str | None
    accepted_at: float


@dataclass(frozen=True)
class InvocationResult:
    """The function's answer; status 503 when the gateway was unreachable."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    duration: float


@dataclass(frozen=True)
class CallRecord:
    """Where a call stands: its state, the function's status, and why."""

    call_id: str
    function: str
    state: str
    status: int | None
    attempts: int
    reason: str | None


def validate_callback_url(url: str) -> str:
    """Return ``url`` if a callback can be POSTed to it, else raise.

    The message copies the shape of Go's ``url.Parse`` errors, which is
    what OpenFaaS answers with (contract §10.1). An empty header means "no
    callback" to OpenFaaS, so the gateway should not call this for one.
    """
    problem = _url_problem(url)
    if problem is None:
        return url
    raise InvalidCallbackUrl(f"parse {_go_quote(url)}: {problem}")


class AsyncQueue:
    """Accepted async calls, kept in ``state_dir``, invoked by workers.

    ``invoke`` stands for the gateway: it runs one call through
    ``/function/...`` and must not raise for an unreachable function (it
    returns status 503); an exception is logged and treated the same way.
    A callback that meets a connection error, a timeout, a 5xx, 408 or
    429 is retried ``callback_retries`` times after the first attempt,
    waiting ``backoff`` seconds, then twice that, and so on. Any other
    answer is final: 2xx delivers; a 3xx fails the call without being
    followed or retried, its Location logged; 4xx fails it. https
    receivers must present a certificate the system trusts. Delivered
    calls keep their record but not their bodies.
    """

    def __init__(
        self,
        state_dir: Path,
        invoke: Callable[[QueuedCall], InvocationResult],
        *,
        workers: int = 4,
        max_body: int = MAX_BODY,
        callback_timeout: float = 10,
        callback_retries: int = 5,
        backoff: float = 0.5,
        logger: logging.Logger | None = None,
    ) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "queue.sqlite3"
        self.workers = workers
        self.max_body = max_body
        self.callback_timeout = callback_timeout
        self.callback_retries = callback_retries
        self.backoff = backoff
        self.log = logger or logging.getLogger("localfaas.queue")
        self._invoke_call = invoke
        self._ledger = _Ledger(self.path)
        self._run: _Run | None = None
        self._schedule = _Schedule()

    def enqueue(self, call: QueuedCall) -> None:
        """Write ``call`` to disk; once this returns, it will be delivered."""
        if len(call.body) > self.max_body:
            raise BodyTooLarge(len(call.body), self.max_body)
        if call.callback_url is not None:
            validate_callback_url(call.callback_url)

        seq = self._ledger.add(call)

        # Read after the insert: a concurrent start() has either loaded
        # this row already or installed the schedule it belongs on.
        self._schedule.put(seq)

    def start(self) -> None:
        """Take up every unfinished call, then start the workers."""
        if self._run is not None:
            raise RuntimeError("the queue is already started; stop() it first")

        # A new token per start: a worker of an earlier run that is still
        # stuck in its invocation can no longer write over these calls.
        run = _Run(token=uuid.uuid4().hex)
        self._schedule = run.schedule
        recovered = self._ledger.recover()
        for seq in self._ledger.unfinished():
            run.schedule.put(seq)
        if recovered:
            self.log.info("recovered calls=%d interrupted by a stop", recovered)

        for number in range(self.workers):
            thread = threading.Thread(
                target=self._work,
                args=(run,),
                name=f"localfaas-queue-{number}",
                daemon=True,
            )
            run.threads.append(thread)
            thread.start()
        self._run = run

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the workers; return whether all ended within ``timeout``.

        A call being invoked finishes if it can; otherwise it stays on disk
        and the next start() invokes it again. Callbacks not yet delivered
        wait for the next start() too.
        """
        run, self._run = self._run, None
        if run is None:
            return True

        run.stopping.set()
        run.schedule.close()
        deadline = time.monotonic() + timeout
        for thread in run.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

        busy = sum(thread.is_alive() for thread in run.threads)
        if busy:
            self.log.warning(
                "stopped workers_busy=%d; their calls run again at next start",
                busy,
            )
        return busy == 0

    def close(self, timeout: float = 5.0) -> None:
        """Stop, then release the database."""
        self.stop(timeout)
        self._ledger.close()

    def stats(self) -> dict[str, int]:
        """How many calls are in each state."""
        return self._ledger.counts()

    def lookup(self, call_id: str) -> CallRecord | None:
        """The latest call with ``call_id``, or None if there is none."""
        return self._ledger.lookup(call_id)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is pending, running or awaiting its callback."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.stats()
            if not counts["pending"] + counts["running"] + counts["invoked"]:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _work(self, run: _Run) -> None:
        ledger = _Ledger(self.path)
        try:
            while (seq := run.schedule.take()) is not None:
                self._process(ledger, run, seq)
        finally:
            ledger.close()

    def _process(self, ledger: _Ledger, run: _Run, seq: int) -> None:
        try:
            claim = ledger.claim(seq, run.token)
            if claim is None:
                return
            if claim.result is None:
                claim = self._invoke(ledger, run, claim)
            if claim is not None and claim.call.callback_url is not None:
                self._call_back(ledger, run, claim)
        except Exception:
            # The call keeps its state and owner; the next start() takes
            # it up again, so one broken call cannot stop a worker.
            self.log.exception("worker error seq=%d", seq)

    def _invoke(self, ledger: _Ledger, run: _Run, claim: _Claim) -> _Claim | None:
        result = self._invoke_logged(claim.call)
        if ledger.record(claim.seq, run.token, result, claim.call):
            return replace(claim, result=result)

        self.log.warning(
            "result dropped function=%s call_id=%s: the call was taken over "
            "by a later start",
            claim.call.function,
            claim.call.call_id,
        )
        return None

    def _invoke_logged(self, call: QueuedCall) -> InvocationResult:
        started = time.monotonic()
        try:
            result = self._invoke_call(call)
        except Exception:
            # The worker could not reach the function: OpenFaaS reports
            # 503 to the callback with an empty body (contract §10.4).
            result = InvocationResult(503, [], b"", time.monotonic() - started)
            self.log.exception(
                "invoked function=%s call_id=%s status=503 duration=%f",
                call.function,
                call.call_id,
                result.duration,
            )
            return result

        self.log.info(
            "invoked function=%s call_id=%s status=%d duration=%f",
            call.function,
            call.call_id,
            result.status,
            result.duration,
        )
        return result

    def _call_back(self, ledger: _Ledger, run: _Run, claim: _Claim) -> None:
        if run.stopping.is_set():
            ledger.release(claim.seq, run.token)
            return

        attempt = ledger.count_attempt(claim.seq, run.token)
        outcome = self._post_logged(claim, attempt)
        if outcome.delivered:
            ledger.finish(claim.seq, run.token, "done", None)
            return

        if not outcome.retry or attempt > self.callback_retries:
            reason = f"callback failed after {attempt} attempt(s): "
            ledger.finish(claim.seq, run.token, "failed", reason + outcome.reason)
            return

        ledger.release(claim.seq, run.token)
        run.schedule.put(claim.seq, self.backoff * 2 ** (attempt - 1))

    def _post_logged(self, claim: _Claim, attempt: int) -> _Outcome:
        call, result = claim.call, claim.result
        # _process only calls back an invoked call that asked for it.
        assert call.callback_url is not None
        assert result is not None
        started = time.monotonic()
        outcome = _post(
            call.callback_url,
            _callback_headers(call, result),
            result.body,
            self.callback_timeout,
        )

        level = logging.INFO if outcome.delivered else logging.WARNING
        self.log.log(
            level,
            "callback function=%s call_id=%s attempt=%d/%d status=%s "
            "duration=%f url=%s%s",
            call.function,
            call.call_id,
            attempt,
            self.callback_retries + 1,
            outcome.status,
            time.monotonic() - started,
            _loggable(call.callback_url),
            "" if outcome.delivered else f" reason={outcome.reason}",
        )
        return outcome


class _Schedule:
    """Call numbers waiting for a worker, each due at a monotonic time."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._closed = False

    def put(self, seq: int, delay: float = 0.0) -> None:
        with self._ready:
            heapq.heappush(self._heap, (time.monotonic() + delay, seq))
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def take(self) -> int | None:
        """The next due call, or None once closed."""
        with self._ready:
            while not self._closed:
                if not self._heap:
                    self._ready.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)[1]
                self._ready.wait(wait)
            return None


@dataclass
class _Run:
    """What one start() shares with its workers."""

    token: str
    schedule: _Schedule = field(default_factory=_Schedule)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


@dataclass(eq=False)
class _Arrival:
    """A call waiting for the commit that accepts it, and how that went."""

    call: QueuedCall
    settled: bool = False
    seq: int | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class _Claim:
    """A call a worker holds, with its result once it has one."""

    seq: int
    call: QueuedCall
    result: InvocationResult | None


class _Ledger:
    """The calls on disk, one sqlite3 connection, safe across threads.

    Why sqlite3: it is in the standard library, and a committed
    transaction survives a crash, which a folder of files only does with
    careful renames and fsyncs. WAL mode lets stats() read while a worker
    writes, and makes a commit one append to the log.

    Only the commit that accepts a call is synced to disk (FULL), so a 202
    stays true after a power cut too; the sync also carries every commit
    before it. The workers' bookkeeping commits are not (NORMAL; a killed
    process loses none of them, only a power cut can): at worst a call
    runs again after a power cut, as OpenFaaS's queue worker may run one
    twice (gateway-contract.md §10.3). Syncing every commit made the
    ledger's lock, four fsyncs per call, the limit on accepted calls.
    """

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        # Guards only the list of calls waiting to be inserted.
        self._arrivals = threading.Lock()
        self._waiting: list[_Arrival] = []
        self._db = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, call: QueuedCall) -> int:
        """Insert ``call`` and return its number once it is on disk.

        Calls that arrive while a commit is being synced wait for it, and
        the next caller to get the lock commits them all at once: one
        fsync for every 202 that came in meanwhile (group commit).
        """
        arrival = _Arrival(call)
        with self._arrivals:
            self._waiting.append(arrival)
        with self._lock:
            if not arrival.settled:
                with self._arrivals:
                    batch, self._waiting = self._waiting, []
                self._insert(batch)
        if arrival.error is not None:
            raise arrival.error
        assert arrival.seq is not None
        return arrival.seq

    def _insert(self, batch: list[_Arrival]) -> None:
        try:
            with self._synced():
                self._db.execute("BEGIN")
                try:
                    seqs = [self._insert_one(arrival.call) for arrival in batch]
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except (OSError, sqlite3.Error) as exc:
            # A full or failing disk: none of the batch was accepted.
            for arrival in batch:
                arrival.error, arrival.settled = exc, True
            return
        for arrival, seq in zip(batch, seqs, strict=True):
            arrival.seq, arrival.settled = seq, True

    def _insert_one(self, call: QueuedCall) -> int:
        cursor = self._db.execute(
            "INSERT INTO calls (call_id, function, path, query, method,"
            " headers, body, callback_url, accepted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call.call_id,
                call.function,
                call.path,
                call.query,
                call.method,
                json.dumps(call.headers),
                call.body,
                call.callback_url,
                call.accepted_at,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @contextmanager
    def _synced(self) -> Iterator[None]:
        # Set between transactions (the lock is held), as sqlite requires.
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def recover(self) -> int:
        """Free every claim; interrupted invocations become pending again."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE calls SET state = 'pending', owner = NULL"
                " WHERE state = 'running'"
            )
            self._db.execute("UPDATE calls SET owner = NULL WHERE state = 'invoked'")
        return cursor.rowcount

    def unfinished(self) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq FROM calls WHERE state IN ('pending', 'invoked')"
                " ORDER BY seq"
            ).fetchall()
        return [int(row[0]) for row in rows]

    def claim(self, seq: int, owner: str) -> _Claim | None:
        """Take a pending call to invoke, or an invoked one to call back."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT * FROM calls WHERE seq = ? AND owner IS NULL"
                    " AND state IN ('pending', 'invoked')",
                    (seq,),
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE calls SET owner = ?, state = CASE state"
                        " WHEN 'pending' THEN 'running' ELSE state END"
                        " WHERE seq = ?",
                        (owner, seq),
                    )
            finally:
                self._db.execute("COMMIT")
        return None if row is None else _claim_from(row)

    def record(
        self, seq: int, owner: str, result: InvocationResult, call: QueuedCall
    ) -> bool:
        """Keep the function's answer, unless the call was taken over."""
        state = "done" if call.callback_url is None else "invoked"
        with self._lock:
            cursor = self._db.execute(
                "UPDATE calls SET state = ?, status = ?, result_headers = ?,"
                " result_body = ?, duration = ? WHERE seq = ? AND owner = ?"
                " AND state = 'running'",
                (
                    state,
                    result.status,
                    json.dumps(result.headers),
                    result.body,
                    result.duration,
                    seq,
                    owner,
                ),
            )
            recorded = cursor.rowcount == 1
            if recorded and state == "done":
                self._drop_bodies(seq)
        return recorded

    def count_attempt(self, seq: int, owner: str) -> int:
        """Count a callback attempt before it is made, so a crash counts."""
        with self._lock:
            row = self._db.execute(
                "UPDATE calls SET attempts = attempts + 1"
                " WHERE seq = ? AND owner = ? RETURNING attempts",
                (seq, owner),
            ).fetchone()
        if row is None:
            raise RuntimeError(f"call seq={seq} was taken over by a later start")
        return int(row[0])

    def release(self, seq: int, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE calls SET owner = NULL WHERE seq = ? AND owner = ?",
                (seq, owner),
            )

    def finish(self, seq: int, owner: str, state: str, reason: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE calls SET state = ?, reason = ?, owner = NULL"
                " WHERE seq = ? AND owner = ?",
                (state, reason, seq, owner),
            )
            if state == "done":
                self._drop_bodies(seq)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM calls GROUP BY state"
            ).fetchall()
        counts = dict.fromkeys(STATES, 0)
        counts.update({str(state): int(count) for state, count in rows})
        return counts

    def lookup(self, call_id: str) -> CallRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT call_id, function, state, status, attempts, reason"
                " FROM calls WHERE call_id = ? ORDER BY seq DESC LIMIT 1",
                (call_id,),
            ).fetchone()
        return None if row is None else CallRecord(*row)

    def _drop_bodies(self, seq: int) -> None:
        # A delivered call's bodies are of no more use and can be large;
        # a failed call keeps them for whoever looks into it.
        self._db.execute(
            "UPDATE calls SET body = x'', result_body = NULL WHERE seq = ?",
            (seq,),
        )


def _claim_from(row: sqlite3.Row) -> _Claim:
    call = QueuedCall(
        call_id=row["call_id"],
        function=row["function"],
        path=row["path"],
        query=row["query"],
        method=row["method"],
        headers=_pairs(row["headers"]),
        body=row["body"],
        callback_url=row["callback_url"],
        accepted_at=row["accepted_at"],
    )
    if row["status"] is None:
        return _Claim(row["seq"], call, None)

    result = InvocationResult(
        status=row["status"],
        headers=_pairs(row["result_headers"]),
        body=row["result_body"] or b"",
        duration=row["duration"],
    )
    return _Claim(row["seq"], call, result)


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(name, value) for name, value in json.loads(text)]


@dataclass(frozen=True)
class _Outcome:
    """What one callback attempt came to."""

    delivered: bool
    retry: bool
    status: int | None
    reason: str


def _callback_headers(
    call: QueuedCall, result: InvocationResult
) -> list[tuple[str, str]]:
    """The function's response headers, then the worker's (contract §10.4)."""
    headers = [
        (name, value)
        for name, value in result.headers
        if name.lower() not in _NOT_FORWARDED
    ]
    for name, value in (
        ("X-Function-Status", str(result.status)),
        ("X-Function-Name", call.function),
        ("X-Duration-Seconds", f"{result.duration:f}"),
        ("X-Call-Id", call.call_id),
    ):
        headers = [pair for pair in headers if pair[0].lower() != name.lower()]
        headers.append((name, value))

    headers.append(("Content-Length", str(len(result.body))))
    if not any(name.lower() == "user-agent" for name, _ in headers):
        headers.append(("User-Agent", USER_AGENT))
    return headers


def _post(
    url: str, headers: list[tuple[str, str]], body: bytes, timeout: float
) -> _Outcome:
    """POST once, without following a redirect."""
    parts = urlsplit(url)
    connection = _connection(parts, timeout)
    try:
        connection.putrequest("POST", _target(parts), skip_accept_encoding=True)
        for name, value in _with_userinfo(headers, parts):
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        response.read(65_536)
    except ValueError as exc:
        # http.client refuses a header value it cannot send: asking again
        # would be refused the same way.
        return _Outcome(False, False, None, f"cannot send: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        return _Outcome(False, True, None, _error_text(exc))
    finally:
        connection.close()

    return _judge(response.status, response.getheader("Location"))


def _judge(status: int, location: str | None) -> _Outcome:
    if 200 <= status < 300:
        return _Outcome(True, False, status, "")
    if 300 <= status < 400:
        # CE's worker follows redirects and loses the body on the way
        # (openfaas/nats-queue-worker#102); a redirect is a receiver
        # misconfiguration that asking again will not fix.
        reason = f"{status} redirect to {location!r} not followed"
        return _Outcome(False, False, status, reason)
    retry = status >= 500 or status in _RETRY_STATUSES
    return _Outcome(False, retry, status, f"receiver answered {status}")


def _connection(parts: SplitResult, timeout: float) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme.lower() == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=context
        )
    return http.client.HTTPConnection(host, parts.port, timeout=timeout)


def _target(parts: SplitResult) -> str:
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return quote(target, safe=_TARGET_SAFE)


def _with_userinfo(
    headers: list[tuple[str, str]], parts: SplitResult
) -> list[tuple[str, str]]:
    """Add Basic auth from ``user:password@`` in the URL, as Go's client does."""
    if parts.username is None:
        return headers
    if any(name.lower() == "authorization" for name, _ in headers):
        return headers

    user = unquote(parts.username)
    password = unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return [*headers, ("Authorization", f"Basic {token}")]


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _loggable(url: str) -> str:
    """The URL without user info or query, which may hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _url_problem(url: str) -> str | None:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return "net/url: invalid control character in URL"

    scheme, colon, _ = url.partition(":")
    if not colon or not _is_scheme(scheme):
        return _no_scheme_problem(url)
    if scheme.lower() not in ("http", "https"):
        return f"unsupported scheme {_go_quote(scheme)}; use http:// or https://"

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - the property raises for a bad port
    except ValueError as exc:
        return str(exc)
    return _host_problem(parts.hostname or "")


def _is_scheme(text: str) -> bool:
    """RFC 3986 §3.1: a letter, then letters, digits, "+", "-" or "."."""
    return (
        text[:1].isascii()
        and text[:1].isalpha()
        and all(_is_scheme_char(char) for char in text)
    )


def _is_scheme_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "+-.")


def _no_scheme_problem(url: str) -> str:
    # Go reads such a URL as a relative path; a colon in its first
    # segment is then the error OpenFaaS shows for "ht tp://..." (§10.1).
    if url.startswith(":"):
        return "missing protocol scheme"
    if ":" in url.split("/", 1)[0]:
        return "first path segment in URL cannot contain colon"
    return "no scheme; give an absolute http:// or https:// URL"


def _host_problem(host: str) -> str | None:
    if not host:
        return "no host; give the receiver as http://<host>:<port>/<path>"
    for char in host:
        if not (char.isascii() and (char.isalnum() or char in "-._~:")):
            return f"invalid character {_go_quote(char)} in host name"
    return None


def _go_quote(text: str) -> str:
    """Quote like Go's %q, which OpenFaaS's error texts use."""
    return json.dumps(text, ensure_ascii=False)
