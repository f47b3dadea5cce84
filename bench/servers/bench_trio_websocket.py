"""Benchmark server: `trio-websocket` (wsproto + trio).

Echo or broadcast on 127.0.0.1:PORT, no compression (trio-websocket offers
none), 4 MiB message limit, trio's default receive size (64 KiB) instead of
the library's 4 KiB default.  Run by bench/run.py; see bench/README.md.
"""

from __future__ import annotations

import argparse
from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

MAX_SIZE = 4 * 2**20
CLIENTS: set[WebSocketConnection] = set()


async def echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        pass


async def relay(request: WebSocketRequest) -> None:
    ws = await request.accept()
    CLIENTS.add(ws)
    try:
        while True:
            msg = await ws.get_message()
            for client in list(CLIENTS):
                try:
                    await client.send_message(msg)
                except ConnectionClosed:
                    CLIENTS.discard(client)
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["echo", "broadcast"], default="echo")
    args = parser.parse_args()
    handler = echo if args.scenario == "echo" else relay
    trio.run(
        partial(
            serve_websocket,
            handler,
            "127.0.0.1",
            args.port,
            ssl_context=None,
            max_message_size=MAX_SIZE,
            receive_buffer_size=None,
        )
    )


if __name__ == "__main__":
    main()
