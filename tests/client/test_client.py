"""ratchetpy.client against our router over real sockets: the blocking HTTP publisher (from
worker threads, as a Flask or Django view would call it), the trio one-shot, and the trio WAMP
session (publish, subscribe, call, register, leave), checked with the independent `websockets`
client and, for interoperability, with an Autobahn|Python (asyncio) client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from websockets.trio.client import ClientConnection, connect

from ratchetpy import App, Connection, MessageComponent, RatchetError, WsServer
from ratchetpy.client import (
    CallResult,
    Publisher,
    PublishError,
    SessionClosed,
    WampCallError,
    WampRequestError,
    apublish,
    open_session,
    publish,
    sign,
)
from ratchetpy.components.auth import Authenticate
from ratchetpy.exceptions import WampError
from ratchetpy.wamp import WampComponent, WampServer
from ratchetpy.wamp.publish import PublishEndpoint

SECRET = "client-secret-0123456789abcdef"
TOKENS = {"tok-alice": "alice"}


class Server:
    def __init__(self, app: App, wamp: WampServer, port: int) -> None:
        self.app = app
        self.wamp = wamp
        self.port = port
        self.ws = f"ws://127.0.0.1:{port}/ws"
        self.publish_url = f"http://127.0.0.1:{port}/publish"


Serve = Callable[..., Awaitable[Server]]


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[Serve]:
    async def start(component: WampComponent | None = None, **options: Any) -> Server:
        options.setdefault("secret", SECRET)
        app = App(None, 0, "127.0.0.1")
        wamp = WampServer(component)
        app.route("/ws", wamp)
        app.route("/ws-auth", Authenticate.tokens(WsServer(wamp), TOKENS))
        app.route("/publish", PublishEndpoint(wamp, **options))
        port: int = await nursery.start(app.serve)
        return Server(app, wamp, port)

    yield start


@asynccontextmanager
async def raw_subscriber(port: int, topic: str) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """A wamp.2.json subscriber on the `websockets` client; yields ``next_event()``."""
    url = f"ws://127.0.0.1:{port}/ws"
    async with connect(url, subprotocols=["wamp.2.json"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps([1, "realm1", {"roles": {"subscriber": {}}}]))
        assert json.loads(await ws.recv())[0] == 2
        await ws.send(json.dumps([32, 1, {}, topic]))
        subscribed = json.loads(await ws.recv())
        assert subscribed[:2] == [33, 1]

        async def next_event(conn: ClientConnection = ws) -> Any:
            with trio.fail_after(5):
                event = json.loads(await conn.recv())
            assert event[:2] == [36, subscribed[2]], event
            return event

        yield next_event


class Inbox:
    """A handler that queues what it is called with."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[tuple[Any, ...], dict[str, Any]]](
            100
        )

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.send.send_nowait((args, kwargs))

    async def next(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        with trio.fail_after(5):
            return await self.receive.receive()


# -- signing and the blocking publisher -----------------------------------------------------


def test_sign_matches_the_documented_scheme() -> None:
    body = b'{"topic":"t"}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(body, "k" * 16, timestamp=1_700_000_000) == {
        "X-Ratchetpy-Timestamp": "1700000000",
        "X-Ratchetpy-Signature": f"sha256={expected}",
    }
    assert sign(body, b"k" * 16, timestamp=1_700_000_000) == sign(
        body, "k" * 16, timestamp=1_700_000_000
    )
    assert sign(body, "k" * 16)["X-Ratchetpy-Timestamp"].isdigit()


async def test_blocking_publish_from_worker_threads(serve: Serve) -> None:
    server = await serve()
    url = server.publish_url
    async with raw_subscriber(server.port, "com.example.record.42") as next_event:
        # The one-liner of the docs, called from a worker thread as a web view would be.
        result = await trio.to_thread.run_sync(
            lambda: publish(url, "com.example.record.42", {"title": "x"}, secret=SECRET)
        )
        assert result["receivers"] == 1
        assert await next_event() == [36, ANY_ID, result["id"], {}, [{"title": "x"}]]

        # Several threads at once, each with its own connection.
        results: list[dict[str, Any]] = []

        async def one(i: int) -> None:
            results.append(
                await trio.to_thread.run_sync(
                    lambda: publish(url, "com.example.record.42", i, secret=SECRET, auth="hmac")
                )
            )

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
        events = [await next_event() for _ in range(8)]
        assert sorted(event[4][0] for event in events) == list(range(8))
        assert {event[2] for event in events} == {result["id"] for result in results}


