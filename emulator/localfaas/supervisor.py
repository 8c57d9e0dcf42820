"""The provider half of the emulator: functions as supervised local processes.

OpenFaaS hands a deployment to a provider (faas-netes, faasd), which runs
replicas of the function's container and reports their readiness. Here each
replica is a local process instead: the template runtime in the function's
virtual environment (``environments``) or, for a bare command, the classic
watchdog emulation (``classic``). Each listens on a free loopback port; the
gateway asks :meth:`Supervisor.endpoint` where to send each request.

What a provider guarantees, and how it is kept here:

* a deploy lays out ``builds/<name>/<version>/`` as ``faas-cli build`` lays
  out its build context (tooling.md §3.2), and a replica counts only once
  ``/_/health`` answers 200 (§4.1);
* an update is a rolling one: the new version must be healthy before the
  gateway is switched to it, and the old replicas get SIGTERM only after a
  short grace, so requests already routed to them finish (they drain);
* replicas that die are restarted with backoff, as a kubelet does;
* ``scale`` follows the ``com.openfaas.scale.min``/``max`` labels
  (gateway-contract §8.2, §8.6) and allows 0; a function at zero starts on
  its next call, as the gateway's scale-from-zero does (§9.4);
* every line a function prints is kept for ``/system/logs`` (§8.9).

Errors::

    SupervisorError
    ├── FunctionNotFound   the name is not deployed (the gateway's 404)
    ├── NoReplicas         no replica became ready in time (502/503)
    └── DeployError        the build, environment or start failed

Secret errors from ``secrets.materialize`` (e.g. ``MissingSecrets``, 400)
pass through unchanged.

Processes start in their own session, so a Ctrl-C in the emulator's
terminal never reaches them: they stop when :meth:`Supervisor.stop_all`
says so, and a kill of their process group takes their children too.
"""

from __future__ import annotations

import http.client
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

import yaml

from faas_runtime import ConfigError, Settings

from . import classic, namespaces
from .environments import BuildError, Environment, Environments, Progress

__all__ = [
    "DEFAULT_NAMESPACE",
    "DeployError",
    "Deployment",
    "FunctionNotFound",
    "FunctionState",
    "LogLine",
    "NoReplicas",
    "SecretSource",
    "Supervisor",
    "SupervisorError",
]

log = logging.getLogger("localfaas.supervisor")

DEFAULT_NAMESPACE = "openfaas-fn"

SCALE_MIN = "com.openfaas.scale.min"
SCALE_MAX = "com.openfaas.scale.max"

# OpenFaaS CE caps replicas at 5 (gateway-contract §8.6, §8.11).
_DEFAULT_MAX = 5

_LOOPBACK = "127.0.0.1"
_HEALTH_PATH = "/_/health"
_FPROCESS = "python index.py"

# The classic watchdog runs on the emulator's own interpreter. -P keeps the
# working folder (the function's files) off sys.path, and the package's
# parent goes on it, so it runs however localfaas was installed.
_CLASSIC_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from localfaas.classic import main; main()"
)
_PACKAGE_PARENT = str(Path(classic.__file__).resolve().parents[1])
_PYTHONS = {"python", "python3"}

# Kubernetes-like restart backoff: doubling from half a second to 30 s,
# forgiven once a process has stayed up this long.
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
_STABLE_AFTER = 10.0

_STOPPED = "the supervisor is stopped: start a new one"
_MONITOR_INTERVAL = 0.1
_TAIL_LINES = 30
_MAX_LINE = 64 * 1024
_SUBSCRIBER_QUEUE = 10_000
_PORT_ATTEMPTS = 3
_PORT_IN_USE = "Address already in use"
_DRAIN_MARGIN = 5.0

# faas-cli build copies every entry of the handler folder except these
# (tooling.md §3.2).
_NOT_COPIED = {"build", "template"}
_NO_BYTECODE = shutil.ignore_patterns("__pycache__", "*.pyc")

