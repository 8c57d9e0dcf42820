"""The python3-flask handler contract: ``handle(req)``, on Flask.

As in OpenFaaS's python3-flask template, ``req`` is the body as text, or as
bytes when ``RAW_BODY`` is ``true`` or ``1`` (any case), only GET and POST
are routed, and whatever ``handle`` returns goes to Flask unchanged. An auth
error raised by a per-path check in the handler gets its proper answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from ._errors import AuthError, ConfigError
from ._middleware import MISCONFIGURED
from ._middleware import log as auth_log

FlaskHandler = Callable[[Any], Any]


def raw_body_enabled() -> bool:
    """``RAW_BODY`` as python3-flask reads it."""
    return os.getenv("RAW_BODY", "").strip().lower() in {"true", "1"}


def make_app(handle: FlaskHandler) -> Flask:
    """A Flask app that passes each request's body to ``handle``."""
    app = Flask("function")
    raw = raw_body_enabled()

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/<path:path>", methods=["GET", "POST"])
    def call(path: str) -> Any:
        return handle(request.get_data() if raw else request.get_data(as_text=True))

    @app.errorhandler(AuthError)
    def refused(exc: AuthError) -> Response:
        auth_log.warning(
            "auth refused status=%d reason=%s path=%s",
            exc.status,
            exc.reason,
            request.path,
        )
        return Response(exc.body, exc.status, exc.headers, content_type="text/plain")

    @app.errorhandler(ConfigError)
    def misconfigured(exc: ConfigError) -> Response:
        auth_log.error("auth misconfigured: %s", exc)
        return Response(MISCONFIGURED, 500, content_type="text/plain")

    return app
