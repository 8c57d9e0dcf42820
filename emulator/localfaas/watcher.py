"""Hot reload: notice saved handler files and say which function changed.

faas-cli's ``--watch`` rebuilds a function after a 1.5 s debounce
(tooling.md §3.3); the emulator reloads in well under a second, so it waits
only ``debounce`` (0.2 s) after the last event of a burst. Editors save in
bursts (a swap file, a backup, a rename, the write itself); one burst makes
one call to ``on_change`` with every file it touched, the editor's own
scratch files left out.

Events come from the ``watchdog`` library (inotify, FSEvents, ...), never
from polling. Only writes count: reading a handler folder, as a build does
when it copies the files, opens and closes them without a change, and must
not start another reload.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

__all__ = ["OnChange", "WatchError", "Watcher", "ignored"]

log = logging.getLogger("localfaas.watcher")

OnChange = Callable[[str, set[Path]], None]

# Scratch files of vim (swap files and its "4913" write test), emacs (.#lock,
# #autosave#), JetBrains' safe write, backups, and Python's bytecode.
_IGNORED_NAMES = (
    "*.swp",
    "*.swo",
    "*.swn",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*___jb_tmp___",
    "*___jb_old___",
    ".DS_Store",
    "*.pyc",
    "*.pyo",
)
_IGNORED_FOLDERS = {
    "__pycache__",
    ".git",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
}

# A file written without pause for this many debounce periods is reloaded
# anyway, so a process that keeps writing cannot hold a reload back forever.
_MAX_WAIT_FACTOR = 10

_WRITES = {
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MOVED,
    EVENT_TYPE_CLOSED,
}


class WatchError(Exception):
    """A handler folder cannot be watched."""


def ignored(path: Path) -> bool:
    """Whether a change to ``path`` is an editor's or Python's own noise."""
    if any(part in _IGNORED_FOLDERS for part in path.parts):
        return True
    name = path.name
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _IGNORED_NAMES)


class Watcher:
    """Calls ``on_change(name, paths)`` once per burst of saves in a folder.

    ``paths`` maps each function's name to its handler folder, watched
    recursively. Calls come from one thread, one at a time, so a function
    is never reloaded twice at once; changes made during a call are
    reported by the next one.
    """

    def __init__(
        self,
        paths: Mapping[str, Path],
        on_change: OnChange,
        debounce: float = 0.2,
    ) -> None:
        self.on_change = on_change
        self.debounce = debounce
        self._observer: BaseObserver = Observer()
        self._watches: dict[str, ObservedWatch] = {}
        self._pending: dict[str, _Burst] = {}
        self._ready = threading.Condition()
        self._stopping = False
        self._caller = threading.Thread(
            target=self._call_loop, name="watcher-calls", daemon=True
        )
        for name, path in paths.items():
            self.watch(name, path)

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start watching and calling."""
        self._observer.start()
        self._caller.start()
        log.info(
            "watching %d function(s): %s",
            len(self._watches),
            ", ".join(sorted(self._watches)),
        )

    def stop(self) -> None:
        """Stop watching; changes not yet reported are dropped."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join()
        if self._caller.is_alive():
            self._caller.join()

    def watch(self, name: str, path: Path) -> None:
        """Watch ``path`` for ``name`` too (or instead of its old folder)."""
        root = Path(path).absolute()
        if not root.is_dir():
            raise WatchError(
                f"handler folder {str(root)!r} of {name!r} is not a folder: "
                "check 'handler:' in stack.yml"
            )
        self.unwatch(name)
        handler = _Handler(self, name, root)
        try:
            self._watches[name] = self._observer.schedule(
                handler, str(root), recursive=True
            )
        except OSError as exc:
            raise WatchError(
                f"cannot watch {str(root)!r} of {name!r}: {exc}; on Linux, "
                "raise fs.inotify.max_user_watches if it is the limit"
            ) from exc

    def unwatch(self, name: str) -> None:
        """Stop watching ``name``'s folder; unknown names are ignored."""
        watch = self._watches.pop(name, None)
        if watch is not None:
            self._observer.unschedule(watch)
        with self._ready:
            self._pending.pop(name, None)

    def note(self, name: str, path: Path) -> None:
        """Record a change of ``path`` in ``name``'s folder."""
        now = time.monotonic()
        with self._ready:
            burst = self._pending.setdefault(name, _Burst(first=now))
            burst.paths.add(path)
            latest = burst.first + self.debounce * _MAX_WAIT_FACTOR
            burst.due = min(now + self.debounce, latest)
            self._ready.notify_all()

    def _call_loop(self) -> None:
        while True:
            due = self._next_due()
            if due is None:
                return
            name, paths = due
            try:
                self.on_change(name, paths)
            except Exception:
                log.exception("reloading %s failed", name)

    def _next_due(self) -> tuple[str, set[Path]] | None:
        with self._ready:
            while not self._stopping:
                now = time.monotonic()
                if self._pending:
                    name, burst = min(
                        self._pending.items(), key=lambda item: item[1].due
                    )
                    if burst.due <= now:
                        del self._pending[name]
                        return name, burst.paths
                    self._ready.wait(burst.due - now)
                else:
                    self._ready.wait()
            return None


@dataclass
class _Burst:
    """Changes of one folder since its last call."""

    first: float
    due: float = 0.0
    paths: set[Path] = field(default_factory=set)


class _Handler(FileSystemEventHandler):
    """Routes one folder's write events to the watcher, under its name."""

    def __init__(self, watcher: Watcher, name: str, root: Path) -> None:
        self.watcher = watcher
        self.name = name
        self.root = root

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not _is_write(event):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(os.fsdecode(raw))
            if not ignored(self._inside(path)):
                self.watcher.note(self.name, path)

    def _inside(self, path: Path) -> Path:
        # Only what lies inside the folder is judged: the folder itself may
        # well sit under a name that is ignored inside it (.tox, .git...).
        if path.is_relative_to(self.root):
            return path.relative_to(self.root)
        return path


def _is_write(event: FileSystemEvent) -> bool:
    # A folder's "modified" only echoes a change inside it, which has its
    # own event; opening and closing unchanged files is reading.
    if event.event_type == EVENT_TYPE_MODIFIED:
        return not event.is_directory
    return event.event_type in _WRITES
