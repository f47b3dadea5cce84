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

from .app import App, Endpoint
from .auth import Authenticate, AuthenticationFailed, bearer_token
from .component import HttpComponent, HttpDecorator, MessageComponent
from .connection import Connection
from .exceptions import (
    ConnectionClosed,
    LocalProtocolError,
    ProtocolError,
    RatchetError,
    RemoteProtocolError,
    ServerError,
)
from .http import Headers, HttpRequest, HttpResponse, HttpServer, http_response
from .io_server import IoServer, ServerStats
from .proxy import TrustedProxies
from .router import Page, Route, Router
from .security import ConnectionLimits, IpBlackList, OriginCheck
from .session import FlaskSession, InvalidSession, SessionProvider
from .static import StaticFiles
from .wamp import PublishEndpoint, Topic, WampComponent, WampConnection, WampError, WampServer
from .ws_server import WsConnection, WsServer, broadcast

__version__ = "0.1.0"

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
