"""The process: waitress on ``port``, the lock file, and a graceful stop.

On SIGTERM the function does what of-watchdog does, so Kubernetes and faasd
roll it without dropping requests: remove the lock file (health turns 503),
keep serving for ``healthcheck_interval`` while endpoints are updated, wait
for in-flight requests up to ``write_timeout``, then exit. A second signal
exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import waitress
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError

from ._logs import LogWriter
from ._middleware import AuthMiddleware
from ._settings import Settings
from ._watchdog import Watchdog
from ._wsgi import WSGIApp

log = logging.getLogger("faas_runtime")


def configure_logging() -> None:
    """One line per event on stderr, which OpenFaaS collects as logs.

    Lines are written by a thread of their own (see ``_logs``);
    ``logging.shutdown()``, run at exit, writes what is still queued.
    Logging set up before (by an embedding program) is left as it is.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    # The request log is on the hot path: skip what no line shows (the
    # logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    writer = LogWriter(sys.stderr)
    writer.start()
    root.addHandler(writer.handler())
    root.setLevel(logging.INFO)
    # waitress warns "Task queue depth is N" whenever a request waits for
    # a thread: under load that is most requests, and it says nothing the
    # function's owner can act on (max_inflight is the limit to set).
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def build_app(function: WSGIApp, settings: Settings) -> Watchdog:
    """The function wrapped in auth, then in the watchdog's duties."""
    secured = AuthMiddleware.from_env(
        function, os.environ, Path(settings.secret_mount_path)
    )
    return Watchdog(
        secured,
        max_inflight=settings.max_inflight,
        exec_timeout=settings.exec_timeout,
        workers=settings.waitress_threads,
    )


def serve(function: WSGIApp, settings: Settings) -> None:
    """Serve ``function`` until SIGTERM or SIGINT, then drain and return."""
    app = build_app(function, settings)
    server = waitress.create_server(
        app,
        host=settings.listen_address,
        port=settings.port,
        threads=settings.waitress_threads,
        channel_timeout=max(settings.read_timeout, settings.write_timeout),
        max_request_body_size=settings.max_request_body,
        ident="",
        clear_untrusted_proxy_headers=False,
    )
    # Every connection parses with the strict parser below.
    server.channel_class = _Channel
    lock = None if settings.suppress_lock else Path(settings.lock_file)
    stopper = _Stopper(app, settings, lock)
    stopper.install()

    stopper.write_lock()
    app.healthy = True
    log.info(
        "serving on %s:%d secrets=%s",
        settings.listen_address,
        settings.port,
        settings.secret_mount_path,
    )
    try:
        server.run()
    finally:
        stopper.remove_lock()
    log.info("stopped")


class _Parser(HTTPRequestParser):  # type: ignore[misc]
    """waitress's parser, refusing a body framed two ways.

    With both Content-Length and Transfer-Encoding, a proxy in front may
    have framed the body by the other header, so the bytes after it could
    be a smuggled request (RFC 9112 §6.1). waitress drops Transfer-Encoding
    before the app runs, so the check has to be here: a parsing error is
    answered 400 and the connection closed.
    """

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("Content-Length and Transfer-Encoding together")


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A waitress connection that parses with ``_Parser``."""

    parser_class = _Parser


class _Stopper:
    """Turns SIGTERM into the drain sequence, and a second one into exit."""

    def __init__(self, app: Watchdog, settings: Settings, lock: Path | None) -> None:
        self.app = app
        self.settings = settings
        self.lock = lock
        self.stopping = False
        self.drained = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.drained:
            # Sent by drain() itself: waitress's run() turns this
            # KeyboardInterrupt into a clean close.
            raise KeyboardInterrupt
        if self.stopping:
            log.warning("second signal: exiting without waiting")
            logging.shutdown()
            os._exit(1)
        self.stopping = True
        self.app.healthy = False
        self.remove_lock()
        threading.Thread(target=self.drain, name="drain", daemon=True).start()

    def drain(self) -> None:
        wait = self.settings.drain_wait
        log.info("draining: serving for %.1fs more, then finishing requests", wait)
        threading.Event().wait(wait)
        if not self.app.wait_idle(self.settings.write_timeout):
            log.warning(
                "drain: %d request(s) still running after write_timeout=%.1fs",
                self.app.inflight,
                self.settings.write_timeout,
            )
        self.drained = True
        # A real signal wakes waitress's select() at once, where
        # interrupt_main() would wait for its next timeout (up to 1 s).
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def write_lock(self) -> None:
        if self.lock is None:
            return
        try:
            self.lock.touch()
        except OSError as exc:
            # A read-only /tmp: serve anyway, but say why the image's health
            # check will fail.
            log.warning("cannot write the lock file %s: %s", self.lock, exc)

    def remove_lock(self) -> None:
        if self.lock is not None:
            self.lock.unlink(missing_ok=True)
