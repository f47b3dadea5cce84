"""The server of the soak test (bench/soak.py): one process, one trio run, two ``App``\\ s.

A plain one and a TLS one (``--certfile``/``--keyfile``, written by the soak script with a
throwaway ``trustme`` CA), both on ``127.0.0.1`` with ``port=0``, serving the same component
instances:

* ``/chat/{room}``: a chat room per name, a :class:`~ratchetpy.Group` each; every message goes
  to every member of the room, sender included (plain and TLS members alike). A group is
  dropped when its last member leaves and made again by the next one to join.
* ``/echo``: echoes each message; the message ``boom`` makes the handler raise, so the default
  ``on_error`` logs it and closes the connection with 1011.
* ``/wamp``: a :class:`~ratchetpy.WampServer` (realm ``realm1``), the default component.
* ``/metrics``: each app's own Prometheus metrics; the plain app also serves the TLS app's at
  ``/metrics/tls``, so that the soak script scrapes both servers over plain HTTP.
* ``/debug/rooms`` (plain app): what each chat room was sent so far, in characters and
  messages, and for each of the soak's slow consumers (they join with ``?slow=ID``) the
  bytes queued for it and whether it is closing (they look once theirs went over the write
  limit and their room was sent one more message); ``/debug/state``:
  open descriptors and connections (both servers) counted in the same instant.
* ``/debug/objects`` and ``/debug/trim`` (plain app): the objects the garbage collector
  tracks, by type, and RSS before and after ``malloc_trim(0)`` (see :func:`objects`,
  :func:`trim`); the soak script asks for them once idle, and once every client has left.

A small ``--write-limit`` (default 256 KiB) closes slow consumers with 1008 soon. Once both
listen it prints one JSON line to stdout: ``{"plain": PORT, "tls": PORT, "pid": PID}``.
SIGTERM or SIGINT shut both down gracefully (1001 to every WebSocket); the process exits 0
once both have stopped. Warnings and errors are logged to stderr (the soak script keeps them
in a file and checks them).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import signal
import sys
from collections import Counter
from typing import Any

import trio

from ratchetpy import App, Connection, Group, HttpRequest, MessageComponent, WampServer


class Chat(MessageComponent):
    """Rooms of members: whatever one member sends, every member of its room gets."""

    def __init__(self) -> None:
        self.rooms: dict[str, Group] = {}
        #: Characters sent to each room since the start (reported, for the record).
        self.sent: Counter[str] = Counter()
        #: Messages sent to each room since the start: a slow consumer whose queue crossed
        #: the write limit is closed by the next message its room is sent, not before.
        self.messages: Counter[str] = Counter()
        #: The soak's slow consumers (``?slow=ID``) still open, by that ID: what the server has
        #: queued for each is how the client knows the server must have given up on it.
        self.slow: dict[str, Connection] = {}

    @staticmethod
    def _room(conn: Connection) -> str:
        request = conn.http_request
        assert request is not None
        return str(request.path_params["room"])

    @staticmethod
    def _slow_id(conn: Connection) -> str | None:
        request = conn.http_request
        assert request is not None
        query = request.query
        return query[len("slow=") :] if query.startswith("slow=") else None

    def on_open(self, conn: Connection) -> None:
        slow_id = self._slow_id(conn)
        if slow_id is not None:
            self.slow[slow_id] = conn
        name = self._room(conn)
        group = self.rooms.get(name)
        if group is None:
            group = self.rooms[name] = Group(f"soak-room-{name}")
        group.add(conn)

    def on_message(self, conn: Connection, msg: Any) -> None:
        name = self._room(conn)
        group = self.rooms.get(name)
        if group is not None:
            group.send(msg)
            self.sent[name] += len(msg)
            self.messages[name] += 1

    def on_close(self, conn: Connection) -> None:
        slow_id = self._slow_id(conn)
        if slow_id is not None:
            self.slow.pop(slow_id, None)
        name = self._room(conn)
        group = self.rooms.get(name)
        if group is None:
            return
        group.discard(conn)
        if not len(group):
            del self.rooms[name]


class Echo(MessageComponent):
    """Echo; ``boom`` raises (the default ``on_error`` closes with 1011)."""

    def on_message(self, conn: Connection, msg: Any) -> None:
        if msg == "boom":
            raise RuntimeError("boom (the soak test's handler error, expected)")
        conn.send(msg)


def objects(request: HttpRequest) -> dict[str, Any]:
    """``/debug/objects``: the objects the garbage collector tracks, by type (after a full
    collection), and the server's groups: what the soak compares before and after the load."""
    gc.collect()
    everything = gc.get_objects()
    counts = Counter(type(obj).__qualname__ for obj in everything)
    # For what should be gone once every client left: who holds the first few still alive.
    held: dict[str, list[list[str]]] = {}
    for obj in everything:
        name = type(obj).__qualname__
        if name in HELD and len(held.setdefault(name, [])) < 3:
            held[name].append(_referrers(obj, everything))
    return {"total": sum(counts.values()), "by_type": dict(counts.most_common()), "held": held}


