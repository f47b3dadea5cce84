"""Chat room: a message from one client goes to every OTHER connected client.

    python examples/chat.py --port 8080
    python examples/chat.py --port 8080 --workers 4 --broker redis://127.0.0.1:6379/0

Open http://127.0.0.1:8080/ in two browser tabs. The page is served on the same port; its
script connects to ws://HOST:PORT/chat. The page's own origin is allowed to connect, pages
from other sites are not (403). ``/health`` answers with the server's status.

The room is a :class:`~ratchetpy.Group`, not a set: with ``--workers`` and a broker, the tabs
may be served by different processes (or hosts) and still share the room.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ratchetpy import App, Connection, Group, MessageComponent, Page

logger = logging.getLogger("chat")


class Chat(MessageComponent):
    def __init__(self) -> None:
        self.clients = Group("chat")

    async def on_open(self, conn: Connection) -> None:
        # Once join() returns, what is said on any worker reaches this client.
        await self.clients.join(conn)
        logger.info("new connection #%d from %s", conn.resource_id, conn.remote_address)

    def on_message(self, sender: Connection, msg: str | bytes) -> None:
        self.clients.send(msg, exclude=[sender])

    def on_close(self, conn: Connection) -> None:
        self.clients.discard(conn)
        logger.info("connection #%d has disconnected", conn.resource_id)

    def on_error(self, conn: Connection, exc: Exception) -> None:
        logger.error("an error has occurred: %s", exc)
        conn.close(1011, "internal error")


def make_app(port: int = 8080, host: str = "127.0.0.1", broker: str | None = None) -> App:
    page = Path(__file__).with_name("chat.html").read_text(encoding="utf-8")
    app = App("localhost", port, host, broker=broker)
    app.route("/", Page(page))
    app.route("/chat", Chat())
    app.route("/health", app.health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=None, help="worker processes")
    parser.add_argument("--broker", default=None, help="redis://... to share the room")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(process)d] %(name)s %(levelname)s %(message)s"
    )
    if args.workers is None:  # (workers run this again; the supervisor logs where it listens)
        print(f"chat: open http://{args.host}:{args.port}/ in two browser tabs", flush=True)
    make_app(args.port, args.host, args.broker).run(workers=args.workers)


if __name__ == "__main__":
    main()