async def test_identical_publications_in_one_second_are_both_delivered(serve: Serve) -> None:
    # The endpoint refuses a signed request it accepted before; the client's random nonce
    # keeps a deliberate repeat (same topic, same payload, same second) from looking like one.
    server = await serve()
    url = server.publish_url
    async with raw_subscriber(server.port, "com.example.news") as next_event:
        for _ in range(2):
            await trio.to_thread.run_sync(
                lambda: publish(url, "com.example.news", "again", secret=SECRET)
            )
        await apublish(url, "com.example.news", "again", secret=SECRET)
        events = [await next_event() for _ in range(3)]
        assert [event[4] for event in events] == [["again"]] * 3


class _AnyId:
    def __eq__(self, other: object) -> bool:
        return type(other) is int and 1 <= other <= 2**53


ANY_ID: Any = _AnyId()


async def test_publisher_keeps_its_settings(serve: Serve) -> None:
    server = await serve(auth="either")
    async with raw_subscriber(server.port, "com.example.news") as next_event:
        publisher = Publisher(server.publish_url, secret=SECRET, timeout=5)

        def send() -> list[dict[str, Any]]:
            return [
                publisher.publish("com.example.news", 1, 2, colour="red"),
                publisher.publish("com.example.news", options={"exclude_authid": ["x"]}),
                Publisher(server.publish_url, secret=SECRET, auth="bearer").publish(
                    "com.example.news", "bearer"
                ),
            ]

        results = await trio.to_thread.run_sync(send)
        assert [r["receivers"] for r in results] == [1, 1, 1]
        assert await next_event() == [36, ANY_ID, results[0]["id"], {}, [1, 2], {"colour": "red"}]
        assert await next_event() == [36, ANY_ID, results[1]["id"], {}]
        assert (await next_event())[4] == ["bearer"]


async def test_publish_errors(serve: Serve) -> None:
    server = await serve()
    url = server.publish_url

    def fails(*args: Any, **kwargs: Any) -> PublishError:
        with pytest.raises(PublishError) as caught:
            publish(*args, **kwargs)
        return caught.value

    def check() -> None:
        error = fails(url, "com.example.news", secret="wrong-secret-0123456789")
        assert isinstance(error, RatchetError)
        assert (error.status, error.error) == (401, "bad_signature")
        assert error.reason == "the signature does not match"
        assert str(error) == "HTTP 401: the signature does not match"
        error = fails(url, "com..news", secret=SECRET)
        assert (error.status, error.error) == (400, "invalid_topic")
        error = fails(url, "t", secret=SECRET, options={"eligible": "alice"})
        assert (error.status, error.error) == (400, "invalid_options")
        # Not the endpoint: the router's plain-text answer becomes the reason.
        error = fails(f"http://127.0.0.1:{server.port}/nope", "t", secret=SECRET)
        assert error.status == 404 and "no route for /nope" in error.reason
        assert error.error is None
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            free = closed.getsockname()[1]
        error = fails(f"http://127.0.0.1:{free}/publish", "t", secret=SECRET)
        assert error.status is None and "no answer from" in error.reason
        with pytest.raises(ValueError, match="http:// or https://"):
            publish(f"ws://127.0.0.1:{server.port}/ws", "t", secret=SECRET)
        with pytest.raises(ValueError, match="not JSON compliant"):
            publish(url, "t", float("nan"), secret=SECRET)
        with pytest.raises(ValueError, match="auth must be"):
            Publisher(url, secret=SECRET, auth="none")  # type: ignore[arg-type]

    await trio.to_thread.run_sync(check)