# OpenFaaS validates a function name as a DNS-1123 label (§12); here it is
# also a folder name, so it is checked again.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

# What a function inherits from the emulator's environment: what a process
# needs to run (and reach the network through a proxy), never the rest, as a
# container does not see its host's variables.
_INHERITED = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
}


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


class Supervisor:
    """Deploys, scales, restarts and stops functions as local processes.

    Thread-safe. ``log_sink`` is called from reader threads, one per
    process stream, so it must be thread-safe too.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        secrets: SecretSource | None = None,
        python: str = sys.executable,
        log_sink: LogSink | None = None,
        environments: Environments | None = None,
        health_timeout: float = 30.0,
        retire_grace: float = 1.0,
        log_lines: int = 2000,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        if environments is None:
            environments = Environments(self.state_dir, python=python)
        self.environments = environments
        self.health_timeout = health_timeout
        self.retire_grace = retire_grace
        self._secrets = secrets
        self._sink = log_sink
        self._log_lines = log_lines

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._functions: dict[str, _Function] = {}
        self._logs: dict[str, _Logs] = {}
        self._retiring: list[_Replica] = []
        self._numbers: dict[str, int] = {}
        self._deploying: dict[str, threading.Lock] = {}
        self._closed = threading.Event()
        self._pids = _PidRecord(self.state_dir / "pids")
        self._pids.reap()
        self._monitor = threading.Thread(
            target=self._watch, name="supervisor-monitor", daemon=True
        )
        self._monitor.start()

    def __enter__(self) -> Supervisor:
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
        previous version, if any, keeps serving. ``progress`` gets the
        environment build's output lines.
        """
        _check(deployment)
        with self._deploying_lock(deployment.name):
            version = self._build(deployment, progress)
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
        (e.g. a SyntaxError traceback), and leaves the old version serving.
        """
        deployment = self.status(name).deployment
        return self.deploy(replace(deployment, handler_dir=handler_dir), progress)

    def remove(self, name: str) -> None:
        """Stop serving ``name``; its replicas drain and exit."""
        with self._deploying_lock(name), self._changed:
            function = self._functions.pop(name, None)
            if function is None:
                raise FunctionNotFound(name)
            self._retire(function.version.replicas, grace=0.0)
            logs = self._logs.pop(name)
            self._changed.notify_all()
        logs.close()
        log.info("function %s removed", name)

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
            target = _clamp(function.version.deployment.labels, replicas)
            self._resize(function, target)
        log.info("function %s scaled to %d", name, target)
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
                    return _LOOPBACK, ports[function.turn % len(ports)]

                if function.desired == 0:
                    log.info("function %s scaling up from zero", name)
                    labels = function.version.deployment.labels
                    self._resize(function, _clamp(labels, 1))

                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoReplicas(name, timeout)
                self._changed.wait(min(remaining, _MONITOR_INTERVAL))

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

        ``tail`` < 0 means all of them (faas-cli sends -1), 0 none.
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

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every process, wait up to ``timeout``, then SIGKILL.

        Each process group is killed after its leader exits, so children a
        function started do not outlive it. The supervisor is unusable
        afterwards.
        """
        self._closed.set()
        self._monitor.join()
        with self._changed:
            replicas = [*self._all_current(), *self._retiring]
            logs = list(self._logs.values())
            self._functions.clear()
            self._retiring.clear()
            self._logs.clear()
            for replica in replicas:
                replica.stopping = True
            self._changed.notify_all()

        runs = [replica.run for replica in replicas if replica.run is not None]
        _stop_runs(runs, timeout)
        for item in logs:
            item.close()
        for version in {replica.version for replica in replicas}:
            _remove_version(version)
            self._forget_secrets(version.deployment.name)
        log.info("stopped %d process(es)", len(runs))

    # -- building a version -------------------------------------------------

    def _build(
        self,
        deployment: Deployment,
        progress: Progress | None,
    ) -> _Version:
        if self._closed.is_set():
            raise SupervisorError(_STOPPED)

        secrets = self._materialize(deployment)
        number = self._next_number(deployment.name)
        folder = self._lay_out(deployment, number)
        try:
            environment = self._environment(deployment, folder, progress)
            command, secret_path = _command(deployment, environment, secrets)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

        env = _process_env(deployment, environment, secret_path)
        return _Version(
            deployment=deployment,
            number=number,
            folder=folder,
            run_folder=self.state_dir / "run" / deployment.name / str(number),
            command=command,
            env=env,
            logs=self._logs_for(deployment),
            drain_limit=_drain_limit(deployment) + _DRAIN_MARGIN,
        )

    def _materialize(self, deployment: Deployment) -> Path:
        folder = self.state_dir / "mounts" / deployment.name
        if self._secrets is not None:
            self._secrets.materialize(deployment.secrets, folder)
            return folder

        if deployment.secrets:
            raise DeployError(
                deployment.name,
                f"it lists secrets {list(deployment.secrets)} but the "
                "emulator has no secret store: start it with one",
            )
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def _next_number(self, name: str) -> int:
        with self._lock:
            if name not in self._numbers:
                # Builds of a previous run of the emulator: nothing uses them.
                for kind in ("builds", "run"):
                    old = self.state_dir / kind / name
                    shutil.rmtree(old, ignore_errors=True)
            self._numbers[name] = self._numbers.get(name, 0) + 1
            return self._numbers[name]

    def _lay_out(self, deployment: Deployment, number: int) -> Path:
        folder = self.state_dir / "builds" / deployment.name / str(number)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            _copy_sources(deployment, folder)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise DeployError(
                deployment.name,
                f"cannot lay out its build folder {str(folder)!r}: {exc}",
            ) from exc
        return folder

    def _environment(
        self, deployment: Deployment, folder: Path, progress: Progress | None
    ) -> Environment | None:
        if deployment.template_dir is None:
            return None

        requirements = [
            folder / "requirements.txt",
            folder / deployment.handler_folder / "requirements.txt",
        ]
        try:
            return self.environments.get(requirements, progress)
        except BuildError as exc:
            raise DeployError(deployment.name, str(exc), exc.output) from exc

    def _logs_for(self, deployment: Deployment) -> _Logs:
        with self._lock:
            logs = self._logs.get(deployment.name)
            if logs is None:
                logs = _Logs(deployment.name, self._sink, self._log_lines)
                self._logs[deployment.name] = logs
            logs.namespace = deployment.namespace
            return logs

    def _initial_count(self, deployment: Deployment) -> int:
        # A new function starts at its min label (§8.2). An update keeps the
        # count it was scaled to, but never zero: a new version must prove
        # it starts before it replaces the old one.
        with self._lock:
            current = self._functions.get(deployment.name)
            if current is not None and current.desired > 0:
                return _clamp(deployment.labels, current.desired)
        return _clamp(deployment.labels, 1)

    # -- starting, switching, retiring -------------------------------------

    def _start(self, version: _Version, count: int) -> None:
        replicas = [version.add_replica() for _ in range(count)]
        try:
            for replica in replicas:
                self._launch(replica)
        except OSError as exc:
            raise DeployError(
                version.deployment.name,
                f"its command {version.command[0]!r} cannot start: {exc}",
            ) from exc
        self._await_healthy(version, replicas)

    def _launch(self, replica: _Replica) -> _Run:
        version = replica.version
        version.run_folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        env = {
            **version.env,
            "port": str(port),
            "lock_file": str(replica.lock_file),
            # The python3-http context's hostname, as a pod name would be.
            "HOSTNAME": replica.instance,
        }
        process = subprocess.Popen(
            version.command,
            cwd=version.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._pids.remember(process.pid)
        run = _Run(process, port, self._pids)
        run.readers = [
            _reader(process.stdout, run, version.logs, replica.instance, False),
            _reader(process.stderr, run, version.logs, replica.instance, True),
        ]
        replica.run = run
        threading.Thread(
            target=self._probe,
            args=(replica, run),
            name=f"probe-{replica.instance}",
            daemon=True,
        ).start()
        return run

    def _probe(self, replica: _Replica, run: _Run) -> None:
        delay = 0.01
        while replica.run is run and not replica.stopping and not run.exited():
            if _healthy(run.port):
                run.healthy.set()
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        with self._changed:
            self._changed.notify_all()

    def _await_healthy(self, version: _Version, replicas: list[_Replica]) -> None:
        name = version.deployment.name
        deadline = time.monotonic() + self.health_timeout
        attempts = dict.fromkeys(map(id, replicas), 1)
        pending = list(replicas)
        while pending:
            replica = pending[0]
            run = replica.run
            assert run is not None
            if run.healthy.wait(0.01):
                pending.pop(0)
                continue

            if run.exited():
                output = run.finish_and_output()
                retry = attempts[id(replica)] < _PORT_ATTEMPTS
                if _PORT_IN_USE in output and retry:
                    # Another program took the free port first: try another.
                    attempts[id(replica)] += 1
                    self._launch(replica)
                    continue
                raise DeployError(
                    name,
                    f"it {_describe(run.returncode)} before {_HEALTH_PATH} "
                    "answered; its last output:",
                    output,
                )
            if time.monotonic() > deadline:
                raise DeployError(
                    name,
                    f"{_HEALTH_PATH} did not answer 200 within "
                    f"{self.health_timeout:g}s; its last output:",
                    run.output(),
                )

    def _switch(self, version: _Version) -> None:
        name = version.deployment.name
        with self._changed:
            if self._closed.is_set():
                raise SupervisorError(_STOPPED)
            function = self._functions.get(name)
            if function is None:
                function = _Function(version, datetime.now(UTC), 0)
                self._functions[name] = function
            old = function.version
            asked = function.desired

            function.version = version
            function.desired = len(version.replicas)
            if old is not version:
                self._retire(old.replicas, self.retire_grace)
            asked = _clamp(version.deployment.labels, asked)
            if asked > len(version.replicas):
                # Scaled up while this version was being built.
                self._resize(function, asked)
            self._changed.notify_all()
        log.info(
            "function %s version %d serving on port(s) %s",
            name,
            version.number,
            ", ".join(str(port) for port in function.ready_ports()) or "-",
        )

    def _resize(self, function: _Function, target: int) -> None:
        replicas = function.version.replicas
        for _ in range(target - len(replicas)):
            self._start_or_retry(function.version.add_replica())
        if len(replicas) > target:
            extra = replicas[target:]
            del replicas[target:]
            self._retire(extra, self.retire_grace)
        function.desired = target
        self._changed.notify_all()

    def _start_or_retry(self, replica: _Replica) -> None:
        try:
            self._launch(replica)
        except OSError as exc:
            log.warning(
                "function instance %s cannot start (%s); retrying in %.1fs",
                replica.instance,
                exc,
                replica.backoff,
            )
            replica.restart_at = time.monotonic() + replica.next_backoff()

    def _retire(self, replicas: Iterable[_Replica], grace: float) -> None:
        # Requests may already be on their way to these ports, so the drain
        # starts after a grace; the runtime then finishes what it has.
        at = time.monotonic() + grace
        for replica in replicas:
            replica.stopping = True
            replica.restart_at = None
            replica.terminate_at = at
            self._retiring.append(replica)

    def _discard(self, version: _Version) -> None:
        runs = [replica.run for replica in version.replicas if replica.run]
        for replica in version.replicas:
            replica.stopping = True
        _stop_runs(runs, timeout=0.0)
        _remove_version(version)

        name = version.deployment.name
        with self._lock:
            if name in self._functions:
                return
            # A first deploy that failed leaves nothing behind.
            self._logs.pop(name, None)
            if not any(r.version.deployment.name == name for r in self._retiring):
                self._forget_secrets(name)

    def _forget_secrets(self, name: str) -> None:
        # The values are plain files: keep them no longer than needed.
        shutil.rmtree(self.state_dir / "mounts" / name, ignore_errors=True)

    # -- the monitor --------------------------------------------------------

    def _watch(self) -> None:
        while not self._closed.wait(_MONITOR_INTERVAL):
            try:
                self._tick()
            except Exception:
                log.exception("supervisor monitor failed; it keeps running")

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            current = list(self._all_current())
            retiring = list(self._retiring)
        for replica in current:
            self._tend(replica, now)
        for replica in retiring:
            self._wind_down(replica, now)

    def _tend(self, replica: _Replica, now: float) -> None:
        with self._changed:
            run = replica.run
            if replica.stopping:
                return
            if run is None:
                if replica.restart_at is not None and now >= replica.restart_at:
                    replica.restart_at = None
                    self._start_or_retry(replica)
                return
            if not run.exited():
                if run.healthy.is_set() and now - run.started >= _STABLE_AFTER:
                    replica.backoff = _BACKOFF_FIRST
                return

            delay = replica.next_backoff()
            replica.run = None
            replica.restart_at = now + delay
            self._changed.notify_all()

        output = run.finish_and_output()
        log.warning(
            "function instance %s %s; restarting in %.1fs; its last output:\n%s",
            replica.instance,
            _describe(run.returncode),
            delay,
            output or "(none)",
        )

    def _wind_down(self, replica: _Replica, now: float) -> None:
        run = replica.run
        if run is not None and not run.exited():
            if replica.terminated_at is None and now >= replica.terminate_at:
                run.signal(signal.SIGTERM)
                replica.terminated_at = now
            elif replica.terminated_at is not None and (
                now - replica.terminated_at > replica.version.drain_limit
            ):
                log.warning(
                    "function instance %s still draining after %.0fs: killed",
                    replica.instance,
                    replica.version.drain_limit,
                )
                run.finish()
            return

        if run is not None:
            run.finish()
            run.join_readers()
        with self._lock:
            self._retiring.remove(replica)
            self._prune(replica.version)

    def _prune(self, version: _Version) -> None:
        # A version's folders go once nothing runs from them; a removed
        # function's secrets go with its last replica.
        name = version.deployment.name
        function = self._functions.get(name)
        if function is not None and function.version is version:
            return
        if any(r.version is version for r in self._retiring):
            return
        _remove_version(version)
        if function is None and not any(
            r.version.deployment.name == name for r in self._retiring
        ):
            self._forget_secrets(name)

    # -- small helpers ------------------------------------------------------

    def _get(self, name: str) -> _Function:
        function = self._functions.get(name)
        if function is None:
            raise FunctionNotFound(name)
        return function

    def _get_logs(self, name: str) -> _Logs:
        logs = self._logs.get(name)
        if logs is None:
            raise FunctionNotFound(name)
        return logs

    def _all_current(self) -> Iterator[_Replica]:
        for function in self._functions.values():
            yield from function.version.replicas

    @contextmanager
    def _deploying_lock(self, name: str) -> Iterator[None]:
        with self._lock:
            lock = self._deploying.setdefault(name, threading.Lock())
        with lock:
            yield


class _PidRecord:
    """The function processes of this state folder, as files named by pid.

    Each file holds the process's start time (``/proc/<pid>/stat`` field 22),
    so a pid reused by an unrelated process is never mistaken for ours. An
    emulator killed with SIGKILL cannot stop its functions; the next one on
    the same state folder reaps them before it starts its own.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def remember(self, pid: int) -> None:
        started = _start_time(pid)
        if started is None:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.folder / str(pid)).write_text(started)

    def forget(self, pid: int) -> None:
        (self.folder / str(pid)).unlink(missing_ok=True)

    def reap(self) -> None:
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            pid = int(entry.name) if entry.name.isdigit() else 0
            if pid and _start_time(pid) == entry.read_text():
                log.warning("stopping pid %d left by a killed emulator", pid)
                _send(pid, signal.SIGKILL, group=True)
            entry.unlink(missing_ok=True)


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, field 2, may hold spaces: count after its ")".
    return stat.rpartition(")")[2].split()[19]


class _Run:
    """One process of a replica, from its start to its exit."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        record: _PidRecord | None = None,
    ) -> None:
        self.process = process
        self.port = port
        self.record = record
        self.started = time.monotonic()
        self.healthy = threading.Event()
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.readers: list[threading.Thread] = []
        self.returncode: int | None = None
        self._end = threading.Lock()

    def exited(self) -> bool:
        """Whether the process has ended, without collecting its status.

        The exited process stays a zombie until ``finish``, so its PID, and
        with it its process group ID, cannot be reused by another process
        before the group is killed.
        """
        if self.returncode is not None:
            return True
        try:
            state = os.waitid(
                os.P_PID,
                self.process.pid,
                os.WEXITED | os.WNOHANG | os.WNOWAIT,
            )
        except ChildProcessError:
            return True
        return state is not None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process if it has not been collected."""
        with self._end:
            if self.returncode is None:
                _send(self.process.pid, signum, group=False)

    def finish(self) -> int:
        """Kill what is left of the process group; collect the exit status."""
        with self._end:
            if self.returncode is None:
                _send(self.process.pid, signal.SIGKILL, group=True)
                self.returncode = self.process.wait()
                if self.record is not None:
                    self.record.forget(self.process.pid)
            return self.returncode

    def join_readers(self, timeout: float = 1.0) -> None:
        """Wait until its output has been read to the end."""
        deadline = time.monotonic() + timeout
        for reader in self.readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def output(self) -> str:
        """Its last lines on stderr."""
        return "\n".join(self.tail)

    def finish_and_output(self) -> str:
        """``finish``, then its last lines once all are read."""
        self.finish()
        self.join_readers()
        return self.output()


class _Replica:
    """A slot of a version: the process now filling it, and its restarts."""

    def __init__(self, version: _Version, slot: int) -> None:
        self.version = version
        self.instance = f"{version.deployment.name}-{version.number}-{slot}"
        self.lock_file = version.run_folder / f"{slot}.lock"
        self.run: _Run | None = None
        self.stopping = False
        self.backoff = _BACKOFF_FIRST
        self.restart_at: float | None = None
        self.terminate_at = 0.0
        self.terminated_at: float | None = None

    def ready_port(self) -> int | None:
        """Its port if it is healthy and alive, else None."""
        run = self.run
        if run is None or self.stopping or not run.healthy.is_set():
            return None
        if run.exited():
            return None
        return run.port

    def next_backoff(self) -> float:
        """The wait before the next restart; doubles the one after it."""
        delay = self.backoff
        self.backoff = min(delay * 2, _BACKOFF_MAX)
        return delay


@dataclass(eq=False)
class _Version:
    """One deploy of a function: its build folder, command and replicas."""

    deployment: Deployment
    number: int
    folder: Path
    run_folder: Path
    command: list[str]
    env: dict[str, str]
    logs: _Logs
    drain_limit: float
    replicas: list[_Replica] = field(default_factory=list)
    next_slot: int = 0

    def add_replica(self) -> _Replica:
        """A new, not yet started replica in the next slot."""
        replica = _Replica(self, self.next_slot)
        self.next_slot += 1
        self.replicas.append(replica)
        return replica


@dataclass(eq=False)
class _Function:
    """A deployed name: its serving version and desired replica count."""

    version: _Version
    created_at: datetime
    desired: int
    turn: int = -1

    def ready_ports(self) -> list[int]:
        """Ports of the replicas that can take a request now."""
        ports = (replica.ready_port() for replica in self.version.replicas)
        return [port for port in ports if port is not None]


class _Logs:
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


def _check(deployment: Deployment) -> None:
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


def _command(
    deployment: Deployment, environment: Environment | None, secrets: Path
) -> tuple[list[str], str]:
    if environment is None:
        argv = [sys.executable, "-P", "-c", _CLASSIC_BOOT, _PACKAGE_PARENT]
    else:
        argv = _split(_fprocess(deployment))
        if argv[0] in _PYTHONS:
            argv[0] = str(environment.python)

    # In a private mount namespace the function finds its secrets where
    # OpenFaaS puts them; otherwise it is told where they are.
    wrapped = namespaces.secrets_mount_wrapper(argv, secrets)
    if wrapped is None:
        return argv, str(secrets)
    return wrapped, namespaces.SECRETS_TARGET


def _fprocess(deployment: Deployment) -> str:
    if deployment.env_process.strip():
        return deployment.env_process
    assert deployment.template_dir is not None
    try:
        text = (deployment.template_dir / "template.yml").read_text()
        spec = yaml.safe_load(text)
    except (OSError, yaml.YAMLError):
        return _FPROCESS
    value = spec.get("fprocess") if isinstance(spec, dict) else None
    return str(value) if value else _FPROCESS


def _split(fprocess: str) -> list[str]:
    # The watchdogs split fprocess on single spaces, with no shell and no
    # quoting (tooling.md §4.2).
    argv = fprocess.strip().split(" ")
    return [arg for arg in argv if arg] or [_FPROCESS]


def _process_env(
    deployment: Deployment, environment: Environment | None, secret_path: str
) -> dict[str, str]:
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key in _INHERITED or key.startswith("LC_")
    }
    if environment is not None:
        path = inherited.get("PATH", os.defpath)
        inherited["PATH"] = f"{environment.bin}{os.pathsep}{path}"
        inherited["VIRTUAL_ENV"] = str(environment.path)

    fprocess = deployment.env_process
    if environment is not None:
        fprocess = _fprocess(deployment)
    # As local-run orders them: the function's environment, then what the
    # platform injects; the runtime's own settings last, as the emulator
    # owns the port, the address and the drain (§4.1).
    return {
        "PYTHONUNBUFFERED": "1",
        **inherited,
        **deployment.env_vars,
        "OPENFAAS_NAME": deployment.name,
        "OPENFAAS_NAMESPACE": deployment.namespace,
        "fprocess": fprocess,
        "listen_address": _LOOPBACK,
        "secret_mount_path": secret_path,
        "healthcheck_interval": "0",
    }


def _drain_limit(deployment: Deployment) -> float:
    try:
        return Settings.from_env(deployment.env_vars).write_timeout
    except ConfigError:
        return Settings.write_timeout


def _clamp(labels: Mapping[str, str], replicas: int) -> int:
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


def _reader(
    stream: IO[bytes] | None,
    run: _Run,
    logs: _Logs,
    instance: str,
    keep_tail: bool,
) -> threading.Thread:
    def pump() -> None:
        assert stream is not None
        with stream:
            for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
                text = raw.decode(errors="replace").rstrip("\r\n")
                if keep_tail:
                    run.tail.append(text)
                logs.add(instance, text)

    thread = threading.Thread(target=pump, name=f"logs-{instance}", daemon=True)
    thread.start()
    return thread


def _stop_runs(runs: list[_Run], timeout: float) -> None:
    for run in runs:
        run.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(run.exited() for run in runs):
        time.sleep(0.05)
    for run in runs:
        if not run.exited():
            log.warning(
                "pid %d did not stop within %gs: killed", run.process.pid, timeout
            )
        run.finish()
    for run in runs:
        run.join_readers()


def _remove_version(version: _Version) -> None:
    shutil.rmtree(version.folder, ignore_errors=True)
    shutil.rmtree(version.run_folder, ignore_errors=True)


def _send(pid: int, signum: int, *, group: bool) -> None:
    try:
        if group:
            # start_new_session made the process its group's leader.
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(_LOOPBACK, port, timeout=1.0)
    try:
        connection.request("GET", _HEALTH_PATH)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "is still running"
    if returncode < 0:
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"
