"""The ``localfaas`` command line.

``up`` starts the gateway (``localfaas.app``); ``new`` creates a function as
``faas-cli new`` does; ``invoke``, ``list``, ``logs`` and ``secret`` talk to
a running gateway with faas-cli's requests and messages, so output and
scripts carry over; ``auth-plugin`` serves a reference auth plugin.

Errors: click's ``Command.main`` is the one boundary. The top group's
``invoke`` turns the project's exceptions into a click exception that prints
``Error: <what happened>`` and ``Hint: <what to do>`` and exits 1; usage
errors exit 2 as click makes them; Ctrl-C exits 130 without a word, as a
shell reports a process ended by SIGINT. Anything else is a bug and keeps
its traceback.

Client commands find the gateway in ``-g/--gateway``, else ``OPENFAAS_URL``,
else ``http://127.0.0.1:8080``, normalised as faas-cli normalises it. Admin
credentials come from ``--user``/``--password`` (or ``OPENFAAS_USERNAME``/
``OPENFAAS_PASSWORD``), else ``--token``, else the files ``localfaas up``
wrote in ``./.localfaas/credentials/`` (or ``$secret_mount_path``) when the
gateway is on this machine, else faas-cli's ``config.yml`` entry for that
gateway. An https gateway is checked against the system's CAs and the local
CA of ``localfaas up --tls``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar, cast
from urllib.parse import urlsplit

import click
import yaml

from faas_runtime._settings import duration
from faas_runtime._webhooks import SCHEMES, sign
from localfaas import __version__
from localfaas.admin import (
    PASSWORD_FILE,
    USER_FILE,
    AdminConfigError,
    AdminCredentials,
    is_loopback,
)
from localfaas.client import DEFAULT_NAMESPACE, Gateway
from localfaas.errors import ConfigurationError, LocalfaasError, RequestFailed
from localfaas.settings import UpOptions
from localfaas.stack import DEFAULT_GATEWAY, StackError
from localfaas.templates import (
    NewFunctionError,
    TemplateError,
    list_templates,
    new_function,
)
from localfaas.tls import default_tls_dir

__all__ = [
    "Login",
    "cli",
    "find_login",
    "gateway_url",
    "main",
    "plain_http_problem",
    "up_options",
]

F = TypeVar("F", bound=Callable[..., Any])

# Failures the user can act on; everything else is a bug and keeps its
# traceback.
_REPORTED = (
    LocalfaasError,
    StackError,
    TemplateError,
    NewFunctionError,
    AdminConfigError,
)

# 128 + SIGINT: what a shell reports for a process ended by Ctrl-C.
_INTERRUPTED = 130

_STATE_DIR = ".localfaas"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Every webhook scheme the templates verify (faas_runtime auth_scheme).
_SIGN_SCHEMES = sorted([*SCHEMES, "svix"])
# DNS-1123 subdomain, the rule faas-cli checks secret names against.
_SECRET_NAME = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_STDIN_PROMPT = "Reading from STDIN - hit (Control + D) to stop."
_DEFAULTS = UpOptions()


# --- the error boundary ------------------------------------------------------


class Reported(click.ClickException):
    """A failed operation, shown as ``Error:`` and ``Hint:`` lines; exit 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: IO[Any] | None = None) -> None:
        """Write the two lines to stderr."""
        click.echo(f"Error: {self.format_message()}", file=file, err=True)
        if self.hint:
            click.echo(f"Hint: {self.hint}", file=file, err=True)


class Refused(Reported):
    """A combination of flags the CLI will not run; exit 2, as usage errors."""

    exit_code = 2


class LocalfaasGroup(click.Group):
    """The top command: where the project's exceptions become messages."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; translate what it raises for ``main``."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Quietly: the user asked for it. click would print "Aborted!"
            # and exit 1, which reads as a failure.
            raise click.exceptions.Exit(_INTERRUPTED) from None
        except _REPORTED as exc:
            hint = exc.hint if isinstance(exc, LocalfaasError) else None
            raise Reported(str(exc), hint) from exc


@click.group(
    cls=LocalfaasGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="localfaas")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much the gateway and plugins log to stderr.",
)
def cli(log_level: str) -> None:
    """A local OpenFaaS gateway for Python functions, and its tools."""
    # Handlers are set here, at the process's entry point, never in library
    # modules; basicConfig leaves an already configured logger alone.
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Entry point of the ``localfaas`` script."""
    cli.main(prog_name="localfaas")