async def test_apublish_over_http_and_websocket(serve: Serve) -> None:
    server = await serve()
    async with raw_subscriber(server.port, "com.example.news") as next_event:
        result = await apublish(server.publish_url, "com.example.news", 1, secret=SECRET)
        assert result["receivers"] == 1
        assert await next_event() == [36, ANY_ID, result["id"], {}, [1]]
        result = await apublish(server.ws, "com.example.news", 2, kwargs={"k": "v"})
        assert result == {"id": ANY_ID}
        assert await next_event() == [36, ANY_ID, result["id"], {}, [2], {"k": "v"}]

    with pytest.raises(PublishError) as caught:
        await apublish(server.publish_url, "t", secret="wrong-secret-0123456789")
    assert (caught.value.status, caught.value.error) == (401, "bad_signature")
    with pytest.raises(PublishError) as caught:
        await apublish(server.ws, "t", realm="nowhere")
    assert isinstance(caught.value.__cause__, SessionClosed)
    assert caught.value.__cause__.uri == "wamp.error.no_such_realm"
    with pytest.raises(ValueError, match="secret"):
        await apublish(server.publish_url, "t")
    with pytest.raises(ValueError, match="URL"):
        await apublish(f"ftp://127.0.0.1:{server.port}/", "t", secret=SECRET)

    # A server that accepts the connection and never answers.
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(PublishError, match=r"no answer .* within 0\.2 s"):
        await apublish(f"http://127.0.0.1:{port}/publish", "t", secret=SECRET, timeout=0.2)
    await listeners[0].aclose()


# -- the trio WAMP session ------------------------------------------------------------------


async def test_subscribe_and_publish(serve: Serve) -> None:
    server = await serve()
    inbox = Inbox()
    async with open_session(server.ws) as alice, open_session(server.ws, "realm1") as bob:
        assert alice.session_id != bob.session_id and alice.authid is None
        assert alice.details["roles"]["broker"]
        subscription = await alice.subscribe("com.example.news", inbox)
        assert subscription.topic == "com.example.news" and subscription.id > 0

        publication = await bob.publish("com.example.news", "hi", 2, acknowledge=True, a=1)
        assert type(publication) is int
        assert await inbox.next() == (("hi", 2), {"a": 1})
        assert await bob.publish("com.example.news", "no ack") is None
        assert await inbox.next() == (("no ack",), {})
        # A publisher does not get its own events, unless it asks.
        await alice.publish("com.example.news", "mine", acknowledge=True)
        await alice.publish("com.example.news", "me too", options={"exclude_me": False})
        assert await inbox.next() == (("me too",), {})
        # What the web application publishes over HTTP arrives the same way.
        result = await apublish(server.publish_url, "com.example.news", {"id": 7}, secret=SECRET)
        assert await inbox.next() == (({"id": 7},), {})
        assert result["receivers"] == 1

        with pytest.raises(ValueError, match="topic must be a WAMP URI"):
            await bob.publish("com.example..news")
        with pytest.raises(WampRequestError) as caught:
            await bob.publish("t", acknowledge=True, options={"exclude": "x"})
        assert caught.value.error == "wamp.error.invalid_argument"


async def test_events_are_handled_in_order_by_async_handlers(serve: Serve) -> None:
    server = await serve()
    seen: list[int] = []
    done = trio.Event()

    async def handler(i: int) -> None:
        await trio.sleep(0)  # a checkpoint: later events must still wait their turn
        seen.append(i)
        if i == 49:
            done.set()

    async with open_session(server.ws) as alice, open_session(server.ws) as bob:
        await alice.subscribe("t", handler)
        for i in range(50):
            await bob.publish("t", i)
        with trio.fail_after(5):
            await done.wait()
    assert seen == list(range(50))


async def test_unsubscribe(serve: Serve) -> None:
    server = await serve()

    async def receivers() -> int:
        result = await apublish(server.publish_url, "t", "x", secret=SECRET)
        return int(result["receivers"])

    first, second = Inbox(), Inbox()
    async with open_session(server.ws) as session:
        one = await session.subscribe("t", first)
        two = await session.subscribe("t", second)
        assert one.id == two.id  # the router's one subscription for the topic
        assert await receivers() == 1
        assert await first.next() == await second.next() == (("x",), {})
        await one.unsubscribe()
        assert await receivers() == 1  # still subscribed through the second handler
        assert await second.next() == (("x",), {})
        await two.unsubscribe()
        assert await receivers() == 0
        await two.unsubscribe()  # again: nothing to do
        assert first.receive.statistics().current_buffer_used == 0


