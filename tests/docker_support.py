"""The Docker engine and base image the container tests run on.

Without an engine (or without the locally built base image) the container
tests skip with a hint on a developer's machine, but fail on CI, which
must have both: `scripts/docker-engine` and `scripts/base-image` set them
up.
"""

import os
from typing import NoReturn

import docker
import docker.errors
import pytest

BASE_IMAGE = "localfaas/python-base:bookworm"

# What a developer without an engine is told, and what CI is told.
NO_ENGINE = (
    "no Docker engine: run scripts/docker-engine as root "
    "(and scripts/base-image) to enable the container tests"
)
CI_HINT = ".ci/run must run scripts/docker-engine and scripts/base-image first"


def _unavailable(reason: str, hint: str) -> NoReturn:
    """Fail on CI, which must run the container tests, and skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}: {CI_HINT}", pytrace=False)

    pytest.skip(hint)


def docker_client() -> docker.DockerClient:
    """Return a client of the engine that answers, or skip (fail on CI)."""
    try:
        client = docker.from_env()
        client.ping()
    # The SDK raises its own errors while it negotiates the API version,
    # but lets `requests` connection errors (OSErrors) through from ping.
    except (docker.errors.DockerException, OSError) as error:
        _unavailable(f"no Docker engine answers ({error})", NO_ENGINE)

    return client


def require_base_image(client: docker.DockerClient) -> None:
    """Skip (fail on CI) unless the local base image exists."""
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _unavailable(
            f"the image {BASE_IMAGE} is missing",
            f"no image {BASE_IMAGE}: run scripts/base-image as root "
            "to enable the container tests",
        )


def build_network_mode() -> str:
    """Return the network that image builds and test containers use."""
    # scripts/docker-engine starts dockerd with --bridge=none because the
    # sandbox has no iptables, so there is no bridge network: a RUN step on
    # the default network cannot resolve or reach PyPI. Sharing the host's
    # network stack is the one mode that works, and it works everywhere.
    return "host"
