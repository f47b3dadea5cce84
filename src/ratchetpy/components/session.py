"""SessionProvider: the web application's session, read from its cookie at the handshake
(Ratchet's ``SessionProvider``).

A browser opening a WebSocket to the same site sends the site's cookies with the handshake,
the session cookie included. Reading it here lets a WebSocket component know which logged-in
user it talks to without a second login:

.. code-block:: python

    app = HttpServer(
        SessionProvider(
            Authenticate(WsServer(Chat()), lambda request: request.session.get("user_id")),
            FlaskSession(SECRET_KEY),
        )
    )

    class Chat(MessageComponent):
        def on_open(self, conn):
            conn.send(f"hello {conn.session['name']}")

The session is read-only, as in Ratchet: the web application owns it, and nothing written
here would reach it. A missing, expired or forged cookie gives an empty session and never a
refusal; deciding who may connect is :class:`~ratchetpy.Authenticate`'s job.

A reader is any function ``request -> Mapping | None`` (plain or ``async def``), so sessions of
other frameworks plug in the same way; :class:`FlaskSession` reads Flask's default signed
cookie. No trio here, and no Flask either: the cookie format is decoded by this module.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import inspect
import json
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from ..exceptions import InvalidSession
from ..protocol.http import HttpRequest
from .base import HttpComponent, HttpDecorator, HttpResult
from .connection import Connection

__all__ = ["FlaskSession", "SessionProvider", "SessionReader"]

logger = logging.getLogger("ratchetpy.security")

#: What :class:`SessionProvider` calls with each request: it returns the session (a mapping),
#: ``None`` when the request has none, or raises :class:`InvalidSession` when it carries one
#: that cannot be trusted; or is an ``async def`` doing the same.
SessionReader = Callable[
    [HttpRequest], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None
]


class SessionProvider(HttpDecorator):
    """Read each request's session with ``reader`` and attach it as ``request.session``.

    Components then read it as ``conn.session``: a read-only mapping, empty when the request
    had no session. Requests are never refused here. When ``reader`` raises
    :class:`InvalidSession` the reason is logged at INFO on ``ratchetpy.security`` (with the
    client's address and the path) and the session is empty; any other exception is a
    server-side problem (a session store that is down): logged with its traceback at ERROR,
    and the session is empty too.

    Put it in front of :class:`~ratchetpy.Authenticate` so that the check can read
    ``request.session``.
    """

    def __init__(self, component: HttpComponent, reader: SessionReader) -> None:
        super().__init__(component)
        self.reader = reader

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        try:
            session = self.reader(request)
        except Exception as exc:
            self._unreadable(conn, request, exc)
            session = None
        if inspect.isawaitable(session):
            return self._await_session(conn, request, session)
        return self._open(conn, request, session)

    async def _await_session(
        self, conn: Connection, request: HttpRequest, pending: Awaitable[Mapping[str, Any] | None]
    ) -> Any:
        try:
            session = await pending
        except Exception as exc:
            self._unreadable(conn, request, exc)
            session = None
        result = self._open(conn, request, session)
        if inspect.isawaitable(result):
            return await result
        return result

    def _open(self, conn: Connection, request: HttpRequest, session: object) -> HttpResult:
        if session is not None:
            if isinstance(session, Mapping):
                # A copy behind a read-only view: the reader's object may be live (a cache
                # entry), and changes made here would never reach the web application anyway.
                request.attach(session=MappingProxyType(dict(session)))
            else:
                logger.error(
                    "session reader %r returned %s, not a mapping or None; no session for %s",
                    self.reader,
                    type(session).__name__,
                    conn.remote_address,
                )
        return self.component.on_open(conn, request)

    def _unreadable(self, conn: Connection, request: HttpRequest, exc: Exception) -> None:
        if isinstance(exc, InvalidSession):
            logger.info(
                "session of %s ignored: %s %s: %s",
                conn.remote_address,
                request.method,
                request.path,
                exc.reason,
            )
        else:
            logger.error(
                "session reader %r raised for %s %s from %s; going on without a session",
                self.reader,
                request.method,
                request.path,
                conn.remote_address,
                exc_info=exc,
            )


class FlaskSession:
    """A session reader for Flask's default session: a signed cookie that holds the data.

    ``secret_key`` is the Flask app's ``SECRET_KEY``; ``secret_key_fallbacks`` its
    ``SECRET_KEY_FALLBACKS`` (old keys still accepted while they are rotated out). The other
    options match Flask's settings of the same meaning and default:

    ``cookie_name``
        ``SESSION_COOKIE_NAME`` (``"session"``).
    ``salt``
        The session interface's ``salt`` (``"cookie-session"``).
    ``max_age``
        ``PERMANENT_SESSION_LIFETIME`` (31 days), as seconds or a ``timedelta``: a cookie
        signed longer ago is expired, as Flask itself treats it. ``None`` never expires.

    Cookies over ``max_cookie_size`` characters (4096: browsers keep no bigger cookie) or
    whose data decompresses to more than ``max_data_size`` bytes are refused unread. Values
    come back as Flask stored them: ``tuple``, ``bytes``, ``uuid.UUID``, timezone-aware
    ``datetime`` (to the second) and nested dicts; ``Markup`` comes back as ``str``. ``clock``
    (for tests) returns the current time in seconds, ``time.time`` by default.

    The cookie is ``payload.timestamp.signature`` (each URL-safe base64; a leading ``.`` means
    the payload is zlib-compressed): the signature is an HMAC-SHA1 of
    ``payload.timestamp`` under a key derived from the secret and the salt, checked in
    constant time before anything else of the cookie is decoded.
    """

    max_cookie_size = 4096
    max_data_size = 64 * 1024
    #: Seconds a signature's timestamp may lie in the future: the web application may run on
    #: another machine whose clock is slightly ahead of ours.
    clock_leeway = 60

    def __init__(
        self,
        secret_key: str | bytes,
        *,
        secret_key_fallbacks: Iterable[str | bytes] = (),
        cookie_name: str = "session",
        salt: str | bytes = "cookie-session",
        max_age: float | timedelta | None = timedelta(days=31),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret_key:
            raise ValueError("FlaskSession needs the Flask app's SECRET_KEY")
        salt_bytes = _as_bytes(salt)
        # Derived once here (itsdangerous's "hmac" key derivation), newest key first: most
        # cookies are signed with it.
        self._keys = [
            hmac.new(_as_bytes(key), salt_bytes, hashlib.sha1).digest()
            for key in (secret_key, *reversed(list(secret_key_fallbacks)))
        ]
        self.cookie_name = cookie_name
        if isinstance(max_age, timedelta):
            max_age = max_age.total_seconds()
        self.max_age = max_age
        self._clock = clock

    def __call__(self, request: HttpRequest) -> dict[str, Any] | None:
        """The session of ``request``; ``None`` without a session cookie.

        Raises :class:`InvalidSession` when the cookie fails verification.
        """
        value = request.cookies.get(self.cookie_name)
        if not value:
            return None
        return self.loads(value)

    def loads(self, value: str) -> dict[str, Any]:
        """Verify and decode a session cookie's value; :class:`InvalidSession` says why not."""
        if len(value) > self.max_cookie_size:
            raise InvalidSession(f"session cookie over {self.max_cookie_size} characters")
        if not value.isascii():
            raise InvalidSession("session cookie is not ASCII")
        signed, _, signature = value.rpartition(".")
        payload, _, stamp = signed.rpartition(".")
        if not payload or not stamp or not signature:
            raise InvalidSession("not a signed session cookie (payload.timestamp.signature)")
        try:
            mac = _b64decode(signature)
        except ValueError:
            raise InvalidSession("the signature is not base64") from None
        message = signed.encode("ascii")
        # Every key is tried even after a match, so the time taken does not say which one.
        valid = False
        for key in self._keys:
            expected = hmac.new(key, message, hashlib.sha1).digest()
            valid |= hmac.compare_digest(mac, expected)
        if not valid:
            raise InvalidSession("bad signature (forged, or signed with another secret key)")
        self._check_age(stamp)
        return self._decode_payload(payload)

    def _check_age(self, stamp: str) -> None:
        try:
            raw = _b64decode(stamp)
        except ValueError:
            raise InvalidSession("malformed timestamp") from None
        if not raw or len(raw) > 8:
            raise InvalidSession("malformed timestamp")
        signed_at = int.from_bytes(raw, "big")
        age = self._clock() - signed_at
        if age < -self.clock_leeway:
            raise InvalidSession(f"signed {-age:.0f} s in the future")
        if self.max_age is not None and age > self.max_age:
            raise InvalidSession(f"expired: signed {age:.0f} s ago, max_age {self.max_age:g} s")

    def _decode_payload(self, payload: str) -> dict[str, Any]:
        compressed = payload.startswith(".")
        try:
            data = _b64decode(payload[1:] if compressed else payload)
        except ValueError:
            raise InvalidSession("the payload is not base64") from None
        if compressed:
            inflater = zlib.decompressobj()
            try:
                data = inflater.decompress(data, self.max_data_size)
            except zlib.error:
                raise InvalidSession("the payload does not decompress") from None
            if inflater.unconsumed_tail:
                raise InvalidSession(f"the session data is over {self.max_data_size} bytes")
            if not inflater.eof:
                raise InvalidSession("the payload is truncated")
        try:
            session = _untag(json.loads(data))
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise InvalidSession(f"the session data does not decode: {exc}") from None
        if not isinstance(session, dict):
            raise InvalidSession(f"the session data is a {type(session).__name__}, not a dict")
        return session

    def __repr__(self) -> str:
        # Never the key.
        return f"FlaskSession(cookie_name={self.cookie_name!r})"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _b64decode(text: str) -> bytes:
    """URL-safe base64 without padding, as itsdangerous writes it; ValueError if it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


# Flask's tagged JSON: a one-key object whose key is a tag stands for a value JSON lacks.
# Children are untagged before their parent, as Flask does, so tags nest.


def _parse_http_date(text: str) -> datetime | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):  # (a field too large: found by fuzzing)
        return None  # what Flask gives for a date it cannot parse
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _untag_escaped_dict(value: Any) -> dict[str, Any]:
    # {" di": {"<tag>__": v}}: a dict whose only key looked like a tag, escaped by Flask.
    (key, item), *_ = value.items()
    return {key[:-2]: item}


_TAGS: dict[str, Callable[[Any], Any]] = {
    " di": _untag_escaped_dict,
    " t": tuple,
    " b": lambda text: base64.b64decode(text, validate=True),
    " m": str,
    " u": uuid.UUID,
    " d": _parse_http_date,
}


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        value = {key: _untag(item) for key, item in value.items()}
        if len(value) == 1:
            (key, item), *_ = value.items()
            convert = _TAGS.get(key)
            if convert is not None:
                return convert(item)
        return value
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value
