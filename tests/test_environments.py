"""Virtual environments per set of requirements: built once, atomically."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from localfaas.environments import BuildError, Environments


def make_wheel(
    folder: Path,
    name: str,
    version: str = "1.0",
    module: str = "",
) -> Path:
    """A pure-Python wheel of one module, installable without an index."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module or f"VERSION = {version!r}\n",
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", record)
    return wheel


def requirement_files(tmp_path: Path, template: str, function: str) -> list[Path]:
    """A template's and a function's requirements.txt, in build order."""
    (tmp_path / "template").mkdir(exist_ok=True)
    (tmp_path / "function").mkdir(exist_ok=True)
    files = [
        tmp_path / "template" / "requirements.txt",
        tmp_path / "function" / "requirements.txt",
    ]
    files[0].write_text(template)
    files[1].write_text(function)
    return files


def run_python(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` on ``python``; capture what it prints."""
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=False
    )


def test_installs_both_files_and_streams_pip_progress(tmp_path: Path) -> None:
    """Both files land in a plain venv, template first; pip's lines stream."""
    alpha = make_wheel(tmp_path / "wheels", "alpha")
    make_wheel(tmp_path / "function", "beta")
    files = requirement_files(
        tmp_path, f"{alpha}\n", "# its own\n./beta-1.0-py3-none-any.whl\n"
    )
    lines: list[str] = []

    env = Environments(tmp_path / "state").get(files, lines.append)

    assert env.path == tmp_path / "state" / "venvs" / env.key
    done = run_python(env.python, "import alpha, beta; print(alpha.VERSION)")
    assert done.stdout.strip() == "1.0", done.stderr
    assert any("Successfully installed alpha-1.0 beta-1.0" in x for x in lines)
    # A plain venv: the emulator's own packages are not visible to functions.
    assert run_python(env.python, "import waitress").returncode != 0


def test_same_requirements_reuse_the_environment(tmp_path: Path) -> None:
    """A second request is served from the cache, with no build and no output."""
    alpha = make_wheel(tmp_path / "wheels", "alpha")
    files = requirement_files(tmp_path, f"{alpha}\n", "")
    environments = Environments(tmp_path / "state")
    first = environments.get(files)

    lines: list[str] = []
    again = environments.get(files, lines.append)

    assert again == first
    assert lines == []


def test_key_follows_what_is_installed_not_comments(tmp_path: Path) -> None:
    """Comments keep the key, another requirement changes it; missing = empty."""
    environments = Environments(tmp_path / "state")
    files = requirement_files(tmp_path, "waitress>=3\n", "requests\n")
    key = environments.key(files)

    files[1].write_text("# pinned later\n\nrequests   # http client\n")
    assert environments.key(files) == key

    files[1].write_text("requests\nflask\n")
    assert environments.key(files) != key

    files[1].unlink()
    missing = environments.key(files)
    files[1].write_text("# nothing yet\n")
    assert environments.key(files) == missing != key


def test_a_rebuilt_local_wheel_gets_a_new_environment(tmp_path: Path) -> None:
    """Same requirement line, new wheel bytes: a new key and the new code."""
    make_wheel(tmp_path / "function", "alpha", "1.0")
    files = requirement_files(tmp_path, "", "./alpha-1.0-py3-none-any.whl\n")
    environments = Environments(tmp_path / "state")
    first = environments.get(files)

    make_wheel(tmp_path / "function", "alpha", "1.0", "VERSION = 'rebuilt'\n")
    second = environments.get(files)

    assert second.key != first.key
    done = run_python(second.python, "import alpha; print(alpha.VERSION)")
    assert done.stdout.strip() == "rebuilt"


def test_an_included_file_is_part_of_the_key(tmp_path: Path) -> None:
    """A change in a file pulled in with -r changes the key."""
    files = requirement_files(tmp_path, "", "-r shared.txt\n")
    shared = tmp_path / "function" / "shared.txt"
    shared.write_text("requests\n")
    environments = Environments(tmp_path / "state")
    key = environments.key(files)

    shared.write_text("requests\nflask\n")

    assert environments.key(files) != key


@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists()
    or Path(sys.base_prefix).resolve() == Path("/usr"),
    reason="needs a second Python installation",
)
def test_key_depends_on_the_python(tmp_path: Path) -> None:
    """Another base interpreter gets another environment."""
    files = requirement_files(tmp_path, "waitress\n", "")
    ours = Environments(tmp_path / "state").key(files)
    other = Environments(tmp_path / "state", python="/usr/bin/python3")
    system = other.key(files)
    assert ours != system


def test_failed_build_leaves_nothing_and_names_the_file(tmp_path: Path) -> None:
    """pip's failure raises BuildError with the file and pip's last lines."""
    files = requirement_files(tmp_path, "", "./missing-1.0-py3-none-any.whl\n")
    environments = Environments(tmp_path / "state")

    with pytest.raises(BuildError) as caught:
        environments.get(files)

    assert str(files[1]) in str(caught.value)
    assert "missing-1.0-py3-none-any.whl" in caught.value.output
    venvs = tmp_path / "state" / "venvs"
    assert not (venvs / environments.key(files)).exists()
    assert list((venvs / ".store").iterdir()) == []


def test_two_threads_build_the_same_environment_once(tmp_path: Path) -> None:
    """Two functions needing one environment: one build, one result."""
    alpha = make_wheel(tmp_path / "wheels", "alpha")
    files = requirement_files(tmp_path, f"{alpha}\n", "")
    environments = Environments(tmp_path / "state")
    lines: list[str] = []
    results = []
    start = threading.Barrier(2)

    def build() -> None:
        start.wait()
        results.append(environments.get(files, lines.append))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results[0] == results[1]
    assert sum("Creating a virtual environment" in line for line in lines) == 1
    assert len(list((tmp_path / "state" / "venvs" / ".store").iterdir())) == 1


def test_no_requirements_make_a_bare_environment(tmp_path: Path) -> None:
    """Empty or comment-only files need no pip run at all."""
    files = requirement_files(tmp_path, "# nothing\n", "")
    lines: list[str] = []

    env = Environments(tmp_path / "state").get(files, lines.append)

    assert run_python(env.python, "import sys; print(sys.prefix)").returncode == 0
    assert lines == [f"Creating a virtual environment in {env.path.resolve()}"]


def test_a_broken_cached_environment_is_rebuilt(tmp_path: Path) -> None:
    """A cache entry whose folder was deleted is built again, not trusted."""
    alpha = make_wheel(tmp_path / "wheels", "alpha")
    files = requirement_files(tmp_path, f"{alpha}\n", "")
    environments = Environments(tmp_path / "state")
    first = environments.get(files)
    shutil.rmtree(first.path.resolve())

    again = environments.get(files)

    assert run_python(again.python, "import alpha").returncode == 0


def test_a_python_that_does_not_run_is_named(tmp_path: Path) -> None:
    """A wrong interpreter path is reported with the path given."""
    files = requirement_files(tmp_path, "", "")
    environments = Environments(tmp_path / "state", python="/nonexistent/python")

    with pytest.raises(BuildError, match="/nonexistent/python"):
        environments.get(files)
