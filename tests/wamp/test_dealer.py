"""The dealer (dealer.py) on the wire, driven directly by support.wamp's Peer: REGISTER and
UNREGISTER, CALL routed to the callee as INVOCATION, YIELD and ERROR routed back, who may
answer, callers and callees leaving mid-call, the registration and pending-call limits, and
arguments one serializer cannot carry."""

from __future__ import annotations

from ratchetpy.wamp import LIMIT_EXCEEDED, WampServer
from ratchetpy.wamp.messages import (
    CALL,
    CANCELED,
    CLOSE_NORMAL,
    ERROR,
    GOODBYE,
    GOODBYE_AND_OUT,
    INVALID_ARGUMENT,
    INVALID_URI,
    INVOCATION,
    NO_SUCH_PROCEDURE,
    NO_SUCH_REGISTRATION,
    PROCEDURE_ALREADY_EXISTS,
    PROTOCOL_VIOLATION,
    REGISTER,
    RESULT,
    UNREGISTER,
    UNREGISTERED,
    YIELD,
)
from support.wamp import (
    MSGPACK,
    TOO_BIG_FOR_MSGPACK,
    Peer,
    Recorder,
    assert_abort,
    error_of,
    joined,
)


def pending_calls(peer: Peer) -> int:
    """The invocations the realm's dealer holds for ``peer``'s session (as its callee)."""
    realm = peer.conn.realm
    assert realm is not None
    return int(realm.procedures.pending_calls(peer.conn))


# -- registering -------------------------------------------------------------------------------


async def test_invalid_uri_in_register_and_call_are_errors() -> None:
    peer = Peer(WampServer())
    await peer.join()
    await peer.send(REGISTER, 1, {}, "a b")
    assert error_of(peer.take_one()) == (REGISTER, 1, INVALID_URI)
    await peer.send(CALL, 2, {}, "a#b")
    assert error_of(peer.take_one()) == (CALL, 2, INVALID_URI)
    assert not peer.ws.closed


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


async def test_max_registrations() -> None:
    server = WampServer(max_registrations=1)
    (peer,) = await joined(server, 1)
    await peer.register("a")
    await peer.send(REGISTER, 9, {}, "b")
    assert error_of(peer.take_one()) == (REGISTER, 9, LIMIT_EXCEEDED)
    assert "b" not in server.realm().procedures


# -- calling -----------------------------------------------------------------------------------


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


# -- sessions ending mid-call ------------------------------------------------------------------


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
