"""What every provider of the emulator shares: functions as sets of replicas.

OpenFaaS leaves running a function to a provider (faas-netes, faasd); the
emulator has two, :class:`~localfaas.supervisor.Supervisor` (replicas are
local processes) and :class:`~localfaas.containers.ContainerSupervisor`
(replicas are Docker containers). The gateway must not be able to tell them
apart, so what it sees is written once, here:

* the public types (``Deployment``, ``FunctionState``, ``LogLine``) and the
  error tree both raise;
* :class:`ReplicaSupervisor`, the provider's bookkeeping: versions and their
  rolling switch, scaling within the ``com.openfaas.scale.min``/``max``
  labels (gateway-contract §8.2, §8.6) and from zero (§9.4), round-robin
  endpoints, status, and every function's log lines (§8.9). A subclass
  supplies only how a replica is built, started, probed, stopped and
  reaped;
* the helpers both need: the build folder ``faas-cli build`` would lay out
  (tooling.md §3.2), the health probe (§4.1), restart backoff, the drain
  limit.

Errors::

    SupervisorError
    ├── FunctionNotFound   the name is not deployed (the gateway's 404)
    ├── NoReplicas         no replica became ready in time (502/503)
    └── DeployError        the build, environment or start failed
"""

from __future__ import annotations

import http.client
import logging
import queue
import re
import shutil
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeAlias, TypeVar

from faas_runtime import ConfigError, Settings

from .resources import ResourceError, container_resources

__all__ = [
    "DEFAULT_NAMESPACE",
    "HEALTH_PATH",
    "LOOPBACK",
    "MAX_LINE",
    "SCALE_MAX",
    "SCALE_MIN",
    "STABLE_AFTER",
    "STOPPED",
    "TAIL_LINES",
    "AnySupervisor",
    "Backoff",
    "DeployError",
    "Deployment",
    "Function",
    "FunctionNotFound",
    "FunctionState",
    "LogLine",
    "LogQueue",
    "LogSink",
    "Logs",
    "NoReplicas",
    "Progress",
    "Replica",
    "ReplicaSupervisor",
    "SecretSource",
    "SupervisorError",
    "Version",
    "check_deployment",
    "clamp",
    "drain_limit",
    "free_port",
    "healthy",
    "lay_out",
    "no_secret_store",
]

# The name the provider's messages have always had, so an operator's
# filters keep working for what moved here from the process supervisor.
log = logging.getLogger("localfaas.supervisor")

DEFAULT_NAMESPACE = "openfaas-fn"

SCALE_MIN = "com.openfaas.scale.min"
SCALE_MAX = "com.openfaas.scale.max"

# OpenFaaS CE caps replicas at 5 (gateway-contract §8.6, §8.11).
_DEFAULT_MAX = 5

LOOPBACK = "127.0.0.1"
HEALTH_PATH = "/_/health"
STOPPED = "the supervisor is stopped: start a new one"
TAIL_LINES = 30
MAX_LINE = 64 * 1024
# After SIGTERM the runtime drains for up to its write timeout; this much
# more lets it exit on its own before it is killed.
_DRAIN_MARGIN = 5.0

# Kubernetes-like restart backoff: doubling from half a second to 30 s,
# forgiven once a replica has served this long.
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0

_SUBSCRIBER_QUEUE = 10_000
# The longest wait between two health checks of a starting replica.
_PROBE_MAX = 0.5

# faas-cli build copies every entry of the handler folder except these
# (tooling.md §3.2).
_NOT_COPIED = {"build", "template"}
_NO_BYTECODE = shutil.ignore_patterns("__pycache__", "*.pyc")

# OpenFaaS validates a function name as a DNS-1123 label (§12); here it is
# also a folder name, so it is checked again.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Progress = Callable[[str], None]


class SupervisorError(Exception):
    """Base class of the supervisor's errors."""


class FunctionNotFound(SupervisorError, LookupError):
    """The function is not deployed."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"function {name!r} is not deployed: deploy it first, or check "
            "the name with 'faas-cli list'"
        )


class NoReplicas(SupervisorError):
    """No replica of the function became ready in time."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        super().__init__(
            f"function {name!r} has no ready replica after {timeout:g}s: see "
            f"its logs with 'faas-cli logs {name}'"
        )


