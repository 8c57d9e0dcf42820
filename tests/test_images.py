"""Images that ``localfaas build`` makes from both templates, on a real engine.

Each template builds one sample function (with the local base image, since
no registry is reachable: ``--build-arg PYTHON_IMAGE=...``), and the
container must honour the watchdog contract of tooling.md §4: a non-root
user, the ``port`` it is given, ``/_/health``, the image's own
HEALTHCHECK, auth from a secret file under ``/var/openfaas/secrets``
(refusing when it is missing), and a SIGTERM that lets an in-flight
request finish before the process exits 0.

The engine uses vfs, where every build step and every new container copies
the whole image, so the images are built once per session and the
containers are shared by the tests of a template; stopping one (the
SIGTERM test) is undone by a cheap restart before the next test. Builds
take a minute or two each, so there are few: one per template, one whose
handler test fails (cached up to its last two steps), and two tiny
``lang: dockerfile`` ones for the engine's refusals.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from conftest import free_port
from docker_support import (
    BASE_IMAGE,
    build_network_mode,
    docker_client,
    require_base_image,
)

from localfaas.builder import BuildFailed, build_stack
from localfaas.stack import load_stack

pytestmark = pytest.mark.docker

SECRET = "github-webhook-secret"
KEY = "image-test-key"

# Only bounds on waiting, never assertions about speed.
START_DEADLINE = 60.0
HEALTH_DEADLINE = 60.0
STOP_GRACE = 40

# The handler sleeps this long when asked, and says when it started.
SLOW_SECONDS = 3
SLEEPING_MARKER = "/tmp/sleeping"

HTTP_HANDLER = f'''\
import pathlib
import time


def handle(event, context):
    """Greet the verified sender; with ?sleep=N, first wait N seconds."""
    seconds = float(event.query.get("sleep", "0"))
    if seconds:
        pathlib.Path("{SLEEPING_MARKER}").touch()
        time.sleep(seconds)
    who = event.auth.subject if event.auth else "anonymous"
    return {{"statusCode": 200, "body": f"Hello, {{who}}!"}}
'''

HTTP_TEST = """\
from types import SimpleNamespace

from .handler import handle


def test_greets_the_sender():
    event = SimpleNamespace(query={}, auth=SimpleNamespace(subject="octocat"))
    assert handle(event, None)["body"] == "Hello, octocat!"
"""

FAILING_TEST = """\
from types import SimpleNamespace

from .handler import handle


def test_greeting_is_wrong_on_purpose():
    event = SimpleNamespace(query={}, auth=None)
    assert handle(event, None)["body"] == "Goodbye"
"""

FLASK_HANDLER = f'''\
import pathlib
import time

from flask import request

from faas_runtime import current_identity


def handle(req):
    """Greet the verified sender; with ?sleep=N, first wait N seconds."""
    seconds = float(request.args.get("sleep", "0"))
    if seconds:
        pathlib.Path("{SLEEPING_MARKER}").touch()
        time.sleep(seconds)
    identity = current_identity()
    return f"Hello, {{identity.subject if identity else 'anonymous'}}!"
'''

FLASK_TEST = """\
from flask import Flask

from .handler import handle


def test_greets_anonymous_outside_the_runtime():
    with Flask(__name__).test_request_context("/"):
        assert handle("") == "Hello, anonymous!"
"""

BROKEN_DOCKERFILE = f"FROM {BASE_IMAGE}\nFETCH nothing\n"

BAD_REQUIREMENT_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY requirements.txt /tmp/requirements.txt
RUN python -m pip install -r /tmp/requirements.txt
"""

# Tests run in the build for the python3-http-auth samples only; the
# python3-flask-auth one keeps TEST_ENABLED's default (false).
TESTS_ON = {"TEST_ENABLED": "true"}


@dataclass(frozen=True)
class Sample:
    """A function of the test project: template, files, build arguments."""

    lang: str
    files: dict[str, str]
    build_args: dict[str, str] = field(default_factory=dict)
    # A build whose layers this one shares: it starts when that one ends,
    # so the engine's cache has one chain of those layers to follow.
    after: str | None = None


FUNCTIONS = {
    "greeter-http": Sample(
        "python3-http-auth",
        {"handler.py": HTTP_HANDLER, "handler_test.py": HTTP_TEST},
        TESTS_ON,
    ),
    "greeter-flask": Sample(
        "python3-flask-auth",
        {"handler.py": FLASK_HANDLER, "handler_test.py": FLASK_TEST},
        after="greeter-http",
    ),
    "failing-tests": Sample(
        "python3-http-auth",
        {"handler.py": HTTP_HANDLER, "handler_test.py": FAILING_TEST},
        TESTS_ON,
        after="greeter-http",
    ),
    "broken-dockerfile": Sample("dockerfile", {"Dockerfile": BROKEN_DOCKERFILE}),
    "bad-requirement": Sample(
        "dockerfile",
        {
            "Dockerfile": BAD_REQUIREMENT_DOCKERFILE,
            "requirements.txt": "localfaas-no-such-package-for-tests==0.0.0\n",
        },
    ),
}

