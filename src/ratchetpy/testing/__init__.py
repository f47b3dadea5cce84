"""ratchetpy.testing: test your components and apps without sockets, in pytest-trio.

.. code-block:: python

    from ratchetpy.testing import open_memory_server

    async def test_chat_reaches_the_others() -> None:
        async with open_memory_server(make_app()) as server:
            async with server.websocket("/chat") as alice, server.websocket("/chat") as bob:
                await alice.send("hi")
                assert await bob.receive() == "hi"
                assert await alice.receive_nothing()  # no echo to the sender

:func:`open_memory_server` serves what you would serve for real (an ``App``, a stack, a
component) over in-memory connections that behave like the real server's, so handshakes,
routing, origin checks, limits, keepalive, compression and shutdown all run. Its clients are
independent implementations: wsproto for WebSocket, h11 for HTTP, :mod:`ratchetpy.client` for
WAMP. Refused handshakes raise :class:`~ratchetpy.HandshakeRefused` with the status. Timers
run on trio's clock: with pytest-trio's ``autojump_clock`` fixture, a 30-second keepalive or
request timeout passes at once.

For a unit test of one component, :class:`RecordingConnection` records what the component
sends and how it closes, and :func:`http_request` builds the request an HTTP component gets.
"""

from ..exceptions import HandshakeRefused
from .clients import Response, WebSocketClient
from .doubles import ManualTimer, RecordingConnection, http_request, resolve
from .memory import MemoryStream, MemoryTransport
from .server import MemoryServer, open_memory_server

__all__ = [
    "HandshakeRefused",
    "ManualTimer",
    "MemoryServer",
    "MemoryStream",
    "MemoryTransport",
    "RecordingConnection",
    "Response",
    "WebSocketClient",
    "http_request",
    "open_memory_server",
    "resolve",
]
