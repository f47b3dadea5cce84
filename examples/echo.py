"""Echo server: text comes back as text, binary as binary.

    python examples/echo.py --port 9001

Compression is on, and the limits are large enough for the whole Autobahn TestSuite (16 MiB
messages), which is what this server is run against. It is served through :class:`App`, so
the conformance run covers the routing, origin and limit layers too; any page may connect.
"""

from __future__ import annotations

import argparse
import logging

from ratchetpy import App, Connection, MessageComponent, WsServer


class Echo(MessageComponent):
    def on_message(self, conn: Connection, msg: str | bytes) -> None:
        conn.send(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = App(None, args.port, args.host, write_limit=64 * 2**20)
    echo = WsServer(Echo(), max_message_size=16 * 2**20, compression="deflate")
    # Every path, as Ratchet's plain stack and every peer's echo server answer.
    app.route("/{path:path}", echo, allowed_origins=["*"])
    app.run()


if __name__ == "__main__":
    main()
