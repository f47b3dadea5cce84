"""Chat over raw TCP, Ratchet's Hello World: try it with ``telnet 127.0.0.1 8080``.

    python examples/telnet_chat.py --port 8080

The same component interface as the WebSocket chat, without HttpServer and WsServer: what one
client types goes to every other connected client.
"""

from __future__ import annotations

import argparse
import logging

from ratchetpy import Connection, IoServer, MessageComponent

logger = logging.getLogger("telnet_chat")


class Chat(MessageComponent):
    def __init__(self) -> None:
        self.clients: set[Connection] = set()

    def on_open(self, conn: Connection) -> None:
        self.clients.add(conn)
        conn.send(f"Welcome #{conn.resource_id}! {len(self.clients) - 1} other(s) here.\r\n")
        logger.info("new connection #%d from %s", conn.resource_id, conn.remote_address)

    def on_message(self, sender: Connection, msg: bytes) -> None:
        others = len(self.clients) - 1
        logger.info(
            "connection #%d sending %r to %d other connection%s",
            sender.resource_id,
            msg,
            others,
            "" if others == 1 else "s",
        )
        for client in self.clients:
            if client is not sender:
                client.send(msg)

    def on_close(self, conn: Connection) -> None:
        self.clients.discard(conn)
        logger.info("connection #%d has disconnected", conn.resource_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    IoServer.factory(Chat(), args.port, args.host).run()


if __name__ == "__main__":
    main()
