"""``localfaas build``: lay out ``build/<fn>`` as faas-cli does, then build it.

:func:`shrinkwrap` follows faas-cli 0.18 (openfaas/go-sdk builder
``CreateBuildContext``; tooling.md §3.2): recreate ``build/<fn>/`` and its
handler folder (0700, or 0777 before the umask when ``CI`` is ``true`` or
``1``), copy the whole template, overlay every top-level entry of the
handler folder except ``build`` and ``template`` (links followed, modes
kept, dotfiles included), then the ``configuration.copy`` paths. A sample
file deleted from the handler (``handler_test.py``) therefore still
reaches the image, exactly as with faas-cli.

:func:`build` sends that folder to the Docker engine with the SDK's
classic builder and streams its log line by line. Build arguments follow
faas-cli's precedence: proxy variables < the stack's ``build_args`` <
``--build-arg``, and ``ADDITIONAL_PACKAGE`` is always passed, even empty.

Every failure is one :class:`~localfaas.errors.LocalfaasError` with a
hint, raised before anything runs when the input is wrong:

- :class:`EngineUnavailable`: no engine at ``DOCKER_HOST`` (or the default
  socket), or this user may not use it;
- :class:`BuildFailed`: the engine refused the Dockerfile or a step
  failed; ``.step`` and ``.output`` say which and what it printed;
- ``ConfigurationError``: a missing template or handler folder, an image
  name that is no image reference, an unknown build option.

BuildKit-only features (``build_secrets``, ``mount_ssh``) are refused: the
SDK speaks only the classic builder.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from localfaas.errors import ConfigurationError, DeployFailed, LocalfaasError
from localfaas.stack import (
    FunctionSpec,
    Stack,
    StackError,
    find_stack_file,
    load_stack,
    select,
)
from localfaas.templates import (
    Template,
    TemplateError,
    find_template,
    uses_template,
)

__all__ = [
    "ADDITIONAL_PACKAGE",
    "BuildFailed",
    "EngineUnavailable",
    "Progress",
    "build",
    "build_arguments",
    "build_stack",
    "connect",
    "image_problem",
    "network_mode",
    "parse_build_args",
    "run_build_command",
    "shrinkwrap",
]

Progress = Callable[[str], None]

# The build argument that build_options feed (faas-cli builder).
ADDITIONAL_PACKAGE = "ADDITIONAL_PACKAGE"

BUILD_FOLDER = "build"

# faas-cli never copies these entries of a handler folder into the context.
_SKIPPED = frozenset({"build", "template"})

# faas-cli forwards these from its own environment, lower-case only.
_PROXY_ARGS = ("http_proxy", "https_proxy")

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_NO_ENGINE = (
    "no Docker engine at {url}: start one (scripts/docker-engine as root)"
    " or use localfaas up without --docker"
)

# How much of a failed step's output the error repeats.
_KEPT_LINES = 10

# The classic builder announces each instruction as "Step N/M : ...".
_STEP = re.compile(r"Step \d+/\d+ : ")
# Its own bookkeeping lines, which are not the step's output.
_BOOKKEEPING = re.compile(
    r" ---> |Removing intermediate container |Successfully (built|tagged) "
)

# The distribution reference grammar (distribution/reference's regexp.go),
# restated: lower-case path components, an optional registry host[:port].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_MAX_NAME = 255


class EngineUnavailable(LocalfaasError):
    """No Docker engine answers at ``.url``, or this user may not use it."""

    def __init__(self, url: str, message: str, *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class BuildFailed(DeployFailed):
    """The engine refused a build, or one of its steps failed.

    ``step`` is the failing ``Step N/M : ...`` line (None when the engine
    refused the Dockerfile before the first step) and ``output`` the last
    lines that step printed.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str,
        step: str | None = None,
        output: Sequence[str] = (),
    ) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.output = list(output)


