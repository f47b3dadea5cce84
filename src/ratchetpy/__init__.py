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
"""

from ._version import __version__
from .app import App
from .components.auth import Authenticate, AuthenticationFailed, bearer_token
from .components.base import HttpComponent, HttpDecorator, MessageComponent
from .components.connection import Connection
from .components.endpoint import Endpoint
from .components.guards import ConnectionLimits, IpBlackList, OriginCheck
from .components.http_server import HttpServer
from .components.router import Page, Route, Router
from .components.session import FlaskSession, InvalidSession, SessionProvider
from .components.static import StaticFiles
from .components.ws_server import WsConnection, WsServer, broadcast
from .exceptions import (
    ConnectionClosed,
    LocalProtocolError,
    ProtocolError,
    RatchetError,
    RemoteProtocolError,
    ServerError,
)
from .io.server import IoServer, ServerStats
from .protocol.forwarded import TrustedProxies
from .protocol.http import Headers, HttpRequest, HttpResponse, http_response
from .wamp import PublishEndpoint, Topic, WampComponent, WampConnection, WampError, WampServer

__all__ = [
    "App",
    "Authenticate",
    "AuthenticationFailed",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "Endpoint",
    "FlaskSession",
    "Headers",
    "HttpComponent",
    "HttpDecorator",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "InvalidSession",
    "IoServer",
    "IpBlackList",
    "LocalProtocolError",
    "MessageComponent",
    "OriginCheck",
    "Page",
    "ProtocolError",
    "PublishEndpoint",
    "RatchetError",
    "RemoteProtocolError",
    "Route",
    "Router",
    "ServerError",
    "ServerStats",
    "SessionProvider",
    "StaticFiles",
    "Topic",
    "TrustedProxies",
    "WampComponent",
    "WampConnection",
    "WampError",
    "WampServer",
    "WsConnection",
    "WsServer",
    "__version__",
    "bearer_token",
    "broadcast",
    "http_response",
]
