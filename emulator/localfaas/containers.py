"""The provider half of ``localfaas up --docker``: functions as containers.

faasd runs each replica of a function as a container; so does
:class:`ContainerSupervisor`, on the local Docker engine through the docker
SDK. It has the process :class:`~localfaas.supervisor.Supervisor`'s API and
errors, so the gateway cannot tell the two apart, and keeps the same
provider guarantees:

* a deploy of a stack function lays out ``builds/<name>/<version>/`` as
  ``faas-cli build`` does (tooling.md §3.2) and builds it, tagged as the
  deployment's image; a deploy of a bare image runs the local image, or
  pulls it first;
* a replica is a container ``localfaas-<fn>-<n>`` and counts once
  ``/_/health`` answers 200 (§4.1); an update is rolling: the new
  containers are healthy before the gateway switches, and the old ones get
  SIGTERM after a grace, so they drain;
* a container that exits is started again with backoff, as a kubelet does;
* only the declared secrets are bind-mounted, read-only, at
  ``/var/openfaas/secrets``, as faasd mounts them;
* every line a container prints is kept for ``/system/logs`` (§8.9);
* ``limits`` are the container's cgroup caps, as faas-netes and faasd
  enforce them (see ``resources``).

Networking: on an engine with a ``bridge`` network each container publishes
8080 on a random 127.0.0.1 port. An engine without one (scripts/docker-engine
runs dockerd with ``--bridge=none``) gives containers the host's network,
and each listens on its own free loopback port, which its ``port`` names.

Each container is labelled ``com.localfaas.owner=<state dir>``:
:meth:`ContainerSupervisor.stop_all` removes them all, and a new supervisor
on the same state dir removes what a killed run left behind.

The bookkeeping behind these (versions, scaling, round robin, status and
log lines) and the errors (``FunctionNotFound``, ``NoReplicas``,
``DeployError``, and ``MissingSecrets`` from the secret store) are the
process supervisor's, shared in ``replicas``; this module only runs,
probes, restarts and removes containers. Building the supervisor raises
``EngineUnavailable`` when no engine answers or this user may not use it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors

from .builder import Progress, build, connect, image_problem, network_mode
from .errors import LocalfaasError
from .replicas import (
    HEALTH_PATH,
    LOOPBACK,
    MAX_LINE,
    STABLE_AFTER,
    STOPPED,
    TAIL_LINES,
    Backoff,
    DeployError,
    Deployment,
    Function,
    LogSink,
    ReplicaSupervisor,
    SecretSource,
    SupervisorError,
    Version,
    check_deployment,
    check_resources,
    drain_limit,
    free_port,
    lay_out,
    no_secret_store,
)
from .resources import container_resources
from .stack import FunctionSpec, function_name_problem

__all__ = [
    "FUNCTION_LABEL",
    "OWNER_LABEL",
    "PYTHON_IMAGE_VARIABLE",
    "SECRETS_TARGET",
    "ContainerSupervisor",
    "python_image_args",
]

log = logging.getLogger("localfaas.containers")

FUNCTION_LABEL = "com.openfaas.function"
OWNER_LABEL = "com.localfaas.owner"
VERSION_LABEL = "com.localfaas.version"
SECRETS_TARGET = "/var/openfaas/secrets"

# Names a base image for the templates' ``ARG PYTHON_IMAGE`` (where nothing
# can be pulled, scripts/base-image builds one).
PYTHON_IMAGE_VARIABLE = "LOCALFAAS_PYTHON_IMAGE"

# The platform always dials 8080 inside a function's network (§4.1).
_CONTAINER_PORT = "8080"
_POLL = 0.5
# Creating a container copies its image on the vfs driver: seconds each.
_KEEPER_EXIT = 60.0
_DIGEST = "sha256:"


def python_image_args(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``PYTHON_IMAGE`` build argument ``LOCALFAAS_PYTHON_IMAGE`` asks for."""
    image = environ.get(PYTHON_IMAGE_VARIABLE, "").strip()
    return {"PYTHON_IMAGE": image} if image else {}