def run_build_command(
    stack_file: Path | None,
    names: Sequence[str] = (),
    *,
    shrinkwrap: bool = False,
    build_args: Sequence[str] = (),
    no_cache: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """``localfaas build [-f FILE] [NAME...] [--shrinkwrap] [--build-arg K=V]``.

    Loads the stack file (``stack.yaml``, else ``stack.yml``, in the
    working directory when *stack_file* is None) and builds the functions
    named, all when none are. Returns the ids of the images built.
    """
    try:
        stack = load_stack(stack_file or find_stack_file(Path.cwd()))
    except StackError as error:
        raise ConfigurationError(str(error)) from error

    return build_stack(
        stack,
        names,
        shrinkwrap_only=shrinkwrap,
        build_args=parse_build_args(build_args),
        progress=progress or _say,
        no_cache=no_cache,
    )


def build_stack(
    stack: Stack,
    names: Sequence[str],
    *,
    shrinkwrap_only: bool,
    build_args: Mapping[str, str],
    progress: Progress,
    no_cache: bool = False,
    client: Any = None,
) -> list[str]:
    """Lay out and build each function named (all when none), in file order.

    Every function is checked before the first build starts, so a bad
    handler or image name fails fast. *client* defaults to :func:`connect`
    (closed afterwards); with *shrinkwrap_only* no engine is needed.
    Returns the image ids built, in order; stops at the first failure.
    """
    plans = _plans(stack, names, build_args, shrinkwrap_only, progress)
    if shrinkwrap_only or not plans:
        return _run(plans, None, progress, no_cache)

    engine = client or connect()
    try:
        return _run(plans, engine, progress, no_cache)
    finally:
        if client is None:
            engine.close()


def shrinkwrap(stack: Stack, spec: FunctionSpec, project_dir: Path) -> Path:
    """Lay out ``<project_dir>/build/<fn>/`` exactly as faas-cli does.

    Returns that folder, the build context.
    """
    handler = _handler_folder(spec, stack)
    template = _template(spec, project_dir)
    context = project_dir / BUILD_FOLDER / spec.name
    target = context / template.handler_folder if template else context

    _clear(context)
    for folder in (context.parent, context, target):
        folder.mkdir(mode=_folder_mode(), exist_ok=True)
    if template is not None:
        _copy(template.path, context)
    for entry in sorted(handler.iterdir()):
        if entry.name not in _SKIPPED:
            _copy(entry, target / entry.name)
    for extra in stack.copy:
        source = _in_project(extra, project_dir)
        _copy(source, target / source.relative_to(project_dir))

    if template is not None:
        _add_package_marker(context, target)
    return context


def build(
    spec: FunctionSpec,
    context: Path,
    *,
    client: Any,
    build_args: Mapping[str, str],
    progress: Progress,
    no_cache: bool = False,
    template: Template | None = None,
) -> str:
    """Build *context* as ``spec.image``; return the image id.

    *build_args* are the ``--build-arg`` values, merged over the stack's as
    :func:`build_arguments` does; *template* supplies the build options
    (None for ``lang: dockerfile``). Each line of the engine's log goes to
    *progress* as it arrives.
    """
    _check_image(spec)
    arguments = build_arguments(spec, template, build_args)

    log = _BuildLog(progress)
    try:
        stream = client.api.build(
            path=str(context),
            tag=spec.image,
            buildargs=arguments,
            decode=True,
            rm=True,
            # Also remove the step's container when the step fails.
            forcerm=True,
            nocache=no_cache,
            pull=False,
            network_mode=network_mode(client),
        )
        _follow(stream, log)
    except docker.errors.APIError as error:
        raise _refused(spec, context, error) from error
    except (docker.errors.DockerException, OSError) as error:
        raise _unreachable(_engine_url(client), error) from error

    if log.error is not None:
        raise _failed(spec, log)
    return log.image_id or str(client.api.inspect_image(spec.image)["Id"])


def build_arguments(
    spec: FunctionSpec,
    template: Template | None,
    cli_args: Mapping[str, str],
) -> dict[str, str]:
    """The build arguments faas-cli would pass for *spec*.

    Proxy variables < the stack's ``build_args`` < *cli_args*. The
    packages of the selected build options join those of
    ``ADDITIONAL_PACKAGE``, de-duplicated, sorted and space-joined; the
    argument is always present, even empty.
    """
    proxies = [name for name in _PROXY_ARGS if os.environ.get(name)]
    arguments = {name: os.environ[name] for name in proxies}
    arguments.update(spec.build_args)
    arguments.update(cli_args)

    packages = _option_packages(spec, template)
    packages += arguments.get(ADDITIONAL_PACKAGE, "").split()
    arguments[ADDITIONAL_PACKAGE] = " ".join(sorted(set(packages)))
    return arguments


def parse_build_args(pairs: Iterable[str]) -> dict[str, str]:
    """``--build-arg K=V`` values as a map; later ones win.

    As with faas-cli, an empty key or value is refused and a repeated
    ``ADDITIONAL_PACKAGE`` adds its packages to the earlier ones.
    """
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not key or not value:
            raise ConfigurationError(
                f"--build-arg {pair!r} is not KEY=VALUE",
                hint="give both a name and a value, e.g. --build-arg TEST_ENABLED=true",
            )

        if key == ADDITIONAL_PACKAGE and key in parsed:
            value = f"{parsed[key]} {value}"
        parsed[key] = value
    return parsed


def connect() -> Any:
    """A client of the engine at ``DOCKER_HOST`` (else the default socket).

    Raises :class:`EngineUnavailable` when it does not answer a ping.
    """
    url = os.environ.get("DOCKER_HOST") or _DEFAULT_HOST
    client = None
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, OSError) as error:
        if client is not None:
            client.close()
        raise _unreachable(url, error) from error
    return client


