"""Log lines leave the request thread at once and reach stderr in batches.

Every request writes a line, as the watchdog does. Written by the request
thread itself, each line takes the stream's lock and a ``write()`` call, and
eight waitress threads queue behind both: measured, that alone cost the
hello function about a quarter of its throughput (``benchmarks/runtime.py``).
Here a request thread only makes the record and queues it; one writer
thread formats whatever has arrived and writes it with one call, at most
``WINDOW`` seconds after the first line of a batch.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# How long the writer waits for more lines before it writes a batch.
WINDOW = 0.02

# Lines queued and not yet written, past which new ones are dropped (and
# counted): a stderr nobody reads must not grow the process without end.
BACKLOG = 10_000

# Arguments that cannot change between the call and the writer's format.
_IMMUTABLE = (str, int, float, bool, bytes, type(None))


class LogWriter:
    """The writer thread and the handler that feeds it."""

    def __init__(
        self, stream: TextIO, *, window: float = WINDOW, backlog: int = BACKLOG
    ) -> None:
        self.stream = stream
        self.window = window
        self.backlog = backlog
        self.formatter = _Formatter(FORMAT)
        self.dropped = 0
        self.closed = False
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="log-writer", daemon=True
        )

    def handler(self) -> logging.Handler:
        return _Enqueue(self)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Write every queued line, then stop the thread.

        Lines logged after this are written at once, by their caller.
        """
        self.closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        # A line queued by a caller that saw the writer still open.
        self._write(record for record in self._drain() if record is not None)

    def put(self, record: logging.LogRecord) -> None:
        if self.closed:
            self._write([record])
            return
        if self._queue.qsize() >= self.backlog:
            self.dropped += 1
            return
        self._queue.put(record)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is not None:
                time.sleep(self.window)
            batch = [first, *self._drain()]
            self._write(record for record in batch if record is not None)
            if None in batch:
                return

    def _drain(self) -> list[logging.LogRecord | None]:
        taken = []
        while True:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                return taken

    def _write(self, records: Iterable[logging.LogRecord]) -> None:
        lines = [self._format(record) for record in records]
        if not lines and not self.dropped:
            return
        if self.dropped:
            lines.append(f"{self.dropped} log line(s) dropped: stderr is not read")
            self.dropped = 0
        try:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
        except (OSError, ValueError):
            # stderr closed or gone: nowhere left to say so.
            pass

    def _format(self, record: logging.LogRecord) -> str:
        try:
            return self.formatter.format(record)
        except Exception:
            # One bad call to the logger must not stop every later line.
            return f"unformattable log call from {record.name}: {record.msg!r}"


class _Formatter(logging.Formatter):
    """Makes the date-and-time text once a second, not once a line."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


class _Enqueue(logging.handlers.QueueHandler):
    """Hands records to the writer; formats now only what could change."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(queue.SimpleQueue())
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # A mutable argument or a traceback may change before the writer
        # runs; the usual case (numbers and strings) is formatted there.
        if record.exc_info or record.stack_info or not _immutable(record.args):
            record = super().prepare(record)
            # The text already holds it (Python 3.11 leaves it set).
            record.stack_info = None
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle() holds the handler's lock around emit(); the
        # queue is safe across threads already, and every request thread
        # would wait for that lock on every line.
        kept = self.filter(record)
        if isinstance(kept, logging.LogRecord):
            record = kept
        if kept:
            self.emit(record)
        return bool(kept)

    def enqueue(self, record: logging.LogRecord) -> None:
        self.writer.put(record)

    def close(self) -> None:
        # logging.shutdown(), which runs at exit, closes every handler.
        self.writer.close()
        super().close()


def _immutable(args: Any) -> bool:
    if isinstance(args, dict):
        args = args.values()
    return all(type(arg) in _IMMUTABLE for arg in args or ())