async def test_call_and_register(serve: Serve) -> None:
    server = await serve()

    async def slow_add(a: int, b: int) -> int:
        await trio.sleep(0)
        return a + b

    def sold_out(item: str) -> None:
        raise WampCallError("com.example.error.sold_out", [f"no {item} left"], {"item": item})

    def crash() -> None:
        raise ValueError("secret internals")

    def refuse() -> None:
        raise WampError("wamp.error.not_authorized", "members only")

    async with open_session(server.ws) as callee, open_session(server.ws) as caller:
        registration = await callee.register("com.example.add", lambda a, b: a + b)
        assert registration.procedure == "com.example.add"
        await callee.register("com.example.slow_add", slow_add)
        await callee.register("com.example.none", lambda: None)
        await callee.register("com.example.multi", lambda: CallResult(1, 2, unit="cm"))
        await callee.register("com.example.list", lambda: [1, 2])
        await callee.register("com.example.kw", lambda **kw: CallResult(**kw))
        await callee.register("com.example.sold_out", sold_out)
        await callee.register("com.example.crash", crash)
        await callee.register("com.example.refuse", refuse)

        assert await caller.call("com.example.add", 2, 3) == 5
        assert await caller.call("com.example.slow_add", 2, b=5) == 7
        assert await caller.call("com.example.none") is None
        assert await caller.call("com.example.multi") == CallResult(1, 2, unit="cm")
        assert await caller.call("com.example.list") == [1, 2]
        assert await caller.call("com.example.kw", x=1) == CallResult(x=1)
        with pytest.raises(WampCallError) as caught:
            await caller.call("com.example.sold_out", "tea")
        error = caught.value
        assert error.error == "com.example.error.sold_out"
        assert (error.error_args, error.error_kwargs) == (["no tea left"], {"item": "tea"})
        with pytest.raises(WampCallError) as caught:
            await caller.call("com.example.crash")
        assert caught.value.error == "wamp.error.runtime_error"
        assert caught.value.error_args == ["internal error"]  # the callee's details stay home
        with pytest.raises(WampCallError) as caught:
            await caller.call("com.example.refuse")
        assert caught.value.error == "wamp.error.not_authorized"
        with pytest.raises(WampCallError) as caught:
            await caller.call("com.example.nothing")
        assert caught.value.error == "wamp.error.no_such_procedure"

        with pytest.raises(WampRequestError) as refused:
            await caller.register("com.example.add", lambda a, b: 0)
        assert refused.value.error == "wamp.error.procedure_already_exists"
        assert not isinstance(refused.value, WampCallError)
        await registration.unregister()
        with pytest.raises(WampCallError, match="no_such_procedure"):
            await caller.call("com.example.add", 1, 1)
        await caller.register("com.example.add", lambda a, b: a * b)  # free again
        assert await caller.call("com.example.add", 3, 3) == 9

        # A result the serializer cannot carry: the caller hears why, the callee goes on.
        await callee.register("com.example.set", lambda: {1, 2})
        with pytest.raises(WampCallError) as caught:
            await caller.call("com.example.set")
        assert caught.value.error == "wamp.error.invalid_argument"
        assert "cannot be sent" in caught.value.error_args[0]
        assert await caller.call("com.example.slow_add", 1, 1) == 2


async def test_invocations_run_concurrently_and_calls_can_be_cancelled(serve: Serve) -> None:
    server = await serve()
    started = 0
    both_started = trio.Event()
    gate = trio.Event()

    async def wait(x: int) -> int:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await gate.wait()
        return x

    async with open_session(server.ws) as callee, open_session(server.ws) as caller:
        await callee.register("com.example.wait", wait)
        results: list[int] = []
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:

                async def call(x: int) -> None:
                    results.append(await caller.call("com.example.wait", x))

                nursery.start_soon(call, 1)
                nursery.start_soon(call, 2)
                await both_started.wait()  # two invocations at once: one task each
                gate.set()
        assert sorted(results) == [1, 2]

        # A cancelled call is abandoned; its late answer is ignored and the session goes on.
        gate = trio.Event()
        started = 1
        with trio.CancelScope() as scope:

            async def cancel_when_started() -> None:
                await both_started.wait()
                scope.cancel()

            both_started = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_started)
                await caller.call("com.example.wait", 3)
        assert scope.cancelled_caught
        gate.set()
        await callee.register("com.example.echo", lambda x: x)
        assert await caller.call("com.example.echo", "after") == "after"


