"""The WebSocket opening handshake, server side (RFC 6455 §4.2), sans-IO.

:func:`parse_upgrade` checks an :class:`~ratchetpy.HttpRequest` and raises
:class:`~ratchetpy.exceptions.RemoteProtocolError` carrying the HTTP status to refuse it with;
:func:`accept_response` encodes the ``101 Switching Protocols`` answer. The accept token comes
from wsproto.

The request head was already parsed once by h11 in HttpServer; validating its fields here,
instead of handing them to wsproto's handshake (which serializes and re-parses them with h11),
takes the handshake's CPU cost from about 105 µs to under 10 µs.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass

from wsproto.utilities import generate_accept_token

from ..exceptions import RemoteProtocolError
from .http import HttpRequest

__all__ = ["SUPPORTED_VERSION", "UpgradeRequest", "accept_response", "parse_upgrade"]

#: The only WebSocket protocol version there is (RFC 6455); sent back with 426 otherwise.
SUPPORTED_VERSION = "13"


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """What a valid upgrade request asks for."""

    key: str
    subprotocols: tuple[str, ...]
    extensions: tuple[str, ...]  # Sec-WebSocket-Extensions header values, as sent


def _tokens(values: Iterable[str]) -> list[str]:
    return [token.strip() for value in values for token in value.split(",") if token.strip()]


def parse_upgrade(request: HttpRequest) -> UpgradeRequest:
    """Check that ``request`` is a WebSocket opening handshake we can accept.

    Raises :class:`RemoteProtocolError` with ``http_status`` 405 (not GET), 426 (no
    ``Upgrade: websocket``, or a version other than 13: answer with
    ``Sec-WebSocket-Version: 13``) or 400 (anything else malformed), and a message that says
    which header is wrong.
    """
    headers = request.headers
    if request.method != "GET":
        raise RemoteProtocolError("a WebSocket handshake must be a GET request", http_status=405)
    upgrade = _tokens(headers.get_all("upgrade"))
    if not any(token.lower() == "websocket" for token in upgrade):
        raise RemoteProtocolError(
            "this is a WebSocket endpoint: connect with a WebSocket client "
            "(the request has no 'Upgrade: websocket' header)",
            http_status=426,
        )
    if request.http_version not in ("1.1", "2", "2.0"):
        raise RemoteProtocolError("a WebSocket handshake needs HTTP/1.1", http_status=400)
    if headers.get("host") is None:
        raise RemoteProtocolError("missing header 'Host'", http_status=400)
    if not any(token.lower() == "upgrade" for token in _tokens(headers.get_all("connection"))):
        raise RemoteProtocolError("missing header 'Connection: Upgrade'", http_status=400)
    version = headers.get("sec-websocket-version")
    if version is None:
        raise RemoteProtocolError("missing header 'Sec-WebSocket-Version'", http_status=400)
    if version.strip() != SUPPORTED_VERSION:
        raise RemoteProtocolError(
            f"unsupported WebSocket version {version.strip()!r}: this server speaks 13",
            http_status=426,
        )
    keys = headers.get_all("sec-websocket-key")
    if len(keys) != 1:
        raise RemoteProtocolError("missing or repeated header 'Sec-WebSocket-Key'", http_status=400)
    key = keys[0].strip()
    try:
        raw_key = b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw_key = b""
    if len(raw_key) != 16:
        raise RemoteProtocolError("'Sec-WebSocket-Key' must be 16 bytes in base64", http_status=400)
    return UpgradeRequest(
        key=key,
        subprotocols=tuple(_tokens(headers.get_all("sec-websocket-protocol"))),
        extensions=tuple(headers.get_all("sec-websocket-extensions")),
    )


def accept_response(
    key: str, *, subprotocol: str | None = None, extensions: str | None = None
) -> bytes:
    """The ``101 Switching Protocols`` response accepting the handshake with ``key``."""
    accept = generate_accept_token(key.encode("ascii")).decode("ascii")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