class ContainerSupervisor(ReplicaSupervisor["_Version", "_Replica"]):
    """Deploys, scales, restarts and stops functions as Docker containers.

    Thread-safe. ``log_sink`` is called from one reader thread per
    container, so it must be thread-safe too. ``client`` defaults to the
    engine at ``DOCKER_HOST`` (closed by :meth:`stop_all`); ``build_args``
    to :func:`python_image_args` of the environment.
    """

    logger = log
    poll_interval = _POLL

    def __init__(
        self,
        state_dir: Path,
        *,
        secrets: SecretSource | None = None,
        log_sink: LogSink | None = None,
        client: Any = None,
        build_args: Mapping[str, str] | None = None,
        health_timeout: float = 60.0,
        retire_grace: float = 1.0,
        log_lines: int = 2000,
    ) -> None:
        super().__init__(
            state_dir,
            secrets=secrets,
            log_sink=log_sink,
            health_timeout=health_timeout,
            retire_grace=retire_grace,
            log_lines=log_lines,
        )
        if build_args is None:
            build_args = python_image_args(os.environ)
        self.build_args = dict(build_args)
        self._own_client = client is None
        self.client = connect() if client is None else client
        # None: a bridge exists and ports are published; else "host".
        self._network = network_mode(self.client)

        self._replicas: set[_Replica] = set()
        self._disposers: list[threading.Thread] = []
        self._serials: dict[str, int] = {}
        self._remove_leftovers()
        shutil.rmtree(self._mounts, ignore_errors=True)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every container (SIGTERM, SIGKILL after ``timeout``), remove it.

        Also removes any container of this state dir that a deploy still in
        flight created. The supervisor is unusable afterwards.
        """
        self._closed.set()
        with self._changed:
            replicas = list(self._replicas)
            logs = list(self._logs.values())
            disposers = list(self._disposers)
            self._functions.clear()
            self._logs.clear()
            for replica in replicas:
                replica.halt()
            self._changed.notify_all()

        _each(replicas, lambda replica: replica.remove(timeout))
        for thread in [*disposers, *(r.keeper for r in replicas if r.keeper)]:
            thread.join(_KEEPER_EXIT)
        left = self._remove_leftovers()
        for item in logs:
            item.close()
        shutil.rmtree(self._mounts, ignore_errors=True)
        log.info("stopped %d container(s)", len(replicas) + left)
        if self._own_client:
            self.client.close()

    # -- preparing a version --------------------------------------------------

    def _check(self, deployment: Deployment) -> None:
        _check_deployment(deployment)

    @property
    def _mounts(self) -> Path:
        # Not state_dir/secrets: the secret store keeps its own files there.
        return self.state_dir / "mounts"

    def _prepare(self, deployment: Deployment, progress: Progress | None) -> _Version:
        if self._closed.is_set():
            raise SupervisorError(STOPPED)

        number = self._next_number(deployment.name)
        secrets = self._materialize(deployment, number)
        try:
            image = self._image(deployment, number, progress)
        except BaseException:
            shutil.rmtree(secrets, ignore_errors=True)
            raise

        return _Version(
            deployment=deployment,
            number=number,
            image=image,
            built=deployment.template_dir is not None,
            secrets=secrets,
            logs=self._logs_for(deployment),
            drain_limit=drain_limit(deployment),
        )

    def _materialize(self, deployment: Deployment, number: int) -> Path:
        folder = self._mounts / deployment.name / str(number)
        if deployment.secrets and self._secrets is None:
            raise no_secret_store(deployment)
        self._mounts.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._mounts.chmod(0o700)
        if self._secrets is not None:
            self._secrets.materialize(deployment.secrets, folder)
        folder.mkdir(parents=True, exist_ok=True)

        # The function runs as the image's user (``app``), not as the owner
        # of these files; Kubernetes mounts secrets world-readable (0644) for
        # the same reason. The state dir (0700) still keeps other users out.
        folder.chmod(0o755)
        for entry in folder.iterdir():
            entry.chmod(0o444)
        return folder

    def _image(
        self, deployment: Deployment, number: int, progress: Progress | None
    ) -> str:
        if deployment.template_dir is None:
            return self._local_or_pulled(deployment)

        folder = self.state_dir / "builds" / deployment.name / str(number)
        lay_out(deployment, folder)
        try:
            return self._build(deployment, folder, progress)
        finally:
            # The image holds it now.
            shutil.rmtree(folder, ignore_errors=True)

    def _build(
        self, deployment: Deployment, folder: Path, progress: Progress | None
    ) -> str:
        assert deployment.template_dir is not None
        spec = FunctionSpec(
            name=deployment.name,
            lang=deployment.template_dir.name,
            handler=deployment.handler_dir,
            image=deployment.image,
        )
        try:
            return build(
                spec,
                folder,
                client=self.client,
                build_args=self.build_args,
                progress=progress or _debug_log(deployment.name),
            )
        except LocalfaasError as exc:
            hint = f"\nHint: {exc.hint}" if exc.hint else ""
            raise DeployError(deployment.name, f"{exc.message}{hint}") from exc

    def _local_or_pulled(self, deployment: Deployment) -> str:
        image = deployment.image
        try:
            return str(self.client.images.get(image).id)
        except docker.errors.ImageNotFound:
            pass
        except (docker.errors.DockerException, OSError) as exc:
            raise _engine_error(deployment.name, f"look up {image!r}", exc) from exc

        log.info("function %s: pulling %s", deployment.name, image)
        try:
            return str(self.client.images.pull(image).id)
        except (docker.errors.DockerException, OSError) as exc:
            raise DeployError(
                deployment.name,
                f"image {image!r} is not present locally and pulling it "
                f"failed: {_reason(exc)}. Build it first (localfaas build), "
                "or check the name and your registry login (docker login)",
            ) from exc

    # -- starting, switching, retiring ----------------------------------------

    def _start(self, version: _Version, count: int) -> None:
        replicas = [self._add_replica(version) for _ in range(count)]
        for replica in replicas:
            self._keep(replica)
        self._await_healthy(version, replicas)

    def _add_replica(self, version: _Version) -> _Replica:
        name = version.deployment.name
        with self._lock:
            if self._closed.is_set():
                raise SupervisorError(STOPPED)
            serial = self._serials[name] = self._serials.get(name, 0) + 1
            port = free_port() if self._network == "host" else None
            replica = _Replica(version, f"localfaas-{name}-{serial}", port)
            version.replicas.append(replica)
            self._replicas.add(replica)
        return replica

    def _await_healthy(self, version: _Version, replicas: list[_Replica]) -> None:
        name = version.deployment.name
        deadline = time.monotonic() + self.health_timeout
        with self._changed:
            while True:
                pending = [r for r in replicas if r.ready_port() is None]
                if not pending:
                    return
                for replica in pending:
                    _raise_if_failed(name, replica)

                if time.monotonic() > deadline:
                    raise DeployError(
                        name,
                        f"{HEALTH_PATH} of its container {pending[0].name} did "
                        f"not answer 200 within {self.health_timeout:g}s; its "
                        "last output:",
                        pending[0].output(),
                    )
                self._changed.wait(_POLL)

    def _serve(self, version: _Version) -> None:
        version.serving = True
        for replica in version.replicas:
            # One that exited before now was left to the deploy to
            # report; from now on it is restarted like any other.
            if replica.keeper is not None and not replica.keeper.is_alive():
                self._keep(replica)

    def _serving_from(self, function: Function[_Version]) -> str:
        names = (replica.name for replica in function.version.replicas)
        return f"from {', '.join(names)}"

    def _start_one(self, version: _Version) -> None:
        self._keep(self._add_replica(version))

    def _retire(self, replicas: Iterable[_Replica], grace: float) -> None:
        # Requests may already be on their way to these ports, so SIGTERM
        # comes after a grace; the runtime then finishes what it has.
        for replica in replicas:
            replica.halt()
            thread = threading.Thread(
                target=self._dispose,
                args=(replica, grace),
                name=f"retire-{replica.name}",
                daemon=True,
            )
            self._disposers.append(thread)
            thread.start()

    def _dispose(self, replica: _Replica, grace: float) -> None:
        if self._closed.wait(grace):
            return  # stop_all removes it
        replica.remove(replica.version.drain_limit)
        with self._lock:
            self._replicas.discard(replica)
            self._disposers.remove(threading.current_thread())
            self._prune(replica.version)

    def _discard(self, version: _Version) -> None:
        with self._lock:
            for replica in version.replicas:
                replica.halt()
        _each(version.replicas, lambda replica: replica.remove(0.0))

        name = version.deployment.name
        with self._lock:
            self._replicas.difference_update(version.replicas)
            shutil.rmtree(version.secrets, ignore_errors=True)
            if name not in self._functions:
                # A first deploy that failed leaves nothing behind.
                self._logs.pop(name, None)

    def _prune(self, version: _Version) -> None:
        function = self._functions.get(version.deployment.name)
        if function is not None and function.version is version:
            return
        if any(replica.version is version for replica in self._replicas):
            return
        shutil.rmtree(version.secrets, ignore_errors=True)
        if version.built:
            self._drop_image(version.image)

    def _drop_image(self, image_id: str) -> None:
        # A rebuild moved the tag to a new image; the old one, untagged,
        # would only fill the disk (every image is a full copy on vfs).
        try:
            if not self.client.images.get(image_id).tags:
                self.client.images.remove(image_id)
        except (docker.errors.DockerException, OSError):
            pass  # still used by a container, or already gone

    # -- keeping a container running ------------------------------------------

    def _keep(self, replica: _Replica) -> None:
        replica.keeper = threading.Thread(
            target=self._tend,
            args=(replica,),
            name=f"keep-{replica.name}",
            daemon=True,
        )
        replica.keeper.start()

    def _tend(self, replica: _Replica) -> None:
        """Start the container; start it again each time it exits."""
        while True:
            run = self._launch(replica)
            if run is not None:
                replica.await_exit(run)

            with self._changed:
                self._changed.notify_all()
                # Before its version serves, the deploy reports the exit.
                if replica.stopping or not replica.version.serving:
                    return
                delay = replica.next_backoff(run)
            _report_restart(replica, run, delay)
            if replica.wake.wait(delay):
                return

    def _launch(self, replica: _Replica) -> _Run | None:
        name = replica.version.deployment.name
        try:
            if replica.container is None:
                replica.container = self._create(replica)
            since = time.time()
            replica.container.start()
            port = replica.port or _published_port(replica.container)
        except SupervisorError as exc:
            replica.failure = exc
            return None
        except docker.errors.NotFound as exc:
            # Removed behind our back: the next attempt creates it again.
            replica.container = None
            replica.failure = _engine_error(name, f"start {replica.name}", exc)
            return None
        except (docker.errors.DockerException, OSError) as exc:
            replica.failure = _engine_error(name, f"start {replica.name}", exc)
            return None

        run = _Run(port)
        replica.failure = None
        replica.run = run
        replica.follow(run, since)

        def gone() -> bool:
            return run.exited.is_set() or replica.stopping

        self._probe(replica.name, run.port, run.healthy, gone, 0.05)
        return run

    def _create(self, replica: _Replica) -> Any:
        version = replica.version
        name = version.deployment.name
        try:
            container = self.client.containers.create(
                version.image, name=replica.name, **self._options(replica)
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise self._clash(name, replica.name) from exc
            raise _engine_error(name, f"create {replica.name}", exc) from exc

        with self._lock:
            if not replica.stopping:
                return container
        # Stopped while the engine was creating it.
        with suppress(docker.errors.DockerException, OSError):
            container.remove(force=True)
        raise SupervisorError(STOPPED)

    def _options(self, replica: _Replica) -> dict[str, Any]:
        version = replica.version
        deployment = version.deployment
        env, network = _networking(replica.port)
        # local-run's order: the function's environment, then what the
        # platform injects (tooling.md §3.3); no drain wait after SIGTERM,
        # as the gateway stops routing before it (§4.1).
        environment = {
            **deployment.env_vars,
            "OPENFAAS_NAME": deployment.name,
            "OPENFAAS_NAMESPACE": deployment.namespace,
            "healthcheck_interval": "0",
            **env,
        }
        if deployment.env_process:
            environment["fprocess"] = deployment.env_process
        labels = {
            **deployment.labels,
            FUNCTION_LABEL: deployment.name,
            OWNER_LABEL: str(self.state_dir),
            VERSION_LABEL: str(version.number),
        }
        options: dict[str, Any] = {
            "environment": environment,
            "labels": labels,
            "volumes": {str(version.secrets): {"bind": SECRETS_TARGET, "mode": "ro"}},
            **container_resources(deployment.limits, deployment.requests),
            **network,
        }
        if deployment.read_only_root_filesystem:
            # The runtime's lock file and any scratch files go to /tmp.
            options["read_only"] = True
            options["tmpfs"] = {"/tmp": ""}  # noqa: S108
        return options

    def _clash(self, function: str, name: str) -> DeployError:
        try:
            other = self.client.containers.get(name)
            owner = other.labels.get(OWNER_LABEL)
            state = str(other.status)
        except (docker.errors.DockerException, OSError):
            owner, state = None, "existing"
        whose = f"the localfaas run at {owner}" if owner else "something else"
        return DeployError(
            function,
            f"a {state} container named {name!r}, started by {whose}, has the "
            "name localfaas gives this function's container: remove it with "
            f"'docker rm -f {name}' (or stop that run), or rename the function",
        )

    def _remove_leftovers(self) -> int:
        """Remove containers of this state dir that nothing here keeps."""
        label = f"{OWNER_LABEL}={self.state_dir}"
        try:
            # Sparse: a full listing inspects each container, and fails if
            # one is removed meanwhile.
            found = self.client.containers.list(
                all=True, sparse=True, filters={"label": label}
            )
        except (docker.errors.DockerException, OSError) as exc:
            log.warning("cannot list containers to clean up: %s", _reason(exc))
            return 0
        if found:
            log.info(
                "removing %d container(s) left by a previous run: %s",
                len(found),
                ", ".join(_name_of(container) for container in found),
            )
        _each(found, _remove_container)
        return len(found)


@dataclass(eq=False)
class _Run:
    """One start of a container, from its start to its exit."""

    port: int
    started: float = field(default_factory=time.monotonic)
    healthy: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    # Set as soon as the engine reports the exit; ``exited`` once its
    # output has been read to the end too.
    stopped: bool = False
    status: int | None = None
    # The engine's word that the kernel killed it for limits.memory.
    oom_killed: bool = False
    reader: threading.Thread | None = None


class _Replica:
    """One container of a version, and what its keeper knows of it."""

    def __init__(self, version: _Version, name: str, port: int | None) -> None:
        self.version = version
        self.name = name
        # The host port it listens on (host network), else None: published.
        self.port = port
        self.container: Any = None
        self.run: _Run | None = None
        self.failure: SupervisorError | None = None
        self.stopping = False
        self.wake = threading.Event()
        self.backoff = Backoff()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.keeper: threading.Thread | None = None

    def ready_port(self) -> int | None:
        """Its port if it is healthy and running, else None."""
        run = self.run
        if run is None or self.stopping or not run.healthy.is_set():
            return None
        return None if run.stopped else run.port

    def halt(self) -> None:
        """Mark it as stopping: no more restarts, no more requests."""
        self.stopping = True
        self.wake.set()

    def remove(self, timeout: float) -> None:
        """SIGTERM, SIGKILL after ``timeout`` seconds, then remove it."""
        if self.container is not None:
            _remove_container(self.container, timeout)

    def next_backoff(self, run: _Run | None) -> float:
        """The wait before the next start; doubles the one after it."""
        # A start that served for a while is forgiven its earlier crashes.
        served = 0.0
        if run is not None and run.healthy.is_set():
            served = time.monotonic() - run.started
        if served >= STABLE_AFTER:
            self.backoff.forgive()
        return self.backoff.next()

    def follow(self, run: _Run, since: float) -> None:
        """Feed what this start of the container prints to the logs."""
        container, logs = self.container, self.version.logs

        def pump() -> None:
            try:
                stream = container.logs(stream=True, follow=True, since=since)
                for line in _lines(stream):
                    self.tail.append(line)
                    logs.add(self.name, line)
            except (docker.errors.DockerException, OSError):
                pass  # removed: there is nothing more to read

        run.reader = threading.Thread(
            target=pump, name=f"logs-{self.name}", daemon=True
        )
        run.reader.start()

    def await_exit(self, run: _Run) -> None:
        """Block until this start of the container ends."""
        while True:
            try:
                result = self.container.wait()
                run.status = int(result.get("StatusCode", -1))
                run.oom_killed = self._oom_killed()
                break
            except docker.errors.NotFound:
                break
            except (docker.errors.DockerException, OSError):
                # The engine went away for a moment, or is going.
                if self.wake.wait(_POLL):
                    break
        run.stopped = True
        if run.reader is not None:
            run.reader.join(2.0)
        run.exited.set()

    def output(self) -> str:
        """Its last lines."""
        return "\n".join(self.tail)

    def ended(self, run: _Run) -> str:
        """How ``run`` ended, in words for the log."""
        if run.oom_killed:
            limit = self.version.deployment.limits.get("memory", "-")
            return (
                f"was killed by the kernel's OOM killer: it needed more than "
                f"limits.memory {limit}"
            )
        return _describe(run.status)

    def _oom_killed(self) -> bool:
        try:
            self.container.reload()
        except (docker.errors.DockerException, OSError):
            return False
        return bool(self.container.attrs.get("State", {}).get("OOMKilled"))


@dataclass(eq=False)
class _Version(Version[_Replica]):
    """One deploy of a function: its image, secrets and containers."""

    image: str
    built: bool
    secrets: Path
    serving: bool = False


def _check_deployment(deployment: Deployment) -> None:
    name = deployment.name
    problem = function_name_problem(name)
    if problem is not None:
        raise DeployError(name, f"the name is invalid: {problem}")
    if deployment.template_dir is not None:
        check_deployment(deployment)
    check_resources(deployment)

    problem = _reference_problem(deployment)
    if problem is not None:
        raise DeployError(
            name,
            f"image {deployment.image!r} is not a valid image reference: "
            f"{problem}. Set image: in the stack file (or the deploy's image) "
            f"to NAME:TAG in lower case, e.g. {name}:latest",
        )


def _reference_problem(deployment: Deployment) -> str | None:
    image = deployment.image
    name, at, digest = image.partition("@")
    if not at or deployment.template_dir is not None:
        return image_problem(image)

    # A pulled image may be pinned by its digest.
    hexdigits = digest.removeprefix(_DIGEST)
    if not digest.startswith(_DIGEST) or len(hexdigits) != 64:
        return "a digest is sha256: and 64 hexadecimal digits"
    if any(char not in "0123456789abcdef" for char in hexdigits):
        return "a digest is sha256: and 64 hexadecimal digits"
    return image_problem(name)


def _networking(port: int | None) -> tuple[dict[str, str], dict[str, Any]]:
    """The container's ``port`` settings and network options."""
    if port is None:
        # Published on loopback only: the gateway is the way in.
        published = {f"{_CONTAINER_PORT}/tcp": (LOOPBACK, None)}
        return {"port": _CONTAINER_PORT}, {"ports": published}

    # The host's network: every container shares its ports, so each takes
    # its own, and only on loopback, as a published port would be.
    env = {"port": str(port), "listen_address": LOOPBACK}
    return env, {"network_mode": "host"}


