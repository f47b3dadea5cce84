"""Autobahn|Python (asyncio) sessions for the tests: a real, independent WAMP client.
``run(scenario())`` drives them in an asyncio loop of the test's thread, bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import txaio

txaio.use_asyncio()

from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer  # noqa: E402
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails  # noqa: E402

from support.wamp_threads import TIMEOUT  # noqa: E402


class Session(ApplicationSession):  # type: ignore[misc]
    """An Autobahn session that reports join and leave through futures."""

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[SessionDetails] = loop.create_future()
        self.left: asyncio.Future[CloseDetails] = loop.create_future()
        self.disconnected: asyncio.Future[None] = loop.create_future()

    async def onJoin(self, details: SessionDetails) -> None:
        self.joined.set_result(details)

    async def onLeave(self, details: CloseDetails) -> None:
        if not self.left.done():
            self.left.set_result(details)
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(f"not joined: {details.reason}"))
        self.disconnect()

    def onDisconnect(self) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(None)


async def join(port: int, *, serializer: str = "json", realm: str = "realm1") -> Session:
    chosen = JsonSerializer() if serializer == "json" else MsgPackSerializer()
    loop = asyncio.get_running_loop()
    # Autobahn makes the session once the WebSocket handshake is done.
    created: asyncio.Future[Session] = loop.create_future()

    def make() -> Session:
        session = Session(ComponentConfig(realm))
        created.set_result(session)
        return session

    factory = WampWebSocketClientFactory(
        make, url=f"ws://127.0.0.1:{port}/ws", serializers=[chosen]
    )
    await loop.create_connection(factory, "127.0.0.1", port)
    session = await asyncio.wait_for(created, TIMEOUT)
    with contextlib.suppress(RuntimeError):  # not joined: the caller looks at session.left
        await asyncio.wait_for(asyncio.shield(session.joined), TIMEOUT)
    return session


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 4 * TIMEOUT))