# The function each template's container tests run.
SAMPLES = {"python3-http-auth": "greeter-http", "python3-flask-auth": "greeter-flask"}
TEMPLATES = list(SAMPLES)

# The classic builder's log lines for a committed layer and a step's
# container.
LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")
STEP_CONTAINER = re.compile(r"^ ---> Running in ([0-9a-f]{12})$")


@dataclass
class Built:
    """One build: its image id (None if it failed) and its log lines."""

    image: str | None
    log: list[str]
    failure: BuildFailed | None = None


@dataclass
class Images:
    """Builds the sample functions once each, and removes them at the end.

    Every build starts as soon as one is wanted, side by side where they
    share no layers: on vfs a build mostly waits for file copies, so
    builds overlap well, and the http sample's tests run while the flask
    sample builds.
    """

    client: Any
    project: Path
    tag: str
    pool: ThreadPoolExecutor = field(default_factory=ThreadPoolExecutor)
    builds: dict[str, Future[Built]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, template: str) -> Built:
        """The template's sample function."""
        return self.build(SAMPLES[template])

    def build(self, name: str) -> Built:
        """Function *name*, built once; a BuildFailed is kept, not raised."""
        with self.lock:
            if not self.builds:
                self._start_all()
        return self.builds[name].result()

    def _start_all(self) -> None:
        # Side by side, except that a build sharing another's first steps
        # waits for it: built at the same time, the two would make twin
        # chains of those layers, and the engine's cache lookup may follow
        # the twin that does not lead to the rest of the layers.
        for name, sample in FUNCTIONS.items():
            first = self.builds[sample.after] if sample.after else None
            self.builds[name] = self.pool.submit(self._build, name, first)

    def _build(self, name: str, first: Future[Built] | None) -> Built:
        # Each build has its own client (build_stack connects and closes),
        # so no connection is shared between threads.
        if first is not None:
            first.result()
        stack = load_stack(self.project / "stack.yaml")
        log: list[str] = []
        args = {"PYTHON_IMAGE": BASE_IMAGE, **FUNCTIONS[name].build_args}
        try:
            images = build_stack(
                stack,
                [name],
                shrinkwrap_only=False,
                build_args=args,
                progress=log.append,
            )
        except BuildFailed as failure:
            return Built(None, log, failure)
        return Built(images[0], log)

    def remove(self) -> None:
        """Remove what the builds left: failed builds' layers, then images."""
        self.pool.shutdown(wait=True)
        futures = self.builds.values()
        builds = [f.result() for f in futures if f.exception() is None]
        for built in builds:
            if built.image is not None:
                continue
            # Newest first: a layer with children cannot be removed.
            for line in reversed(built.log):
                layer = LAYER.match(line)
                if layer:
                    self._remove_untagged(layer.group(1))
        for built in builds:
            if built.image is not None:
                with contextlib.suppress(docker.errors.APIError):
                    self.client.images.remove(built.image, force=True)

    def _remove_untagged(self, layer: str) -> None:
        # A shared layer of a built image is tagged above or has children:
        # the engine refuses, and that is what should happen.
        with contextlib.suppress(docker.errors.APIError):
            if not self.client.images.get(layer).tags:
                self.client.images.remove(layer)


@dataclass
class Function:
    """A container of a sample function, on the host network at ``port``."""

    container: Any
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_serving(self) -> None:
        """Wait for ``/_/health``; fail with the logs if the process exits."""
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)

        logs = self.container.logs().decode(errors="replace")
        pytest.fail(f"function container not serving on {self.port}:\n{logs}")

    def ensure_running(self) -> Function:
        """Start the container again if a test stopped it."""
        self.container.reload()
        if self.container.status != "running":
            self.container.start()
        self.wait_serving()
        return self

    def exec(self, *command: str) -> tuple[int, str]:
        """Run *command* in the container as its user; code and output."""
        code, output = self.container.exec_run(list(command))
        return int(code), output.decode(errors="replace")


def signed(body: bytes, delivery: str) -> dict[str, str]:
    """GitHub's headers for *body*: HMAC-SHA256 of the body with KEY."""
    digest = hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": delivery}


