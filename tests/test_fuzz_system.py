"""Generated bodies for every /system/ mutation, sent to a real emulator.

Each POST, PUT and DELETE under /system/ gets bodies that are not JSON,
JSON of any shape, and objects near the real ones (the right keys in any
case, right and wrong values), with varied Content-Types, and now and then
without the admin login. Every answer must be one gateway-contract.md §8
lists for the operation; a 5xx only where the contract puts one (a
duplicate deploy, a secret without a name, scaling an unknown function),
and each of those is counted by reason. Afterwards the emulator must still
be healthy, and its output must hold no traceback.

The counts go to stdout (``pytest -s``) and to
``.localfaas-results/fuzz-system.json``.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from emulator_support import ROOT, Emulator, make_project, start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RESULTS = ROOT / ".localfaas-results"

# Function names the generated bodies share, so deploy, update, scale and
# delete meet the same functions; "echo" and "signed" come from the stack.
FUNCTIONS = ("fz-a", "fz-b", "echo", "signed")
IMAGES = ("test/echo:latest", "ghcr.io/openfaas/alpine:latest", "test/signed")
SECRETS = ("api-key", "fz-secret", "payload-secret")
NAMESPACES = ("", "openfaas-fn", "dev", "kube-system")
# A deployment's envProcess is run: as the process of a stack function, or
# per call behind the classic watchdog. These are harmless; any other
# generated command is put under a folder that does not exist.
COMMANDS = ("cat", "env", "wc -c", "")
NOWHERE = "/nonexistent-localfaas-fuzz/"
SCALE_LABELS = ("com.openfaas.scale.min", "com.openfaas.scale.max")
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    None,
)


# -- what the contract allows ----------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One /system/ mutation and the answers the contract allows it."""

    method: str
    path: str
    # The body's keys; the first ``required`` are what a real client sends.
    fields: tuple[str, ...]
    required: int
    allowed: frozenset[int]

    @property
    def label(self) -> str:
        """``METHOD /path``, as reports name it."""
        return f"{self.method} {self.path}"


DEPLOYMENT_FIELDS = (
    *("service", "image", "namespace", "envProcess", "envVars", "constraints"),
    *("secrets", "labels", "annotations", "limits", "requests"),
    "readOnlyRootFilesystem",
)
OPERATIONS = [
    Operation(
        "POST",
        "/system/functions",
        DEPLOYMENT_FIELDS,
        2,
        frozenset({202, 400, 500}),
    ),
    Operation(
        "PUT",
        "/system/functions",
        DEPLOYMENT_FIELDS,
        2,
        frozenset({202, 400, 404}),
    ),
    Operation(
        "DELETE",
        "/system/functions",
        ("functionName", "namespace"),
        1,
        frozenset({202, 400, 404}),
    ),
    Operation(
        "POST",
        "/system/scale-function/{name}",
        ("replicas", "serviceName", "namespace"),
        1,
        frozenset({202, 400, 500}),
    ),
    Operation(
        "POST",
        "/system/secrets",
        ("name", "value", "namespace", "rawValue"),
        2,
        frozenset({202, 400, 409, 422, 500}),
    ),
    Operation(
        "PUT",
        "/system/secrets",
        ("name", "value", "namespace", "rawValue"),
        2,
        frozenset({202, 400, 404, 409, 422, 500}),
    ),
    Operation(
        "DELETE",
        "/system/secrets",
        ("name", "namespace", "value"),
        1,
        frozenset({202, 400, 404, 409, 422, 500}),
    ),
    *(
        Operation(
            method, "/system/namespace/{name}", ("name", "labels"), 1, frozenset({405})
        )
        for method in ("POST", "PUT", "DELETE")
    ),
]


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object with lower-cased keys, as Go reads it."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {key.lower(): item for key, item in value.items()}


def by_design(operation: Operation, body: bytes, response: httpx.Response) -> str:
    """Which declared 5xx this is, or "" when the contract has none like it."""
    text = response.text
    if operation.label == "POST /system/functions":
        # §8.2: faas-netes answers a duplicate name with a 500.
        duplicate = text.startswith("unable create Deployment: ") and text.endswith(
            " already exists\n"
        )
        return "duplicate deploy" if duplicate else ""

    if operation.path.startswith("/system/scale-function/"):
        # §8.6: faas-netes cannot look the deployment up, and says so.
        unknown = text.startswith("Unable to lookup function deployment ")
        return "scale of an unknown function" if unknown else ""

    # §8.8, §11: Kubernetes refuses an empty secret name with a 500.
    raw = json_object(body)
    name = raw.get("name") if raw is not None else "(not an object)"
    nameless = not isinstance(name, str) or not name
    return "empty secret name" if nameless and not response.content else ""


