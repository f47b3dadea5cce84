"""Every exception ratchetpy raises, in one tree (all importable from here and from ``ratchetpy``).

.. code-block:: text

    RatchetError                     base of everything below
    ├── ProtocolError                HTTP, WebSocket or WAMP rules were broken
    │   ├── RemoteProtocolError      ... by the peer: carries the HTTP status or close code
    │   │   ├── ProtocolViolation    a WAMP client's message is malformed
    │   │   │   └── InvalidUri       ... or carries a URI WAMP does not allow
    │   │   └── SerializationError   a WebSocket message is no serialized WAMP message
    │   └── LocalProtocolError       ... by this side: a bug in the calling code
    │       └── EncodeError          a value a WAMP serializer cannot carry
    ├── ConnectionClosed             the connection is gone
    │   ├── SessionClosed            a ratchetpy.client WAMP session ended or never started
    │   └── HandshakeRefused         a WebSocket handshake got an HTTP status instead of 101
    ├── ServerError                  the OS refused: address in use, certificate unreadable
    ├── InvalidStateError            misuse: serving twice, a timer after the server stopped
    ├── AuthenticationFailed         an Authenticate check refuses a request (401 or 403)
    ├── InvalidSession               a session cookie failed verification (an empty session follows)
    ├── PublishError                 a publication through the HTTP endpoint failed
    ├── BrokerError                  the broker (Redis) cannot do what was asked
    │   ├── BrokerUnavailable        ... it cannot be reached, or the connection was lost
    │   ├── RedisReplyError          ... Redis refused a command (WRONGPASS, NOPERM, ...)
    │   └── RedisProtocolError       ... what came back is not RESP, or is too large
    └── WampError                    a WAMP handler refuses a request: the client gets its error URI
        └── WampRequestError         the router answered a ratchetpy.client request with ERROR
            └── WampCallError        ... a CALL

Exceptions raised by user handlers are not wrapped: they reach ``on_error`` as they were raised.
Invalid arguments when an object is made or configured raise ``ValueError`` or ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

__all__ = [
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUnavailable",
    "ConnectionClosed",
    "EncodeError",
    "HandshakeRefused",
    "InvalidSession",
    "InvalidStateError",
    "InvalidUri",
    "LocalProtocolError",
    "ProtocolError",
    "ProtocolViolation",
    "PublishError",
    "RatchetError",
    "RedisProtocolError",
    "RedisReplyError",
    "RemoteProtocolError",
    "SerializationError",
    "ServerError",
    "SessionClosed",
    "WampCallError",
    "WampError",
    "WampRequestError",
]


class RatchetError(Exception):
    """Base class of every exception ratchetpy raises itself."""


# -- protocols --------------------------------------------------------------------------------


class ProtocolError(RatchetError):
    """HTTP, WebSocket or WAMP rules were broken; subclasses say by whom."""


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


class ProtocolViolation(RemoteProtocolError):
    """A WAMP client sent a message WAMP forbids: bad shape, bad types, or a type it may not send.

    The spec's answer is ``ABORT`` with reason :attr:`error` (``wamp.error.protocol_violation``)
    and ``{"message": reason}`` as details, then closing the transport. ``reason`` says what was
    wrong, in terms the client's author can act on.
    """

    error: ClassVar[str] = "wamp.error.protocol_violation"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidUri(ProtocolViolation):
    """A well-formed WAMP message carried a URI that breaks WAMP's URI rules.

    Unlike other violations, the spec wants a polite answer here rather than an abort: an
    ``ERROR`` with :attr:`error` (``wamp.error.invalid_uri``) to the request identified by
    ``request_type`` and ``request_id`` (SUBSCRIBE, PUBLISH, CALL, REGISTER), or an ``ABORT`` with
    that reason for a HELLO with a bad realm (``request_id`` is then None). Every other field of
    the message was checked before the URI, so ``request_id`` is a valid id when it is not None.
    """

    error: ClassVar[str] = "wamp.error.invalid_uri"

    def __init__(self, reason: str, *, uri: str, request_type: int, request_id: int | None) -> None:
        super().__init__(reason)
        self.uri = uri
        self.request_type = request_type
        self.request_id = request_id


class SerializationError(RemoteProtocolError):
    """A client's WebSocket message is not a serialized WAMP message.

    ``close_code`` is 1003 (unsupported data) when the frame type does not match the
    subprotocol (text for msgpack, binary for JSON) and 1007 (invalid payload) otherwise; the
    spec wants the transport closed either way, since no WAMP reply can be addressed.
    """


class EncodeError(LocalProtocolError):
    """A message cannot be expressed in a WAMP serializer's format (NaN in JSON, a set, an int
    beyond 64 bits for msgpack, a str with lone surrogates, ...)."""


# -- connections and the server ------------------------------------------------------------------


class ConnectionClosed(RatchetError):
    """The connection is closed; ``code`` and ``reason`` say how, when known."""

    def __init__(
        self, message: str = "connection closed", *, code: int = 1006, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class SessionClosed(ConnectionClosed):
    """A :mod:`ratchetpy.client` WAMP session could not be opened, or ended without the
    client asking.

    ``uri`` is the WAMP reason (``wamp.error.no_such_realm`` from an ABORT,
    ``wamp.close.system_shutdown`` from the router's GOODBYE, ...) or ``None`` when the
    WebSocket itself failed. ``code`` and ``reason`` are the WebSocket close code and reason
    when known (1006 when the connection was lost). ``status`` is the HTTP status when the
    WebSocket handshake was refused (403, 404, ...), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        uri: str | None = None,
        code: int = 1006,
        reason: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, reason=reason)
        self.uri = uri
        self.status = status