def _until_interrupted(serve: Callable[[], None]) -> None:
    """Run a server that stops cleanly on Ctrl-C, then still report it.

    The gateway (``app.up``) and waitress (the plugins) catch the interrupt
    to stop cleanly and return as if they had simply finished; noting the
    signal here lets the boundary exit 130 all the same.
    """
    if threading.current_thread() is not threading.main_thread():
        serve()
        return

    interrupted = threading.Event()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        serve()
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt


# --- up -------------------------------------------------------------------


class _Duration(click.ParamType[float, Any]):
    """Seconds, or a Go duration such as ``60s`` or ``1m5s``."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = duration(str(value))
        except ValueError:
            seconds = -1.0
        if seconds > 0 and math.isfinite(seconds):
            return seconds
        self.fail(f"{value!r} is not a positive duration; use e.g. 60, 60s or 1m5s")


def _env_true(*names: str) -> Callable[[], bool]:
    """A flag default read from environment twins, true only for ``true``."""
    # The gateway's rule for booleans (gateway-contract.md §3): only the
    # exact string "true" turns a setting on.
    return lambda: any(os.environ.get(name) == "true" for name in names)


@cli.command()
@click.option(
    "-f",
    "--yaml",
    "stack_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Stack file; default stack.yaml, then stack.yml.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=_DEFAULTS.port,
    show_default=True,
    help="0 picks a free port; the banner names it.",
)
@click.option(
    "--host",
    default=_DEFAULTS.host,
    show_default=True,
    help="Address to listen on; other than loopback needs --tls or --insecure.",
)
@click.option("--tls", is_flag=True, help="Serve HTTPS with a local CA.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow plain HTTP on an address other than loopback.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where builds, queue and credentials live; default ./.localfaas.",
)
@click.option(
    "--no-admin-auth",
    is_flag=True,
    help="Leave /system/ open (loopback only).",
)
@click.option(
    "--auth-proxy-url",
    envvar="auth_proxy_url",
    default="",
    help="Auth plugin's validation URL, e.g. http://127.0.0.1:8081/validate.",
)
@click.option(
    "--auth-pass-body",
    is_flag=True,
    default=_env_true("auth_pass_body", "auth_proxy_pass_body"),
    help="Send the request body to the auth plugin.",
)
@click.option(
    "--secret-mount-path",
    envvar="secret_mount_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of basic-auth-user and basic-auth-password.",
)
@click.option(
    "--upstream-timeout",
    envvar="upstream_timeout",
    type=_Duration(),
    default=_DEFAULTS.upstream_timeout,
    show_default=True,
    help="Deadline for one call to a function.",
)
@click.option("--no-watch", is_flag=True, help="Do not reload handlers on save.")
@click.option("--docker", is_flag=True, help="Run functions in containers.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=_DEFAULTS.threads,
    show_default=True,
    help="Gateway worker threads.",
)
def up(**params: Any) -> None:
    """Start the gateway and the stack's functions; Ctrl-C stops them."""
    options = up_options(**params)
    problem = plain_http_problem(options)
    if problem is not None:
        raise Refused(*problem)

    # Imported here: the gateway pulls in much that the other commands
    # never need.
    from localfaas import app

    _until_interrupted(lambda: app.up(options))


def up_options(
    *,
    stack_file: Path | None,
    port: int,
    host: str,
    tls: bool,
    insecure: bool,
    state_dir: Path | None,
    no_admin_auth: bool,
    auth_proxy_url: str,
    auth_pass_body: bool,
    secret_mount_path: Path | None,
    upstream_timeout: float,
    no_watch: bool,
    docker: bool,
    threads: int,
) -> UpOptions:
    """The ``UpOptions`` that ``up``'s flags ask for."""
    if no_admin_auth and auth_proxy_url:
        raise click.UsageError(
            f"--no-admin-auth and --auth-proxy-url {auth_proxy_url} contradict"
            " each other; keep one"
        )

    admin_auth = "basic"
    if no_admin_auth:
        admin_auth = "none"
    elif auth_proxy_url:
        admin_auth = "plugin"

    return UpOptions(
        stack_file=stack_file,
        host=host,
        port=port,
        tls=tls,
        insecure=insecure,
        state_dir=state_dir,
        admin_auth=admin_auth,
        auth_proxy_url=auth_proxy_url,
        auth_pass_body=auth_pass_body,
        secret_mount_path=secret_mount_path,
        upstream_timeout=upstream_timeout,
        watch=not no_watch,
        docker=docker,
        threads=threads,
    )


