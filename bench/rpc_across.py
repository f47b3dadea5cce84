"""What a WAMP call to a callee on another worker costs, beside one on the caller's worker.

    python3 bench/rpc_across.py                  # 2,000 calls each way, 3 rounds
    python3 bench/rpc_across.py --calls 500 --rounds 1

A supervisor with two workers serves bench/servers/bench_ratchetpy_rpc.py through a
redis-server of its own. ratchetpy.client sessions (in this process) are placed on the
workers: a callee on worker A, one caller on A (local) and one on B (across workers, through
Redis). Each caller makes sequential calls (one in flight): the round trip's p50 / p99 as
the caller sees it, and the CPU both workers spent per call (from /proc, summed), with
Redis' CPU per call beside it. Medians of the rounds.

Needs redis-server and the project's .venv (ratchetpy, trio, hiredis).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from scale_out import cpu_seconds, free_port, start_redis  # (bench/: the same directory)

from ratchetpy.client import open_session

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ROOT / "bench" / "servers"


def start(directory: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[str], int, list[int]]:
    redis, redis_port = start_redis(directory)
    port = free_port()
    command = [sys.executable, "-m", "ratchetpy", "serve", "bench_ratchetpy_rpc:make_app"]
    command += ["--port", str(port), "--workers", "2"]
    command += ["--broker", f"redis://127.0.0.1:{redis_port}/0"]
    server = subprocess.Popen(
        command, cwd=SERVERS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert server.stderr is not None
    for line in server.stderr:
        found = re.search(r"workers serving: pids \[([\d, ]+)\]", line)
        if found:
            return redis, server, port, [int(p) for p in found.group(1).split(", ")]
    raise RuntimeError("the workers did not start")


async def measure(port: int, pids: list[int], redis_pid: int, calls: int) -> dict[str, tuple]:
    url = f"ws://127.0.0.1:{port}/ws"
    results: dict[str, tuple] = {}
    async with trio.open_nursery() as nursery:
        sessions: dict[int, list] = {pid: [] for pid in pids}

        async def keep(task_status: trio.TaskStatus) -> None:
            async with open_session(url, realm="realm1") as session:
                task_status.started(session)
                await trio.sleep_forever()

        while min(len(found) for found in sessions.values()) < 2:  # bounded by the kernel
            session = await nursery.start(keep)
            sessions[await session.call("bench.pid")].append(session)
        here, there = pids
        callee, local = sessions[here][:2]
        remote = sessions[there][0]
        await callee.register("bench.echo", lambda value: value)
        for name, caller in [("same worker", local), ("across workers", remote)]:
            for n in range(50):  # warm up
                await caller.call("bench.echo", n)
            took = []
            before, redis_before = cpu_seconds(pids), cpu_seconds([redis_pid])
            for n in range(calls):
                start_time = time.perf_counter()
                await caller.call("bench.echo", n)
                took.append(time.perf_counter() - start_time)
            cpu = cpu_seconds(pids) - before
            redis_cpu = cpu_seconds([redis_pid]) - redis_before
            took.sort()
            results[name] = (
                took[len(took) // 2] * 1e6,
                took[int(len(took) * 0.99)] * 1e6,
                cpu / calls * 1e6,
                redis_cpu / calls * 1e6,
            )
        nursery.cancel_scope.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is needed")
    rounds = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as directory:
            redis, server, port, pids = start(Path(directory))
            try:
                rounds.append(trio.run(measure, port, pids, redis.pid, args.calls))
            finally:
                server.terminate()
                server.wait(timeout=15)
                redis.terminate()
                redis.wait(timeout=5)
    print(f"{args.calls} sequential calls, medians of {args.rounds} rounds")
    print("| where the callee is | p50 µs | p99 µs | workers' CPU µs per call | Redis CPU µs |")
    print("|---|---:|---:|---:|---:|")
    for name in rounds[0]:
        columns = [statistics.median(r[name][i] for r in rounds) for i in range(4)]
        print(f"| {name} | " + " | ".join(f"{value:.0f}" for value in columns) + " |")


if __name__ == "__main__":
    main()
