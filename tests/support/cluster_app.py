"""What the workers' tests serve with ``ratchetpy serve cluster_app:...``: a room that spans
workers and tells each client which process serves it."""

from __future__ import annotations

import json
import os
from typing import Any

from ratchetpy import (
    App,
    Authenticate,
    Connection,
    Group,
    HttpRequest,
    MessageComponent,
    WsServer,
    broadcast,
)
from ratchetpy.broker import PresenceEvent
from ratchetpy.wamp import (
    Procedure,
    PublishEndpoint,
    WampComponent,
    WampConnection,
    WampServer,
)


class Room(MessageComponent):
    """Everyone in one :class:`~ratchetpy.Group`; a client's first message says
    ``{"pid": ...}`` once it is a member of the whole group."""

    def __init__(self) -> None:
        self.members = Group("room")

    async def on_open(self, conn: Connection) -> None:
        await self.members.join(conn)
        conn.send(json.dumps({"pid": os.getpid()}))

    def on_message(self, sender: Connection, msg: str | bytes) -> None:
        self.members.send(msg, exclude=[sender])

    def on_close(self, conn: Connection) -> None:
        self.members.discard(conn)


def broken_in_workers() -> Room:
    """A Room in the supervisor, and an error in every worker: a worker that cannot start."""
    if "RATCHETPY_WORKER" in os.environ:
        raise RuntimeError("this worker cannot start")
    return Room()


def make_app() -> App:
    """The Room at ``/`` and every worker's statistics at ``/stats``."""
    app = App(None, 0, "127.0.0.1")
    app.route("/", Room())
    app.route("/stats", app.cluster_stats)
    return app


#: The publish endpoint's secret in the workers' tests.
PUBLISH_SECRET = "the workers' tests' publish secret"


#: The procedure the router answers itself, on the worker the caller is on: its pid.
PID = "cluster.pid"


class Pids(WampComponent):
    """A router that answers ``cluster.pid`` on every worker and routes every other call."""

    def on_call(
        self,
        conn: WampConnection,
        call_id: int,
        procedure: Procedure,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        if procedure.id == PID:
            conn.call_result(call_id, os.getpid())
            return None
        return procedure.call(conn, call_id, args, kwargs)


def wamp_app() -> App:
    """A WAMP router at ``/ws`` (any origin; ``cluster.pid`` says which worker serves the
    caller) and its publish endpoint at ``/publish``."""
    app = App(None, 0, "127.0.0.1")
    wamp = WampServer(Pids())
    app.route("/ws", wamp, allowed_origins=["*"])
    app.route("/publish", PublishEndpoint(wamp, secret=PUBLISH_SECRET))
    return app


class WhoIsHere(MessageComponent):
    """A room that tells its members who came online or went offline, on any worker, and
    answers ``who`` with the users in it and the members it has everywhere."""

    def __init__(self) -> None:
        self.room = Group("who-is-here")
        self.room.on_presence(self.told)

    async def on_open(self, conn: Connection) -> None:
        await self.room.join(conn)
        conn.send(json.dumps({"pid": os.getpid()}))

    async def on_message(self, conn: Connection, msg: str | bytes) -> None:
        if msg == "who":
            users, count = sorted(await self.room.users()), await self.room.count()
            conn.send(json.dumps({"users": users, "count": count}))

    def on_close(self, conn: Connection) -> None:
        self.room.discard(conn)

    def told(self, event: PresenceEvent) -> None:
        if event.kind in ("online", "offline"):
            broadcast(self.room, json.dumps({event.kind: event.user}))  # this worker's members


def user_in_query(request: HttpRequest) -> str | None:
    """The test's "authentication": ``?user=NAME``."""
    return request.query_params.get("user", [None])[0]


def presence_app() -> App:
    """:class:`WhoIsHere` at ``/``, each client the user its URL names."""
    app = App(None, 0, "127.0.0.1")
    app.route("/", Authenticate(WsServer(WhoIsHere()), user_in_query))
    return app