def plain_http_problem(options: UpOptions) -> tuple[str, str] | None:
    """Why ``options`` would expose the gateway unsafely, and the fix; or None.

    OpenFaaS asks for HTTPS on any network not fully trusted
    (auth-guidance.md): plain HTTP is for loopback unless the user says
    otherwise, and an open ``/system/`` is for loopback only.
    """
    if is_loopback(options.host):
        return None

    if options.admin_auth == "none":
        return (
            f"refusing to leave /system/ open on {options.host}: anyone who"
            " reaches the port could deploy and delete functions",
            "drop --no-admin-auth, or listen on 127.0.0.1",
        )
    if options.tls or options.insecure:
        return None
    return (
        f"refusing to serve plain HTTP on {options.host}: admin credentials"
        " and function traffic would cross the network unencrypted",
        "add --tls (HTTPS with a local CA), or --insecure if this network is trusted",
    )


# --- build ------------------------------------------------------------------


@cli.command()
@click.argument("names", nargs=-1)
@click.option(
    "-f",
    "--yaml",
    "stack_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Stack file; default stack.yaml, then stack.yml.",
)
@click.option("--shrinkwrap", is_flag=True, help="Only lay out build/<fn>.")
@click.option(
    "-b",
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="A build argument; repeat for more.",
)
@click.option("--no-cache", is_flag=True, help="Build without the layer cache.")
def build(
    names: tuple[str, ...],
    stack_file: Path | None,
    shrinkwrap: bool,
    build_args: tuple[str, ...],
    no_cache: bool,
) -> None:
    """Build the functions' images as faas-cli build does."""
    # Imported here: the docker SDK stays out of every other command.
    from localfaas.builder import run_build_command

    run_build_command(
        stack_file,
        names,
        shrinkwrap=shrinkwrap,
        build_args=build_args,
        no_cache=no_cache,
    )


# --- new --------------------------------------------------------------------


@cli.command()
@click.argument("name", required=False)
@click.option("--lang", help="Template to use (see --list).")
@click.option("--handler", help="Folder for the handler; default NAME.")
@click.option(
    "-p",
    "--prefix",
    envvar="OPENFAAS_PREFIX",
    default="",
    help="Image prefix, e.g. a registry user.",
)
@click.option(
    "-a",
    "--append",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Add the function to this stack file.",
)
@click.option("-g", "--gateway", help="Gateway URL written to a new stack file.")
@click.option("-q", "--quiet", is_flag=True, help="Skip the template's notes.")
@click.option("--list", "list_only", is_flag=True, help="List the templates.")
def new(
    name: str | None,
    lang: str | None,
    handler: str | None,
    prefix: str,
    append: Path | None,
    gateway: str | None,
    quiet: bool,
    list_only: bool,
) -> None:
    """Create a function folder and its stack entry, as faas-cli new does."""
    project = Path.cwd()
    if list_only:
        click.echo("Languages available as templates:")
        for template in list_templates(project):
            click.echo(f"- {template.name}")
        return

    # faas-cli's checks and messages, in its order.
    if not lang:
        raise click.UsageError(
            "you must supply a function language with the --lang flag"
        )
    if not name:
        raise click.UsageError("please provide a name for the function")

    welcome = new_function(
        name,
        lang,
        project,
        handler,
        gateway=gateway_url(gateway),
        prefix=prefix,
        append=append,
    )
    folder = handler or name
    click.echo(f"Folder: {folder} created.")
    click.echo(f"Function created in folder: {folder}")
    click.echo(
        f"Stack file updated: {append}" if append else "Stack file written: stack.yaml"
    )
    if welcome and not quiet:
        click.echo("\nNotes:")
        click.echo(welcome.rstrip("\n"))


# --- gateway and credentials ---------------------------------------------------


