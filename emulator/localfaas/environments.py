"""Virtual environments for functions: one per set of requirements.

A function image installs the template's ``requirements.txt`` and then the
function's own (tooling.md §2.4). The emulator runs functions as local
processes, so it gives each distinct pair of requirement files, on one
Python, its own virtual environment, cached under ``<root>/venvs/<key>``.
Functions with the same requirements share it, and a hot reload that leaves
``requirements.txt`` alone reuses it at no cost.

Plain environments, never ``--system-site-packages``: a function must fail
here as it would in its image when it imports something it did not list, and
the emulator's own packages (Flask, click, docker...) must not shadow the
versions a function asks for.

A build is atomic. The environment is made in ``venvs/.store/<key>-<token>``
and published by renaming a symlink onto ``venvs/<key>``: a venv is not
relocatable (pip writes absolute paths into the scripts it installs), so the
folder keeps the path it was built at and only the name that points to it
appears at once. A failed build removes its folder and raises ``BuildError``.
A lock file per key makes two functions (or two emulators) that need the
same environment build it once.

Speed: the venv is made without pip (``--without-pip`` takes milliseconds
where ``ensurepip`` takes seconds) and filled by the emulator's own pip with
``pip --python <venv python>`` when that pip can do it (22.3 or later);
otherwise the venv gets its own pip. pip's download cache is shared either
way.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BuildError", "Environment", "Environments", "Progress"]

log = logging.getLogger("localfaas.environments")

Progress = Callable[[str], None]

_KEY_CHARS = 16
_TAIL_LINES = 15

# pip learned --python in 22.3: it then installs into another interpreter's
# environment without being installed there.
_PIP_WITH_PYTHON_OPTION = (22, 3)

# Quiet where pip would otherwise ask or redraw a line; progress is streamed
# line by line, so a progress bar would only add noise.
_PIP_ENV = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_INPUT": "1",
    "PIP_PROGRESS_BAR": "off",
    "PYTHONUNBUFFERED": "1",
}

_PYTHON_ID = "import sys; print(sys.version); print(sys.base_prefix)"

_INCLUDE = re.compile(r"(?:-r|-c|--requirement|--constraint)[ =]\s*(\S+)")
_COMMENT = re.compile(r"(^|\s)#.*$")
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2")


class BuildError(Exception):
    """An environment could not be made; ``output`` is pip's last lines."""

    def __init__(
        self, message: str, requirements: Sequence[Path], output: str = ""
    ) -> None:
        self.requirements = list(requirements)
        self.output = output
        super().__init__(f"{message}\n{output}" if output else message)


@dataclass(frozen=True)
class Environment:
    """A ready virtual environment."""

    key: str
    path: Path

    @property
    def bin(self) -> Path:
        """The folder holding its ``python`` and installed scripts."""
        return self.path / "bin"

    @property
    def python(self) -> Path:
        """Its interpreter."""
        return self.bin / "python"


class Environments:
    """The cache of virtual environments under ``<root>/venvs``.

    Thread-safe, and safe to share between processes (POSIX only: the
    locks are ``flock`` and the layout is ``bin/``).
    """

    def __init__(self, root: Path, *, python: str = sys.executable) -> None:
        self.folder = Path(root).absolute() / "venvs"
        self.python = python

    def key(self, requirements: Sequence[Path]) -> str:
        """The cache key of ``requirements`` (in order) on this Python.

        It covers what each file asks for, the files it includes with
        ``-r``/``-c``, and the bytes of local archives it names, so a wheel
        rebuilt under the same name gets a new environment. Local source
        folders are not read: change their version to rebuild.
        """
        cwd = _pip_cwd(requirements)
        digest = hashlib.sha256(self._python_id.encode())
        for index, path in enumerate(requirements):
            digest.update(f"\0{index}\0".encode())
            digest.update("\n".join(_fingerprint(path, cwd, set())).encode())
        return digest.hexdigest()[:_KEY_CHARS]

    def get(
        self, requirements: Sequence[Path], progress: Progress | None = None
    ) -> Environment:
        """The environment for ``requirements``, built first if needed.

        ``requirements`` are installed in order (template first, then the
        function); a missing file counts as empty. pip's output goes line by
        line to ``progress`` while it runs.
        """
        report = progress or _ignore
        key = self.key(requirements)
        ready = Environment(key, self.folder / key)
        if _usable(ready):
            return ready

        with self._locked(key):
            if _usable(ready):
                return ready
            self._build(ready, requirements, report)
        return ready

    @functools.cached_property
    def _python_id(self) -> str:
        # The version and the base installation: a venv links to its base
        # interpreter, so another base (or a new patch release in its place)
        # needs another environment.
        try:
            done = subprocess.run(
                [self.python, "-c", _PYTHON_ID],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise BuildError(
                f"the Python interpreter {self.python!r} does not run ({exc}): "
                "give the path of a working python3",
                [],
            ) from exc
        return done.stdout

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f".{key}.lock", "a") as lock:
            # flock locks belong to the open file, so this serialises the
            # threads of one emulator as well as separate emulators.
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _build(
        self, ready: Environment, requirements: Sequence[Path], report: Progress
    ) -> None:
        store = self.folder / ".store"
        _remove_leftovers(store, ready.key)
        target = store / f"{ready.key}-{secrets.token_hex(4)}"
        target.parent.mkdir(parents=True, exist_ok=True)

        names = _names(requirements)
        log.info("building environment %s for %s", ready.key, names)
        try:
            self._fill(target, requirements, report)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        _publish(target, ready.path)
        log.info("environment %s ready", ready.key)

    def _fill(
        self, target: Path, requirements: Sequence[Path], report: Progress
    ) -> None:
        host_pip = _host_pip_usable()
        report(f"Creating a virtual environment in {target}")
        venv = [self.python, "-m", "venv"]
        if host_pip:
            venv.append("--without-pip")
        _run([*venv, str(target)], requirements, report, "python -m venv")

        files = [path for path in requirements if _requirement_lines(path)]
        if not files:
            return
        python = str(target / "bin" / "python")
        pip = [sys.executable, "-m", "pip", "--python", python]
        if not host_pip:
            pip = [python, "-m", "pip"]
        options = [arg for path in files for arg in ("-r", str(path.absolute()))]
        cwd = _pip_cwd(requirements)
        _run([*pip, "install", *options], files, report, "pip install", cwd)


