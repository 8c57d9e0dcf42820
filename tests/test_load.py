"""Sustained load through ``/function/``: no errors, and flat gateway memory.

64 clients call ``/function/echo`` on a real gateway without pause, with
``wrk`` when it is installed (a C client leaves the two cores to the
gateway) and with httpx threads otherwise. Meanwhile the gateway's resident
memory (``VmRSS`` in ``/proc/<pid>/status``) is sampled; a leak per request
shows as growth between the first and the last third of the run.

The default suite runs 5 s; ``pytest -m long`` runs 30 s. Figures go to
stdout (``pytest -s``) and to ``.localfaas-results/load-<seconds>s.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import pytest
from emulator_support import ROOT, Emulator, make_project, start

CLIENTS = 64
RESULTS = ROOT / ".localfaas-results"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A gateway serving the echo function, without the file watcher."""
    folder = tmp_path_factory.mktemp("load")
    running = start(make_project(folder / "p"), folder / "cache", "--no-watch")
    yield running
    running.stop()


@dataclass
class Run:
    """What one load run did and what the gateway's memory did meanwhile."""

    client: str
    seconds: float
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    rss_kib: list[int] = field(default_factory=list)

    def thirds(self) -> tuple[int, int]:
        """The highest RSS in the first and in the last third of the run."""
        third = max(1, len(self.rss_kib) // 3)
        return max(self.rss_kib[:third]), max(self.rss_kib[-third:])


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1))


def sample(pid: int, run: Run, stop: threading.Event) -> None:
    """Append the RSS of ``pid`` four times a second until ``stop``."""
    while not stop.wait(0.25):
        run.rss_kib.append(rss_kib(pid))


def with_wrk(wrk: str, url: str, run: Run) -> None:
    """Drive ``url`` with wrk; non-2xx answers and socket errors count."""
    output = subprocess.run(
        [wrk, f"-c{CLIENTS}", "-t2", f"-d{run.seconds:.0f}s", "--timeout", "20s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    run.requests = _count(r"(\d+) requests in", output)
    kinds = {"non-2xx": _count(r"Non-2xx or 3xx responses: (\d+)", output)}
    sockets = re.search(
        r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets:
        names = ("connect", "read", "write", "timeout")
        kinds |= dict(zip(names, map(int, sockets.groups()), strict=True))
    run.error_kinds = {kind: n for kind, n in kinds.items() if n}
    run.errors = sum(run.error_kinds.values())


def _count(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def with_threads(url: str, run: Run) -> None:
    """Drive ``url`` from 64 httpx threads, one keep-alive client each."""
    deadline = time.monotonic() + run.seconds
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=20) as http:
            while time.monotonic() < deadline:
                try:
                    kind = None if http.get(url).status_code == 200 else "status"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                with lock:
                    run.requests += 1
                    if kind:
                        run.error_kinds[kind] = run.error_kinds.get(kind, 0) + 1
                        run.errors += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def load(emulator: Emulator, seconds: float) -> Run:
    """Warm up, then run 64 clients for ``seconds`` while sampling RSS."""
    url = f"{emulator.url}/function/echo"
    # A short warm-up first, so allocator and import growth at the start
    # does not read as a leak.
    drive(url, Run("", 2))

    run = Run("wrk" if shutil.which("wrk") else "httpx threads", seconds)
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(emulator.process.pid, run, stop))
    sampler.start()
    try:
        drive(url, run)
    finally:
        stop.set()
        sampler.join()

    record(run)
    return run


def drive(url: str, run: Run) -> None:
    """Load ``url`` with wrk if installed, else with httpx threads."""
    wrk = shutil.which("wrk")
    if wrk is None:
        with_threads(url, run)
        return
    with_wrk(wrk, url, run)


def record(run: Run) -> None:
    """Print the figures and keep them for SECURITY.md."""
    first, last = run.thirds()
    print(
        f"\nload: {run.requests} requests from {CLIENTS} clients ({run.client}) "
        f"in {run.seconds:.0f}s, {run.errors} errors, gateway RSS max "
        f"{first} KiB (first third) -> {last} KiB (last third)"
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"load-{run.seconds:.0f}s.json"
    path.write_text(json.dumps(asdict(run), indent=2) + "\n")


def check(run: Run) -> None:
    """Zero errors, and the last third's RSS peak within 15% of the first's."""
    assert run.requests > 0
    assert run.errors == 0, run.error_kinds
    first, last = run.thirds()
    assert last <= first * 1.15, (first, last, run.rss_kib)


def test_short_load_has_no_errors_and_flat_memory(emulator: Emulator) -> None:
    """5 s of 64 clients: every call 200, gateway RSS within 15%."""
    check(load(emulator, 5))


@pytest.mark.long
def test_sustained_load_has_no_errors_and_flat_memory(emulator: Emulator) -> None:
    """30 s of 64 clients: every call 200, gateway RSS within 15%."""
    check(load(emulator, 30))