def gateway_url(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``given``, else ``OPENFAAS_URL``, else the default; as faas-cli has it.

    faas-cli lower-cases the URL, drops a trailing ``/`` and adds
    ``http://`` when no scheme is given (openfaas/faas-cli priority.go).
    """
    env = os.environ if environ is None else environ
    url = (given or env.get("OPENFAAS_URL") or DEFAULT_GATEWAY).strip().lower()
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url


@dataclass(frozen=True)
class Login:
    """How to authenticate to ``/system/``: a user and password, or a token."""

    auth: tuple[str, str] | None = None
    token: str | None = None


def find_login(
    url: str,
    *,
    user: str | None,
    password: str | None,
    token: str | None,
    project: Path,
    environ: Mapping[str, str],
) -> Login:
    """The first of: the flags, ``up``'s credential files, faas-cli's config."""
    if password:
        return Login(auth=(user or "admin", password))
    if token:
        return Login(token=token)

    # The project's files only ever go to a gateway on this machine: a
    # remote URL must not receive the local admin password.
    folder = _credentials_folder(project, environ)
    if _is_local(url) and _has_credentials(folder):
        credentials = AdminCredentials.load(folder)
        return Login(auth=(credentials.user, credentials.password))

    return _faas_cli_login(url, project, environ)


def _credentials_folder(project: Path, environ: Mapping[str, str]) -> Path:
    mounted = environ.get("secret_mount_path")
    return Path(mounted) if mounted else project / _STATE_DIR / "credentials"


def _has_credentials(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (USER_FILE, PASSWORD_FILE))


def _is_local(url: str) -> bool:
    return is_loopback(urlsplit(url).hostname or "")


def _faas_cli_login(url: str, project: Path, environ: Mapping[str, str]) -> Login:
    """The ``auths`` entry faas-cli login saved for ``url``, if any."""
    path = _faas_cli_config(project, environ)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Login()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"cannot read faas-cli's config {str(path)!r}: {exc}",
            hint='fix it, or log in again with "faas-cli login"',
        ) from exc

    entries = document.get("auths") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and gateway_url(str(entry.get("gateway"))) == url:
            return _entry_login(entry, path)
    return Login()


def _faas_cli_config(project: Path, environ: Mapping[str, str]) -> Path:
    """faas-cli's config file: ``$OPENFAAS_CONFIG``, CI's, or the user's."""
    if environ.get("OPENFAAS_CONFIG"):
        return Path(environ["OPENFAAS_CONFIG"]) / "config.yml"
    if environ.get("CI"):
        return project / ".openfaas" / "config.yml"
    return Path.home() / ".openfaas" / "config.yml"


def _entry_login(entry: dict[str, Any], path: Path) -> Login:
    token = str(entry.get("token") or "")
    if entry.get("auth") != "basic":
        return Login(token=token or None)

    try:
        user, colon, password = base64.b64decode(token).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        colon = ""
    if not colon:
        raise ConfigurationError(
            f"faas-cli's config {str(path)!r} has a basic-auth entry for"
            f" {entry.get('gateway')} whose token is not base64 of user:password",
            hint='log in again with "faas-cli login"',
        )
    return Login(auth=(user, password))


def _with_options(command: F, options: Sequence[Callable[[Any], Any]]) -> F:
    """Apply ``options`` so that help lists them in the order given."""
    wrapped: Any = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return cast(F, wrapped)


def _tls_verify(no_verify: bool) -> bool | str:
    """Skip checks, or trust the local CA of ``up --tls`` when there is one."""
    if no_verify:
        return False
    ca = default_tls_dir() / "ca.pem"
    return str(ca) if ca.is_file() else True


def _client_options(*, admin: bool) -> Callable[[F], F]:
    """Add the gateway options; pass the command a ready ``Gateway``."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(**params: Any) -> Any:
            url = gateway_url(params.pop("gateway_url"))
            verify = _tls_verify(params.pop("tls_no_verify"))
            login = Login()
            if admin:
                login = find_login(
                    url,
                    user=params.pop("user"),
                    password=params.pop("password"),
                    token=params.pop("token"),
                    project=Path.cwd(),
                    environ=os.environ,
                )
            client = Gateway(url, login.auth, verify, token=login.token)
            return command(gateway=client, **params)

        options = [
            click.option(
                "-g",
                "--gateway",
                "gateway_url",
                help="Gateway URL; default $OPENFAAS_URL or http://127.0.0.1:8080.",
            ),
            click.option(
                "--tls-no-verify",
                is_flag=True,
                help="Do not check the TLS certificate.",
            ),
        ]
        if admin:
            options += [
                click.option("--user", envvar="OPENFAAS_USERNAME", help="Admin user."),
                click.option(
                    "--password", envvar="OPENFAAS_PASSWORD", help="Admin password."
                ),
                click.option(
                    "-k", "--token", help="Bearer token instead of a password."
                ),
            ]
        return _with_options(cast(F, run), options)

    return decorate


# --- invoke ------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("-n", "--namespace", default=DEFAULT_NAMESPACE, show_default=True)
@click.option("--content-type", default="text/plain", show_default=True)
@click.option("--query", "queries", multiple=True, metavar="KEY=VALUE")
@click.option("-H", "--header", "headers", multiple=True, metavar='"KEY: VALUE"')
@click.option(
    "-m",
    "--method",
    type=click.Choice(_METHODS, case_sensitive=False),
    default="POST",
    show_default=True,
)
@click.option("-a", "--async", "asynchronous", is_flag=True, help="Queue the call.")
@click.option("--callback-url", help="Where the async result is POSTed.")
@click.option(
    "--sign",
    "scheme",
    type=click.Choice(_SIGN_SCHEMES, case_sensitive=False),
    help="Sign the body as this webhook sender does.",
)
@click.option("--key", help="The signing key.")
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File whose first line is the signing key.",
)
@click.option(
    "--sign-header",
    help="Header for --sign hmac (default Hmac); prefix for standard-webhooks.",
)
@_client_options(admin=False)
def invoke(
    gateway: Gateway,
    name: str,
    namespace: str,
    content_type: str,
    queries: tuple[str, ...],
    headers: tuple[str, ...],
    method: str,
    asynchronous: bool,
    callback_url: str | None,
    scheme: str | None,
    key: str | None,
    key_file: Path | None,
    sign_header: str | None,
) -> None:
    """Call a function with stdin as the body; print its answer."""
    if callback_url and not asynchronous:
        raise click.UsageError("--callback-url needs --async")
    key = _signing_key(scheme, key, key_file, sign_header)
    extra = [_header_pair(text) for text in headers]
    query = [_query_pair(text) for text in queries]
    # Every flag is checked before stdin is read: on a terminal, reading
    # waits for the user.
    body = _read_stdin()

    if scheme is not None and key is not None:
        extra += _signature(scheme.lower(), key, body, sign_header).items()
    if callback_url:
        extra.append(("X-Callback-Url", callback_url))

    answer = gateway.invoke(
        name,
        body,
        namespace=namespace,
        method=method.upper(),
        content_type=content_type,
        query=query,
        headers=extra,
        asynchronous=asynchronous,
    )
    if not 200 <= answer.status < 300:
        raise RequestFailed(answer.status, answer.body)

    if asynchronous and answer.status == 202:
        click.echo("Function submitted asynchronously.")
        call_id = answer.header("X-Call-Id")
        if call_id:
            click.echo(f"Call ID: {call_id}", err=True)
        return
    click.echo(answer.body, nl=False)


def _signing_key(
    scheme: str | None,
    key: str | None,
    key_file: Path | None,
    header: str | None,
) -> str | None:
    """The key to sign with, or None when nothing is to be signed."""
    if key is not None and key_file is not None:
        raise click.UsageError("give --key or --key-file, not both")
    if scheme is None and key is None and key_file is None:
        if header is not None:
            raise click.UsageError("--sign-header needs --sign")
        return None
    if scheme is None or (key is None and key_file is None):
        raise click.UsageError(
            "signing requires both --sign <scheme> and --key <key> (or --key-file)"
        )

    if key_file is None:
        return key
    # The runtime accepts every line of a secret file as a key, so keys
    # can rotate; a sender signs with one, the first.
    try:
        lines = key_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot read {str(key_file)!r} as text: {exc}"
        raise click.BadParameter(problem, param_hint="--key-file") from exc

    first = next((line.strip() for line in lines if line.strip()), "")
    if not first:
        problem = f"{str(key_file)!r} holds no key"
        raise click.BadParameter(problem, param_hint="--key-file")
    return first


def _signature(
    scheme: str, key: str, body: bytes, header: str | None
) -> dict[str, str]:
    """The headers ``scheme``'s sender attaches to ``body``."""
    if header is not None and scheme not in ("hmac", "standard-webhooks"):
        raise click.UsageError(
            f"--sign {scheme} uses fixed header names; drop --sign-header {header}"
        )
    if header is not None and scheme == "hmac":
        # Go canonicalises header names: faas-cli's --sign hmac sends Hmac.
        header = "-".join(part.capitalize() for part in header.split("-"))

    signer = scheme
    if scheme == "svix":
        # The runtime's svix scheme: Standard Webhooks with svix-* headers.
        signer, header = "standard-webhooks", "svix"
    try:
        return sign(signer, key, body, header=header)
    except ValueError as exc:
        # The signer's messages name the problem, never the key.
        raise ConfigurationError(
            f"cannot sign for --sign {scheme}: {exc}",
            hint="check the key's format for that sender",
        ) from exc


def _header_pair(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise click.BadParameter(f'{text!r} is not "Key: Value"', param_hint="--header")
    return name.strip(), value.strip()


def _query_pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="--query")
    return name, value


def _read_stdin() -> bytes:
    """The raw bytes of stdin, with faas-cli's prompt on a terminal."""
    if sys.stdin.isatty():
        click.echo(_STDIN_PROMPT, err=True)
    return sys.stdin.buffer.read()


# --- list --------------------------------------------------------------------


@cli.command("list")
@click.option("-n", "--namespace", help="Namespace to list.")
@click.option("-v", "--verbose", is_flag=True, help="Show images too.")
@_client_options(admin=True)
def list_functions(gateway: Gateway, namespace: str | None, verbose: bool) -> None:
    """List the deployed functions, as faas-cli list does."""
    functions = gateway.functions(namespace)

    # faas-cli's columns: %-30s, [%-40s,] %-15s, %-5s, tab-separated.
    if verbose:
        click.echo(
            f"{'Function':<30}\t{'Image':<40}\t{'Invocations':<15}\t{'Replicas':<5}"
        )
    else:
        click.echo(f"{'Function':<30}\t{'Invocations':<15}\t{'Replicas':<5}")

    for status in functions:
        name = str(status.get("name", ""))
        count = int(status.get("invocationCount") or 0)
        replicas = int(status.get("replicas") or 0)
        if verbose:
            image = str(status.get("image", ""))
            image = image[:38] + ".." if len(image) > 40 else image
            click.echo(f"{name:<30}\t{image:<40}\t{count:<15}\t{replicas:<5}")
        else:
            click.echo(f"{name:<30}\t{count:<15}\t{replicas:<5}")


# --- logs ---------------------------------------------------------------------


class _Since(click.ParamType[datetime, Any]):
    """A duration ago (``5m``, ``1h30m``) or an RFC 3339 time."""

    name = "since"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            return datetime.now(UTC) - timedelta(seconds=duration(text))
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is neither a duration (5m, 1h30m) nor an RFC 3339"
                " time (2024-05-01T12:00:00Z)"
            )


