"""The exceptions of :mod:`ratchetpy.client`, under ratchetpy's one tree.

.. code-block:: text

    RatchetError
    ├── PublishError            an HTTP publication (or a one-shot one) did not go through
    ├── ConnectionClosed
    │   └── SessionClosed       the WAMP session could not start, or ended from the other side
    └── WampError               (ratchetpy.wamp: a WAMP error URI with args and kwargs)
        └── WampRequestError    the router answered a request with ERROR
            └── WampCallError   ... a CALL: the callee's (or the router's) error
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ConnectionClosed, RatchetError
from ..wamp.component import WampError

__all__ = ["PublishError", "SessionClosed", "WampCallError", "WampRequestError"]


class PublishError(RatchetError):
    """A publication through the HTTP endpoint (or a one-shot :func:`apublish`) failed.

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


class SessionClosed(ConnectionClosed):
    """The WAMP session could not be opened, or ended without the client asking.

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


class WampRequestError(WampError):
    """The router answered a request (SUBSCRIBE, REGISTER, an acknowledged PUBLISH, ...) with
    ERROR. ``error`` is the error URI; ``error_args`` and ``error_kwargs`` what came with it.

    Unlike :class:`~ratchetpy.wamp.WampError`, built from the three parts of the ERROR message:
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

    A callee registered with :meth:`Session.register` may raise it (or any
    :class:`~ratchetpy.wamp.WampError`) to answer its caller with that error.
    """
