"""Publishing through a :class:`~ratchetpy.wamp.publish.PublishEndpoint` over HTTP.

:func:`publish` and :class:`Publisher` block (for Flask, Django, scripts, threads: the standard
library's ``http.client``, no extra dependency); :func:`apublish` is the trio version, which
also takes a ``ws://`` URL and then publishes through a WAMP session.
"""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import h11
import trio

from ..exceptions import PublishError, SessionClosed, WampRequestError
from ..wamp.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from ._session import open_session
from ._ws import open_stream, split_url

__all__ = ["Publisher", "apublish", "publish", "sign"]

Secret = str | bytes
AuthMode = Literal["hmac", "bearer"]

_HTTP_PORTS = {"http": 80, "https": 443}
_MAX_ANSWER = 64 * 1024  # the endpoint's answers are small; a huge one is not ours


def sign(body: bytes, secret: Secret, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers that sign ``body`` for a PublishEndpoint: ``X-Ratchetpy-Timestamp`` (now,
    or ``timestamp``) and ``X-Ratchetpy-Signature`` (``sha256=`` + hex HMAC-SHA256 with
    ``secret`` over ``timestamp + "." + body``). Send ``body`` exactly as signed."""
    stamp = str(int(time.time()) if timestamp is None else int(timestamp))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body)}


def _body(
    topic: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
    realm: str | None,
    auth: AuthMode,
) -> bytes:
    fields: dict[str, Any] = {"topic": topic}
    if auth == "hmac":
        # The endpoint accepts a signed request once; a nonce keeps two identical
        # publications in the same second from looking like a replay of each other.
        fields["nonce"] = secrets.token_urlsafe(12)
    if args:
        fields["args"] = list(args)
    if kwargs:
        fields["kwargs"] = dict(kwargs)
    if options:
        fields["options"] = dict(options)
    if realm is not None:
        fields["realm"] = realm
    # allow_nan=False: NaN is no JSON, the endpoint would refuse it; better to fail here.
    return json.dumps(fields, allow_nan=False, separators=(",", ":")).encode()


def _headers(body: bytes, secret: Secret, auth: AuthMode) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "ratchetpy.client"}
    if auth == "bearer":
        token = secret.decode() if isinstance(secret, bytes) else secret
        headers["Authorization"] = f"Bearer {token}"
    elif auth == "hmac":
        headers.update(sign(body, secret))
    else:
        raise ValueError(f"auth must be 'hmac' or 'bearer', not {auth!r}")
    return headers


def _answer(status: int, body: bytes) -> dict[str, Any]:
    """The endpoint's JSON result, or PublishError with its reason."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if 200 <= status < 300 and isinstance(data, dict):
        return data
    if isinstance(data, dict) and isinstance(data.get("reason"), str):
        error = data.get("error")
        raise PublishError(status, data["reason"], error=error if isinstance(error, str) else None)
    text = body.decode("utf-8", "replace").strip()
    raise PublishError(status, text[:300] or http.client.responses.get(status, "no reason given"))


def publish(
    url: str,
    topic: str,
    *args: Any,
    secret: Secret,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    realm: str | None = None,
    auth: AuthMode = "hmac",
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """POST a publication to the PublishEndpoint at ``url`` and return its answer,
    ``{"id": publication_id, "receivers": n}``. Blocks (at most about ``timeout`` seconds
    for connecting, and again for each read).

    ``args`` are the event's positional arguments; ``kwargs`` (a dict) its keyword ones;
    ``options`` the endpoint's delivery options (``exclude``, ``eligible``,
    ``exclude_authid``, ``eligible_authid``); ``realm`` overrides the endpoint's.
    ``auth="hmac"`` signs the request (see :func:`sign`); ``"bearer"`` sends the secret.

    Raises :class:`PublishError` when the endpoint refuses (``status`` and ``reason`` say
    why) or cannot be reached (``status`` is ``None``); ValueError for a URL that is not
    ``http://`` or ``https://``; TypeError or ValueError for values JSON cannot carry.
    Redirects are not followed. Safe to call from several threads at once.
    """
    scheme, host, port, target, _ = split_url(url, _HTTP_PORTS)
    body = _body(topic, args, kwargs, options, realm, auth)
    headers = _headers(body, secret, auth)
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        status, answer = response.status, response.read(_MAX_ANSWER)
    except (OSError, http.client.HTTPException) as exc:
        raise PublishError(None, f"no answer from {url}: {exc or type(exc).__name__}") from exc
    finally:
        connection.close()
    return _answer(status, answer)


class Publisher:
    """Publish to one endpoint with the same settings each time:
    ``Publisher(url, secret=SECRET).publish("com.example.news", "hello", priority=2)``.

    Options as for :func:`publish`. Each call opens its own connection, so one publisher may
    serve every thread of a web application. Blocking, like :func:`publish`.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: Secret,
        realm: str | None = None,
        auth: AuthMode = "hmac",
        timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        split_url(url, _HTTP_PORTS)  # a bad URL fails here, not at the first publication
        _headers(b"", secret, auth)
        self.url = url
        self.realm = realm
        self.auth: AuthMode = auth
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._secret = secret

    def __repr__(self) -> str:
        return f"Publisher({self.url!r}, auth={self.auth!r})"

    def publish(
        self, topic: str, *args: Any, options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Publish ``args`` and ``kwargs`` (the event's keyword arguments; ``options`` is
        the one reserved name) to ``topic``; see :func:`publish`."""
        return publish(
            self.url,
            topic,
            *args,
            secret=self._secret,
            kwargs=kwargs,
            options=options,
            realm=self.realm,
            auth=self.auth,
            timeout=self.timeout,
            ssl_context=self.ssl_context,
        )


async def _post(
    url: str, body: bytes, headers: dict[str, str], ssl_context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    scheme, host, port, target, host_header = split_url(url, _HTTP_PORTS)
    stream = await open_stream(host, port, scheme == "https", ssl_context, host)
    try:
        client = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("Host", host_header),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *headers.items(),
            ],
        )
        out = client.send(request) or b""
        out += client.send(h11.Data(data=body)) or b""
        await stream.send_all(out + (client.send(h11.EndOfMessage()) or b""))
        status, answer = 0, bytearray()
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                answer += event.data
                if len(answer) > _MAX_ANSWER:
                    raise PublishError(status, "the answer is too long to be the endpoint's")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, bytes(answer)
    finally:
        await trio.aclose_forcefully(stream)


async def apublish(
    url: str,
    topic: str,
    *args: Any,
    secret: Secret | None = None,
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    realm: str | None = None,
    auth: AuthMode = "hmac",
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Publish once, from trio code. A checkpoint.

    With an ``http://`` or ``https://`` URL: as :func:`publish` (``secret`` required), over
    trio sockets. With a ``ws://`` or ``wss://`` URL: join ``realm`` (default ``realm1``) as
    a WAMP client (``headers`` go with the handshake), publish with acknowledgement, leave;
    ``options`` are then WAMP publish options and the answer has no ``receivers``.

    Returns ``{"id": publication_id, ...}``. Every failure (refusal, unreachable, no answer
    within ``timeout`` seconds, a WAMP error) raises :class:`PublishError`; ValueError for a
    URL of another scheme. Cancellation from outside propagates as usual.
    """
    kind = url.partition(":")[0].lower()
    if kind not in ("http", "https", "ws", "wss"):
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {url!r}")
    try:
        with trio.fail_after(timeout):
            if kind in ("ws", "wss"):
                if secret is not None:
                    raise ValueError("a ws:// URL takes credentials in headers=, not secret=")
                async with open_session(
                    url, realm or "realm1", headers=headers, ssl_context=ssl_context
                ) as session:
                    opts = dict(options or {})
                    publication = await session.publish(
                        topic, *args, acknowledge=True, options=opts, **dict(kwargs or {})
                    )
                return {"id": publication}
            if secret is None:
                raise ValueError("publishing over HTTP needs the endpoint's secret=")
            body = _body(topic, args, kwargs, options, realm, auth)
            status, answer = await _post(url, body, _headers(body, secret, auth), ssl_context)
    except trio.TooSlowError:
        raise PublishError(None, f"no answer from {url} within {timeout:g} s") from None
    except (OSError, h11.ProtocolError, SessionClosed, WampRequestError) as exc:
        raise PublishError(None, f"publishing to {url} failed: {exc}") from exc
    return _answer(status, answer)
