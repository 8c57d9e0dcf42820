"""Container mode against process mode: /function/ throughput through each.

    python benchmarks/containers.py [--seconds 5] [--rounds 3]

Starts ``localfaas up`` and ``localfaas up --docker`` on the same one-function
stack, side by side, and loads ``/function/hello`` on both with wrk,
alternating. Prints container-mode throughput / process-mode throughput.
Needs a Docker engine (scripts/docker-engine); where no registry answers,
set LOCALFAAS_PYTHON_IMAGE (default here: the local base image that
scripts/base-image builds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _harness import Target, alternate, free_port, report, require_wrk
from gateway import HELLO, STACK, start_emulator


def project() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="localfaas-bench-mode-"))
    (folder / "stack.yml").write_text(STACK)
    (folder / "hello").mkdir()
    (folder / "hello" / "handler.py").write_text(HELLO)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    binary = require_wrk()
    os.environ.setdefault("LOCALFAAS_PYTHON_IMAGE", "localfaas/python-base:bookworm")

    process_port, docker_port = free_port(), free_port()
    print("starting both emulators (the image build takes a while)", file=sys.stderr)
    processes = start_emulator(project(), process_port)
    containers = start_emulator(project(), docker_port, "--docker")
    try:
        local = Target("process", f"http://127.0.0.1:{process_port}/function/hello")
        boxed = Target("docker", f"http://127.0.0.1:{docker_port}/function/hello")
        alternate(
            binary,
            [local, boxed],
            connections=args.connections,
            seconds=args.seconds,
            rounds=args.rounds,
        )
    finally:
        for child in (processes, containers):
            child.terminate()
            child.wait(timeout=120)

    ok = report(
        f"container mode vs process mode, {args.connections} connections",
        [("--docker / processes", boxed, local, None)],
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
