"""The WAMP v2 router (WampServer, WampComponent, WampConnection, Topic, TopicManager, the
dealer) driven directly, without sockets: each client is a fake WebSocket connection that
records what the router sends and how it closes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import trio
import trio.testing

from ratchetpy import Connection
from ratchetpy.exceptions import LocalProtocolError, WampError
from ratchetpy.wamp import (
    CLOSE_SYSTEM_SHUTDOWN,
    LIMIT_EXCEEDED,
    Payload,
    Procedure,
    Topic,
    TopicManager,
    WampComponent,
    WampConnection,
    WampServer,
)
from ratchetpy.wamp.messages import (
    ABORT,
    CALL,
    CANCELED,
    CLOSE_NORMAL,
    ERROR,
    EVENT,
    GOODBYE,
    GOODBYE_AND_OUT,
    HELLO,
    INVALID_ARGUMENT,
    INVALID_URI,
    INVOCATION,
    MAX_ID,
    NO_SUCH_PROCEDURE,
    NO_SUCH_REALM,
    NO_SUCH_REGISTRATION,
    NO_SUCH_SUBSCRIPTION,
    NOT_AUTHORIZED,
    PROCEDURE_ALREADY_EXISTS,
    PROTOCOL_VIOLATION,
    PUBLISH,
    PUBLISHED,
    REGISTER,
    REGISTERED,
    RESULT,
    RUNTIME_ERROR,
    SUBSCRIBE,
    SUBSCRIBED,
    UNREGISTER,
    UNREGISTERED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    WELCOME,
    YIELD,
)
from ratchetpy.wamp.serializers import JsonSerializer

JSON = "wamp.2.json"
MSGPACK = "wamp.2.msgpack"
ROLES: dict[str, Any] = {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}
TOO_BIG_FOR_MSGPACK = 2**64 + 1  # JSON carries it, msgpack cannot


# -- fakes ------------------------------------------------------------------------------------


def pending_calls(client: Any) -> int:
    """The invocations the realm's dealer holds for ``client``'s session."""
    realm = client.conn.realm
    assert realm is not None
    return int(realm.procedures.pending_calls(client.conn))


class FakeTimer:
    """A call_later timer that the test fires by hand."""

    def __init__(self, delay: float, callback: Callable[[], Any]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.callback()


class FakeWs(Connection):
    """What WsServer hands its component: records sends and closes; no I/O at all.

    Like a real WebSocket connection, it drops what is sent once it is closed.
    """

    _ids = itertools.count(1)

    def __init__(self, subprotocol: str | None = JSON, user_id: str | None = None) -> None:
        self.resource_id = next(self._ids)
        self.remote_address = "192.0.2.7"
        self.http_request = None if user_id is None else SimpleNamespace(user_id=user_id)  # type: ignore[assignment]
        self.subprotocol = subprotocol
        self.secure = False
        self.sent: list[str | bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.lost = False
        self.timers: list[FakeTimer] = []

    def send(self, data: str | bytes) -> None:
        if not self.closed:
            self.sent.append(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        # WsConnection.close refuses what cannot go into a close frame, and so do we.
        if len(reason.encode()) > 123:
            raise LocalProtocolError("close reason longer than 123 UTF-8 bytes")
        self.closes.append((code, reason))

    @property
    def closed(self) -> bool:
        return bool(self.closes) or self.lost

    def call_later(self, delay: float, callback: Callable[[], Any]) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    async def drain(self) -> None:
        await trio.lowlevel.checkpoint()

    @property
    def buffered_amount(self) -> int:
        return 0


async def settle(result: Any) -> None:
    """Await what a handler returned, if anything (async handlers return awaitables)."""
    if result is not None:
        await result


class Peer:
    """A WAMP client of ``server`` over a fake WebSocket connection."""

    def __init__(
        self, server: WampServer, subprotocol: str = JSON, user_id: str | None = None
    ) -> None:
        self.server = server
        self.subprotocol = subprotocol
        self.ws = FakeWs(subprotocol, user_id)
        self.request_ids = itertools.count(1)
        self.session_id: int | None = None
        assert server.on_open(self.ws) is None

    # sending

    def encode(self, message: list[Any]) -> str | bytes:
        if self.subprotocol == MSGPACK:
            data: bytes = msgpack.packb(message, use_bin_type=True)
            return data
        return json.dumps(message)

    async def send(self, *message: Any) -> None:
        await self.send_raw(self.encode(list(message)))

    async def send_raw(self, data: Any) -> None:
        await settle(self.server.on_message(self.ws, data))

    # receiving

    def take(self) -> list[list[Any]]:
        """Everything sent to this client since the last take, decoded."""
        messages = []
        for data in self.ws.sent:
            if self.subprotocol == MSGPACK:
                assert isinstance(data, bytes)
                messages.append(msgpack.unpackb(data, raw=False))
            else:
                assert isinstance(data, str)
                messages.append(json.loads(data))
        self.ws.sent.clear()
        return messages

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
        self.ws.lost = True
        await settle(self.server.on_close(self.ws))


class Recorder(WampComponent):
    """Records every handler call, then does what the base class does."""

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
    abort = peer.take_one()
    assert abort[0] == ABORT and abort[2] == reason, abort
    assert peer.ws.closes and peer.ws.closes[0][0] == close_code
    return abort


# -- joining -----------------------------------------------------------------------------------


async def test_hello_gets_a_welcome_announcing_broker_and_dealer() -> None:
    server = WampServer()
    peer = Peer(server)
    welcome = await peer.join()
    session_id, details = welcome[1], welcome[2]
    assert type(session_id) is int and 1 <= session_id <= MAX_ID
    assert set(details["roles"]) == {"broker", "dealer"}
    assert details["roles"]["broker"]["features"]["publisher_exclusion"] is True
    assert details["realm"] == "realm1"
    assert details["agent"].startswith("ratchetpy-")
    assert details["authrole"] == "anonymous"
    assert "authid" not in details
    assert not peer.ws.closed
    conn = server.sessions[session_id]
    assert conn.session_id == session_id and conn.realm is server.realm("realm1")
    assert conn.roles == ROLES["roles"]
    assert conn.authid is None
    assert server.realm("realm1").sessions == {session_id: conn}
    assert peer.ws.timers[0].cancelled  # the HELLO timeout is off


async def test_welcome_carries_the_authenticated_user() -> None:
    server = WampServer()
    peer = Peer(server, user_id="alice")
    details = (await peer.join())[2]
    assert details["authid"] == "alice"
    assert details["authrole"] != "anonymous"
    assert peer.conn.authid == "alice"
    assert server.connections_of("alice") == (peer.conn,)


async def test_msgpack_session() -> None:
    server = WampServer()
    peer = Peer(server, MSGPACK)
    welcome = await peer.join()
    assert welcome[2]["realm"] == "realm1"  # take() checked it came as bytes
    assert await peer.subscribe("com.example.t") >= 1


async def test_unknown_realm_is_aborted() -> None:
    server = WampServer(realms=["realm1"])
    peer = Peer(server)
    await peer.send(HELLO, "other.realm", ROLES)
    abort = assert_abort(peer, NO_SUCH_REALM, 1000)
    assert "other.realm" in abort[1]["message"]
    assert server.sessions == {}
    assert list(server.realms) == ["realm1"]


async def test_any_realm_is_accepted_when_realms_is_none() -> None:
    server = WampServer(realms=None)
    a, b = Peer(server), Peer(server)
    assert (await a.join("com.example.one"))[2]["realm"] == "com.example.one"
    assert (await b.join("com.example.two"))[2]["realm"] == "com.example.two"
    assert set(server.realms) == {"com.example.one", "com.example.two"}


async def test_realms_keep_sessions_apart() -> None:
    server = WampServer(realms=["r1", "r2"])
    a, b = Peer(server), Peer(server)
    await a.join("r1")
    await b.join("r2")
    await b.subscribe("t")
    await a.send(PUBLISH, 1, {"acknowledge": True}, "t", ["x"])
    assert a.take_one()[0] == PUBLISHED
    assert b.take() == []
    await b.register("p")
    await a.send(CALL, 2, {}, "p")
    assert error_of(a.take_one()) == (CALL, 2, NO_SUCH_PROCEDURE)


async def test_hello_with_an_invalid_realm_uri_is_aborted() -> None:
    server = WampServer(realms=None)
    peer = Peer(server)
    await peer.send(HELLO, "bad realm", ROLES)
    assert_abort(peer, INVALID_URI, 1000)


async def test_message_before_hello_is_a_protocol_violation() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.send(SUBSCRIBE, 1, {}, "com.example.t")
    abort = assert_abort(peer, PROTOCOL_VIOLATION, 1002)
    assert "HELLO" in abort[1]["message"]
    # Once aborted, the connection is ignored.
    await peer.send(HELLO, "realm1", ROLES)
    assert peer.take() == []


async def test_invalid_uri_before_hello_is_a_protocol_violation() -> None:
    peer = Peer(WampServer())
    await peer.send(SUBSCRIBE, 1, {}, "bad uri")
    assert_abort(peer, PROTOCOL_VIOLATION, 1002)


async def test_abort_before_hello_closes_quietly() -> None:
    peer = Peer(WampServer())
    await peer.send(ABORT, {}, "wamp.close.normal")
    assert peer.take() == []
    assert peer.ws.closed


async def test_hello_twice_is_a_protocol_violation() -> None:
    component = Recorder()
    server = WampServer(component)
    peer = Peer(server)
    await peer.join()
    await peer.subscribe("t")
    await peer.send(HELLO, "realm1", ROLES)
    abort = assert_abort(peer, PROTOCOL_VIOLATION, 1002)
    assert "HELLO" in abort[1]["message"]
    # The transport then reports the close: the session ends like any other.
    session_id = peer.session_id
    await peer.leave()
    assert server.sessions == {}
    assert component.log[-2][0] == "unsubscribe" and component.log[-1][0] == "close"
    assert session_id is not None and "t" not in server.realm().topics


async def test_hello_while_async_on_open_still_runs_is_a_protocol_violation() -> None:
    gate = trio.Event()

    class SlowOpen(WampComponent):
        async def on_open(self, conn: WampConnection) -> None:
            await gate.wait()

    server = WampServer(SlowOpen())
    peer = Peer(server)
    first = server.on_message(peer.ws, json.dumps([HELLO, "realm1", ROLES]))
    assert first is not None
    await peer.send(HELLO, "realm1", ROLES)
    assert_abort(peer, PROTOCOL_VIOLATION, 1002)
    gate.set()
    with trio.fail_after(1):
        await first
    assert peer.take() == []  # no WELCOME after the ABORT
    assert server.sessions == {}


@pytest.mark.parametrize(
    ("subprotocol", "data", "close_code"),
    [
        (JSON, "[1, 'realm1'", 1007),
        (JSON, "not json", 1007),
        (JSON, '{"hello": 1}', 1007),
        (JSON, "42", 1007),
        (JSON, b"[1]", 1003),
        (MSGPACK, "[1]", 1003),
        (MSGPACK, b"\xc1", 1007),
        (MSGPACK, msgpack.packb({"a": 1}), 1007),
    ],
    ids=["truncated", "garbage", "object", "number", "binary-on-json", "text-on-msgpack",
         "bad-msgpack", "msgpack-map"],
)  # fmt: skip
async def test_undecodable_data_is_aborted_and_closed(
    subprotocol: str, data: Any, close_code: int
) -> None:
    peer = Peer(WampServer(), subprotocol)
    await peer.send_raw(data)
    assert_abort(peer, PROTOCOL_VIOLATION, close_code)


async def test_undecodable_data_in_a_session_ends_it() -> None:
    component = Recorder()
    server = WampServer(component)
    peer = Peer(server)
    await peer.join()
    await peer.send_raw("{oops")
    assert_abort(peer, PROTOCOL_VIOLATION, 1007)
    await peer.leave()
    assert component.log[-1][0] == "close"


@pytest.mark.parametrize(
    "message",
    [[], [999], ["x"], [2, 1, {}], [SUBSCRIBE, 0, {}, "t"], [SUBSCRIBE, 1, [], "t"]],
    ids=["empty", "unknown-type", "str-type", "welcome-from-client", "id-zero", "bad-options"],
)
async def test_malformed_messages_are_aborted(message: list[Any]) -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(*message)
    assert_abort(peer, PROTOCOL_VIOLATION, 1002)


async def test_connection_without_wamp_subprotocol_is_closed() -> None:
    server = WampServer()
    ws = FakeWs(subprotocol=None)
    assert server.on_open(ws) is None
    assert ws.closes == [(1002, "no WAMP subprotocol negotiated")]
    assert server.on_message(ws, "[1]") is None
    assert ws.sent == []


def test_unknown_serializer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown WAMP serializer"):
        WampServer(serializers=["wamp.2.cbor"])
    assert WampServer(serializers=[JSON]).subprotocols == (JSON,)


async def test_json_only_server_closes_a_msgpack_connection() -> None:
    server = WampServer(serializers=[JSON])
    ws = FakeWs(MSGPACK)
    server.on_open(ws)
    assert ws.closes and ws.closes[0][0] == 1002


# -- hello timeout -----------------------------------------------------------------------------


async def test_hello_timeout_closes_with_1008() -> None:
    server = WampServer(hello_timeout=2.5)
    peer = Peer(server)
    (timer,) = peer.ws.timers
    assert timer.delay == 2.5
    timer.fire()
    assert peer.ws.closes and peer.ws.closes[0][0] == 1008
    assert peer.take() == []  # no ABORT: there is no session to abort
    await peer.leave()


async def test_hello_timeout_does_not_fire_after_hello() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.join()
    peer.ws.timers[0].callback()  # even if a timer ran regardless of cancel()
    assert not peer.ws.closed


async def test_hello_timeout_cancelled_when_connection_closes_first() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.leave()
    assert peer.ws.timers[0].cancelled


def test_hello_timeout_zero_means_none() -> None:
    server = WampServer(hello_timeout=0)
    ws = FakeWs()
    server.on_open(ws)
    assert ws.timers == []


# -- subscribing -------------------------------------------------------------------------------


async def test_invalid_uri_in_subscribe_is_an_error_and_the_session_stays() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(SUBSCRIBE, 5, {}, "com..example")
    answer = peer.take_one()
    assert error_of(answer) == (SUBSCRIBE, 5, INVALID_URI)
    assert not peer.ws.closed
    assert await peer.subscribe("com.example") >= 1


async def test_invalid_uri_in_register_and_call_are_errors() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(REGISTER, 1, {}, "a b")
    assert error_of(peer.take_one()) == (REGISTER, 1, INVALID_URI)
    await peer.send(CALL, 2, {}, "a#b")
    assert error_of(peer.take_one()) == (CALL, 2, INVALID_URI)
    assert not peer.ws.closed


async def test_publish_to_an_invalid_uri() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(PUBLISH, 1, {}, "bad uri", ["x"])
    assert peer.take() == []
    await peer.send(PUBLISH, 2, {"acknowledge": True}, "bad uri", ["x"])
    assert error_of(peer.take_one()) == (PUBLISH, 2, INVALID_URI)
    assert not peer.ws.closed


async def test_subscribing_twice_gives_the_same_subscription() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.join()
    first = await peer.subscribe("t")
    assert await peer.subscribe("t") == first
    topic = server.realm().topics["t"]
    assert len(topic) == 1
    assert peer.conn.subscriptions == (topic,)


async def test_subscribers_share_one_subscription_id() -> None:
    server = WampServer()
    peers = [Peer(server) for _ in range(3)]
    ids = set()
    for peer in peers:
        await peer.join()
        ids.add(await peer.subscribe("com.example.news"))
    assert len(ids) == 1
    topic = server.realm().topics.get("com.example.news")
    assert topic is not None and topic.subscription_id in ids
    assert topic.subscribers == tuple(p.conn for p in peers)


async def test_different_topics_get_different_subscription_ids() -> None:
    peer = Peer(WampServer())
    await peer.join()
    assert await peer.subscribe("a") != await peer.subscribe("b")


async def test_unsubscribe() -> None:
    component = Recorder()
    server = WampServer(component)
    peer = Peer(server)
    await peer.join()
    subscription = await peer.subscribe("t")
    await peer.send(UNSUBSCRIBE, 9, subscription)
    assert peer.take_one() == [UNSUBSCRIBED, 9]
    assert component.log[-1] == ("unsubscribe", peer.conn, "t")
    assert "t" not in server.realm().topics and len(server.realm().topics) == 0
    assert peer.conn.subscriptions == ()
    # Unsubscribing again: no longer known.
    await peer.send(UNSUBSCRIBE, 10, subscription)
    assert error_of(peer.take_one()) == (UNSUBSCRIBE, 10, NO_SUCH_SUBSCRIPTION)


async def test_unsubscribe_unknown_subscription() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(UNSUBSCRIBE, 3, 12345)
    assert error_of(peer.take_one()) == (UNSUBSCRIBE, 3, NO_SUCH_SUBSCRIPTION)


async def test_cannot_unsubscribe_someone_elses_subscription() -> None:
    server = WampServer()
    a, b = Peer(server), Peer(server)
    await a.join()
    await b.join()
    subscription = await a.subscribe("t")
    await b.send(UNSUBSCRIBE, 1, subscription)
    assert error_of(b.take_one()) == (UNSUBSCRIBE, 1, NO_SUCH_SUBSCRIPTION)
    assert a.conn in server.realm().topics["t"]


async def test_topic_stays_while_others_subscribe_and_goes_with_the_last() -> None:
    server = WampServer()
    a, b = Peer(server), Peer(server)
    await a.join()
    await b.join()
    subscription = await a.subscribe("t")
    await b.subscribe("t")
    topics = server.realm().topics
    await a.send(UNSUBSCRIBE, 100, subscription)
    assert a.take_one() == [UNSUBSCRIBED, 100]
    assert "t" in topics and len(topics["t"]) == 1
    await b.leave()
    assert "t" not in topics and topics.get("t") is None
    assert topics.by_subscription(subscription) is None
    # A new first subscriber gets a topic afresh.
    assert await a.subscribe("t") >= 1
    assert len(topics) == 1


async def test_subscribe_with_pattern_matching_is_refused() -> None:
    server = WampServer()
    peer = Peer(server)
    await peer.join()
    await peer.send(SUBSCRIBE, 1, {"match": "prefix"}, "com.example")
    assert error_of(peer.take_one()) == (SUBSCRIBE, 1, INVALID_ARGUMENT)
    assert len(server.realm().topics) == 0


async def test_max_subscriptions() -> None:
    server = WampServer(max_subscriptions=2)
    peer = Peer(server)
    await peer.join()
    await peer.subscribe("a")
    await peer.subscribe("b")
    await peer.send(SUBSCRIBE, 50, {}, "c")
    assert error_of(peer.take_one()) == (SUBSCRIBE, 50, LIMIT_EXCEEDED)
    assert "c" not in server.realm().topics
    assert await peer.subscribe("a") >= 1  # subscribing again to one it has is fine


# -- publishing --------------------------------------------------------------------------------


async def joined(server: WampServer, n: int, **options: Any) -> list[Peer]:
    peers = []
    for _ in range(n):
        peer = Peer(server, **options)
        await peer.join()
        peers.append(peer)
    return peers


async def test_publish_reaches_subscribers_but_not_the_publisher_by_default() -> None:
    server = WampServer()
    pub, sub = await joined(server, 2)
    pub_subscription = await pub.subscribe("t")
    subscription = await sub.subscribe("t")
    assert pub_subscription == subscription
    await pub.send(PUBLISH, 1, {}, "t", ["hi"], {"k": 1})
    assert pub.take() == []
    event = sub.take_one()
    assert event[0] == EVENT and event[1] == subscription and event[3] == {}
    assert event[4:] == [["hi"], {"k": 1}]
    assert 1 <= event[2] <= MAX_ID


async def test_publish_without_arguments_sends_a_short_event() -> None:
    server = WampServer()
    pub, sub = await joined(server, 2)
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t")
    assert len(sub.take_one()) == 4
    await pub.send(PUBLISH, 2, {}, "t", [], {"only": "kw"})
    assert sub.take_one()[4:] == [[], {"only": "kw"}]


async def test_publish_to_a_topic_nobody_subscribes() -> None:
    server = WampServer()
    (pub,) = await joined(server, 1)
    await pub.send(PUBLISH, 1, {"acknowledge": True}, "nobody.here", ["x"])
    answer = pub.take_one()
    assert answer[:2] == [PUBLISHED, 1]
    assert len(server.realm().topics) == 0


async def test_publish_exclude_me_false_reaches_the_publisher() -> None:
    server = WampServer()
    pub, sub = await joined(server, 2)
    await pub.subscribe("t")
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {"exclude_me": False}, "t", [1])
    assert pub.take_one()[0] == EVENT
    assert sub.take_one()[0] == EVENT


async def test_acknowledged_publish_has_the_publication_id_of_its_events() -> None:
    server = WampServer()
    pub, a, b = await joined(server, 3)
    await a.subscribe("t")
    await b.subscribe("t")
    await pub.send(PUBLISH, 77, {"acknowledge": True}, "t", ["x"])
    published = pub.take_one()
    assert published[:2] == [PUBLISHED, 77]
    assert a.take_one()[2] == published[2] == b.take_one()[2]
    # Each publication gets its own id.
    await pub.send(PUBLISH, 78, {"acknowledge": True}, "t", ["y"])
    assert pub.take_one()[2] != published[2]


async def test_publish_exclude_and_eligible() -> None:
    server = WampServer()
    pub, a, b, c = await joined(server, 4)
    for peer in (a, b, c):
        await peer.subscribe("t")

    async def receivers(options: dict[str, Any]) -> set[int | None]:
        await pub.send(PUBLISH, 1, options, "t", ["x"])
        assert pub.take() == []
        got = set()
        for peer in (a, b, c):
            messages = peer.take()
            if messages:
                assert [m[0] for m in messages] == [EVENT]
                got.add(peer.session_id)
        return got

    ids = {p: p.session_id for p in (a, b, c)}
    assert await receivers({}) == {ids[a], ids[b], ids[c]}
    assert await receivers({"exclude": [ids[a]]}) == {ids[b], ids[c]}
    assert await receivers({"eligible": [ids[a], ids[b]]}) == {ids[a], ids[b]}
    assert await receivers({"eligible": [ids[a], ids[b]], "exclude": [ids[a]]}) == {ids[b]}
    assert await receivers({"eligible": []}) == set()
    assert await receivers({"eligible": [123456789]}) == set()
    # The publisher is eligible but excluded by default.
    assert await receivers({"eligible": [pub.session_id]}) == set()


async def test_publish_by_authid() -> None:
    server = WampServer()
    pub = Peer(server, user_id="pub")
    await pub.join()
    alice1, alice2 = await joined(server, 2, user_id="alice")
    (bob,) = await joined(server, 1, user_id="bob")
    (anon,) = await joined(server, 1)
    everyone = (alice1, alice2, bob, anon)
    for peer in everyone:
        await peer.subscribe("t")

    async def receivers(options: dict[str, Any]) -> set[Peer]:
        await pub.send(PUBLISH, 1, options, "t", ["x"])
        return {peer for peer in everyone if peer.take()}

    assert await receivers({"eligible_authid": ["alice"]}) == {alice1, alice2}
    assert await receivers({"eligible_authid": ["alice", "bob"]}) == {alice1, alice2, bob}
    assert await receivers({"exclude_authid": ["alice"]}) == {bob, anon}
    assert await receivers({"eligible_authid": []}) == set()
    assert await receivers({"eligible_authid": ["alice"], "eligible": [bob.session_id]}) == set()
    assert await receivers(
        {"eligible_authid": ["alice"], "eligible": [alice2.session_id, bob.session_id]}
    ) == {alice2}
    assert await receivers({"exclude_authid": ["alice"], "exclude": [bob.session_id]}) == {anon}


@pytest.mark.parametrize(
    "options",
    [
        {"exclude_me": "yes"},
        {"exclude_me": 0},
        {"exclude": "123"},
        {"exclude": [True]},
        {"exclude": [1.5]},
        {"eligible": {"a": 1}},
        {"eligible": ["1"]},
        {"eligible_authid": "alice"},
        {"eligible_authid": [1]},
        {"exclude_authid": [None]},
    ],
)
async def test_publish_with_bad_options(options: dict[str, Any]) -> None:
    server = WampServer()
    pub, sub = await joined(server, 2, user_id="alice")
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, options, "t", ["x"])
    assert pub.take() == []
    await pub.send(PUBLISH, 2, {**options, "acknowledge": True}, "t", ["x"])
    answer = pub.take_one()
    assert error_of(answer) == (PUBLISH, 2, INVALID_ARGUMENT)
    assert sub.take() == []
    assert not pub.ws.closed


async def test_event_is_encoded_once_per_serializer(monkeypatch: pytest.MonkeyPatch) -> None:
    server = WampServer()
    pub = (await joined(server, 1))[0]
    json_subs = await joined(server, 5)
    msgpack_subs = await joined(server, 3, subprotocol=MSGPACK)
    for peer in json_subs + msgpack_subs:
        await peer.subscribe("t")

    encoded: list[list[Any]] = []
    original = JsonSerializer.encode

    def counting(self: JsonSerializer, message: list[Any]) -> str:
        encoded.append(message)
        return original(self, message)

    monkeypatch.setattr(JsonSerializer, "encode", counting)
    await pub.send(PUBLISH, 1, {}, "t", ["x" * 100])
    assert [m[0] for m in encoded] == [EVENT]  # one JSON encoding for five subscribers
    json_frames = [peer.ws.sent[0] for peer in json_subs]
    assert all(frame is json_frames[0] for frame in json_frames)
    msgpack_frames = [peer.ws.sent[0] for peer in msgpack_subs]
    assert all(frame is msgpack_frames[0] for frame in msgpack_frames)
    assert isinstance(msgpack_frames[0], bytes)
    events = [peer.take_one() for peer in json_subs + msgpack_subs]
    assert all(event == events[0] for event in events)
    assert events[0][4] == ["x" * 100]


async def test_json_and_msgpack_subscribers_get_the_same_event() -> None:
    server = WampServer()
    pub = Peer(server, MSGPACK)
    await pub.join()
    (js,) = await joined(server, 1)
    (mp,) = await joined(server, 1, subprotocol=MSGPACK)
    await js.subscribe("t")
    await mp.subscribe("t")
    payload = [1, "two", None, True, 2.5, {"n": [1, 2]}]
    await pub.send(PUBLISH, 1, {}, "t", payload, {"k": "v"})
    assert js.take_one() == mp.take_one()


async def test_binary_payload_crosses_serializers() -> None:
    server = WampServer()
    pub = Peer(server, MSGPACK)
    await pub.join()
    (js,) = await joined(server, 1)
    await js.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t", [b"\x00\x01binary"])
    event = js.take_one()
    assert event[4] == ["\x00AAFiaW5hcnk="]  # WAMP's JSON convention for bytes


async def test_publication_that_one_serializer_cannot_carry_reaches_nobody() -> None:
    server = WampServer()
    (pub,) = await joined(server, 1)
    (js,) = await joined(server, 1)
    (mp,) = await joined(server, 1, subprotocol=MSGPACK)
    await js.subscribe("t")
    await mp.subscribe("t")
    await pub.send(PUBLISH, 1, {"acknowledge": True}, "t", [TOO_BIG_FOR_MSGPACK])
    assert error_of(pub.take_one()) == (PUBLISH, 1, INVALID_ARGUMENT)
    assert js.take() == [] and mp.take() == []
    # Unacknowledged: silently refused, and nothing goes to on_error.
    component = server.component
    await pub.send(PUBLISH, 2, {}, "t", [TOO_BIG_FOR_MSGPACK])
    assert pub.take() == [] and js.take() == [] and mp.take() == []
    assert server.component is component and not pub.ws.closed
    # JSON subscribers alone can have it.
    await mp.leave()
    await pub.send(PUBLISH, 3, {"acknowledge": True}, "t", [TOO_BIG_FOR_MSGPACK])
    assert pub.take_one()[0] == PUBLISHED
    assert js.take_one()[4] == [TOO_BIG_FOR_MSGPACK]


async def test_unencodable_publication_does_not_reach_on_error() -> None:
    component = Recorder()
    server = WampServer(component)
    (pub,) = await joined(server, 1)
    (mp,) = await joined(server, 1, subprotocol=MSGPACK)
    await mp.subscribe("t")
    await pub.send(PUBLISH, 1, {"acknowledge": True}, "t", [TOO_BIG_FOR_MSGPACK])
    assert error_of(pub.take_one())[2] == INVALID_ARGUMENT
    assert component.errors == []


# -- registering and calling --------------------------------------------------------------------


async def test_register_and_unregister() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    registration = await callee.register("com.example.add")
    assert server.realm().procedures["com.example.add"].callee is callee.conn
    # Taken, by someone else or by the same session.
    await caller.send(REGISTER, 1, {}, "com.example.add")
    assert error_of(caller.take_one()) == (REGISTER, 1, PROCEDURE_ALREADY_EXISTS)
    await callee.send(REGISTER, 2, {}, "com.example.add")
    assert error_of(callee.take_one()) == (REGISTER, 2, PROCEDURE_ALREADY_EXISTS)
    # Only its callee can unregister it.
    await caller.send(UNREGISTER, 3, registration)
    assert error_of(caller.take_one()) == (UNREGISTER, 3, NO_SUCH_REGISTRATION)
    await callee.send(UNREGISTER, 4, registration)
    assert callee.take_one() == [UNREGISTERED, 4]
    assert "com.example.add" not in server.realm().procedures
    await callee.send(UNREGISTER, 5, registration)
    assert error_of(callee.take_one()) == (UNREGISTER, 5, NO_SUCH_REGISTRATION)
    await caller.send(CALL, 6, {}, "com.example.add")
    assert error_of(caller.take_one()) == (CALL, 6, NO_SUCH_PROCEDURE)
    # Free again.
    await caller.register("com.example.add")


async def test_register_with_unsupported_options() -> None:
    peer = (await joined(WampServer(), 1))[0]
    await peer.send(REGISTER, 1, {"match": "prefix"}, "a")
    assert error_of(peer.take_one()) == (REGISTER, 1, INVALID_ARGUMENT)
    await peer.send(REGISTER, 2, {"invoke": "roundrobin"}, "a")
    assert error_of(peer.take_one()) == (REGISTER, 2, INVALID_ARGUMENT)


async def test_call_without_callee() -> None:
    (caller,) = await joined(WampServer(), 1)
    await caller.send(CALL, 7, {}, "com.example.nothing", [1])
    answer = caller.take_one()
    assert error_of(answer) == (CALL, 7, NO_SUCH_PROCEDURE)
    # The call id is free again.
    await caller.send(CALL, 7, {}, "com.example.nothing")
    assert error_of(caller.take_one()) == (CALL, 7, NO_SUCH_PROCEDURE)


async def test_call_is_routed_to_the_callee_and_back() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    registration = await callee.register("com.example.add")
    await caller.send(CALL, 100, {}, "com.example.add", [2, 3], {"round": True})
    invocation = callee.take_one()
    assert invocation[0] == INVOCATION and invocation[2] == registration
    assert invocation[3] == {} and invocation[4:] == [[2, 3], {"round": True}]
    assert caller.take() == []
    await callee.send(YIELD, invocation[1], {}, [5], {"exact": True})
    assert caller.take_one() == [RESULT, 100, {}, [5], {"exact": True}]
    assert callee.take() == []
    # A second YIELD for the same invocation is ignored.
    await callee.send(YIELD, invocation[1], {}, [6])
    assert caller.take() == [] and callee.take() == []
    # Results without arguments.
    await caller.send(CALL, 101, {}, "com.example.add")
    invocation = callee.take_one()
    assert len(invocation) == 4
    await callee.send(YIELD, invocation[1], {})
    assert caller.take_one() == [RESULT, 101, {}]


async def test_invocation_ids_are_per_callee_sequential() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    await callee.register("p")
    for call_id in (10, 11, 12):
        await caller.send(CALL, call_id, {}, "p")
    ids = [message[1] for message in callee.take()]
    assert ids == [1, 2, 3]
    # Answered out of order, each result goes to its own call.
    for invocation_id in (3, 1, 2):
        await callee.send(YIELD, invocation_id, {}, [invocation_id])
    assert caller.take() == [[RESULT, 12, {}, [3]], [RESULT, 10, {}, [1]], [RESULT, 11, {}, [2]]]


async def test_callee_error_reaches_the_caller() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p", ["x"])
    invocation = callee.take_one()
    await callee.send(
        ERROR, INVOCATION, invocation[1], {}, "com.example.error.bad", ["why"], {"code": 3}
    )
    assert caller.take_one() == [ERROR, CALL, 1, {}, "com.example.error.bad", ["why"], {"code": 3}]
    await caller.send(CALL, 2, {}, "p")
    invocation = callee.take_one()
    await callee.send(ERROR, INVOCATION, invocation[1], {}, "com.example.error.plain")
    assert caller.take_one() == [ERROR, CALL, 2, {}, "com.example.error.plain"]


async def test_yield_for_an_unknown_invocation_is_ignored() -> None:
    (peer,) = await joined(WampServer(), 1)
    await peer.send(YIELD, 99, {}, ["x"])
    await peer.send(ERROR, INVOCATION, 98, {}, "com.example.err")
    assert peer.take() == [] and not peer.ws.closed


async def test_only_the_callee_can_answer_its_invocation() -> None:
    server = WampServer()
    callee, caller, other = await joined(server, 3)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p")
    invocation = callee.take_one()
    await other.send(YIELD, invocation[1], {}, ["forged"])
    assert caller.take() == []
    await callee.send(YIELD, invocation[1], {}, ["real"])
    assert caller.take_one() == [RESULT, 1, {}, ["real"]]


async def test_callee_leaving_cancels_its_pending_calls() -> None:
    component = Recorder()
    server = WampServer(component)
    callee, a, b = await joined(server, 3)
    await callee.register("p")
    await a.send(CALL, 1, {}, "p")
    await b.send(CALL, 2, {}, "p")
    await a.send(CALL, 3, {}, "p")
    assert len(callee.take()) == 3
    await callee.leave()
    assert [error_of(m) for m in a.take()] == [(CALL, 1, CANCELED), (CALL, 3, CANCELED)]
    assert [error_of(m) for m in b.take()] == [(CALL, 2, CANCELED)]
    assert "p" not in server.realm().procedures
    await a.send(CALL, 1, {}, "p")  # the id is free, the procedure gone
    assert error_of(a.take_one()) == (CALL, 1, NO_SUCH_PROCEDURE)


async def test_caller_leaving_makes_a_late_yield_harmless() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p")
    invocation = callee.take_one()
    await caller.leave()
    await callee.send(YIELD, invocation[1], {}, ["late"])
    await callee.send(ERROR, INVOCATION, invocation[1], {}, "com.example.late")
    assert callee.take() == [] and caller.take() == []
    assert not callee.ws.closed
    # The callee's capacity was given back.
    assert pending_calls(callee) == 0


async def test_duplicate_call_id_in_flight_is_a_protocol_violation() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p")
    await caller.send(CALL, 1, {}, "p")
    assert_abort(caller, PROTOCOL_VIOLATION, 1002)
    assert len(callee.take()) == 1  # only the first call was forwarded
    await caller.leave()
    assert pending_calls(callee) == 0


async def test_max_registrations() -> None:
    server = WampServer(max_registrations=1)
    (peer,) = await joined(server, 1)
    await peer.register("a")
    await peer.send(REGISTER, 9, {}, "b")
    assert error_of(peer.take_one()) == (REGISTER, 9, LIMIT_EXCEEDED)
    assert "b" not in server.realm().procedures


async def test_max_pending_calls() -> None:
    server = WampServer(max_pending_calls=2)
    callee, caller = await joined(server, 2)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p")
    await caller.send(CALL, 2, {}, "p")
    await caller.send(CALL, 3, {}, "p")
    assert error_of(caller.take_one()) == (CALL, 3, LIMIT_EXCEEDED)
    invocations = callee.take()
    assert len(invocations) == 2
    await callee.send(YIELD, invocations[0][1], {})
    assert caller.take_one() == [RESULT, 1, {}]
    await caller.send(CALL, 3, {}, "p")  # room again
    assert callee.take_one()[0] == INVOCATION


async def test_call_arguments_the_callee_cannot_receive() -> None:
    server = WampServer()
    callee = Peer(server, MSGPACK)
    await callee.join()
    (caller,) = await joined(server, 1)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p", [TOO_BIG_FOR_MSGPACK])
    assert error_of(caller.take_one()) == (CALL, 1, INVALID_ARGUMENT)
    assert callee.take() == []
    assert pending_calls(callee) == 0
    await caller.send(CALL, 1, {}, "p", [1])  # the call id is free again
    assert callee.take_one()[0] == INVOCATION


async def test_result_the_caller_cannot_receive() -> None:
    server = WampServer()
    (callee,) = await joined(server, 1)
    caller = Peer(server, MSGPACK)
    await caller.join()
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p")
    invocation = callee.take_one()
    await callee.send(YIELD, invocation[1], {}, [TOO_BIG_FOR_MSGPACK])
    assert error_of(caller.take_one()) == (CALL, 1, INVALID_ARGUMENT)
    await caller.send(CALL, 2, {}, "p")
    invocation = callee.take_one()
    await callee.send(ERROR, INVOCATION, invocation[1], {}, "com.example.e", [TOO_BIG_FOR_MSGPACK])
    assert error_of(caller.take_one()) == (CALL, 2, "com.example.e")


# -- the component's handlers -------------------------------------------------------------------


async def test_on_subscribe_refusing() -> None:
    class MembersOnly(WampComponent):
        def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            if topic.id.startswith("private."):
                raise WampError(NOT_AUTHORIZED, "members only", kwargs={"hint": "log in"})

    server = WampServer(MembersOnly())
    (peer,) = await joined(server, 1)
    await peer.send(SUBSCRIBE, 4, {}, "private.room")
    answer = peer.take_one()
    assert answer == [ERROR, SUBSCRIBE, 4, {}, NOT_AUTHORIZED, ["members only"], {"hint": "log in"}]
    topics = server.realm().topics
    assert "private.room" not in topics and len(topics) == 0
    assert peer.conn.subscriptions == ()
    assert not peer.ws.closed
    assert await peer.subscribe("public.room") >= 1


async def test_on_subscribe_sees_the_topic_before_the_subscriber_is_added() -> None:
    seen: list[tuple[bool, int]] = []

    class Check(WampComponent):
        def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            seen.append((conn in topic, len(topic)))

    server = WampServer(Check())
    a, b = await joined(server, 2)
    await a.subscribe("t")
    await b.subscribe("t")
    assert seen == [(False, 0), (False, 1)]


async def test_async_on_subscribe() -> None:
    gate = trio.Event()

    class Slow(WampComponent):
        async def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            await gate.wait()

    server = WampServer(Slow())
    a, b = await joined(server, 2)
    topics = server.realm().topics
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send, SUBSCRIBE, 1, {}, "t")
        nursery.start_soon(b.send, SUBSCRIBE, 1, {}, "t")
        await trio.testing.wait_all_tasks_blocked()
        topic = topics.get("t")
        assert topic is not None and len(topic) == 0  # kept while subscriptions are under way
        assert a.take() == [] and b.take() == []
        gate.set()
    first, second = a.take_one(), b.take_one()
    assert first[:2] == second[:2] == [SUBSCRIBED, 1]
    assert first[2] == second[2] == topic.subscription_id
    assert topics.get("t") is topic and set(topic) == {a.conn, b.conn}


async def test_async_on_subscribe_refusing_forgets_the_topic() -> None:
    class Slow(WampComponent):
        async def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            await trio.lowlevel.checkpoint()
            raise WampError(NOT_AUTHORIZED)

    server = WampServer(Slow())
    (peer,) = await joined(server, 1)
    await peer.send(SUBSCRIBE, 1, {}, "t")
    assert peer.take_one() == [ERROR, SUBSCRIBE, 1, {}, NOT_AUTHORIZED]
    assert len(server.realm().topics) == 0


async def test_session_leaving_during_async_on_subscribe() -> None:
    gate = trio.Event()

    class Slow(WampComponent):
        async def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            await gate.wait()

    server = WampServer(Slow())
    (peer,) = await joined(server, 1)
    pending = server.on_message(peer.ws, json.dumps([SUBSCRIBE, 1, {}, "t"]))
    assert pending is not None
    assert "t" in server.realm().topics
    await peer.leave()
    gate.set()
    with trio.fail_after(1):
        await pending
    assert len(server.realm().topics) == 0
    assert peer.take() == []


async def test_on_subscribe_failing_goes_to_on_error() -> None:
    class Broken(Recorder):
        def on_subscribe(self, conn: WampConnection, topic: Topic) -> None:
            raise RuntimeError("boom")

    component = Broken()
    server = WampServer(component)
    (peer,) = await joined(server, 1)
    await peer.send(SUBSCRIBE, 1, {}, "t")
    answer = peer.take_one()
    assert error_of(answer) == (SUBSCRIBE, 1, RUNTIME_ERROR)
    assert "boom" not in json.dumps(answer)  # internals stay on the server
    ((conn, exc),) = component.errors
    assert conn is peer.conn and str(exc) == "boom"
    assert len(server.realm().topics) == 0


async def test_on_publish_refusing() -> None:
    class ReadOnly(WampComponent):
        def on_publish(
            self,
            conn: WampConnection,
            topic: Topic,
            event: Payload,
            exclude: list[int],
            eligible: list[int] | None,
        ) -> None:
            raise WampError(NOT_AUTHORIZED, "read only")

    server = WampServer(ReadOnly())
    pub, sub = await joined(server, 2)
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t", ["x"])
    assert pub.take() == [] and sub.take() == []
    await pub.send(PUBLISH, 2, {"acknowledge": True}, "t", ["x"])
    assert pub.take_one() == [ERROR, PUBLISH, 2, {}, NOT_AUTHORIZED, ["read only"]]
    assert sub.take() == []


async def test_on_publish_receives_ratchet_style_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    class Spy(WampComponent):
        def on_publish(
            self,
            conn: WampConnection,
            topic: Topic,
            event: Payload,
            exclude: list[int],
            eligible: list[int] | None,
        ) -> None:
            calls.append((conn, topic, event, exclude, eligible))
            # A Ratchet-style app transforms the event and broadcasts it itself.
            topic.broadcast({"said": event.args[0], "by": conn.session_id}, exclude, eligible)

    server = WampServer(Spy())
    pub, sub = await joined(server, 2)
    await sub.subscribe("chat")
    await pub.send(PUBLISH, 1, {"exclude": [42]}, "chat", ["hi"], {"k": 1})
    ((conn, topic, event, exclude, eligible),) = calls
    assert conn is pub.conn and topic.id == "chat" and len(topic) == 1
    assert event.args == ["hi"] and event.kwargs == {"k": 1}
    assert pub.session_id is not None
    assert exclude == sorted([42, pub.session_id]) and eligible is None
    assert sub.take_one()[4] == [{"said": "hi", "by": pub.session_id}]


async def test_on_publish_to_a_topic_nobody_subscribes_gets_an_unkept_topic() -> None:
    topics: list[Topic] = []

    class Spy(WampComponent):
        def on_publish(self, conn: Any, topic: Topic, *rest: Any) -> None:
            topics.append(topic)
            assert topic.broadcast("x") == 0

    server = WampServer(Spy())
    (pub,) = await joined(server, 1)
    await pub.send(PUBLISH, 1, {}, "nobody")
    assert topics[0].id == "nobody" and len(topics[0]) == 0
    assert "nobody" not in server.realm().topics


class Deferred(WampComponent):
    """Answers calls later, Ratchet-style, from the test."""

    def __init__(self) -> None:
        self.pending: list[tuple[WampConnection, int, Procedure, list[Any], dict[str, Any]]] = []

    def on_call(
        self,
        conn: WampConnection,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        self.pending.append((conn, call_id, procedure, args, kwargs))


async def test_on_call_answered_by_the_component() -> None:
    component = Deferred()
    server = WampServer(component)
    (caller,) = await joined(server, 1)
    for call_id in (1, 2, 3, 4):
        await caller.send(CALL, call_id, {}, "com.example.add", [1, 2], {"k": "v"})
    assert caller.take() == []
    conn, call_id, procedure, args, kwargs = component.pending[0]
    assert conn is caller.conn and call_id == 1
    assert procedure.id == "com.example.add" and procedure.callee is None
    assert args == [1, 2] and kwargs == {"k": "v"}
    conn.call_result(1, 3)
    assert caller.take_one() == [RESULT, 1, {}, [3]]
    conn.call_result(2, args=[1, 2], kwargs={"sum": 3})
    assert caller.take_one() == [RESULT, 2, {}, [1, 2], {"sum": 3}]
    conn.call_error(3, "com.example.error.overflow", "too big", {"max": 10})
    overflow = [ERROR, CALL, 3, {}, "com.example.error.overflow", ["too big", {"max": 10}]]
    assert caller.take_one() == overflow
    conn.call_result(4)
    assert caller.take_one() == [RESULT, 4, {}]
    # Answering twice, or a call never made, is a bug in the component.
    with pytest.raises(LocalProtocolError):
        conn.call_result(1, "again")
    with pytest.raises(LocalProtocolError):
        conn.call_error(3, "com.example.error.again")
    with pytest.raises(LocalProtocolError):
        conn.call_result(999)
    assert caller.take() == []


async def test_on_call_answered_after_the_caller_left_is_a_no_op() -> None:
    component = Deferred()
    server = WampServer(component)
    (caller,) = await joined(server, 1)
    await caller.send(CALL, 1, {}, "p")
    await caller.send(CALL, 2, {}, "p")
    conn = component.pending[0][0]
    await caller.leave()
    conn.call_result(1, "late")
    conn.call_error(2, "com.example.late")
    assert caller.take() == []


async def test_on_call_answered_after_goodbye_does_not_reach_the_next_session() -> None:
    # Request ids are session scope: a new session on the same connection may reuse them.
    component = Deferred()
    server = WampServer(component)
    (caller,) = await joined(server, 1)
    await caller.send(CALL, 1, {}, "p")
    await caller.send(GOODBYE, {}, CLOSE_NORMAL)
    assert caller.take_one() == [GOODBYE, {}, GOODBYE_AND_OUT]
    await caller.join()
    await caller.send(CALL, 1, {}, "p")
    (old_conn, old_id, *_), (new_conn, new_id, *_) = component.pending
    old_conn.call_result(old_id, "stale")  # the old session's caller has left: a no-op
    assert caller.take() == []
    new_conn.call_result(new_id, "fresh")
    assert caller.take_one() == [RESULT, 1, {}, ["fresh"]]


async def test_async_on_call() -> None:
    class Async(WampComponent):
        async def on_call(self, conn: WampConnection, call_id: int, *rest: Any) -> None:
            await trio.lowlevel.checkpoint()
            conn.call_result(call_id, "done")

    (caller,) = await joined(WampServer(Async()), 1)
    await caller.send(CALL, 1, {}, "p")
    assert caller.take_one() == [RESULT, 1, {}, ["done"]]


async def test_on_call_raising_wamp_error() -> None:
    class SoldOut(WampComponent):
        async def on_call(self, *args: Any) -> None:
            await trio.lowlevel.checkpoint()
            raise WampError("com.example.error.sold_out", "none left", kwargs={"left": 0})

    (caller,) = await joined(WampServer(SoldOut()), 1)
    await caller.send(CALL, 1, {}, "p")
    assert caller.take_one() == [
        ERROR, CALL, 1, {}, "com.example.error.sold_out", ["none left"], {"left": 0}
    ]  # fmt: skip
    await caller.send(CALL, 1, {}, "p")  # the id is free again
    assert error_of(caller.take_one())[1] == 1


async def test_on_call_raising_a_plain_exception() -> None:
    class Broken(Recorder):
        def on_call(self, *args: Any) -> None:
            raise ValueError("bug")

    component = Broken()
    (caller,) = await joined(WampServer(component), 1)
    await caller.send(CALL, 1, {}, "p")
    assert error_of(caller.take_one()) == (CALL, 1, RUNTIME_ERROR)
    ((conn, exc),) = component.errors
    assert conn is caller.conn and isinstance(exc, ValueError)
    assert not caller.ws.closed
    await caller.send(CALL, 1, {}, "p")  # the id is free again
    assert error_of(caller.take_one()) == (CALL, 1, RUNTIME_ERROR)


async def test_on_call_raising_after_answering_sends_no_second_answer() -> None:
    class AnswerThenFail(Recorder):
        def on_call(self, conn: WampConnection, call_id: int, *rest: Any) -> None:
            conn.call_result(call_id, 1)
            raise ValueError("after")

    component = AnswerThenFail()
    (caller,) = await joined(WampServer(component), 1)
    await caller.send(CALL, 1, {}, "p")
    assert caller.take() == [[RESULT, 1, {}, [1]]]
    assert len(component.errors) == 1


async def test_on_call_routing_only_some_procedures() -> None:
    class Mixed(WampComponent):
        def on_call(
            self,
            conn: WampConnection,
            call_id: int,
            procedure: Procedure,
            args: list[Any],
            kwargs: dict[str, Any],
        ) -> None:
            if procedure.id == "local.echo":
                conn.call_result(call_id, args=args)
            else:
                procedure.call(conn, call_id, args, kwargs)

    server = WampServer(Mixed())
    callee, caller = await joined(server, 2)
    await callee.register("remote.p")
    await caller.send(CALL, 1, {}, "local.echo", [1, 2])
    assert caller.take_one() == [RESULT, 1, {}, [1, 2]]
    await caller.send(CALL, 2, {}, "remote.p", ["a"])
    invocation = callee.take_one()
    # A forwarded call belongs to the callee: the component cannot answer it too.
    with pytest.raises(LocalProtocolError):
        caller.conn.call_result(2, "twice")
    await callee.send(YIELD, invocation[1], {}, ["b"])
    assert caller.take_one() == [RESULT, 2, {}, ["b"]]


async def test_on_register_refusing() -> None:
    class NoAdmin(WampComponent):
        def on_register(self, conn: WampConnection, procedure: Procedure) -> None:
            if procedure.id.startswith("admin."):
                raise WampError(NOT_AUTHORIZED)

    server = WampServer(NoAdmin())
    (peer,) = await joined(server, 1)
    await peer.send(REGISTER, 1, {}, "admin.reboot")
    assert peer.take_one() == [ERROR, REGISTER, 1, {}, NOT_AUTHORIZED]
    assert "admin.reboot" not in server.realm().procedures
    await peer.register("user.ping")


async def test_async_on_register_race_for_one_procedure() -> None:
    gate = trio.Event()

    class Slow(WampComponent):
        async def on_register(self, conn: WampConnection, procedure: Procedure) -> None:
            await gate.wait()

    server = WampServer(Slow())
    a, b = await joined(server, 2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send, REGISTER, 1, {}, "p")
        nursery.start_soon(b.send, REGISTER, 1, {}, "p")
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    answers = [a.take_one(), b.take_one()]
    assert sorted(m[0] for m in answers) == [ERROR, REGISTERED]
    loser = next(m for m in answers if m[0] == ERROR)
    assert loser[4] == PROCEDURE_ALREADY_EXISTS


async def test_on_open_refusing_with_wamp_error() -> None:
    class Closed(Recorder):
        def on_open(self, conn: WampConnection) -> None:
            super().on_open(conn)
            raise WampError("com.example.error.closed_today", "come back tomorrow")

    component = Closed()
    server = WampServer(component)
    peer = Peer(server)
    await peer.send(HELLO, "realm1", ROLES)
    abort = assert_abort(peer, "com.example.error.closed_today", 1000)
    assert abort[1] == {"message": "come back tomorrow"}
    assert server.sessions == {} and server.realm().sessions == {}
    assert component.errors == []
    await peer.leave()
    assert [entry[0] for entry in component.log] == ["open"]  # no on_close: never joined


async def test_on_open_sees_the_session() -> None:
    seen: list[tuple[Any, ...]] = []

    class Look(WampComponent):
        async def on_open(self, conn: WampConnection) -> None:
            await trio.lowlevel.checkpoint()
            assert conn.realm is not None
            seen.append((conn.session_id, conn.realm.name, conn.authid, dict(conn.roles)))

    server = WampServer(Look())
    peer = Peer(server, user_id="carol")
    welcome = await peer.join()
    assert seen == [(welcome[1], "realm1", "carol", ROLES["roles"])]


async def test_on_open_failing() -> None:
    class Broken(Recorder):
        def on_open(self, conn: WampConnection) -> None:
            raise KeyError("oops")

    component = Broken()
    server = WampServer(component)
    peer = Peer(server)
    await peer.send(HELLO, "realm1", ROLES)
    abort = assert_abort(peer, RUNTIME_ERROR, 1000)
    assert "oops" not in json.dumps(abort)
    assert len(component.errors) == 1
    assert server.sessions == {}


async def test_on_unsubscribe_then_on_close_when_a_session_leaves() -> None:
    component = Recorder()
    server = WampServer(component)
    (peer,) = await joined(server, 1)
    conn = peer.conn
    await peer.subscribe("a")
    await peer.subscribe("b")
    await peer.register("p")
    component.log.clear()
    await peer.leave()
    expected = [("unsubscribe", conn, "a"), ("unsubscribe", conn, "b"), ("close", conn)]
    assert component.log == expected
    assert conn.session_id is None and conn.subscriptions == ()
    assert server.sessions == {} and server.realm().sessions == {}
    assert len(server.realm().topics) == 0 and server.realm().procedures == {}
    # The transport's on_close after the session ended changes nothing.
    await settle(server.on_close(peer.ws))
    assert len(component.log) == 3


async def test_async_on_unsubscribe_and_on_close_run_in_order() -> None:
    log: list[str] = []

    class Async(WampComponent):
        async def on_unsubscribe(self, conn: WampConnection, topic: Topic) -> None:
            await trio.lowlevel.checkpoint()
            log.append(f"unsubscribe {topic}")

        def on_close(self, conn: WampConnection) -> None:
            log.append("close")

    server = WampServer(Async())
    (peer,) = await joined(server, 1)
    await peer.subscribe("a")
    await peer.subscribe("b")
    await peer.leave()
    assert log == ["unsubscribe a", "unsubscribe b", "close"]


async def test_on_close_failing_goes_to_on_error() -> None:
    class Broken(Recorder):
        def on_close(self, conn: WampConnection) -> None:
            raise RuntimeError("close failed")

    component = Broken()
    server = WampServer(component)
    (peer,) = await joined(server, 1)
    await peer.leave()
    assert [str(exc) for _, exc in component.errors] == ["close failed"]
    assert server.sessions == {}


async def test_goodbye_then_a_new_session_on_the_same_connection() -> None:
    component = Recorder()
    server = WampServer(component)
    (peer,) = await joined(server, 1)
    await peer.subscribe("t")
    await peer.register("p")
    await peer.send(GOODBYE, {"message": "bye"}, CLOSE_NORMAL)
    assert peer.take_one() == [GOODBYE, {}, GOODBYE_AND_OUT]
    assert not peer.ws.closed
    assert server.sessions == {}
    assert [entry[0] for entry in component.log[-2:]] == ["unsubscribe", "close"]
    assert "t" not in server.realm().topics and "p" not in server.realm().procedures
    # A request now is not part of any session.
    await peer.send(SUBSCRIBE, 1, {}, "t")
    assert_abort(peer, PROTOCOL_VIOLATION, 1002)


async def test_new_hello_after_goodbye() -> None:
    server = WampServer()
    (peer,) = await joined(server, 1)
    first = peer.session_id
    await peer.subscribe("t")
    await peer.send(GOODBYE, {}, CLOSE_NORMAL)
    peer.take()
    welcome = await peer.join()
    assert welcome[1] != first and list(server.sessions) == [welcome[1]]
    assert peer.conn.subscriptions == ()
    assert await peer.subscribe("t") >= 1
    await peer.leave()
    assert server.sessions == {}


async def test_client_abort_in_a_session() -> None:
    component = Recorder()
    server = WampServer(component)
    (peer,) = await joined(server, 1)
    await peer.send(ABORT, {}, "com.example.bye")
    assert peer.take() == [] and peer.ws.closed
    assert server.sessions == {} and component.log[-1][0] == "close"
    await peer.leave()
    assert [entry[0] for entry in component.log].count("close") == 1


async def test_conn_close_says_goodbye_first() -> None:
    server = WampServer()
    (peer,) = await joined(server, 1)
    peer.conn.close(1000, "done")
    assert peer.take_one() == [GOODBYE, {"message": "done"}, CLOSE_NORMAL]
    assert peer.ws.closes == [(1000, "done")]


# -- the server-side API ---------------------------------------------------------------------


async def test_server_publish() -> None:
    server = WampServer()
    alice = Peer(server, user_id="alice")
    await alice.join()
    bob = Peer(server, user_id="bob")
    await bob.join()
    (anon,) = await joined(server, 1)
    for peer in (alice, bob, anon):
        await peer.subscribe("news")
    assert server.publish("news", ["a"], {"b": 1}) == 3
    events = [p.take_one() for p in (alice, bob, anon)]
    assert events[0] == events[1] == events[2]
    assert events[0][4:] == [["a"], {"b": 1}]
    assert server.publish("news", ["x"], eligible_authid=["bob"]) == 1
    assert bob.take_one()[4] == ["x"] and alice.take() == [] and anon.take() == []
    assert server.publish("news", exclude_authid=["bob"], exclude=[alice.session_id]) == 1
    assert len(anon.take_one()) == 4
    assert server.publish("news", [1], eligible=[alice.conn, bob.session_id]) == 2
    alice.take(), bob.take()
    assert server.publish("news", [1], publication_id=4242) == 3
    assert {p.take_one()[2] for p in (alice, bob, anon)} == {4242}
    assert server.publish("nobody.listens", ["x"]) == 0
    assert server.publish("news", ["x"], realm="realm1") == 3
    with pytest.raises(ValueError):
        server.publish("news", ["x"], realm="nope")


async def test_server_publish_does_not_go_through_on_publish() -> None:
    class ReadOnly(WampComponent):
        def on_publish(self, *args: Any) -> None:
            raise WampError(NOT_AUTHORIZED)

    server = WampServer(ReadOnly())
    (sub,) = await joined(server, 1)
    await sub.subscribe("t")
    assert server.publish("t", [1]) == 1
    assert sub.take_one()[4] == [1]


async def test_connections_of_a_user() -> None:
    server = WampServer()
    tab1 = Peer(server, user_id="alice")
    tab2 = Peer(server, user_id="alice")
    other = Peer(server, user_id="bob")
    assert server.connections_of("alice") == ()  # not joined yet
    for peer in (tab1, tab2, other):
        await peer.join()
    assert set(server.connections_of("alice")) == {tab1.conn, tab2.conn}
    assert server.connections_of("bob") == (other.conn,)
    assert server.connections_of("nobody") == ()
    conn1 = tab1.conn
    await tab1.leave()
    assert server.connections_of("alice") == (tab2.conn,)
    await tab2.send(GOODBYE, {}, CLOSE_NORMAL)
    assert server.connections_of("alice") == ()
    assert conn1 not in server.connections_of("alice")


def test_realm_api() -> None:
    server = WampServer(realms=["a", "b"])
    assert server.realm() is server.realm("a")
    assert server.realm("b").name == "b"
    with pytest.raises(ValueError):
        server.realm("c")
    with pytest.raises(ValueError):
        WampServer(realms=None).realm()
    # An open realm nobody is in is empty and not kept (memory follows the realms in use).
    opened = WampServer(realms=None)
    empty = opened.realm("x")
    assert empty.name == "x" and not empty.sessions and "x" not in opened.realms


async def test_topic_and_topic_manager() -> None:
    server = WampServer()
    a, b = await joined(server, 2)
    topics = server.realm().topics
    assert isinstance(topics, TopicManager)
    assert len(topics) == 0 and list(topics) == [] and topics.get("t") is None
    subscription = await a.subscribe("t")
    await b.subscribe("t")
    await a.subscribe("u")
    topic = topics["t"]
    assert isinstance(topic, Topic)
    assert topics.get("t") is topic and topics.by_subscription(subscription) is topic
    assert "t" in topics and "nope" not in topics
    assert len(topics) == 2 and {t.id for t in topics} == {"t", "u"}
    assert str(topic) == "t" and topic.id == "t" and topic.realm is server.realm()
    assert len(topic) == 2 and list(topic) == [a.conn, b.conn]
    assert a.conn in topic and b.conn in topic and "x" not in topic
    assert "'t'" in repr(topic) and "2 subscribers" in repr(topic)
    assert "realm1" in repr(topics)
    # An unknown topic: a fresh, unkept, empty one.
    fresh = topics["nope"]
    assert len(fresh) == 0 and fresh.subscription_id is None and fresh.broadcast("x") == 0
    assert "nope" not in topics and topics.get("nope") is None
    # Iterating while subscribers change is safe (snapshots).
    a_conn, b_conn = a.conn, b.conn
    seen = []
    for conn in topic:
        seen.append(conn)
        if conn is a_conn:
            await a.leave()
    assert seen == [a_conn, b_conn] and list(topic) == [b_conn]


async def test_topic_broadcast() -> None:
    server = WampServer()
    a, b, c = await joined(server, 3)
    for peer in (a, b, c):
        await peer.subscribe("t")
    topic = server.realm().topics["t"]
    assert topic.broadcast("hello") == 3
    event = a.take_one()
    assert event[4] == ["hello"] and len(event) == 5
    assert b.take_one() == event and c.take_one() == event
    # exclude / eligible take session ids or connections.
    assert topic.broadcast("x", exclude=[a.conn, b.session_id]) == 1
    assert c.take_one()[4] == ["x"]
    assert topic.broadcast("x", eligible=[a.session_id]) == 1
    assert a.take_one()[4] == ["x"]
    assert topic.broadcast("x", eligible=[]) == 0  # WAMP's meaning: no one
    assert topic.broadcast(Payload(["p"], {"k": 1})) == 3
    assert a.take_one()[4:] == [["p"], {"k": 1}]
    b.take(), c.take()
    with pytest.raises(TypeError):
        topic.broadcast("x", exclude=["not a session"])
    assert a.take() == []


async def test_event_to_one_subscriber() -> None:
    server = WampServer()
    a, b, c = await joined(server, 3)
    subscription = await a.subscribe("t")
    await b.subscribe("t")
    topic = server.realm().topics["t"]
    assert a.conn.event(topic, {"just": "you"}) is True
    event = a.take_one()
    assert event[:2] == [EVENT, subscription] and event[4] == [{"just": "you"}]
    assert b.take() == []
    assert a.conn.event("t", "by uri") is True
    assert a.take_one()[4] == ["by uri"]
    # Not a subscriber: nothing sent.
    assert c.conn.event(topic, "x") is False
    assert c.conn.event("t", "x") is False
    assert a.conn.event("other", "x") is False
    assert a.take() == [] and c.take() == []


async def test_on_shutdown_says_goodbye_then_closes() -> None:
    server = WampServer()
    (peer,) = await joined(server, 1)
    unjoined = Peer(server)
    server.on_shutdown(peer.ws, 1001, "server shutting down")
    assert peer.take_one() == [GOODBYE, {"message": "server shutting down"}, CLOSE_SYSTEM_SHUTDOWN]
    assert peer.ws.closes == [(1001, "server shutting down")]
    server.on_shutdown(unjoined.ws, 1012, "restarting")
    assert unjoined.take() == []
    assert unjoined.ws.closes == [(1012, "restarting")]
    # The transport reports the closes afterwards.
    await peer.leave()
    await unjoined.leave()
    assert server.sessions == {}


def test_procedure_and_payload_basics() -> None:
    server = WampServer()
    procedure = Procedure("com.example.p", server.realm())
    assert str(procedure) == "com.example.p" and "no callee" in repr(procedure)
    assert Payload.of("x") == Payload(["x"])
    payload = Payload([1], {"a": 2})
    assert Payload.of(payload) is payload
    error = WampError(NOT_AUTHORIZED, "why", 2, kwargs={"k": 1})
    assert error.error == NOT_AUTHORIZED and error.error_args == ["why", 2]
    assert error.error_kwargs == {"k": 1} and str(error) == f"{NOT_AUTHORIZED}: why"
    assert str(WampError(NOT_AUTHORIZED)) == NOT_AUTHORIZED


async def test_client_cannot_claim_an_authid_in_hello() -> None:
    server = WampServer()
    peer = Peer(server)
    details = {**ROLES, "authid": "admin", "authrole": "admin"}
    await peer.send(HELLO, "realm1", details)
    welcome = peer.take_one()
    assert welcome[0] == WELCOME
    assert "authid" not in welcome[2] and welcome[2]["authrole"] == "anonymous"
    assert server.sessions[welcome[1]].authid is None
    assert server.connections_of("admin") == ()


async def test_duplicate_call_id_while_the_component_answers() -> None:
    component = Deferred()
    server = WampServer(component)
    (caller,) = await joined(server, 1)
    await caller.send(CALL, 1, {}, "p")
    await caller.send(CALL, 1, {}, "p")
    assert_abort(caller, PROTOCOL_VIOLATION, 1002)
    assert len(component.pending) == 1


async def test_async_on_publish_failing() -> None:
    class Broken(Recorder):
        async def on_publish(self, *args: Any) -> None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("publish failed")

    component = Broken()
    server = WampServer(component)
    pub, sub = await joined(server, 2)
    await sub.subscribe("t")
    await pub.send(PUBLISH, 1, {}, "t", ["x"])
    assert pub.take() == [] and sub.take() == []
    assert [str(exc) for _, exc in component.errors] == ["publish failed"]
    await pub.send(PUBLISH, 2, {"acknowledge": True}, "t", ["x"])
    assert error_of(pub.take_one()) == (PUBLISH, 2, RUNTIME_ERROR)
    assert len(component.errors) == 2


async def test_nothing_follows_the_goodbye_of_a_session_calling_itself() -> None:
    server = WampServer()
    (peer,) = await joined(server, 1)
    await peer.register("p")
    await peer.send(CALL, 1, {}, "p")
    assert peer.take_one()[0] == INVOCATION
    await peer.send(GOODBYE, {}, CLOSE_NORMAL)
    # The session is over once the router says GOODBYE: no ERROR for the call after it.
    messages = peer.take()
    assert messages[-1] == [GOODBYE, {}, GOODBYE_AND_OUT], messages
    assert server.sessions == {} and "p" not in server.realm().procedures


async def test_on_open_refusing_with_a_long_non_ascii_uri_still_closes() -> None:
    uri = "com.example.error." + "\u00e9" * 70  # 88 characters, 158 UTF-8 bytes

    class Refuse(Recorder):
        def on_open(self, conn: WampConnection) -> None:
            if conn.authid == "mallory":
                raise WampError(uri, "no")

    component = Refuse()
    server = WampServer(component)
    (sub,) = await joined(server, 1)
    await sub.subscribe("t")
    peer = Peer(server, user_id="mallory")
    hello = json.dumps([HELLO, "realm1", ROLES])
    try:
        await settle(server.on_message(peer.ws, hello))
    except LocalProtocolError as exc:  # what WsServer does with a handler's exception
        await settle(server.on_error(peer.ws, exc))
    abort = peer.take_one()
    assert abort[0] == ABORT and abort[2] == uri
    # The close reason must be cut to fit a close frame (123 UTF-8 bytes), not fail...
    assert peer.ws.closed
    assert component.errors == []
    # ... and above all the refused client must not be able to use the router.
    await peer.send(PUBLISH, 1, {"acknowledge": True}, "t", ["from a refused client"])
    await peer.send(SUBSCRIBE, 2, {}, "t")
    assert peer.take() == []
    assert sub.take() == []


async def test_unjoined_conn_close_sends_no_goodbye() -> None:
    seen: list[WampConnection] = []

    class Keep(WampComponent):
        def on_open(self, conn: WampConnection) -> None:
            seen.append(conn)
            raise WampError(NOT_AUTHORIZED)

    server = WampServer(Keep())
    peer = Peer(server)
    await peer.send(HELLO, "realm1", ROLES)
    peer.take()
    seen[0].close(1000, "again")
    assert peer.take() == []


async def test_late_yield_after_the_caller_rejoined_does_not_answer_its_new_call() -> None:
    server = WampServer()
    callee, caller = await joined(server, 2)
    await callee.register("p")
    await caller.send(CALL, 1, {}, "p")
    old_invocation = callee.take_one()
    await caller.send(GOODBYE, {}, CLOSE_NORMAL)
    caller.take()
    await caller.join()
    await caller.send(CALL, 1, {}, "p")
    new_invocation = callee.take_one()
    assert new_invocation[1] != old_invocation[1]
    await callee.send(YIELD, old_invocation[1], {}, ["old"])
    assert caller.take() == []
    await callee.send(YIELD, new_invocation[1], {}, ["new"])
    assert caller.take_one() == [RESULT, 1, {}, ["new"]]


async def test_call_forwarded_after_the_callee_said_goodbye() -> None:
    # An async on_call (authorizing, say) forwards the call once done; meanwhile the callee,
    # on another connection, ended its session with GOODBYE but kept the connection open.
    gate = trio.Event()

    class Authorizing(WampComponent):
        async def on_call(
            self,
            conn: WampConnection,
            call_id: int,
            procedure: Procedure,
            args: list[Any],
            kwargs: dict[str, Any],
        ) -> None:
            await gate.wait()
            procedure.call(conn, call_id, args, kwargs)

    server = WampServer(Authorizing())
    callee, caller = await joined(server, 2)
    await callee.register("p")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller.send, CALL, 1, {}, "p")
        await trio.testing.wait_all_tasks_blocked()
        await callee.send(GOODBYE, {}, CLOSE_NORMAL)
        assert callee.take_one() == [GOODBYE, {}, GOODBYE_AND_OUT]
        gate.set()
    # The callee's session is over: nothing may reach it, and the caller must hear an answer.
    assert callee.take() == []
    answer = caller.take_one()
    assert answer[0] == ERROR and answer[4] in (NO_SUCH_PROCEDURE, CANCELED), answer


async def test_conn_close_in_on_open_sends_no_goodbye_before_welcome() -> None:
    # A Ratchet habit: refusing a client by closing it in on_open.
    class CloseAtOnce(WampComponent):
        def on_open(self, conn: WampConnection) -> None:
            conn.close(1000, "go away")

    server = WampServer(CloseAtOnce())
    peer = Peer(server)
    await peer.send(HELLO, "realm1", ROLES)
    # No session was established: GOODBYE (which ends an established session) is wrong here.
    assert all(message[0] != GOODBYE for message in peer.take())
    assert peer.ws.closes == [(1000, "go away")]
    assert server.sessions == {}


async def test_shutdown_while_on_open_runs_sends_no_goodbye_before_welcome() -> None:
    gate = trio.Event()

    class SlowOpen(WampComponent):
        async def on_open(self, conn: WampConnection) -> None:
            await gate.wait()

    server = WampServer(SlowOpen())
    peer = Peer(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.send, HELLO, "realm1", ROLES)
        await trio.testing.wait_all_tasks_blocked()
        server.on_shutdown(peer.ws, 1001, "server shutting down")
        gate.set()
    messages = peer.take()
    assert all(message[0] not in (GOODBYE, WELCOME) for message in messages), messages
    assert peer.ws.closes == [(1001, "server shutting down")]
    assert server.sessions == {}


async def test_open_realms_do_not_accumulate() -> None:
    # With realms=None any realm name is accepted: what clients name must not make the
    # router remember realms once nobody is in them (one client, many HELLOs, grows memory).
    class RefuseOdd(WampComponent):
        def on_open(self, conn: WampConnection) -> None:
            assert conn.realm is not None
            if conn.realm.name.endswith("1"):
                raise WampError(NOT_AUTHORIZED)

    server = WampServer(RefuseOdd(), realms=None)
    for i in range(20):
        peer = Peer(server)
        await peer.send(HELLO, f"com.example.realm{i}", ROLES)
        await peer.leave()
    peer = Peer(server)
    await peer.join("com.example.kept")
    await peer.send(GOODBYE, {}, CLOSE_NORMAL)
    assert peer.take_one()[0] == GOODBYE
    await peer.join("com.example.other")
    assert set(server.realms) == {"com.example.other"}
