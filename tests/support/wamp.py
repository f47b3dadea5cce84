"""What the WAMP router tests share: :class:`Peer`, a WAMP client that drives a WampServer
directly (no WebSocket, no socket: its connection is a ratchetpy.testing RecordingConnection),
the :class:`Recorder` component, and helpers that read the router's answers."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ratchetpy.testing import RecordingConnection, http_request, resolve
from ratchetpy.wamp import Topic, WampComponent, WampConnection, WampServer
from ratchetpy.wamp.messages import (
    ABORT,
    ERROR,
    HELLO,
    REGISTER,
    REGISTERED,
    SUBSCRIBE,
    SUBSCRIBED,
    WELCOME,
)
from support.brokers import LinkedBroker, serving

JSON = "wamp.2.json"
MSGPACK = "wamp.2.msgpack"
ROLES: dict[str, Any] = {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}
TOO_BIG_FOR_MSGPACK = 2**64 + 1  # JSON carries it, msgpack cannot


def encode(subprotocol: str, message: list[Any]) -> str | bytes:
    """``message`` as a client sends it in ``subprotocol``: a text frame in JSON, binary in
    msgpack."""
    if subprotocol == MSGPACK:
        data: bytes = msgpack.packb(message, use_bin_type=True)
        return data
    return json.dumps(message)


def decode(subprotocol: str, data: str | bytes) -> list[Any]:
    """A message the router sent in ``subprotocol``, checking it came in the right frame type."""
    message: list[Any]
    if subprotocol == MSGPACK:
        assert isinstance(data, bytes), data
        message = msgpack.unpackb(data, raw=False)
    else:
        assert isinstance(data, str), data
        message = json.loads(data)
    return message


class Peer:
    """A WAMP client of ``server``, calling its handlers as WsServer would.

    ``ws`` is the WebSocket connection the server is given: a RecordingConnection, which drops
    what is sent once it is closed, like a real one. ``user_id`` is who an authentication
    layer found the client to be; it goes on the handshake request, where WampServer reads it.
    """

    def __init__(
        self, server: WampServer, subprotocol: str = JSON, user_id: str | None = None
    ) -> None:
        self.server = server
        self.subprotocol = subprotocol
        request = http_request("/ws")
        request.attach(user_id=user_id)
        self.ws = RecordingConnection(subprotocol=subprotocol, request=request)
        self.request_ids = itertools.count(1)
        self.session_id: int | None = None
        assert server.on_open(self.ws) is None

    # sending

    def encode(self, message: list[Any]) -> str | bytes:
        return encode(self.subprotocol, message)

    async def send(self, *message: Any) -> None:
        await self.send_raw(self.encode(list(message)))

    async def send_raw(self, data: Any) -> None:
        await resolve(self.server.on_message(self.ws, data))

    # receiving

    def take(self) -> list[list[Any]]:
        """Everything sent to this client since the last take, decoded."""
        return [decode(self.subprotocol, data) for data in self.ws.take()]

    def take_one(self) -> list[Any]:
        messages = self.take()
        assert len(messages) == 1, messages
        return messages[0]

    # common exchanges

    async def join(self, realm: str = "realm1") -> list[Any]:
        await self.send(HELLO, realm, ROLES)
        welcome = self.take_one()
        assert welcome[0] == WELCOME, welcome
        self.session_id = welcome[1]
        return welcome

    @property
    def conn(self) -> WampConnection:
        """The router's side of the current session."""
        assert self.session_id is not None
        return self.server.sessions[self.session_id]

    async def subscribe(self, topic: str, options: dict[str, Any] | None = None) -> int:
        request_id = next(self.request_ids)
        await self.send(SUBSCRIBE, request_id, options or {}, topic)
        answer = self.take_one()
        assert answer[:2] == [SUBSCRIBED, request_id], answer
        subscription_id: int = answer[2]
        return subscription_id

    async def register(self, procedure: str) -> int:
        request_id = next(self.request_ids)
        await self.send(REGISTER, request_id, {}, procedure)
        answer = self.take_one()
        assert answer[:2] == [REGISTERED, request_id], answer
        registration_id: int = answer[2]
        return registration_id

    async def leave(self) -> None:
        """The connection is lost: WsServer then calls on_close."""
        self.ws.lose()
        await resolve(self.server.on_close(self.ws))


class Worker:
    """The router of one in-process worker whose broker is a support.brokers LinkedBroker:
    its realm learns the broker from the first session that joins while serving."""

    def __init__(self, broker: LinkedBroker, server: WampServer | None = None) -> None:
        self.broker = broker
        self.server = server if server is not None else WampServer()

    async def peer(self, user_id: str | None = None) -> Peer:
        """A new client of this worker, in a session of the default realm."""
        with serving(self.broker):
            peer = Peer(self.server, user_id=user_id)
            await peer.join()
        return peer

    async def send(self, peer: Peer, *message: Any) -> None:
        """``peer`` (a client of this worker) sends ``message``, handled while serving."""
        with serving(self.broker):
            await peer.send(*message)


async def joined(server: WampServer, n: int, **options: Any) -> list[Peer]:
    """``n`` peers of ``server`` (``Peer`` options), each in a session of the default realm."""
    peers = []
    for _ in range(n):
        peer = Peer(server, **options)
        await peer.join()
        peers.append(peer)
    return peers


class Recorder(WampComponent):
    """Records the handler calls in ``log`` (and on_error's in ``errors``); otherwise does what
    the base class does, so subclasses override one handler and keep the record."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.errors: list[tuple[WampConnection, Exception]] = []

    def on_open(self, conn: WampConnection) -> None:
        self.log.append(("open", conn.session_id))

    def on_close(self, conn: WampConnection) -> None:
        self.log.append(("close", conn))

    def on_error(self, conn: WampConnection, exc: Exception) -> None:
        self.errors.append((conn, exc))

    def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
        self.log.append(("subscribe", conn.session_id, topic.id))

    def on_unsubscribe(self, conn: WampConnection, topic: Topic) -> None:
        self.log.append(("unsubscribe", conn, topic.id))


def error_of(message: list[Any]) -> tuple[int, int, str]:
    """(request type, request id, error URI) of an ERROR message."""
    assert message[0] == ERROR, message
    assert message[3] == {}
    return message[1], message[2], message[4]


def assert_abort(peer: Peer, reason: str, close_code: int) -> list[Any]:
    """The one message ``peer`` got is an ABORT for ``reason``, and the WebSocket was closed
    with ``close_code``; the ABORT."""
    abort = peer.take_one()
    assert abort[0] == ABORT and abort[2] == reason, abort
    assert peer.ws.closes and peer.ws.closes[0][0] == close_code
    return abort