class HandshakeRefused(ConnectionClosed):
    """A WebSocket handshake was answered with an HTTP status instead of ``101``.

    ``status`` is the status (403, 404, 426, ...), ``headers`` the response's header lines and
    ``body`` its body, which for ratchetpy's refusals says why (``"403 Forbidden: origin ..."``).
    Raised by :mod:`ratchetpy.testing`'s WebSocket client.
    """

    def __init__(
        self, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        why = body.decode("utf-8", "replace").strip().splitlines()
        detail = f": {why[0]}" if why else ""
        super().__init__(f"the WebSocket handshake was refused with HTTP {status}{detail}")
        self.status = status
        self.headers = list(headers)
        self.body = body


class ServerError(RatchetError):
    """The operating system refused the server what it needs: the address cannot be bound
    (in use, permission denied, unknown host), a certificate or key file cannot be loaded.

    Raised before anything is served; the message names the address or the file.
    """


class InvalidStateError(RatchetError):
    """A call that the server's state does not allow: serving a server that serves already,
    shutting down one that never started, a timer or a callback for a server that stopped.

    A bug in the calling code, never caused by a client.
    """


# -- who may connect -----------------------------------------------------------------------------


class AuthenticationFailed(RatchetError):
    """Raised by an authentication check to refuse a request with ``status`` and ``reason``.

    ``status`` is 401 (default: we do not know who you are; the answer carries a
    ``WWW-Authenticate`` challenge) or 403 (we know who you are, and you may not connect).
    ``reason`` is sent to the client in the response body and written to the log, so say
    what is wrong without revealing secrets: ``"token expired"``, ``"account suspended"``.
    """

    def __init__(self, reason: str = "authentication required", status: int = 401) -> None:
        if status not in (401, 403):
            raise ValueError(f"status must be 401 or 403, not {status}")
        super().__init__(reason)
        self.reason = reason
        self.status = status


class InvalidSession(RatchetError):
    """Raised by a session reader for a session cookie it cannot trust: forged, expired,
    signed with an unknown key, or garbled. ``reason`` says which, for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- publishing and WAMP answers ------------------------------------------------------------------


class PublishError(RatchetError):
    """A publication through the HTTP endpoint (or a one-shot :func:`ratchetpy.client.apublish`)
    failed.

    ``status`` is the HTTP status the endpoint answered with (401, 413, ...), or ``None`` when
    no answer came (connection refused, timeout, TLS failure, a WAMP-side error). ``reason``
    says what went wrong, in the endpoint's words when it gave some; ``error`` is the
    endpoint's short error code (``"bad_signature"``, ``"invalid_topic"``, ...) when known.
    """

    def __init__(self, status: int | None, reason: str, *, error: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {reason}" if status is not None else reason)
        self.status = status
        self.reason = reason
        self.error = error


# -- the broker between workers ---------------------------------------------------------------


class BrokerError(RatchetError):
    """The broker that connects worker processes (Redis) cannot do what was asked; a
    publication that raised it reached no other worker. Subclasses say why."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached, or the connection to it was lost before it answered.

    The message names the address (never the password). Commands under way when the
    connection went are not known to have run: whether one did cannot be told.
    """


class RedisReplyError(BrokerError):
    """Redis answered a command with an error: ``code`` is its first word (``WRONGPASS``,
    ``NOPERM``, ``NOAUTH``, ``ERR``), ``message`` the whole text. The connection goes on."""

    def __init__(self, message: str, *, command: str = "") -> None:
        super().__init__(f"{command}: {message}" if command else message)
        self.message = message
        self.command = command

    @property
    def code(self) -> str:
        return self.message.partition(" ")[0]


class RedisProtocolError(BrokerError):
    """What the Redis server sent is not RESP, or a reply grew past the reader's bound: the
    connection cannot be trusted any more and is closed."""


class WampError(RatchetError):
    """Raise from a WAMP handler to answer the client's request with a WAMP ERROR.

    ``error`` is the error URI (``wamp.error.not_authorized``, or your own such as
    ``com.example.error.sold_out``); ``args`` and ``kwargs`` travel with it (by convention the
    first argument is a message for humans). Raised from ``on_open`` it refuses the session
    with an ABORT instead. The client sees exactly this, and nothing is logged above DEBUG:
    refusing is normal operation, not a server fault.
    """

    def __init__(self, error: str, *args: Any, kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(error, *args)
        self.error = error
        self.error_args = list(args)
        self.error_kwargs = dict(kwargs or {})

    def __str__(self) -> str:
        if self.error_args:
            return f"{self.error}: {self.error_args[0]}"
        return self.error


class WampRequestError(WampError):
    """The router answered a :mod:`ratchetpy.client` request (SUBSCRIBE, REGISTER, an
    acknowledged PUBLISH, ...) with ERROR. ``error`` is the error URI; ``error_args`` and
    ``error_kwargs`` what came with it.

    Unlike :class:`WampError`, built from the three parts of the ERROR message:
    ``WampRequestError(error, args, kwargs)``.
    """

    def __init__(
        self,
        error: str,
        args: list[Any] | tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error, *args, kwargs=kwargs)


class WampCallError(WampRequestError):
    """A CALL failed: ``error`` is the URI (``wamp.error.no_such_procedure``, or what the
    callee raised), ``error_args`` / ``error_kwargs`` its details.

    A callee registered with ``Session.register`` may raise it (or any :class:`WampError`) to
    answer its caller with that error.
    """
