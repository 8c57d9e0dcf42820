"""The container supervisor (``localfaas up --docker``) on a real engine.

The engine uses vfs, where each image build step and each new container
copies a whole image, so builds are few and shared: the sample function
is built once for the module and its containers serve most tests; the
reload builds once more, the bad-requirement case fails early in its
build, and the end-to-end stack builds the same sources as the sample, so
the engine's cache answers it. The base image is the local one from
scripts/base-image, passed as ``LOCALFAAS_PYTHON_IMAGE`` would pass it.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import docker.errors
import httpx
import pytest
from conftest import free_port
from docker_support import BASE_IMAGE, docker_client, require_base_image
from emulator_support import Emulator, start

from faas_runtime._webhooks import sign
from localfaas.builder import EngineUnavailable
from localfaas.containers import (
    FUNCTION_LABEL,
    OWNER_LABEL,
    PYTHON_IMAGE_VARIABLE,
    SECRETS_TARGET,
    ContainerSupervisor,
    python_image_args,
)
from localfaas.secrets import SecretStore
from localfaas.supervisor import DeployError, Deployment, FunctionNotFound, LogLine

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TEMPLATE = Path(__file__).resolve().parents[1] / "template" / "python3-http-auth"
IMAGE = "localfaas-test/containers-greeter:latest"
# A second tag for the first build: the reload moves IMAGE to a new image
# and the supervisor drops the untagged old one, with the engine's cache of
# it; this tag keeps it, so the next run and the end-to-end stack reuse it.
KEPT = ("localfaas-test/containers-greeter", "v1")
SECRET = "github-webhook-secret"
KEY = "containers-test-key"
UNDECLARED = "not-for-greeter"

HANDLER = """\
import os


def handle(event, context):
    print(f"handled {event.path}", flush=True)
    if event.path == "/grow":
        # Every page written: 384 MiB resident, over the 128Mi limit even
        # where the engine lets a container swap as much again.
        held = b"x" * (384 << 20)
        return {"statusCode": 200, "body": {"held": len(held)}}
    body = {"version": "VERSION", "greeting": os.environ.get("GREETING")}
    return {"statusCode": 200, "body": body}
"""

# Only bounds on waiting, never assertions about speed.
DEADLINE = 120.0


def write_handler(folder: Path, version: str = "v1", requirements: str = "") -> Path:
    """A handler folder whose answers carry ``version``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(HANDLER.replace("VERSION", version))
    if requirements:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def eventually(check: Callable[[], object], timeout: float = DEADLINE) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true after {timeout}s"
        time.sleep(0.2)


def call(
    supervisor: ContainerSupervisor,
    name: str = "greeter",
    path: str = "/",
    *,
    signed: bool = True,
) -> httpx.Response:
    """POST to ``name`` where the supervisor routes it, GitHub-signed."""
    body = uuid.uuid4().bytes
    headers = sign("github", KEY, body) if signed else {}
    host, port = supervisor.endpoint(name)
    return httpx.post(f"http://{host}:{port}{path}", content=body, headers=headers)


def containers(client: Any, state_dir: Path, name: str | None = None) -> list[Any]:
    """The containers of ``state_dir`` (of function ``name``), stopped too."""
    labels = [f"{OWNER_LABEL}={state_dir}"]
    if name is not None:
        labels.append(f"{FUNCTION_LABEL}={name}")
    while True:
        try:
            return list(client.containers.list(all=True, filters={"label": labels}))
        except docker.errors.NotFound:
            time.sleep(0.1)  # one was removed while it was being listed


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """The engine, with the local base image in place."""
    engine = docker_client()
    require_base_image(engine)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the function's secret and one it does not declare."""
    folder = tmp_path_factory.mktemp("project")
    secrets = folder / ".secrets"
    secrets.mkdir(mode=0o700)
    (secrets / SECRET).write_text(KEY)
    (secrets / UNDECLARED).write_text("must stay outside the container")
    write_handler(folder / "greeter")
    return folder


@pytest.fixture(scope="module")
def sink() -> list[LogLine]:
    """Every line the supervisor hands to its log sink."""
    return []


