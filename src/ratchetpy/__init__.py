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

from .component import HttpComponent, MessageComponent
from .connection import Connection
from .exceptions import (
    ConnectionClosed,
    LocalProtocolError,
    ProtocolError,
    RatchetError,
    RemoteProtocolError,
    ServerError,
)
from .http import Headers, HttpRequest, HttpServer, http_response
from .io_server import IoServer
from .router import Page, Router
from .ws_server import WsConnection, WsServer, broadcast

__version__ = "0.1.0"

__all__ = [
    "Connection",
    "ConnectionClosed",
    "Headers",
    "HttpComponent",
    "HttpRequest",
    "HttpServer",
    "IoServer",
    "LocalProtocolError",
    "MessageComponent",
    "Page",
    "ProtocolError",
    "RatchetError",
    "RemoteProtocolError",
    "Router",
    "ServerError",
    "WsConnection",
    "WsServer",
    "__version__",
    "broadcast",
    "http_response",
]
