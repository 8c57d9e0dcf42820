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
* a replica whose processes hold more memory than ``limits.memory`` is
  killed, as the OOM killer kills such a container, and so restarted;
* ``scale`` follows the ``com.openfaas.scale.min``/``max`` labels
  (gateway-contract §8.2, §8.6) and allows 0; a function at zero starts on
  its next call, as the gateway's scale-from-zero does (§9.4);
* every line a function prints is kept for ``/system/logs`` (§8.9).

The bookkeeping behind these, the public types and the errors are shared
with the container supervisor in ``replicas``; they are importable from
here too. Errors::

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

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from . import classic, namespaces, resources
from .environments import BuildError, Environment, Environments, Progress
from .replicas import (
    DEFAULT_NAMESPACE,
    HEALTH_PATH,
    LOOPBACK,
    MAX_LINE,
    SCALE_MAX,
    SCALE_MIN,
    STABLE_AFTER,
    STOPPED,
    TAIL_LINES,
    Backoff,
    DeployError,
    Deployment,
    Function,
    FunctionNotFound,
    FunctionState,
    LogLine,
    LogQueue,
    Logs,
    LogSink,
    NoReplicas,
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

__all__ = [
    "DEFAULT_NAMESPACE",
    "SCALE_MAX",
    "SCALE_MIN",
    "DeployError",
    "Deployment",
    "FunctionNotFound",
    "FunctionState",
    "LogLine",
    "LogQueue",
    "LogSink",
    "NoReplicas",
    "SecretSource",
    "Supervisor",
    "SupervisorError",
]

log = logging.getLogger("localfaas.supervisor")

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

_MONITOR_INTERVAL = 0.1
# How often a replica with limits.memory has its memory read. A reading
# walks the process table to find the children (0.5 ms with 70 processes
# here, so about 0.1 % of a core per limited replica); a cgroup's OOM kill
# is not instant either.
_MEMORY_INTERVAL = 0.5
_PORT_ATTEMPTS = 3
_PORT_IN_USE = "Address already in use"

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


class Supervisor(ReplicaSupervisor["_Version", "_Replica"]):
    """Deploys, scales, restarts and stops functions as local processes.

    Thread-safe. ``log_sink`` is called from reader threads, one per
    process stream, so it must be thread-safe too.
    """

    logger = log
    poll_interval = _MONITOR_INTERVAL

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
        super().__init__(
            state_dir,
            secrets=secrets,
            log_sink=log_sink,
            health_timeout=health_timeout,
            retire_grace=retire_grace,
            log_lines=log_lines,
        )
        if environments is None:
            environments = Environments(self.state_dir, python=python)
        self.environments = environments

        self._retiring: list[_Replica] = []
        # The limits.cpu value each function was last told about.
        self._cpu_noted: dict[str, str] = {}
        self._pids = _PidRecord(self.state_dir / "pids")
        self._pids.reap()
        self._monitor = threading.Thread(
            target=self._watch, name="supervisor-monitor", daemon=True
        )
        self._monitor.start()

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

    def _check(self, deployment: Deployment) -> None:
        check_deployment(deployment)
        check_resources(deployment)
        self._note_cpu_limit(deployment)

    def _note_cpu_limit(self, deployment: Deployment) -> None:
        """Warn that ``limits.cpu`` is not applied, once per value.

        Only a cgroup can throttle a process; saying so on every hot reload
        would bury the function's own lines.
        """
        cpu = deployment.limits.get("cpu")
        if cpu is None or self._cpu_noted.get(deployment.name) == cpu:
            return
        self._cpu_noted[deployment.name] = cpu
        log.warning(
            "function %s: limits.cpu %s is not applied to a local process; "
            "run 'localfaas up --docker' to have it throttled as on OpenFaaS",
            deployment.name,
            cpu,
        )

    def _prepare(
        self,
        deployment: Deployment,
        progress: Progress | None,
    ) -> _Version:
        if self._closed.is_set():
            raise SupervisorError(STOPPED)

        secrets = self._materialize(deployment)
        number = self._next_number(deployment.name)
        folder = self.state_dir / "builds" / deployment.name / str(number)
        lay_out(deployment, folder)
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
            drain_limit=drain_limit(deployment),
            memory_limit=resources.memory_limit(deployment.limits),
        )

    def _materialize(self, deployment: Deployment) -> Path:
        folder = self.state_dir / "mounts" / deployment.name
        # Plaintext secrets live below: the folder itself is private too,
        # not only each function's (mkdir's parents would be 0755).
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._secrets is not None:
            self._secrets.materialize(deployment.secrets, folder)
            return folder

        if deployment.secrets:
            raise no_secret_store(deployment)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def _next_number(self, name: str) -> int:
        with self._lock:
            if name not in self._numbers:
                # Builds of a previous run of the emulator: nothing uses them.
                for kind in ("builds", "run"):
                    old = self.state_dir / kind / name
                    shutil.rmtree(old, ignore_errors=True)
            return super()._next_number(name)

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
        port = free_port()
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

        def gone() -> bool:
            return replica.run is not run or replica.stopping or run.exited()

        self._probe(replica.instance, run.port, run.healthy, gone, 0.01)
        return run

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
                    f"it {_describe(run.returncode)} before {HEALTH_PATH} "
                    "answered; its last output:",
                    output,
                )
            if time.monotonic() > deadline:
                raise DeployError(
                    name,
                    f"{HEALTH_PATH} did not answer 200 within "
                    f"{self.health_timeout:g}s; its last output:",
                    run.output(),
                )

    def _serving_from(self, function: Function[_Version]) -> str:
        ports = ", ".join(str(port) for port in function.ready_ports())
        return f"on port(s) {ports or '-'}"

    def _start_one(self, version: _Version) -> None:
        self._start_or_retry(version.add_replica())

    def _start_or_retry(self, replica: _Replica) -> None:
        try:
            self._launch(replica)
        except OSError as exc:
            log.warning(
                "function instance %s cannot start (%s); retrying in %.1fs",
                replica.instance,
                exc,
                replica.backoff.delay,
            )
            replica.restart_at = time.monotonic() + replica.backoff.next()

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
            self._keep_memory_limit(replica, now)
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
                if run.healthy.is_set() and now - run.started >= STABLE_AFTER:
                    replica.backoff.forgive()
                return

            delay = replica.backoff.next()
            replica.run = None
            replica.restart_at = now + delay
            self._changed.notify_all()

        output = run.finish_and_output()
        log.warning(
            "function instance %s %s; restarting in %.1fs; its last output:\n%s",
            replica.instance,
            run.killed_for or _describe(run.returncode),
            delay,
            output or "(none)",
        )

    def _keep_memory_limit(self, replica: _Replica, now: float) -> None:
        """Kill a replica over ``limits.memory``; ``_tend`` then restarts it.

        Read outside the lock: walking the process table takes about half a
        millisecond here and more on a busier machine, which ``endpoint``
        should not wait for. A replica being replaced or
        stopped has nothing to gain from a kill.
        """
        limit = replica.version.memory_limit
        run = replica.run
        if limit is None or run is None or replica.stopping or now < run.memory_due:
            return
        run.memory_due = now + _MEMORY_INTERVAL
        used = resources.resident_memory(run.process.pid)
        if used <= limit or run.exited():
            return

        run.killed_for = (
            f"was killed: its processes held {resources.mebibytes(used)}, over "
            f"limits.memory {replica.version.deployment.limits['memory']}"
        )
        log.warning(
            "function instance %s %s; OpenFaaS's OOM killer would end its "
            "container too: raise the limit or use less memory",
            replica.instance,
            run.killed_for,
        )
        run.signal(signal.SIGKILL, group=True)

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

    def _all_current(self) -> Iterator[_Replica]:
        for function in self._functions.values():
            yield from function.version.replicas


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
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.readers: list[threading.Thread] = []
        self.returncode: int | None = None
        # When limits.memory is next checked, and why it was killed if so.
        self.memory_due = 0.0
        self.killed_for: str | None = None
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

    def signal(self, signum: int, *, group: bool = False) -> None:
        """Send ``signum`` to the process (or its group) if not collected."""
        with self._end:
            if self.returncode is None:
                _send(self.process.pid, signum, group=group)

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
        self.backoff = Backoff()
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


@dataclass(eq=False)
class _Version(Version[_Replica]):
    """One deploy of a function: its build folder, command and replicas."""

    folder: Path
    run_folder: Path
    command: list[str]
    env: dict[str, str]
    memory_limit: int | None = None
    next_slot: int = 0

    def add_replica(self) -> _Replica:
        """A new, not yet started replica in the next slot."""
        replica = _Replica(self, self.next_slot)
        self.next_slot += 1
        self.replicas.append(replica)
        return replica


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
        "listen_address": LOOPBACK,
        "secret_mount_path": secret_path,
        "healthcheck_interval": "0",
    }


def _reader(
    stream: IO[bytes] | None,
    run: _Run,
    logs: Logs,
    instance: str,
    keep_tail: bool,
) -> threading.Thread:
    def pump() -> None:
        assert stream is not None
        with stream:
            for raw in iter(lambda: stream.readline(MAX_LINE), b""):
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


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "is still running"
    if returncode < 0:
        return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"
