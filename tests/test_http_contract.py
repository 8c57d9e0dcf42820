"""The python3-http handler contract, driven in-process through WSGI."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask import Response

from faas_runtime import Context, Event, Unauthorized
from faas_runtime._http import HandlerApp


def client(handle: Callable[[Event, Context], Any]) -> httpx.Client:
    """An HTTP client whose requests go straight to ``handle``."""
    transport = httpx.WSGITransport(app=HandlerApp(handle))
    return httpx.Client(transport=transport, base_url="http://function")


def test_event_carries_the_raw_request() -> None:
    """body is bytes as sent; headers, method, query and path are exposed."""
    seen: dict[str, Any] = {}

    def handle(event: Event, context: Context) -> str:
        seen.update(
            body=event.body,
            header=event.headers.get("x-custom"),
            method=event.method,
            q=event.query["q"],
            qs=event.query.getlist("q"),
            path=event.path,
            auth=event.auth,
            hostname=context.hostname,
        )
        return "ok"

    body = bytes(range(256))
    client(handle).put("/a/b?q=1&q=2", content=body, headers={"X-Custom": "v"})
    assert seen["body"] == body
    assert seen["header"] == "v"
    assert seen["method"] == "PUT"
    assert (seen["q"], seen["qs"]) == ("1", ["1", "2"])
    assert seen["path"] == "/a/b"
    assert seen["auth"] is None
    assert seen["hostname"]


@pytest.mark.parametrize(
    ("result", "status", "body", "content_type"),
    [
        (None, 200, b"", "text/html; charset=utf-8"),
        ("hi", 200, b"hi", "text/html; charset=utf-8"),
        ({"statusCode": 201, "body": "made"}, 201, b"made", "text/html; charset=utf-8"),
        ({"body": {"a": 1}}, 200, b'{"a": 1}\n', "application/json"),
        # python3-http reads only statusCode/body/headers: no body, no text.
        ({"message": "ignored"}, 200, b"", "text/html; charset=utf-8"),
        ({"body": [1, 2]}, 200, b"[1, 2]", "text/html; charset=utf-8"),
        ({"body": 42}, 200, b"42", "text/html; charset=utf-8"),
        ({"body": b"\x00\xff"}, 200, b"\x00\xff", "text/html; charset=utf-8"),
        (("gone", 410), 410, b"gone", "text/html; charset=utf-8"),
        (({"e": 1}, 400), 400, b'{"e": 1}\n', "application/json"),
        ([1, 2], 200, b"[1, 2]\n", "application/json"),
    ],
)
def test_return_conventions(
    result: Any, status: int, body: bytes, content_type: str
) -> None:
    """Each return shape python3-http accepts maps to the same response."""
    response = client(lambda e, c: result).get("/")
    assert response.status_code == status
    assert response.content == body
    assert response.headers["content-type"] == content_type


def test_dict_headers_are_sent_and_override_the_default_type() -> None:
    """headers in the returned dict reach the client as given."""
    result = {
        "statusCode": 200,
        "body": "<x/>",
        "headers": {"Content-Type": "application/xml", "X-Id": "7"},
    }
    response = client(lambda e, c: result).get("/")
    assert response.headers["content-type"] == "application/xml"
    assert response.headers["x-id"] == "7"


def test_tuple_with_headers() -> None:
    """(body, status, headers) works as in Flask."""
    response = client(lambda e, c: ("x", 202, {"X-A": "b"})).get("/")
    assert (response.status_code, response.headers["x-a"]) == (202, "b")


def test_a_flask_response_object_is_served_as_is() -> None:
    """Handlers that return a Flask Response keep working without Flask."""
    response = client(lambda e, c: Response(b"\x89PNG", 200, mimetype="image/png")).get(
        "/"
    )
    assert response.content == b"\x89PNG"
    assert response.headers["content-type"] == "image/png"


def test_handler_exception_is_a_500_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A crash in the handler answers 500 and logs the traceback."""

    def handle(event: Event, context: Context) -> None:
        raise RuntimeError("boom")

    response = client(handle).post("/", headers={"X-Call-Id": "c-1"})
    assert response.status_code == 500
    assert b"boom" not in response.content
    assert "call_id=c-1" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def test_auth_error_from_handler_gets_its_status_and_challenge() -> None:
    """A per-path check that refuses answers like the middleware would."""

    def handle(event: Event, context: Context) -> None:
        raise Unauthorized("no", headers=[("WWW-Authenticate", 'Basic realm="x"')])

    response = client(handle).get("/admin")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="x"'


def test_chunked_request_body_arrives_whole() -> None:
    """A body sent without Content-Length is still read completely."""
    seen: list[bytes] = []

    def handle(event: Event, context: Context) -> str:
        seen.append(event.body)
        return "ok"

    def chunks() -> Any:
        yield b"abc"
        yield b"def"

    client(handle).post("/", content=chunks())
    assert seen == [b"abcdef"]


def test_json_body_round_trip() -> None:
    """The handler can parse event.body as JSON and answer a dict."""

    def handle(event: Event, context: Context) -> dict[str, Any]:
        return {"body": {"got": json.loads(event.body)}}

    response = client(handle).post("/", json={"a": [1, 2]})
    assert response.json() == {"got": {"a": [1, 2]}}
