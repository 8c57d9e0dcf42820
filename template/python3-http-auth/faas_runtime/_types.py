"""The values that flow through authentication: request in, identity out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

# The two headers CGI (and so WSGI) keeps without the HTTP_ prefix.
_CGI_HEADERS = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH"))


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

    def get(self, name: str, default: Any = None) -> Any:
        """The header's value, or ``default``; no exception on the way."""
        key = _environ_key(name)
        value: str | None = self._environ.get(key)
        if value is None or (value == "" and key in _CGI_HEADERS):
            return default
        return value

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
            elif key in _CGI_HEADERS and value:
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Headers({sorted(self)!r})"


@lru_cache(maxsize=256)
def _environ_key(name: str) -> str:
    """``X-Hub-Signature-256`` -> ``HTTP_X_HUB_SIGNATURE_256``, as WSGI names it.

    Cached: verifiers ask for the same few names on every request.
    """
    key = name.upper().replace("-", "_")
    return key if key in _CGI_HEADERS else "HTTP_" + key


# Named tuples rather than frozen dataclasses: both are made on every
# authenticated request, and a frozen dataclass costs several times as much
# to create (each field goes through object.__setattr__).
class AuthRequest(NamedTuple):
    """What a verifier may look at: the request exactly as it arrived."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes = b""


class Identity(NamedTuple):
    """Who or what was authenticated.

    ``subject`` is safe to log: a user name, a key or token id, a JWT
    ``sub``, or a webhook delivery id; never the secret itself.
    """

    scheme: str
    subject: str
    claims: Mapping[str, Any] = MappingProxyType({})


class Verifier(Protocol):
    """One auth scheme, configured, ready to check requests."""

    scheme: str
    needs_body: bool

    def verify(self, request: AuthRequest) -> Identity:
        """Return who sent ``request``, or raise an ``AuthError``."""
        ...
