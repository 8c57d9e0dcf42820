"""The supervisor: real template processes on real loopback ports."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import httpx
import pytest

from localfaas import namespaces
from localfaas.environments import Environments
from localfaas.secrets import MissingSecrets, SecretStore
from localfaas.supervisor import (
    DeployError,
    Deployment,
    FunctionNotFound,
    LogLine,
    NoReplicas,
    Supervisor,
)

TEMPLATE = Path(__file__).resolve().parents[1] / "template" / "python3-http-auth"

HANDLER = """
import json, os, subprocess

def handle(event, context):
    print("handled", event.path, flush=True)
    if event.path == "/child":
        child = subprocess.Popen(["sleep", "60"])
        return {"statusCode": 200, "body": {"child": child.pid}}
    if event.path == "/secret":
        folder = os.environ["secret_mount_path"]
        with open(os.path.join(folder, "api-key")) as file:
            return file.read()
    return {
        "statusCode": 200,
        "body": {
            "version": "VERSION",
            "pid": os.getpid(),
            "name": os.environ.get("OPENFAAS_NAME"),
            "namespace": os.environ.get("OPENFAAS_NAMESPACE"),
            "hostname": context.hostname,
            "greeting": os.environ.get("GREETING"),
        },
    }
"""


def environments_root(request: pytest.FixtureRequest, tmp: Path) -> Path:
    """pytest's cache folder, so one environment serves every test run."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp
    return Path(cache.mkdir("localfaas-environments"))


