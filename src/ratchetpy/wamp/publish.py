"""PublishEndpoint: an HTTP API through which a web backend publishes to WAMP subscribers.

Ratchet's push tutorial needs ZeroMQ between the web application and the WebSocket server.
Here the web application POSTs JSON to a route of the same server instead, from any language:

.. code-block:: python

    wamp = WampServer(MyApp())
    app.route("/ws", wamp)
    app.route("/publish", PublishEndpoint(wamp, secret=os.environ["PUBLISH_SECRET"]))

.. code-block:: text

    POST /publish
    Content-Type: application/json
    X-Ratchetpy-Timestamp: 1700000000
    X-Ratchetpy-Signature: sha256=<hex HMAC-SHA256 of b"1700000000." + body>

    {"topic": "com.example.news", "args": ["hello"], "kwargs": {}, "options": {}}

    -> 200 {"id": <publication id>, "receivers": <how many subscribers got it>}

:func:`ratchetpy.client.publish` does this in one call. The order of checks is deliberate:
size (413), credentials (401: nothing about the body is looked at, or told, before the sender
is known), content type (415), body (400), topic policy (403), replay (409), then delivery. A
refused request delivers nothing, and a signed request is delivered at most once. Sans-IO
like every component: no trio here, and :meth:`on_open` answers at once.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

from ..broker import MessageBroker, current_broker
from ..components.base import HttpComponent, HttpResult
from ..components.connection import Connection
from ..exceptions import BrokerError, EncodeError
from ..protocol.http import HttpRequest, HttpResponse
from .messages import MAX_ID, IdGenerator, is_valid_uri
from .replay import Admission, ReplayGuard
from .serializers import STRICT_JSON
from .server import WampServer
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, Secret, signature

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "PublishEndpoint", "signature"]

logger = logging.getLogger("ratchetpy.wamp")

_HMAC_CHALLENGE = 'Ratchetpy-HMAC-SHA256 realm="ratchetpy-publish"'
_BEARER_CHALLENGE = 'Bearer realm="ratchetpy-publish"'
_FIELDS = frozenset({"topic", "args", "kwargs", "options", "realm", "nonce"})
# A nonce makes two deliberate, identical publications in one second distinct requests.
_MAX_NONCE = 128
_ID_OPTIONS = ("exclude", "eligible")
_AUTHID_OPTIONS = ("exclude_authid", "eligible_authid")
_MIN_SECRET = 16
# A timestamp longer than this is no Unix time in seconds; refusing it early keeps int() cheap.
_MAX_TIMESTAMP_DIGITS = 12

AuthMode = Literal["hmac", "bearer", "either"]


class _Refusal(Exception):
    """Answer the request with ``status``; ``code`` is also what the log says."""

    def __init__(
        self, status: int, code: str, reason: str, *, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = tuple(headers)


def _secrets(secret: Secret | Iterable[Secret] | None) -> list[bytes]:
    if secret is None:
        return []
    items = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    keys: list[bytes] = []
    for item in items:
        if not isinstance(item, (str, bytes)):
            raise TypeError(f"a secret is str or bytes, not {type(item).__name__}")
        key = item.encode() if isinstance(item, str) else bytes(item)
        if len(key) < _MIN_SECRET:
            # A short secret can be guessed offline from one captured signature.
            raise ValueError(
                f"a publish secret needs at least {_MIN_SECRET} bytes "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        keys.append(key)
    return keys


def _topic_policy(
    allow_topics: Callable[[str], bool] | Iterable[str] | None,
) -> Callable[[str], bool] | None:
    if allow_topics is None or callable(allow_topics):
        return allow_topics
    prefixes = [allow_topics] if isinstance(allow_topics, str) else list(allow_topics)
    # Whole URI components: "com.example" allows "com.example.news", not "com.examples".
    roots = tuple(prefix.rstrip(".") for prefix in prefixes)
    under = tuple(root + "." for root in roots)
    return lambda topic: topic in roots or topic.startswith(under)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class PublishEndpoint(HttpComponent):
    """Serve ``POST`` requests that publish to ``wamp``'s subscribers (an HTTP component).

    ``app.route("/publish", PublishEndpoint(wamp, secret=SECRET))``. Publications go out
    through :meth:`WampServer.publish`: straight to the subscribers, with the server's
    authority (``on_publish`` is not consulted). The wire format and the signing scheme are in
    the module docstring and in ``docs/reference/publish.md``.

    Options (keyword-only):

    ``secret``
        The shared secret (``str`` or ``bytes``, at least 16 bytes), or several of them: any
        one is accepted, which is how secrets are rotated (add the new one, move the senders
        over, drop the old one). Required, unless ``insecure_no_auth=True``.
    ``auth``
        ``"hmac"`` (default): requests must be signed (``X-Ratchetpy-Timestamp`` and
        ``X-Ratchetpy-Signature``). The secret never travels, the body cannot be altered, and
        a captured request is refused when sent again (409) and once its timestamp leaves
        the window (401). ``"bearer"``:
        ``Authorization: Bearer <secret>`` (easy from curl; the secret travels in every
        request, so only over TLS or loopback, and a captured request can be replayed
        forever). ``"either"``: both are accepted.
    ``timestamp_window``
        Seconds a signed request's timestamp may differ from the server's clock, either way
        (default 300). Older or newer requests get 401.
    ``replay_guard``
        The :class:`~ratchetpy.wamp.ReplayGuard` that remembers accepted signatures while
        their timestamps are inside the window, so that a captured request sent again gets
        409 instead of a second delivery (default: one of its own, 100,000 signatures, about
        20 MB). When it is full, signed requests get 503 with ``Retry-After`` until old ones
        expire. Identical publications in one second need distinct bodies: the ``nonce``
        field, which :func:`ratchetpy.client.publish` fills in.
    ``realm``
        The realm to publish to when the body names none (default: the server's first realm).
    ``max_body_size``
        Bytes a body may have (default 64 KiB); larger ones get 413.
    ``allow_topics``
        ``None`` (default: any topic), URI prefixes (``["com.example.news"]`` allows that
        topic and those below it, by whole components), or a function ``topic -> bool``.
        Other topics get 403.
    ``insecure_no_auth``
        ``True`` with ``secret=None`` serves without any authentication: anyone who can
        reach the endpoint can publish. Only for a socket nobody else can reach.
    ``clock``
        The time source for timestamps (default ``time.time``); tests inject their own.

    Answers: 200 JSON ``{"id": publication_id, "receivers": n}``; errors are JSON
    ``{"error": code, "reason": text}`` with status 400 (bad body, unknown realm), 401 (with
    ``WWW-Authenticate``: missing or wrong credentials, stale timestamp), 403 (topic not
    allowed), 405 (not POST), 409 (a signed request accepted before), 413 (too large), 415 (not
    ``application/json``) or 503 (the replay guard is full). Each refusal
    is logged at INFO on ``ratchetpy.wamp`` with the client's address and what was wrong,
    never with secrets or the body's content. Not a checkpoint: answers at once.
    """

    methods = ("POST",)

    def __init__(
        self,
        wamp: WampServer,
        *,
        secret: Secret | Iterable[Secret] | None,
        auth: AuthMode = "hmac",
        timestamp_window: float = 300.0,
        replay_guard: ReplayGuard | None = None,
        realm: str | None = None,
        max_body_size: int = 64 * 1024,
        allow_topics: Callable[[str], bool] | Iterable[str] | None = None,
        insecure_no_auth: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if auth not in ("hmac", "bearer", "either"):
            raise ValueError(f"auth must be 'hmac', 'bearer' or 'either', not {auth!r}")
        if timestamp_window <= 0:
            raise ValueError(f"timestamp_window must be positive, not {timestamp_window}")
        if max_body_size < 1:
            raise ValueError(f"max_body_size must be positive, not {max_body_size}")
        if realm is not None and not is_valid_uri(realm):
            raise ValueError(f"realm must be a WAMP URI, not {realm!r}")
        self._secrets = _secrets(secret)
        if insecure_no_auth:
            if self._secrets:
                raise ValueError("insecure_no_auth=True contradicts a secret: choose one")
            logger.warning(
                "PublishEndpoint without authentication: anyone who reaches it can publish"
            )
        elif not self._secrets:
            raise ValueError(
                "PublishEndpoint needs a secret (anyone could publish otherwise); pass "
                "secret=..., or secret=None, insecure_no_auth=True to serve it open on purpose"
            )
        self.wamp = wamp
        self.auth: AuthMode = auth
        self.timestamp_window = timestamp_window
        self.replay_guard = ReplayGuard() if replay_guard is None else replay_guard
        self.realm = realm
        self.max_body_size = max_body_size
        self.insecure_no_auth = insecure_no_auth
        self.clock = clock
        self._allowed = _topic_policy(allow_topics)
        # Requests by outcome for the server's metrics: "published" or a refusal's error code
        # (a fixed set: the codes the wire format documents).
        self._outcomes: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"PublishEndpoint(auth={self.auth!r}, realm={self.realm!r})"

    # -- HttpComponent interface -----------------------------------------------------------

    def metrics(self) -> dict[str, dict[str, int]]:
        """What the server's metrics report of this endpoint: requests by outcome
        (``published`` or the error code of the refusal). Not a checkpoint."""
        return {"publish_requests": dict(self._outcomes)}

    def on_open(self, conn: Connection, request: HttpRequest) -> HttpResult:
        counters = getattr(conn, "counters", None)
        if counters is not None:
            counters.add_source(self)
        try:
            outcome = self._publish(request)
        except _Refusal as refusal:
            return self._refused(conn, refusal)
        if isinstance(outcome, dict):
            return self._published(outcome)
        return self._published_across(conn, outcome)

    async def _published_across(
        self, conn: Connection, pending: Awaitable[dict[str, int]]
    ) -> HttpResponse:
        try:
            answer = await pending
        except _Refusal as refusal:
            return self._refused(conn, refusal)
        return self._published(answer)

    def _published(self, answer: dict[str, int]) -> HttpResponse:
        self._outcomes["published"] = self._outcomes.get("published", 0) + 1
        return HttpResponse(
            200,
            json.dumps(answer),
            content_type="application/json",
            headers=(("Cache-Control", "no-store"),),
        )

    def _refused(self, conn: Connection, refusal: _Refusal) -> HttpResponse:
        self._outcomes[refusal.code] = self._outcomes.get(refusal.code, 0) + 1
        logger.info(
            "HTTP publish refused with %d to %s: %s",
            refusal.status,
            conn.remote_address,
            refusal.code,
        )
        body = json.dumps({"error": refusal.code, "reason": refusal.reason})
        headers = (
            *refusal.headers,
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        )
        return HttpResponse(refusal.status, body, content_type="application/json", headers=headers)

    # -- the checks, in order --------------------------------------------------------------

    def _publish(self, request: HttpRequest) -> dict[str, int] | Awaitable[dict[str, int]]:
        if request.method != "POST":  # a Router answers this already; served bare, we do
            raise _Refusal(
                405, "method_not_allowed", "only POST publishes", headers=[("Allow", "POST")]
            )
        body = request.body
        if len(body) > self.max_body_size:
            raise _Refusal(413, "too_large", f"the body is over {self.max_body_size} bytes")
        signed = None if self.insecure_no_auth else self._authenticate(request, body)
        media_type = (request.header("content-type") or "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise _Refusal(
                415,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
                headers=[("Accept-Post", "application/json")],
            )
        fields = self._parse(body)
        topic = fields["topic"]
        if self._allowed is not None and not self._allowed(topic):
            raise _Refusal(
                403, "topic_not_allowed", f"publishing to {topic} over HTTP is not allowed"
            )
        if signed is not None:
            self._first_use(*signed)
        publication_id = IdGenerator.random()
        others = current_broker()
        if others is not None and others.distributed:
            # 200 once the other workers were reached, not before.
            return self._deliver_across(others, fields, publication_id, signed)
        try:
            receivers = self.wamp.publish(**_publication(fields, publication_id))
        except EncodeError as exc:
            raise self._undeliverable(exc, signed) from None
        logger.debug("HTTP publish %s to %s: %d receivers", publication_id, topic, receivers)
        return {"id": publication_id, "receivers": receivers}

    async def _deliver_across(
        self,
        others: MessageBroker,
        fields: dict[str, Any],
        publication_id: int,
        signed: tuple[bytes, float] | None,
    ) -> dict[str, int]:
        if signed is not None:
            await self._first_use_anywhere(others, *signed)
        try:
            receivers = await self.wamp.publish_accepted(**_publication(fields, publication_id))
        except EncodeError as exc:
            raise self._undeliverable(exc, signed) from None
        except BrokerError as exc:
            # Kept in the replay guard: this worker's subscribers have it, and a resend of
            # the same request would reach them twice.
            raise _Refusal(
                503,
                "broker_unavailable",
                f"the publication reached this worker's subscribers only: {exc}",
                headers=[("Retry-After", "1")],
            ) from None
        logger.debug(
            "HTTP publish %s to %s: %d receivers here, passed on to the other workers",
            publication_id,
            fields["topic"],
            receivers,
        )
        return {"id": publication_id, "receivers": receivers}

    async def _first_use_anywhere(
        self, others: MessageBroker, digest: bytes, expires: float
    ) -> None:
        """Refuse a signed request that another worker accepted (409): this worker's guard
        has seen only its own."""
        ttl = max(1.0, expires - self.clock())
        try:
            first = await others.claim(f"publish-signature:{digest.hex()}", ttl)
        except BrokerError as exc:
            self.replay_guard.forget(digest)  # delivered nowhere: a resend may pass
            raise _Refusal(
                503,
                "broker_unavailable",
                f"whether another worker accepted this request cannot be told: {exc}",
                headers=[("Retry-After", "1")],
            ) from None
        if not first:
            raise _Refusal(
                409, "replayed", "this signed request was accepted already (by another worker)"
            )

    def _undeliverable(self, exc: EncodeError, signed: tuple[bytes, float] | None) -> _Refusal:
        # Nobody received it: fan-out encodes for every subscriber before sending to any.
        # Not accepted, then: sent again it gets this answer again, not "replayed".
        if signed is not None:
            self.replay_guard.forget(signed[0])
        return _Refusal(400, "undeliverable", f"the payload cannot be delivered: {exc}")

    def _authenticate(self, request: HttpRequest, body: bytes) -> tuple[bytes, float] | None:
        """Check the credentials; for a signed request, its signature and the time its
        timestamp leaves the window (until then it must not be accepted again)."""
        signed = request.header(SIGNATURE_HEADER) is not None
        authorization = request.header("authorization")
        if self.auth == "bearer" or (self.auth == "either" and not signed and authorization):
            self._check_bearer(authorization)
            return None
        return self._check_signature(request, body)

    def _first_use(self, digest: bytes, expires: float) -> None:
        """Refuse a signed request accepted before (409), or any when the guard is full."""
        now = self.clock()
        admission = self.replay_guard.admit(digest, expires=expires, now=now)
        if admission is Admission.REPLAYED:
            raise _Refusal(
                409,
                "replayed",
                "this signed request was accepted already; sign each publication anew "
                '(identical ones in the same second need distinct "nonce" fields)',
            )
        if admission is Admission.FULL:
            wait = max(1, math.ceil(self.replay_guard.room_at - now))
            logger.warning(
                "HTTP publish refused: %d signed requests inside the %g s window fill the "
                "replay guard (raise ReplayGuard(max_entries=...) or narrow the window)",
                len(self.replay_guard),
                self.timestamp_window,
            )
            raise _Refusal(
                503,
                "busy",
                "too many signed publications inside the timestamp window to guard against "
                f"replays; retry in {wait} s",
                headers=[("Retry-After", str(wait))],
            )

    def _challenges(self) -> list[tuple[str, str]]:
        schemes = {
            "hmac": [_HMAC_CHALLENGE],
            "bearer": [_BEARER_CHALLENGE],
            "either": [_HMAC_CHALLENGE, _BEARER_CHALLENGE],
        }[self.auth]
        return [("WWW-Authenticate", scheme) for scheme in schemes]

    def _unauthorized(self, code: str, reason: str) -> _Refusal:
        return _Refusal(401, code, reason, headers=self._challenges())

    def _check_bearer(self, authorization: str | None) -> None:
        if authorization is None:
            raise self._unauthorized("missing_credentials", "send Authorization: Bearer <secret>")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._unauthorized("bad_credentials", "expected Authorization: Bearer <secret>")
        given = token.strip().encode("latin-1")  # HttpServer decoded header bytes as latin-1
        # Compare with every secret, not stopping at a match: the time taken says nothing.
        matched = False
        for key in self._secrets:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise self._unauthorized("bad_credentials", "wrong secret")

    def _check_signature(self, request: HttpRequest, body: bytes) -> tuple[bytes, float]:
        stamp = request.header(TIMESTAMP_HEADER)
        given = request.header(SIGNATURE_HEADER)
        if stamp is None or given is None:
            hint = f"sign the request: {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers"
            if self.auth == "either":
                hint += ", or send Authorization: Bearer <secret>"
            elif request.header("authorization") is not None:
                hint += " (this endpoint does not accept Authorization: Bearer)"
            raise self._unauthorized("missing_signature", hint)
        stamp = stamp.strip()
        # isascii: "²" is a digit to str.isdigit, and int() would take it.
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > _MAX_TIMESTAMP_DIGITS:
            raise self._unauthorized(
                "bad_timestamp", f"{TIMESTAMP_HEADER} must be Unix time in whole seconds"
            )
        given_bytes = given.strip().lower().encode("latin-1")
        matched = False
        for key in self._secrets:
            expected = signature(key, stamp, body).encode("ascii")
            matched |= hmac.compare_digest(given_bytes, expected)
        if not matched:
            raise self._unauthorized("bad_signature", "the signature does not match")
        # Matched, so it is "sha256=" and 64 hex digits: the 32 bytes are what is remembered.
        digest = bytes.fromhex(given_bytes[7:].decode("ascii"))
        # Checked after the signature, so only a genuine sender learns about the server's clock
        # (a replay, or a sender whose clock is off).
        skew = self.clock() - int(stamp)
        if abs(skew) > self.timestamp_window:
            direction = "old" if skew > 0 else "in the future"
            raise self._unauthorized(
                "stale_timestamp",
                f"the timestamp is {abs(skew):.0f} s {direction} "
                f"(at most {self.timestamp_window:g} s either way); check the sender's clock",
            )
        return digest, int(stamp) + self.timestamp_window

    def _parse(self, body: bytes) -> dict[str, Any]:
        """The body's fields, checked: topic, args, kwargs, realm and WampServer.publish
        keyword arguments built from options."""
        try:
            data = STRICT_JSON.decode(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise _Refusal(400, "invalid_json", "the body is not UTF-8") from None
        except RecursionError:
            raise _Refusal(400, "invalid_json", "the JSON is nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, NaN, 1e999, ints too long, duplicate keys
            raise _Refusal(400, "invalid_json", f"invalid JSON: {exc}") from None
        if type(data) is not dict:
            raise _Refusal(
                400, "invalid_body", f"the body must be a JSON object, not {type(data).__name__}"
            )
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise _Refusal(
                400,
                "invalid_body",
                f"unknown field {_short(unknown[0])} (fields: {', '.join(sorted(_FIELDS))})",
            )
        topic = data.get("topic")
        if topic is None:
            raise _Refusal(400, "invalid_topic", "the body has no topic")
        if not is_valid_uri(topic):
            raise _Refusal(400, "invalid_topic", f"topic {_short(topic)} is not a WAMP URI")
        args = data.get("args")
        if args is None:
            args = []
        elif type(args) is not list:
            raise _Refusal(400, "invalid_args", "args must be a JSON array")
        kwargs = data.get("kwargs")
        if kwargs is None:
            kwargs = {}
        elif type(kwargs) is not dict:
            raise _Refusal(400, "invalid_kwargs", "kwargs must be a JSON object")
        nonce = data.get("nonce")
        if nonce is not None and (type(nonce) is not str or len(nonce) > _MAX_NONCE):
            raise _Refusal(
                400, "invalid_nonce", f"nonce must be a string of at most {_MAX_NONCE} characters"
            )
        return {
            "topic": topic,
            "args": args,
            "kwargs": kwargs,
            "options": self._options(data.get("options")),
            "realm": self._realm(data.get("realm")),
        }

    @staticmethod
    def _options(options: object) -> dict[str, Any]:
        if options is None:
            return {}
        if type(options) is not dict:
            raise _Refusal(400, "invalid_options", "options must be a JSON object")
        known = (*_ID_OPTIONS, *_AUTHID_OPTIONS)
        checked: dict[str, Any] = {}
        for name, value in options.items():
            if name not in known:
                raise _Refusal(
                    400,
                    "invalid_options",
                    f"unknown option {_short(name)} (options: {', '.join(known)})",
                )
            if value is None:
                continue
            if name in _ID_OPTIONS:
                ok = type(value) is list and all(
                    type(item) is int and 1 <= item <= MAX_ID for item in value
                )
                what = "a list of session ids"
            else:
                ok = type(value) is list and all(type(item) is str for item in value)
                what = "a list of strings"
            if not ok:
                raise _Refusal(400, "invalid_options", f"option {name} must be {what}")
            checked[name] = value
        return checked

    def _realm(self, name: object) -> str:
        """The name of the realm to publish to (the endpoint's default when not given)."""
        if name is None:
            name = self.realm
        elif not is_valid_uri(name):
            raise _Refusal(400, "invalid_realm", f"realm {_short(name)} is not a WAMP URI")
        try:
            # Never creates a realm: a server open to any realm name keeps only those in use.
            return self.wamp.realm(name if isinstance(name, str) else None).name
        except ValueError as exc:
            code = "invalid_realm" if name is None else "unknown_realm"
            raise _Refusal(400, code, str(exc)) from None


def _publication(fields: dict[str, Any], publication_id: int) -> dict[str, Any]:
    """The arguments of ``WampServer.publish`` for a parsed request body."""
    return {
        "topic": fields["topic"],
        "args": fields["args"],
        "kwargs": fields["kwargs"],
        "realm": fields["realm"],
        "publication_id": publication_id,
        **fields["options"],
    }