def network_mode(client: Any) -> str | None:
    """``host`` when the engine has no ``bridge`` network, else the default.

    An engine started with ``--bridge=none`` (scripts/docker-engine, where
    there is no iptables) gives a RUN step on the default network no
    network at all, so pip could not reach PyPI.
    """
    # The name filter matches substrings, so compare whole names.
    networks = client.networks.list(names=["bridge"])
    if any(network.name == "bridge" for network in networks):
        return None
    return "host"


def image_problem(image: str) -> str | None:
    """Say why *image* cannot tag a build, or None when it can."""
    if not image:
        return "it is empty"
    if "@" in image:
        return "a digest (@sha256:...) names a pulled image, not a build"

    name, tag = _split_tag(image)
    if tag is not None and not _TAG.fullmatch(tag):
        return f"the tag {tag!r} may hold letters, digits, '_', '.' and '-'"
    if len(name) > _MAX_NAME:
        return f"the name is longer than {_MAX_NAME} characters"
    if _NAME.fullmatch(name):
        return None
    if _NAME.fullmatch(name.lower()):
        return "repository names must be lower-case"
    return "it does not match [HOST[:PORT]/]NAME[:TAG]"


# --- planning --------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """One function to lay out and build, checked beforehand."""

    stack: Stack
    spec: FunctionSpec
    template: Template | None
    build_args: Mapping[str, str]


def _plans(
    stack: Stack,
    names: Sequence[str],
    build_args: Mapping[str, str],
    shrinkwrap_only: bool,
    progress: Progress,
) -> list[_Plan]:
    """Check every selected function; announce the skipped ones."""
    try:
        chosen = select(stack, names)
    except StackError as error:
        raise ConfigurationError(str(error)) from error

    project = stack.path.parent
    plans = []
    for spec in chosen.functions.values():
        if spec.skip_build:
            # faas-cli prints a blank name here (a known bug); we name it.
            progress(f"Skipping build of: {spec.name}.")
            continue

        template = _template(spec, project)
        _handler_folder(spec, stack)
        if not shrinkwrap_only:
            _check_buildable(spec, template, build_args)
        plans.append(_Plan(stack, spec, template, build_args))
    return plans


def _check_buildable(
    spec: FunctionSpec, template: Template | None, build_args: Mapping[str, str]
) -> None:
    """What the engine would refuse later, refused now."""
    _check_image(spec)
    build_arguments(spec, template, build_args)
    if spec.build_secrets:
        raise ConfigurationError(
            f'function "{spec.name}": build_secrets need BuildKit, which'
            " localfaas's Docker SDK builder does not speak",
            hint="remove build_secrets, or build this function with"
            " faas-cli build and deploy its image",
        )


def _check_image(spec: FunctionSpec) -> None:
    problem = image_problem(spec.image)
    if problem is None:
        return
    raise ConfigurationError(
        f'function "{spec.name}": image {spec.image!r} is not a valid image'
        f" reference: {problem}",
        hint="set image: in the stack file to NAME:TAG in lower case, e.g."
        f" {spec.name}:latest or ghcr.io/OWNER/{spec.name}:0.1",
    )