class DeployError(SupervisorError):
    """A version could not be built or started; ``output`` is its last lines."""

    def __init__(self, name: str, message: str, output: str = "") -> None:
        self.name = name
        self.output = output
        text = f"function {name!r}: {message}"
        super().__init__(f"{text}\n{output}" if output else text)


class SecretSource(Protocol):
    """Writes a function's secrets into its folder (``SecretStore`` does)."""

    def materialize(self, names: Iterable[str], folder: Path) -> None:
        """Make ``folder`` hold exactly the secrets ``names``."""


@dataclass(frozen=True)
class Deployment:
    """What to run: OpenFaaS's FunctionDeployment plus where its code is.

    A stack function gives ``template_dir`` and ``handler_dir``: it runs the
    template's ``env_process`` (``fprocess``, by default the one in its
    ``template.yml``) in the function's environment. Without a template,
    ``env_process`` is a command run per request by the classic watchdog;
    a ``handler_dir`` given alone is copied to its working folder.
    """

    name: str
    image: str = ""
    namespace: str = DEFAULT_NAMESPACE
    env_process: str = ""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    secrets: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)
    constraints: Sequence[str] = ()
    read_only_root_filesystem: bool = False
    template_dir: Path | None = None
    handler_dir: Path | None = None
    handler_folder: str = "function"


@dataclass(frozen=True)
class FunctionState:
    """A function as the provider reports it (FunctionStatus, §7.2)."""

    name: str
    deployment: Deployment
    replicas: int
    available_replicas: int
    created_at: datetime
    version: int


@dataclass(frozen=True)
class LogLine:
    """One line a function printed, as ``/system/logs`` streams it (§7.3)."""

    name: str
    namespace: str
    instance: str
    timestamp: datetime
    text: str


LogSink = Callable[[LogLine], None]
LogQueue = queue.Queue[LogLine | None]


class Logs:
    """A function's recent lines, its sink, and its followers."""

    def __init__(self, name: str, sink: LogSink | None, size: int) -> None:
        self.name = name
        self.namespace = DEFAULT_NAMESPACE
        self._sink = sink
        self._lines: deque[LogLine] = deque(maxlen=size)
        self._followers: list[LogQueue] = []
        self._lock = threading.Lock()

    def add(self, instance: str, text: str) -> None:
        """Keep a line, hand it to every follower and to the sink."""
        now = datetime.now(UTC)
        line = LogLine(self.name, self.namespace, instance, now, text)
        with self._lock:
            self._lines.append(line)
            for follower in self._followers:
                _offer(follower, line)
        if self._sink is None:
            return
        try:
            self._sink(line)
        except Exception:
            log.exception("the log sink failed on a line of %s", self.name)

    def select(
        self, since: datetime | None, tail: int, instance: str | None
    ) -> list[LogLine]:
        """The kept lines after ``since`` (of ``instance``), the last ``tail``."""
        with self._lock:
            lines = list(self._lines)
        return _select(lines, since, tail, instance)

    def subscribe(
        self, since: datetime | None, tail: int, instance: str | None
    ) -> LogQueue:
        """A follower queue, primed with the matching kept lines."""
        follower: LogQueue = _InstanceQueue(instance, _SUBSCRIBER_QUEUE)
        with self._lock:
            for line in _select(list(self._lines), since, tail, instance):
                _offer(follower, line)
            self._followers.append(follower)
        return follower

    def unsubscribe(self, follower: LogQueue) -> None:
        """Forget ``follower``."""
        with self._lock:
            if follower in self._followers:
                self._followers.remove(follower)

    def close(self) -> None:
        """Tell every follower the function is gone."""
        with self._lock:
            followers, self._followers = self._followers, []
        for follower in followers:
            _offer(follower, None)


class _InstanceQueue(queue.Queue[LogLine | None]):
    """A follower's queue that only takes lines of one instance, if given."""

    def __init__(self, instance: str | None, maxsize: int) -> None:
        super().__init__(maxsize)
        self.instance = instance

    def wants(self, line: LogLine | None) -> bool:
        """Whether ``line`` belongs in this queue."""
        return line is None or self.instance in (None, line.instance)


