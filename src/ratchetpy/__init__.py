"""ratchetpy: real-time WebSocket servers built from small components, Ratchet-style, on trio.

.. code-block:: python

    from ratchetpy import HttpServer, IoServer, MessageComponent, WsServer

    class Chat(MessageComponent):
        def __init__(self):
            self.clients = set()
        def on_open(self, conn):
            self.clients.add(conn)
        def on_message(self, sender, msg):
            for client in self.clients:
                if client is not sender:
                    client.send(msg)
        def on_close(self, conn):
            self.clients.discard(conn)

    IoServer.factory(HttpServer(WsServer(Chat())), 8080).run()

Every name below (``__all__``) is the public API; the modules behind them come in three kinds,
each in a package of its own (``docs/topics/architecture.md`` draws them):

* :mod:`ratchetpy.protocol` -- sans-IO protocol code: the WebSocket codec, the handshake,
  permessage-deflate, the HTTP data types, the proxy headers. Bytes in, events out; no trio.
  A rule of the wire is changed here.
* :mod:`ratchetpy.components` -- the layers (HttpServer, WsServer, Router, StaticFiles, the
  guards, Authenticate, SessionProvider) and the base classes of yours. No trio: they only
  call ``send``/``close``/``call_later``. What a server does with a request or message is
  changed here; :mod:`ratchetpy.wamp` is the WAMP router, a component too.
* :mod:`ratchetpy.io` -- IoServer, the only server code that imports trio or touches sockets:
  reads, merged writes, timers, TLS, shutdown.

Around them: :mod:`ratchetpy.app` (App puts the stack together), :mod:`ratchetpy.client`
(publish from a web app; a trio WAMP client), :mod:`ratchetpy.testing` (tests without
sockets), :mod:`ratchetpy.cli`, :mod:`ratchetpy.exceptions` (every exception, one tree).
"""

from ._version import __version__
from .app import App
from .components.auth import Authenticate, bearer_token
from .components.base import HttpComponent, HttpDecorator, MessageComponent
from .components.connection import Connection
from .components.endpoint import Endpoint
from .components.group import Group
from .components.guards import ConnectionLimits, HostCheck, IpBlackList, OriginCheck
from .components.http_server import HttpServer
from .components.router import Page, Route, Router
from .components.session import FlaskSession, SessionProvider
from .components.static import StaticFiles
from .components.ws_connection import WsConnection, broadcast
from .components.ws_server import WsServer
from .exceptions import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnavailable,
    ConnectionClosed,
    EncodeError,
    HandshakeRefused,
    InvalidSession,
    InvalidStateError,
    InvalidUri,
    LocalProtocolError,
    ProtocolError,
    ProtocolViolation,
    PublishError,
    RatchetError,
    RedisProtocolError,
    RedisReplyError,
    RemoteProtocolError,
    SerializationError,
    ServerError,
    SessionClosed,
    WampCallError,
    WampError,
    WampRequestError,
)
from .io.server import IoServer, ServerStats
from .protocol.forwarded import TrustedProxies
from .protocol.http import Headers, HttpRequest, HttpResponse, http_response
from .wamp import PublishEndpoint, Topic, WampComponent, WampConnection, WampServer

__all__ = [
    "App",
    "Authenticate",
    "AuthenticationFailed",
    "BrokerError",
    "BrokerUnavailable",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "EncodeError",
    "Endpoint",
    "FlaskSession",
    "Group",
    "HandshakeRefused",
    "Headers",
    "HostCheck",
    "HttpComponent",
    "HttpDecorator",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "InvalidSession",
    "InvalidStateError",
    "InvalidUri",
    "IoServer",
    "IpBlackList",
    "LocalProtocolError",
    "MessageComponent",
    "OriginCheck",
    "Page",
    "ProtocolError",
    "ProtocolViolation",
    "PublishEndpoint",
    "PublishError",
    "RatchetError",
    "RedisProtocolError",
    "RedisReplyError",
    "RemoteProtocolError",
    "Route",
    "Router",
    "SerializationError",
    "ServerError",
    "ServerStats",
    "SessionClosed",
    "SessionProvider",
    "StaticFiles",
    "Topic",
    "TrustedProxies",
    "WampCallError",
    "WampComponent",
    "WampConnection",
    "WampError",
    "WampRequestError",
    "WampServer",
    "WsConnection",
    "WsServer",
    "__version__",
    "bearer_token",
    "broadcast",
    "http_response",
]
