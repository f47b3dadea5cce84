"""WAMP v2 (Basic Profile) for ratchetpy: a router with Ratchet's WampServer interface.

``WsServer(WampServer(MyApp()))`` or ``App.route("/ws", MyApp())`` where ``MyApp`` subclasses
:class:`WampComponent`. Underneath, sans-IO: :mod:`~ratchetpy.wamp.messages` (parsing and
building messages), :mod:`~ratchetpy.wamp.serializers` (JSON, msgpack).
"""

from .broker import Payload, Topic, TopicManager
from .component import WampComponent, WampError
from .connection import WampConnection
from .dealer import LIMIT_EXCEEDED, Procedure
from .messages import *  # noqa: F403
from .messages import __all__ as _messages_all
from .publish import PublishEndpoint
from .serializers import *  # noqa: F403
from .serializers import __all__ as _serializers_all
from .server import CLOSE_SYSTEM_SHUTDOWN, Realm, WampServer

__all__ = [
    "CLOSE_SYSTEM_SHUTDOWN",
    "LIMIT_EXCEEDED",
    "Payload",
    "Procedure",
    "PublishEndpoint",
    "Realm",
    "Topic",
    "TopicManager",
    "WampComponent",
    "WampConnection",
    "WampError",
    "WampServer",
    *_messages_all,
    *_serializers_all,
]