def _template(spec: FunctionSpec, project_dir: Path) -> Template | None:
    """The function's template; None for ``lang: dockerfile``."""
    if not spec.lang:
        raise ConfigurationError(
            f'function "{spec.name}" has no lang',
            hint="set lang: to a template name, e.g. python3-http-auth",
        )
    if not uses_template(spec.lang):
        return None

    try:
        return find_template(spec.lang, project_dir)
    except TemplateError as error:
        raise ConfigurationError(
            f'function "{spec.name}": {error}',
            hint=f"fix lang: in the stack file, or pull the template into"
            f" {project_dir / 'template'}",
        ) from error


def _handler_folder(spec: FunctionSpec, stack: Stack) -> Path:
    """The handler folder, which must exist (faas-cli checks it first)."""
    if spec.handler is None:
        raise ConfigurationError(
            f'function "{spec.name}" has no handler in {stack.path}',
            hint=f"set handler: to the function's folder, e.g. ./{spec.name}",
        )
    if not spec.handler.is_dir():
        raise ConfigurationError(
            f'function "{spec.name}": the handler folder {spec.handler} does'
            " not exist or is not a folder",
            hint=f"fix handler: in {stack.path}, or create the function with"
            f" localfaas new {spec.name} --lang {spec.lang or 'LANG'}",
        )
    return spec.handler


def _option_packages(
    spec: FunctionSpec,
    template: Template | None,
) -> list[str]:
    """The packages of the build options *spec* selects."""
    offered = template.build_options if template else {}
    packages: list[str] = []
    for option in spec.build_options:
        if option not in offered:
            raise ConfigurationError(
                f"You're using a build option unavailable for {spec.lang}:"
                f' {option!r} (function "{spec.name}"); offered:'
                f" {', '.join(sorted(offered)) or 'none'}",
                hint=f"check {_template_file(spec, template)} for the"
                " supported build options",
            )
        packages += offered[option]
    return packages


def _template_file(spec: FunctionSpec, template: Template | None) -> str:
    if template is None:
        return f"./template/{spec.lang}/template.yml"
    return str(template.path / "template.yml")


# --- running ---------------------------------------------------------------


def _run(
    plans: list[_Plan], client: Any, progress: Progress, no_cache: bool
) -> list[str]:
    """Lay out (and build, with a client) each plan, timed like faas-cli."""
    started = time.monotonic()
    images = []
    for plan in plans:
        began = time.monotonic()
        # faas-cli numbers its parallel workers; localfaas builds with one.
        progress(f"[0] > Building {plan.spec.name}.")
        image = _one(plan, client, progress, no_cache)
        if image is not None:
            images.append(image)
        spent = time.monotonic() - began
        progress(f"[0] < Building {plan.spec.name} done in {spent:.2f}s.")

    progress(f"Total build time: {time.monotonic() - started:.2f}s")
    return images


def _one(
    plan: _Plan,
    client: Any,
    progress: Progress,
    no_cache: bool,
) -> str | None:
    """Shrinkwrap one function and, given an engine, build it."""
    spec = plan.spec
    context = shrinkwrap(plan.stack, spec, plan.stack.path.parent)
    if client is None:
        progress(f"{spec.name} shrink-wrapped to {BUILD_FOLDER}/{spec.name}")
        return None

    progress(f"Building: {spec.image} with {spec.lang} template. Please wait..")
    image = build(
        spec,
        context,
        client=client,
        build_args=plan.build_args,
        progress=progress,
        no_cache=no_cache,
        template=plan.template,
    )
    progress(f"Image: {spec.image} built.")
    return image


def _follow(stream: Iterator[dict[str, Any]], log: _BuildLog) -> None:
    """Feed the engine's messages to *log*; always close the stream."""
    try:
        for message in stream:
            log.feed(message)
    finally:
        # Closing drops the HTTP response: an interrupted client makes the
        # engine cancel the build, and forcerm removes its container.
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    log.flush()