def _published_port(container: Any) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][f"{_CONTAINER_PORT}/tcp"]
    return int(bindings[0]["HostPort"])


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines from the engine's chunks, which need not end lines."""
    partial = b""
    for chunk in chunks:
        *whole, partial = (partial + chunk).split(b"\n")
        for raw in whole:
            yield raw[:MAX_LINE].decode(errors="replace").rstrip("\r")
        if len(partial) > MAX_LINE:
            yield partial[:MAX_LINE].decode(errors="replace")
            partial = b""
    if partial:
        yield partial.decode(errors="replace").rstrip("\r")


def _remove_container(container: Any, timeout: float = 0.0) -> None:
    try:
        if timeout > 0:
            container.stop(timeout=math.ceil(timeout))
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # 409: another thread's removal of it is already under way.
        if exc.status_code != 409:
            name = _name_of(container)
            log.warning("cannot remove container %s: %s", name, _reason(exc))
    except (docker.errors.DockerException, OSError) as exc:
        name = _name_of(container)
        log.warning("cannot remove container %s: %s", name, _reason(exc))


def _name_of(container: Any) -> str:
    # A sparse listing gives "Names", an inspection "Name"; both start "/".
    names = container.attrs.get("Names") or [container.attrs.get("Name")]
    return str(names[0] or container.short_id).lstrip("/")


