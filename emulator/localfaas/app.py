"""``localfaas up``: load the stack, start every part, serve until Ctrl-C.

The parts, in the order a request meets them: the HTTP server (uvicorn,
which proxies ``/function/`` calls on its event loop and hands the rest to
the gateway's router in threads), the admin auth in front of ``/system/``,
the proxy and the async queue in front of the functions, and the
supervisor that runs each function as local processes.
Everything started here is stopped here, in reverse order, so Ctrl-C leaves
no process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from . import __version__
from .admin import AdminCredentials, admin_middleware, is_loopback
from .deployments import RequestError
from .environments import Environments
from .errors import DeployFailed
from .fastpath import FastPath, GatewayServer
from .functions import Functions, request_of, sources_of
from .gateway import SERVED_BY, Gateway
from .metrics import GatewayMetrics
from .proxy import Address, Proxy, UnknownFunction
from .queue import AsyncQueue
from .replicas import AnySupervisor
from .secrets import MissingSecrets, SecretStore
from .settings import UpOptions
from .stack import Stack, find_stack_file, load_stack
from .supervisor import (
    FunctionNotFound,
    LogLine,
    NoReplicas,
    Supervisor,
    SupervisorError,
)
from .system import SystemAPI
from .watcher import Watcher

log = logging.getLogger("localfaas")


def cache_dir() -> Path:
    """Where function environments are kept, shared by every project.

    An environment is keyed by its Python and requirement files, so two
    projects (or two test runs) with the same requirements reuse one.
    ``LOCALFAAS_CACHE_DIR`` moves it; else the XDG cache folder.
    """
    explicit = os.environ.get("LOCALFAAS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "localfaas"


def say(text: str) -> None:
    """Progress and notices for the person at the terminal."""
    print(text, file=sys.stderr, flush=True)


def echo_function_log(line: LogLine) -> None:
    """Show what functions print, prefixed with who printed it."""
    print(f"{line.name}: {line.text}", flush=True)


def up(options: UpOptions) -> None:
    """Serve the stack until interrupted; raise ``LocalfaasError`` if unable."""
    stack_path = (options.stack_file or find_stack_file(Path.cwd())).resolve()
    stack = load_stack(stack_path)
    project = stack_path.parent
    state = (options.state_dir or project / ".localfaas").resolve()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)

    secrets = SecretStore(project / ".secrets", state)
    with _supervisor(options, state, secrets) as supervisor:
        functions = _functions(supervisor, stack, runs_images=options.docker)
        gateway = _gateway(options, state, functions, secrets)
        queue = AsyncQueue(state, gateway.invoke_queued, workers=options.queue_workers)
        gateway.queue = queue

        # The gateway's port is bound before any function starts: each
        # function takes a free port, and could otherwise take this one
        # while its dependencies install. A busy port also fails fast.
        server = _server(options, gateway, state)
        with contextlib.closing(server.socket):
            ready = _deploy_stack(stack, functions)
            queue.start()
            try:
                with _watching(options, stack, functions, supervisor):
                    _banner(options, state, ready, server.port)
                    _serve(server)
            finally:
                queue.close()
    say("localfaas stopped; every function process has exited")


def _supervisor(options: UpOptions, state: Path, secrets: SecretStore) -> AnySupervisor:
    """The process supervisor, or with ``--docker`` the container one."""
    if not options.docker:
        environments = Environments(cache_dir())
        return Supervisor(
            state,
            secrets=secrets,
            log_sink=echo_function_log,
            environments=environments,
        )

    # Imported here: only --docker needs the docker SDK.
    from .containers import ContainerSupervisor

    return ContainerSupervisor(state, secrets=secrets, log_sink=echo_function_log)


def _functions(
    supervisor: AnySupervisor, stack: Stack, *, runs_images: bool
) -> Functions:
    metrics = GatewayMetrics(lambda: functions.replica_counts())
    functions = Functions(
        supervisor, metrics, sources_of(stack), runs_images=runs_images
    )
    return functions


def _gateway(
    options: UpOptions, state: Path, functions: Functions, secrets: SecretStore
) -> Gateway:
    mode = options.admin_auth
    if options.auth_proxy_url:
        mode = "plugin"
    credentials = None
    if mode == "basic":
        folder = options.secret_mount_path or state / "credentials"
        credentials = AdminCredentials.load_or_create(folder)
        if credentials.created:
            say(f"made admin credentials for /system/ in {folder}")

    system = admin_middleware(
        SystemAPI(functions, secrets, log_timeout=options.write_timeout),
        mode=mode,
        credentials=credentials,
        plugin_url=options.auth_proxy_url or None,
        pass_body=options.auth_pass_body,
        timeout=options.upstream_timeout,
        loopback=is_loopback(options.host),
    )
    proxy = Proxy(
        functions.resolve,
        functions.metrics,
        timeout=options.upstream_timeout,
        served_by=SERVED_BY,
        locate=_ready_replica(functions.supervisor),
    )
    return Gateway(proxy=proxy, system=system, metrics=functions.metrics)


def _deploy_stack(stack: Stack, functions: Functions) -> list[str]:
    """Start each stack function; one that fails leaves the others serving."""
    ready = []
    for name, spec in stack.functions.items():
        source = functions.sources.get(spec.image)
        request = request_of(spec, source)
        say(f"[{name}] starting ({spec.lang}, {spec.handler})")
        try:
            functions.deploy_now(request, _progress(name))
        except MissingSecrets as exc:
            say(f"[{name}] not started: {exc}")
            continue
        except (SupervisorError, RequestError) as exc:
            say(f"[{name}] not started: {_describe(exc)}")
            continue
        ready.append(name)
    if stack.functions and not ready:
        raise DeployFailed(
            f"none of the {len(stack.functions)} function(s) in "
            f"{stack.path} could start",
            hint="read the errors above; fix them and run localfaas up again",
        )
    return ready


def _progress(name: str) -> Callable[[str], None]:
    return lambda line: say(f"[{name}] {line}")


@contextlib.contextmanager
def _watching(
    options: UpOptions, stack: Stack, functions: Functions, supervisor: AnySupervisor
) -> Iterator[None]:
    if not options.watch:
        yield
        return

    folders = {
        name: spec.handler
        for name, spec in stack.functions.items()
        if spec.handler is not None and spec.handler.is_dir()
    }

    def reload(name: str, changed: set[Path]) -> None:
        handler = folders[name]
        say(f"[{name}] changed ({len(changed)} file(s)): reloading")
        try:
            supervisor.reload(name, handler, lambda line: say(f"[{name}] {line}"))
        except (SupervisorError, MissingSecrets) as exc:
            say(f"[{name}] reload failed, the previous version keeps serving:")
            say(_describe(exc))
            return
        say(f"[{name}] reloaded")

    watcher = Watcher(folders, reload)
    watcher.start()
    try:
        yield
    finally:
        watcher.stop()


def _ready_replica(supervisor: AnySupervisor) -> Callable[[str], Address | None]:
    """The proxy's lookup that never waits: a ready replica, or None."""

    def locate(name: str) -> Address | None:
        try:
            return supervisor.endpoint(name, timeout=0.0)
        except FunctionNotFound as exc:
            raise UnknownFunction(name) from exc
        except NoReplicas:
            return None

    return locate