@cli.command()
@click.argument("name")
@click.option("-n", "--namespace", help="The function's namespace.")
@click.option("--since", type=_Since(), help="Only lines newer than this.")
@click.option(
    "--tail", type=int, default=-1, show_default=True, help="Last N lines; -1 for all."
)
@click.option("--follow/--no-follow", default=False, show_default=True)
@_client_options(admin=True)
def logs(
    gateway: Gateway,
    name: str,
    namespace: str | None,
    since: datetime | None,
    tail: int,
    follow: bool,
) -> None:
    """Print a function's log lines: timestamp name (instance) text."""
    stream = gateway.logs(
        name, namespace=namespace, since=since, tail=tail, follow=follow
    )
    for message in stream:
        click.echo(_log_line(message))


def _log_line(message: Mapping[str, Any]) -> str:
    """faas-cli's plain format, with name and instance shown."""
    parts = [
        str(message.get("timestamp", "")),
        str(message.get("name", "")),
        f"({message.get('instance', '')})",
        str(message.get("text", "")),
    ]
    return " ".join(parts).rstrip("\n")


# --- secret ---------------------------------------------------------------------


@cli.group()
def secret() -> None:
    """Create, update, list and remove secrets, as faas-cli secret does."""


def _secret_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if _SECRET_NAME.fullmatch(value):
        return value
    raise click.BadParameter(
        f"invalid secret name: {value!r}; a secret name is lower-case letters,"
        " digits, '-' and '.', starting and ending with a letter or digit"
    )


