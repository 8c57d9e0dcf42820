"""Attacks on the gateway and the runtime, sent as an attacker would.

Most requests are written as raw bytes over a socket: HTTP client
libraries refuse to send CR or LF inside a header, conflicting framing
headers or dot segments, which is exactly what an attacker sends. Each
test checks what the attack must not achieve (a file touched outside the
state folder, a header split, a second request reaching the function, a
secret value shown) rather than only the status code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import statistics
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import FunctionProcess, send_raw
from emulator_support import ECHO, Emulator, start

from faas_runtime._bearer import BearerVerifier
from faas_runtime._secrets import SecretFile
from faas_runtime._types import AuthRequest
from faas_runtime._types import Headers as RequestHeaders
from faas_runtime._webhooks import HmacVerifier

# Distinctive values, so a leak is found by a plain substring search.
PAYLOAD_KEY = "pk-9c1f-LEAK-CANARY-payload"
API_TOKEN = "tok-7d2e-LEAK-CANARY-bearer"
CREATED_SECRET = "sv-4b8a-LEAK-CANARY-created"

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
  count:
    lang: python3-http-auth
    handler: ./count
    image: test/count:latest
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
  tokened:
    lang: python3-http-auth
    handler: ./tokened
    image: test/tokened:latest
    environment:
      auth_scheme: bearer
    secrets:
      - api-tokens
"""

# Appends one line per request it serves, so a smuggled request shows up
# as an extra line whatever the status codes said.
COUNT = """
import json


def handle(event, context):
    with open({ledger!r}, "a") as ledger:
        ledger.write(event.method + " " + event.path + "\\n")
    return {{"statusCode": 200, "body": {{"headers": dict(event.headers)}}}}
"""

PLAIN = """
def handle(event, context):
    return "ok"
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the module's emulators."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the project and a bystander folder beside it."""
    return tmp_path_factory.mktemp("site")


@pytest.fixture(scope="module")
def emulator(site: Path, cache: Path) -> Iterator[Emulator]:
    """One gateway serving echo, count, an HMAC and a bearer function."""
    project = site / "project"
    handlers = {
        "echo": ECHO,
        "count": COUNT.format(ledger=str(site / "ledger.txt")),
        "signed": PLAIN,
        "tokened": PLAIN,
    }
    for name, source in handlers.items():
        (project / name).mkdir(parents=True)
        (project / name / "handler.py").write_text(textwrap.dedent(source))
        (project / name / "requirements.txt").write_text("")
    (project / "stack.yml").write_text(STACK)
    secrets = project / ".secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "payload-secret").write_text(PAYLOAD_KEY)
    (secrets / "api-tokens").write_text(f"ci {API_TOKEN}\n")
    (site / "bystander").mkdir()
    (site / "bystander" / "keep.txt").write_text("untouched")
    running = start(project, cache)
    yield running
    running.stop()


def statuses(answer: bytes) -> list[int]:
    """The status code of every response in a raw byte stream."""
    return [
        int(line.split(b" ")[1])
        for line in answer.split(b"\r\n")
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit()
    ]


def snapshot(folder: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under ``folder`` except under ``skip``."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and skip not in path.parents and path.suffix != ".log"
    }


def ledger_lines(site: Path) -> list[str]:
    """Every request the counting function has served so far."""
    path = site / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


# -- names: traversal and odd characters ---------------------------------------

