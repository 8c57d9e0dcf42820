"""The values that flow through authentication: request in, identity out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively.

    Go clients canonicalise header names (``--sign hmac`` arrives as
    ``Hmac``) and WSGI upper-cases them, so names are never compared as
    written. A header sent twice arrives joined with ``", "`` (as WSGI
    servers join them), which no signature value parses as: a duplicated
    credential is therefore refused rather than guessed at.
    """

    __slots__ = ("_items",)

    def __init__(
        self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()
    ) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._items:
                value = f"{self._items[key][1]}, {value}"
            self._items[key] = (name, value)

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Headers:
        """The headers of a WSGI request, read from it on demand."""
        return _EnvironHeaders(environ)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(self)!r})"


class _EnvironHeaders(Headers):
    """A view of a WSGI environ's headers, built only when iterated.

    Verifiers look up one or two names per request; translating a name to
    its environ key costs less than collecting every header first.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ
        self._items = {}

    def get(self, name: str, default: Any = None) -> Any:
        """The header's value, or ``default``; no exception on the way."""
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self._environ.get(key)
        if value is None or (value == "" and key.startswith("CONTENT_")):
            return default
        return str(value)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        for key, value in self._environ.items():
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Headers({sorted(self)!r})"


@dataclass(frozen=True)
class AuthRequest:
    """What a verifier may look at: the request exactly as it arrived."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes = b""


@dataclass(frozen=True)
class Identity:
    """Who or what was authenticated.

    ``subject`` is safe to log: a user name, a key or token id, a JWT
    ``sub``, or a webhook delivery id; never the secret itself.
    """

    scheme: str
    subject: str
    claims: Mapping[str, Any] = field(default_factory=dict)


class Verifier(Protocol):
    """One auth scheme, configured, ready to check requests."""

    scheme: str
    needs_body: bool

    def verify(self, request: AuthRequest) -> Identity:
        """Return who sent ``request``, or raise an ``AuthError``."""
        ...
