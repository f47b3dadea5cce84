"""HTTP data types, sans-IO: request headers, the parsed request, responses.

What every layer passes around: :class:`HttpRequest` (Ratchet's ``$conn->httpRequest``) as
:class:`~ratchetpy.HttpServer` parsed it, :class:`HttpResponse` that an HTTP component returns,
and :func:`http_response` to encode one by hand. No I/O and no components here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "NO_SESSION",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "host_matches",
    "http_response",
    "reason_phrase",
    "split_host",
]

#: The session of a request that has none: empty and read-only, shared by all of them.
NO_SESSION: Mapping[str, Any] = MappingProxyType({})


class Headers:
    """Request headers: case-insensitive names, repeated names kept in order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = [(name.lower(), value) for name, value in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [value for key, value in self._items if key == name]

    def items(self) -> list[tuple[str, str]]:
        """All (lower-case name, value) pairs in order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key for key, _ in self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _parse_cookies(values: list[str]) -> dict[str, str]:
    # Browsers send "a=1; b=2". Be lenient (as browsers are) rather than reject the request.
    cookies: dict[str, str] = {}
    for value in values:
        for part in value.split(";"):
            name, sep, val = part.strip().partition("=")
            if sep and name:
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = val[1:-1]
                cookies.setdefault(name, val)
    return cookies


@dataclass(frozen=True)
class HttpRequest:
    """A parsed request head (Ratchet's ``$conn->httpRequest``).

    ``path`` and ``query`` are as sent (percent-encoded); ``query_params`` and ``cookies`` are
    decoded. ``body`` holds the request body when there was one. ``path_params`` holds what a
    route pattern such as ``/rooms/{room}`` captured (decoded). ``scheme`` is ``"https"`` on TLS
    connections (or when a trusted proxy says so), else ``"http"``.

    ``user_id`` is who the client is, once an :class:`~ratchetpy.Authenticate` hook
    accepted the request (``None`` before, or without one). ``session`` is the web
    application's session read from its cookie by a
    :class:`~ratchetpy.SessionProvider`: a read-only mapping, empty without one. Both
    are recorded on the request itself, not on a copy, so every layer that holds it, and
    ``conn.http_request``, sees them.
    """

    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"
    body: bytes = b""
    path_params: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "http"
    path: str = field(init=False)
    query: str = field(init=False)
    cookies: dict[str, str] = field(init=False)
    # Keyword-only and left out of comparisons: they say who sent the request, not what it is.
    # In __init__ so that replace() (the router adding path_params) carries them over.
    user_id: str | None = field(default=None, compare=False, kw_only=True)
    # Not in repr: a session may hold secrets (CSRF tokens) that must not reach a log line.
    session: Mapping[str, Any] = field(
        default_factory=lambda: NO_SESSION, compare=False, repr=False, kw_only=True
    )

    def __post_init__(self) -> None:
        path, _, query = self.target.partition("?")
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "cookies", _parse_cookies(self.headers.get_all("cookie")))

    def attach(
        self, *, user_id: str | None = None, session: Mapping[str, Any] | None = None
    ) -> None:
        """Record ``user_id`` and/or ``session`` (those not ``None``) on this very request.

        The one change a request sees after parsing, made by the authentication and session
        layers (:class:`~ratchetpy.Authenticate`, :class:`~ratchetpy.SessionProvider`, or a
        layer of your own that finds out who the client is). In place rather than on a
        ``replace()`` copy because layers below have already stored this object
        (``conn.http_request``) and must see who the client turned out to be; a copy would
        leave them with a stale, anonymous request.
        """
        if user_id is not None:
            object.__setattr__(self, "user_id", user_id)
        if session is not None:
            object.__setattr__(self, "session", session)

    @property
    def query_params(self) -> dict[str, list[str]]:
        """The query string decoded: ``{"name": ["value", ...]}``."""
        return parse_qs(self.query, keep_blank_values=True)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        return self.headers.get(name, default)


def split_host(value: str, default_port: int | None = None) -> tuple[str, int | None]:
    """A ``Host`` header (or an origin's host part) as ``(host, port)``: ``"Example.COM.:8080"``
    is ``("example.com", 8080)``. Lower case, without the final dot of a fully qualified name;
    IPv6 literals keep their brackets (``"[::1]"``); ``default_port`` when none is given."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        host += "]"
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = value.partition(":")
        host = host.removesuffix(".")
    if port_text.isascii() and port_text.isdigit():
        return host, int(port_text)
    return host, default_port


def host_matches(pattern: str, host: str) -> bool:
    """Whether ``host`` (as :func:`split_host` returns it) is what ``pattern`` names: ``"*"``
    is any host, ``"*.example.com"`` any subdomain of example.com (not example.com itself),
    anything else that very host (``pattern`` in lower case, without a port)."""
    if pattern.startswith("*"):
        return pattern == "*" or (host.endswith(pattern[1:]) and len(host) > len(pattern) - 1)
    return host == pattern


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``"Not Found"``), or ``""`` for unknown ones."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def http_response(
    status: int,
    body: bytes | str = b"",
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
    close: bool = True,
) -> bytes:
    """Encode a complete HTTP/1.1 response: ``conn.send(http_response(200, page))``.

    ``Content-Type`` and ``Content-Length`` are set unless the status forbids a body (1xx,
    204, 304) and there is none; ``Connection: close`` too unless ``close=False``.
    """
    if isinstance(body, str):
        body = body.encode()
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body or (status not in (204, 304) and status >= 200):
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class HttpResponse:
    """A plain HTTP answer. An HTTP component returns one from ``on_open`` to answer a request
    and leave the connection to :class:`HttpServer`, which writes it (no body for ``HEAD``),
    keeps the connection alive when the client wants that, and reads the next request.

    ``body`` may be ``str`` (sent as UTF-8). ``headers`` are extra header lines;
    ``Content-Type`` and ``Content-Length`` are added from ``content_type`` and the body.
    """

    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode())
        object.__setattr__(self, "headers", tuple(self.headers))

    @classmethod
    def error(
        cls, status: int, why: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> HttpResponse:
        """An error answer whose body says what went wrong: ``"404 Not Found: <why>"``."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        # nosniff: the body echoes parts of the request; no browser should run it as a page.
        headers = (*headers, ("X-Content-Type-Options", "nosniff"))
        return cls(status, f"{status} {phrase}: {why}\n", headers=headers)