HOSTILE_NAMES = [
    "..",
    "../../etc/passwd",
    "%2e%2e",
    "%2e%2e%2fbystander",
    "..%2f..%2fbystander%2fkeep.txt",
    "echo%2f..%2f..",
    "echo%00",
    "%00",
    "ech%C3%B6",
    "%E2%80%AEecho",
    "echo.%2e%2e",
    "echo.openfaas-fn%2f..%2f..",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "/function/"),
        ("POST", "/async-function/"),
        ("GET", "/system/function/"),
        ("DELETE", "/system/function/"),
    ],
)
def test_hostile_function_names_are_refused(
    emulator: Emulator, site: Path, name: str, method: str, route: str
) -> None:
    """Traversal, NUL and unicode names get 4xx and touch no file outside."""
    before = snapshot(site, emulator.project / ".localfaas")
    user, password = emulator.auth
    token = _basic(user, password)
    request = (
        f"{method} {route}{name} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Basic {token}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    answer = send_raw(emulator.port, request)

    codes = statuses(answer)
    # Async accepts any name with 202 as CE does (no existence check), and
    # dot segments get the 301 to the cleaned path that Go's ServeMux
    # sends; the name must still never reach the file system.
    allowed = {301, 400, 404, 405, 422}
    if route == "/async-function/":
        allowed.add(202)
    assert codes, answer[:300]
    assert codes[0] in allowed, answer[:300]
    assert snapshot(site, emulator.project / ".localfaas") == before
    assert (site / "bystander" / "keep.txt").read_text() == "untouched"


@pytest.mark.parametrize(
    "name",
    ["..", "../bystander", "a/b", "a%2fb", "a\x00b", "Upper", "sécret", "-a", ".a"],
)
def test_hostile_secret_names_are_refused(
    emulator: Emulator, site: Path, name: str
) -> None:
    """Creating or deleting a secret with such a name is 400/422, no file."""
    before = snapshot(site, emulator.project / ".localfaas")
    with emulator.admin() as admin:
        created = admin.post("/system/secrets", json={"name": name, "value": "v"})
        updated = admin.put("/system/secrets", json={"name": name, "value": "v"})
        deleted = admin.request("DELETE", "/system/secrets", json={"name": name})
        listed = admin.get("/system/secrets").json()

    assert created.status_code in {400, 422}, created.text
    assert updated.status_code in {400, 404, 422}, updated.text
    assert deleted.status_code in {400, 404, 422}, deleted.text
    assert name not in {entry["name"] for entry in listed}
    assert snapshot(site, emulator.project / ".localfaas") == before


@pytest.mark.parametrize(
    "namespace", ["..", "../..", "a/b", "%2e%2e", "\x00", "ns\u00e9"]
)
@pytest.mark.parametrize("route", ["/system/functions", "/system/secrets"])
def test_hostile_namespaces_are_refused(
    emulator: Emulator, site: Path, namespace: str, route: str
) -> None:
    """A namespace query with traversal or odd characters is 400, no file."""
    before = snapshot(site, emulator.project / ".localfaas")
    with emulator.admin() as admin:
        listed = admin.get(route, params={"namespace": namespace})
        deleted = admin.request(
            "DELETE", "/system/secrets", json={"name": "x", "namespace": namespace}
        )

    assert listed.status_code == 400, listed.text
    assert deleted.status_code == 400, deleted.text
    assert snapshot(site, emulator.project / ".localfaas") == before


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# -- header injection ----------------------------------------------------------

INJECTIONS = [
    b"X-Forwarded-For: 10.0.0.1\rX-Injected: yes\r\n",
    b"X-Forwarded-For: 10.0.0.1\nX-Injected: yes\r\n",
    b"X-Forwarded-For: 10.0.0.1\r\n X-Injected: yes\r\n",
    b"X-Forwarded-Host: a\x00X-Injected: yes\r\n",
    b"X-Custom: a\r\n\tX-Injected: yes\r\n",
]


@pytest.mark.parametrize("header", INJECTIONS)
def test_forwarded_header_injection_never_splits(
    emulator: Emulator, header: bytes
) -> None:
    """A bare CR, LF, NUL or folded line never becomes a header of its own."""
    request = (
        b"GET /function/count HTTP/1.1\r\nHost: x\r\n"
        + header
        + b"Connection: close\r\n\r\n"
    )

    answer = send_raw(emulator.port, request)

    codes = statuses(answer)
    assert codes, answer[:300]
    assert codes[0] in {200, 400}, answer[:300]
    if codes[0] == 200:
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        names = {name.lower() for name in body["headers"]}
        assert "x-injected" not in names


# -- request smuggling ----------------------------------------------------------

SMUGGLED = b"GET /function/count/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
SHAPES = {
    "cl-te": (
        b"POST /function/count/front HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "te-cl": (
        b"POST /function/count/front HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "two-cl": (
        b"POST /function/count/front HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 0\r\nContent-Length: 49\r\n\r\n" + SMUGGLED
    ),
    "te-obfuscated": (
        b"POST /function/count/front HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "te-comma": (
        b"POST /function/count/front HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked, identity\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_gateway_smuggling_reaches_the_function_once_at_most(
    emulator: Emulator, site: Path, shape: str
) -> None:
    """Conflicting framing: refused or closed; the smuggled GET never runs."""
    before = ledger_lines(site)

    answer = send_raw(emulator.port, SHAPES[shape], timeout=5)

    codes = statuses(answer)
    assert all(code in {200, 400, 501} for code in codes), answer[:300]
    new = ledger_lines(site)[len(before) :]
    assert not [line for line in new if "smuggled" in line], new
    assert len(codes) <= 1, answer[:600]


@pytest.fixture
def counted_runtime(
    function_process: Callable[..., FunctionProcess], tmp_path: Path
) -> tuple[FunctionProcess, Path]:
    """A runtime serving the counting handler with a 1,000-byte body limit."""
    ledger = tmp_path / "runtime-ledger.txt"
    fn = function_process(textwrap.dedent(COUNT.format(ledger=str(ledger))))
    fn.start(auth_scheme="none", max_request_body="1000")
    return fn, ledger


@pytest.mark.parametrize(
    "shape",
    [shape for shape in sorted(SHAPES)],
)
def test_runtime_smuggling_reaches_the_handler_once_at_most(
    counted_runtime: tuple[FunctionProcess, Path], shape: str
) -> None:
    """The same shapes straight at waitress: no second request handled."""
    fn, ledger = counted_runtime
    data = SHAPES[shape].replace(b"/function/count", b"")

    answer = send_raw(fn.port, data, timeout=5)

    codes = statuses(answer)
    assert all(code in {200, 400, 501} for code in codes), answer[:300]
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    assert not [line for line in lines if "smuggled" in line], lines
    assert len(codes) <= 1, answer[:600]


# -- oversized headers and bodies ------------------------------------------------


def test_gateway_refuses_a_one_mebibyte_header(emulator: Emulator) -> None:
    """A 1 MiB header is refused (431/400) or the connection is closed."""
    request = (
        b"GET /function/count/huge HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * (1 << 20)
        + b"\r\nConnection: close\r\n\r\n"
    )

    try:
        answer = send_raw(emulator.port, request)
    except (BrokenPipeError, ConnectionResetError):
        answer = b""

    assert statuses(answer)[:1] in ([], [400], [431]), answer[:300]
    assert httpx.get(f"{emulator.url}/function/echo").status_code == 200


def test_runtime_refuses_a_one_mebibyte_header(
    counted_runtime: tuple[FunctionProcess, Path],
) -> None:
    """waitress answers 431/400 or closes; the handler never runs."""
    fn, ledger = counted_runtime
    request = (
        b"GET /huge HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * (1 << 20)
        + b"\r\nConnection: close\r\n\r\n"
    )

    try:
        answer = send_raw(fn.port, request)
    except (BrokenPipeError, ConnectionResetError):
        answer = b""

    assert statuses(answer)[:1] in ([], [400], [431]), answer[:300]
    assert not ledger.exists()


def test_runtime_refuses_a_body_over_its_limit(
    counted_runtime: tuple[FunctionProcess, Path],
) -> None:
    """``max_request_body=1000``: 1,001 bytes get 413, the handler never runs."""
    fn, ledger = counted_runtime

    response = httpx.post(fn.url, content=b"x" * 1001)

    assert response.status_code == 413
    assert not ledger.exists()


def test_gateway_refuses_an_async_body_over_the_ce_limit(
    emulator: Emulator, site: Path
) -> None:
    """256,001 bytes to /async-function/ get CE's 500 with the limit named."""
    before = ledger_lines(site)

    response = httpx.post(
        f"{emulator.url}/async-function/count", content=b"x" * 256_001
    )

    assert response.status_code == 500
    assert "maximum: 256000 bytes" in response.text
    time.sleep(0.5)
    assert ledger_lines(site) == before


# -- slow clients ---------------------------------------------------------------


def _trickle(port: int, stop: threading.Event) -> None:
    """Send a request head one byte every 100 ms until told to stop."""
    head = b"POST /function/echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 400
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for byte in head:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.1)


@pytest.mark.parametrize("target", ["gateway", "runtime"])
def test_slow_clients_do_not_block_others(
    emulator: Emulator,
    counted_runtime: tuple[FunctionProcess, Path],
    target: str,
) -> None:
    """While 20 clients trickle bytes, another client's call still completes."""
    port = emulator.port if target == "gateway" else counted_runtime[0].port
    path = "/function/echo" if target == "gateway" else "/"
    stop = threading.Event()
    trickers = [
        threading.Thread(target=_trickle, args=(port, stop), daemon=True)
        for _ in range(20)
    ]
    for thread in trickers:
        thread.start()
    time.sleep(1)

    try:
        # The bound is about liveness, not speed: a server blocked by the
        # trickling clients would not answer until they finish (~40 s).
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    finally:
        stop.set()

    assert response.status_code == 200


# -- comparison timing ------------------------------------------------------------

KEY = "timing-key"
BODY = b'{"event": "timing"}'


def _medians(
    first: Callable[[], object], last: Callable[[], object], rounds: int = 20_000
) -> tuple[float, float]:
    """Median time of each, measured alternately so load hits both alike."""
    firsts, lasts = [], []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        start = clock()
        first()
        middle = clock()
        last()
        lasts.append(clock() - middle)
        firsts.append(middle - start)
    return statistics.median(firsts), statistics.median(lasts)


def _refusal(
    verifier: HmacVerifier | BearerVerifier, request: AuthRequest
) -> Callable[[], object]:
    """A call that verifies ``request`` and swallows the expected refusal."""

    def check() -> object:
        try:
            return verifier.verify(request)
        except Exception as exc:  # the refusal is the point
            return exc

    return check


def _signed(signature: str) -> AuthRequest:
    headers = RequestHeaders([("Hmac", f"sha256={signature}")])
    return AuthRequest("POST", "/", "", headers, BODY)


def _bearing(token: str) -> AuthRequest:
    headers = RequestHeaders([("Authorization", f"Bearer {token}")])
    return AuthRequest("GET", "/", "", headers)


def _flip(hex_digest: str, index: int) -> str:
    digits = list(hex_digest)
    digits[index] = "0" if digits[index] != "0" else "1"
    return "".join(digits)


def test_hmac_comparison_has_no_early_exit(tmp_path: Path) -> None:
    """A wrong first or last byte takes the same time to refuse."""
    path = tmp_path / "payload-secret"
    path.write_text(KEY)
    verifier = HmacVerifier(SecretFile(path))
    good = hmac.new(KEY.encode(), BODY, hashlib.sha256).hexdigest()

    first, last = _medians(
        _refusal(verifier, _signed(_flip(good, 0))),
        _refusal(verifier, _signed(_flip(good, -1))),
    )

    # An early exit makes a longer matching prefix slower to refuse; a
    # constant-time compare leaves only noise (bound kept generous for a
    # loaded two-core machine).
    assert last < 1.25 * first, (first, last)


def test_token_comparison_has_no_early_exit(tmp_path: Path) -> None:
    """A token wrong in its first or its last character: same refusal time."""
    path = tmp_path / "api-tokens"
    token = "tok_" + "7" * 60
    path.write_text(f"ci {token}\n")
    verifier = BearerVerifier(SecretFile(path))

    first, last = _medians(
        _refusal(verifier, _bearing("X" + token[1:])),
        _refusal(verifier, _bearing(token[:-1] + "X")),
    )

    assert last < 1.25 * first, (first, last)


def test_timing_harness_detects_an_early_exit() -> None:
    """The same harness does see a byte-by-byte compare that stops early."""
    expected = "a" * 64

    def naive(presented: str) -> Callable[[], object]:
        def check() -> bool:
            for mine, theirs in zip(expected, presented, strict=True):
                if mine != theirs:
                    return False
            return True

        return check

    first, last = _medians(naive("b" + "a" * 63), naive("a" * 63 + "b"))

    assert last > 1.5 * first, (first, last)


# -- secret values stay secret ------------------------------------------------------


def test_secret_values_never_shown(emulator: Emulator) -> None:
    """After wrong credentials, no secret value is in logs, metrics or lists."""
    with emulator.admin() as admin:
        created = admin.post(
            "/system/secrets", json={"name": "made-here", "value": CREATED_SECRET}
        )
        assert created.status_code in {200, 201, 202}, created.text
        listing = admin.get("/system/secrets")
    for value in (API_TOKEN[:-1], "Bearer " + API_TOKEN + "x", "wrong"):
        refused = httpx.get(
            f"{emulator.url}/function/tokened",
            headers={"Authorization": f"Bearer {value}"},
        )
        # A token with a space is malformed (400, RFC 6750 section 3.1).
        assert refused.status_code in {400, 401}
    forged = httpx.post(
        f"{emulator.url}/function/signed",
        content=PAYLOAD_KEY.encode(),
        headers={"Hmac": "sha256=" + "0" * 64},
    )
    assert forged.status_code in {400, 401, 403}
    admin_refused = httpx.get(
        f"{emulator.url}/system/secrets", auth=("admin", CREATED_SECRET)
    )
    assert admin_refused.status_code == 401
    metrics = httpx.get(f"{emulator.url}/metrics").text
    time.sleep(0.5)

    seen = {
        "log": emulator.output(),
        "metrics": metrics,
        "listing": listing.text,
        # API secrets are kept encrypted; the per-function copies under
        # mounts/ are plaintext by design (as a Kubernetes secret volume),
        # for the function's own mount namespace only.
        "at rest": _state_text(emulator.project / ".localfaas" / "secrets"),
    }
    for value in (PAYLOAD_KEY, API_TOKEN, CREATED_SECRET):
        leaks = [where for where, text in seen.items() if value in text]
        assert leaks == [], f"{value} shown in {leaks}"
    assert "made-here" in listing.text
    assert (emulator.project / ".localfaas" / "secrets" / "made-here").exists()
    assert not list(emulator.project.rglob("secrets.key"))
    # The plaintext copies under mounts/ are shut off from other users by
    # the state folder's own mode.
    assert (emulator.project / ".localfaas").stat().st_mode & 0o077 == 0


def _state_text(folder: Path) -> str:
    """Every file under ``folder``, so a plaintext copy is found too."""
    return "\n".join(
        path.read_bytes().decode(errors="replace")
        for path in folder.rglob("*")
        if path.is_file() and path.stat().st_size < 10_000_000
    )