def last_traceback(output: str) -> str:
    """The emulator's last traceback, to show with a failure."""
    start = output.rfind("Traceback (most recent call last)")
    return output[start:][:3000] if start >= 0 else "(no traceback)"


# -- what is sent -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from(FUNCTIONS) | st.from_regex(
    r"[a-z0-9][-a-z0-9]{0,10}", fullmatch=True
)
text_maps = st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=4)
# Scale labels with small values only: the minimum is how many processes
# a deploy starts.
scale_labels = st.dictionaries(
    st.sampled_from(SCALE_LABELS), st.sampled_from(["0", "1", "2", "-1", "x"])
)
secret_names = (
    st.sampled_from(SECRETS)
    | st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True)
    | st.text(max_size=12)
)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "service": names,
    "functionName": names,
    "serviceName": names,
    "image": st.sampled_from(IMAGES) | st.text(max_size=30),
    "namespace": st.sampled_from(NAMESPACES),
    "envProcess": st.sampled_from(COMMANDS) | st.text(max_size=20),
    "envVars": text_maps,
    "labels": scale_labels | text_maps,
    "annotations": text_maps,
    "constraints": st.lists(st.text(max_size=20), max_size=3),
    "secrets": st.lists(secret_names, max_size=3),
    "limits": st.dictionaries(st.sampled_from(["memory", "cpu"]), st.text()),
    "requests": st.dictionaries(st.sampled_from(["memory", "cpu"]), st.text()),
    "readOnlyRootFilesystem": st.booleans(),
    "replicas": st.integers(min_value=-2, max_value=8),
    "name": secret_names,
    "value": st.text(max_size=40),
    "rawValue": st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode()),
}


def spelled(key: str) -> st.SearchStrategy[str]:
    """The key as written, or in another case: Go matches keys either way."""
    return st.sampled_from([key, key.lower(), key.upper()])


@st.composite
def objects(draw: st.DrawFn, operation: Operation, sensible: bool) -> dict[str, Any]:
    """An object with the operation's keys; ``sensible`` ones have them all.

    Sensible objects hold values of the right kind, mostly valid, so they
    get past the first checks; the others mix in JSON of any shape.
    """
    body: dict[str, Any] = {}
    for number, key in enumerate(operation.fields):
        if not (sensible and number < operation.required) and draw(st.booleans()):
            continue
        values = FIELD_VALUES.get(key, json_values)
        body[draw(spelled(key))] = draw(values if sensible else values | json_values)
    return harmless(body)


def harmless(body: dict[str, Any]) -> dict[str, Any]:
    """The body with a command that cannot run anything but COMMANDS."""
    for key, value in body.items():
        command = key.lower() == "envprocess" and isinstance(value, str)
        if command and value not in COMMANDS:
            body[key] = NOWHERE + value
    return body


def encoded(value: Any) -> bytes:
    """JSON as Go clients write it: compact."""
    return json.dumps(value, separators=(",", ":")).encode()


def bodies(operation: Operation) -> st.SearchStrategy[bytes]:
    """Not JSON, any JSON, near-real objects, and form-encoded ones."""
    sensible = objects(operation, sensible=True)
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(encoded),
        objects(operation, sensible=False).map(encoded),
        sensible.map(encoded),
        # The Python SDK's spacing.
        sensible.map(lambda value: json.dumps(value).encode()),
        st.dictionaries(st.text(max_size=8), st.text(max_size=12)).map(
            lambda value: urlencode(value).encode()
        ),
    )


@dataclass(frozen=True)
class Request:
    """One generated request: where, what, and whether it logs in."""

    path: str
    body: bytes
    content_type: str | None
    logged_in: bool


def requests(operation: Operation) -> st.SearchStrategy[Request]:
    """Requests for ``operation``, one in ten without a valid login."""
    path_names = names | st.from_regex(r"[-a-zA-Z_0-9.]{1,12}", fullmatch=True)
    namespace = st.sampled_from(["", "?namespace=openfaas-fn", "?namespace=dev"])
    return st.builds(
        Request,
        path=st.builds(
            lambda name, query: operation.path.format(name=name) + query,
            path_names.filter(lambda name: name not in (".", "..")),
            namespace,
        ),
        body=bodies(operation),
        content_type=st.sampled_from(CONTENT_TYPES),
        logged_in=st.sampled_from([True] * 9 + [False]),
    )


