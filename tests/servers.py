"""Fake servers for tests, run in a thread: over HTTPS, and on waitress.

``localfaas up --tls`` serves the gateway with uvicorn and the local CA's
files (``localfaas.fastpath``), so a fake WSGI gateway that must speak
HTTPS is served the same way: uvicorn with ``cert.pem`` and ``key.pem``,
the app run in threads by a2wsgi.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from wsgiref.types import WSGIApplication

import uvicorn
from a2wsgi import WSGIMiddleware
from waitress import wasyncore

from localfaas.tls import TlsFiles

# How long starting or stopping a server may take before a test fails.
PATIENCE = 10.0


@contextmanager
def serving_https(app: WSGIApplication, files: TlsFiles) -> Iterator[int]:
    """Serve ``app`` over TLS on a free loopback port; yield the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        WSGIMiddleware(cast(Any, app), workers=4),
        ssl_certfile=files.cert,
        ssl_keyfile=files.key,
        ws="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        # An answer still streaming must not hold the test's teardown.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, daemon=True
    )
    thread.start()
    try:
        _wait_started(server, thread)
        yield int(listener.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
        listener.close()
        assert not thread.is_alive(), "the HTTPS test server did not stop"


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    """Return once ``server`` accepts; fail at once if its thread died.

    The socket listens already, so a server that never starts would leave
    a client waiting for an answer instead of failing.
    """
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the HTTPS test server did not start")
        time.sleep(0.01)


def stop_waitress(server: Any, thread: threading.Thread) -> None:
    """Stop a waitress server whose loop runs in ``thread``, from outside.

    waitress has no stop call for this. Closing its sockets from here while
    its loop sits in select() on them fails with EBADF, so the closing runs
    inside the loop, through its trigger (a pipe). The trigger stays open
    until the loop and the worker threads are done: the loop may run the
    closing on a worker's wake-up before our own pull has written to the
    pipe, and a worker finishing late pulls it too.
    """
    trigger = server.trigger

    def close_all_but_trigger() -> None:
        for dispatcher in list(server._map.values()):
            if dispatcher is server:
                # The server's own close() would close the trigger as well.
                wasyncore.dispatcher.close(server)
            elif dispatcher is not trigger:
                dispatcher.close()
        trigger.del_channel()  # an empty map ends the loop

    trigger.pull_trigger(close_all_but_trigger)
    thread.join(PATIENCE)
    server.task_dispatcher.shutdown()
    trigger.close()
