#!/usr/bin/env python3
"""The soak's other load processes: the first (``soak.py``) runs share 0 of the clients and
every sample; each of these runs one more share and tells the first how it goes.

Why more than one: a single Python process running 2,000 ``websockets`` clients, a fifth of
them over TLS, uses nearly all of a core, and once it is late by seconds its own clients'
timeouts fail them for its sake, not the server's (docs/performance.md, "Soak"). Its
garbage collector is what makes it late: a full collection walks every live object (about
190 per client), 160 ms for 1,000 clients on this machine, longer when it has to share a
core. With the load in four processes each holds a quarter of the clients, and the kernel
places them.

The protocol, on this process's stdout, one JSON object a line: ``{"status": {...}}`` every
second (clients live, opened, CPU time, unexpected endings so far, and the worst scheduling
delay and longest garbage-collection pause since the last one), then
``{"result": {...}}`` once its clients have left (:meth:`soak_load.Load.share_result`). A
process that exits otherwise, or without a result, fails the soak (``RuntimeError``): its
clients' endings would be unknown.

    python bench/soak_share.py --config CONFIG.json --index 1 --count 2 --start MONOTONIC
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import trio
from soak_config import Config
from soak_load import Load, freeze_heap

SCRIPT = Path(__file__).resolve()


def others(
    config: Config, ports: dict[str, int], cafile: Path, directory: Path
) -> Callable[[Load], Awaitable[None]]:
    """What ``Load.run`` runs beside the first process's clients: processes 1 .. n - 1,
    each started once the load starts and followed until it reports its result."""
    settings = directory / "soak-config.json"
    settings.write_text(json.dumps({"config": asdict(config), "ports": ports}))

    async def run(load: Load) -> None:
        started_at = time.monotonic() - (trio.current_time() - load.t0)
        async with trio.open_nursery() as nursery:
            for index in range(1, config.load_processes):
                command = [
                    sys.executable,
                    str(SCRIPT),
                    "--config",
                    str(settings),
                    "--ca",
                    str(cafile),
                    "--index",
                    str(index),
                    "--count",
                    str(config.load_processes),
                    "--start",
                    repr(started_at),
                ]
                nursery.start_soon(follow, load, index, command)

    return run


async def follow(load: Load, index: int, command: list[str]) -> None:
    """Run one load process and fold what it says into ``load``."""
    result: dict[str, Any] | None = None
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                command, stdout=subprocess.PIPE, check=False, task_status=task_status
            )
        )
        assert process.stdout is not None
        buffered = b""
        async for chunk in process.stdout:
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "status" in message:
                    load.note_remote(index, message["status"])
                else:
                    result = message["result"]
    if process.returncode != 0 or result is None:
        raise RuntimeError(
            f"load process {index} exited with {process.returncode}"
            f"{'' if result is not None else ' without a result'} (its stderr is above)"
        )
    load.merge_remote(index, result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One of the soak's other load processes.")
    parser.add_argument("--config", type=Path, required=True, help="written by soak.py")
    parser.add_argument("--ca", type=Path, required=True, help="the TLS server's CA (PEM)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--start", type=float, required=True, help="time.monotonic() of t0")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    settings = json.loads(args.config.read_text())
    config = Config.from_json(settings["config"])
    ports = settings["ports"]
    if hasattr(os, "sched_setaffinity"):
        # Inherited from the first process, which is pinned; this one goes where the kernel
        # finds room.
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    context = ssl.create_default_context(cafile=str(args.ca))
    load = Load(config, ports, ports["pid"], context, share=(args.index, args.count))

    def report(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    freeze_heap()
    trio.run(load.run_share, args.start, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
