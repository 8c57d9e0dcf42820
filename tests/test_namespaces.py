"""Private mount namespaces: each function sees its own secrets folder."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localfaas.namespaces import (
    MOUNT_FAILED,
    SECRETS_TARGET,
    secrets_mount_wrapper,
    supports_private_mounts,
)

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="mount namespaces exist on Linux only",
    ),
    pytest.mark.skipif(
        shutil.which("unshare") is None, reason="util-linux unshare missing"
    ),
]

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SETPRIV = shutil.which("setpriv")
as_nobody = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
]


def mount_points() -> set[str]:
    """The host's mount points, from this process's mount table."""
    table = Path("/proc/self/mountinfo").read_text().splitlines()
    return {line.split()[4] for line in table}


def wrapped(command: list[str], folder: Path) -> list[str]:
    """``command`` wrapped for ``folder``; the test fails if it cannot be."""
    argv = secrets_mount_wrapper(command, folder)
    assert argv is not None
    return argv


@pytest.fixture
def host_mounts(tmp_path: Path) -> Iterator[None]:
    """Fail the test if it leaves a mount at the target or in a temp dir."""
    before = mount_points()

    yield

    ours = (SECRETS_TARGET, tempfile.gettempdir(), str(tmp_path))
    added = {m for m in mount_points() - before if m.startswith(ours)}
    assert added == set()


@pytest.fixture
def secret(tmp_path: Path) -> tuple[str, Path]:
    """A uniquely named secret in its own folder; no host file has it."""
    name = f"lf-test-{uuid.uuid4().hex}"
    folder = tmp_path / "secrets-a"
    folder.mkdir(mode=0o700)
    (folder / name).write_text("value-a")
    assert not Path(SECRETS_TARGET, name).exists()
    return name, folder


@as_root
@pytest.mark.usefixtures("host_mounts")
class TestAsRoot:
    """The wrapper as the emulator uses it here, running as root."""

    def test_probe_succeeds(self) -> None:
        """Root on Linux with util-linux gets private mounts."""
        assert supports_private_mounts() is True

    def test_reads_own_secret(self, secret: tuple[str, Path]) -> None:
        """The wrapped process reads its secret at /var/openfaas/secrets."""
        name, folder = secret
        path = f"{SECRETS_TARGET}/{name}"

        done = subprocess.run(
            wrapped(["cat", path], folder), capture_output=True, check=False
        )

        assert (done.returncode, done.stdout) == (0, b"value-a")
        assert not Path(path).exists()

    def test_mount_is_read_only(self, secret: tuple[str, Path]) -> None:
        """The process can neither change nor add files in its view."""
        name, folder = secret
        script = f'echo x > "$1/{name}"; echo y > "$1/new"; cat "$1/{name}"'
        argv = wrapped(["sh", "-c", script, "sh", SECRETS_TARGET], folder)

        done = subprocess.run(argv, capture_output=True, text=True, check=False)

        assert done.stdout == "value-a"
        assert done.stderr.count("Read-only file system") == 2
        assert sorted(p.name for p in folder.iterdir()) == [name]

    def test_two_processes_see_their_own(
        self,
        secret: tuple[str, Path],
        tmp_path: Path,
    ) -> None:
        """Two wrapped processes alive at once each see their own folder."""
        name, folder_a = secret
        folder_b = tmp_path / "secrets-b"
        folder_b.mkdir()
        (folder_b / name).write_text("value-b")
        script = f'cat "{SECRETS_TARGET}/{name}"; echo; read -r _'

        procs = [
            subprocess.Popen(
                wrapped(["sh", "-c", script], folder),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for folder in (folder_a, folder_b)
        ]
        try:
            seen = [proc.stdout.readline() for proc in procs if proc.stdout]
        finally:
            for proc in procs:
                proc.communicate("\n", timeout=10)

        assert seen == ["value-a\n", "value-b\n"]
        assert [proc.returncode for proc in procs] == [0, 0]

    def test_changes_reach_running_process(
        self,
        secret: tuple[str, Path],
    ) -> None:
        """A file replaced on the host is what the running process reads."""
        name, folder = secret
        script = f'read -r _; cat "{SECRETS_TARGET}/{name}"'
        proc = subprocess.Popen(
            wrapped(["sh", "-c", script], folder),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        (folder / "tmp").write_text("rotated")
        (folder / "tmp").replace(folder / name)
        out, _ = proc.communicate("go\n", timeout=10)

        assert out == "rotated"

    def test_exit_status_passes_through(self, secret: tuple[str, Path]) -> None:
        """The wrapped command's own exit status is the wrapper's."""
        _, folder = secret
        argv = wrapped(["sh", "-c", "exit 7"], folder)

        done = subprocess.run(argv, check=False)

        assert done.returncode == 7

    def test_sigterm_reaches_the_command(
        self,
        secret: tuple[str, Path],
    ) -> None:
        """The PID is the command's own, so SIGTERM stops it directly."""
        _, folder = secret
        code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
        proc = subprocess.Popen(
            wrapped([sys.executable, "-c", code], folder),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None

        pid = int(proc.stdout.readline())
        proc.terminate()
        proc.wait(timeout=10)

        assert pid == proc.pid
        assert proc.returncode == -signal.SIGTERM

    def test_failed_mount_never_runs_command(
        self,
        secret: tuple[str, Path],
    ) -> None:
        """If the mount fails the command does not run, exit status 125."""
        _, folder = secret
        argv = wrapped(["echo", "ran"], folder)
        shutil.rmtree(folder)

        done = subprocess.run(argv, capture_output=True, text=True, check=False)

        assert done.returncode == MOUNT_FAILED
        assert "ran" not in done.stdout
        assert f"cannot mount {folder}" in done.stderr

    def test_paths_with_shell_syntax(self, tmp_path: Path) -> None:
        """Folder names are arguments, never shell text."""
        folder = tmp_path / "a folder; touch $HOME-x `id`"
        folder.mkdir()
        (folder / "name").write_text("ok")

        done = subprocess.run(
            wrapped(["cat", f"{SECRETS_TARGET}/name"], folder),
            capture_output=True,
            check=False,
        )

        assert done.stdout == b"ok"


class TestArguments:
    """Mistakes in the call are reported, whatever the platform."""

    def test_relative_target_refused(self, tmp_path: Path) -> None:
        """A relative target raises ValueError naming it."""
        with pytest.raises(ValueError, match="'secrets'"):
            secrets_mount_wrapper(["true"], tmp_path, target="secrets")

    def test_missing_folder_refused(self, tmp_path: Path) -> None:
        """A folder that does not exist raises ValueError naming it."""
        with pytest.raises(ValueError, match="materialize"):
            secrets_mount_wrapper(["true"], tmp_path / "nope")

    def test_empty_command_refused(self, tmp_path: Path) -> None:
        """An empty command raises ValueError."""
        with pytest.raises(ValueError, match="no command"):
            secrets_mount_wrapper([], tmp_path)


def run_as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as user nobody with a plain environment."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/"}
    return subprocess.run(
        [*as_nobody, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=30,
        check=False,
    )


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A temporary folder owned by nobody (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="localfaas-nobody-"))
    user = pwd.getpwnam("nobody")
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o755)

    yield path

    shutil.rmtree(path)