async def test_leaving_says_goodbye(serve: Serve) -> None:
    server = await serve()
    async with open_session(server.ws) as session:
        assert list(server.wamp.sessions) == [session.session_id]
        await session.subscribe("t", print)
    # The router answered our GOODBYE after forgetting the session.
    assert server.wamp.sessions == {}
    assert session.closed
    with pytest.raises(SessionClosed):
        await session.publish("t")
    with pytest.raises(SessionClosed):
        await session.call("com.example.x")


async def test_errors_in_the_block_come_out_unwrapped(serve: Serve) -> None:
    server = await serve()
    with pytest.raises(KeyError, match="mine"):
        async with open_session(server.ws):
            raise KeyError("mine")
    assert server.wamp.sessions == {}  # left cleanly all the same

    # Cancelled from outside (even in the middle of a call): still a clean GOODBYE.
    with trio.move_on_after(0.05) as scope:
        async with open_session(server.ws) as session:
            await session.register("com.example.forever", trio.sleep_forever)
            await session.call("com.example.forever")
    assert scope.cancelled_caught
    assert server.wamp.sessions == {}


async def test_a_failing_handler_ends_the_session_with_its_exception(serve: Serve) -> None:
    server = await serve()

    def handler(x: int) -> None:
        raise ZeroDivisionError(x)

    async with open_session(server.ws) as publisher:
        with pytest.raises(ZeroDivisionError):
            async with open_session(server.ws) as session:
                await session.subscribe("t", handler)
                await publisher.publish("t", 1, acknowledge=True)
                await trio.sleep_forever()  # cancelled when the handler fails
        assert list(server.wamp.sessions) == [publisher.session_id]


async def test_router_shutdown_ends_the_session(serve: Serve) -> None:
    server = await serve()
    with pytest.raises(SessionClosed) as caught:
        async with open_session(server.ws) as session:
            await session.subscribe("t", print)
            server.app.shutdown()
            await trio.sleep_forever()
    assert caught.value.uri == "wamp.close.system_shutdown"


async def test_refusals_when_opening(serve: Serve) -> None:
    server = await serve()
    with pytest.raises(SessionClosed) as caught:
        async with open_session(server.ws, "nowhere"):
            pass
    assert caught.value.uri == "wamp.error.no_such_realm"
    assert "no realm 'nowhere'" in str(caught.value)
    with pytest.raises(SessionClosed) as caught:
        async with open_session(f"ws://127.0.0.1:{server.port}/nope"):
            pass
    assert caught.value.status == 404 and "no route for /nope" in str(caught.value)
    with pytest.raises(SessionClosed) as caught:
        async with open_session(f"ws://127.0.0.1:{server.port}/ws-auth"):
            pass
    assert caught.value.status == 401
    with pytest.raises(ValueError, match="ws:// or wss://"):
        async with open_session(server.publish_url):
            pass
    with pytest.raises(ValueError, match="serializer"):
        async with open_session(server.ws, serializer="xml"):  # type: ignore[arg-type]
            pass
    assert server.wamp.sessions == {}


async def test_authenticated_session_and_eligible_authid(serve: Serve) -> None:
    server = await serve()
    url = f"ws://127.0.0.1:{server.port}/ws-auth"
    alice_inbox, anonymous_inbox = Inbox(), Inbox()
    async with (
        open_session(url, headers=[("Authorization", "Bearer tok-alice")]) as alice,
        open_session(server.ws) as anonymous,
    ):
        assert alice.authid == "alice" and anonymous.authid is None
        await alice.subscribe("t", alice_inbox)
        await anonymous.subscribe("t", anonymous_inbox)
        result = await apublish(
            server.publish_url,
            "t",
            "private",
            secret=SECRET,
            options={"eligible_authid": ["alice"]},
        )
        assert result["receivers"] == 1
        await apublish(server.publish_url, "t", "public", secret=SECRET)
        assert await alice_inbox.next() == (("private",), {})
        assert await alice_inbox.next() == (("public",), {})
        assert await anonymous_inbox.next() == (("public",), {})


async def test_msgpack_session_and_binary_payloads(serve: Serve) -> None:
    server = await serve()
    inbox = Inbox()
    async with (
        open_session(server.ws, serializer="msgpack") as binary,
        open_session(server.ws) as text,
    ):
        await binary.subscribe("t", inbox)
        await text.register("com.example.reverse", lambda data: data[::-1])
        # bytes travel as WAMP's base64 strings in JSON and natively in msgpack.
        await text.publish("t", b"\x00\x01\xff", acknowledge=True, name="caf\u00e9")
        assert await inbox.next() == ((b"\x00\x01\xff",), {"name": "caf\u00e9"})
        assert await binary.call("com.example.reverse", b"abc") == b"cba"


