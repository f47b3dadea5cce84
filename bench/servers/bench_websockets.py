"""Benchmark server: `websockets` (asyncio implementation).

Echo or broadcast on 127.0.0.1:PORT, compression off, keepalive pings off,
4 MiB message limit.  Run by bench/run.py; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

MAX_SIZE = 4 * 2**20
CLIENTS: set[ServerConnection] = set()


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


async def relay(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            broadcast(CLIENTS, msg)
    finally:
        CLIENTS.discard(ws)


async def main(port: int, scenario: str) -> None:
    handler = echo if scenario == "echo" else relay
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        max_size=MAX_SIZE,
        ping_interval=None,
        backlog=4096,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["echo", "broadcast"], default="echo")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.scenario))