def _offer(follower: LogQueue, line: LogLine | None) -> None:
    if isinstance(follower, _InstanceQueue) and not follower.wants(line):
        return
    try:
        follower.put_nowait(line)
    except queue.Full:
        if line is None:
            # The end must arrive even if the reader fell behind.
            with follower.mutex:
                follower.queue.pop()
                follower.queue.append(None)
                follower.not_empty.notify()


def _select(
    lines: list[LogLine], since: datetime | None, tail: int, instance: str | None
) -> list[LogLine]:
    chosen = [
        line
        for line in lines
        if (since is None or line.timestamp > since)
        and (instance is None or line.instance == instance)
    ]
    if tail < 0:
        return chosen
    return chosen[len(chosen) - tail :] if tail else []


class Backoff:
    """The wait before a replica's next restart, as a kubelet's grows."""

    def __init__(self) -> None:
        self.delay = _BACKOFF_FIRST

    def next(self) -> float:
        """The wait before the next restart; doubles the one after it."""
        delay = self.delay
        self.delay = min(delay * 2, _BACKOFF_MAX)
        return delay

    def forgive(self) -> None:
        """Start again from the shortest wait: the replica served a while."""
        self.delay = _BACKOFF_FIRST


class Replica(Protocol):
    """What the shared bookkeeping asks of a replica."""

    def ready_port(self) -> int | None:
        """Its port if it can take a request now, else None."""


R = TypeVar("R", bound=Replica)


@dataclass(eq=False, kw_only=True)
class Version(Generic[R]):
    """One deploy of a function; a provider adds what it runs from."""

    deployment: Deployment
    number: int
    logs: Logs
    drain_limit: float
    replicas: list[R] = field(default_factory=list)


V = TypeVar("V", bound="Version[Any]")


@dataclass(eq=False)
class Function(Generic[V]):
    """A deployed name: its serving version and desired replica count."""

    version: V
    created_at: datetime
    desired: int
    turn: int = -1

    def ready_ports(self) -> list[int]:
        """Ports of the replicas that can take a request now."""
        ports = (replica.ready_port() for replica in self.version.replicas)
        return [port for port in ports if port is not None]


