"""Benchmark server: ratchetpy's WAMP v2 router.

``WsServer(WampServer(), compression=None)`` on 127.0.0.1:PORT: the plain default
``WampComponent`` (every subscription accepted, publications delivered by
``topic.broadcast``), realm ``realm1``, subprotocol ``wamp.2.json`` (the load generator
offers only that one), the same 4 MiB message limit as ``bench_ratchetpy.py``. The
``pubsub`` scenario of bench/run.py uses it; see bench/README.md.
"""

from __future__ import annotations

import argparse

from ratchetpy import HttpServer, IoServer, WsServer
from ratchetpy.wamp import WampServer

MAX_SIZE = 4 * 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["pubsub"], default="pubsub")
    args = parser.parse_args()
    ws = WsServer(WampServer(realms=["realm1"]), compression=None, max_message_size=MAX_SIZE)
    IoServer.factory(HttpServer(ws), args.port, address="127.0.0.1").run()


if __name__ == "__main__":
    main()