def _requirement_lines(path: Path) -> list[str]:
    # Blank lines and comments do not change what is installed, so editing
    # them keeps the environment.
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = (_COMMENT.sub("", line).strip() for line in text.splitlines())
    return [line for line in lines if line]


def _pip_cwd(requirements: Sequence[Path]) -> Path:
    # pip resolves a relative path in a requirement line from its working
    # folder; the function's folder (the last file's) is where users write
    # such paths from.
    if not requirements:
        return Path.cwd()
    return requirements[-1].absolute().parent


def _fingerprint(path: Path, cwd: Path, seen: set[Path]) -> list[str]:
    lines = _requirement_lines(path)
    marks: list[str] = []
    for line in lines:
        included = _INCLUDE.match(line)
        if included:
            # pip reads -r and -c files relative to the including file.
            nested = (path.parent / included.group(1)).resolve()
            if nested not in seen:
                seen.add(nested)
                marks += _fingerprint(nested, cwd, seen)
            continue
        archive = _local_archive(line, cwd)
        if archive is not None:
            content = hashlib.sha256(archive.read_bytes()).hexdigest()
            marks.append(f"{line} sha256={content}")
    return lines + marks


def _local_archive(line: str, cwd: Path) -> Path | None:
    target = line.split(";", 1)[0].strip()
    if " @ " in target:
        target = target.split(" @ ", 1)[1].strip()
    target = target.removeprefix("file://")
    if not target.endswith(_ARCHIVES):
        return None
    candidate = cwd / target
    return candidate if candidate.is_file() else None


def _usable(environment: Environment) -> bool:
    return environment.python.exists()


def _remove_leftovers(store: Path, key: str) -> None:
    # Folders of builds that were killed half-way; the lock is held, so no
    # build of this key is running.
    if not store.is_dir():
        return
    for folder in store.glob(f"{key}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _publish(target: Path, name: Path) -> None:
    # A relative link keeps the cache movable as a whole; os.replace makes
    # the name appear at once (a stale, broken link is replaced too).
    link = name.with_name(f".{name.name}.{secrets.token_hex(4)}")
    link.symlink_to(target.relative_to(name.parent), target_is_directory=True)
    os.replace(link, name)


def _run(
    command: list[str],
    requirements: Sequence[Path],
    report: Progress,
    what: str,
    cwd: Path | None = None,
) -> None:
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    env = {**os.environ, **_PIP_ENV}
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise BuildError(f"{what} could not start: {exc}", requirements) from exc

    assert process.stdout is not None
    with process:
        for raw in process.stdout:
            line = raw.rstrip()
            tail.append(line)
            report(line)
    if process.returncode != 0:
        raise BuildError(
            f"{what} failed with exit status {process.returncode} for "
            f"{_names(requirements)}: fix the file and save it again; "
            "its last lines were:",
            requirements,
            "\n".join(tail),
        )


def _names(requirements: Sequence[Path]) -> str:
    return ", ".join(str(path) for path in requirements) or "no requirements"


@functools.cache
def _host_pip_usable() -> bool:
    try:
        version = importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return False
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    return numbers >= _PIP_WITH_PYTHON_OPTION


def _ignore(line: str) -> None:
    return None