@pytest.fixture(scope="module")
def environments(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Environments:
    """The template's environment, built once (waitress, PyJWT from PyPI)."""
    fallback = tmp_path_factory.mktemp("env")
    return Environments(environments_root(request, fallback))


@pytest.fixture
def sink() -> list[LogLine]:
    """Every line the supervisor hands to its log sink."""
    return []


@pytest.fixture
def supervisor(
    tmp_path: Path, environments: Environments, sink: list[LogLine]
) -> Iterator[Supervisor]:
    """A supervisor with its state in tmp_path; everything stopped after."""
    store = SecretStore(
        tmp_path / "project" / ".secrets", tmp_path / "state", tmp_path / "key"
    )
    with Supervisor(
        tmp_path / "state",
        secrets=store,
        environments=environments,
        log_sink=sink.append,
    ) as supervisor:
        yield supervisor


def write_handler(
    folder: Path,
    version: str = "v1",
    source: str = HANDLER,
) -> Path:
    """A handler folder with ``source`` as handler.py, stamped ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(dedent(source).replace("VERSION", version))
    return folder


def stack_function(
    name: str,
    handler: Path,
    *,
    env_vars: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    secrets: list[str] | None = None,
) -> Deployment:
    """A stack function on the real python3-http-auth template, auth off."""
    return Deployment(
        name=name,
        template_dir=TEMPLATE,
        handler_dir=handler,
        env_vars={"auth_scheme": "none", **(env_vars or {})},
        labels=labels or {},
        secrets=secrets or [],
    )


def call(supervisor: Supervisor, name: str, path: str = "/") -> httpx.Response:
    """Invoke ``name`` where the supervisor routes it."""
    host, port = supervisor.endpoint(name)
    return httpx.get(f"http://{host}:{port}{path}", timeout=10)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``check()`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{check} did not hold within {timeout}s")
        time.sleep(0.05)


def refuses(port: int) -> bool:
    """Whether nothing listens on loopback ``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_deploys_a_handler_and_serves_it(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """A stack function answers on its endpoint with OpenFaaS's environment."""
    handler = write_handler(tmp_path / "hello")
    (handler / "build").mkdir()
    (handler / "build" / "stale.txt").write_text("not copied")

    state = supervisor.deploy(
        stack_function("hello", handler, env_vars={"GREETING": "hi"})
    )

    assert (state.replicas, state.available_replicas, state.version) == (1, 1, 1)
    assert state.created_at.tzinfo is not None
    body = call(supervisor, "hello").json()
    assert body["name"] == "hello"
    assert body["namespace"] == "openfaas-fn"
    assert body["greeting"] == "hi"
    assert body["hostname"] == "hello-1-0"
    assert supervisor.names() == ["hello"]


def test_the_build_folder_is_laid_out_as_faas_cli_does(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """Template copied whole, handler overlaid, __init__.py added, no build/."""
    handler = write_handler(tmp_path / "hello")
    (handler / "build").mkdir()
    (handler / "helpers").mkdir()
    (handler / "helpers" / "util.py").write_text("X = 1\n")

    supervisor.deploy(stack_function("hello", handler))

    build = tmp_path / "state" / "builds" / "hello" / "1"
    assert (build / "index.py").is_file()
    assert (build / "faas_runtime" / "__init__.py").is_file()
    assert (build / "function" / "__init__.py").is_file()
    assert (build / "function" / "handler_test.py").is_file()
    assert (build / "function" / "helpers" / "util.py").read_text() == "X = 1\n"
    assert "VERSION" not in (build / "function" / "handler.py").read_text()
    assert not (build / "function" / "build").exists()


def test_two_replicas_take_turns(supervisor: Supervisor, tmp_path: Path) -> None:
    """com.openfaas.scale.min=2 starts two processes, called round robin."""
    handler = write_handler(tmp_path / "pair")
    labels = {"com.openfaas.scale.min": "2"}

    state = supervisor.deploy(stack_function("pair", handler, labels=labels))

    assert state.available_replicas == 2
    pids = [call(supervisor, "pair").json()["pid"] for _ in range(4)]
    assert len(set(pids)) == 2
    assert pids[0] == pids[2] != pids[1] == pids[3]


def test_scale_keeps_to_the_labels_and_allows_zero(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """Counts are clamped to min/max labels; 0 is allowed; negative is not."""
    handler = write_handler(tmp_path / "scaled")
    labels = {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "3"}
    supervisor.deploy(stack_function("scaled", handler, labels=labels))

    assert supervisor.scale("scaled", 5) == 3
    eventually(lambda: supervisor.status("scaled").available_replicas == 3)
    assert supervisor.scale("scaled", 1) == 2
    assert supervisor.status("scaled").replicas == 2
    with pytest.raises(ValueError, match="-1"):
        supervisor.scale("scaled", -1)


def test_a_function_scaled_to_zero_starts_on_its_next_call(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """Scale to 0 stops every process; endpoint() brings max(1, min) back."""
    handler = write_handler(tmp_path / "idle")
    supervisor.deploy(stack_function("idle", handler))
    port = supervisor.endpoint("idle")[1]

    assert supervisor.scale("idle", 0) == 0
    state = supervisor.status("idle")
    assert (state.replicas, state.available_replicas) == (0, 0)
    eventually(lambda: refuses(port))

    assert call(supervisor, "idle").status_code == 200
    assert supervisor.status("idle").available_replicas == 1


def test_a_killed_replica_is_restarted_while_the_other_serves(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -9 of one replica: calls keep succeeding; a new one starts."""
    caplog.set_level(logging.WARNING, "localfaas.supervisor")
    handler = write_handler(tmp_path / "sturdy")
    labels = {"com.openfaas.scale.min": "2"}
    supervisor.deploy(stack_function("sturdy", handler, labels=labels))
    first, second = {call(supervisor, "sturdy").json()["pid"] for _ in range(2)}

    os.kill(first, signal.SIGKILL)
    # The kernel closes the socket a moment before the process is a zombie;
    # once the supervisor has seen the exit, the dead port is never handed out.
    eventually(lambda: "was killed by signal 9" in caplog.text)
    meanwhile = [call(supervisor, "sturdy") for _ in range(10)]

    assert [r.status_code for r in meanwhile] == [200] * 10
    assert first not in {r.json()["pid"] for r in meanwhile}
    eventually(lambda: supervisor.status("sturdy").available_replicas == 2)
    pids = {call(supervisor, "sturdy").json()["pid"] for _ in range(2)}
    assert second in pids
    assert first not in pids


GROWING = """
import os, time

def handle(event, context):
    if event.path == "/grow":
        # b"x" * n writes every page, so they count as resident.
        held = b"x" * (int(event.query["mib"]) << 20)
        time.sleep(float(event.query["hold"]))
        return {"statusCode": 200, "body": {"held": len(held)}}
    return {"statusCode": 200, "body": {"pid": os.getpid()}}
"""


def limited(name: str, handler: Path, memory: str) -> Deployment:
    """A stack function with ``limits.memory`` set, auth off."""
    return replace(stack_function(name, handler), limits={"memory": memory})


def deploy_growing(supervisor: Supervisor, folder: Path, name: str, memory: str) -> int:
    """Deploy GROWING under ``memory``; the pid of the process serving it."""
    handler = write_handler(folder / name, source=GROWING)
    supervisor.deploy(limited(name, handler, memory))
    pid: int = call(supervisor, name).json()["pid"]
    return pid


def test_a_replica_over_its_memory_limit_is_killed_and_restarted(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past limits.memory the process dies, as OOMKilled, and comes back."""
    caplog.set_level(logging.WARNING, "localfaas.supervisor")
    first = deploy_growing(supervisor, tmp_path, "greedy", "128Mi")

    with pytest.raises(httpx.TransportError):
        call(supervisor, "greedy", "/grow?mib=256&hold=20")

    assert "over limits.memory 128Mi" in caplog.text
    eventually(lambda: "restarting in" in caplog.text)
    killed = next(r.message for r in caplog.records if "restarting in" in r.message)
    assert killed.startswith("function instance greedy-1-0 was killed: its processes")
    eventually(lambda: supervisor.status("greedy").available_replicas == 1)
    assert call(supervisor, "greedy").json()["pid"] != first
    assert not alive(first)


def test_a_replica_within_its_memory_limit_is_left_alone(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Holding 32 MiB for several checks under a 512Mi limit kills nothing."""
    caplog.set_level(logging.WARNING, "localfaas.supervisor")
    first = deploy_growing(supervisor, tmp_path, "modest", "512Mi")

    grown = call(supervisor, "modest", "/grow?mib=32&hold=1.5")

    assert grown.json() == {"held": 32 << 20}
    assert call(supervisor, "modest").json()["pid"] == first
    assert "limits.memory" not in caplog.text


def test_a_memory_limit_that_is_no_quantity_is_refused(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """The same rule as for containers: the deploy fails, naming the value."""
    handler = write_handler(tmp_path / "vague")

    with pytest.raises(DeployError, match=r"limits\.memory 'lots' is not a Kuber"):
        supervisor.deploy(limited("vague", handler, "lots"))
    assert supervisor.names() == []


def test_a_cpu_limit_is_said_to_need_containers_once_per_value(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Processes are not throttled: the log says so, not on every reload."""
    caplog.set_level(logging.WARNING, "localfaas.supervisor")
    handler = write_handler(tmp_path / "busy")
    deployment = replace(stack_function("busy", handler), limits={"cpu": "500m"})

    supervisor.deploy(deployment)
    supervisor.reload("busy", handler)
    supervisor.deploy(replace(deployment, limits={"cpu": "1"}))

    notes = [r.message for r in caplog.records if "limits.cpu" in r.message]
    assert notes == [
        "function busy: limits.cpu 500m is not applied to a local process; "
        "run 'localfaas up --docker' to have it throttled as on OpenFaaS",
        "function busy: limits.cpu 1 is not applied to a local process; "
        "run 'localfaas up --docker' to have it throttled as on OpenFaaS",
    ]


def test_no_ready_replica_within_the_timeout(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the only replica restarts (slowly), endpoint() gives up."""
    caplog.set_level(logging.WARNING, "localfaas.supervisor")
    slow_start = tmp_path / "slow-start"
    source = HANDLER + (
        "\nimport time\n"
        "if os.path.exists(os.environ['SLOW_START']):\n"
        "    time.sleep(30)\n"
    )
    handler = write_handler(tmp_path / "lonely", source=source)
    env = {"SLOW_START": str(slow_start)}
    supervisor.deploy(stack_function("lonely", handler, env_vars=env))

    slow_start.touch()
    os.kill(call(supervisor, "lonely").json()["pid"], signal.SIGKILL)
    eventually(lambda: "was killed by signal 9" in caplog.text)

    with pytest.raises(NoReplicas, match="lonely"):
        supervisor.endpoint("lonely", timeout=0.3)
    assert supervisor.status("lonely").replicas == 1


def test_reload_with_a_syntax_error_keeps_the_old_version(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """A broken save raises the traceback; the old process keeps serving."""
    handler = write_handler(tmp_path / "steady")
    supervisor.deploy(stack_function("steady", handler))
    before = call(supervisor, "steady").json()

    broken = "def handle(event, context)\n    return 1\n"
    (handler / "handler.py").write_text(broken)
    with pytest.raises(DeployError) as caught:
        supervisor.reload("steady", handler)

    assert "SyntaxError" in caught.value.output
    after = call(supervisor, "steady").json()
    assert (after["pid"], after["version"]) == (before["pid"], "v1")
    assert supervisor.status("steady").version == 1
    assert not (tmp_path / "state" / "builds" / "steady" / "2").exists()


def test_reload_swaps_versions_without_a_failed_request(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """While a thread calls without pause, a reload loses no request."""
    handler = write_handler(tmp_path / "busy")
    supervisor.deploy(stack_function("busy", handler))
    old_pid = call(supervisor, "busy").json()["pid"]
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                response = call(supervisor, "busy")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text}")
            else:
                versions.append(response.json()["version"])

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.3)
        write_handler(handler, "v2")
        supervisor.reload("busy", handler)
        eventually(lambda: bool(versions) and versions[-1] == "v2")
        time.sleep(1.5)  # past the old replica's grace and drain
    finally:
        stop.set()
        thread.join()

    assert failures == []
    assert versions.count("v1") > 0
    assert versions[-1] == "v2"
    assert supervisor.status("busy").version == 2
    eventually(lambda: not alive(old_pid))


def test_logs_are_kept_sent_to_the_sink_and_followed(
    supervisor: Supervisor, tmp_path: Path, sink: list[LogLine]
) -> None:
    """Each printed line is kept, given to the sink and streamed to followers."""
    handler = write_handler(tmp_path / "chatty")
    supervisor.deploy(stack_function("chatty", handler))
    started = datetime.now(UTC)

    call(supervisor, "chatty", "/first")
    eventually(lambda: any(x.text == "handled /first" for x in sink))
    follower = supervisor.subscribe("chatty")
    call(supervisor, "chatty", "/second")

    line = follower.get(timeout=5)
    while line is not None and line.text != "handled /second":
        line = follower.get(timeout=5)
    assert line is not None
    assert (line.name, line.namespace, line.instance) == (
        "chatty",
        "openfaas-fn",
        "chatty-1-0",
    )
    kept = supervisor.logs("chatty", since=started)
    assert [x.text for x in kept if x.text.startswith("handled")] == [
        "handled /first",
        "handled /second",
    ]
    assert len(supervisor.logs("chatty", tail=1)) == 1
    assert supervisor.logs("chatty", tail=0) == []

    supervisor.remove("chatty")
    while (item := follower.get(timeout=5)) is not None:
        assert isinstance(item, LogLine)


def test_a_follower_can_start_from_the_kept_lines(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """subscribe(tail=N) first replays the last N kept lines, then new ones."""
    # A handler that prints nothing: its stdout line and the runtime's
    # stderr line would otherwise arrive in either order.
    quiet = "def handle(event, context):\n    return 'ok'\n"
    handler = write_handler(tmp_path / "replay", source=quiet)
    supervisor.deploy(stack_function("replay", handler))
    call(supervisor, "replay", "/old")
    # The runtime's request log line is the last one a call prints.
    eventually(lambda: "path=/old" in supervisor.logs("replay", tail=1)[0].text)
    last = supervisor.logs("replay", tail=1)

    follower = supervisor.subscribe("replay", tail=1)

    assert follower.get(timeout=5) == last[0]
    with pytest.raises(queue.Empty):
        follower.get(timeout=0.2)
    supervisor.unsubscribe("replay", follower)


def test_stop_all_leaves_no_process_behind(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """After stop_all no replica, child of a replica, or port is left."""
    handler = write_handler(tmp_path / "parent")
    labels = {"com.openfaas.scale.min": "2"}
    supervisor.deploy(stack_function("parent", handler, labels=labels))
    replicas = {call(supervisor, "parent").json()["pid"] for _ in range(2)}
    child = call(supervisor, "parent", "/child").json()["child"]
    ports = [supervisor.endpoint("parent")[1] for _ in range(2)]
    assert alive(child)

    supervisor.stop_all(timeout=5)

    assert [pid for pid in [*replicas, child] if alive(pid)] == []
    assert all(refuses(port) for port in ports)
    assert not (tmp_path / "state" / "secrets" / "parent").exists()


def test_a_handler_that_cannot_import_fails_the_deploy(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """A first deploy whose handler cannot import leaves nothing deployed."""
    handler = write_handler(tmp_path / "broken", source="import not_a_module\n")

    with pytest.raises(DeployError) as caught:
        supervisor.deploy(stack_function("broken", handler))

    assert "ModuleNotFoundError" in caught.value.output
    assert "broken" in str(caught.value)
    assert supervisor.names() == []
    with pytest.raises(FunctionNotFound):
        supervisor.status("broken")
    assert not (tmp_path / "state" / "builds" / "broken" / "1").exists()


def test_remove_stops_the_function(
    supervisor: Supervisor,
    tmp_path: Path,
) -> None:
    """After remove the name is unknown and its process exits."""
    handler = write_handler(tmp_path / "gone")
    supervisor.deploy(stack_function("gone", handler))
    pid = call(supervisor, "gone").json()["pid"]

    supervisor.remove("gone")

    with pytest.raises(FunctionNotFound):
        supervisor.endpoint("gone")
    eventually(lambda: not alive(pid))


def test_unknown_names_raise_function_not_found(supervisor: Supervisor) -> None:
    """Every per-function call names the missing function."""
    for action in (
        lambda: supervisor.endpoint("nope"),
        lambda: supervisor.status("nope"),
        lambda: supervisor.scale("nope", 1),
        lambda: supervisor.remove("nope"),
        lambda: supervisor.logs("nope"),
    ):
        with pytest.raises(FunctionNotFound, match="'nope'"):
            action()


def test_secrets_are_files_the_function_can_read(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """Listed secrets become files for the function; missing ones fail."""
    secrets = tmp_path / "project" / ".secrets"
    secrets.mkdir(parents=True)
    (secrets / "api-key").write_text("s3cret")
    handler = write_handler(tmp_path / "vault")

    supervisor.deploy(stack_function("vault", handler, secrets=["api-key"]))

    assert call(supervisor, "vault", "/secret").text == "s3cret"
    mounts = tmp_path / "state" / "mounts"
    assert stat.S_IMODE(mounts.stat().st_mode) == 0o700
    assert stat.S_IMODE((mounts / "vault").stat().st_mode) == 0o700
    assert stat.S_IMODE((mounts / "vault" / "api-key").stat().st_mode) == 0o400
    with pytest.raises(MissingSecrets):
        supervisor.deploy(stack_function("other", handler, secrets=["absent"]))
    assert supervisor.names() == ["vault"]


@pytest.mark.skipif(
    not namespaces.supports_private_mounts(), reason="no private mounts here"
)
def test_secrets_appear_at_the_openfaas_path(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """With private mounts, the function reads /var/openfaas/secrets/<name>."""
    secrets = tmp_path / "project" / ".secrets"
    secrets.mkdir(parents=True)
    (secrets / "api-key").write_text("mounted")
    source = """
    def handle(event, context):
        with open("/var/openfaas/secrets/api-key") as file:
            return file.read()
    """
    handler = write_handler(tmp_path / "mounted", source=source)

    supervisor.deploy(stack_function("mounted", handler, secrets=["api-key"]))

    assert call(supervisor, "mounted").text == "mounted"


def test_a_bare_command_runs_behind_the_classic_watchdog(
    supervisor: Supervisor,
) -> None:
    """A deployment with only an fprocess forks it per request."""
    state = supervisor.deploy(Deployment(name="counter", env_process="wc -c"))

    host, port = supervisor.endpoint("counter")
    response = httpx.post(f"http://{host}:{port}/", content=b"12345")

    assert state.available_replicas == 1
    assert response.text.strip() == "5"
    assert "x-duration-seconds" in response.headers


def test_invalid_deployments_are_refused_before_anything_runs(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """Bad names, missing folders and nothing to run are named in the error."""
    with pytest.raises(DeployError, match="name is invalid"):
        supervisor.deploy(Deployment(name="Bad_Name", env_process="cat"))
    with pytest.raises(DeployError, match="missing"):
        supervisor.deploy(stack_function("lost", tmp_path / "nowhere"))
    with pytest.raises(DeployError, match="nothing to run"):
        supervisor.deploy(Deployment(name="empty"))
    assert supervisor.names() == []
