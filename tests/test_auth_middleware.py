"""Auth in front of the handler, configured from the environment.

These drive the real runtime process over HTTP, the way OpenFaaS runs it,
and check that it fails closed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

WHO = """
def handle(event, context):
    auth = event.auth
    return {"body": {"scheme": auth.scheme, "subject": auth.subject}}
"""


def github_headers(key: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Delivery": "d-1"}


def test_auth_scheme_unset_answers_500_and_says_why(function_process) -> None:
    """Forgetting auth_scheme never opens the door."""
    fn = function_process(WHO).start()
    response = httpx.post(fn.url, content=b"x")
    assert response.status_code == 500
    assert "misconfigured" in response.text
    assert "auth_scheme is not set" in fn.stop()


def test_unknown_scheme_answers_500(function_process) -> None:
    """A typo in the scheme is a configuration error, not 'no auth'."""
    fn = function_process(WHO).start(auth_scheme="githb")
    assert httpx.post(fn.url).status_code == 500
    assert "unknown auth scheme 'githb'" in fn.stop()


def test_github_signature_admits_and_tampering_refuses(function_process) -> None:
    """A correct signature reaches the handler; a changed body gets 401."""
    fn = function_process(WHO)
    fn.write_secret("github-webhook-secret", "s3cret\n")
    fn.start(auth_scheme="github")
    body = json.dumps({"zen": "hi"}).encode()

    ok = httpx.post(fn.url, content=body, headers=github_headers("s3cret", body))
    assert ok.status_code == 200
    assert ok.json() == {"scheme": "github", "subject": "d-1"}

    bad = httpx.post(
        fn.url, content=body + b" ", headers=github_headers("s3cret", body)
    )
    assert bad.status_code == 401
    assert "s3cret" not in fn.stop()


def test_missing_secret_denies_with_500(function_process) -> None:
    """No secret file: the request is refused, and the log names the file."""
    fn = function_process(WHO).start(auth_scheme="github")
    body = b"{}"
    response = httpx.post(fn.url, content=body, headers=github_headers("k", body))
    assert response.status_code == 500
    assert "github-webhook-secret" in fn.stop()


def test_rotated_secret_is_read_without_restart(function_process) -> None:
    """Editing the secret file changes the accepted keys at once."""
    fn = function_process(WHO)
    path = fn.write_secret("payload-secret", "old\n")
    fn.start(auth_scheme="hmac")
    body = b"hello"
    old = {"Hmac": "sha256=" + hmac.new(b"old", body, hashlib.sha256).hexdigest()}
    new = {"Hmac": "sha256=" + hmac.new(b"new", body, hashlib.sha256).hexdigest()}
    assert httpx.post(fn.url, content=body, headers=old).status_code == 200

    # The runtime looks at the file at most once a second.
    path.write_text("new\nold\n")
    time.sleep(1.1)
    assert httpx.post(fn.url, content=body, headers=new).status_code == 200
    assert httpx.post(fn.url, content=body, headers=old).status_code == 200

    path.write_text("new\n")
    time.sleep(1.1)
    assert httpx.post(fn.url, content=body, headers=old).status_code == 401


def test_faas_cli_sign_vector_over_http(function_process) -> None:
    """faas-cli invoke --sign hmac --key k, body hello, is admitted."""
    fn = function_process(WHO)
    fn.write_secret("payload-secret", "k")
    fn.start(auth_scheme="hmac")
    value = "sha256=406e4b43f87095aa86ca6299d25e875921fefa180f02043bb29bec5681c0c2d0"
    # Go canonicalises the header name: it arrives as "Hmac".
    response = httpx.post(fn.url, content=b"hello", headers={"Hmac": value})
    assert response.status_code == 200


def test_health_needs_no_credentials(function_process) -> None:
    """Probes answer even when every other path needs auth."""
    fn = function_process(WHO)
    fn.write_secret("payload-secret", "k")
    fn.start(auth_scheme="hmac")
    assert httpx.get(f"{fn.url}/_/health").status_code == 200
    assert httpx.get(fn.url).status_code == 401


@pytest.mark.parametrize("header", ["X-Hub-Signature-256", "x-hub-signature-256"])
def test_header_names_are_case_insensitive(function_process, header: str) -> None:
    """However the sender spells the header, it is found."""
    fn = function_process(WHO)
    fn.write_secret("github-webhook-secret", "k")
    fn.start(auth_scheme="github")
    value = github_headers("k", b"b")["X-Hub-Signature-256"]
    assert httpx.post(fn.url, content=b"b", headers={header: value}).status_code == 200


def test_flask_template_authenticates_too(function_process) -> None:
    """python3-flask-auth runs the same middleware in front of Flask."""
    handler = """
from faas_runtime import current_identity

def handle(req):
    return f"{current_identity().subject}:{req}"
"""
    fn = function_process(handler, template="python3-flask-auth")
    fn.write_secret("github-webhook-secret", "k")
    fn.start(auth_scheme="github")
    body = b"payload"
    ok = httpx.post(fn.url, content=body, headers=github_headers("k", body))
    assert (ok.status_code, ok.text) == (200, "d-1:payload")
    assert httpx.post(fn.url, content=body).status_code == 401


def test_per_path_check_from_handler_code(function_process) -> None:
    """authenticate() inside the handler guards one path only."""
    handler = """
from faas_runtime import authenticate

def handle(event, context):
    if event.path.startswith("/admin"):
        authenticate(event, "hmac", secret="admin-key", header="X-Sig")
        return "admin"
    return "public"
"""
    fn = function_process(handler)
    fn.write_secret("admin-key", "k")
    fn.start(auth_scheme="none")
    assert httpx.get(f"{fn.url}/").text == "public"
    assert httpx.get(f"{fn.url}/admin").status_code == 401
    signed = {"X-Sig": "sha256=" + hmac.new(b"k", b"", hashlib.sha256).hexdigest()}
    assert httpx.get(f"{fn.url}/admin", headers=signed).text == "admin"