#: Types of which none should be left once every client has gone.
HELD = ("TcpConnection", "TlsConnection", "WsConnection", "WampConnection", "socket", "MemoryBIO")


def _referrers(obj: object, everything: list[object], depth: int = 3) -> list[str]:
    """A chain of what refers to ``obj`` (type names, innermost first), for the report."""
    chain: list[str] = []
    skip = {id(everything), id(sys._getframe())}
    current = obj
    for _ in range(depth):
        referrers = gc.get_referrers(current)
        skip.add(id(referrers))
        found = [ref for ref in referrers if id(ref) not in skip]
        if not found:
            break
        current = found[0]
        label = type(current).__qualname__
        code = getattr(current, "cr_code", None) or getattr(current, "f_code", None)
        if code is not None:
            label += f" {code.co_name}"
        chain.append(label)
    return chain


def trim(request: HttpRequest) -> dict[str, Any]:
    """``/debug/trim``: RSS before and after ``gc.collect()`` and glibc's ``malloc_trim(0)``
    (how much of the RSS is memory the allocator keeps for reuse, not memory in use)."""

    def rss() -> int:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    gc.collect()
    trimmed = False
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
            trimmed = True
    return {"before": before, "after": rss(), "malloc_trim": trimmed}


def build(args: argparse.Namespace) -> tuple[App, App]:
    options: dict[str, Any] = {
        "write_limit": args.write_limit,
        "close_timeout": args.close_timeout,
    }
    plain = App("localhost", 0, "127.0.0.1", **options)
    secure = App(
        "localhost", 0, "127.0.0.1", certfile=args.certfile, keyfile=args.keyfile, **options
    )
    chat, echo, wamp = Chat(), Echo(), WampServer()

    def rooms(request: HttpRequest) -> dict[str, Any]:
        return {
            "sent": dict(chat.sent),
            "messages": dict(chat.messages),
            "queued": {
                slow_id: (conn.buffered_amount, conn.closed) for slow_id, conn in chat.slow.items()
            },
        }

    for app in (plain, secure):
        app.route("/chat/{room}", chat)
        app.route("/echo", echo)
        app.route("/wamp", wamp)
        app.route("/metrics", app.metrics)
    plain.route("/metrics/tls", secure.metrics)
    plain.route("/debug/rooms", rooms)

    def state(request: HttpRequest) -> dict[str, Any]:
        connections = plain.server.connection_count + secure.server.connection_count
        return {"fds": len(os.listdir("/proc/self/fd")), "connections": connections}

    plain.route("/debug/state", state)
    plain.route("/debug/objects", objects)
    plain.route("/debug/trim", trim)
    return plain, secure


async def serve(plain: App, secure: App) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            ports = {
                "plain": await nursery.start(plain.serve),
                "tls": await nursery.start(secure.serve),
                "pid": os.getpid(),
            }
            print(json.dumps(ports), flush=True)

            async def on_signals() -> None:
                async for signum in signals:
                    logging.getLogger("soak").info("%s: shutting down", signal.Signals(signum))
                    plain.shutdown()
                    secure.shutdown()
                    return

            # The nursery ends when both serve() tasks have returned, which they do once
            # their graceful shutdown is done (the signal watcher returned before).
            nursery.start_soon(on_signals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--write-limit", type=int, default=256 * 1024)
    parser.add_argument("--close-timeout", type=float, default=10.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    plain, secure = build(args)
    trio.run(serve, plain, secure)


if __name__ == "__main__":
    main()
