"""The JSON the admin API speaks: deployments in, function status out.

Field names, their order and the omit-when-empty rules follow
faas-provider's Go types (gateway-contract.md §7). Go decodes JSON keys
case-insensitively and ignores unknown ones, so this does too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_NAMESPACE = "openfaas-fn"

# DNS-1123 label: what faas-netes accepts as a function name (§12).
SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A repository, optional tag and optional digest, as docker parses them.
IMAGE_REF = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"
    r"(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)


class RequestError(Exception):
    """A request the API refuses; ``status`` and ``body`` are the answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


@dataclass
class FunctionRequest:
    """A FunctionDeployment: the body of POST and PUT /system/functions."""

    service: str
    image: str
    namespace: str = ""
    envProcess: str = ""
    envVars: dict[str, str] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] | None = None
    requests: dict[str, str] | None = None
    readOnlyRootFilesystem: bool = False
    createdAt: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def min_replicas(self) -> int:
        """``com.openfaas.scale.min`` when a positive integer, else 1."""
        return _positive(self.labels.get("com.openfaas.scale.min"), 1)

    @property
    def max_replicas(self) -> int:
        """``com.openfaas.scale.max``, at most 5 as in OpenFaaS CE."""
        return min(_positive(self.labels.get("com.openfaas.scale.max"), 5), 5)


_STRING_MAPS = ("envVars", "labels", "annotations")
_STRING_LISTS = ("constraints", "secrets")


def parse_json(body: bytes, action: str = "unmarshal") -> dict[str, Any]:
    """A JSON object, or the 400 a Go provider would answer."""
    try:
        value = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        detail = "unexpected end of JSON input" if not body.strip() else str(exc)
        raise RequestError(400, f"failed to {action} request: {detail}\n") from exc
    if not isinstance(value, dict):
        raise RequestError(400, f"failed to {action} request: expected a JSON object\n")
    return {key.lower(): item for key, item in value.items()}


def parse_deployment(body: bytes) -> FunctionRequest:
    """Decode and validate a deployment in faas-netes's order (§8.2)."""
    raw = parse_json(body)
    request = FunctionRequest(
        service=_string(raw, "service"),
        image=_string(raw, "image"),
        namespace=_string(raw, "namespace"),
        envProcess=_string(raw, "envProcess"),
        readOnlyRootFilesystem=bool(raw.get("readonlyrootfilesystem") or False),
    )
    for name in _STRING_MAPS:
        setattr(request, name, _string_map(raw, name))
    for name in _STRING_LISTS:
        setattr(request, name, _string_list(raw, name))
    request.limits = _resources(raw, "limits")
    request.requests = _resources(raw, "requests")
    validate(request)
    return request


def validate(request: FunctionRequest) -> None:
    """The checks faas-netes makes before it deploys anything."""
    if not request.service:
        raise RequestError(400, "validation failed: service: is required\n")
    if not SERVICE_NAME.match(request.service) or len(request.service) > 63:
        raise RequestError(
            400,
            f"validation failed: service: ({request.service}) is invalid, "
            "must be a valid DNS entry\n",
        )
    if not request.image:
        raise RequestError(400, "validation failed: image: is required\n")
    if not IMAGE_REF.match(request.image):
        raise RequestError(
            400,
            f"validation failed: image: ({request.image}) is not a valid "
            "repository/tag\n",
        )
    for key, value in request.envVars.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise RequestError(
                400,
                f"validation failed: envVars: ({key!r}) cannot be an environment "
                "variable: names need no '=', names and values no NUL\n",
            )
    for label in ("com.openfaas.scale.min", "com.openfaas.scale.max"):
        # OpenFaaS CE refuses more than 5 replicas (§8.2).
        if _positive(request.labels.get(label), 0) > 5:
            raise RequestError(
                400,
                f"validation failed: {label} above 5 not available for "
                "Community Edition\n",
            )
    check_namespace(request.namespace)


def check_namespace(namespace: str | None) -> str:
    """The one namespace localfaas serves, as OpenFaaS CE on Kubernetes."""
    if namespace and namespace != DEFAULT_NAMESPACE:
        raise RequestError(400, f"namespace must be: {DEFAULT_NAMESPACE}\n")
    return DEFAULT_NAMESPACE


def status_json(
    request: FunctionRequest,
    *,
    replicas: int,
    available: int,
    invocations: float,
) -> dict[str, Any]:
    """A FunctionStatus: what was deployed, echoed, plus live counts."""
    out: dict[str, Any] = {"name": request.service, "image": request.image}
    out["namespace"] = DEFAULT_NAMESPACE
    optional: list[tuple[str, Any]] = [
        ("envProcess", request.envProcess),
        ("envVars", request.envVars),
        ("constraints", request.constraints),
        ("secrets", request.secrets),
        ("labels", {**request.labels, "faas_function": request.service}),
        ("annotations", request.annotations),
        ("limits", request.limits),
        ("requests", request.requests),
        ("readOnlyRootFilesystem", request.readOnlyRootFilesystem),
        ("invocationCount", invocations),
        ("replicas", replicas),
        ("availableReplicas", available),
    ]
    out.update((key, value) for key, value in optional if value)
    if "invocationCount" in out and float(invocations).is_integer():
        out["invocationCount"] = int(invocations)
    out["createdAt"] = request.createdAt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def _positive(raw: str | None, default: int) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        return default
    return value if value > 0 else default


def _string(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name.lower())
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _type_error(name, "string", value)
    return value


def _string_map(raw: dict[str, Any], name: str) -> dict[str, str]:
    value = raw.get(name.lower())
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise _type_error(name, "object of strings", value)
    return dict(value)


def _string_list(raw: dict[str, Any], name: str) -> list[str]:
    value = raw.get(name.lower())
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _type_error(name, "array of strings", value)
    return list(value)


def _resources(raw: dict[str, Any], name: str) -> dict[str, str] | None:
    resources = _string_map(raw, name)
    return resources or None


def _type_error(name: str, expected: str, value: Any) -> RequestError:
    got = type(value).__name__
    return RequestError(
        400,
        f"failed to unmarshal request: field {name} must be a JSON {expected}, "
        f"got {got}\n",
    )