def start(client: Any, image: str, volumes: dict[str, Any] | None = None) -> Function:
    """Run *image* with GitHub webhook auth on a free host port."""
    port = free_port()
    container = client.containers.run(
        image,
        detach=True,
        network_mode=build_network_mode(),
        environment={
            "port": str(port),
            "auth_scheme": "github",
            # After SIGTERM, keep serving 1 s (not write_timeout's 30 s)
            # before draining, so the SIGTERM test stays short.
            "healthcheck_interval": "1",
        },
        volumes=volumes or {},
    )
    function = Function(container, port)
    try:
        function.wait_serving()
    except BaseException:
        container.remove(force=True)
        raise
    return function


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    """The engine, with the local base image in place."""
    engine = docker_client()
    require_base_image(engine)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def images(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """A project holding every sample function; builds removed at the end."""
    project = tmp_path_factory.mktemp("images")
    tag = uuid.uuid4().hex[:12]
    stack = "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n"
    for name, sample in FUNCTIONS.items():
        (project / name).mkdir()
        for file_name, content in sample.files.items():
            (project / name / file_name).write_text(content)
        image = f"localfaas-test/{name}:{tag}"
        stack += f"  {name}:\n    lang: {sample.lang}\n    handler: ./{name}\n"
        stack += f"    image: {image}\n"
    (project / "stack.yaml").write_text(stack)

    built = Images(client, project, tag)
    yield built
    built.remove()


@pytest.fixture(scope="session")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GitHub webhook key, readable by the image's ``app`` user."""
    path = tmp_path_factory.mktemp("secrets") / SECRET
    path.write_text(KEY + "\n")
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module", params=TEMPLATES)
def template(request: pytest.FixtureRequest) -> str:
    """Each template in turn; the module's containers follow it."""
    return str(request.param)


@pytest.fixture(scope="module")
def image(images: Images, template: str) -> str:
    """The template's sample image, built or failing the tests."""
    built = images.sample(template)
    if built.image is None:
        pytest.fail(f"building the {template} sample failed: {built.failure}")
    return built.image


@pytest.fixture(scope="module")
def serving(client: Any, image: str, secret_file: Path) -> Iterator[Function]:
    """The sample with its secret mounted read-only, as OpenFaaS mounts it."""
    mount = {"bind": f"/var/openfaas/secrets/{SECRET}", "mode": "ro"}
    function = start(client, image, {str(secret_file): mount})
    yield function
    function.container.remove(force=True)


@pytest.fixture
def running(serving: Function) -> Function:
    """The shared container, restarted if the SIGTERM test stopped it."""
    return serving.ensure_running()


@pytest.fixture(scope="module")
def without_secret(client: Any, image: str) -> Iterator[Function]:
    """The sample with ``auth_scheme=github`` but no secret file mounted."""
    function = start(client, image)
    yield function
    function.container.remove(force=True)


class TestContainer:
    """The watchdog contract (tooling.md §4.1), for each template."""

    def test_runs_as_non_root_user(self, running: Function) -> None:
        """The image's user is ``app``, and not uid 0."""
        code, uid = running.exec("id", "-u")

        assert running.container.attrs["Config"]["User"] == "app"
        assert code == 0
        assert uid.strip() != "0"

    def test_listens_on_the_given_port(self, running: Function) -> None:
        """``port`` from the environment is where it serves ``/_/health``."""
        response = httpx.get(f"{running.url}/_/health", timeout=5)

        assert response.status_code == 200
        assert response.text == "OK"

    def test_image_healthcheck_turns_healthy(self, running: Function) -> None:
        """The image's own HEALTHCHECK (on /tmp/.lock) reports healthy."""
        deadline = time.monotonic() + HEALTH_DEADLINE
        status = "starting"
        while status == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
            running.container.reload()
            status = running.container.attrs["State"]["Health"]["Status"]

        check = running.container.attrs["Config"]["Healthcheck"]["Test"]
        assert "/tmp/.lock" in " ".join(check)
        assert status == "healthy"

    def test_signed_request_passes(self, running: Function) -> None:
        """A body signed with the mounted key reaches the handler."""
        body = b'{"action": "opened"}'

        response = httpx.post(
            running.url, content=body, headers=signed(body, "delivery-42")
        )

        assert response.status_code == 200
        assert response.text == "Hello, delivery-42!"

    def test_unsigned_request_is_refused(self, running: Function) -> None:
        """No signature: 401, and the handler is not called."""
        response = httpx.post(running.url, content=b"{}")

        assert response.status_code == 401
        assert "Hello" not in response.text

    def test_wrongly_signed_request_is_refused(self, running: Function) -> None:
        """A signature over another body is refused with 401."""
        headers = signed(b"another body", "delivery-43")

        response = httpx.post(running.url, content=b"{}", headers=headers)

        assert response.status_code == 401

    def test_missing_secret_denies(self, without_secret: Function) -> None:
        """No secret file: even a signed request gets 500, never the handler."""
        body = b"{}"

        response = httpx.post(
            without_secret.url, content=body, headers=signed(body, "delivery-44")
        )

        assert response.status_code == 500
        assert "Hello" not in response.text

    def test_sigterm_drains_an_in_flight_request(self, running: Function) -> None:
        """SIGTERM lets a slow request finish with 200, then exits 0."""
        body = b"{}"
        answers: list[httpx.Response] = []
        url = f"{running.url}/?sleep={SLOW_SECONDS}"
        running.exec("rm", "-f", SLEEPING_MARKER)

        def call() -> None:
            headers = signed(body, "delivery-45")
            answers.append(httpx.post(url, content=body, headers=headers, timeout=60))

        caller = threading.Thread(target=call)
        caller.start()
        wait_for_marker(running)
        running.container.stop(timeout=STOP_GRACE)
        caller.join(timeout=60)

        running.container.reload()
        assert running.container.attrs["State"]["ExitCode"] == 0
        assert [a.status_code for a in answers] == [200]
        assert answers[0].text == "Hello, delivery-45!"


def wait_for_marker(function: Function) -> None:
    """Wait until the handler is inside its slow request."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if function.exec("test", "-e", SLEEPING_MARKER)[0] == 0:
            return
        time.sleep(0.1)
    pytest.fail("the slow request never reached the handler")


class TestBuilds:
    """What the builds themselves show and refuse."""

    def test_handler_tests_run_when_enabled(self, images: Images) -> None:
        """TEST_ENABLED=true runs the handler's tests inside the build."""
        built = images.sample("python3-http-auth")

        assert built.image is not None
        assert any(re.match(r"1 passed\b", line) for line in built.log)

    def test_handler_tests_skipped_by_default(self, images: Images) -> None:
        """Without TEST_ENABLED no test runs, as in OpenFaaS since #76."""
        built = images.sample("python3-flask-auth")

        assert built.image is not None
        assert not any(re.search(r"\d+ passed\b", line) for line in built.log)

    def test_faas_cli_lines_around_the_log(self, images: Images) -> None:
        """The build log is framed by faas-cli's own lines."""
        built = images.sample("python3-http-auth")
        image = f"localfaas-test/greeter-http:{images.tag}"

        assert built.log[0] == "[0] > Building greeter-http."
        assert built.log[1] == (
            f"Building: {image} with python3-http-auth template. Please wait.."
        )
        assert built.log[-3] == f"Image: {image} built."
        assert built.log[-2].startswith("[0] < Building greeter-http done in ")
        assert built.log[-1].startswith("Total build time: ")

    def test_built_image_is_tagged(self, images: Images, client: Any) -> None:
        """The returned id is the image the stack's name points to."""
        built = images.sample("python3-http-auth")
        tagged = client.images.get(f"localfaas-test/greeter-http:{images.tag}")

        assert tagged.id == built.image

    def test_failing_handler_test_fails_the_build(
        self, images: Images, client: Any
    ) -> None:
        """A failing handler test is a BuildFailed naming the test step."""
        built = images.build("failing-tests")

        failure = built.failure
        assert failure is not None
        assert failure.step is not None
        assert "TEST_ENABLED" in failure.step
        assert "returned a non-zero code" in str(failure)
        assert any("1 failed" in line for line in failure.output)
        assert "tests failed" in (failure.hint or "")
        assert_nothing_left(client, built, "failing-tests", images.tag)

    def test_bad_requirement_fails_the_build(self, images: Images, client: Any) -> None:
        """A requirement pip cannot find fails at the pip step, with a hint."""
        built = images.build("bad-requirement")

        failure = built.failure
        assert failure is not None
        assert failure.step is not None
        assert "pip install" in failure.step
        assert any("localfaas-no-such-package" in line for line in failure.output)
        assert "requirement failed to install" in (failure.hint or "")
        assert_nothing_left(client, built, "bad-requirement", images.tag)

    def test_dockerfile_error_is_refused(self, images: Images) -> None:
        """A Dockerfile the engine cannot parse is refused before any step."""
        built = images.build("broken-dockerfile")

        failure = built.failure
        assert failure is not None
        assert failure.step is None
        assert "unknown instruction" in str(failure)
        assert "Dockerfile" in (failure.hint or "")


def assert_nothing_left(client: Any, built: Built, name: str, tag: str) -> None:
    """No step container survives a failed build, and no image is tagged."""
    for line in built.log:
        step = STEP_CONTAINER.match(line)
        if step:
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(step.group(1))

    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"localfaas-test/{name}:{tag}")
