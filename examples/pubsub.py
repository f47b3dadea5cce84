"""Pub/sub with WAMP v2: browsers subscribe to topics, anyone with the secret publishes over HTTP.

    python examples/pubsub.py --port 8080

Serves, on one port:

* ``ws://HOST:PORT/ws``: a WAMP v2 router (``wamp.2.json``, ``wamp.2.msgpack``), realm
  ``realm1``, open to anonymous clients: AutobahnJS, Autobahn|Python or any WAMP client can
  subscribe, publish, register and call;
* ``POST /publish``: the HTTP publish endpoint, for web backends (see ``ratchetpy.client``);
  its secret comes from ``--secret`` or ``$RATCHETPY_PUBLISH_SECRET``, else a random one is
  made and printed;
* ``/``: a page that subscribes to a topic and shows what arrives; ``/health``.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from pathlib import Path

from ratchetpy import App, Page, StaticFiles, WampServer
from ratchetpy.wamp.publish import PublishEndpoint

HERE = Path(__file__).parent


def make_app(port: int = 8080, host: str = "127.0.0.1", *, secret: str) -> App:
    app = App("localhost", port, host)
    router = WampServer(realms=["realm1"])
    app.route("/", Page((HERE / "pubsub.html").read_text(encoding="utf-8")))
    app.route("/static/{path:path}", StaticFiles(HERE / "static"))
    # WAMP clients are not only browser pages from this origin: any origin may connect.
    app.route("/ws", router, allowed_origins=["*"])
    app.route("/publish", PublishEndpoint(router, secret=secret))
    app.route("/health", app.health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--secret", default=os.environ.get("RATCHETPY_PUBLISH_SECRET"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    secret = args.secret
    if not secret:
        secret = secrets.token_urlsafe(24)
        print(f"pubsub: publish secret (set RATCHETPY_PUBLISH_SECRET to choose): {secret}")
    print(
        f"pubsub: open http://{args.host}:{args.port}/ ; WAMP at ws://{args.host}:{args.port}/ws"
        " realm realm1",
        flush=True,
    )
    make_app(args.port, args.host, secret=secret).run()


if __name__ == "__main__":
    main()
