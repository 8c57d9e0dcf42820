"""Hot reload: real file-system events, debounced, one call per burst."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from test_environments import make_wheel

from localfaas.environments import Environments
from localfaas.supervisor import DeployError, Deployment, Supervisor
from localfaas.watcher import Watcher, WatchError, ignored

TEMPLATE = Path(__file__).resolve().parents[1] / "template" / "python3-http-auth"
DEBOUNCE = 0.1
QUIET = DEBOUNCE * 6

Calls = list[tuple[str, set[Path]]]


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{check} did not hold within {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def handler(tmp_path: Path) -> Path:
    """A handler folder with one file in it."""
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text("def handle(event, context):\n    pass\n")
    return folder


@pytest.fixture
def calls() -> Calls:
    """What on_change was called with, in order."""
    return []


@pytest.fixture
def watching(handler: Path, calls: Calls) -> Iterator[Watcher]:
    """A started watcher of ``handler`` as function "fn", recording calls."""
    with Watcher(
        {"fn": handler}, lambda name, paths: calls.append((name, paths)), DEBOUNCE
    ) as watcher:
        yield watcher


def test_a_burst_of_saves_makes_one_call(
    watching: Watcher, handler: Path, calls: Calls
) -> None:
    """Several writes in quick succession are reported once, with the file."""
    for number in range(5):
        (handler / "handler.py").write_text(f"# save {number}\n")
        time.sleep(DEBOUNCE / 5)

    eventually(lambda: len(calls) == 1)
    time.sleep(QUIET)

    assert calls == [("fn", {handler / "handler.py"})]


def test_editor_scratch_files_are_ignored(
    watching: Watcher, handler: Path, calls: Calls
) -> None:
    """Swap, backup, lock and bytecode files never trigger a reload."""
    scratch = ("handler.py.swp", "handler.py~", ".#handler.py", "4913", "x.pyc")
    for name in scratch:
        (handler / name).write_text("scratch")
    (handler / "__pycache__").mkdir()
    (handler / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")
    (handler / "handler.py.swp").unlink()

    time.sleep(QUIET)

    assert calls == []


def test_a_vim_style_save_reports_the_real_file(
    watching: Watcher, handler: Path, calls: Calls
) -> None:
    """vim's write test, backup rename and rewrite: one call for handler.py."""
    (handler / "4913").write_text("")
    (handler / "4913").unlink()
    (handler / "handler.py").rename(handler / "handler.py~")
    saved = "def handle(event, context):\n    return 1\n"
    (handler / "handler.py").write_text(saved)
    (handler / "handler.py~").unlink()

    eventually(lambda: len(calls) == 1)
    time.sleep(QUIET)

    assert calls == [("fn", {handler / "handler.py"})]


def test_reading_the_folder_is_not_a_change(
    watching: Watcher, handler: Path, calls: Calls, tmp_path: Path
) -> None:
    """Copying the folder, as a build does, opens files but changes nothing."""
    shutil.copytree(handler, tmp_path / "copy")
    (handler / "handler.py").read_text()

    time.sleep(QUIET)

    assert calls == []


def test_new_files_in_subfolders_are_changes(
    watching: Watcher, handler: Path, calls: Calls
) -> None:
    """The folder is watched recursively, new folders included."""
    (handler / "lib").mkdir()
    (handler / "lib" / "util.py").write_text("X = 1\n")

    eventually(lambda: len(calls) >= 1)
    changed = set().union(*(paths for _, paths in calls))
    assert handler / "lib" / "util.py" in changed


def test_each_function_is_reported_under_its_name(tmp_path: Path) -> None:
    """A change in one function's folder names that function only."""
    folders = {name: tmp_path / name for name in ("alpha", "beta")}
    for folder in folders.values():
        folder.mkdir()
    calls: Calls = []

    with Watcher(folders, lambda n, p: calls.append((n, p)), DEBOUNCE):
        (folders["beta"] / "handler.py").write_text("x = 1\n")
        eventually(lambda: len(calls) == 1)
        time.sleep(QUIET)

    assert calls == [("beta", {folders["beta"] / "handler.py"})]


