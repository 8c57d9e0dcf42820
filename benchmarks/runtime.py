"""How much the function runtime costs over bare waitress, and HMAC over none.

    python benchmarks/runtime.py [--seconds 5] [--rounds 3] [--connections 8]

Ratios printed (targets from shared/reference/performance.md):
- runtime hello / bare WSGI hello on waitress: >= 0.7 (OpenFaaS's
  python3-http behind of-watchdog measures 0.31-0.37 here);
- GitHub-HMAC-verified 1 KiB POST / the same POST unauthenticated: >= 0.95.

Both sides of the HMAC ratio get the same bytes, signature header included
(a function without auth ignores it), so the ratio is the cost of turning
verification on, not of parsing one more header.

A third row, with no target, is the floor under that ratio: a function
without auth whose handler only computes the body's HMAC-SHA256, with the
key absorbed once as the verifier keeps it. No verifier can cost less than
the MAC it has to compute, so this row says how close to 0.95 any verifier
on this machine can come.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
from contextlib import ExitStack

from _harness import (
    Target,
    alternate,
    free_port,
    function_folder,
    lua_post,
    process,
    report,
    require_wrk,
)

HELLO = """
def handle(event, context):
    return {"statusCode": 200, "body": "Hello from OpenFaaS!"}
"""

BARE = """
import sys
import waitress

def app(environ, start_response):
    if environ.get("wsgi.input") is not None:
        environ["wsgi.input"].read()
    body = b"Hello from OpenFaaS!"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]

waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8,
               _quiet=True)
"""

KEY = "benchmark-key"

HASHING = f"""
import hmac

_KEY = hmac.new({KEY.encode()!r}, digestmod="sha256")

def handle(event, context):
    mac = _KEY.copy()
    mac.update(event.body)
    mac.digest()
    return {{"statusCode": 200, "body": "Hello from OpenFaaS!"}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    binary = require_wrk()

    body = bytes(range(256)) * 4
    digest = hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()
    signed = lua_post(body, {"X-Hub-Signature-256": f"sha256={digest}"})

    with ExitStack() as stack:
        bare_port, none_port, hmac_port = free_port(), free_port(), free_port()
        floor_port = free_port()
        app = function_folder(HELLO)
        hashing = function_folder(HASHING)
        (app.parent / "secrets" / "github-webhook-secret").write_text(KEY)
        bare = app.parent / "bare.py"
        bare.write_text(BARE)
        stack.enter_context(
            process(
                [sys.executable, str(bare), str(bare_port)],
                {},
                app.parent,
                f"http://127.0.0.1:{bare_port}/",
            )
        )
        servers = ((none_port, "none", app), (hmac_port, "github", app))
        for port, scheme, folder in (*servers, (floor_port, "none", hashing)):
            env = {
                "port": str(port),
                "listen_address": "127.0.0.1",
                "auth_scheme": scheme,
                "secret_mount_path": str(app.parent / "secrets"),
                "lock_file": str(app.parent / f".lock-{port}"),
            }
            stack.enter_context(
                process(
                    [sys.executable, "index.py"],
                    env,
                    folder,
                    f"http://127.0.0.1:{port}/_/health",
                )
            )

        bare_hello = Target("bare", f"http://127.0.0.1:{bare_port}/")
        runtime_hello = Target("runtime", f"http://127.0.0.1:{none_port}/")
        plain_post = Target("none", f"http://127.0.0.1:{none_port}/", signed)
        hmac_post = Target("hmac", f"http://127.0.0.1:{hmac_port}/", signed)
        floor_post = Target("floor", f"http://127.0.0.1:{floor_port}/", signed)
        targets = [bare_hello, runtime_hello, plain_post, hmac_post, floor_post]
        print(
            f"wrk -c{args.connections}, {args.rounds} rounds x {args.seconds}s",
            file=sys.stderr,
        )
        alternate(
            binary,
            targets,
            connections=args.connections,
            seconds=args.seconds,
            rounds=args.rounds,
        )

    ok = report(
        f"function runtime, {args.connections} connections",
        [
            ("runtime hello / bare waitress hello", runtime_hello, bare_hello, 0.7),
            ("HMAC-verified 1 KiB / unauthenticated", hmac_post, plain_post, 0.95),
            ("floor: handler computes the HMAC, no auth", floor_post, plain_post, None),
        ],
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
