"""WAMP calls across workers, without sockets: routers whose brokers are linked in process
(support.brokers). A procedure registered on one worker is registered for all of them, a call
from another worker reaches its callee and the answer comes back, and every way the callee or
the broker can go away answers the caller with a WAMP error instead of leaving it waiting.
(The same between real worker processes and Redis: test_real_workers.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ratchetpy.wamp import Procedure, WampComponent, WampConnection, WampServer
from ratchetpy.wamp.cluster_rpc import ClusterCall, ClusterReply, decode, rpc_channel
from ratchetpy.wamp.messages import (
    BROKER_UNAVAILABLE,
    CALL,
    CANCELED,
    ERROR,
    INVOCATION,
    LIMIT_EXCEEDED,
    NO_SUCH_PROCEDURE,
    PROCEDURE_ALREADY_EXISTS,
    REGISTER,
    RESULT,
    UNREGISTER,
    UNREGISTERED,
    YIELD,
)
from support.brokers import LinkedBrokers, serving
from support.wamp import Peer, Worker, error_of

ADD = "com.example.add"


@pytest.fixture
def links() -> LinkedBrokers:
    return LinkedBrokers(2)


@pytest.fixture
def workers(links: LinkedBrokers) -> tuple[Worker, Worker]:
    one, two = links.brokers
    return Worker(one), Worker(two)


async def callee_of(worker: Worker, procedure: str = ADD) -> Peer:
    callee = await worker.peer()
    await worker.send(callee, REGISTER, 1, {}, procedure)
    (registered,) = callee.take()
    assert registered[0] == 65, registered  # REGISTERED
    return callee


async def a_call_in_flight(one: Worker, two: Worker) -> tuple[Peer, Peer, int]:
    """A callee on ``two``, a caller on ``one`` whose call 7 the callee was invoked for: the
    callee, the caller and the invocation id."""
    callee = await callee_of(two)
    caller = await one.peer()
    await one.send(caller, CALL, 7, {}, ADD, [1])
    return callee, caller, invocation(callee)[1]


def invocation(callee: Peer) -> list[Any]:
    (message,) = callee.take()
    assert message[0] == INVOCATION, message
    return message


def test_calls_and_answers_travel_as_json_and_anything_else_is_refused() -> None:
    call = ClusterCall(3, "w1", ADD, 42, [1, b"\x00\xff"], {"n": 2**70})
    assert decode(call.encode()) == call
    for reply in [ClusterReply(3, None, [5], {}), ClusterReply(4, CANCELED, ["gone"], {"a": 1})]:
        assert decode(reply.encode()) == reply
    for body, why in [
        (b"\xff", "not a WAMP call"),
        (b"[2, 1, 1]", "of this version"),
        (b"[1, 2, 0, [], {}]", "without a reference"),
        (b'[1, 1, 1, 7, "p", 1, [], {}]', "without a worker"),
        (b'[1, 1, 1, "w", "p", 0, [], {}]', "registration id"),
        (b"[1, 2, 1, {}, {}]", "not a list and a dict"),
        (b"[1, 3, 1, 5, [], {}]", "without an error URI"),
        (b"[1, 9, 1, [], {}]", "neither"),
    ]:
        with pytest.raises(ValueError, match=why):
            decode(body)


async def test_a_call_reaches_the_callee_on_the_other_worker_and_its_answers_come_back(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    callee = await callee_of(two)
    caller = await one.peer()

    binary = "\u0000AQ=="  # b"\x01" in WAMP's JSON
    await one.send(caller, CALL, 7, {}, ADD, [2, 3], {"b": binary})
    _, invocation_id, registration_id, details, args, kwargs = invocation(callee)
    assert (args, kwargs, details) == ([2, 3], {"b": binary}, {})
    await two.send(callee, YIELD, invocation_id, {}, [5])
    assert caller.take() == [[RESULT, 7, {}, [5]]]

    await one.send(caller, CALL, 8, {}, ADD, [1])
    invocation_id = invocation(callee)[1]
    await two.send(callee, ERROR, INVOCATION, invocation_id, {}, "com.example.odd", ["no"])
    assert caller.take() == [[ERROR, CALL, 8, {}, "com.example.odd", ["no"]]]
    assert registration_id == callee.conn.realm.procedures.registration_id_of(ADD)  # type: ignore[union-attr]


async def test_a_procedure_registered_on_one_worker_cannot_be_registered_on_another(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    callee = await callee_of(one)
    rival = await two.peer()
    await two.send(rival, REGISTER, 1, {}, ADD)
    assert error_of(rival.take_one()) == (REGISTER, 1, PROCEDURE_ALREADY_EXISTS)

    registration_id = callee.conn.realm.procedures.registration_id_of(ADD)  # type: ignore[union-attr]
    await one.send(callee, UNREGISTER, 2, registration_id)
    assert callee.take() == [[UNREGISTERED, 2]]
    await two.send(rival, REGISTER, 3, {}, ADD)  # free again, for any worker
    assert rival.take_one()[:2] == [65, 3]


async def test_a_callee_leaving_with_a_call_of_the_other_worker_cancels_that_call(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    callee, caller, _ = await a_call_in_flight(one, two)
    with serving(two.broker):
        await callee.leave()
    assert error_of(caller.take_one()) == (CALL, 7, CANCELED)

    rival = await one.peer()  # its registration went with it
    await one.send(rival, REGISTER, 1, {}, ADD)
    assert rival.take_one()[:2] == [65, 1]


async def test_a_call_whose_callees_worker_dies_fails_instead_of_hanging(
    links: LinkedBrokers, workers: tuple[Worker, Worker]
) -> None:
    one, two = workers
    _, caller, _ = await a_call_in_flight(one, two)
    links.kill(two.broker.worker_id)  # SIGKILL: no goodbye, only the registry knows
    (error,) = caller.take()
    assert error_of(error) == (CALL, 7, CANCELED) and "worker" in error[5][0]

    await one.send(caller, CALL, 8, {}, ADD, [1])  # its registration died with it
    assert error_of(caller.take_one()) == (CALL, 8, NO_SUCH_PROCEDURE)
    rival = await one.peer()
    await one.send(rival, REGISTER, 1, {}, ADD)
    assert rival.take_one()[:2] == [65, 1]


async def test_a_worker_that_does_not_listen_any_more_is_not_waited_for(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    await callee_of(two)
    caller = await one.peer()
    two.broker.handlers.pop(rpc_channel("realm1", two.broker.worker_id))  # lost its Redis
    await one.send(caller, CALL, 7, {}, ADD, [1])
    (error,) = caller.take()
    assert error_of(error) == (CALL, 7, NO_SUCH_PROCEDURE) and "does not listen" in error[5][0]


async def test_the_broker_being_down_is_a_visible_error_for_calls_and_registrations(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    await callee_of(two)
    caller = await one.peer()
    one.broker.down = True
    await one.send(caller, CALL, 7, {}, ADD, [1])
    assert error_of(caller.take_one()) == (CALL, 7, BROKER_UNAVAILABLE)
    await one.send(caller, REGISTER, 8, {}, "com.example.other")
    assert error_of(caller.take_one()) == (REGISTER, 8, BROKER_UNAVAILABLE)
    assert "com.example.other" not in one.server.realm().procedures
    one.broker.down = False
    await one.send(caller, REGISTER, 9, {}, "com.example.other")  # nothing was kept
    assert caller.take_one()[:2] == [65, 9]


async def test_answers_lost_by_the_broker_fail_the_calls_waiting_for_them(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    callee, caller, invocation_id = await a_call_in_flight(one, two)
    one.server._missed(rpc_channel("realm1", one.broker.worker_id))  # it reconnected
    assert error_of(caller.take_one()) == (CALL, 7, BROKER_UNAVAILABLE)
    await two.send(callee, YIELD, invocation_id, {}, [2])  # too late: dropped
    assert caller.take() == []


async def test_an_answer_for_a_caller_that_left_is_dropped(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    callee, caller, invocation_id = await a_call_in_flight(one, two)
    await caller.leave()
    await two.send(callee, YIELD, invocation_id, {}, [2])
    assert caller.ws.take() == [] and callee.take() == []


async def test_the_callees_limit_of_calls_in_flight_holds_for_callers_of_other_workers(
    links: LinkedBrokers,
) -> None:
    one = Worker(links.brokers[0])
    two = Worker(links.brokers[1], WampServer(max_pending_calls=1))
    callee = await callee_of(two)
    caller = await one.peer()
    await one.send(caller, CALL, 7, {}, ADD, [1])
    await one.send(caller, CALL, 8, {}, ADD, [2])
    assert error_of(caller.take_one()) == (CALL, 8, LIMIT_EXCEEDED)
    assert len(callee.take()) == 1


class Routing(WampComponent):
    """An ``on_call`` that checks the caller, then routes the call without returning what
    ``procedure.call`` gave (a plain Ratchet-style handler)."""

    def on_call(
        self,
        conn: WampConnection,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        procedure.call(conn, call_id, args, kwargs)


async def test_an_on_call_that_drops_what_procedure_call_returned_still_reaches_the_callee(
    links: LinkedBrokers,
) -> None:
    one = Worker(links.brokers[0], WampServer(Routing()))
    two = Worker(links.brokers[1])
    callee = await callee_of(two)
    caller = await one.peer()
    await one.send(caller, CALL, 7, {}, ADD, [1])
    await two.send(callee, YIELD, invocation(callee)[1], {}, [2])
    assert caller.take() == [[RESULT, 7, {}, [2]]]


async def test_a_body_on_the_workers_channel_that_is_no_call_is_dropped_and_logged(
    workers: tuple[Worker, Worker], caplog: pytest.LogCaptureFixture
) -> None:
    one, two = workers
    await callee_of(two)
    await one.peer()
    with caplog.at_level(logging.WARNING, logger="ratchetpy.wamp"):
        one.broker.publish_nowait(rpc_channel("realm1", two.broker.worker_id), b"[1, 9]")
    assert "dropped a message of realm realm1" in caplog.text


async def test_an_unregister_the_broker_did_not_take_is_answered_and_logged(
    workers: tuple[Worker, Worker], caplog: pytest.LogCaptureFixture
) -> None:
    one, _ = workers
    callee = await callee_of(one)
    registration_id = callee.conn.realm.procedures.registration_id_of(ADD)  # type: ignore[union-attr]
    one.broker.down = True
    with caplog.at_level(logging.WARNING, logger="ratchetpy.wamp"):
        await one.send(callee, UNREGISTER, 2, registration_id)
    assert callee.take() == [[UNREGISTERED, 2]]
    assert f"could not release {ADD}" in caplog.text
    one.broker.down = False
    await one.send(callee, REGISTER, 3, {}, ADD)  # this worker may take its own again
    assert callee.take_one()[:2] == [65, 3]


async def test_a_key_this_worker_still_owns_without_a_callee_is_no_procedure_not_a_hang(
    workers: tuple[Worker, Worker],
) -> None:
    one, _ = workers
    caller = await one.peer()
    with serving(one.broker):
        assert await one.broker.acquire("wamp-procedure:realm1:" + ADD, b"17")  # stale
    await one.send(caller, CALL, 7, {}, ADD, [1])
    assert error_of(caller.take_one()) == (CALL, 7, NO_SUCH_PROCEDURE)
