"""Benchmark server: picows (asyncio, Cython).

Echo or broadcast on 127.0.0.1:PORT, no compression (picows has none), automatic pongs, 4 MiB
frame limit. picows hands over frames, not messages: the load generators send every message as
one frame, so echoing frames echoes messages. Run by bench/wsload_run.py; ``pip install picows``.
"""

from __future__ import annotations

import argparse
import asyncio

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

MAX_SIZE = 4 * 2**20
CLIENTS: set[WSTransport] = set()


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())


class Relay(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            payload = frame.get_payload_as_bytes()
            for client in CLIENTS:
                client.send(frame.msg_type, payload)


async def main(port: int, scenario: str) -> None:
    listener = Echo if scenario == "echo" else Relay

    def factory(request: WSUpgradeRequest) -> WSListener:
        return listener()

    server = await ws_create_server(
        factory, "127.0.0.1", port, max_frame_size=MAX_SIZE, backlog=4096
    )
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scenario", choices=["echo", "broadcast"], default="echo")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.scenario))
