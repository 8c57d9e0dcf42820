"""The runtime's log writer: every line arrives, in order, formatted as
logged, even when the caller changes its arguments or stderr is not read."""

from __future__ import annotations

import io
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from faas_runtime._logs import FORMAT, LogWriter


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, LogWriter, io.StringIO]]:
    """A logger of its own whose lines go through a started writer."""
    stream = io.StringIO()
    writer = LogWriter(stream, window=0.005)
    writer.start()
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = writer.handler()
    logger.addHandler(handler)
    yield logger, writer, stream
    logger.removeHandler(handler)
    writer.close()


def test_lines_from_many_threads_all_arrive_in_each_threads_order(logged) -> None:
    logger, writer, stream = logged

    def emit(thread: int) -> None:
        for number in range(500):
            logger.info("thread=%d line=%d", thread, number)

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 * 500
    for thread in range(8):
        mine = [line for line in lines if f"thread={thread} " in line]
        assert [int(line.rsplit("=", 1)[1]) for line in mine] == list(range(500))
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    shape = rf"{stamp} INFO {logger.name} thread=\d line=\d+"
    assert all(re.fullmatch(shape, line) for line in lines), lines[:3]


def test_arguments_changed_after_the_call_are_shown_as_they_were(logged) -> None:
    logger, writer, stream = logged
    seen = ["first"]
    logger.info("seen %s", seen)
    seen.append("later")
    writer.close()
    assert stream.getvalue().rstrip().endswith("seen ['first']")


def test_a_traceback_is_written_once_with_its_line(logged) -> None:
    logger, writer, stream = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("handler failed")
    writer.close()
    text = stream.getvalue()
    assert "handler failed\nTraceback" in text
    assert text.count("ValueError: boom") == 1


def test_a_bad_call_leaves_later_lines_alone(logged) -> None:
    logger, writer, stream = logged
    # Made by hand: pytest's own capture handler would raise on it first.
    bad = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, "number %d", ("x",), None
    )
    writer.put(bad)
    logger.info("still here")
    writer.close()
    lines = stream.getvalue().splitlines()
    assert "unformattable log call" in lines[0]
    assert lines[1].endswith("still here")


def test_lines_after_close_are_written_by_their_caller(logged) -> None:
    logger, writer, stream = logged
    writer.close()
    logger.info("after the end")
    assert stream.getvalue().rstrip().endswith("after the end")


def test_a_backlog_nobody_writes_is_dropped_and_counted() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, backlog=5)
    logger = logging.getLogger("test-logs-backlog")
    logger.propagate = False
    logger.addHandler(writer.handler())
    logger.setLevel(logging.INFO)
    # Not started yet: nothing drains the queue.
    for number in range(12):
        logger.info("line %d", number)
    assert writer.dropped == 7
    writer.start()
    writer.close()
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines[:5]] == list("01234")
    assert lines[5] == "7 log line(s) dropped: stderr is not read"


def test_a_runtime_writes_its_request_lines_soon_and_its_last_ones_at_exit(
    function_process,
) -> None:
    """A request's line shows within the window, not at exit; SIGTERM still
    gets every queued line out, up to "stopped"."""
    fn = function_process("def handle(event, context):\n    return 'ok'\n").start(
        auth_scheme="none"
    )
    process = fn.process
    assert process is not None
    assert process.stdout is not None
    httpx.get(f"{fn.url}/", headers={"X-Call-Id": "soon-1"})

    seen: list[bytes] = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(process.stdout.readline, b"")), daemon=True
    )
    reader.start()
    deadline = time.monotonic() + 2
    while not any(b"call_id=soon-1" in line for line in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)

    for number in range(200):
        httpx.get(f"{fn.url}/", headers={"X-Call-Id": f"last-{number}"})
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    reader.join(5)
    text = b"".join(seen).decode()
    assert all(f"call_id=last-{number}\n" in text for number in range(200))
    assert text.rstrip().endswith("INFO faas_runtime stopped")


def test_an_embedding_programs_logging_is_left_alone() -> None:
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, format='mine %(message)s',"
        " level=logging.INFO)\n"
        "from faas_runtime._server import configure_logging\n"
        "configure_logging()\n"
        "logging.getLogger('x').info('hello')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == "mine hello\n"


def test_requests_waiting_for_a_thread_do_not_fill_the_log(function_process) -> None:
    """waitress's "Task queue depth" warning is noise in a function's log."""
    fn = function_process(
        "import time\n\ndef handle(event, context):\n    time.sleep(0.1)\n"
    ).start(auth_scheme="none", waitress_threads="2")

    def call(number: int) -> int:
        return httpx.get(f"{fn.url}/", timeout=30).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(call, range(32))) == {200}
    output = fn.stop()
    assert output.count("request method=GET") == 32
    assert "queue depth" not in output.lower()


def test_the_time_text_is_loggings_own_across_seconds() -> None:
    """The writer makes the date once a second; each line still shows its
    own time, as logging's default formatter would."""
    writer = LogWriter(io.StringIO())
    plain = logging.Formatter(FORMAT)
    start = time.time()
    for offset in (0.0, 0.25, 0.999, 1.0, 1.5, 61.0, 3600.2):
        record = logging.makeLogRecord({"msg": "m", "levelname": "INFO"})
        record.created = start + offset
        record.msecs = (record.created - int(record.created)) * 1000
        assert writer.formatter.format(record) == plain.format(record)