class _BuildLog:
    """The engine's JSON messages, turned into lines and a verdict."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.partial = ""
        self.step: str | None = None
        self.tail: deque[str] = deque(maxlen=_KEPT_LINES)
        self.error: str | None = None
        self.image_id: str | None = None

    def feed(self, message: Mapping[str, Any]) -> None:
        """Take one message: log text, a status, the image id, or an error."""
        if "error" in message:
            self.flush()
            detail = message.get("errorDetail") or {}
            self.error = str(detail.get("message") or message["error"]).strip()
        elif "stream" in message:
            self._text(str(message["stream"]))
        elif "aux" in message and isinstance(message["aux"], Mapping):
            self.image_id = message["aux"].get("ID") or self.image_id
        elif "status" in message and "progressDetail" not in message:
            self._line(str(message["status"]))

    def flush(self) -> None:
        """Emit a last line that came without its newline."""
        if self.partial:
            self._line(self.partial)
            self.partial = ""

    def _text(self, text: str) -> None:
        # The engine splits lines across messages ("Step 1/2 : FROM x",
        # then "\n"), so only whole lines are passed on.
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        self.progress(line)
        if _STEP.match(line):
            self.step = line
            self.tail.clear()
        elif line.strip() and not _BOOKKEEPING.match(line):
            self.tail.append(line)


# --- failures --------------------------------------------------------------


def _failed(spec: FunctionSpec, log: _BuildLog) -> BuildFailed:
    """A failed step: which one, what it printed, what to do."""
    step = log.step or "the first step"
    output = "".join(f"\n  | {line}" for line in log.tail)
    return BuildFailed(
        f'building {spec.image} (function "{spec.name}") failed at {step}:'
        f" {log.error}{output}",
        hint=_step_hint(spec, log.step or ""),
        step=log.step,
        output=list(log.tail),
    )


def _step_hint(spec: FunctionSpec, step: str) -> str:
    """What usually fixes a failure of this kind of step."""
    command = _STEP.sub("", step)
    if "TEST_ENABLED" in command or "pytest" in command:
        return (
            f"the function's tests failed: fix them (pytest in {spec.handler}),"
            " or build without --build-arg TEST_ENABLED=true"
        )
    if "pip install" in command:
        return (
            "a Python requirement failed to install: check the names and"
            f" versions in {spec.handler}/requirements.txt against pip's"
            " output above"
        )
    if command.upper().startswith("FROM"):
        return (
            "the base image cannot be pulled: pass a local one with"
            " --build-arg PYTHON_IMAGE=IMAGE (scripts/base-image builds"
            " localfaas/python-base:bookworm)"
        )
    if command.upper().startswith(("COPY", "ADD")):
        return (
            f"a file the Dockerfile copies is missing from"
            f" {BUILD_FOLDER}/{spec.name}: check the template and the handler"
            " folder"
        )
    return "fix the failing step (its output is above) and build again"


def _refused(spec: FunctionSpec, context: Path, error: Any) -> BuildFailed:
    """The engine refused the build before running a step."""
    reason = str(getattr(error, "explanation", None) or error).strip()
    return BuildFailed(
        f"the Docker engine refused to build {spec.image} (function"
        f' "{spec.name}") from {context}: {reason}',
        hint=f"fix {context / 'Dockerfile'} (it comes from the template"
        f" {spec.lang} or the handler folder) and build again",
    )


def _unreachable(url: str, error: BaseException) -> EngineUnavailable:
    """The engine did not answer: no socket, refused, or not allowed."""
    cause = _os_error(error)
    if isinstance(cause, PermissionError):
        return EngineUnavailable(
            url,
            f"permission denied on the Docker engine's socket at {url}",
            hint="add your user to the docker group (sudo usermod -aG docker"
            " $USER, then log in again), or run as root",
        )

    if isinstance(cause, FileNotFoundError):
        reason = f"no socket at {url.removeprefix('unix://')}"
    elif isinstance(cause, ConnectionRefusedError):
        reason = "the connection was refused"
    else:
        reason = " ".join(str(error).split())
    return EngineUnavailable(
        url,
        _NO_ENGINE.format(url=url),
        hint=f"{reason}; set DOCKER_HOST if your engine listens elsewhere",
    )


def _os_error(error: BaseException) -> OSError | None:
    """The system error under the SDK's and urllib3's wrappers, if any."""
    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))

        if isinstance(current, OSError) and current.errno is not None:
            return current
        pending += [current.__cause__, current.__context__, *current.args]
        pending.append(getattr(current, "reason", None))
    return None


def _engine_url(client: Any) -> str:
    base = getattr(getattr(client, "api", None), "base_url", None)
    return os.environ.get("DOCKER_HOST") or str(base or _DEFAULT_HOST)


# --- copying ---------------------------------------------------------------


def _folder_mode() -> int:
    """0700, or 0777 on CI (faas-cli's isRunningInCI: CI=true or CI=1)."""
    return 0o777 if os.environ.get("CI") in ("true", "1") else 0o700


def _clear(context: Path) -> None:
    """Remove a previous ``build/<fn>``, even when it is a link or a file."""
    try:
        if context.is_symlink() or context.is_file():
            context.unlink()
        elif context.exists():
            shutil.rmtree(context)
    except OSError as error:
        raise _copy_error(context, error) from error


def _copy(
    source: Path,
    target: Path,
    chain: frozenset[Path] = frozenset(),
) -> None:
    """Copy *source* onto *target* as faas-cli's copyFiles does.

    Links are followed, file modes kept, folders merged into existing ones
    (which keep their own mode). *chain* holds the folders being copied,
    so a link back to one of them is an error rather than endless.
    """
    try:
        info = source.stat()
        if not stat.S_ISDIR(info.st_mode):
            _copy_file(source, target, info)
            return

        real = source.resolve()
        if real in chain:
            raise ConfigurationError(
                f"{source} links back to {real}, which is being copied",
                hint="remove the link, or point it outside that folder",
            )
        _make_folder(target, stat.S_IMODE(info.st_mode))
        for child in sorted(source.iterdir()):
            _copy(child, target / child.name, chain | {real})
    except (OSError, shutil.Error) as error:
        raise _copy_error(source, error) from error


def _copy_file(source: Path, target: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(
            f"{source} is not a regular file or folder (a pipe, socket or"
            " device), so it cannot go into a build context",
            hint="move it out of the handler folder",
        )

    _make_room(target)
    shutil.copyfile(source, target)
    os.chmod(target, stat.S_IMODE(info.st_mode))


def _make_folder(target: Path, mode: int) -> None:
    """Create *target* with *mode* (less the umask), unless it is a folder."""
    if target.is_dir() and not target.is_symlink():
        return
    _make_room(target)
    target.mkdir(mode=mode)


def _make_room(target: Path) -> None:
    """Remove what stands at *target*: a template file the handler replaces."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def _copy_error(path: Path, error: BaseException) -> LocalfaasError:
    if isinstance(error, LocalfaasError):
        return error
    reason = getattr(error, "strerror", None) or str(error)
    return ConfigurationError(
        f"cannot lay out the build context: {path}: {reason}",
        hint="check that the file exists and is readable, and that links"
        " point to existing files",
    )


def _in_project(path: str, project_dir: Path) -> Path:
    """A ``configuration.copy`` path: inside the project, and not all of it."""
    resolved = (project_dir / path).resolve()
    project = project_dir.resolve()
    if resolved == project or not resolved.is_relative_to(project):
        raise ConfigurationError(
            f"configuration.copy path {path!r} is outside the project folder"
            f" {project} or is all of it",
            hint="list only folders or files inside the project",
        )
    return project_dir / resolved.relative_to(project)


def _add_package_marker(context: Path, target: Path) -> None:
    """Make the handler folder a package, unless the Dockerfile does.

    ``from .handler import handle`` in handler tests needs the package
    marker; OpenFaaS's python3-http Dockerfile (and ours) creates it in
    the image, so the context gets one only when the Dockerfile does not.
    """
    dockerfile = context / "Dockerfile"
    if not any(target.glob("*.py")) or not dockerfile.is_file():
        return
    if "__init__.py" not in dockerfile.read_text("utf-8", "replace"):
        (target / "__init__.py").touch()


def _split_tag(image: str) -> tuple[str, str | None]:
    """``NAME[:TAG]``; a ``:`` before the last ``/`` is a registry port."""
    head, _, last = image.rpartition("/")
    if ":" not in last:
        return image, None
    last, _, tag = last.partition(":")
    return (f"{head}/{last}" if head else last), tag


def _say(line: str) -> None:
    """The build log, on standard output as faas-cli prints it."""
    print(line, file=sys.stdout, flush=True)
