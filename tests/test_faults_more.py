"""More faults: functions that hang, die or outgrow their memory limit,
secrets that vanish, a plugin
that answers garbage, a callback aimed at the gateway, a full disk.

Each fault is real: a handler that sleeps, a replica killed by its pid, a
handler that fills 256 MiB under a 128Mi limit, a secret file removed under
a running runtime, a socket server writing nonsense, a tmpfs filled to the
last byte. Each test checks both the
answer to the faulty call and that the next calls are served again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import FunctionProcess
from emulator_support import ECHO, Emulator, start

STACK = """
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  echo:
    lang: python3-http-auth
    handler: ./echo
    image: test/echo:latest
    environment:
      auth_scheme: none
  stall:
    lang: python3-http-auth
    handler: ./stall
    image: test/stall:latest
    environment:
      auth_scheme: none
  count:
    lang: python3-http-auth
    handler: ./count
    image: test/count:latest
    environment:
      auth_scheme: none
  greedy:
    lang: python3-http-auth
    handler: ./greedy
    image: test/greedy:latest
    environment:
      auth_scheme: none
    limits:
      memory: 128Mi
"""

# Sleeps when asked to, after writing its pid where the test can find it.
STALL = """
import os
import time


def handle(event, context):
    if event.body == b"hang":
        with open({pidfile!r}, "w") as out:
            out.write(str(os.getpid()))
        time.sleep(3600)
    return "awake"
"""

# Asked to, fills 256 MiB (every page written) and holds it for a minute.
GREEDY = """
import time


def handle(event, context):
    if event.body == b"grow":
        held = b"x" * (256 << 20)
        time.sleep(60)
        return str(len(held))
    return "lean"
"""

COUNT = """
def handle(event, context):
    with open({ledger!r}, "a") as ledger:
        ledger.write(event.method + " " + event.path + "\\n")
    return "counted"
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the module's emulators."""
    return tmp_path_factory.mktemp("cache")


def lay_out(folder: Path) -> Path:
    """The project: echo, a function that can hang, a counting one."""
    handlers = {
        "echo": ECHO,
        "stall": STALL.format(pidfile=str(folder / "stall.pid")),
        "count": COUNT.format(ledger=str(folder / "ledger.txt")),
        "greedy": GREEDY,
    }
    for name, source in handlers.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "handler.py").write_text(textwrap.dedent(source))
        (folder / name / "requirements.txt").write_text("")
    (folder / "stack.yml").write_text(STACK)
    return folder


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> Iterator[Emulator]:
    """One gateway with a 2 s upstream timeout."""
    project = lay_out(tmp_path_factory.mktemp("faults") / "project")
    running = start(project, cache, "--upstream-timeout", "2s")
    yield running
    running.stop()


def eventually_ok(url: str, timeout: float = 60) -> httpx.Response:
    """Poll ``url`` until it answers 200 (a replica may be restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(url, content=b"ping", timeout=10)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200 again"
        time.sleep(0.2)


# -- functions that hang or die -----------------------------------------------


def test_function_that_never_answers_gets_502(emulator: Emulator) -> None:
    """A hung handler: 502 once the upstream timeout passes; others served."""
    started = time.monotonic()

    response = httpx.post(f"{emulator.url}/function/stall", content=b"hang", timeout=30)

    assert response.status_code == 502
    assert response.headers["x-call-id"]
    # Liveness, not speed: the 2 s deadline, not the handler's hour.
    assert time.monotonic() - started < 25
    assert httpx.get(f"{emulator.url}/function/echo").status_code == 200


def test_function_killed_mid_request(emulator: Emulator) -> None:
    """SIGKILL while a call is in flight: 5xx for it, then 200 again."""
    pidfile = emulator.project / "stall.pid"
    pidfile.unlink(missing_ok=True)
    answers: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{emulator.url}/function/stall", content=b"hang", timeout=30)
        )
    )
    caller.start()
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the handler never started"
        time.sleep(0.05)

    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    caller.join(timeout=30)

    assert answers, "the call never returned"
    assert 500 <= answers[0].status_code < 600
    assert eventually_ok(f"{emulator.url}/function/stall").text == "awake"
    assert httpx.get(f"{emulator.url}/function/echo").status_code == 200


def test_function_over_its_memory_limit_gets_502_then_serves(
    emulator: Emulator,
) -> None:
    """Past limits.memory: killed as OOMKilled, a 502 for the call, then 200."""
    url = f"{emulator.url}/function/greedy"

    response = httpx.post(url, content=b"grow", timeout=30)

    assert response.status_code == 502
    assert "over limits.memory 128Mi" in emulator.output()
    assert httpx.get(f"{emulator.url}/function/echo").status_code == 200
    assert eventually_ok(url).text == "lean"


# -- secrets changing under a running runtime ---------------------------------

TOKEN = "tok-faults-5e1d"
NAMED = """
def handle(event, context):
    return event.auth.subject
