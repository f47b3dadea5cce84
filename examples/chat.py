"""Chat room: a message from one client goes to every OTHER connected client.

    python examples/chat.py --port 8080

Open http://127.0.0.1:8080/ in two browser tabs. The page is served on the same port; its
script connects to ws://HOST:PORT/chat. The page's own origin is allowed to connect, pages
from other sites are not (403). ``/health`` answers with the server's status.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ratchetpy import App, Connection, MessageComponent, Page

logger = logging.getLogger("chat")


class Chat(MessageComponent):
    def __init__(self) -> None:
        self.clients: set[Connection] = set()

    def on_open(self, conn: Connection) -> None:
        self.clients.add(conn)
        logger.info("new connection #%d from %s", conn.resource_id, conn.remote_address)

    def on_message(self, sender: Connection, msg: str | bytes) -> None:
        for client in self.clients:
            if client is not sender:
                client.send(msg)

    def on_close(self, conn: Connection) -> None:
        self.clients.discard(conn)
        logger.info("connection #%d has disconnected", conn.resource_id)

    def on_error(self, conn: Connection, exc: Exception) -> None:
        logger.error("an error has occurred: %s", exc)
        conn.close(1011, "internal error")


def make_app(port: int = 8080, host: str = "127.0.0.1") -> App:
    page = Path(__file__).with_name("chat.html").read_text(encoding="utf-8")
    app = App("localhost", port, host)
    app.route("/", Page(page))
    app.route("/chat", Chat())
    app.route("/health", app.health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(f"chat: open http://{args.host}:{args.port}/ in two browser tabs", flush=True)
    make_app(args.port, args.host).run()


if __name__ == "__main__":
    main()
