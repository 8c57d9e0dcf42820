"""A real emulator in a subprocess, on a free port, for end-to-end tests."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import ROOT

ECHO = '''
import json
import os


def handle(event, context):
    """Describe the request, so tests can see what the gateway forwarded."""
    names = ["X-Call-Id", "X-Start-Time", "X-Forwarded-For", "X-Forwarded-Host",
             "User-Agent", "Content-Type", "Connection", "X-Custom"]
    return {
        "statusCode": 200,
        "body": {
            "method": event.method,
            "path": event.path,
            "query": event.environ.get("QUERY_STRING", ""),
            "body": event.body.decode(errors="replace"),
            "headers": {n: event.headers.get(n) for n in names},
            "pid": os.getpid(),
            "version": "v1",
        },
        "headers": {"X-From-Function": "yes"},
    }
'''

SIGNED = """
def handle(event, context):
    return f"signed by {event.auth.scheme}: {event.body.decode()}"
"""

STACK = """
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  echo:
    lang: python3-http-auth
    handler: ./echo
    image: ${REGISTRY:-test}/echo:latest
    environment:
      auth_scheme: none
  signed:
    lang: python3-http-auth
    handler: ./signed
    image: test/signed:latest
    environment:
      auth_scheme: hmac
    secrets:
      - payload-secret
"""


@dataclass
class Emulator:
    """A running ``localfaas up`` and the project it serves."""

    project: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        folder = self.project / ".localfaas" / "credentials"
        user = (folder / "basic-auth-user").read_text().strip()
        return user, (folder / "basic-auth-password").read_text().strip()

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def make_project(folder: Path) -> Path:
    """A stack with an echo function and an HMAC-signed one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stack.yml").write_text(STACK)
    for name, source in (("echo", ECHO), ("signed", SIGNED)):
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "handler.py").write_text(textwrap.dedent(source))
        (folder / name / "requirements.txt").write_text("")
    secrets = folder / ".secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    (secrets / "payload-secret").write_text("k")
    return folder


def start(project: Path, cache: Path, *extra: str, port: int = 0) -> Emulator:
    """``localfaas up`` in ``project``; waits until the gateway answers.

    Port 0 lets the emulator bind a free port itself (no race with other
    tests picking one); the port it got is read from its banner.
    """
    log = project / f"emulator-{next(_RUNS)}.log"
    env = {
        **os.environ,
        "LOCALFAAS_CACHE_DIR": str(cache),
        "XDG_DATA_HOME": str(cache / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "localfaas", "up", "--port", str(port), *extra],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    emulator = Emulator(project, port, process, log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited:\n{emulator.output()}")
        banner = _BANNER.search(emulator.output())
        if banner and "Press Ctrl-C to stop." in emulator.output():
            emulator.port = int(banner.group(1))
            return emulator
        time.sleep(0.2)
    emulator.stop()
    raise RuntimeError(f"emulator not ready:\n{emulator.output()}")


_RUNS = itertools.count(1)
_BANNER = re.compile(r"OpenFaaS gateway on https?://[^\s]+:(\d+)")


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".localfaas"))
    return target


__all__ = ["ROOT", "Emulator", "copy_project", "make_project", "start"]
