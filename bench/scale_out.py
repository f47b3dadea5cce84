"""Scale-out benchmark: what the Redis hop costs, side by side in one run.

    python3 bench/scale_out.py                 # 3 alternating rounds of each setup
    python3 bench/scale_out.py --rounds 1 --duration 2 --conns 200

Setups, all serving the same Group broadcast (bench/servers/bench_ratchetpy_group.py):

* ``1 worker, no broker``: one process, in memory (the single-process efficiency);
* ``1 worker, Redis``: one process with a RedisBroker (every publication also goes to Redis,
  and nobody else receives it);
* ``2 workers, Redis``: a supervisor and two workers on one port; the load generator's
  connections spread over both, so most deliveries cross Redis.

The load generator is the independent ``../shared/bench/wsload.c`` (built into
``bench/build/wsload``), pinned to the second core, in broadcast mode: one connection
publishes, every connection must receive every message in order. The figure is deliveries
per second of server CPU, summed over every process of the setup (supervisor and workers),
sampled from /proc between the generator's measure markers; Redis' own CPU is reported
beside it. Then the hop's latency: two RedisBrokers in one process, one message at a time,
publish -> delivery, p50 / p99 / max; and the CPU each cross-worker publication costs the
sending worker (publish_nowait to Redis-accepted) and the receiving one.

Standard library plus the project's .venv (for ratchetpy, trio and hiredis); needs
redis-server and gcc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WSLOAD_SRC = ROOT.parent / "shared" / "bench" / "wsload.c"
WSLOAD = ROOT / "bench" / "build" / "wsload"
SERVER = ROOT / "bench" / "servers" / "bench_ratchetpy_group.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_wsload() -> None:
    if WSLOAD.exists() and WSLOAD.stat().st_mtime >= WSLOAD_SRC.stat().st_mtime:
        return
    WSLOAD.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", str(WSLOAD), str(WSLOAD_SRC)], check=True)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return total


def descendants(pid: int) -> list[int]:
    found = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += descendants(int(child))
    return found


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not listen")


@contextlib.contextmanager
def pinned_server(
    command: list[str], port: int, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (a server of this checkout's src/, unless ``extra_env`` sets another
    PYTHONPATH) on the first core, in a session of its own, until it listens on ``port``;
    SIGTERM to its session afterwards (SIGKILL after 15 s)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(extra_env or {})}
    server = subprocess.Popen(
        ["taskset", "-c", "0", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(port, server)
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def load_pinned_server(
    command: list[str], port: int, load: list[str], extra_env: dict[str, str] | None = None
) -> tuple[dict, float]:
    """Serve ``command`` pinned to core 0 and run wsload with ``load`` (its mode, sizes and
    timing) on core 1: wsload's JSON result and the server's CPU seconds between its measure
    markers. Raises RuntimeError for a run wsload says was wrong, or that measured nothing."""
    with pinned_server(command, port, extra_env) as process:
        generate = ["taskset", "-c", "1", str(WSLOAD), "--port", str(port), "--path", "/"]
        run = subprocess.Popen([*generate, *load], stdout=subprocess.PIPE, text=True)
        assert run.stdout is not None
        start = used = 0.0
        result = None
        for line in run.stdout:
            if line.startswith("# measure_start"):
                start = cpu_seconds([process.pid])
            elif line.startswith("# measure_end"):
                used = cpu_seconds([process.pid]) - start
            elif line.startswith("{"):
                result = json.loads(line)
        run.wait(timeout=120)
    if result is None or result.get("errors") or result.get("seq_errors") or not used:
        raise RuntimeError(f"{command[-3:]}: invalid run: {result}")
    return result, used


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory)]
    redis = subprocess.Popen(
        ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(port, redis)
    return redis, port


def run_setup(name: str, redis_url: str, redis_pid: int, args: argparse.Namespace) -> dict:
    port = free_port()
    command = [str(ROOT / ".venv" / "bin" / "python"), str(SERVER), "--port", str(port)]
    if name != "1 worker, no broker":
        command += ["--broker", redis_url]
    if name.startswith("2 workers"):
        command += ["--workers", "2"]
    with pinned_server(command, port) as server:
        if name.startswith("2 workers"):
            deadline = time.monotonic() + 30
            while len(descendants(server.pid)) < 3:  # the supervisor (taskset execs) + 2 workers
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start")
                time.sleep(0.05)
            time.sleep(1.0)  # both workers connected to Redis and serving
        generator = [str(WSLOAD), "--port", str(port), "--path", "/broadcast"]
        generator += ["--mode", "broadcast", "--conns", str(args.conns), "--window", "16"]
        generator += ["--size", "32", "--conc", "50", "--warmup", "1"]
        load = subprocess.Popen(
            ["taskset", "-c", "1", *generator, "--duration", str(args.duration)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert load.stdout is not None
        pids = descendants(server.pid)
        start_cpu = redis_start = 0.0
        result = None
        for line in load.stdout:
            if line.startswith("# measure_start"):
                pids = descendants(server.pid)
                start_cpu, redis_start = cpu_seconds(pids), cpu_seconds([redis_pid])
                each_start = [cpu_seconds([pid]) for pid in pids]
            elif line.startswith("# measure_end"):
                server_cpu = cpu_seconds(pids) - start_cpu
                redis_cpu = cpu_seconds([redis_pid]) - redis_start
                # How the work split over the processes: both workers busy means the
                # clients spread and deliveries crossed Redis.
                split = [
                    round(cpu_seconds([pid]) - before, 2)
                    for pid, before in zip(pids, each_start, strict=True)
                ]
            elif line.startswith("{"):
                result = json.loads(line)
        load.wait(timeout=60)
        if result is None or result["errors"] or result["seq_errors"]:
            raise RuntimeError(f"{name}: invalid run: {result}")
        deliveries = result["msgs"]
        return {
            "setup": name,
            "deliveries": deliveries,
            "server_cpu": server_cpu,
            "redis_cpu": redis_cpu,
            "per_cpu_second": deliveries / server_cpu if server_cpu else 0.0,
            "per_wall_second": result["rate"],
            "processes": len(pids),
            "cpu_by_process": split,
        }


HOP_SCRIPT = r"""
import sys, time, json, statistics, resource
import trio
from ratchetpy.io.redis_broker import RedisBroker

