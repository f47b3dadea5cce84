"""Benchmark server: ratchetpy's Group, in one process or many workers sharing a Redis.

Broadcast on 127.0.0.1:PORT at /broadcast: every message a client sends goes to every member
of one Group (the sender included, as the load generator's broadcast mode expects), on every
worker. Compression off. Run by bench/scale_out.py; see bench/README.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from ratchetpy import App, Group, MessageComponent, WsServer


class Room(MessageComponent):
    def __init__(self) -> None:
        self.members = Group("bench")

    async def on_open(self, conn: Any) -> None:
        await self.members.join(conn)

    def on_close(self, conn: Any) -> None:
        self.members.discard(conn)

    def on_message(self, conn: Any, msg: Any) -> None:
        self.members.send(msg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker", default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    app = App(None, args.port, "127.0.0.1", broker=args.broker, max_connections=None)
    app.route("/broadcast", WsServer(Room(), compression=None), allowed_origins=["*"])
    app.run(workers=args.workers)


if __name__ == "__main__":
    main()
