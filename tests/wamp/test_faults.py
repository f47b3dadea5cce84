"""What WampServer (server.py) does with clients that break the protocol or cannot speak it:
no WAMP subprotocol or an unknown serializer, requests before HELLO, a second HELLO, data that
does not decode, and messages that do not parse. Driven directly by support.wamp's Peer."""

from __future__ import annotations

import json
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import trio

from ratchetpy.testing import RecordingConnection
from ratchetpy.wamp import WampComponent, WampConnection, WampServer
from ratchetpy.wamp.messages import HELLO, PROTOCOL_VIOLATION, SUBSCRIBE
from support.wamp import JSON, MSGPACK, ROLES, Peer, Recorder, assert_abort

# -- serializers -------------------------------------------------------------------------------


async def test_connection_without_wamp_subprotocol_is_closed() -> None:
    server = WampServer()
    ws = RecordingConnection(subprotocol=None)
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
    ws = RecordingConnection(subprotocol=MSGPACK)
    server.on_open(ws)
    assert ws.closes and ws.closes[0][0] == 1002


# -- out of order ------------------------------------------------------------------------------


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


# -- undecodable and malformed -----------------------------------------------------------------


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
        (JSON, '[1, "realm1", {"roles": {}, "roles": {"subscriber": {}}}]', 1007),
        (JSON, '[1, "realm1", {"roles": {"caller": {}}, "x": 1e999}]', 1007),
    ],
    ids=["truncated", "garbage", "object", "number", "binary-on-json", "text-on-msgpack",
         "bad-msgpack", "msgpack-map", "duplicate-key", "huge-number"],
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
