"""The exceptions ratchetpy raises, in one tree.

.. code-block:: text

    RatchetError               base of everything below
    ├── ProtocolError          someone broke HTTP, WebSocket or WAMP rules
    │   ├── RemoteProtocolError    the peer did: carries the HTTP status or close code to answer
    │   │   ├── wamp.ProtocolViolation   a WAMP client broke WAMP's rules (wamp.InvalidUri)
    │   │   └── wamp.SerializationError  a WAMP message could not be decoded
    │   └── LocalProtocolError     this side did (a bad close code, sending after close, ...)
    │       └── wamp.EncodeError       a value cannot be expressed in a WAMP serializer's format
    ├── ConnectionClosed       the connection is gone; raised by awaiting calls such as drain()
    ├── ServerError            the server could not do what it was asked (bind, start twice)
    ├── AuthenticationFailed   an Authenticate check refuses a request (401 or 403)
    ├── InvalidSession         a session cookie failed verification (read as an empty session)
    └── wamp.WampError         a WAMP handler refuses a request; the client gets its error URI

Exceptions raised by user handlers are not wrapped: they reach ``on_error`` as they were raised.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "LocalProtocolError",
    "ProtocolError",
    "RatchetError",
    "RemoteProtocolError",
    "ServerError",
]


class RatchetError(Exception):
    """Base class of every exception ratchetpy raises itself."""


class ProtocolError(RatchetError):
    """HTTP or WebSocket rules were broken; subclasses say by whom."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    ``close_code`` is the WebSocket close code to answer with (1002 protocol error, 1007 bad
    UTF-8, 1009 too big, ...); ``http_status`` the HTTP status for errors before the upgrade.
    """

    def __init__(self, message: str, *, close_code: int = 1002, http_status: int = 400) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.http_status = http_status


class LocalProtocolError(ProtocolError):
    """This side tried something the protocol forbids: a bug in the caller, not the peer."""


class ConnectionClosed(RatchetError):
    """The connection is closed; ``code`` and ``reason`` say how, when known."""

    def __init__(
        self, message: str = "connection closed", *, code: int = 1006, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ServerError(RatchetError):
    """The server could not do what it was asked: binding failed, started twice, ..."""