# -- keeping count ----------------------------------------------------------


@dataclass
class Tally:
    """What was sent, what came back, and each 5xx by reason."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    by_design: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for the terminal."""
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.by_design.items()))
        return (
            f"fuzz /system/: {sum(self.sent.values())} requests over "
            f"{len(self.sent)} operations, 5xx by design: {reasons or 'none'}"
        )

    def write(self, path: Path) -> None:
        """The counts as JSON, for the hardening report."""
        path.parent.mkdir(exist_ok=True)
        counts = {
            "requests": sum(self.sent.values()),
            "per_operation": dict(sorted(self.sent.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_by_design": dict(sorted(self.by_design.items())),
        }
        path.write_text(json.dumps(counts, indent=2) + "\n")


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    """Counts for the whole module, reported once at its end."""
    counts = Tally()
    yield counts
    if counts.sent:
        print(f"\n{counts.summary()}")
        counts.write(RESULTS / "fuzz-system.json")


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for the emulators of the session."""
    return tmp_path_factory.mktemp("fuzz-cache")


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> Iterator[Emulator]:
    """A real emulator serving the echo and HMAC-signed stack."""
    running = start(make_project(tmp_path_factory.mktemp("project")), cache)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    """One connection for the module's requests, without a default login."""
    with httpx.Client(base_url=emulator.url, timeout=60) as session:
        yield session


# -- the checks ----------------------------------------------------------------


def send(
    client: httpx.Client,
    emulator: Emulator,
    operation: Operation,
    request: Request,
) -> httpx.Response:
    """Send one request, logged in or with a wrong password."""
    user, password = emulator.auth
    auth = (user, password if request.logged_in else password + "x")
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    return client.request(
        operation.method,
        request.path,
        content=request.body,
        headers=headers,
        auth=auth,
    )


def answer_is_allowed(
    emulator: Emulator,
    operation: Operation,
    request: Request,
    response: httpx.Response,
    tally: Tally,
) -> None:
    """The status is one the contract lists; a 5xx only by design."""
    status = response.status_code
    tally.sent[operation.label] += 1
    tally.statuses[f"{operation.label} {status}"] += 1

    if not request.logged_in:
        # §5: auth runs before the body is read, whatever the body is.
        assert (status, response.text) == (401, "invalid credentials")
        return

    allowed = status in operation.allowed
    if allowed and status < 500:
        return

    reason = by_design(operation, request.body, response) if allowed else ""
    if reason:
        tally.by_design[reason] += 1
        return
    pytest.fail(
        f"{operation.label}: {request.path} with {request.body[:300]!r} "
        f"({request.content_type}) answered {status} {response.text[:300]!r}\n"
        f"{last_traceback(emulator.output())}"
    )


def healthy(client: httpx.Client, emulator: Emulator, printed: int) -> None:
    """The emulator still serves, and printed no traceback since ``printed``."""
    assert client.get("/healthz").status_code == 200
    listed = client.get("/system/functions", auth=emulator.auth)
    assert listed.status_code == 200
    assert isinstance(listed.json(), list)

    output = emulator.output()[printed:]
    assert "Traceback" not in output, last_traceback(output)


def settle(client: httpx.Client, emulator: Emulator) -> None:
    """Wait until each function serves or failed to start; remove the failed.

    The fuzzers that follow then meet only functions that run.
    """
    deadline = time.monotonic() + 60
    while True:
        listed = client.get("/system/functions", auth=emulator.auth).json()
        waiting = {item["name"] for item in listed if not item.get("availableReplicas")}
        output = emulator.output()
        failed = {name for name in waiting if f"deploy of {name} failed" in output}
        for name in failed:
            body = {"functionName": name}
            client.request("DELETE", "/system/functions", json=body, auth=emulator.auth)
        if waiting == failed:
            return
        assert time.monotonic() < deadline, f"not serving after 60 s: {waiting}"
        time.sleep(0.2)


def fuzz(
    client: httpx.Client,
    emulator: Emulator,
    tally: Tally,
    operation: Operation,
    examples: int,
) -> None:
    """Send ``examples`` generated requests; check each, then the emulator."""
    settle(client, emulator)
    printed = len(emulator.output())

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests(operation))
    def run(request: Request) -> None:
        response = send(client, emulator, operation, request)
        answer_is_allowed(emulator, operation, request, response, tally)

    run()
    healthy(client, emulator, printed)


def label(operation: Operation) -> str:
    """The test id: method and path."""
    return operation.label


@pytest.mark.parametrize("operation", OPERATIONS, ids=label)
def test_generated_bodies_get_contract_answers(
    client: httpx.Client, emulator: Emulator, tally: Tally, operation: Operation
) -> None:
    """Any body gets an answer the contract lists, never an unplanned 5xx."""
    fuzz(client, emulator, tally, operation, examples=40)


@pytest.mark.long
@pytest.mark.parametrize("operation", OPERATIONS, ids=label)
def test_generated_bodies_get_contract_answers_at_length(
    client: httpx.Client, emulator: Emulator, tally: Tally, operation: Operation
) -> None:
    """The same, with many more bodies per operation."""
    fuzz(client, emulator, tally, operation, examples=1000)


class TestSecretsBesideFunctions:
    """A function's name is not a secret's (the fuzzers found they were)."""

    def test_functions_are_not_listed_as_secrets(
        self, client: httpx.Client, emulator: Emulator, own_function: str
    ) -> None:
        """§8.8: the list holds secrets only, and no secret has this name."""
        listed = client.get("/system/secrets", auth=emulator.auth).json()

        assert own_function not in {item["name"] for item in listed}

    def test_deleting_a_secret_named_like_a_function_is_a_404(
        self, client: httpx.Client, emulator: Emulator, own_function: str
    ) -> None:
        """§8.8: no secret of that name, so 404 (it was a 500 and a traceback)."""
        body = {"name": own_function}

        response = client.request(
            "DELETE", "/system/secrets", json=body, auth=emulator.auth
        )

        assert response.status_code == 404


@pytest.fixture(scope="module")
def own_function(client: httpx.Client, emulator: Emulator) -> str:
    """A function of these tests' own, serving whatever the fuzzers did."""
    name = "shared-name"
    body = {"service": name, "image": "test/echo"}
    deployed = client.post("/system/functions", json=body, auth=emulator.auth)
    assert deployed.status_code == 202
    wait_for(emulator, f"function {name} version")
    return name


class TestFoundFaults:
    """Faults the fuzzers found in the admin API, kept as regressions.

    Each was an unhandled exception: a bare 500 and a traceback in the
    emulator's output.
    """

    def test_deploy_listing_an_invalid_secret_name_is_a_400(
        self, client: httpx.Client, emulator: Emulator
    ) -> None:
        """§8.2: a listed secret that cannot exist is a 400, as a missing one."""
        body = {"service": "fault-secret", "image": "test/echo", "secrets": ["A"]}

        response = client.post("/system/functions", json=body, auth=emulator.auth)

        assert response.status_code == 400

    def test_a_raw_value_that_is_not_ascii_is_a_400(
        self, client: httpx.Client, emulator: Emulator
    ) -> None:
        """§8.8: a rawValue that is not base64 is a bad request."""
        body = {"name": "fault-raw-value", "rawValue": "\u00e9t\u00e9"}

        response = client.post("/system/secrets", json=body, auth=emulator.auth)

        assert response.status_code == 400

    def test_scaling_a_function_that_never_started_is_answered(
        self, client: httpx.Client, emulator: Emulator
    ) -> None:
        """§8.6: scaling answers 202, or 500 naming the lookup, never a crash."""
        # A stack image with another command: it exits, so it never starts.
        body = {
            "service": "fault-never-started",
            "image": "test/echo",
            "envProcess": "false",
        }
        deployed = client.post("/system/functions", json=body, auth=emulator.auth)
        assert deployed.status_code == 202
        wait_for(emulator, "deploy of fault-never-started failed")

        response = client.post(
            "/system/scale-function/fault-never-started",
            json={"replicas": 2},
            auth=emulator.auth,
        )

        assert response.status_code == 202 or response.text.startswith(
            "Unable to lookup function deployment "
        )


def wait_for(emulator: Emulator, text: str) -> None:
    """Wait until the emulator has printed ``text``."""
    deadline = time.monotonic() + 60
    while text not in emulator.output():
        assert time.monotonic() < deadline, f"{text!r} not printed in 60 s"
        time.sleep(0.1)
