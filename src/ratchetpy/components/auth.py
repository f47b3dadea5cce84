"""Authenticate: decide who may open a connection before the WebSocket upgrade.

Ratchet leaves authentication to each component's ``onOpen``, after the handshake: by then the
browser only sees a WebSocket that opens and closes at once, with no reason it can show. Here a
hook runs on the HTTP request instead, so a refused client gets a real ``401`` or ``403`` with
the reason in its body, and the component only ever sees connections of known users:

.. code-block:: python

    def check(request):
        token = bearer_token(request)          # ?token=..., or Authorization: Bearer ...
        return tokens.get(token) if token else None   # a user id, or None: 401

    app = HttpServer(Authenticate(WsServer(Chat()), check))

    class Chat(MessageComponent):
        def on_open(self, conn):
            print(conn.user_id, "joined")

``check`` may be ``async def`` (to ask a database or another service) and may raise
:class:`AuthenticationFailed` to refuse with its own reason, or with ``403`` for a known user
who may not connect. Behind a :class:`~ratchetpy.SessionProvider` it can read
``request.session``.

No trio here: the hook only looks at requests and returns answers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..exceptions import AuthenticationFailed
from ..protocol.http import HttpRequest, HttpResponse
from .base import HttpComponent, HttpDecorator, HttpResult
from .connection import Connection
from .guards import count_refusal

__all__ = ["Authenticate", "Check", "TokenLookup", "bearer_token"]

logger = logging.getLogger("ratchetpy.security")

#: What :class:`Authenticate` calls with each request: it returns the user id (``str``) to
#: accept, ``None`` to refuse with 401, or raises :class:`AuthenticationFailed`; or is an
#: ``async def`` doing the same.
Check = Callable[[HttpRequest], str | Awaitable[str | None] | None]

#: What :meth:`Authenticate.tokens` looks a token up in: a mapping ``token -> user id``, or a
#: function ``token -> user id or None`` (plain or ``async def``).
TokenLookup = Mapping[str, str] | Callable[[str], str | Awaitable[str | None] | None]

_DEFAULT_CHALLENGE = 'Bearer realm="ratchetpy"'


def bearer_token(
    request: HttpRequest,
    *,
    header: bool = True,
    query: str | None = "token",
    cookie: str | None = None,
) -> str | None:
    """The client's token from the first place that has one, or ``None``.

    Looked for, in this order:

    1. ``Authorization: Bearer <token>`` (unless ``header=False``): what non-browser clients
       send;
    2. the query parameter named ``query`` (``wss://host/chat?token=...``); ``None`` skips it;
    3. the cookie named ``cookie``, when given.

    Browsers cannot set headers on a WebSocket handshake: a page passes its token in the URL
    (keep it short-lived, since URLs reach proxy logs) or relies on a cookie of the site.
    Empty values count as absent.
    """
    if header:
        authorization = request.header("authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(" ")
            credentials = credentials.strip()
            if scheme.lower() == "bearer" and credentials:
                return credentials
    if query is not None:
        values = request.query_params.get(query)
        if values and values[0]:
            return values[0]
    if cookie is not None:
        value = request.cookies.get(cookie)
        if value:
            return value
    return None


class Authenticate(HttpDecorator):
    """Run ``check(request)`` before ``component`` and refuse the requests it does not accept.

    Put it in front of a :class:`~ratchetpy.WsServer` (or a router, to guard every route) so
    that it runs before the WebSocket upgrade. ``check`` (plain or ``async def``) returns:

    * a user id (a non-empty ``str``): the request goes on, with ``request.user_id`` set, which
      every layer sees and components read as ``conn.user_id``;
    * ``None``: ``401 Unauthorized`` ("authentication required");
    * or raises :class:`AuthenticationFailed` for its own reason and status (401 or 403).

    A ``401`` carries ``WWW-Authenticate: <challenge>`` (``Bearer realm="ratchetpy"`` by
    default), as HTTP requires. Every refusal is logged at INFO on ``ratchetpy.security`` with
    the client's address, the path and the reason, and counts in ``handshakes_rejected``.

    If ``check`` raises anything else (or returns something other than ``str`` or ``None``),
    that is a bug or an outage on the server's side: it is logged with its traceback at ERROR
    and the client gets ``500`` without its details. The server goes on serving.
    """

    def __init__(
        self, component: HttpComponent, check: Check, *, challenge: str = _DEFAULT_CHALLENGE
    ) -> None:
        super().__init__(component)
        self.check = check
        self.challenge = challenge

    @classmethod
    def tokens(
        cls,
        component: HttpComponent,
        lookup: TokenLookup,
        *,
        header: bool = True,
        query: str | None = "token",
        cookie: str | None = None,
        challenge: str = _DEFAULT_CHALLENGE,
    ) -> Authenticate:
        """Accept requests that carry a known token: the common case in one line.

        ``lookup`` maps a token to its user id: a mapping (``{"s3cret": "alice"}``) or a
        function ``token -> user id or None``, plain or ``async def``. The token is found by
        :func:`bearer_token` with ``header``, ``query`` and ``cookie``. No token: 401 "no
        token"; an unknown one: 401 "invalid token".
        """
        find: Callable[[str], Any] = lookup.get if isinstance(lookup, Mapping) else lookup

        def check(request: HttpRequest) -> Any:
            token = bearer_token(request, header=header, query=query, cookie=cookie)
            if token is None:
                places = [
                    place
                    for place, used in (
                        ("Authorization: Bearer", header),
                        (f"?{query}=", query is not None),
                        (f"cookie {cookie!r}", cookie is not None),
                    )
                    if used
                ]
                raise AuthenticationFailed(f"no token (send it as {' or '.join(places)})")
            user_id = find(token)
            if inspect.isawaitable(user_id):
                return _known(user_id)
            return _known_now(user_id)

        return cls(component, check, challenge=challenge)

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        try:
            user_id = self.check(request)
        except AuthenticationFailed as exc:
            return self._refuse(conn, request, exc.status, exc.reason)
        except Exception as exc:
            return self._failed(conn, request, exc)
        if inspect.isawaitable(user_id):
            return self._await_check(conn, request, user_id)
        return self._decided(conn, request, user_id)

    async def _await_check(
        self, conn: Connection, request: HttpRequest, pending: Awaitable[str | None]
    ) -> Any:
        try:
            user_id = await pending
        except AuthenticationFailed as exc:
            return self._refuse(conn, request, exc.status, exc.reason)
        except Exception as exc:
            return self._failed(conn, request, exc)
        result = self._decided(conn, request, user_id)
        if inspect.isawaitable(result):
            return await result
        return result

    def _decided(self, conn: Connection, request: HttpRequest, user_id: object) -> HttpResult:
        if user_id is None:
            return self._refuse(conn, request, 401, "authentication required")
        if not isinstance(user_id, str) or not user_id:
            return self._failed(
                conn,
                request,
                TypeError(
                    f"the authentication check returned {user_id!r}; "
                    "return a non-empty str (the user id) or None"
                ),
            )
        request.attach(user_id=user_id)
        return self.component.on_open(conn, request)

    def _refuse(
        self, conn: Connection, request: HttpRequest, status: int, why: str
    ) -> HttpResponse:
        address, method, path = conn.remote_address, request.method, request.path
        logger.info("HTTP %d to %s: %s %s: %s", status, address, method, path, why)
        count_refusal(conn, request, status)
        headers = [("WWW-Authenticate", self.challenge)] if status == 401 else []
        return HttpResponse.error(status, why, headers=headers)

    def _failed(self, conn: Connection, request: HttpRequest, exc: Exception) -> HttpResponse:
        # As HttpServer does for a handler that raises: the traceback to the log, a bare 500 to
        # the client (the exception may name tables, hosts or tokens). Answered here rather than
        # re-raised so the wrapped component, which never saw this request, gets no on_close.
        logger.error(
            "HTTP 500 to %s: %s %s: the authentication check %r raised",
            conn.remote_address,
            request.method,
            request.path,
            self.check,
            exc_info=exc,
        )
        count_refusal(conn, request, 500)
        return HttpResponse.error(500, "the authentication check failed")


def _known_now(user_id: object) -> object:
    # What is not None goes to Authenticate, which checks that it is a str.
    if user_id is None:
        raise AuthenticationFailed("invalid token")
    return user_id


async def _known(pending: Awaitable[object]) -> object:
    return _known_now(await pending)
