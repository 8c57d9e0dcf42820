"""Shared parts of the benchmarks: servers in subprocesses, wrk, ratios.

Absolute requests per second move by a third from run to run on the test
machines; ratios against a baseline measured in the same run do not, so
every benchmark alternates its targets round by round and reports ratios.
A run with any failed request is a failed run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        print("installing wrk with apt-get...", file=sys.stderr)
        apt = shutil.which("apt-get") or "apt-get"
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install wrk")
    return found


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready")


@contextmanager
def process(
    argv: list[str], env: dict[str, str], cwd: Path, ready: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; its output is discarded."""
    child = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(ready)
        yield child
    finally:
        child.kill()
        child.wait()


def function_folder(handler: str) -> Path:
    """A template build folder with ``handler`` as function/handler.py."""
    folder = Path(tempfile.mkdtemp(prefix="localfaas-bench-"))
    app = folder / "app"
    shutil.copytree(ROOT / "template" / "python3-http-auth", app)
    (app / "function" / "handler.py").write_text(handler)
    (app / "function" / "__init__.py").touch()
    (folder / "secrets").mkdir()
    return app


@dataclass
class Result:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Target:
    """A URL to load, and what wrk sends to it."""

    name: str
    url: str
    script: str | None = None
    results: list[Result] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.results)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.results)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(binary: str, target: Target, connections: int, seconds: float) -> Result:
    """Load ``target`` for ``seconds`` and parse wrk's summary."""
    argv = [binary, "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency"]
    if target.script:
        argv += ["-s", target.script]
    output = subprocess.run(
        [*argv, target.url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    errors = 0
    for match in re.finditer(r"(connect|read|write|timeout) (\d+)", output):
        errors += int(match.group(2))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Result(rps, latency.get("50", 0.0), latency.get("99", 0.0), errors)


def alternate(
    binary: str,
    targets: list[Target],
    *,
    connections: int,
    seconds: float,
    rounds: int,
) -> None:
    """Run every target once per round, so drift hits them all alike."""
    for number in range(rounds):
        for target in targets:
            target.results.append(wrk(binary, target, connections, seconds))
        print(f"  round {number + 1}/{rounds} done", file=sys.stderr)


def lua_post(body: bytes, headers: dict[str, str]) -> str:
    """A wrk script that POSTs ``body`` with ``headers``; returns its path."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = {_lua_string(value.encode())}')
    with tempfile.NamedTemporaryFile(
        "w", suffix=".lua", delete=False, prefix="localfaas-bench-"
    ) as script:
        script.write("\n".join(lines) + "\n")
    return script.name


def _lua_string(raw: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in raw) + '"'


def report(title: str, rows: list[tuple[str, Target, Target, float | None]]) -> bool:
    """Print each ratio against its baseline; False if any run had errors.

    The ratio is the median of the rounds' own ratios: a round runs target
    and baseline back to back, so a slow spell of the machine hits both,
    where medians taken per target would pair runs minutes apart.
    """
    print(f"\n{title}")
    ok = True
    for label, target, baseline, goal in rows:
        ratios = [
            mine.rps / theirs.rps
            for mine, theirs in zip(target.results, baseline.results, strict=True)
        ]
        ratio = statistics.median(ratios)
        spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
        verdict = "" if goal is None else (" ok" if ratio >= goal else " BELOW")
        goal_text = "" if goal is None else f" (target >= {goal:.2f}{verdict})"
        print(
            f"  {label}: {ratio:.2f}{goal_text}, {spread}   "
            f"[{target.rps:,.0f} vs {baseline.rps:,.0f} req/s; "
            f"p50 {target.p50:.2f} vs {baseline.p50:.2f} ms, "
            f"p99 {target.p99:.2f} vs {baseline.p99:.2f} ms; "
            f"errors {target.errors + baseline.errors}]"
        )
        ok = ok and target.errors + baseline.errors == 0
    return ok
