"""The Docker engine and base image the container tests stand on.

These tests prove the set-up of `scripts/docker-engine` and
`scripts/base-image` on a machine with no reachable container registry:
the engine answers, the image runs Python, containers reach PyPI through
the host's CA bundle, and a template-like build installs packages as root
and runs them as a non-root user.

The engine uses the vfs storage driver, which copies the whole image for
every new container, so each module fixture starts one container and the
tests run their commands in it.
"""

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker_support import (
    BASE_IMAGE,
    build_network_mode,
    docker_client,
    require_base_image,
)

# Like the templates' Dockerfiles: dependencies installed as root, then a
# non-root `app` user made with Debian's adduser (as python3-http-debian
# does; on bookworm a system user needs --home, or it gets /nonexistent).
# Every instruction, even USER, costs the classic builder a full copy of
# the image on vfs, so the file has no more of them than the test needs.
DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN python -m pip install --no-cache-dir waitress \\
 && adduser --system --group --home /home/app app
USER app
"""

# A health check that runs Python as the image's user, every second; the
# templates declare theirs with HEALTHCHECK, which the engine runs the same
# way (an exec in the container). The API counts time in nanoseconds.
SECOND = 1_000_000_000
HEALTHCHECK = {
    "test": ["CMD", "python", "-c", "import waitress"],
    "interval": SECOND,
    "timeout": 10 * SECOND,
    "retries": 30,
}

# Keeps a container alive for `exec`; `remove(force=True)` ends it.
IDLE = ["sleep", "infinity"]

# Only a bound on waiting for the health check, not a speed assertion.
HEALTH_DEADLINE_SECONDS = 60

# The classic builder prints one " ---> <id>" line per image it commits.
LAYER_LINE = re.compile(r"^ ---> ([0-9a-f]{12})$", re.MULTILINE)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    """A client of the running engine, closed after the module."""
    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def base_container(client: docker.DockerClient) -> Iterator[Any]:
    """A running container of the base image, on the host network."""
    require_base_image(client)

    container = _start(client, BASE_IMAGE)
    yield container
    container.remove(force=True)


@pytest.fixture(scope="module")
def built_container(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A running container of a template-like image built on the base."""
    require_base_image(client)
    context = tmp_path_factory.mktemp("build")
    (context / "Dockerfile").write_text(DOCKERFILE)
    tag = f"localfaas-test/docker-engine:{uuid.uuid4().hex[:12]}"

    image = _build(client, context, tag)
    try:
        container = _start(client, tag, healthcheck=HEALTHCHECK)
        yield container
        container.remove(force=True)
    finally:
        client.images.remove(image.id, force=True)


def _start(client: docker.DockerClient, image: str, **options: Any) -> Any:
    """Start an idle, detached container of `image`."""
    return client.containers.run(
        image, IDLE, network_mode=build_network_mode(), detach=True, **options
    )


def _build(client: docker.DockerClient, context: Path, tag: str) -> Any:
    """Build `context` on the host network; fail with the build's log."""
    try:
        image, _ = client.images.build(
            path=str(context),
            tag=tag,
            network_mode=build_network_mode(),
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as error:
        lines = error.build_log
        log = "".join(str(line.get("stream", line)) for line in lines)
        _remove_leftovers(client, log)
        pytest.fail(f"docker build of {tag} failed: {error}\n{log}")

    return image


def _remove_leftovers(client: docker.DockerClient, log: str) -> None:
    """Remove the untagged layers a failed build committed before failing."""
    for layer in reversed(LAYER_LINE.findall(log)):
        # The first layer is the base image itself: tagged, so it stays.
        with contextlib.suppress(docker.errors.APIError):
            if not client.images.get(layer).tags:
                client.images.remove(layer)


def _exec(container: Any, command: str, **options: Any) -> str:
    """Run a shell `command` in `container`; return its stdout or fail."""
    code, (out, err) = container.exec_run(
        ["sh", "-c", command],
        demux=True,
        **options,
    )
    stdout, stderr = (out or b"").decode(), (err or b"").decode()

    assert code == 0, f"{command!r} exited with {code}:\n{stdout}{stderr}"
    return stdout


@pytest.mark.docker
def test_engine_answers(client: docker.DockerClient) -> None:
    """The engine answers a ping and reports a server version."""
    assert client.ping() is True
    assert client.version()["Version"]


@pytest.mark.docker
def test_base_image_runs_python(base_container: Any) -> None:
    """`python` in the base image is Debian bookworm's Python 3.11."""
    script = "import sys; print(*sys.version_info[:2], sep='.')"

    output = _exec(base_container, f'python -c "{script}"')

    assert output.strip() == "3.11"


@pytest.mark.docker
def test_pip_downloads_from_pypi(base_container: Any) -> None:
    """pip reaches PyPI over TLS, trusting the CA bundle copied in."""
    command = "python -m pip download -q --no-deps -d /tmp/x six && ls /tmp/x"

    output = _exec(base_container, command)

    assert re.fullmatch(r"six-[\d.]+-py2\.py3-none-any\.whl\n", output)


@pytest.mark.docker
def test_pip_installs_for_a_non_root_user(base_container: Any) -> None:
    """A non-root user's plain `pip install` lands in its own ~/.local."""
    install = "python -m pip install -q --no-cache-dir six"
    where = "python -c 'import six; print(six.__file__)'"

    nobody = {"user": "nobody", "environment": {"HOME": "/tmp/home"}}

    _exec(base_container, f"mkdir -p /tmp/home && {install}", **nobody)
    output = _exec(base_container, where, **nobody)

    assert output.startswith("/tmp/home/.local/lib/python3.11/")


@pytest.mark.docker
def test_built_image_imports_as_non_root_user(built_container: Any) -> None:
    """The image's `app` user imports the waitress that root installed."""
    script = "import os, waitress; print(os.getuid(), waitress.__file__)"

    uid, module = _exec(built_container, f'python -c "{script}"').split()

    assert uid != "0"
    assert module.startswith("/usr/local/lib/python3.11/dist-packages/")


@pytest.mark.docker
def test_python_health_check_turns_healthy(built_container: Any) -> None:
    """A health check that runs Python reports the container healthy."""
    deadline = time.monotonic() + HEALTH_DEADLINE_SECONDS
    status = "starting"

    while status == "starting" and time.monotonic() < deadline:
        time.sleep(0.5)
        built_container.reload()
        status = built_container.attrs["State"]["Health"]["Status"]

    assert status == "healthy"
