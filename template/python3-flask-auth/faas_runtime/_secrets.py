"""Keys and credentials from OpenFaaS secrets, which are files.

OpenFaaS mounts each secret as ``/var/openfaas/secrets/<name>``. A file is
re-read when it changes on disk, so a rotated secret takes effect without a
restart, and every non-empty line counts as one value, so a new key can be
added before the old one is removed.

Whether the file changed is asked at most once a second (``RECHECK``): a
``stat`` per request cost as much as the HMAC itself. A rotation or a
removal therefore takes effect within a second; Kubernetes takes far longer
to update a mounted secret.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ._errors import ConfigError

RECHECK = 1.0

T = TypeVar("T")


class SecretFile:
    """One secret file, cached until its size, mtime or inode change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        # Never checked: the first read stats the file, and so does every
        # read after one that failed.
        self._checked = -RECHECK
        self._data = b""
        self._lines: list[str] | None = None
        self._derived: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.path.name

    def read_bytes(self) -> bytes:
        """The file's content; raise ``ConfigError`` if absent or empty."""
        if time.monotonic() - self._checked >= RECHECK:
            self._refresh()
        return self._data

    def _refresh(self) -> None:
        """Stat the file, and load it again if it changed."""
        now = time.monotonic()
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(self._missing(exc)) from exc

        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                self._data = self._load()
                self._lines = None
                self._derived = {}
                self._stamp = stamp
            self._checked = now

    def lines(self) -> list[str]:
        """Each non-empty line, stripped: one key, token or user each."""
        data = self.read_bytes()
        cached = self._lines
        if cached is not None:
            return list(cached)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"secret {self.name!r} is not UTF-8 text; write one value per line"
            ) from exc
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self._lines = lines
        return list(lines)

    def derived(self, name: str, build: Callable[[list[str]], T]) -> T:
        """``build(lines)``, computed once per version of the file.

        Verifiers keep their parsed keys here (encoded, base64-decoded,
        loaded PEM) instead of parsing them again on every request.
        """
        if time.monotonic() - self._checked >= RECHECK:
            self._refresh()
        # Read once: a reload replaces the dict rather than clearing it, so
        # a value found here belongs to the version just checked or a newer.
        derived = self._derived
        if name not in derived:
            derived[name] = build(self.lines())
        value: T = derived[name]
        return value

    def _load(self) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(self._missing(exc)) from exc
        if not data.strip():
            raise ConfigError(
                f"secret {self.name!r} at {str(self.path)!r} is empty; "
                "write the key into it"
            )
        return data

    def _missing(self, exc: OSError) -> str:
        return (
            f"secret {self.name!r} cannot be read at {str(self.path)!r} "
            f"({exc.strerror}); create it (faas-cli secret create "
            f"{self.name}) and list it under the function's secrets"
        )
