"""The emulator end to end: a real ``localfaas up`` driven with the requests
real OpenFaaS clients send (shared/reference/clients.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from emulator_support import Emulator, make_project, start


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for every emulator of the session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> Iterator[Emulator]:
    project = make_project(tmp_path_factory.mktemp("project"))
    running = start(project, cache)
    yield running
    running.stop()


def wait_ready(client: httpx.Client, name: str, timeout: float = 60) -> dict:
    """Poll as ``faas-cli ready NAME`` does, until a replica is available."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/system/function/{name}", params={"usage": "1"})
        if response.status_code == 200 and response.json().get("availableReplicas"):
            return response.json()
        time.sleep(0.2)
    raise AssertionError(f"{name} not ready")


class TestAdminAuth:
    """faas-cli login and what it does after logout."""

    def test_login_with_the_generated_credentials(self, emulator: Emulator) -> None:
        """GET /system/functions with Basic auth is how faas-cli login checks."""
        response = httpx.get(
            f"{emulator.url}/system/functions",
            auth=emulator.auth,
            headers={"User-Agent": "Go-http-client/1.1"},
        )
        assert response.status_code == 200
        mode = (emulator.project / ".localfaas/credentials/basic-auth-password").stat()
        assert mode.st_mode & 0o777 == 0o600

    @pytest.mark.parametrize(
        "authorization", ["Bearer ", "Basic YWRtaW46d3Jvbmc=", "Bearer x.y.z"]
    )
    def test_refusals_are_the_gateways_exact_401(
        self, emulator: Emulator, authorization: str
    ) -> None:
        """Empty Bearer (after faas-cli logout), wrong password, any token."""
        # http.client, because httpx refuses the trailing space Go sends.
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port)
        connection.request(
            "GET", "/system/functions", headers={"Authorization": authorization}
        )
        response = connection.getresponse()
        assert response.status == 401
        assert response.getheader("WWW-Authenticate") == 'Basic realm="Restricted"'
        assert response.read() == b"invalid credentials"
        connection.close()

    def test_functions_and_healthz_need_no_admin_auth(self, emulator: Emulator) -> None:
        """Only /system/ is guarded by the gateway."""
        assert httpx.get(f"{emulator.url}/healthz").status_code == 200
        assert httpx.post(f"{emulator.url}/function/echo").status_code == 200


