"""The WAMP router against the real Autobahn|Python client (asyncio), no patches or flags.

The server runs in a trio thread (``ServerThread``); each test drives Autobahn sessions in an
asyncio loop in the test thread, bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

from ratchetpy.exceptions import WampError
from ratchetpy.io.redis_broker import RedisBroker
from ratchetpy.wamp import WampComponent, WampConnection
from ratchetpy.wamp.messages import NOT_AUTHORIZED
from support.redis import RedisProcess
from support.wamp_threads import TIMEOUT, ServerThread, serve_wamp

pytest.importorskip("txaio")

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from support.autobahn import join, run


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with serve_wamp() as running:
        yield running


def test_publish_reaches_json_and_msgpack_subscribers(server: ServerThread) -> None:
    async def scenario() -> None:
        json_sub = await join(server.port)
        msgpack_sub = await join(server.port, serializer="msgpack")
        publisher = await join(server.port)
        got: asyncio.Queue[tuple[str, tuple[Any, ...], dict[str, Any]]] = asyncio.Queue()

        def on_event(name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: got.put_nowait((name, args, kwargs))

        await json_sub.subscribe(on_event("json"), "com.example.news")
        await msgpack_sub.subscribe(on_event("msgpack"), "com.example.news")
        await publisher.subscribe(on_event("publisher"), "com.example.news")

        publication = await publisher.publish(
            "com.example.news",
            "hello",
            b"\x00\xffbinary",
            {"nested": [1, 2.5, None, True]},
            by="bob",
            options=PublishOptions(acknowledge=True),
        )
        assert isinstance(publication.id, int)
        received = {}
        for _ in range(2):
            name, args, kwargs = await asyncio.wait_for(got.get(), TIMEOUT)
            received[name] = (args, kwargs)
        expected = (("hello", b"\x00\xffbinary", {"nested": [1, 2.5, None, True]}), {"by": "bob"})
        assert received == {"json": expected, "msgpack": expected}

        # The publisher is left out by default; exclude_me=False includes it.
        await publisher.publish(
            "com.example.news", 2, options=PublishOptions(acknowledge=True, exclude_me=False)
        )
        names = set()
        for _ in range(3):
            name, args, _kwargs = await asyncio.wait_for(got.get(), TIMEOUT)
            assert args == (2,)
            names.add(name)
        assert names == {"json", "msgpack", "publisher"}
        assert got.empty()
        for session in (json_sub, msgpack_sub, publisher):
            await session.leave()

    run(scenario())


def test_unsubscribe_stops_events(server: ServerThread) -> None:
    async def scenario() -> None:
        subscriber = await join(server.port)
        publisher = await join(server.port, serializer="msgpack")
        got: asyncio.Queue[Any] = asyncio.Queue()
        subscription = await subscriber.subscribe(got.put_nowait, "com.example.ticks")
        await publisher.publish("com.example.ticks", 1, options=PublishOptions(acknowledge=True))
        assert await asyncio.wait_for(got.get(), TIMEOUT) == 1
        await subscription.unsubscribe()
        await publisher.publish("com.example.ticks", 2, options=PublishOptions(acknowledge=True))
        # A round trip after the publication: had event 2 been sent, it would be here by now.
        await subscriber.subscribe(got.put_nowait, "com.example.other")
        await publisher.publish("com.example.other", 3, options=PublishOptions(acknowledge=True))
        assert await asyncio.wait_for(got.get(), TIMEOUT) == 3
        assert server.run_in_server(lambda: len(server.wamp.realm().topics)) == 1
        await subscriber.leave()
        await publisher.leave()

    run(scenario())


def test_calls_reach_the_registered_callee(server: ServerThread) -> None:
    async def scenario() -> None:
        callee = await join(server.port, serializer="msgpack")
        caller = await join(server.port)

        def add(a: int, b: int, *, scale: int = 1) -> int:
            return (a + b) * scale

        def fail() -> None:
            raise ApplicationError("com.example.error.sold_out", "none left", item=42)

        registration = await callee.register(add, "com.example.add")
        await callee.register(fail, "com.example.fail")
        assert await caller.call("com.example.add", 2, 3) == 5
        assert await caller.call("com.example.add", 2, 3, scale=10) == 50

        with pytest.raises(ApplicationError) as refused:
            await caller.call("com.example.fail")
        assert refused.value.error == "com.example.error.sold_out"
        assert refused.value.args == ("none left",)
        assert refused.value.kwargs == {"item": 42}

        with pytest.raises(ApplicationError) as taken:
            await caller.register(add, "com.example.add")
        assert taken.value.error == "wamp.error.procedure_already_exists"

        await registration.unregister()
        with pytest.raises(ApplicationError) as missing:
            await caller.call("com.example.add", 1, 1)
        assert missing.value.error == "wamp.error.no_such_procedure"
        await callee.leave()
        await caller.leave()

    run(scenario())


def test_callee_leaving_cancels_its_pending_calls(server: ServerThread) -> None:
    async def scenario() -> None:
        callee = await join(server.port)
        caller = await join(server.port, serializer="msgpack")
        invoked = asyncio.Event()

        async def never_answers() -> None:
            invoked.set()
            await asyncio.Event().wait()

        await callee.register(never_answers, "com.example.slow")
        call = asyncio.ensure_future(caller.call("com.example.slow"))
        await asyncio.wait_for(invoked.wait(), TIMEOUT)
        callee.disconnect()  # the transport goes away without a GOODBYE
        with pytest.raises(ApplicationError) as cancelled:
            await asyncio.wait_for(call, TIMEOUT)
        assert cancelled.value.error == "wamp.error.canceled"
        await caller.leave()

    run(scenario())


class Guarded(WampComponent):
    """Per-topic authorization and a Ratchet-style procedure answered by the server."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def on_open(self, conn: WampConnection) -> None:
        self.events.put(("open", conn.session_id))

    def on_subscribe(self, conn: WampConnection, topic: Any) -> None:
        if topic.id.startswith("com.example.private."):
            raise WampError(NOT_AUTHORIZED, f"{topic.id} is private")

    def on_publish(
        self,
        conn: WampConnection,
        topic: Any,
        event: Any,
        exclude: list[int],
        eligible: list[int] | None,
    ) -> None:
        if topic.id.startswith("com.example.readonly."):
            raise WampError(NOT_AUTHORIZED, "read only")
        topic.broadcast(event, exclude, eligible)

    async def on_call(
        self,
        conn: WampConnection,
        call_id: int,
        procedure: Any,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        if procedure.id == "com.example.echo":
            await trio.sleep(0)  # an async handler: the session's next request waits for it
            conn.call_result(call_id, {"args": args, "kwargs": kwargs, "you": conn.session_id})
        elif procedure.id == "com.example.broken":
            raise RuntimeError("bug in the handler")
        else:
            procedure.call(conn, call_id, args, kwargs)

    def on_error(self, conn: WampConnection, exc: Exception) -> None:
        self.events.put(("error", repr(exc)))

    def on_close(self, conn: WampConnection) -> None:
        self.events.put(("close", conn.session_id))


def test_component_authorizes_and_answers_calls() -> None:
    component = Guarded()
    with serve_wamp(component) as server:

        async def scenario() -> None:
            session = await join(server.port)
            details = await session.joined
            assert component.events.get(timeout=TIMEOUT) == ("open", details.session)

            with pytest.raises(ApplicationError) as refused:
                await session.subscribe(print, "com.example.private.ledger")
            assert refused.value.error == NOT_AUTHORIZED
            assert refused.value.args == ("com.example.private.ledger is private",)

            with pytest.raises(ApplicationError) as read_only:
                await session.publish(
                    "com.example.readonly.prices", 1, options=PublishOptions(acknowledge=True)
                )
            assert read_only.value.error == NOT_AUTHORIZED

            answer = await session.call("com.example.echo", 1, "two", three=3)
            assert answer == {"args": [1, "two"], "kwargs": {"three": 3}, "you": details.session}

            with pytest.raises(ApplicationError) as broken:
                await session.call("com.example.broken")
            assert broken.value.error == "wamp.error.runtime_error"
            assert component.events.get(timeout=TIMEOUT) == (
                "error",
                "RuntimeError('bug in the handler')",
            )

            with pytest.raises(ApplicationError) as missing:
                await session.call("com.example.nobody")
            assert missing.value.error == "wamp.error.no_such_procedure"
            await session.leave()
            assert component.events.get(timeout=TIMEOUT) == ("close", details.session)

        run(scenario())


def test_unknown_realm_is_aborted(server: ServerThread) -> None:
    async def scenario() -> None:
        session = await join(server.port, realm="com.example.nope")
        details = await asyncio.wait_for(session.left, TIMEOUT)
        assert details.reason == "wamp.error.no_such_realm"
        assert "com.example.nope" in details.message
        await asyncio.wait_for(session.disconnected, TIMEOUT)

    run(scenario())


def test_leave_is_answered_with_goodbye(server: ServerThread) -> None:
    async def scenario() -> None:
        session = await join(server.port)
        await session.leave("wamp.close.normal", "done for today")
        details = await asyncio.wait_for(session.left, TIMEOUT)
        assert details.reason == "wamp.close.goodbye_and_out"
        assert server.run_in_server(lambda: len(server.wamp.sessions)) == 0

    run(scenario())


def test_server_publish_and_shutdown_goodbye() -> None:
    with serve_wamp() as server:

        async def scenario() -> None:
            session = await join(server.port, serializer="msgpack")
            got: asyncio.Queue[Any] = asyncio.Queue()
            await session.subscribe(
                lambda *args, **kwargs: got.put_nowait((args, kwargs)), "com.example.alerts"
            )
            receivers = server.run_in_server(
                lambda: server.wamp.publish("com.example.alerts", ["disk full"], {"level": 3})
            )
            assert receivers == 1
            assert await asyncio.wait_for(got.get(), TIMEOUT) == (("disk full",), {"level": 3})

            # Shut the server down from its own thread; the session hears GOODBYE first.
            server.app.call_soon_threadsafe(server.app.shutdown)
            details = await asyncio.wait_for(session.left, TIMEOUT)
            assert details.reason == "wamp.close.system_shutdown"

        run(scenario())


# -- two workers sharing a real redis-server -------------------------------------------------


@pytest.fixture
def workers(redis: RedisProcess) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Two routers, each an App with its own RedisBroker: two workers of one server."""
    with (
        serve_wamp(broker=RedisBroker(redis.url, worker_id="a", buffer_time=0.3)) as a,
        serve_wamp(broker=RedisBroker(redis.url, worker_id="b", buffer_time=0.3)) as b,
    ):
        yield a, b


def test_publications_reach_subscribers_on_every_worker_with_their_filters(
    workers: tuple[ServerThread, ServerThread],
) -> None:
    a, b = workers

    async def scenario() -> None:
        here = await join(a.port)
        there = await join(b.port, serializer="msgpack")
        publisher = await join(a.port)
        got: asyncio.Queue[tuple[str, tuple[Any, ...], int]] = asyncio.Queue()

        def on_event(name: str) -> Callable[..., None]:
            def handler(*args: Any, details: Any) -> None:
                got.put_nowait((name, args, details.publication))

            return handler

        from autobahn.wamp.types import SubscribeOptions

        options = SubscribeOptions(details_arg="details")
        await here.subscribe(on_event("here"), "com.example.news", options=options)
        # SUBSCRIBED came once worker b listens to the topic in Redis: what a publishes next
        # reaches it.
        await there.subscribe(on_event("there"), "com.example.news", options=options)
        await publisher.subscribe(on_event("publisher"), "com.example.news", options=options)

        async def events(count: int) -> dict[str, list[Any]]:
            by_name: dict[str, list[Any]] = {}
            for _ in range(count):
                name, args, publication = await asyncio.wait_for(got.get(), TIMEOUT)
                by_name.setdefault(name, []).append((args, publication))
            return by_name

        acked = PublishOptions(acknowledge=True)
        published = await publisher.publish("com.example.news", "hi", b"\x00\xff", options=acked)
        received = await events(2)
        assert received == {  # the same event, the same publication id, on both workers
            "here": [(("hi", b"\x00\xff"), published.id)],
            "there": [(("hi", b"\x00\xff"), published.id)],
        }
        there_id = there._session_id
        here_id = here._session_id
        await publisher.publish(
            "com.example.news",
            "not there",
            options=PublishOptions(acknowledge=True, exclude=[there_id]),
        )
        await publisher.publish(
            "com.example.news",
            "only there",
            options=PublishOptions(acknowledge=True, eligible=[there_id]),
        )
        await publisher.publish(
            "com.example.news",
            "me too",
            options=PublishOptions(acknowledge=True, exclude_me=False, exclude=[here_id]),
        )
        received = await events(4)
        assert {name: [args for args, _ in got_] for name, got_ in received.items()} == {
            "here": [("not there",)],
            "there": [("only there",), ("me too",)],
            "publisher": [("me too",)],
        }
        # One publisher's events arrive at the other worker in the order it published them.
        for n in range(50):
            publisher.publish("com.example.news", n)
        received = await events(100)
        assert [args for args, _ in received["there"]] == [(n,) for n in range(50)]
        assert [args for args, _ in received["here"]] == [(n,) for n in range(50)]
        assert got.empty()
        for session in (here, there, publisher):
            await session.leave()

    run(scenario())


def test_while_redis_is_down_acknowledged_publications_and_new_subscriptions_fail_visibly(
    workers: tuple[ServerThread, ServerThread], redis: RedisProcess
) -> None:
    a, _ = workers

    async def scenario() -> None:
        subscriber = await join(a.port)
        publisher = await join(a.port)
        got: asyncio.Queue[Any] = asyncio.Queue()
        await subscriber.subscribe(got.put_nowait, "com.example.news")
        redis.process.kill()
        redis.process.wait()
        with pytest.raises(ApplicationError) as refused:
            await publisher.publish(
                "com.example.news", "acked", options=PublishOptions(acknowledge=True)
            )
        assert refused.value.error == "ratchetpy.error.broker_unavailable"
        assert "reached this worker's subscribers only" in refused.value.args[0]
        assert await asyncio.wait_for(got.get(), TIMEOUT) == "acked"  # local delivery goes on
        with pytest.raises(ApplicationError) as not_subscribed:
            await subscriber.subscribe(got.put_nowait, "com.example.other")
        assert not_subscribed.value.error == "ratchetpy.error.broker_unavailable"
        for session in (subscriber, publisher):
            await session.leave()

    run(scenario())