def _secret_source(command: F) -> F:
    """``--from-literal``, ``--from-file``, ``--trim`` and ``-n``."""
    options = [
        click.option("--from-literal", help="The secret's value."),
        click.option(
            "--from-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="A file holding the value; sent as bytes too.",
        ),
        click.option(
            "--trim/--no-trim",
            default=True,
            show_default=True,
            help="Strip whitespace around the value.",
        ),
        click.option("-n", "--namespace", help="The secret's namespace."),
    ]
    return _with_options(command, options)


@dataclass(frozen=True)
class _SecretValue:
    value: str
    raw: bytes | None


def _read_secret(literal: str | None, file: Path | None, trim: bool) -> _SecretValue:
    """The value from one source, as faas-cli reads it."""
    if literal is not None and file is not None:
        raise click.UsageError(
            "please provide secret using only one option from --from-literal,"
            " --from-file and STDIN"
        )

    raw = None
    if literal is not None:
        value = literal
    elif file is not None:
        # faas-cli sends the file's bytes twice: as text and, untrimmed,
        # base64 in rawValue, which the gateway stores when present.
        raw = file.read_bytes()
        value = raw.decode("utf-8", errors="replace")
    else:
        value = _read_stdin().decode("utf-8", errors="replace")

    value = value.strip() if trim else value
    if not value:
        raise click.UsageError(
            "must provide a non empty secret via --from-literal, --from-file or STDIN"
        )
    return _SecretValue(value, raw)


