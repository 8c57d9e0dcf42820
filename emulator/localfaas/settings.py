"""Every setting of the emulator, with its environment twin.

Names of the environment twins are OpenFaaS's where the gateway has one
(``auth_proxy_url``, ``secret_mount_path``, ``upstream_timeout``...), so a
setting moves between the emulator and a real gateway unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UpOptions:
    """What ``localfaas up`` was asked to do."""

    # The stack file; None means stack.yaml, then stack.yml, in the folder.
    stack_file: Path | None = None
    # Where the gateway listens. Loopback by default: anything else needs
    # TLS or an explicit --insecure (OpenFaaS: HTTPS on untrusted networks).
    host: str = "127.0.0.1"
    port: int = 8080
    tls: bool = False
    insecure: bool = False
    # The emulator's state: environments, builds, queue, credentials.
    # Default: <project>/.localfaas (git-ignored).
    state_dir: Path | None = None
    # /system/ auth: "basic" (default), "plugin" (auth_proxy_url set), or
    # "none" (only on a loopback address).
    admin_auth: str = "basic"
    auth_proxy_url: str = ""
    auth_pass_body: bool = False
    # Folder of basic-auth-user and basic-auth-password; default inside
    # the state folder.
    secret_mount_path: Path | None = None
    # Deadline for one proxied call, as the gateway's upstream_timeout.
    upstream_timeout: float = 60.0
    # Cut /system/logs streams after this long, as write_timeout does.
    write_timeout: float = 60.0
    # Reload handlers on save.
    watch: bool = True
    # Run functions as containers through the Docker engine.
    docker: bool = False
    # Threads for what runs off the event loop: /system/, /async-function/,
    # /metrics and waiting for a replica to start (/function/ runs on the loop).
    threads: int = 16
    # Concurrent async invocations.
    queue_workers: int = 4
