"""Benchmark server: ratchetpy.

Echo or broadcast on 127.0.0.1:PORT, compression off, 4 MiB message limit.
Uses `ratchetpy.broadcast(conns, msg)` (frame encoded once) when the package
provides it.  Run by bench/run.py; see bench/README.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from ratchetpy import HttpServer, IoServer, MessageComponent, WsServer

try:
    from ratchetpy import broadcast as _broadcast
except ImportError:  # older ratchetpy: send to each connection
    _broadcast = None

MAX_SIZE = 4 * 2**20


class Echo(MessageComponent):
    def on_message(self, conn: Any, msg: Any) -> None:
        conn.send(msg)


class Broadcast(MessageComponent):
    def __init__(self) -> None:
        self.clients: set[Any] = set()

    def on_open(self, conn: Any) -> None:
        self.clients.add(conn)

    def on_close(self, conn: Any) -> None:
        self.clients.discard(conn)

    def on_message(self, conn: Any, msg: Any) -> None:
        if _broadcast is not None:
            _broadcast(self.clients, msg)
        else:
            for client in self.clients:
                client.send(msg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["echo", "broadcast"], default="echo")
    args = parser.parse_args()
    component = Echo() if args.scenario == "echo" else Broadcast()
    ws = WsServer(component, compression=None, max_message_size=MAX_SIZE)
    IoServer.factory(HttpServer(ws), args.port, address="127.0.0.1").run()


if __name__ == "__main__":
    main()