class TestFunctionsAPI:
    """list, describe, deploy (PUT then POST), scale, delete."""

    def test_list_echoes_the_stack_functions(self, emulator: Emulator) -> None:
        """Each stack function is listed as faas-cli list reads it."""
        with emulator.admin() as client:
            items = {f["name"]: f for f in client.get("/system/functions").json()}
        assert {"echo", "signed"} <= set(items)
        echo = items["echo"]
        assert echo["image"] == "test/echo:latest"
        assert echo["envProcess"] == "python index.py"
        assert echo["labels"]["faas_function"] == "echo"
        assert echo["availableReplicas"] == 1
        assert items["signed"]["secrets"] == ["payload-secret"]

    def test_deploy_put_unknown_is_404_then_post_is_202(
        self, emulator: Emulator
    ) -> None:
        """faas-cli deploy: PUT, and POST the same body on 404."""
        body = {
            "service": "echo2",
            "image": "test/echo:latest",
            "envProcess": "python index.py",
            "envVars": {"auth_scheme": "none"},
            "labels": {},
            "annotations": {"topic": "cron-function"},
        }
        with emulator.admin() as client:
            put = client.put("/system/functions", json=body)
            assert put.status_code == 404
            assert b'deployments.apps "echo2" not found' in put.content
            assert client.post("/system/functions", json=body).status_code == 202
            status = wait_ready(client, "echo2")
            assert status["annotations"] == {"topic": "cron-function"}
            # A second deploy sends only the PUT.
            assert client.put("/system/functions", json=body).status_code == 202

        answer = httpx.post(f"{emulator.url}/function/echo2", content=b"hi")
        assert answer.json()["body"] == "hi"

    def test_deploy_a_command_runs_it_classic_watchdog_style(
        self, emulator: Emulator
    ) -> None:
        """envProcess only: body on stdin, response from stdout."""
        body = {
            "service": "cat",
            "image": "functions/alpine:latest",
            "envProcess": "cat",
        }
        with emulator.admin() as client:
            assert client.post("/system/functions", json=body).status_code == 202
            wait_ready(client, "cat")
        answer = httpx.post(f"{emulator.url}/function/cat.openfaas-fn", content=b"meow")
        assert (answer.status_code, answer.content) == (200, b"meow")

    @pytest.mark.parametrize(
        ("body", "status", "text"),
        [
            (b"", 400, b"failed to unmarshal request: unexpected end of JSON input\n"),
            (b"{bad", 400, b"failed to unmarshal request"),
            (b'{"image":"x"}', 400, b"validation failed: service: is required\n"),
            (
                b'{"service":"Bad_Name","image":"x"}',
                400,
                b"validation failed: service: (Bad_Name) is invalid",
            ),
            (
                b'{"service":"ok","image":"x","secrets":["nope"]}',
                400,
                b'unable to fetch secrets: secrets "nope" not found\n',
            ),
            (
                b'{"service":"ok","image":"quay.io/nothing:1"}',
                400,
                b"is not a function of the loaded stack",
            ),
            (b"service=echo&image=x", 400, b"failed to unmarshal request"),
            (
                b'{"service":"ok","image":"x","envVars":{"A=B":"c"}}',
                400,
                b"cannot be an environment variable",
            ),
            (
                b'{"service":"ok","image":"x","labels":{"com.openfaas.scale.min":"99"}}',
                400,
                b"com.openfaas.scale.min above 5 not available",
            ),
        ],
    )
    def test_malformed_deploys_are_400_with_a_message(
        self, emulator: Emulator, body: bytes, status: int, text: bytes
    ) -> None:
        """Bad JSON, missing fields, bad names, missing secrets: 400 and why."""
        with emulator.admin() as client:
            response = client.post("/system/functions", content=body)
        assert response.status_code == status
        assert text in response.content

    def test_status_of_unknown_function_is_404_empty(self, emulator: Emulator) -> None:
        """faas-cli describe of a missing function."""
        with emulator.admin() as client:
            response = client.get("/system/function/missing", params={"usage": "1"})
        assert (response.status_code, response.content) == (404, b"")

    def test_scale_runs_replicas_round_robin(self, emulator: Emulator) -> None:
        """scale-function to 2: two processes share the calls."""
        with emulator.admin() as client:
            scaled = client.post(
                "/system/scale-function/echo",
                json={"serviceName": "echo", "replicas": 2, "namespace": "openfaas-fn"},
            )
            assert scaled.status_code == 202
            deadline = time.monotonic() + 60
            while client.get("/system/function/echo").json()["availableReplicas"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            pids = {
                httpx.get(f"{emulator.url}/function/echo").json()["pid"]
                for _ in range(6)
            }
            assert len(pids) == 2
            client.post("/system/scale-function/echo", json={"replicas": 1})

    def test_delete_then_invoke_is_404(self, emulator: Emulator) -> None:
        """faas-cli remove: DELETE with functionName; then it is gone."""
        body = {"service": "gone", "image": "x/y:latest", "envProcess": "cat"}
        with emulator.admin() as client:
            client.post("/system/functions", json=body)
            wait_ready(client, "gone")
            deleted = client.request(
                "DELETE", "/system/functions", json={"functionName": "gone"}
            )
            assert deleted.status_code == 202
            again = client.request(
                "DELETE", "/system/functions", json={"functionName": "gone"}
            )
            assert again.status_code == 404
        assert httpx.get(f"{emulator.url}/function/gone").status_code == 404


class TestInvoke:
    """/function/ as faas-cli invoke and the SDKs call it."""

    def test_path_query_and_headers_are_forwarded(self, emulator: Emulator) -> None:
        """The function sees /rest?query, call id, start time, forwarded headers."""
        response = httpx.request(
            "PUT",
            f"{emulator.url}/function/echo.openfaas-fn/a/b/?x=1&y=2",
            content=b"payload",
            headers={"X-Custom": "v", "Content-Type": "text/plain"},
        )
        seen = response.json()
        assert seen["method"] == "PUT"
        assert seen["path"] == "/a/b/"
        assert seen["query"] == "x=1&y=2"
        assert seen["body"] == "payload"
        assert seen["headers"]["X-Custom"] == "v"
        assert seen["headers"]["X-Call-Id"] == response.headers["x-call-id"]
        assert seen["headers"]["X-Start-Time"] == response.headers["x-start-time"]
        assert seen["headers"]["X-Forwarded-For"].startswith("127.0.0.1:")
        assert seen["headers"]["X-Forwarded-Host"] == f"127.0.0.1:{emulator.port}"
        assert seen["headers"]["Connection"] is None
        assert response.headers["x-from-function"] == "yes"
        assert response.headers["x-served-by"].startswith("localfaas/")
        assert response.headers["x-duration-seconds"]

    def test_a_client_call_id_is_kept(self, emulator: Emulator) -> None:
        """An X-Call-Id from the client reaches the function unchanged."""
        response = httpx.get(
            f"{emulator.url}/function/echo", headers={"X-Call-Id": "mine"}
        )
        assert response.json()["headers"]["X-Call-Id"] == "mine"
        assert "x-call-id" not in response.headers

    def test_unknown_function_is_the_gateways_404(self, emulator: Emulator) -> None:
        """The scale-from-zero pre-check's answer, without call-id headers."""
        response = httpx.post(f"{emulator.url}/function/nope.openfaas-fn")
        assert response.status_code == 404
        assert response.content == (
            b"error finding function nope.openfaas-fn: server returned non-200 "
            b"status code (404) for function, nope, body: "
        )
        assert "x-call-id" not in response.headers

    def test_bad_names_are_the_routers_404(self, emulator: Emulator) -> None:
        """Names outside [-a-zA-Z_0-9.] never reach a function."""
        response = httpx.get(f"{emulator.url}/function/bad%20name")
        assert (response.status_code, response.content) == (
            404,
            b"404 page not found\n",
        )

    def test_faas_cli_sign_reaches_the_hmac_function(self, emulator: Emulator) -> None:
        """faas-cli invoke --sign Hmac --key k: admitted; unsigned: 401."""
        body = b"hello"
        digest = hmac.new(b"k", body, hashlib.sha256).hexdigest()
        signed = httpx.post(
            f"{emulator.url}/function/signed.openfaas-fn",
            content=body,
            headers={"Hmac": f"sha256={digest}"},
        )
        assert (signed.status_code, signed.text) == (200, "signed by hmac: hello")
        unsigned = httpx.post(f"{emulator.url}/function/signed", content=body)
        assert unsigned.status_code == 401

    def test_metrics_count_invocations_by_code(self, emulator: Emulator) -> None:
        """OpenFaaS's metric names and labels on /metrics."""
        httpx.get(f"{emulator.url}/function/echo")
        text = httpx.get(f"{emulator.url}/metrics").text
        assert (
            'gateway_function_invocation_total{code="200",function_name="echo.openfaas-fn"}'
            in text
        )
        assert (
            'gateway_function_invocation_started{function_name="echo.openfaas-fn"}'
            in text
        )
        assert "gateway_functions_seconds_bucket" in text
        assert 'gateway_service_count{function_name="echo.openfaas-fn"}' in text


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.received.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A callback receiver on a free port, recording what it gets."""
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cb", received
    server.shutdown()


def wait_for(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class TestAsync:
    """/async-function/ with X-Callback-Url."""

    def test_async_call_with_callback(self, emulator: Emulator, receiver) -> None:  # type: ignore[no-untyped-def]
        """202 with X-Call-Id; the callback carries the result and status."""
        url, received = receiver
        accepted = httpx.post(
            f"{emulator.url}/async-function/echo.openfaas-fn/sub?q=1",
            content=b"later",
            headers={"X-Callback-Url": url},
        )
        assert accepted.status_code == 202
        call_id = accepted.headers["x-call-id"]
        wait_for(lambda: received)
        headers, body = received[0]
        assert headers["X-Function-Status"] == "200"
        assert headers["X-Function-Name"] == "echo.openfaas-fn"
        assert headers["X-Call-Id"] == call_id
        assert len(headers["X-Duration-Seconds"].split(".")[1]) == 6
        seen = json.loads(body)
        assert (seen["path"], seen["query"], seen["body"]) == ("/sub", "q=1", "later")
        assert seen["headers"]["User-Agent"] == "openfaas-ce/nats-queue-worker"

    @pytest.mark.parametrize(
        ("headers", "content", "status"),
        [
            ({"X-Callback-Url": "ftp://x/"}, b"", 400),
            ({"X-Callback-Url": "ht tp://foo.com"}, b"", 400),
            ({}, b"x" * 256_001, 500),
        ],
    )
    def test_async_refusals(
        self, emulator: Emulator, headers: dict[str, str], content: bytes, status: int
    ) -> None:
        """Bad callback URLs are 400; bodies over 256,000 bytes are 500."""
        response = httpx.post(
            f"{emulator.url}/async-function/echo", content=content, headers=headers
        )
        assert response.status_code == status
        if status == 500:
            assert b"request body too large for OpenFaaS CE (256001 bytes)" in (
                response.content
            )

    def test_get_is_405(self, emulator: Emulator) -> None:
        """Only POST queues."""
        assert httpx.get(f"{emulator.url}/async-function/echo").status_code == 405


class TestSecretsAPI:
    """faas-cli secret create/update/list/remove, and the go-sdk's rawValue."""

    def test_secret_lifecycle(self, emulator: Emulator) -> None:
        """create 202, again 409, update 202, list without values, remove 202."""
        with emulator.admin() as client:
            create = client.post(
                "/system/secrets", json={"name": "api-key", "value": "s3"}
            )
            assert create.status_code == 202
            again = client.post(
                "/system/secrets", json={"name": "api-key", "value": "x"}
            )
            assert again.status_code == 409
            update = client.put(
                "/system/secrets", json={"name": "api-key", "value": "n3w"}
            )
            assert update.status_code == 202
            listed = client.get("/system/secrets").json()
            assert {"name": "api-key", "namespace": "openfaas-fn"} in listed
            # The functions' own secret folders are not secrets (a regression:
            # they once lived in the store's folder and were listed).
            names = {item["name"] for item in listed}
            assert not names & {"echo", "signed"}
            assert "n3w" not in json.dumps(listed)
            removed = client.request(
                "DELETE", "/system/secrets", json={"name": "api-key"}
            )
            assert removed.status_code == 202
            gone = client.request("DELETE", "/system/secrets", json={"name": "api-key"})
            assert gone.status_code == 404
            missing = client.put("/system/secrets", json={"name": "nope", "value": "v"})
            assert missing.status_code == 404

    def test_raw_value_wins_and_reaches_the_function(self, emulator: Emulator) -> None:
        """A deployed function reads the bytes of rawValue from its secret file."""
        raw = b"\x00\x01bin"
        with emulator.admin() as client:
            created = client.post(
                "/system/secrets",
                json={
                    "name": "bin-key",
                    "value": "ignored",
                    "rawValue": base64.b64encode(raw).decode(),
                },
            )
            assert created.status_code == 202
            names = [s["name"] for s in client.get("/system/secrets").json()]
            assert "bin-key" in names
        # A function given the secret reads exactly those bytes from
        # /var/openfaas/secrets, through its private mount namespace.
        body = {
            "service": "reader",
            "image": "x/reader:latest",
            "envProcess": "cat /var/openfaas/secrets/bin-key",
            "secrets": ["bin-key"],
        }
        with emulator.admin() as client:
            assert client.post("/system/functions", json=body).status_code == 202
            wait_ready(client, "reader")
        answer = httpx.post(f"{emulator.url}/function/reader")
        if answer.status_code == 200:
            assert answer.content == raw
        else:  # no private mount namespace here: the path is not there
            pytest.skip("private mount namespaces unavailable on this machine")


class TestLogs:
    """/system/logs as faas-cli logs reads it."""

    def test_logs_are_ndjson_of_the_functions_lines(self, emulator: Emulator) -> None:
        """follow=false&name=echo&tail=-1 gives one JSON message per line.

        The runtime writes its log lines in batches (faas_runtime._logs), so
        the call's line may take a moment to arrive.
        """
        httpx.get(f"{emulator.url}/function/echo", headers={"X-Call-Id": "log-me"})
        deadline = time.monotonic() + 5
        with emulator.admin() as client:
            while True:
                response = client.get(
                    "/system/logs",
                    params={"follow": "false", "name": "echo", "tail": "-1"},
                )
                lines = [json.loads(line) for line in response.text.splitlines()]
                if any("call_id=log-me" in line["text"] for line in lines):
                    break
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
        fields = {"name", "namespace", "instance", "timestamp", "text"}
        assert all(fields <= set(line) for line in lines)


class TestResilience:
    """A crashing function, hot reload under load."""

    def test_killed_function_restarts_and_others_keep_serving(
        self, emulator: Emulator
    ) -> None:
        """kill -9 of a replica: the gateway serves, the replica comes back."""
        pid = httpx.get(f"{emulator.url}/function/echo").json()["pid"]
        os.kill(pid, signal.SIGKILL)
        assert httpx.post(f"{emulator.url}/function/signed").status_code == 401
        deadline = time.monotonic() + 30
        while True:
            response = httpx.get(f"{emulator.url}/function/echo")
            if response.status_code == 200 and response.json()["pid"] != pid:
                break
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)

    def test_reload_under_load_fails_no_request(self, emulator: Emulator) -> None:
        """Saving the handler swaps versions while calls keep succeeding."""
        handler = emulator.project / "echo" / "handler.py"
        failures: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client() as client:
                while not stop.is_set():
                    response = client.get(f"{emulator.url}/function/echo")
                    if response.status_code != 200:
                        failures.append(response.status_code)
                    else:
                        versions.add(response.json()["version"])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        handler.write_text(handler.read_text().replace('"v1"', '"v2"'))
        deadline = time.monotonic() + 20
        while "v2" not in versions and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        assert failures == []
        assert "v2" in versions

    def test_syntax_error_keeps_the_old_version(self, emulator: Emulator) -> None:
        """A broken save is reported and the previous code keeps serving."""
        handler = emulator.project / "echo" / "handler.py"
        good = handler.read_text()
        handler.write_text(good + "\ndef broken(:\n")
        wait_for(lambda: "reload failed" in emulator.output())
        assert "SyntaxError" in emulator.output()
        assert httpx.get(f"{emulator.url}/function/echo").status_code == 200
        handler.write_text(good)
