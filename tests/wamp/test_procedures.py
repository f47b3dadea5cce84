"""The application's side of the dealer: the component's on_call (answering with
WampConnection.call_result and call_error, async, raising, forwarding with Procedure.call)
and on_register, Procedure and Payload."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from ratchetpy.exceptions import LocalProtocolError, WampError
from ratchetpy.wamp import Payload, Procedure, WampComponent, WampConnection, WampServer
from ratchetpy.wamp.messages import (
    CALL,
    CANCELED,
    CLOSE_NORMAL,
    ERROR,
    GOODBYE,
    GOODBYE_AND_OUT,
    NO_SUCH_PROCEDURE,
    NOT_AUTHORIZED,
    PROCEDURE_ALREADY_EXISTS,
    PROTOCOL_VIOLATION,
    PUBLISH,
    REGISTER,
    REGISTERED,
    RESULT,
    RUNTIME_ERROR,
    YIELD,
)
from support.wamp import Recorder, assert_abort, error_of, joined

# -- on_call -----------------------------------------------------------------------------------


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


async def test_duplicate_call_id_while_the_component_answers() -> None:
    component = Deferred()
    server = WampServer(component)
    (caller,) = await joined(server, 1)
    await caller.send(CALL, 1, {}, "p")
    await caller.send(CALL, 1, {}, "p")
    assert_abort(caller, PROTOCOL_VIOLATION, 1002)
    assert len(component.pending) == 1


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
    assert caller.ws.counters.handler_errors == 2  # what the metrics report, once each


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


# -- on_register -------------------------------------------------------------------------------


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


# -- Procedure and Payload ---------------------------------------------------------------------


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


async def test_the_router_counts_its_sessions_subscriptions_registrations_and_calls() -> None:
    server = WampServer()
    callee, caller, other = await joined(server, 3)
    # Each connection the router is given adds it to that server's counters (once).
    assert caller.ws.counters.sources == {id(server): server}
    await callee.register("com.example.add")
    await caller.subscribe("com.example.news")
    await other.subscribe("com.example.news")
    await other.subscribe("com.example.other")
    await caller.send(CALL, 1, {}, "com.example.add", [1, 2])
    await caller.send(PUBLISH, 2, {}, "com.example.news", ["hi"])
    assert server.metrics() == {
        "wamp_sessions": 3,
        "wamp_topics": 2,
        "wamp_subscriptions": 3,
        "wamp_registrations": 1,
        "wamp_publications": 1,
        "wamp_calls": 1,
    }
    await other.leave()  # its subscriptions go with it
    assert server.metrics()["wamp_subscriptions"] == 1
    assert server.metrics()["wamp_topics"] == 1
    await callee.leave()
    assert server.metrics()["wamp_registrations"] == 0
    assert server.metrics()["wamp_sessions"] == 1
