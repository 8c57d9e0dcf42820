"""Private mount namespaces: each function sees its own secrets folder.

OpenFaaS functions read each secret from ``/var/openfaas/secrets/<name>``
(gateway-contract §11). Functions the emulator runs as host processes share
one file system, so each runs in a private mount namespace in which its own
folder is bind-mounted read-only at that path; the host and the other
functions never see the mount, and it vanishes with the process.

The wrapper uses util-linux ``unshare``: as root ``unshare --mount``,
otherwise ``unshare --map-root-user --mount``, which needs unprivileged user
namespaces. Neither ``unshare`` nor the small shell script forks: each
``exec``s the next, so the PID the emulator holds is the function's own and
its exit status and signals are the function's too.

Where this is not possible (not Linux, no ``unshare``, user namespaces off,
no mount point) ``secrets_mount_wrapper`` returns None, and the caller falls
back to telling the function where its folder is (``secret_mount_path``).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "MOUNT_FAILED",
    "SECRETS_TARGET",
    "secrets_mount_wrapper",
    "supports_private_mounts",
]

log = logging.getLogger("localfaas.namespaces")

SECRETS_TARGET = "/var/openfaas/secrets"

# The wrapper's exit status when the mount fails and the command never runs:
# 125, as env(1) and `docker run` use for "the wrapper itself failed".
MOUNT_FAILED = 125

# Paths come in as arguments, never spliced into the script, so no path can
# inject shell syntax. A failed remount exits before the command runs, so a
# function never gets a writable view of its secrets. nosuid, nodev and
# noexec: a secret is data, never a program or a device.
_SCRIPT = """\
mount=$1 source=$2 target=$3
shift 3
"$mount" --bind "$source" "$target" &&
"$mount" -o remount,bind,ro,nosuid,nodev,noexec "$target" || {
    echo "localfaas: cannot mount $source at $target" >&2
    exit 125
}
exec "$@"
"""

_PROBE_TIMEOUT = 10.0


class _Tools(NamedTuple):
    unshare: str
    sh: str
    mount: str


def secrets_mount_wrapper(
    command: list[str], folder: Path, target: str = SECRETS_TARGET
) -> list[str] | None:
    """``command`` made to see ``folder`` read-only at ``target``, or None.

    None means private mounts are unavailable here; the caller should pass
    the folder through ``secret_mount_path`` instead.
    """
    if not command:
        raise ValueError("no command to wrap: give the function's argv")
    if not os.path.isabs(target):
        raise ValueError(
            f"mount target {target!r} is not an absolute path: use one like "
            f"{SECRETS_TARGET!r}"
        )
    if not folder.is_dir():
        raise ValueError(
            f"secrets folder {str(folder)!r} does not exist: materialize the "
            "function's secrets into it first"
        )

    tools = _tools()
    if tools is None or not supports_private_mounts():
        return None
    if not _ensure_mount_point(Path(target)):
        return None
    return _wrap(tools, command, folder.resolve(), target)


@functools.cache
def supports_private_mounts() -> bool:
    """Whether a wrapped command really gets a private read-only mount here.

    Probed once per process by running a trivial command that way.
    """
    if not sys.platform.startswith("linux"):
        return False

    tools = _tools()
    if tools is None:
        log.warning(
            "private mounts unavailable: unshare, sh or mount not on PATH "
            "(install util-linux); functions get secret_mount_path instead"
        )
        return False
    return _probe(tools)


@functools.cache
def _tools() -> _Tools | None:
    unshare, sh, mount = (shutil.which(n) for n in ("unshare", "sh", "mount"))
    if unshare is None or sh is None or mount is None:
        return None
    return _Tools(unshare, sh, mount)


def _unshare_options() -> list[str]:
    # Only root may make a mount namespace outright; anyone else first needs
    # a user namespace in which they are root (user_namespaces(7)).
    private = ["--mount", "--propagation", "private"]
    if os.geteuid() == 0:
        return private
    return ["--map-root-user", *private]


def _wrap(tools: _Tools, argv: list[str], src: Path, dst: str) -> list[str]:
    script = [tools.sh, "-c", _SCRIPT, "localfaas-mount"]
    mount = [tools.mount, str(src), dst]
    return [tools.unshare, *_unshare_options(), *script, *mount, *argv]


def _probe(tools: _Tools) -> bool:
    token = os.urandom(8).hex()
    check = 'cat "$1/probe" && ! (: >"$1/probe") 2>/dev/null'

    with tempfile.TemporaryDirectory(prefix="localfaas-probe-") as tmp:
        source, target = Path(tmp, "source"), Path(tmp, "target")
        source.mkdir()
        target.mkdir()
        (source / "probe").write_text(token)

        command = [tools.sh, "-c", check, "probe", str(target)]
        try:
            done = subprocess.run(
                _wrap(tools, command, source, str(target)),
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("private mounts unavailable: probe failed: %s", exc)
            return False

    # Success means the folder was seen through the mount and refused a
    # write: a probe that printed the token but could write is not enough.
    if done.returncode == 0 and done.stdout == token:
        return True
    log.warning(
        "private mounts unavailable (status %s: %s); functions get "
        "secret_mount_path instead",
        done.returncode,
        done.stderr.strip() or "no error text",
    )
    return False


def _ensure_mount_point(target: Path) -> bool:
    # A bind mount needs an existing folder to cover. Root creates it, as an
    # OpenFaaS node has it; an unprivileged user usually cannot create it
    # under /var, and then there is nothing to mount on.
    try:
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning(
            "mount point %s cannot be created (%s): functions get "
            "secret_mount_path instead; to fix, run as root: mkdir -p %s",
            target,
            exc.strerror,
            target,
        )
        return False
    return True