async def test_autobahn_interoperates_with_the_trio_session(serve: Serve) -> None:
    """Autobahn|Python (asyncio, in a worker thread) and our trio session on one router."""
    pytest.importorskip("autobahn")
    server = await serve()
    ready = trio.Event()
    report: dict[str, Any] = {}

    def run_autobahn() -> None:
        from autobahn.asyncio.wamp import ApplicationSession, ComponentConfig
        from autobahn.asyncio.websocket import WampWebSocketClientFactory

        async def main() -> None:
            loop = asyncio.get_running_loop()
            left: asyncio.Future[None] = loop.create_future()

            class Peer(ApplicationSession):
                async def onJoin(self, details: Any) -> None:
                    await self.register(lambda a, b: a * b, "com.example.mul")

                    def on_ping(*args: Any, **kwargs: Any) -> None:
                        report["ping"] = (args, kwargs)
                        self.leave()

                    await self.subscribe(on_ping, "com.example.ping")
                    report["echo"] = await self.call("com.example.echo", "hi", n=2)
                    trio.from_thread.run_sync(ready.set)

                def onDisconnect(self) -> None:
                    if not left.done():
                        left.set_result(None)

            factory = WampWebSocketClientFactory(
                lambda: Peer(ComponentConfig("realm1")), url=server.ws
            )
            transport, _ = await loop.create_connection(factory, "127.0.0.1", server.port)
            try:
                await asyncio.wait_for(left, 10)
            finally:
                transport.close()

        asyncio.run(main())

    async with open_session(server.ws) as session:
        await session.register("com.example.echo", lambda x, n: CallResult(x * n, n=n))
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, run_autobahn)
                await ready.wait()
                assert await session.call("com.example.mul", 6, 7) == 42
                await session.publish("com.example.ping", 1, acknowledge=True, colour="red")
    assert report["ping"] == ((1,), {"colour": "red"})
    echo = report["echo"]  # autobahn's CallResult
    assert (list(echo.results), echo.kwresults) == (["hihi"], {"n": 2})


class FakeRouter(MessageComponent):
    """Welcomes any HELLO, then misbehaves when the client publishes ``what``."""

    subprotocols = ("wamp.2.json",)

    def __init__(self) -> None:
        self.received: list[Any] = []

    def on_message(self, conn: Connection, msg: Any) -> None:
        message = json.loads(msg)
        self.received.append(message)
        if message[0] == 1:
            conn.send(json.dumps([2, 12345, {"roles": {"broker": {}}}]))
        elif message[0] == 16:
            what = message[4][0]
            if what == "garbage":
                conn.send(json.dumps([36, "not an id", 1, {}]))
            elif what == "unknown":
                conn.send(json.dumps([99, 1]))
            elif what == "drop":
                conn.close(1011, "router exploded")
            elif what == "abort":
                conn.send(json.dumps([3, {}, "com.example.kicked"]))


@pytest.mark.parametrize(
    ("what", "uri", "code"),
    [
        ("garbage", "wamp.error.protocol_violation", 1006),
        ("unknown", "wamp.error.protocol_violation", 1006),
        ("drop", None, 1011),
        ("abort", "com.example.kicked", 1006),
    ],
)
async def test_a_misbehaving_router_ends_the_session(
    nursery: trio.Nursery, what: str, uri: str | None, code: int
) -> None:
    fake = FakeRouter()
    app = App(None, 0, "127.0.0.1")
    app.route("/ws", fake)
    port = await nursery.start(app.serve)
    with pytest.raises(SessionClosed) as caught:
        async with open_session(f"ws://127.0.0.1:{port}/ws") as session:
            assert session.session_id == 12345
            await session.publish("t", what)
            with trio.fail_after(5):
                await trio.sleep_forever()  # cancelled when the session ends
    assert caught.value.uri == uri
    if uri is None:
        assert (caught.value.code, caught.value.reason) == (code, "router exploded")
    if uri == "wamp.error.protocol_violation":
        # The client told the router why before closing.
        assert fake.received[-1][0] == 3 and fake.received[-1][2] == uri
