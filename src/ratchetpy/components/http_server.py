"""HttpServer: reads the HTTP request head sans-IO with h11 (Ratchet's ``HttpServer``).

It enforces limits on the head and body, answers malformed or oversized requests itself, and
hands the parsed :class:`HttpRequest` to the wrapped :class:`~ratchetpy.HttpComponent` (such as
:class:`~ratchetpy.WsServer`). Bytes after the head pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import h11

from ..protocol.chunked import ChunkedBodyMeter
from ..protocol.forwarded import TrustedProxies
from ..protocol.http import Headers, HttpRequest, HttpResponse, http_response, reason_phrase
from .base import HttpComponent, MaybeAwaitable, delegate_chain
from .connection import Connection, Timer

__all__ = ["HttpServer"]

logger = logging.getLogger("ratchetpy.http")


#: Statuses whose responses never carry a body (RFC 9110 section 6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})
#: h11 reads any "HTTP/d.d" request line; these are the versions it (and we) speak.
_SUPPORTED_VERSIONS = frozenset({b"1.0", b"1.1"})


class _Pending:
    """A connection whose next request is being read (the first, or the next on keep-alive)."""

    __slots__ = (
        "body",
        "body_size",
        "chunked",
        "goodbye",
        "idle",
        "parser",
        "peer",
        "request",
        "timer",
    )

    def __init__(self, parser: h11.Connection, timer: Timer, peer: str) -> None:
        self.parser = parser
        self.peer = peer  # the socket's peer, before any proxy header rewrote remote_address
        self.timer = timer
        self.request: HttpRequest | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        # Sizes a chunked body announces, while one is read: 413 before the bytes arrive.
        self.chunked: ChunkedBodyMeter | None = None
        self.idle = False  # kept alive after a response, no byte of a new request yet
        # Set by a shutdown that came while the request was read: it is answered, then the
        # connection ends (an upgraded one is handed this close code and reason).
        self.goodbye: tuple[int, str] | None = None


class HttpServer:
    """Parse each connection's requests and hand them to ``component``.

    The component's ``on_open(conn, request)`` either answers by *returning* an
    :class:`HttpResponse` (or an ``async def`` returning one), and this layer writes it and
    reads the next request on the same connection (keep-alive, pipelining and ``HEAD``
    handled here); or it returns ``None`` and takes the connection over, as
    :class:`~ratchetpy.WsServer` does after an upgrade and as Ratchet's HTTP components do when
    they ``send`` a response and ``close``.

    A ``CONNECT`` request (a proxy's method) gets 501 here and reaches no component: this
    server opens no tunnels.

    Options (keyword-only):

    ``max_head_size``
        Bytes the request line and headers may take (default 16 KiB); more gets 431.
    ``max_headers``
        How many header lines a request may have (default 100); more gets 431.
    ``max_body_size``
        Bytes a request body may have (default 1 MiB); more gets 413.
    ``request_timeout``
        Seconds a client has to send a whole request (default 10); then it gets 408 and is
        dropped, so an idle or trickling client cannot hold a connection slot.
    ``keep_alive_timeout``
        Seconds a kept-alive connection may sit idle between requests (default 5); then it is
        closed quietly, as browsers expect.
    ``trusted_proxies``
        A :class:`~ratchetpy.TrustedProxies` (or addresses and networks to build one):
        requests arriving from these peers have ``conn.remote_address`` and ``request.scheme``
        taken from their ``Forwarded`` / ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers.
    """

    def __init__(
        self,
        component: HttpComponent,
        *,
        max_head_size: int = 16 * 1024,
        max_headers: int = 100,
        max_body_size: int = 2**20,
        request_timeout: float = 10.0,
        keep_alive_timeout: float = 5.0,
        trusted_proxies: TrustedProxies | Iterable[str] | None = None,
    ) -> None:
        self.component = component
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.request_timeout = request_timeout
        self.keep_alive_timeout = keep_alive_timeout
        if trusted_proxies is not None and not isinstance(trusted_proxies, TrustedProxies):
            entries = list(trusted_proxies)
            trusted_proxies = TrustedProxies(entries) if entries else None
        self.trusted_proxies: TrustedProxies | None = trusted_proxies
        # _Pending while a request is read; once handed over, the on_message of the component
        # that took the connection (past pass-through decorators); absent once answered here.
        self._conns: dict[Connection, Any] = {}

    # -- component interface (driven by IoServer) ------------------------------------------

    def on_open(self, conn: Connection) -> MaybeAwaitable:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head_size)
        timer = conn.call_later(self.request_timeout, lambda: self._timed_out(conn))
        self._conns[conn] = _Pending(parser, timer, conn.remote_address)
        counters = getattr(conn, "counters", None)
        if counters is not None:
            counters.http_open += 1
        return None

    def on_message(self, conn: Connection, data: bytes) -> MaybeAwaitable:
        pending = self._conns.get(conn)
        if pending.__class__ is not _Pending:
            if pending is None:
                return None  # answered here and closing: nothing more to read
            return pending(conn, data)  # type: ignore[no-any-return]
        if pending.idle:
            pending.idle = False
            pending.timer.cancel()
            pending.timer = conn.call_later(self.request_timeout, lambda: self._timed_out(conn))
        meter = pending.chunked
        if meter is not None and not meter.done and self._announces_too_much(conn, meter, data):
            return None
        try:
            pending.parser.receive_data(data)
        except h11.RemoteProtocolError as exc:  # data after the peer's end of stream
            self._reject(conn, exc.error_status_hint, f"malformed request: {exc}")
            return None
        return self._process(conn, pending)

    def on_close(self, conn: Connection) -> MaybeAwaitable:
        pending = self._conns.pop(conn, None)
        counters = getattr(conn, "counters", None)
        if counters is not None:
            counters.http_open -= 1
        if isinstance(pending, _Pending):
            pending.timer.cancel()
            return None
        return None if pending is None else self.component.on_close(conn)

    def on_error(self, conn: Connection, exc: Exception) -> MaybeAwaitable:
        if self._handed_over(conn):
            return self.component.on_error(conn, exc)
        logger.error("error while reading a request from %s", conn.remote_address, exc_info=exc)
        self._reject(conn, 500, "internal error while reading the request")
        return None

    def on_shutdown(self, conn: Connection, code: int, reason: str) -> None:
        """Pass the goodbye on to the component that took ``conn`` over (a WebSocket says
        1001). A connection kept alive between requests is closed, as HTTP allows; one whose
        request is being read (or not yet begun: accepted just before the shutdown) gets its
        answer first, within ``request_timeout``: a WebSocket being opened completes its
        handshake and then gets the goodbye, a plain request its response and a close."""
        state = self._conns.get(conn)
        if isinstance(state, _Pending):
            if state.idle:
                conn.close()
            else:
                state.goodbye = (code, reason)
        elif state is not None:
            self.component.on_shutdown(conn, code, reason)

    # -- internals -------------------------------------------------------------------------

    def _handed_over(self, conn: Connection) -> bool:
        state = self._conns.get(conn)
        return state is not None and not isinstance(state, _Pending)

    def _process(self, conn: Connection, pending: _Pending) -> MaybeAwaitable:
        """Turn the bytes h11 holds into requests and dispatch them, one at a time."""
        parser = pending.parser
        try:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.Request):
                    if not self._accept_head(conn, pending, event):
                        return None
                elif isinstance(event, h11.Data):
                    pending.body.append(bytes(event.data))
                    pending.body_size += len(event.data)
                    if pending.body_size > self.max_body_size:
                        self._reject(conn, 413, f"request body over {self.max_body_size} bytes")
                        return None
                elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                    result = self._dispatch(conn, pending)
                    if result is not _NEXT_REQUEST:
                        return result  # type: ignore[no-any-return]
                elif isinstance(event, h11.ConnectionClosed):
                    conn.close()
                    return None
        except h11.RemoteProtocolError as exc:
            self._reject(conn, exc.error_status_hint, f"malformed request: {exc}")
            return None

    def _accept_head(self, conn: Connection, pending: _Pending, event: h11.Request) -> bool:
        if event.http_version not in _SUPPORTED_VERSIONS:
            version = event.http_version.decode("ascii")
            self._reject(conn, 505, f"HTTP/{version} is not served here (HTTP/1.1 and 1.0 are)")
            return False
        if len(event.headers) > self.max_headers:
            self._reject(conn, 431, f"more than {self.max_headers} header lines")
            return False
        items = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in event.headers.raw_items()
        ]
        # h11 only bounds a head that arrives in pieces; one that arrives whole is measured here.
        head_size = (
            len(event.target) + 20 + sum(len(name) + len(value) + 4 for name, value in items)
        )
        if head_size > self.max_head_size:
            self._reject(conn, 431, f"request head over {self.max_head_size} bytes")
            return False
        if event.method == b"CONNECT":
            # A proxy's method (RFC 9110 section 9.3.6): h11 takes any 2xx answer to it as the
            # switch to a tunnel, which this server cannot open, and then refuses to send the
            # answer's body. No component can answer it, so none is asked.
            self._reject(conn, 501, "CONNECT opens tunnels through proxies; this server is none")
            return False
        headers = Headers(items)
        length = headers.get("content-length")
        chunked = "transfer-encoding" in headers
        if chunked and length is not None:
            # The classic request-smuggling shape: a proxy in front may frame the body by the
            # other header, so neither can be trusted (RFC 9112 section 6.1).
            self._reject(
                conn, 400, "both Content-Length and Transfer-Encoding: send only one of them"
            )
            return False
        if length is not None and length.isdigit() and int(length) > self.max_body_size:
            self._reject(conn, 413, f"request body over {self.max_body_size} bytes")
            return False
        if chunked:
            # h11 refused every coding but "chunked" already; what it has buffered past the
            # head is the start of the body.
            pending.chunked = meter = ChunkedBodyMeter()
            if self._announces_too_much(conn, meter, pending.parser.trailing_data[0]):
                return False
        scheme = "https" if conn.secure else "http"
        proxies = self.trusted_proxies
        if proxies is not None:
            # Per request: a proxy may send requests of different clients on one connection.
            conn.remote_address, scheme = proxies.resolve(pending.peer, headers, scheme)
        pending.request = HttpRequest(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=headers,
            http_version=event.http_version.decode("ascii"),
            scheme=scheme,
        )
        if pending.parser.they_are_waiting_for_100_continue:
            # curl and others hold a body back until told to send it (Expect: 100-continue);
            # its size was checked above, so invite it rather than let them wait a second.
            interim = pending.parser.send(h11.InformationalResponse(status_code=100, headers=[]))
            conn.send(interim or b"")
        return True

    def _announces_too_much(self, conn: Connection, meter: ChunkedBodyMeter, data: bytes) -> bool:
        """Follow ``data`` of a chunked body; answer 413 (and say True) once its chunk sizes
        add up to more than the limit, however few of those bytes were sent."""
        if meter.feed(data) <= self.max_body_size:
            return False
        self._reject(conn, 413, f"chunk sizes announce a body over {self.max_body_size} bytes")
        return True

    def _dispatch(self, conn: Connection, pending: _Pending) -> Any:
        """Hand a complete request to the component; _NEXT_REQUEST if it was answered here."""
        request = pending.request
        assert request is not None
        if pending.body:
            request = replace(request, body=b"".join(pending.body))
        pending.timer.cancel()
        # The component's until it answers with a response.
        self._conns[conn] = self.component.on_message
        conn.http_request = request
        try:
            result = self.component.on_open(conn, request)
        except Exception as exc:
            return self._handler_failed(conn, request, exc)
        if isinstance(result, HttpResponse):
            return _NEXT_REQUEST if self._respond(conn, pending, request, result) else None
        if result is None:
            return self._feed_trailing(conn, pending)
        return self._await_answer(conn, pending, request, result)

    async def _await_answer(
        self, conn: Connection, pending: _Pending, request: HttpRequest, opened: Any
    ) -> None:
        try:
            result = await opened
        except Exception as exc:
            closed = self._handler_failed(conn, request, exc)
            if closed is not None:
                await closed
            return
        if isinstance(result, HttpResponse):
            if self._respond(conn, pending, request, result):
                more = self._process(conn, pending)
                if more is not None:
                    await more
            return
        more = self._feed_trailing(conn, pending)
        if more is not None:
            await more

    def _feed_trailing(self, conn: Connection, pending: _Pending) -> MaybeAwaitable:
        """The component took the connection: bytes read past the request are now its."""
        if conn not in self._conns:
            return None  # closed while the component opened it
        on_message = delegate_chain(self.component, conn).on_message
        self._conns[conn] = on_message
        if pending.goodbye is not None:
            self.component.on_shutdown(conn, *pending.goodbye)
        trailing = bytes(pending.parser.trailing_data[0])
        if not trailing or conn.closed:
            return None
        return on_message(conn, trailing)

    def _respond(
        self, conn: Connection, pending: _Pending, request: HttpRequest, response: HttpResponse
    ) -> bool:
        """Write ``response``; True if the connection stays open for another request."""
        self._conns[conn] = pending
        parser = pending.parser
        body = response.body
        assert isinstance(body, bytes)
        headers = list(response.headers)
        if pending.goodbye is not None:
            headers.append(("Connection", "close"))  # the server is shutting down
        if response.status not in _NO_BODY_STATUSES:
            headers.append(("Content-Type", response.content_type))
            headers.append(("Content-Length", str(len(body))))
        try:
            status = response.status
            head = parser.send(
                h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))
            )
        except h11.LocalProtocolError as exc:
            # The component built a response HTTP cannot carry: its bug, not the client's.
            logger.error("invalid response %r for %s: %s", response, request.target, exc)
            self._reject(conn, 500, "the server built an invalid response")
            return False
        assert head is not None
        if body and request.method != "HEAD" and response.status not in _NO_BODY_STATUSES:
            head += parser.send(h11.Data(data=body)) or b""
        conn.send(head + (parser.send(h11.EndOfMessage()) or b""))
        if parser.our_state is not h11.DONE or conn.closed:
            self._conns.pop(conn, None)
            conn.close()
            return False
        parser.start_next_cycle()
        pending.request = None
        pending.body = []
        pending.body_size = 0
        pending.chunked = None
        pending.idle = True
        pending.timer = conn.call_later(self.keep_alive_timeout, lambda: self._timed_out(conn))
        return True

    def _handler_failed(
        self, conn: Connection, request: HttpRequest, exc: Exception
    ) -> MaybeAwaitable:
        # Raised while answering a request, before anything was sent: the client gets a 500
        # rather than a dropped connection, and the traceback goes to the log.
        logger.error(
            "error answering %s %s from %s",
            request.method,
            request.path,
            conn.remote_address,
            exc_info=exc,
        )
        self._reject(conn, 500, "internal server error")
        # The layers between here and the handler (router, limits) took the connection in
        # on_open; tell them it is gone, as a returned response would have.
        return self.component.on_close(conn)

    def _reject(self, conn: Connection, status: int, why: str) -> None:
        logger.info("HTTP %d to %s: %s", status, conn.remote_address, why)
        pending = self._conns.pop(conn, None)
        if isinstance(pending, _Pending):
            pending.timer.cancel()
        refusal = HttpResponse.error(status, why)
        conn.send(http_response(status, refusal.body, headers=refusal.headers))
        conn.close()

    def _timed_out(self, conn: Connection) -> None:
        pending = self._conns.get(conn)
        if not isinstance(pending, _Pending):
            return
        if pending.idle:
            self._conns.pop(conn, None)
            conn.close()
        else:
            self._reject(conn, 408, f"the request did not arrive within {self.request_timeout:g} s")


_NEXT_REQUEST: Any = object()  # _dispatch answered the request; go on reading