PROBE = """\
import json
from localfaas.namespaces import supports_private_mounts
print(json.dumps(supports_private_mounts()))
"""

READ = """\
import json, subprocess, sys
from pathlib import Path
from localfaas.namespaces import secrets_mount_wrapper
folder, target, name = sys.argv[1:]
argv = secrets_mount_wrapper(["cat", f"{target}/{name}"], Path(folder), target)
out = None if argv is None else subprocess.run(argv, capture_output=True).stdout
print(json.dumps(out if out is None else out.decode()))
"""


@as_root
@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) missing")
@pytest.mark.usefixtures("host_mounts")
class TestUnprivileged:
    """The ``unshare --map-root-user`` path, run as user nobody."""

    @pytest.fixture(autouse=True)
    def _needs_user_namespaces(self) -> None:
        """Skip unless nobody may create a user namespace at all."""
        probe = [*as_nobody, "unshare", "--map-root-user", "true"]
        if subprocess.run(probe, capture_output=True, check=False).returncode:
            pytest.skip("unprivileged user namespaces are disabled here")

    def test_probe_succeeds(self) -> None:
        """With user namespaces allowed, the probe finds private mounts."""
        done = run_as_nobody(PROBE)

        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) is True

    def test_reads_own_secret(self, nobody_dir: Path) -> None:
        """nobody's wrapped process reads its secret at an existing target."""
        folder, target = nobody_dir / "secrets", nobody_dir / "target"
        folder.mkdir(mode=0o700)
        target.mkdir()
        (folder / "token").write_text("nobody-value")
        user = pwd.getpwnam("nobody")
        for path in (folder, folder / "token", target):
            os.chown(path, user.pw_uid, user.pw_gid)

        done = run_as_nobody(READ, str(folder), str(target), "token")

        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == "nobody-value"
        assert list(target.iterdir()) == []

    def test_uncreatable_target_gives_none(self, nobody_dir: Path) -> None:
        """A target nobody cannot create means no wrapper, and no folder."""
        target = Path("/var/lib", f"localfaas-test-{uuid.uuid4().hex}", "s")
        user = pwd.getpwnam("nobody")
        os.chown(nobody_dir, user.pw_uid, user.pw_gid)

        done = run_as_nobody(READ, str(nobody_dir), str(target), "token")

        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) is None
        assert not target.parent.exists()