def _status_line(verb: str, status: int) -> str:
    """``Created: 202 Accepted``: Go prints the status with its phrase."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"{verb}: {status} {phrase}".rstrip()


@secret.command("create")
@click.argument("name", callback=_secret_name)
@click.option("--replace", is_flag=True, help="Update the secret if it exists.")
@_secret_source
@_client_options(admin=True)
def secret_create(
    gateway: Gateway,
    name: str,
    replace: bool,
    from_literal: str | None,
    from_file: Path | None,
    trim: bool,
    namespace: str | None,
) -> None:
    """Create a secret from --from-literal, --from-file or stdin."""
    source = _read_secret(from_literal, from_file, trim)
    click.echo(f"Creating secret: {_qualified(name, namespace)}")
    try:
        answer = gateway.create_secret(
            name, source.value, raw=source.raw, namespace=namespace
        )
    except RequestFailed as exc:
        if exc.status != 409:
            raise
        if not replace:
            raise RequestFailed(
                409,
                exc.body,
                f'secret with the name "{name}" already exists',
                hint=f"pass --replace, or run: localfaas secret update {name}",
            ) from exc

        click.echo(f"Secret {name} already exists, updating...")
        answer = gateway.update_secret(
            name, source.value, raw=source.raw, namespace=namespace
        )
        click.echo(_status_line("Updated", answer.status))
        return
    click.echo(_status_line("Created", answer.status))


@secret.command("update")
@click.argument("name", callback=_secret_name)
@_secret_source
@_client_options(admin=True)
def secret_update(
    gateway: Gateway,
    name: str,
    from_literal: str | None,
    from_file: Path | None,
    trim: bool,
    namespace: str | None,
) -> None:
    """Replace an existing secret's value."""
    source = _read_secret(from_literal, from_file, trim)
    click.echo(f"Updating secret: {_qualified(name, namespace)}")
    with _unknown_secret(name):
        answer = gateway.update_secret(
            name, source.value, raw=source.raw, namespace=namespace
        )
    click.echo(_status_line("Updated", answer.status))


@secret.command("list")
@click.option("-n", "--namespace", help="Namespace to list.")
@_client_options(admin=True)
def secret_list(gateway: Gateway, namespace: str | None) -> None:
    """List secret names; values are never returned."""
    names = [str(item.get("name", "")) for item in gateway.secrets(namespace)]
    if not names:
        click.echo("No secrets found.")
        return
    click.echo("NAME")
    for name in names:
        click.echo(name)


@secret.command("remove")
@click.argument("name", callback=_secret_name)
@click.option("-n", "--namespace", help="The secret's namespace.")
@_client_options(admin=True)
def secret_remove(gateway: Gateway, name: str, namespace: str | None) -> None:
    """Remove a secret."""
    with _unknown_secret(name):
        gateway.remove_secret(name, namespace)
    click.echo("Removed.. OK.")


