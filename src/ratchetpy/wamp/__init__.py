"""WAMP v2 (Basic Profile) for ratchetpy: a router with Ratchet's WampServer interface.

``WsServer(WampServer(MyApp()))`` or ``App.route("/ws", MyApp())`` where ``MyApp`` subclasses
:class:`WampComponent`. This package exports what a router-side application uses, the standard
error and close URIs included (``raise WampError(NOT_AUTHORIZED, "members only")``); the sans-IO
parts have modules of their own: :mod:`ratchetpy.wamp.messages` (message classes, type codes,
error URIs, parsing), :mod:`ratchetpy.wamp.serializers` (JSON, msgpack) and
:mod:`ratchetpy.wamp.signing` (how a publication to :class:`PublishEndpoint` is signed).
"""

from ..exceptions import WampError
from .broker import Broker
from .component import WampComponent
from .dealer import Dealer
from .messages import (
    AUTHORIZATION_FAILED,
    BROKER_UNAVAILABLE,
    CANCELED,
    CLOSE_NORMAL,
    CLOSE_REALM,
    GOODBYE_AND_OUT,
    INVALID_ARGUMENT,
    INVALID_URI,
    LIMIT_EXCEEDED,
    NO_SUCH_PROCEDURE,
    NO_SUCH_REALM,
    NO_SUCH_REGISTRATION,
    NO_SUCH_SUBSCRIPTION,
    NOT_AUTHORIZED,
    PROCEDURE_ALREADY_EXISTS,
    PROTOCOL_VIOLATION,
    RUNTIME_ERROR,
    SYSTEM_SHUTDOWN,
)
from .publish import PublishEndpoint
from .realm import (
    Payload,
    Procedure,
    ProcedureManager,
    Realm,
    Topic,
    TopicManager,
    WampConnection,
)
from .replay import Admission, ReplayGuard
from .server import CLOSE_SYSTEM_SHUTDOWN, WampServer

__all__ = [
    "AUTHORIZATION_FAILED",
    "BROKER_UNAVAILABLE",
    "CANCELED",
    "CLOSE_NORMAL",
    "CLOSE_REALM",
    "CLOSE_SYSTEM_SHUTDOWN",
    "GOODBYE_AND_OUT",
    "INVALID_ARGUMENT",
    "INVALID_URI",
    "LIMIT_EXCEEDED",
    "NOT_AUTHORIZED",
    "NO_SUCH_PROCEDURE",
    "NO_SUCH_REALM",
    "NO_SUCH_REGISTRATION",
    "NO_SUCH_SUBSCRIPTION",
    "PROCEDURE_ALREADY_EXISTS",
    "PROTOCOL_VIOLATION",
    "RUNTIME_ERROR",
    "SYSTEM_SHUTDOWN",
    "Admission",
    "Broker",
    "Dealer",
    "Payload",
    "Procedure",
    "ProcedureManager",
    "PublishEndpoint",
    "Realm",
    "ReplayGuard",
    "Topic",
    "TopicManager",
    "WampComponent",
    "WampConnection",
    "WampError",
    "WampServer",
]