def _each(items: Iterable[Any], action: Callable[[Any], None]) -> None:
    """Run ``action`` on every item at once: the engine is slow per call."""
    threads = [
        threading.Thread(target=action, args=(item,), daemon=True) for item in items
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _raise_if_failed(name: str, replica: _Replica) -> None:
    if replica.failure is not None:
        raise replica.failure
    run = replica.run
    if run is None or not run.exited.is_set():
        return
    raise DeployError(
        name,
        f"its container {replica.name} {replica.ended(run)} before "
        f"{HEALTH_PATH} answered; its last output:",
        replica.output(),
    )


def _report_restart(replica: _Replica, run: _Run | None, delay: float) -> None:
    if run is None:
        log.warning(
            "function container %s cannot start (%s); retrying in %.1fs",
            replica.name,
            replica.failure,
            delay,
        )
        return
    log.warning(
        "function container %s %s; restarting in %.1fs; its last output:\n%s",
        replica.name,
        replica.ended(run),
        delay,
        replica.output() or "(none)",
    )


def _engine_error(name: str, action: str, error: BaseException) -> DeployError:
    return DeployError(
        name,
        f"the Docker engine could not {action}: {_reason(error)}",
    )


def _reason(error: BaseException) -> str:
    explanation = getattr(error, "explanation", None)
    return " ".join(str(explanation or error).split())


def _describe(status: int | None) -> str:
    if status is None:
        return "was removed"
    if status > 128:
        # The engine reports a signal N as 128 + N, as a shell does.
        return f"was killed by signal {status - 128}"
    return f"exited with status {status}"


def _debug_log(name: str) -> Progress:
    """Where build output goes when nobody watches (an API deploy)."""

    def show(line: str) -> None:
        log.debug("%s build: %s", name, line)

    return show
