"""WAMP v2 messages (Basic Profile), sans-IO: the one place that says what a valid message is.

A WAMP message on the wire is a list whose first element is the message type code. Between the
serializer (:mod:`ratchetpy.wamp.serializers`, which turns frames into such lists) and either
end of a session sits this module:

* :func:`parse` turns a decoded list from a *client* into one of the frozen message classes
  below, or raises :class:`~ratchetpy.ProtocolViolation` saying what the client got wrong. It is
  the router's trust boundary: everything it returns has the right shape and types, so the
  router never re-checks.
* :func:`parse_router_message` does the same, with the same field rules, for what a *router*
  sends; :mod:`ratchetpy.client` reads every message through it.
* :func:`to_list` turns any message back into a list for the serializer, leaving out empty
  ``Arguments``/``ArgumentsKw`` tails as the spec allows.

Nothing here touches a socket or imports trio. Only exact-match URIs are understood (the Basic
Profile); ``Options`` and ``Details`` dicts are checked to be dicts with str keys but not
interpreted: what a router does with ``match``, ``invoke``, ``exclude_me`` and friends is its own
business.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ..exceptions import InvalidUri, ProtocolViolation

__all__ = [
    "ABORT",
    "AUTHORIZATION_FAILED",
    "BROKER_UNAVAILABLE",
    "CALL",
    "CANCELED",
    "CLOSE_NORMAL",
    "CLOSE_REALM",
    "ERROR",
    "EVENT",
    "GOODBYE",
    "GOODBYE_AND_OUT",
    "HELLO",
    "INVALID_ARGUMENT",
    "INVALID_URI",
    "INVOCATION",
    "LIMIT_EXCEEDED",
    "MAX_ID",
    "MESSAGE_NAMES",
    "NOT_AUTHORIZED",
    "NO_SUCH_PROCEDURE",
    "NO_SUCH_REALM",
    "NO_SUCH_REGISTRATION",
    "NO_SUCH_SUBSCRIPTION",
    "PROCEDURE_ALREADY_EXISTS",
    "PROTOCOL_VIOLATION",
    "PUBLISH",
    "PUBLISHED",
    "REGISTER",
    "REGISTERED",
    "RESULT",
    "RUNTIME_ERROR",
    "SUBSCRIBE",
    "SUBSCRIBED",
    "SYSTEM_SHUTDOWN",
    "UNREGISTER",
    "UNREGISTERED",
    "UNSUBSCRIBE",
    "UNSUBSCRIBED",
    "WELCOME",
    "YIELD",
    "Abort",
    "Call",
    "ClientMessage",
    "Error",
    "Event",
    "Goodbye",
    "Hello",
    "IdGenerator",
    "Invocation",
    "Message",
    "Publish",
    "Published",
    "Register",
    "Registered",
    "Result",
    "RouterMessage",
    "Subscribe",
    "Subscribed",
    "Unregister",
    "Unregistered",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
    "Yield",
    "is_valid_uri",
    "parse",
    "parse_router_message",
    "to_list",
]

# -- message type codes (WAMP v2, Basic Profile) ------------------------------------------------

HELLO = 1
WELCOME = 2
ABORT = 3
GOODBYE = 6
ERROR = 8
PUBLISH = 16
PUBLISHED = 17
SUBSCRIBE = 32
SUBSCRIBED = 33
UNSUBSCRIBE = 34
UNSUBSCRIBED = 35
EVENT = 36
CALL = 48
RESULT = 50
REGISTER = 64
REGISTERED = 65
UNREGISTER = 66
UNREGISTERED = 67
INVOCATION = 68
YIELD = 70

#: Code -> name, for messages that say which message was wrong.
MESSAGE_NAMES: dict[int, str] = {
    HELLO: "HELLO",
    WELCOME: "WELCOME",
    ABORT: "ABORT",
    GOODBYE: "GOODBYE",
    ERROR: "ERROR",
    PUBLISH: "PUBLISH",
    PUBLISHED: "PUBLISHED",
    SUBSCRIBE: "SUBSCRIBE",
    SUBSCRIBED: "SUBSCRIBED",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBSCRIBED: "UNSUBSCRIBED",
    EVENT: "EVENT",
    CALL: "CALL",
    RESULT: "RESULT",
    REGISTER: "REGISTER",
    REGISTERED: "REGISTERED",
    UNREGISTER: "UNREGISTER",
    UNREGISTERED: "UNREGISTERED",
    INVOCATION: "INVOCATION",
    YIELD: "YIELD",
}

# Advanced Profile messages a client may send (CHALLENGE 4 is router-only): named in the error
# so that a client using them learns why it was refused rather than seeing "unknown type".
_ADVANCED = {5: "AUTHENTICATE", 49: "CANCEL"}

# -- standard error and close reasons -----------------------------------------------------------

INVALID_URI = "wamp.error.invalid_uri"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
PROCEDURE_ALREADY_EXISTS = "wamp.error.procedure_already_exists"
NO_SUCH_REGISTRATION = "wamp.error.no_such_registration"
NO_SUCH_SUBSCRIPTION = "wamp.error.no_such_subscription"
INVALID_ARGUMENT = "wamp.error.invalid_argument"
NO_SUCH_REALM = "wamp.error.no_such_realm"
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
NOT_AUTHORIZED = "wamp.error.not_authorized"
RUNTIME_ERROR = "wamp.error.runtime_error"
CANCELED = "wamp.error.canceled"
SYSTEM_SHUTDOWN = "wamp.error.system_shutdown"
AUTHORIZATION_FAILED = "wamp.error.authorization_failed"
CLOSE_NORMAL = "wamp.close.normal"
CLOSE_REALM = "wamp.close.close_realm"
GOODBYE_AND_OUT = "wamp.close.goodbye_and_out"
#: ratchetpy's own error URI for a request refused because a per-session limit was reached
#: (the Basic Profile defines none for this).
LIMIT_EXCEEDED = "ratchetpy.error.limit_exceeded"
#: ratchetpy's error URI for a SUBSCRIBE or an acknowledged PUBLISH that the broker between
#: workers (Redis) could not carry out: other workers would not have seen it.
BROKER_UNAVAILABLE = "ratchetpy.error.broker_unavailable"

#: Largest WAMP id: ids are integers in [1, 2**53] so that JavaScript numbers hold them exactly.
MAX_ID = 2**53

# -- errors --------------------------------------------------------------------------------------


# -- URIs -----------------------------------------------------------------------------------------

# The spec's rules without empty components (empty ones only make sense for wildcard patterns,
# which the Basic Profile lacks). '.' cannot occur inside a component, so the regexes never
# backtrack: matching is linear in the URI's length.
_LOOSE_URI = re.compile(r"(?:[^\s.#]+\.)*[^\s.#]+")
_STRICT_URI = re.compile(r"(?:[0-9a-z_]+\.)*[0-9a-z_]+")


def is_valid_uri(uri: object, *, strict: bool = False) -> bool:
    """Whether ``uri`` is a WAMP URI: dot-separated components, none of them empty.

    The loose rule (the default, and what :func:`parse` applies to what clients send) forbids
    only whitespace and ``#`` in components; the strict rule allows only ``[0-9a-z_]``.
    """
    if type(uri) is not str:
        return False
    return (_STRICT_URI if strict else _LOOSE_URI).fullmatch(uri) is not None


# -- messages -------------------------------------------------------------------------------------


def _tail(head: list[Any], args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """Append the optional Arguments/ArgumentsKw, leaving out empty ones as the spec allows."""
    if kwargs:
        head.append(args)
        head.append(kwargs)
    elif args:
        head.append(args)
    return head


@dataclass(frozen=True, slots=True)
class Hello:
    """``[HELLO, Realm|uri, Details|dict]``: a client asks to join ``realm``.

    ``details["roles"]`` names the client roles (caller, callee, publisher, subscriber) it
    plays, each with a dict of features; :func:`parse` guarantees at least one known role.
    """

    TYPE: ClassVar[int] = HELLO
    realm: str
    details: dict[str, Any]

    def to_list(self) -> list[Any]:
        return [HELLO, self.realm, self.details]


@dataclass(frozen=True, slots=True)
class Welcome:
    """``[WELCOME, Session|id, Details|dict]``: the router accepted the HELLO.

    ``details`` should announce the router's roles (``{"roles": {"broker": {}, "dealer": {}}}``).
    """

    TYPE: ClassVar[int] = WELCOME
    session_id: int
    details: dict[str, Any]

    def to_list(self) -> list[Any]:
        return [WELCOME, self.session_id, self.details]


@dataclass(frozen=True, slots=True)
class Abort:
    """``[ABORT, Details|dict, Reason|uri]``: either side ends a session that is not (yet) open."""

    TYPE: ClassVar[int] = ABORT
    details: dict[str, Any]
    reason: str

    def to_list(self) -> list[Any]:
        return [ABORT, self.details, self.reason]


@dataclass(frozen=True, slots=True)
class Goodbye:
    """``[GOODBYE, Details|dict, Reason|uri]``: either side closes an open session.

    The other side answers with its own GOODBYE, reason ``wamp.close.goodbye_and_out``.
    """

    TYPE: ClassVar[int] = GOODBYE
    details: dict[str, Any]
    reason: str

    def to_list(self) -> list[Any]:
        return [GOODBYE, self.details, self.reason]


@dataclass(frozen=True, slots=True)
class Error:
    """``[ERROR, REQUEST.Type|int, REQUEST.Request|id, Details|dict, Error|uri, Arguments?,
    ArgumentsKw?]``: a request failed.

    The router sends it for SUBSCRIBE, UNSUBSCRIBE, PUBLISH, REGISTER, UNREGISTER and CALL; a
    client (as callee) only for INVOCATION, which :func:`parse` enforces.
    """

    TYPE: ClassVar[int] = ERROR
    request_type: int
    request_id: int
    details: dict[str, Any]
    error: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        head = [ERROR, self.request_type, self.request_id, self.details, self.error]
        return _tail(head, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Publish:
    """``[PUBLISH, Request|id, Options|dict, Topic|uri, Arguments?, ArgumentsKw?]``.

    Only acknowledged (PUBLISHED) when ``options["acknowledge"]`` is true.
    """

    TYPE: ClassVar[int] = PUBLISH
    request_id: int
    options: dict[str, Any]
    topic: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        return _tail([PUBLISH, self.request_id, self.options, self.topic], self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Published:
    """``[PUBLISHED, PUBLISH.Request|id, Publication|id]``: acknowledges a PUBLISH."""

    TYPE: ClassVar[int] = PUBLISHED
    request_id: int
    publication_id: int

    def to_list(self) -> list[Any]:
        return [PUBLISHED, self.request_id, self.publication_id]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``[SUBSCRIBE, Request|id, Options|dict, Topic|uri]``."""

    TYPE: ClassVar[int] = SUBSCRIBE
    request_id: int
    options: dict[str, Any]
    topic: str

    def to_list(self) -> list[Any]:
        return [SUBSCRIBE, self.request_id, self.options, self.topic]


