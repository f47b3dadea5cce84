"""WampServer's sessions (server.py, realm.py's Realm and WampConnection), driven directly by
support.wamp's Peer: HELLO and WELCOME, realms, who the client is (authid), the HELLO
timeout, the component's on_open and on_close, GOODBYE and ABORT from either side, a new
session on the same connection, and shutdown."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from ratchetpy.exceptions import LocalProtocolError, WampError
from ratchetpy.testing import RecordingConnection, resolve
from ratchetpy.wamp import CLOSE_SYSTEM_SHUTDOWN, Topic, WampComponent, WampConnection, WampServer
from ratchetpy.wamp.messages import (
    ABORT,
    CALL,
    CLOSE_NORMAL,
    GOODBYE,
    GOODBYE_AND_OUT,
    HELLO,
    INVALID_URI,
    MAX_ID,
    NO_SUCH_PROCEDURE,
    NO_SUCH_REALM,
    NOT_AUTHORIZED,
    PROTOCOL_VIOLATION,
    PUBLISH,
    PUBLISHED,
    RUNTIME_ERROR,
    SUBSCRIBE,
    WELCOME,
)
from support.wamp import JSON, MSGPACK, ROLES, Peer, Recorder, assert_abort, error_of, joined

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


async def test_msgpack_session() -> None:
    server = WampServer()
    peer = Peer(server, MSGPACK)
    welcome = await peer.join()
    assert welcome[2]["realm"] == "realm1"  # take() checked it came as bytes
    assert await peer.subscribe("com.example.t") >= 1


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


# -- realms ------------------------------------------------------------------------------------


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
    ws = RecordingConnection(subprotocol=JSON)
    server.on_open(ws)
    assert ws.timers == []


# -- on_open -----------------------------------------------------------------------------------


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
        await resolve(server.on_message(peer.ws, hello))
    except LocalProtocolError as exc:  # what WsServer does with a handler's exception
        await resolve(server.on_error(peer.ws, exc))
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


# -- leaving -----------------------------------------------------------------------------------


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
    await resolve(server.on_close(peer.ws))
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


async def test_abort_before_hello_closes_quietly() -> None:
    peer = Peer(WampServer())
    await peer.send(ABORT, {}, "wamp.close.normal")
    assert peer.take() == []
    assert peer.ws.closed


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


# -- shutdown ----------------------------------------------------------------------------------


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