def supervisor_for(client: Any, state: Path, **options: Any) -> ContainerSupervisor:
    """A supervisor on the shared engine, building from the local base image."""
    args = python_image_args({PYTHON_IMAGE_VARIABLE: BASE_IMAGE})
    return ContainerSupervisor(state, client=client, build_args=args, **options)


@pytest.fixture(scope="module")
def supervisor(
    client: Any, project: Path, sink: list[LogLine]
) -> Iterator[ContainerSupervisor]:
    """The module's supervisor; everything it started is removed after."""
    state = project / ".localfaas"
    store = SecretStore(project / ".secrets", state, project / "key")
    running = supervisor_for(client, state, secrets=store, log_sink=sink.append)
    yield running
    running.stop_all()


@pytest.fixture(scope="module")
def greeter(client: Any, supervisor: ContainerSupervisor, project: Path) -> Deployment:
    """The sample function, built once and deployed with GitHub auth."""
    deployment = Deployment(
        name="greeter",
        image=IMAGE,
        template_dir=TEMPLATE,
        handler_dir=project / "greeter",
        env_vars={"auth_scheme": "github", "GREETING": "hello"},
        secrets=[SECRET],
        labels={"team": "tests"},
        limits={"memory": "128Mi", "cpu": "500m"},
        requests={"memory": "64Mi"},
        read_only_root_filesystem=True,
    )
    supervisor.deploy(deployment)
    client.images.get(IMAGE).tag(*KEPT)
    return deployment


@pytest.fixture
def serving(client: Any, supervisor: ContainerSupervisor, greeter: Deployment) -> Any:
    """The greeter's one container, once it serves."""
    eventually(lambda: supervisor.status("greeter").available_replicas == 1)
    (container,) = [
        found
        for found in containers(client, supervisor.state_dir, "greeter")
        if found.status == "running"
    ]
    return container


class TestBaseImage:
    """``LOCALFAAS_PYTHON_IMAGE`` becomes the templates' PYTHON_IMAGE."""

    def test_set(self) -> None:
        """A set variable is passed as the PYTHON_IMAGE build argument."""
        args = python_image_args({PYTHON_IMAGE_VARIABLE: " local/python:3 "})

        assert args == {"PYTHON_IMAGE": "local/python:3"}

    @pytest.mark.parametrize("environ", [{}, {PYTHON_IMAGE_VARIABLE: ""}])
    def test_unset(self, environ: dict[str, str]) -> None:
        """Unset or empty, the template's own default base is kept."""
        assert python_image_args(environ) == {}


