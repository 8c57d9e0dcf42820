"""The deployed functions: what each deployment asked for, and where it runs.

The admin API speaks FunctionDeployment JSON; the supervisor runs
processes. This keeper sits between them: it remembers each deployment as
it was sent (so the function list echoes it back exactly), decides what a
deployment runs, and answers the proxy's "where is this function?".

A deployment whose image names a function of the loaded stack runs that
function's handler with its template (this is what ``faas-cli deploy``
against the emulator sends); one that gives only a command (``envProcess``)
runs it the classic-watchdog way; any other image runs only in container
mode (``up --docker``, which pulls it), and is otherwise refused with a 400
that says so.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .deployments import DEFAULT_NAMESPACE, FunctionRequest, RequestError
from .metrics import GatewayMetrics
from .proxy import UnknownFunction, Unreachable
from .replicas import AnySupervisor
from .stack import FunctionSpec, Stack, tag_image
from .supervisor import (
    Deployment,
    FunctionNotFound,
    LogLine,
    NoReplicas,
    SupervisorError,
)
from .templates import find_template, uses_template

log = logging.getLogger("localfaas.functions")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """Where a stack function's code is: its template and handler folder."""

    template_dir: Path
    handler_dir: Path
    handler_folder: str
    fprocess: str


def sources_of(stack: Stack) -> dict[str, Source]:
    """Each templated stack function's code, keyed by its image."""
    project = stack.path.parent
    found: dict[str, Source] = {}
    for spec in stack.functions.values():
        if spec.handler is None or not spec.lang or not uses_template(spec.lang):
            continue
        template = find_template(spec.lang, project)
        found[spec.image] = Source(
            template_dir=template.path,
            handler_dir=spec.handler,
            handler_folder=template.handler_folder,
            fprocess=spec.fprocess or template.fprocess,
        )
    return found


def request_of(spec: FunctionSpec, source: Source | None) -> FunctionRequest:
    """The deployment faas-cli would send for a stack function."""
    return FunctionRequest(
        service=spec.name,
        image=spec.image,
        envProcess=spec.fprocess or (source.fprocess if source else ""),
        envVars=dict(spec.environment),
        constraints=list(spec.constraints or []),
        secrets=list(spec.secrets),
        labels=dict(spec.labels),
        annotations=dict(spec.annotations),
        limits=dict(spec.limits) if spec.limits else None,
        requests=dict(spec.requests) if spec.requests else None,
        readOnlyRootFilesystem=spec.readonly_root_filesystem,
    )