def _qualified(name: str, namespace: str | None) -> str:
    return f"{name}.{namespace}" if namespace else name


@contextlib.contextmanager
def _unknown_secret(name: str) -> Iterator[None]:
    """Turn a 404 into faas-cli's ``unable to find secret: NAME``."""
    try:
        yield
    except RequestFailed as exc:
        if exc.status != 404:
            raise
        raise RequestFailed(
            404,
            exc.body,
            f"unable to find secret: {name}",
            hint="list them with: localfaas secret list",
        ) from exc


# --- auth-plugin ----------------------------------------------------------------


@cli.group("auth-plugin")
def auth_plugin() -> None:
    """Serve a reference auth plugin for ``up --auth-proxy-url``."""


def _plugin_options(command: F) -> F:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option(
            "--port",
            envvar="port",
            type=click.IntRange(1, 65535),
            default=8081,
            show_default=True,
            help="8081 leaves 8080 to the gateway.",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="Allow listening on an address other than loopback.",
        ),
    ]
    return _with_options(command, options)


def _check_plugin_host(host: str, insecure: bool) -> None:
    """The plugin sees credentials in plain HTTP: loopback unless told."""
    if is_loopback(host) or insecure:
        return
    raise Refused(
        f"refusing to serve the auth plugin in plain HTTP on {host}: the"
        " gateway's admin credentials would cross the network",
        "run it on 127.0.0.1 beside the gateway, or add --insecure",
    )


def _serve_plugin(plugin: Any, host: str, port: int) -> None:
    """Say how to use the plugin, then serve it until Ctrl-C."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/validate"
    click.echo(f"Auth plugin at {url}")
    click.echo(f"Use it with: localfaas up --auth-proxy-url {url}")

    try:
        _until_interrupted(lambda: plugin.serve(host, port))
    except OSError as exc:
        # waitress binds inside serve(): a busy port surfaces here.
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            hint="choose another --port, or stop what is using it",
        ) from exc


@auth_plugin.command("basic")
@click.option(
    "--secret-mount-path",
    envvar="secret_mount_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the credential files; default ./.localfaas/credentials.",
)
@click.option("--user-filename", envvar="user_filename", default=USER_FILE)
@click.option("--pass-filename", envvar="pass_filename", default=PASSWORD_FILE)
@_plugin_options
def auth_plugin_basic(
    secret_mount_path: Path | None,
    user_filename: str,
    pass_filename: str,
    host: str,
    port: int,
    insecure: bool,
) -> None:
    """OpenFaaS's basic-auth plugin: Basic checked against two files."""
    _check_plugin_host(host, insecure)
    from localfaas import plugins  # the JWT machinery only when serving

    folder = secret_mount_path or Path.cwd() / _STATE_DIR / "credentials"
    settings = plugins.BasicPluginSettings(
        port=port,
        secret_mount_path=folder,
        user_filename=user_filename,
        pass_filename=pass_filename,
    )
    _serve_plugin(plugins.BasicAuthPlugin(settings), host, port)


@auth_plugin.command("oidc")
@click.option("--issuer", envvar="issuer", required=True, help="The tokens' iss.")
@click.option(
    "--audience",
    envvar="audience",
    required=True,
    help="The tokens' aud; several comma-separated.",
)
@click.option("--jwks-url", envvar="jwks_url", default="", help="Issuer's JWKS URL.")
@click.option(
    "--jwks-file",
    envvar="jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JWKS file.",
)
@click.option(
    "--pem-file",
    envvar="pem_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM public keys or certificates.",
)
@_plugin_options
def auth_plugin_oidc(
    issuer: str,
    audience: str,
    jwks_url: str,
    jwks_file: Path | None,
    pem_file: Path | None,
    host: str,
    port: int,
    insecure: bool,
) -> None:
    """A bearer-JWT plugin: tokens from an OIDC issuer pass /system/."""
    _check_plugin_host(host, insecure)
    from localfaas import plugins  # the JWT machinery only when serving

    settings = plugins.OIDCPluginSettings(
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        pem_file=pem_file,
        port=port,
    )
    _serve_plugin(plugins.OIDCPlugin(settings), host, port)


if __name__ == "__main__":
    main()