class TestServing:
    """The sample function, in its container, behind the supervisor."""

    def test_signed_request_is_answered(
        self, supervisor: ContainerSupervisor, serving: Any
    ) -> None:
        """A GitHub-signed call reaches the handler, with the stack's env."""
        response = call(supervisor)

        assert response.status_code == 200
        assert response.json() == {"version": "v1", "greeting": "hello"}

    def test_unsigned_request_is_refused(
        self, supervisor: ContainerSupervisor, serving: Any
    ) -> None:
        """The runtime in the container fails closed without a signature."""
        assert call(supervisor, signed=False).status_code == 401

    def test_only_declared_secrets_are_mounted(self, serving: Any) -> None:
        """The secrets folder holds the declared secret only, read-only."""
        code, output = serving.exec_run(["ls", SECRETS_TARGET])
        (mount,) = [
            m for m in serving.attrs["Mounts"] if m["Destination"] == SECRETS_TARGET
        ]

        assert (code, output.decode().split()) == (0, [SECRET])
        assert mount["RW"] is False

    def test_stack_settings_reach_the_container(self, serving: Any) -> None:
        """Labels, environment and a read-only root come from the deployment."""
        config = serving.attrs["Config"]
        env = dict(item.split("=", 1) for item in config["Env"])

        assert config["Labels"]["team"] == "tests"
        assert config["Labels"][FUNCTION_LABEL] == "greeter"
        assert (env["OPENFAAS_NAME"], env["GREETING"]) == ("greeter", "hello")
        assert serving.attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert serving.name.startswith("localfaas-greeter-")

    def test_limits_are_the_containers_caps(self, serving: Any) -> None:
        """limits cap memory and CPU, as faasd enforces them; requests.memory
        is a soft reservation."""
        host = serving.attrs["HostConfig"]
        assert host["Memory"] == 128 * 2**20
        assert host["NanoCpus"] == 500_000_000
        assert host["MemoryReservation"] == 64 * 2**20
        cgroup = serving.exec_run(
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max"
        ).output.decode()
        assert str(128 * 2**20) in cgroup

    def test_printed_lines_reach_the_logs(
        self,
        supervisor: ContainerSupervisor,
        serving: Any,
        sink: list[LogLine],
    ) -> None:
        """What the handler prints is kept per container and sent to the sink."""
        path = f"/logged-{uuid.uuid4().hex}"
        call(supervisor, path=path)

        def logged() -> list[LogLine]:
            lines = supervisor.logs("greeter", instance=serving.name)
            return [line for line in lines if line.text == f"handled {path}"]

        eventually(logged)
        assert any(line.text == f"handled {path}" for line in sink)

    def test_killed_container_is_restarted(
        self,
        supervisor: ContainerSupervisor,
        serving: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A container that dies is started again and serves again."""
        started = serving.attrs["State"]["StartedAt"]

        with caplog.at_level(logging.WARNING, logger="localfaas.containers"):
            serving.kill()
            eventually(lambda: "restarting" in caplog.text)
            response = call(supervisor)
        serving.reload()

        assert response.status_code == 200
        assert serving.attrs["State"]["StartedAt"] != started
        assert f"{serving.name} was killed by signal 9" in caplog.text

    def test_a_container_over_its_memory_limit_is_named_oom_killed(
        self,
        supervisor: ContainerSupervisor,
        serving: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The kernel kills it; the log says why, and it serves again."""
        with caplog.at_level(logging.WARNING, logger="localfaas.containers"):
            with pytest.raises(httpx.TransportError):
                call(supervisor, path="/grow")
            eventually(lambda: "restarting" in caplog.text)
            response = call(supervisor)

        assert response.status_code == 200
        assert (
            f"{serving.name} was killed by the kernel's OOM killer: it needed "
            "more than limits.memory 128Mi" in caplog.text
        )

    def test_scale_up_and_down(
        self, client: Any, supervisor: ContainerSupervisor, serving: Any
    ) -> None:
        """Scaling adds a container that serves, and removes it again."""
        supervisor.scale("greeter", 2)
        eventually(lambda: supervisor.status("greeter").available_replicas == 2)
        ports = {supervisor.endpoint("greeter")[1] for _ in range(2)}

        supervisor.scale("greeter", 1)
        eventually(
            lambda: len(containers(client, supervisor.state_dir, "greeter")) == 1
        )
        assert len(ports) == 2
        assert call(supervisor).status_code == 200

    def test_reload_swaps_with_no_failed_request(
        self,
        client: Any,
        supervisor: ContainerSupervisor,
        project: Path,
        serving: Any,
    ) -> None:
        """A rebuilt handler takes over while calls keep succeeding."""
        changed = write_handler(project / "greeter-v2", version="v2")
        failures: list[str] = []
        versions: set[str] = set()
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                try:
                    response = call(supervisor)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                    versions.add(response.json()["version"])
                except (httpx.HTTPError, ValueError) as error:
                    failures.append(repr(error))
                time.sleep(0.05)

        workers = [threading.Thread(target=load) for _ in range(3)]
        for worker in workers:
            worker.start()
        try:
            state = supervisor.reload("greeter", changed)
            time.sleep(2)
        finally:
            done.set()
            for worker in workers:
                worker.join()

        assert failures == []
        assert versions == {"v1", "v2"}
        assert state.version == 2
        assert call(supervisor).json()["version"] == "v2"

        def only_the_new_one() -> bool:
            left = containers(client, supervisor.state_dir, "greeter")
            return [c.name for c in left] not in ([], [serving.name]) and len(left) == 1

        eventually(only_the_new_one)


class TestBadInput:
    """Each mistake is one DeployError that says what to do; nothing runs."""

    def test_invalid_image_reference(
        self, client: Any, supervisor: ContainerSupervisor, project: Path
    ) -> None:
        """An image name that is no reference is refused before a build."""
        deployment = Deployment(
            name="bad-ref",
            image="Greeter:1.0",
            template_dir=TEMPLATE,
            handler_dir=project / "greeter",
        )

        with pytest.raises(DeployError) as caught:
            supervisor.deploy(deployment)

        message = str(caught.value)
        assert "image 'Greeter:1.0' is not a valid image reference" in message
        assert "lower-case" in message
        assert "NAME:TAG" in message
        assert containers(client, supervisor.state_dir, "bad-ref") == []

    def test_limits_that_are_no_quantity(
        self, client: Any, supervisor: ContainerSupervisor, project: Path
    ) -> None:
        """A memory limit that is no Kubernetes quantity is refused by name."""
        deployment = Deployment(
            name="bad-limits",
            image="bad-limits:latest",
            template_dir=TEMPLATE,
            handler_dir=project / "greeter",
            limits={"memory": "lots"},
        )

        with pytest.raises(DeployError, match=r"limits\.memory 'lots' is not a"):
            supervisor.deploy(deployment)
        assert containers(client, supervisor.state_dir, "bad-limits") == []

    def test_image_that_cannot_be_pulled(
        self, client: Any, supervisor: ContainerSupervisor
    ) -> None:
        """An image that is neither local nor pullable says so, with a fix."""
        image = f"localfaas-test/absent-{uuid.uuid4().hex[:8]}:1"

        with pytest.raises(DeployError) as caught:
            supervisor.deploy(Deployment(name="absent", image=image))

        message = str(caught.value)
        assert f"image {image!r} is not present locally and pulling it" in message
        assert "docker login" in message
        assert "absent" not in supervisor.names()

    def test_requirement_that_fails_to_install(
        self,
        client: Any,
        supervisor: ContainerSupervisor,
        tmp_path: Path,
    ) -> None:
        """A requirement pip cannot find fails the build at its step."""
        handler = write_handler(
            tmp_path / "broken", requirements="localfaas-no-such-dist==0.0.1\n"
        )
        deployment = Deployment(
            name="broken",
            image="localfaas-test/containers-broken:latest",
            template_dir=TEMPLATE,
            handler_dir=handler,
        )

        with pytest.raises(DeployError) as caught:
            supervisor.deploy(deployment)

        message = str(caught.value)
        assert "pip install --user -r function/requirements.txt" in message
        assert "localfaas-no-such-dist" in message
        assert "Hint: a Python requirement failed to install" in message
        with pytest.raises(FunctionNotFound):
            supervisor.status("broken")
        assert containers(client, supervisor.state_dir, "broken") == []

    def test_dockerfile_error(
        self, supervisor: ContainerSupervisor, project: Path, tmp_path: Path
    ) -> None:
        """A Dockerfile the engine cannot parse is refused, naming the file."""
        template = tmp_path / "python3-http-auth"
        shutil.copytree(TEMPLATE, template)
        (template / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nBOGUS step\n")
        deployment = Deployment(
            name="bad-dockerfile",
            image="localfaas-test/containers-bad-dockerfile:latest",
            template_dir=template,
            handler_dir=project / "greeter",
        )

        with pytest.raises(DeployError) as caught:
            supervisor.deploy(deployment)

        message = str(caught.value)
        assert "the Docker engine refused to build" in message
        assert "bogus" in message.lower()
        assert "Hint: fix" in message
        assert "Dockerfile" in message

    def test_name_clash_with_a_foreign_container(
        self, client: Any, supervisor: ContainerSupervisor, greeter: Deployment
    ) -> None:
        """A container of the same name, not ours, is named with the fix."""
        foreign = client.containers.run(
            BASE_IMAGE,
            ["sleep", "300"],
            name="localfaas-clash-1",
            detach=True,
            network_mode="host",
        )
        try:
            with pytest.raises(DeployError) as caught:
                supervisor.deploy(Deployment(name="clash", image=IMAGE))
        finally:
            foreign.remove(force=True)

        message = str(caught.value)
        assert "a running container named 'localfaas-clash-1'" in message
        assert "docker rm -f localfaas-clash-1" in message
        assert containers(client, supervisor.state_dir, "clash") == []

    def test_no_engine(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an engine the supervisor cannot start, and says how to fix it."""
        socket = tmp_path / "docker.sock"
        monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")

        with pytest.raises(EngineUnavailable) as caught:
            ContainerSupervisor(tmp_path / "state")

        assert caught.value.message.startswith(f"no Docker engine at unix://{socket}")
        assert caught.value.hint is not None
        assert "DOCKER_HOST" in caught.value.hint


class TestCleanUp:
    """Containers never outlive the emulator that started them."""

    def test_stop_all_removes_every_container(
        self, client: Any, greeter: Deployment, tmp_path: Path
    ) -> None:
        """After stop_all no container carries the state dir's label."""
        running = supervisor_for(client, tmp_path / "state")
        running.deploy(
            Deployment(name="plain", image=IMAGE, env_vars={"auth_scheme": "none"})
        )
        assert len(containers(client, running.state_dir, "plain")) == 1

        running.stop_all()

        assert containers(client, running.state_dir) == []

    def test_leftovers_of_a_killed_run_are_removed(
        self, client: Any, tmp_path: Path
    ) -> None:
        """A new supervisor on a state dir removes what a killed run left."""
        state = (tmp_path / "state").absolute()
        client.containers.create(BASE_IMAGE, ["true"], labels={OWNER_LABEL: str(state)})

        supervisor_for(client, state).stop_all()

        assert containers(client, state) == []


STACK = """\
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  hello:
    lang: python3-http-auth
    handler: ./hello
    image: localfaas-test/containers-hello:latest
    environment:
      auth_scheme: none
      GREETING: from-up
"""


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Records each callback the async queue posts."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.received.append(self.rfile.read(length))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A callback receiver on a free port, and what it received."""
    received: list[bytes] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cb", received
    server.shutdown()


class TestUp:
    """``localfaas up --docker`` from start to Ctrl-C."""

    @pytest.fixture
    def emulator(
        self,
        greeter: Deployment,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Iterator[Emulator]:
        """A tiny stack served with --docker; the greeter's build is cached."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "stack.yml").write_text(STACK)
        write_handler(project / "hello")
        monkeypatch.setenv(PYTHON_IMAGE_VARIABLE, BASE_IMAGE)

        running = start(project, tmp_path / "cache", "--docker", "--no-watch")
        yield running
        running.stop()

    def test_up_serves_and_cleans_up(
        self,
        client: Any,
        emulator: Emulator,
        receiver: tuple[str, list[bytes]],
    ) -> None:
        """Sync and async calls reach the container; Ctrl-C removes it."""
        url, received = receiver
        state = emulator.project / ".localfaas"
        assert len(containers(client, state, "hello")) == 1

        answer = httpx.post(f"{emulator.url}/function/hello", content=b"x")
        accepted = httpx.post(
            f"{emulator.url}/async-function/hello",
            content=b"later",
            headers={"X-Callback-Url": url},
        )
        eventually(lambda: received, timeout=30)
        code = emulator.stop(signal.SIGINT)

        assert answer.status_code == 200
        assert answer.json() == {"version": "v1", "greeting": "from-up"}
        assert accepted.status_code == 202
        assert json.loads(received[0]) == answer.json()
        # The CLI's exit status for Ctrl-C (128 + SIGINT), not a failure.
        assert code == 130
        assert containers(client, state) == []
        assert "Traceback" not in emulator.output()

    def test_up_without_an_engine(self, tmp_path: Path) -> None:
        """No engine: one error line with a hint, no traceback, exit 1."""
        project = tmp_path / "project"
        project.mkdir()
        (project / "stack.yml").write_text(STACK)
        write_handler(project / "hello")
        socket = tmp_path / "docker.sock"

        result = run_up(project, {"DOCKER_HOST": f"unix://{socket}"})

        assert result.returncode == 1
        assert f"Error: no Docker engine at unix://{socket}" in result.stderr
        assert "Hint:" in result.stderr
        assert "Traceback" not in result.stderr


def run_up(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``localfaas up --docker`` in ``project``, expected to end by itself."""
    port = str(free_port())
    return subprocess.run(
        [sys.executable, "-m", "localfaas", "up", "--docker", "--port", port],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