"""


@pytest.fixture
def tokened(
    function_process: Callable[..., FunctionProcess],
) -> tuple[FunctionProcess, Path]:
    """A bearer runtime and its token file."""
    fn = function_process(NAMED)
    path = fn.write_secret("api-tokens", f"ci {TOKEN}\n")
    fn.start(auth_scheme="bearer")
    return fn, path


def call(fn: FunctionProcess) -> httpx.Response:
    return httpx.get(fn.url, headers={"Authorization": f"Bearer {TOKEN}"})


def call_until(fn: FunctionProcess, status: int) -> httpx.Response:
    """Call until ``status`` comes back: a secret is re-checked once a second."""
    deadline = time.monotonic() + 10
    while (response := call(fn)).status_code != status:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)
    return response


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda path: path.unlink(), id="removed"),
        pytest.param(lambda path: path.write_text(""), id="emptied"),
        pytest.param(lambda path: path.write_text("\n \n"), id="blank-lines"),
    ],
)
def test_secret_fault_while_serving(
    tokened: tuple[FunctionProcess, Path], fault: Callable[[Path], object]
) -> None:
    """The token file goes bad: 500 (fail closed); put back: 200 again."""
    fn, path = tokened
    assert call(fn).status_code == 200

    fault(path)
    broken = call_until(fn, 500)
    path.write_text(f"ci {TOKEN}\n")

    assert TOKEN not in broken.text
    assert call_until(fn, 200).text == "ci"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a file whatever its mode (chmod 000)"
)
def test_unreadable_secret_fails_closed(tokened: tuple[FunctionProcess, Path]) -> None:
    """chmod 000 on the token file: 500; readable again: 200."""
    fn, path = tokened

    path.chmod(0)
    path.touch()
    call_until(fn, 500)
    path.chmod(0o600)
    path.touch()

    assert call_until(fn, 200).text == "ci"


# -- an auth plugin answering garbage -----------------------------------------


def serve_garbage(answer: bytes) -> tuple[str, socket.socket]:
    """A socket server that writes ``answer`` to each caller and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(answer)
                except OSError:
                    pass

    threading.Thread(target=loop, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/validate", server


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"\x00\xff garbage \r\n\r\n", id="nonsense"),
        pytest.param(b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", id="status-999"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", id="cut"),
        pytest.param(b"", id="hang-up"),
    ],
)
def test_auth_plugin_answering_garbage_is_500(
    tmp_path: Path, cache: Path, answer: bytes
) -> None:
    """A plugin that answers nonsense never lets a caller in: 500."""
    url, server = serve_garbage(answer)
    emulator = start(lay_out(tmp_path / "p"), cache, "--auth-proxy-url", url)
    try:
        refused = httpx.get(
            f"{emulator.url}/system/functions", auth=("ops", "x"), timeout=30
        )
        served = httpx.get(f"{emulator.url}/function/echo")
    finally:
        emulator.stop()
        server.close()

    assert refused.status_code == 500
    assert served.status_code == 200


# -- a callback aimed at the gateway itself -----------------------------------


def ledger(emulator: Emulator) -> list[str]:
    """Every request the counting function has served so far."""
    path = emulator.project / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def settle(emulator: Emulator, seconds: float) -> list[str]:
    """The ledger once it has stopped growing for ``seconds``."""
    lines = ledger(emulator)
    quiet_since = time.monotonic()
    deadline = quiet_since + 60
    while time.monotonic() - quiet_since < seconds:
        assert time.monotonic() < deadline, f"the ledger keeps growing: {lines}"
        time.sleep(0.2)
        now = ledger(emulator)
        if now != lines:
            lines, quiet_since = now, time.monotonic()
    return lines


@pytest.mark.parametrize("route", ["function", "async-function"])
def test_callback_to_the_gateway_itself_does_not_loop(
    emulator: Emulator, route: str
) -> None:
    """Callback to the gateway's own count: delivered once at most, no loop."""
    before = settle(emulator, 1)
    callback = f"{emulator.url}/{route}/count/callback"

    accepted = httpx.post(
        f"{emulator.url}/async-function/count/first",
        content=b"x",
        headers={"X-Callback-Url": callback},
    )

    assert accepted.status_code == 202
    new = settle(emulator, 3)[len(before) :]
    assert new[0] == "POST /first"
    # The callback may be delivered (one more call) or refused, never a
    # chain of calls calling back again.
    assert new[1:] in ([], ["POST /callback"]), new


# -- a full disk under the state folder ---------------------------------------


@pytest.fixture
def tiny_state(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the state folder (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("mount or umount is not on PATH")
    folder = tmp_path / "state"
    folder.mkdir()
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode()}")
    yield folder
    subprocess.run([umount, "-l", str(folder)], check=False)


def fill(folder: Path) -> None:
    """Write until the file system refuses another byte."""
    descriptor = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):
            try:
                while os.write(descriptor, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(descriptor)


def overfill(
    tmp_path: Path, cache: Path, state: Path
) -> tuple[list[httpx.Response], int, int]:
    """Fill the state folder under a gateway; async calls, a sync one, recovery."""
    emulator = start(lay_out(tmp_path / "p"), cache, "--state-dir", str(state))
    try:
        assert httpx.get(f"{emulator.url}/function/echo").status_code == 200
        fill(state)
        answers = [
            httpx.post(f"{emulator.url}/async-function/echo", content=b"x" * 50_000)
            for _ in range(20)
        ]
        served = httpx.get(f"{emulator.url}/function/echo").status_code
        (state / "filler").unlink()
        recovered = httpx.post(f"{emulator.url}/async-function/echo", content=b"x")
    finally:
        emulator.stop()
    return [r for r in answers if r.status_code != 202], served, recovered.status_code


def test_full_disk_refuses_async_and_keeps_serving(
    tmp_path: Path, cache: Path, tiny_state: Path
) -> None:
    """No room for the queue: async accept is 500; sync calls still 200."""
    failed, served, recovered = overfill(tmp_path, cache, tiny_state)

    assert failed, "every call was accepted although the disk is full"
    assert {r.status_code for r in failed} == {500}
    assert served == 200
    assert recovered == 202


def test_full_disk_answer_names_the_cause(
    tmp_path: Path, cache: Path, tiny_state: Path
) -> None:
    """The 500 says what failed, as CE's queue error does."""
    failed, _, _ = overfill(tmp_path, cache, tiny_state)

    assert failed
    assert all(r.text.startswith("Error queuing request: ") for r in failed)