def test_calls_come_one_at_a_time(handler: Path) -> None:
    """A change during a slow call is reported after it, never alongside it."""
    calls: Calls = []
    running = threading.Lock()
    overlapped: list[bool] = []

    def slow(name: str, paths: set[Path]) -> None:
        overlapped.append(not running.acquire(blocking=False))
        try:
            time.sleep(0.4)
            calls.append((name, paths))
        finally:
            running.release()

    with Watcher({"fn": handler}, slow, DEBOUNCE):
        (handler / "handler.py").write_text("# first\n")
        eventually(lambda: bool(overlapped))
        (handler / "other.py").write_text("# during the call\n")
        eventually(lambda: len(calls) == 2)

    assert overlapped == [False, False]
    assert calls[1] == ("fn", {handler / "other.py"})


def test_a_failing_call_does_not_stop_the_watcher(handler: Path) -> None:
    """An exception in on_change is logged and later changes still count."""
    calls: list[str] = []

    def flaky(name: str, paths: set[Path]) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("reload failed")

    with Watcher({"fn": handler}, flaky, DEBOUNCE):
        (handler / "handler.py").write_text("# one\n")
        eventually(lambda: len(calls) == 1)
        (handler / "handler.py").write_text("# two\n")
        eventually(lambda: len(calls) == 2)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    """Watching a folder that does not exist names it."""
    with pytest.raises(WatchError, match="nowhere"):
        Watcher({"fn": tmp_path / "nowhere"}, lambda n, p: None)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("handler.py", False),
        ("requirements.txt", False),
        ("lib/util.py", False),
        (".handler.py.swp", True),
        ("handler.py.swx", True),
        ("handler.py~", True),
        (".#handler.py", True),
        ("#handler.py#", True),
        ("4913", True),
        ("__pycache__/handler.cpython-311.pyc", True),
        ("lib/__pycache__/x.txt", True),
        ("handler.pyc", True),
        ("handler.py___jb_tmp___", True),
    ],
)
def test_what_counts_as_noise(path: str, expected: bool) -> None:
    """Editor scratch files and bytecode are noise; sources are not."""
    assert ignored(Path(path)) is expected


@pytest.fixture(scope="module")
def environments(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Environments:
    """The template's environment, shared with the supervisor's tests."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return Environments(tmp_path_factory.mktemp("env"))
    return Environments(Path(cache.mkdir("localfaas-environments")))


def test_saving_a_handler_reloads_the_function(
    tmp_path: Path, environments: Environments
) -> None:
    """Watcher + supervisor: a save is served, a broken save keeps the old,
    a new requirement gets its environment first."""
    folder = tmp_path / "live"
    folder.mkdir()
    source = "def handle(event, context):\n    return {word}\n"
    (folder / "handler.py").write_text(source.format(word="'one'"))
    errors: list[str] = []

    def reload(name: str, paths: set[Path]) -> None:
        try:
            supervisor.reload(name, folder)
        except DeployError as exc:
            errors.append(exc.output)

    def body() -> str:
        host, port = supervisor.endpoint("live")
        return httpx.get(f"http://{host}:{port}/").text

    with Supervisor(tmp_path / "state", environments=environments) as supervisor:
        supervisor.deploy(
            Deployment(
                name="live",
                template_dir=TEMPLATE,
                handler_dir=folder,
                env_vars={"auth_scheme": "none"},
            )
        )
        with Watcher({"live": folder}, reload):
            (folder / "handler.py").write_text(source.format(word="'two'"))
            eventually(lambda: body() == "two")

            (folder / "handler.py").write_text("def handle(event, context)\n")
            eventually(lambda: bool(errors))
            assert "SyntaxError" in errors[0]
            assert body() == "two"

            make_wheel(folder, "tinypkg")
            wheel = "./tinypkg-1.0-py3-none-any.whl\n"
            (folder / "requirements.txt").write_text(wheel)
            (folder / "handler.py").write_text(
                "import tinypkg\n\n"
                "def handle(event, context):\n    return tinypkg.VERSION\n"
            )
            eventually(lambda: body() == "1.0", timeout=60)