class ReplicaSupervisor(ABC, Generic[V, R]):
    """Deploys, scales and reports functions; subclasses run the replicas.

    Thread-safe. A subclass sets ``logger`` and ``poll_interval`` and
    supplies how a version is checked, prepared, started, retired and
    discarded, how one more replica joins, and ``stop_all``.
    """

    logger: ClassVar[logging.Logger]
    # How long ``endpoint`` waits at most before it looks again.
    poll_interval: ClassVar[float]

    def __init__(
        self,
        state_dir: Path,
        *,
        secrets: SecretSource | None,
        log_sink: LogSink | None,
        health_timeout: float,
        retire_grace: float,
        log_lines: int,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.health_timeout = health_timeout
        self.retire_grace = retire_grace
        self._secrets = secrets
        self._sink = log_sink
        self._log_lines = log_lines

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._functions: dict[str, Function[V]] = {}
        self._logs: dict[str, Logs] = {}
        self._numbers: dict[str, int] = {}
        self._deploying: dict[str, threading.Lock] = {}
        self._closed = threading.Event()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_all()

    def deploy(
        self, deployment: Deployment, progress: Progress | None = None
    ) -> FunctionState:
        """Start ``deployment``; if it already runs, roll it over to this one.

        Returns once the new version is healthy and serving. On failure the
        previous version, if any, keeps serving and nothing of the new one
        is left running. ``progress`` gets the build's output lines.
        """
        self._check(deployment)
        with self._deploying_lock(deployment.name):
            version = self._prepare(deployment, progress)
            try:
                self._start(version, self._initial_count(deployment))
                self._switch(version)
            except BaseException:
                self._discard(version)
                raise
        return self.status(deployment.name)

    def reload(
        self, name: str, handler_dir: Path, progress: Progress | None = None
    ) -> FunctionState:
        """Deploy ``name`` again from ``handler_dir`` (hot reload).

        Raises ``DeployError``, whose ``output`` is the new version's error
        (e.g. a SyntaxError traceback or the failed build step), and leaves
        the old version serving.
        """
        deployment = self.status(name).deployment
        return self.deploy(replace(deployment, handler_dir=handler_dir), progress)

    def remove(self, name: str) -> None:
        """Stop serving ``name``; its replicas drain and go."""
        with self._deploying_lock(name), self._changed:
            function = self._functions.pop(name, None)
            if function is None:
                raise FunctionNotFound(name)
            self._retire(function.version.replicas, grace=0.0)
            logs = self._logs.pop(name)
            self._changed.notify_all()
        logs.close()
        self.logger.info("function %s removed", name)

    def scale(self, name: str, replicas: int) -> int:
        """Set the replica count of ``name``; return the count applied.

        0 scales to zero. Other counts are kept within the function's
        ``com.openfaas.scale.min`` (default 1) and ``com.openfaas.scale.max``
        (default 5) labels.
        """
        if replicas < 0:
            raise ValueError(f"replicas must be 0 or more, not {replicas}")
        with self._changed:
            function = self._get(name)
            target = clamp(function.version.deployment.labels, replicas)
            self._resize(function, target)
        self.logger.info("function %s scaled to %d", name, target)
        return target

    def endpoint(self, name: str, timeout: float = 30.0) -> tuple[str, int]:
        """Where to send the next request for ``name``: round robin.

        A function scaled to zero is started first (to ``max(1, min)``
        replicas, as the gateway's scale-from-zero does). Raises
        ``FunctionNotFound``, or ``NoReplicas`` after ``timeout`` seconds
        without a ready replica.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                function = self._get(name)
                ports = function.ready_ports()
                if ports:
                    function.turn += 1
                    return LOOPBACK, ports[function.turn % len(ports)]

                if function.desired == 0:
                    self.logger.info("function %s scaling up from zero", name)
                    labels = function.version.deployment.labels
                    self._resize(function, clamp(labels, 1))

                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoReplicas(name, timeout)
                self._changed.wait(min(remaining, self.poll_interval))

    def status(self, name: str) -> FunctionState:
        """Desired and ready replicas of ``name``, and what it runs."""
        with self._lock:
            function = self._get(name)
            return FunctionState(
                name=name,
                deployment=function.version.deployment,
                replicas=function.desired,
                available_replicas=len(function.ready_ports()),
                created_at=function.created_at,
                version=function.version.number,
            )

    def names(self) -> list[str]:
        """The deployed functions, sorted."""
        with self._lock:
            return sorted(self._functions)

    def logs(
        self,
        name: str,
        since: datetime | None = None,
        tail: int = -1,
        instance: str | None = None,
    ) -> list[LogLine]:
        """The kept lines of ``name``: newer than ``since``, the last ``tail``.

        ``tail`` < 0 means all of them (faas-cli sends -1), 0 none;
        ``instance`` is a replica's name.
        """
        with self._lock:
            logs = self._get_logs(name)
        return logs.select(since, tail, instance)

    def subscribe(
        self,
        name: str,
        since: datetime | None = None,
        tail: int = 0,
        instance: str | None = None,
    ) -> LogQueue:
        """A queue of the lines ``name`` prints from now on (``follow``).

        It starts with the kept lines that ``logs(name, since, tail,
        instance)`` would return, with no gap or repeat. ``None`` in the
        queue means the function is gone. Call ``unsubscribe`` when done.
        """
        with self._lock:
            logs = self._get_logs(name)
        return logs.subscribe(since, tail, instance)

    def unsubscribe(self, name: str, lines: LogQueue) -> None:
        """Stop feeding ``lines``."""
        with self._lock:
            logs = self._logs.get(name)
        if logs is not None:
            logs.unsubscribe(lines)

    @abstractmethod
    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every replica, SIGKILL after ``timeout``; the end of it."""

    # -- what a provider supplies ---------------------------------------------

    @abstractmethod
    def _check(self, deployment: Deployment) -> None:
        """Raise ``DeployError`` if ``deployment`` cannot run here."""

    @abstractmethod
    def _prepare(self, deployment: Deployment, progress: Progress | None) -> V:
        """Build what the next version of ``deployment`` runs from."""

    @abstractmethod
    def _start(self, version: V, count: int) -> None:
        """Start ``count`` replicas of ``version``; return once all are ready."""

    @abstractmethod
    def _start_one(self, version: V) -> None:
        """Add a replica to a serving ``version`` and start it (or retry)."""

    @abstractmethod
    def _retire(self, replicas: Iterable[R], grace: float) -> None:
        """Let ``replicas`` drain after ``grace`` seconds, then stop them."""

    @abstractmethod
    def _discard(self, version: V) -> None:
        """Stop and remove a version that never served, at once."""

    @abstractmethod
    def _serving_from(self, function: Function[V]) -> str:
        """Where ``function``'s new version serves, for the log line."""

    def _serve(self, version: V) -> None:
        """Make ``version`` the serving one, under the lock (a hook)."""

    # -- versions ---------------------------------------------------------------

    def _logs_for(self, deployment: Deployment) -> Logs:
        with self._lock:
            logs = self._logs.get(deployment.name)
            if logs is None:
                logs = Logs(deployment.name, self._sink, self._log_lines)
                self._logs[deployment.name] = logs
            logs.namespace = deployment.namespace
            return logs

    def _next_number(self, name: str) -> int:
        with self._lock:
            self._numbers[name] = self._numbers.get(name, 0) + 1
            return self._numbers[name]

    def _initial_count(self, deployment: Deployment) -> int:
        # A new function starts at its min label (§8.2). An update keeps the
        # count it was scaled to, but never zero: a new version must prove
        # it starts before it replaces the old one.
        with self._lock:
            current = self._functions.get(deployment.name)
            if current is not None and current.desired > 0:
                return clamp(deployment.labels, current.desired)
        return clamp(deployment.labels, 1)

    def _switch(self, version: V) -> None:
        name = version.deployment.name
        with self._changed:
            if self._closed.is_set():
                raise SupervisorError(STOPPED)
            function = self._functions.get(name)
            if function is None:
                function = Function(version, datetime.now(UTC), 0)
                self._functions[name] = function
            old = function.version
            asked = function.desired

            function.version = version
            function.desired = len(version.replicas)
            self._serve(version)
            if old is not version:
                self._retire(old.replicas, self.retire_grace)
            asked = clamp(version.deployment.labels, asked)
            if asked > len(version.replicas):
                # Scaled up while this version was being built.
                self._resize(function, asked)
            self._changed.notify_all()
        self.logger.info(
            "function %s version %d serving %s",
            name,
            version.number,
            self._serving_from(function),
        )

    def _resize(self, function: Function[V], target: int) -> None:
        replicas = function.version.replicas
        for _ in range(target - len(replicas)):
            self._start_one(function.version)
        if len(replicas) > target:
            extra = replicas[target:]
            del replicas[target:]
            self._retire(extra, self.retire_grace)
        function.desired = target
        self._changed.notify_all()

    # -- readiness --------------------------------------------------------------

    def _probe(
        self,
        instance: str,
        port: int,
        ready: threading.Event,
        gone: Callable[[], bool],
        first_delay: float,
    ) -> None:
        """Ask ``port``'s ``/_/health`` in a thread until it answers 200.

        Then ``ready`` is set; the probe gives up once ``gone()`` says the
        run ended or is stopping. Either way, waiters on it are woken.
        """
        threading.Thread(
            target=self._poll_health,
            args=(port, ready, gone, first_delay),
            name=f"probe-{instance}",
            daemon=True,
        ).start()

    def _poll_health(
        self,
        port: int,
        ready: threading.Event,
        gone: Callable[[], bool],
        delay: float,
    ) -> None:
        while not gone():
            if healthy(port):
                ready.set()
                break
            time.sleep(delay)
            delay = min(delay * 1.5, _PROBE_MAX)
        with self._changed:
            self._changed.notify_all()

    # -- small helpers ----------------------------------------------------------

    def _get(self, name: str) -> Function[V]:
        function = self._functions.get(name)
        if function is None:
            raise FunctionNotFound(name)
        return function

    def _get_logs(self, name: str) -> Logs:
        logs = self._logs.get(name)
        if logs is None:
            raise FunctionNotFound(name)
        return logs

    @contextmanager
    def _deploying_lock(self, name: str) -> Iterator[None]:
        with self._lock:
            lock = self._deploying.setdefault(name, threading.Lock())
        with lock:
            yield


# Either supervisor, as the gateway holds it: through the base's API only.
AnySupervisor: TypeAlias = "ReplicaSupervisor[Any, Any]"


def check_deployment(deployment: Deployment) -> None:
    """Raise ``DeployError`` for a bad name or missing source folders."""
    name = deployment.name
    if not _NAME.fullmatch(name):
        raise DeployError(
            name,
            "the name is invalid: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    for what, folder in (
        ("template", deployment.template_dir),
        ("handler", deployment.handler_dir),
    ):
        if folder is not None and not folder.is_dir():
            where = str(folder)
            raise DeployError(name, f"its {what} folder {where!r} is missing")
    if deployment.template_dir is not None and deployment.handler_dir is None:
        raise DeployError(name, "it has a template but no handler folder")
    if deployment.template_dir is None and not deployment.env_process.strip():
        raise DeployError(
            name, "there is nothing to run: give a template or an fprocess"
        )


def check_resources(deployment: Deployment) -> None:
    """Raise ``DeployError`` for ``limits`` or ``requests`` that cannot apply.

    Both providers check the same rules, so a stack that deploys as
    processes also deploys as containers, and on faasd.
    """
    try:
        container_resources(deployment.limits, deployment.requests)
    except ResourceError as exc:
        raise DeployError(deployment.name, str(exc)) from exc


def no_secret_store(deployment: Deployment) -> DeployError:
    """The error for ``deployment`` listing secrets with no store to fill."""
    return DeployError(
        deployment.name,
        f"it lists secrets {list(deployment.secrets)} but the "
        "emulator has no secret store: start it with one",
    )


def lay_out(deployment: Deployment, folder: Path) -> None:
    """Copy ``deployment``'s sources to ``folder``, as ``faas-cli build`` does."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        _copy_sources(deployment, folder)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise DeployError(
            deployment.name,
            f"cannot lay out its build folder {str(folder)!r}: {exc}",
        ) from exc


def _copy_sources(deployment: Deployment, folder: Path) -> None:
    if deployment.template_dir is not None:
        shutil.copytree(deployment.template_dir, folder, ignore=_NO_BYTECODE)
        assert deployment.handler_dir is not None
        handler = folder / deployment.handler_folder
        _overlay(deployment.handler_dir, handler)
        # The image build creates it (tooling.md §2.3); the runtime imports
        # the handler as the package "function".
        (handler / "__init__.py").touch(exist_ok=True)
        return

    folder.mkdir(parents=True)
    if deployment.handler_dir is not None:
        _overlay(deployment.handler_dir, folder)


def _overlay(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name in _NOT_COPIED or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            copied = target / entry.name
            skip = _NO_BYTECODE
            shutil.copytree(entry, copied, dirs_exist_ok=True, ignore=skip)
        else:
            shutil.copy2(entry, target / entry.name)


def drain_limit(deployment: Deployment) -> float:
    """How long a retired replica may drain before it is killed."""
    try:
        limit = Settings.from_env(deployment.env_vars).write_timeout
    except ConfigError:
        limit = Settings.write_timeout
    return limit + _DRAIN_MARGIN


def clamp(labels: Mapping[str, str], replicas: int) -> int:
    """``replicas`` within the scale labels in ``labels``; 0 stays 0."""
    if replicas == 0:
        return 0
    low = _label(labels, SCALE_MIN, 1)
    high = max(low, _label(labels, SCALE_MAX, _DEFAULT_MAX))
    return min(max(replicas, low), high)


def _label(labels: Mapping[str, str], key: str, default: int) -> int:
    # OpenFaaS ignores a scale label that is not a positive integer.
    try:
        value = int(labels.get(key, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def healthy(port: int) -> bool:
    """Whether the replica on loopback ``port`` answers its health check 200."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=1.0)
    try:
        connection.request("GET", HEALTH_PATH)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
