"""How long a function image takes to build cold, and again after an edit.

    python benchmarks/build.py [--template python3-http-auth]
                               [--base-image localfaas/python-base:bookworm]
                               [--verbose]

Builds a sample function with ``localfaas build``'s builder twice: first
with ``--no-cache`` (every step runs), then after a change to handler.py,
with the layer cache. Prints both times in seconds and the ratio
rebuild/cold; with the template's dependencies installed before the
handler is copied, only the last few steps should run again.

Needs a Docker engine (scripts/docker-engine) and, where no registry is
reachable, the local base image (scripts/base-image). Removes the images
it built.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker.errors

from localfaas.builder import build_stack, connect
from localfaas.errors import LocalfaasError
from localfaas.stack import load_stack

HANDLER = """\
def handle(event, context):
    return {"statusCode": 200, "body": "Hello from OpenFaaS!"}
"""

FLASK_HANDLER = """\
def handle(req):
    return "Hello from OpenFaaS!"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="python3-http-auth")
    parser.add_argument("--base-image", default="localfaas/python-base:bookworm")
    parser.add_argument("--verbose", action="store_true", help="print build logs")
    args = parser.parse_args()

    project = Path(tempfile.mkdtemp(prefix="localfaas-bench-build-"))
    client = connect()
    built: list[str] = []
    try:
        return run(client, project, args, built)
    except LocalfaasError as error:
        print(f"Error: {error}\nHint: {error.hint}", file=sys.stderr)
        return 1
    finally:
        remove(client, built)
        client.close()
        shutil.rmtree(project)


def run(client: Any, project: Path, args: argparse.Namespace, built: list[str]) -> int:
    """Build cold, edit the handler, build again; print the times."""
    handler = write_project(project, args.template)
    build_args = {"PYTHON_IMAGE": args.base_image}

    cold = timed_build(client, project, build_args, args.verbose, built, True)
    with handler.open("a") as source:
        source.write("# edited\n")
    rebuild = timed_build(client, project, build_args, args.verbose, built, False)

    print(f"\nbuild of a {args.template} function")
    print(f"  cold (--no-cache):             {cold:7.1f} s")
    print(f"  rebuild after a handler edit:  {rebuild:7.1f} s")
    print(f"  ratio rebuild/cold:            {rebuild / cold:7.2f}")
    return 0


def write_project(project: Path, template: str) -> Path:
    """A stack with one function ``bench``; return its handler.py."""
    (project / "bench").mkdir()
    handler = project / "bench" / "handler.py"
    handler.write_text(FLASK_HANDLER if "flask" in template else HANDLER)
    (project / "bench" / "handler_test.py").write_text("")
    image = f"localfaas-bench/build:{uuid.uuid4().hex[:12]}"
    (project / "stack.yaml").write_text(
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n"
        f"  bench:\n    lang: {template}\n    handler: ./bench\n"
        f"    image: {image}\n"
    )
    return handler


def timed_build(
    client: Any,
    project: Path,
    build_args: dict[str, str],
    verbose: bool,
    built: list[str],
    no_cache: bool,
) -> float:
    """Seconds one build_stack call takes; its image id joins *built*."""
    stack = load_stack(project / "stack.yaml")
    started = time.monotonic()
    built += build_stack(
        stack,
        [],
        shrinkwrap_only=False,
        build_args=build_args,
        progress=progress(verbose),
        no_cache=no_cache,
        client=client,
    )
    return time.monotonic() - started


def progress(verbose: bool) -> Any:
    """Every log line when verbose, else only the step lines."""

    def show(line: str) -> None:
        if verbose or line.startswith(("Step ", "[0]")):
            print(line, file=sys.stderr, flush=True)

    return show


def remove(client: Any, images: list[str]) -> None:
    """Remove the images built, newest first (the older one is untagged)."""
    for image in reversed(images):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)


if __name__ == "__main__":
    sys.exit(main())