@dataclass(frozen=True, slots=True)
class Subscribed:
    """``[SUBSCRIBED, SUBSCRIBE.Request|id, Subscription|id]``.

    Every subscriber of a topic gets the same subscription id (router scope).
    """

    TYPE: ClassVar[int] = SUBSCRIBED
    request_id: int
    subscription_id: int

    def to_list(self) -> list[Any]:
        return [SUBSCRIBED, self.request_id, self.subscription_id]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``[UNSUBSCRIBE, Request|id, SUBSCRIBED.Subscription|id]``."""

    TYPE: ClassVar[int] = UNSUBSCRIBE
    request_id: int
    subscription_id: int

    def to_list(self) -> list[Any]:
        return [UNSUBSCRIBE, self.request_id, self.subscription_id]


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """``[UNSUBSCRIBED, UNSUBSCRIBE.Request|id]``."""

    TYPE: ClassVar[int] = UNSUBSCRIBED
    request_id: int

    def to_list(self) -> list[Any]:
        return [UNSUBSCRIBED, self.request_id]


@dataclass(frozen=True, slots=True)
class Event:
    """``[EVENT, SUBSCRIBED.Subscription|id, PUBLISHED.Publication|id, Details|dict, Arguments?,
    ArgumentsKw?]``: a publication delivered to a subscriber.

    All subscribers of one subscription get the identical message, so a router can encode it
    once per serializer.
    """

    TYPE: ClassVar[int] = EVENT
    subscription_id: int
    publication_id: int
    details: dict[str, Any]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        head = [EVENT, self.subscription_id, self.publication_id, self.details]
        return _tail(head, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Call:
    """``[CALL, Request|id, Options|dict, Procedure|uri, Arguments?, ArgumentsKw?]``."""

    TYPE: ClassVar[int] = CALL
    request_id: int
    options: dict[str, Any]
    procedure: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        head = [CALL, self.request_id, self.options, self.procedure]
        return _tail(head, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Result:
    """``[RESULT, CALL.Request|id, Details|dict, Arguments?, ArgumentsKw?]``: a call's outcome."""

    TYPE: ClassVar[int] = RESULT
    request_id: int
    details: dict[str, Any]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        return _tail([RESULT, self.request_id, self.details], self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Register:
    """``[REGISTER, Request|id, Options|dict, Procedure|uri]``: a callee offers a procedure."""

    TYPE: ClassVar[int] = REGISTER
    request_id: int
    options: dict[str, Any]
    procedure: str

    def to_list(self) -> list[Any]:
        return [REGISTER, self.request_id, self.options, self.procedure]


@dataclass(frozen=True, slots=True)
class Registered:
    """``[REGISTERED, REGISTER.Request|id, Registration|id]``."""

    TYPE: ClassVar[int] = REGISTERED
    request_id: int
    registration_id: int

    def to_list(self) -> list[Any]:
        return [REGISTERED, self.request_id, self.registration_id]


@dataclass(frozen=True, slots=True)
class Unregister:
    """``[UNREGISTER, Request|id, REGISTERED.Registration|id]``."""

    TYPE: ClassVar[int] = UNREGISTER
    request_id: int
    registration_id: int

    def to_list(self) -> list[Any]:
        return [UNREGISTER, self.request_id, self.registration_id]


@dataclass(frozen=True, slots=True)
class Unregistered:
    """``[UNREGISTERED, UNREGISTER.Request|id]``."""

    TYPE: ClassVar[int] = UNREGISTERED
    request_id: int

    def to_list(self) -> list[Any]:
        return [UNREGISTERED, self.request_id]


@dataclass(frozen=True, slots=True)
class Invocation:
    """``[INVOCATION, Request|id, REGISTERED.Registration|id, Details|dict, CALL.Arguments?,
    CALL.ArgumentsKw?]``: the router asks a callee to run a call.

    ``request_id`` is in the callee's session scope (sequential, see :class:`IdGenerator`), not
    the caller's CALL request id.
    """

    TYPE: ClassVar[int] = INVOCATION
    request_id: int
    registration_id: int
    details: dict[str, Any]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        head = [INVOCATION, self.request_id, self.registration_id, self.details]
        return _tail(head, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Yield:
    """``[YIELD, INVOCATION.Request|id, Options|dict, Arguments?, ArgumentsKw?]``: a callee's
    result, which the router passes on to the caller as a RESULT."""

    TYPE: ClassVar[int] = YIELD
    request_id: int
    options: dict[str, Any]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        return _tail([YIELD, self.request_id, self.options], self.args, self.kwargs)


#: What :func:`parse` can return: the messages a client may send to a router.
ClientMessage = (
    Hello
    | Abort
    | Goodbye
    | Error
    | Publish
    | Subscribe
    | Unsubscribe
    | Call
    | Register
    | Unregister
    | Yield
)

#: What :func:`parse_router_message` can return: the messages a router may send a client.
RouterMessage = (
    Welcome
    | Abort
    | Goodbye
    | Error
    | Published
    | Subscribed
    | Unsubscribed
    | Event
    | Result
    | Registered
    | Unregistered
    | Invocation
)

#: Every Basic Profile message.
Message = (
    ClientMessage
    | Welcome
    | Published
    | Subscribed
    | Unsubscribed
    | Event
    | Result
    | Registered
    | Unregistered
    | Invocation
)


def to_list(message: Message) -> list[Any]:
    """The wire form of ``message`` for a serializer; empty Arguments/ArgumentsKw are left out.

    Nothing is validated: messages the router builds are trusted, and messages from
    :func:`parse` were validated on the way in. The returned list shares ``args``/``kwargs``
    (and dicts) with the message rather than copying them.
    """
    return message.to_list()


# -- parsing ---------------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A short description of a bad value for an error message: hostile input can be huge."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _id(raw: list[Any], i: int, name: str, what: str) -> int:
    value = raw[i]
    # type() rather than isinstance(): bool is an int subclass, and True is not an id.
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ProtocolViolation(f"{name}: {what} must be an int in [1, 2**53], got {_show(value)}")
    return value


def _dict(raw: list[Any], i: int, name: str, what: str) -> dict[str, Any]:
    value = raw[i]
    if type(value) is not dict:
        raise ProtocolViolation(f"{name}: {what} must be a dict, got {_show(value)}")
    for key in value:
        if type(key) is not str:
            raise ProtocolViolation(f"{name}: {what} keys must be strings, got {_show(key)}")
    return value


def _uri_type(raw: list[Any], i: int, name: str, what: str) -> str:
    value = raw[i]
    if type(value) is not str:
        raise ProtocolViolation(f"{name}: {what} must be a URI string, got {_show(value)}")
    return value


def _check_uri(uri: str, name: str, what: str, code: int, request_id: int | None) -> None:
    """Raise :class:`InvalidUri` (answerable with an ERROR or ABORT) unless ``uri`` is valid."""
    if _LOOSE_URI.fullmatch(uri) is None:
        raise InvalidUri(
            f"{name}: {what} is not a valid URI (dot-separated non-empty components without"
            f" whitespace or '#'): {_show(uri)}",
            uri=uri,
            request_type=code,
            request_id=request_id,
        )


def _reason(raw: list[Any], i: int, name: str, what: str) -> str:
    """A URI in a message that cannot be answered (ABORT, GOODBYE, ERROR): plain violation."""
    value = _uri_type(raw, i, name, what)
    if _LOOSE_URI.fullmatch(value) is None:
        raise ProtocolViolation(f"{name}: {what} is not a valid URI: {_show(value)}")
    return value


def _length(raw: list[Any], name: str, fixed: int, optional: int = 0) -> None:
    """Check the element count: ``fixed`` mandatory ones (type code included) plus up to
    ``optional`` trailing Arguments/ArgumentsKw."""
    n = len(raw)
    if not fixed <= n <= fixed + optional:
        expected = str(fixed) if not optional else f"{fixed} to {fixed + optional}"
        raise ProtocolViolation(f"{name} must have {expected} elements, got {n}")


def _args_kwargs(raw: list[Any], start: int, name: str) -> tuple[list[Any], dict[str, Any]]:
    """The optional Arguments|list and ArgumentsKw|dict at ``raw[start:]``; absent means empty."""
    n = len(raw)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if n > start:
        args = raw[start]
        if type(args) is not list:
            raise ProtocolViolation(f"{name}: Arguments must be a list, got {_show(args)}")
        if n > start + 1:
            kwargs = _dict(raw, start + 1, name, "ArgumentsKw")
    return args, kwargs


_M = TypeVar("_M")

_CLIENT_ROLES = frozenset({"caller", "callee", "publisher", "subscriber"})


def _parse_hello(raw: list[Any]) -> Hello:
    _length(raw, "HELLO", 3)
    realm = _uri_type(raw, 1, "HELLO", "Realm")
    details = _dict(raw, 2, "HELLO", "Details")
    roles = details.get("roles")
    # The spec requires the client to announce its roles; a router needs them to know which
    # features it may use towards this client. Unknown role names are tolerated (future roles).
    if type(roles) is not dict or not _CLIENT_ROLES.intersection(roles):
        raise ProtocolViolation(
            "HELLO: Details.roles must be a dict naming at least one of caller, callee,"
            f" publisher, subscriber; got {_show(roles)}"
        )
    for role, features in roles.items():
        if type(features) is not dict:
            raise ProtocolViolation(
                f"HELLO: Details.roles[{role!r}] must be a dict of features, got {_show(features)}"
            )
    _check_uri(realm, "HELLO", "Realm", HELLO, None)
    return Hello(realm, details)


def _parse_abort(raw: list[Any]) -> Abort:
    _length(raw, "ABORT", 3)
    details = _dict(raw, 1, "ABORT", "Details")
    return Abort(details, _reason(raw, 2, "ABORT", "Reason"))


def _parse_goodbye(raw: list[Any]) -> Goodbye:
    _length(raw, "GOODBYE", 3)
    details = _dict(raw, 1, "GOODBYE", "Details")
    return Goodbye(details, _reason(raw, 2, "GOODBYE", "Reason"))


def _parse_error(raw: list[Any]) -> Error:
    _length(raw, "ERROR", 5, 2)
    request_type = raw[1]
    if type(request_type) is not int or request_type != INVOCATION:
        raise ProtocolViolation(
            "ERROR: a client may send ERROR only in reply to an INVOCATION (REQUEST.Type 68),"
            f" got REQUEST.Type {_show(request_type)}"
        )
    request_id = _id(raw, 2, "ERROR", "INVOCATION.Request")
    details = _dict(raw, 3, "ERROR", "Details")
    error = _reason(raw, 4, "ERROR", "Error")
    args, kwargs = _args_kwargs(raw, 5, "ERROR")
    return Error(INVOCATION, request_id, details, error, args, kwargs)


def _parse_publish(raw: list[Any]) -> Publish:
    _length(raw, "PUBLISH", 4, 2)
    request_id = _id(raw, 1, "PUBLISH", "Request")
    options = _dict(raw, 2, "PUBLISH", "Options")
    topic = _uri_type(raw, 3, "PUBLISH", "Topic")
    args, kwargs = _args_kwargs(raw, 4, "PUBLISH")
    _check_uri(topic, "PUBLISH", "Topic", PUBLISH, request_id)
    return Publish(request_id, options, topic, args, kwargs)


def _parse_subscribe(raw: list[Any]) -> Subscribe:
    _length(raw, "SUBSCRIBE", 4)
    request_id = _id(raw, 1, "SUBSCRIBE", "Request")
    options = _dict(raw, 2, "SUBSCRIBE", "Options")
    topic = _uri_type(raw, 3, "SUBSCRIBE", "Topic")
    _check_uri(topic, "SUBSCRIBE", "Topic", SUBSCRIBE, request_id)
    return Subscribe(request_id, options, topic)


def _parse_unsubscribe(raw: list[Any]) -> Unsubscribe:
    _length(raw, "UNSUBSCRIBE", 3)
    request_id = _id(raw, 1, "UNSUBSCRIBE", "Request")
    return Unsubscribe(request_id, _id(raw, 2, "UNSUBSCRIBE", "SUBSCRIBED.Subscription"))


def _parse_call(raw: list[Any]) -> Call:
    _length(raw, "CALL", 4, 2)
    request_id = _id(raw, 1, "CALL", "Request")
    options = _dict(raw, 2, "CALL", "Options")
    procedure = _uri_type(raw, 3, "CALL", "Procedure")
    args, kwargs = _args_kwargs(raw, 4, "CALL")
    _check_uri(procedure, "CALL", "Procedure", CALL, request_id)
    return Call(request_id, options, procedure, args, kwargs)


def _parse_register(raw: list[Any]) -> Register:
    _length(raw, "REGISTER", 4)
    request_id = _id(raw, 1, "REGISTER", "Request")
    options = _dict(raw, 2, "REGISTER", "Options")
    procedure = _uri_type(raw, 3, "REGISTER", "Procedure")
    _check_uri(procedure, "REGISTER", "Procedure", REGISTER, request_id)
    return Register(request_id, options, procedure)


def _parse_unregister(raw: list[Any]) -> Unregister:
    _length(raw, "UNREGISTER", 3)
    request_id = _id(raw, 1, "UNREGISTER", "Request")
    return Unregister(request_id, _id(raw, 2, "UNREGISTER", "REGISTERED.Registration"))


def _parse_yield(raw: list[Any]) -> Yield:
    _length(raw, "YIELD", 3, 2)
    request_id = _id(raw, 1, "YIELD", "INVOCATION.Request")
    options = _dict(raw, 2, "YIELD", "Options")
    args, kwargs = _args_kwargs(raw, 3, "YIELD")
    return Yield(request_id, options, args, kwargs)


_PARSERS: dict[int, Callable[[list[Any]], ClientMessage]] = {
    HELLO: _parse_hello,
    ABORT: _parse_abort,
    GOODBYE: _parse_goodbye,
    ERROR: _parse_error,
    PUBLISH: _parse_publish,
    SUBSCRIBE: _parse_subscribe,
    UNSUBSCRIBE: _parse_unsubscribe,
    CALL: _parse_call,
    REGISTER: _parse_register,
    UNREGISTER: _parse_unregister,
    YIELD: _parse_yield,
}


def parse(raw: object) -> ClientMessage:
    """Validate a decoded message from a client and return it as a message object.

    Accepts what a client may send a router in the Basic Profile: HELLO, ABORT, GOODBYE, ERROR
    (only for INVOCATION), PUBLISH, SUBSCRIBE, UNSUBSCRIBE, CALL, REGISTER, UNREGISTER and
    YIELD, with exactly the mandatory elements plus, where the spec allows them, an optional
    Arguments|list and ArgumentsKw|dict (absent ones become empty). Ids must be ints (not bools)
    in [1, 2**53]; dicts must be dicts with str keys; URIs must follow the loose rule without
    empty components.

    Raises :class:`InvalidUri` when only a URI is wrong (the router answers with an ERROR or,
    for HELLO, an ABORT), and :class:`ProtocolViolation` for anything else: a non-list, an
    unknown or router-only message type, a wrong length or a wrong type (the router aborts).
    Session state (HELLO only first, no HELLO twice) is the router's to check.
    """
    return _parse_with(_PARSERS, raw, sender="clients", other="routers")


def _parse_with(
    parsers: Mapping[int, Callable[[list[Any]], _M]], raw: object, *, sender: str, other: str
) -> _M:
    """Check the envelope (a non-empty list with an int type code), then the message."""
    if type(raw) is not list:
        raise ProtocolViolation(f"a WAMP message must be a list, got {_show(raw)}")
    if not raw:
        raise ProtocolViolation("a WAMP message must not be empty")
    code = raw[0]
    parser = parsers.get(code) if type(code) is int else None
    if parser is not None:
        return parser(raw)
    if type(code) is not int:
        raise ProtocolViolation(f"message type must be an int, got {_show(code)}")
    if code in MESSAGE_NAMES:
        raise ProtocolViolation(f"{MESSAGE_NAMES[code]} ({code}) is sent by {other}, not {sender}")
    if code in _ADVANCED:
        raise ProtocolViolation(
            f"{_ADVANCED[code]} ({code}) belongs to the Advanced Profile, which is not supported"
        )
    raise ProtocolViolation(f"unknown message type {_show(code)}")


# -- messages from a router (what ratchetpy.client reads) ---------------------------------------
#
# The same field rules as for a client's messages, so that both ends of ratchetpy agree on what
# a valid WAMP message is.

#: The requests a router answers with ERROR (a client answers only INVOCATION).
_ROUTER_ERROR_REQUESTS = frozenset({SUBSCRIBE, UNSUBSCRIBE, PUBLISH, REGISTER, UNREGISTER, CALL})


def _parse_welcome(raw: list[Any]) -> Welcome:
    _length(raw, "WELCOME", 3)
    return Welcome(_id(raw, 1, "WELCOME", "Session"), _dict(raw, 2, "WELCOME", "Details"))


def _parse_router_error(raw: list[Any]) -> Error:
    _length(raw, "ERROR", 5, 2)
    request_type = raw[1]
    if type(request_type) is not int or request_type not in _ROUTER_ERROR_REQUESTS:
        raise ProtocolViolation(
            "ERROR: a router answers SUBSCRIBE, UNSUBSCRIBE, PUBLISH, REGISTER, UNREGISTER or"
            f" CALL with ERROR, got REQUEST.Type {_show(request_type)}"
        )
    request_id = _id(raw, 2, "ERROR", "REQUEST.Request")
    details = _dict(raw, 3, "ERROR", "Details")
    error = _reason(raw, 4, "ERROR", "Error")
    args, kwargs = _args_kwargs(raw, 5, "ERROR")
    return Error(request_type, request_id, details, error, args, kwargs)


def _parse_published(raw: list[Any]) -> Published:
    _length(raw, "PUBLISHED", 3)
    request_id = _id(raw, 1, "PUBLISHED", "PUBLISH.Request")
    return Published(request_id, _id(raw, 2, "PUBLISHED", "Publication"))


def _parse_subscribed(raw: list[Any]) -> Subscribed:
    _length(raw, "SUBSCRIBED", 3)
    request_id = _id(raw, 1, "SUBSCRIBED", "SUBSCRIBE.Request")
    return Subscribed(request_id, _id(raw, 2, "SUBSCRIBED", "Subscription"))


def _parse_unsubscribed(raw: list[Any]) -> Unsubscribed:
    _length(raw, "UNSUBSCRIBED", 2)
    return Unsubscribed(_id(raw, 1, "UNSUBSCRIBED", "UNSUBSCRIBE.Request"))


def _parse_event(raw: list[Any]) -> Event:
    _length(raw, "EVENT", 4, 2)
    subscription_id = _id(raw, 1, "EVENT", "SUBSCRIBED.Subscription")
    publication_id = _id(raw, 2, "EVENT", "PUBLISHED.Publication")
    details = _dict(raw, 3, "EVENT", "Details")
    args, kwargs = _args_kwargs(raw, 4, "EVENT")
    return Event(subscription_id, publication_id, details, args, kwargs)


def _parse_result(raw: list[Any]) -> Result:
    _length(raw, "RESULT", 3, 2)
    request_id = _id(raw, 1, "RESULT", "CALL.Request")
    details = _dict(raw, 2, "RESULT", "Details")
    args, kwargs = _args_kwargs(raw, 3, "RESULT")
    return Result(request_id, details, args, kwargs)


def _parse_registered(raw: list[Any]) -> Registered:
    _length(raw, "REGISTERED", 3)
    request_id = _id(raw, 1, "REGISTERED", "REGISTER.Request")
    return Registered(request_id, _id(raw, 2, "REGISTERED", "Registration"))


def _parse_unregistered(raw: list[Any]) -> Unregistered:
    _length(raw, "UNREGISTERED", 2)
    return Unregistered(_id(raw, 1, "UNREGISTERED", "UNREGISTER.Request"))


def _parse_invocation(raw: list[Any]) -> Invocation:
    _length(raw, "INVOCATION", 4, 2)
    request_id = _id(raw, 1, "INVOCATION", "Request")
    registration_id = _id(raw, 2, "INVOCATION", "REGISTERED.Registration")
    details = _dict(raw, 3, "INVOCATION", "Details")
    args, kwargs = _args_kwargs(raw, 4, "INVOCATION")
    return Invocation(request_id, registration_id, details, args, kwargs)


_ROUTER_PARSERS: dict[int, Callable[[list[Any]], RouterMessage]] = {
    WELCOME: _parse_welcome,
    ABORT: _parse_abort,
    GOODBYE: _parse_goodbye,
    ERROR: _parse_router_error,
    PUBLISHED: _parse_published,
    SUBSCRIBED: _parse_subscribed,
    UNSUBSCRIBED: _parse_unsubscribed,
    EVENT: _parse_event,
    RESULT: _parse_result,
    REGISTERED: _parse_registered,
    UNREGISTERED: _parse_unregistered,
    INVOCATION: _parse_invocation,
}


def parse_router_message(raw: object) -> RouterMessage:
    """Validate a decoded message from a *router* (what a client receives), as :func:`parse`
    does for a client's: the same rules for ids, dicts, URIs and element counts.

    Accepts WELCOME, ABORT, GOODBYE, ERROR (answering SUBSCRIBE, UNSUBSCRIBE, PUBLISH,
    REGISTER, UNREGISTER or CALL), PUBLISHED, SUBSCRIBED, UNSUBSCRIBED, EVENT, RESULT,
    REGISTERED, UNREGISTERED and INVOCATION. Raises :class:`~ratchetpy.ProtocolViolation` for
    anything else; a client then aborts the session.
    """
    return _parse_with(_ROUTER_PARSERS, raw, sender="routers", other="clients")


# -- ids -----------------------------------------------------------------------------------------


class IdGenerator:
    """WAMP ids, in the two flavours a router needs.

    * :meth:`next` gives *session-scope* ids (a router's INVOCATION request ids towards one
      callee): 1, 2, 3, ... wrapping from 2**53 back to 1, as the spec prescribes. Use one
      generator per session.
    * :meth:`random` gives *global-scope* ids (session ids, publication ids; also fine for
      subscription and registration ids, which are router scope): uniformly random in
      [1, 2**53] from the OS's CSPRNG, so that they cannot be guessed across sessions. Pass the
      ids still in use as ``live`` to be sure of getting a fresh one.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """The next session-scope id: sequential from 1, wrapping at 2**53."""
        self._last = self._last + 1 if self._last < MAX_ID else 1
        return self._last

    @staticmethod
    def random(live: Container[int] = ()) -> int:
        """A global-scope id, uniformly random in [1, 2**53] and not in ``live``."""
        while True:
            value = secrets.randbelow(MAX_ID) + 1
            if value not in live:
                return value
