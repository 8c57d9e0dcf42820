"""What the gateway costs: a hello function direct and through /function/.

    python benchmarks/gateway.py [--seconds 5] [--rounds 3]

Runs a real ``localfaas up`` on a one-function stack, finds the function's
own port from its log line, and loads both with wrk, alternating, at 8 and
64 connections. Ratios printed (shared/reference/performance.md): the Go
OpenFaaS gateway keeps 0.65-0.75 of direct throughput here, a naive Python
proxy about half of that; the target is >= 0.65, with added p50 <= 1 ms at
one connection. Also: async calls accepted per second, and how long a hot
reload takes to serve new code while under load (p95 over several saves).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _harness import Target, alternate, free_port, lua_post, report, require_wrk

HELLO = """
VERSION = "v0"


def handle(event, context):
    return {"statusCode": 200, "body": VERSION}
"""

STACK = """
version: 1.0
provider:
  name: openfaas
functions:
  hello:
    lang: python3-http-auth
    handler: ./hello
    image: bench/hello:latest
    environment:
      auth_scheme: none
"""


def start_emulator(project: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    log = (project / "emulator.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-m", "localfaas", "up", "--port", str(port), *extra],
        cwd=project,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 300
    while "Press Ctrl-C to stop." not in (project / "emulator.log").read_text():
        if child.poll() is not None or time.monotonic() > deadline:
            sys.exit((project / "emulator.log").read_text())
        time.sleep(0.2)
    return child


def function_port(project: Path) -> int:
    text = (project / "emulator.log").read_text()
    ports = re.findall(r"hello: .*serving on 127\.0\.0\.1:(\d+)", text)
    return int(ports[-1])


def admin_auth(project: Path) -> str:
    folder = project / ".localfaas" / "credentials"
    user = (folder / "basic-auth-user").read_text().strip()
    password = (folder / "basic-auth-password").read_text().strip()
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def reload_latency(project: Path, gateway: str, saves: int) -> list[float]:
    """Seconds from saving the handler to the first answer with new code."""
    handler = project / "hello" / "handler.py"
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{gateway}/function/hello", timeout=5).read()

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    latencies = []
    try:
        for number in range(1, saves + 1):
            saved = time.monotonic()
            handler.write_text(HELLO.replace('"v0"', f'"v{number}"'))
            while True:
                with urllib.request.urlopen(f"{gateway}/function/hello") as reply:
                    if reply.read().decode() == f"v{number}":
                        break
            latencies.append(time.monotonic() - saved)
            time.sleep(0.5)
    finally:
        stop.set()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--saves", type=int, default=10)
    args = parser.parse_args()
    binary = require_wrk()

    project = Path(tempfile.mkdtemp(prefix="localfaas-bench-gw-"))
    (project / "stack.yml").write_text(STACK)
    (project / "hello").mkdir()
    (project / "hello" / "handler.py").write_text(HELLO)
    port = free_port()
    emulator = start_emulator(project, port)
    ok = True
    try:
        gateway = f"http://127.0.0.1:{port}"
        direct_url = f"http://127.0.0.1:{function_port(project)}/"
        for connections in (1, 8, 64):
            direct = Target("direct", direct_url)
            through = Target("gateway", f"{gateway}/function/hello")
            alternate(
                binary,
                [direct, through],
                connections=connections,
                seconds=args.seconds,
                rounds=args.rounds,
            )
            goal = None if connections == 1 else 0.65
            ok &= report(
                f"gateway, {connections} connection(s)",
                [("through /function/ / direct", through, direct, goal)],
            )
            if connections == 1:
                added = through.p50 - direct.p50
                print(f"  added p50 at 1 connection: {added:.2f} ms (target <= 1 ms)")

        accepted = Target(
            "async",
            f"{gateway}/async-function/hello",
            lua_post(b"x", {"Content-Type": "text/plain"}),
        )
        alternate(binary, [accepted], connections=8, seconds=args.seconds, rounds=1)
        print(f"\nasync calls accepted per second (8 connections): {accepted.rps:,.0f}")
        ok &= accepted.errors == 0

        latencies = reload_latency(project, gateway, args.saves)
        p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else 0
        print(
            f"reload under load, save to new code served: median "
            f"{statistics.median(latencies):.3f} s, p95 {p95:.3f} s "
            f"over {len(latencies)} saves (target: within 1 s)"
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=60)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