class Functions:
    """Deployments by name, run by the supervisor; thread-safe."""

    def __init__(
        self,
        supervisor: AnySupervisor,
        metrics: GatewayMetrics,
        sources: dict[str, Source],
        *,
        runs_images: bool = False,
        endpoint_timeout: float = 30.0,
    ) -> None:
        self.supervisor = supervisor
        # In container mode any image runs (pulled when missing).
        self.runs_images = runs_images
        self.metrics = metrics
        self.sources = sources
        self.endpoint_timeout = endpoint_timeout
        self._lock = threading.Lock()
        self._requests: dict[str, FunctionRequest] = {}

    # -- what the admin API asks -------------------------------------------

    def all(self) -> list[FunctionRequest]:
        with self._lock:
            return [self._requests[name] for name in sorted(self._requests)]

    def get(self, name: str) -> FunctionRequest | None:
        with self._lock:
            return self._requests.get(name)

    def deploy(self, request: FunctionRequest, *, update: bool) -> None:
        """Accept ``request`` now and start it in the background.

        OpenFaaS answers 202 before the function is ready; clients poll
        the status for ``availableReplicas`` (``faas-cli ready``).
        """
        deployment = self.deployment_for(request)
        with self._lock:
            self._requests[request.service] = request
        threading.Thread(
            target=self._start,
            args=(deployment, None),
            name=f"deploy-{request.service}",
            daemon=True,
        ).start()

    def deploy_now(self, request: FunctionRequest, progress: Progress) -> None:
        """Deploy and wait until healthy (``localfaas up`` at start-up)."""
        deployment = self.deployment_for(request)
        with self._lock:
            self._requests[request.service] = request
        self.supervisor.deploy(deployment, progress)

    def remove(self, name: str) -> None:
        with self._lock:
            self._requests.pop(name, None)
        with contextlib.suppress(FunctionNotFound):
            self.supervisor.remove(name)

    def scale(self, name: str, replicas: int) -> None:
        self.supervisor.scale(name, replicas)

    def replicas(self, name: str) -> tuple[int, int]:
        try:
            state = self.supervisor.status(name)
        except FunctionNotFound:
            request = self.get(name)
            return (request.min_replicas if request else 0), 0
        return state.replicas, state.available_replicas

    def invocations(self, name: str) -> float:
        return self.metrics.invocations(f"{name}.{DEFAULT_NAMESPACE}")

    def logs(self, name: str, since: datetime | None, tail: int) -> list[LogLine]:
        # faas-netes reads tail <= 0 as "every line"; the supervisor's 0 is
        # "none".
        tail = -1 if tail <= 0 else tail
        try:
            return self.supervisor.logs(name, since, tail)
        except FunctionNotFound:
            return []

    def follow(
        self, name: str, since: datetime | None, tail: int
    ) -> queue.Queue[LogLine | None] | None:
        tail = -1 if tail <= 0 else tail
        try:
            return self.supervisor.subscribe(name, since, tail)
        except FunctionNotFound:
            return None

    def unfollow(self, name: str, lines: queue.Queue[LogLine | None]) -> None:
        self.supervisor.unsubscribe(name, lines)

    # -- what the proxy asks -----------------------------------------------

    def resolve(self, name: str) -> tuple[str, int]:
        """A ready replica of ``name``, starting one if scaled to zero."""
        try:
            return self.supervisor.endpoint(name, self.endpoint_timeout)
        except FunctionNotFound as exc:
            raise UnknownFunction(name) from exc
        except NoReplicas as exc:
            raise Unreachable(name) from exc

    def replica_counts(self) -> dict[str, int]:
        """Desired replicas per ``name.namespace``, for the metrics."""
        counts = {}
        for request in self.all():
            desired, _ = self.replicas(request.service)
            counts[f"{request.service}.{DEFAULT_NAMESPACE}"] = desired
        return counts

    # -- how a deployment becomes processes ---------------------------------

    def deployment_for(self, request: FunctionRequest) -> Deployment:
        """What the supervisor runs for ``request``; 400 if it cannot."""
        source = self.sources.get(tag_image(request.image))
        if source is None and not request.envProcess and not self.runs_images:
            raise RequestError(
                400,
                f"image {request.image!r} is not a function of the loaded stack "
                "and no envProcess was given: localfaas runs stack functions "
                "and commands as local processes (use localfaas up --docker to "
                "run images)\n",
            )
        common = {
            "name": request.service,
            "image": request.image,
            "env_process": request.envProcess,
            "env_vars": dict(request.envVars),
            "secrets": tuple(request.secrets),
            "labels": dict(request.labels),
            "annotations": dict(request.annotations),
            "limits": dict(request.limits or {}),
            "requests": dict(request.requests or {}),
            "constraints": tuple(request.constraints),
            "read_only_root_filesystem": request.readOnlyRootFilesystem,
        }
        if source is None:
            return Deployment(**common)  # type: ignore[arg-type]
        return Deployment(
            **common,  # type: ignore[arg-type]
            template_dir=source.template_dir,
            handler_dir=source.handler_dir,
            handler_folder=source.handler_folder,
        )

    def _start(self, deployment: Deployment, progress: Progress | None) -> None:
        try:
            self.supervisor.deploy(deployment, progress)
        except (SupervisorError, OSError, ValueError) as exc:
            log.error("deploy of %s failed: %s", deployment.name, exc)
        except Exception:
            log.exception("deploy of %s failed", deployment.name)