async def main(url, count):
    a, b = RedisBroker(url, worker_id="hop-a"), RedisBroker(url, worker_id="hop-b")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        got = trio.Event()
        arrived = []
        def on(body):
            arrived.append(time.perf_counter_ns())
            got.set()
        b.listen("hop", on)
        await b.wait_listening("hop")
        latencies = []
        for _ in range(count):
            got = trio.Event()
            sent = time.perf_counter_ns()
            a.publish_nowait("hop", b"x" * 32)
            await got.wait()
            latencies.append((arrived[-1] - sent) / 1000)
        # CPU per cross-worker publication, both ends in this process: a burst, then wait.
        before = resource.getrusage(resource.RUSAGE_SELF)
        burst = 20000
        target = len(arrived) + burst
        for _ in range(burst // 500):  # in chunks the bounded queue holds
            for _ in range(500):
                a.publish_nowait("hop", b"y" * 32)
            await a.flush(10)
        with trio.fail_after(30):
            while len(arrived) < target:
                await trio.sleep(0.001)
        if a.refused:
            raise SystemExit(f"{a.refused} publications refused")
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        latencies.sort()
        print(json.dumps({
            "p50_us": statistics.median(latencies),
            "p99_us": latencies[int(len(latencies) * 0.99)],
            "max_us": latencies[-1],
            "cpu_us_per_publication_both_ends": cpu / burst * 1e6,
        }))
        nursery.cancel_scope.cancel()

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


def hop(redis_url: str, count: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    output = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            str(ROOT / ".venv/bin/python"),
            "-c",
            HOP_SCRIPT,
            redis_url,
            str(count),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--conns", type=int, default=500)
    parser.add_argument("--hops", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("scale_out: needs redis-server (apt-get install redis-server)")
    build_wsload()
    setups = ["1 worker, no broker", "1 worker, Redis", "2 workers, Redis"]
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as directory:
        redis, redis_port = start_redis(Path(directory))
        url = f"redis://127.0.0.1:{redis_port}/0"
        try:
            for round_number in range(args.rounds):
                for name in setups:
                    run = run_setup(name, url, redis.pid, args)
                    runs[name].append(run)
                    print(
                        f"round {round_number + 1} {name}: {run['per_cpu_second']:,.0f} "
                        f"deliveries per server CPU s ({run['per_wall_second']:,.0f}/s wall, "
                        f"server CPU {run['server_cpu']:.2f} s {run['cpu_by_process']}, "
                        f"Redis {run['redis_cpu']:.2f} s)",
                        flush=True,
                    )
            latency = hop(url, args.hops)
        finally:
            redis.terminate()
            redis.wait()
    base = statistics.median(r["per_cpu_second"] for r in runs[setups[0]])
    print()
    header = f"| setup ({args.conns} clients, 32 B, median of {args.rounds}) "
    print(header + "| deliveries per server CPU s | vs one process | Redis CPU per server CPU |")
    print("|---|---:|---:|---:|")
    for name in setups:
        value = statistics.median(r["per_cpu_second"] for r in runs[name])
        redis_share = statistics.median(
            r["redis_cpu"] / r["server_cpu"] if r["server_cpu"] else 0 for r in runs[name]
        )
        print(f"| {name} | {value:,.0f} | {value / base:.2f}x | {redis_share:.2f} |")
    print()
    print(
        f"Redis hop, one at a time ({args.hops}): p50 {latency['p50_us']:.0f} us, "
        f"p99 {latency['p99_us']:.0f} us, max {latency['max_us']:.0f} us; "
        f"{latency['cpu_us_per_publication_both_ends']:.1f} us of CPU per cross-worker "
        "publication (sender and receiver together)"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "hop": latency}, indent=2))


if __name__ == "__main__":
    main()