def _server(options: UpOptions, gateway: Gateway, state: Path) -> GatewayServer:
    tls = None
    if options.tls:
        from .tls import default_tls_dir, ensure_certificates

        tls = ensure_certificates(default_tls_dir(), [options.host])
        say(f"TLS: clients should trust the local CA at {tls.ca}")
    return GatewayServer(
        FastPath(gateway, threads=options.threads),
        options.host,
        options.port,
        tls=tls,
        idle_timeout=options.write_timeout,
    )


def _serve(server: GatewayServer) -> None:
    """Run until Ctrl-C or SIGTERM; both end in the same clean stop."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # uvicorn takes both signals while it runs, drains, then raises the
    # signal again for this handler (SIGTERM) or Python's (SIGINT).
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("stopping: draining functions")


def _banner(options: UpOptions, state: Path, ready: list[str], port: int) -> None:
    scheme = "https" if options.tls else "http"
    url = f"{scheme}://{options.host}:{port}"
    lines = [
        f"localfaas {__version__}: OpenFaaS gateway on {url}",
        f"  functions: {', '.join(ready) or '(none)'}",
        f"  invoke:    curl {url}/function/<name>",
    ]
    if options.admin_auth == "basic" and not options.auth_proxy_url:
        folder = options.secret_mount_path or state / "credentials"
        password = folder / "basic-auth-password"
        lines.append(
            f"  log in:    faas-cli login -g {url} -u admin --password-stdin"
            f" < {_relative(password)}"
        )
    lines.append("Press Ctrl-C to stop.")
    say("\n".join(lines))


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _describe(exc: BaseException) -> str:
    output = getattr(exc, "output", "")
    return f"{exc}\n{output}".rstrip() if output else str(exc)


if os.name != "posix":  # pragma: no cover - documented limitation
    log.warning("localfaas runs functions as POSIX processes; expect trouble")
