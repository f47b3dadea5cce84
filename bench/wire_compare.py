"""Why the two load generators disagree: echo 64 x 1 under ``loadgen.c`` and ``wsload.c``, with
the syscalls of the server and of the generator counted.

    python3 bench/wire_compare.py                    # 2 rounds, ratchetpy, websockets, trio floor
    python3 bench/wire_compare.py --servers ratchetpy,websockets,node-ws --rounds 3

Each run serves one server pinned to core 0 and drives it with one generator pinned to core 1,
64 connections with one 32-byte message in flight each (the same scenario in both generators'
terms). In the middle of the generator's measured window, ``perf stat`` counts for a few
seconds, on the server and on the generator separately, their CPU time, context switches and
syscalls (the kernel's ``syscalls:sys_enter_*`` tracepoints: cheap, not free, so the rates
under them run lower than bench/run.py's and wsload_run.py's; read this for the counts). The
table gives, per round trip, what each side did, next to the
generator's own figure of round trips per second of server CPU, the server's utilisation in
the window and, for wsload, its p50/p99 latency. Medians over the rounds.

Needs ``perf`` with access to the tracepoints (root, or ``perf_event_paranoid`` <= 1 with the
capability); Linux only, like the generators.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import LOADGEN, build_loadgen
from scale_out import WSLOAD, build_wsload, free_port, pinned_server
from wsload_run import SERVERS

#: What perf counts, and the column each count goes to. recv() and send() on a socket are
#: recvfrom and sendto; read/write/writev are what C code and libuv use for the same.
SYSCALLS = {
    "epoll_wait": "wait",
    "epoll_pwait": "wait",
    "epoll_ctl": "epoll_ctl",
    "recvfrom": "read",
    "read": "read",
    "sendto": "write",
    "write": "write",
    "writev": "write",
    "sendmsg": "write",
}
EVENTS = ["task-clock", "context-switches", "raw_syscalls:sys_enter"]
EVENTS += [f"syscalls:sys_enter_{name}" for name in SYSCALLS]
COLUMNS = ("syscalls", "wait", "epoll_ctl", "read", "write", "switches")
GENERATOR_COLUMNS = ("syscalls", "wait", "read", "write")

CONNECTIONS, SIZE = 64, 32


@dataclass(frozen=True)
class Counts:
    """What perf counted on one process over the window."""

    cpu_seconds: float
    per_column: dict[str, float]


def generator_command(generator: str, port: int, server_pid: int, duration: float) -> list[str]:
    timing = ["--warmup", "1", "--duration", str(duration)]
    if generator == "loadgen":
        load = [str(LOADGEN), "echo", "--clients", str(CONNECTIONS), "--inflight", "1"]
        load += ["--size", str(SIZE), "--port", str(port), "--server-pid", str(server_pid)]
    else:
        load = [str(WSLOAD), "--port", str(port), "--path", "/", "--mode", "echo"]
        load += ["--conns", str(CONNECTIONS), "--depth", "1", "--size", str(SIZE)]
    return ["taskset", "-c", "1", *load, *timing]


def perf_stat(pid: int, seconds: float, into: dict[int, Counts]) -> None:
    command = ["perf", "stat", "-x", ",", "-e", ",".join(EVENTS), "-p", str(pid)]
    done = subprocess.run([*command, "--", "sleep", str(seconds)], capture_output=True, text=True)
    values: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].replace(".", "", 1).isdigit():
            values[parts[2]] = float(parts[0])
    if "task-clock" not in values:
        raise RuntimeError(f"perf stat gave no counts: {done.stderr.strip()[-300:]}")
    columns = dict.fromkeys(COLUMNS, 0.0)
    columns["syscalls"] = values.get("raw_syscalls:sys_enter", 0.0)
    columns["switches"] = values.get("context-switches", 0.0)
    for name, column in SYSCALLS.items():
        columns[column] += values.get(f"syscalls:sys_enter_{name}", 0.0)
    into[pid] = Counts(values["task-clock"] / 1000.0, columns)


def measure(generator: str, name: str, duration: float) -> dict[str, float]:
    """One run: the generator's figure, and each side's syscalls per round trip."""
    server = SERVERS[name]
    port = free_port()
    command = [*server.command(), "--port", str(port), "--scenario", "echo"]
    window = duration - 1.5
    with pinned_server(command, port, server.env) as process:
        load = subprocess.Popen(
            generator_command(generator, port, process.pid, duration),
            stdout=subprocess.PIPE,
            text=True,
        )
        # Connecting 64 clients takes milliseconds; 1.5 s in, both generators are past their
        # one-second warm-up, and the window ends 1 s before their measurement does.
        time.sleep(1.5)
        counts: dict[int, Counts] = {}
        watchers = [
            threading.Thread(target=perf_stat, args=(pid, window, counts))
            for pid in (process.pid, load.pid)
        ]
        for watcher in watchers:
            watcher.start()
        output, _ = load.communicate(timeout=duration + 60)
        for watcher in watchers:
            watcher.join()
    result = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    if result.get("error") or result.get("errors"):
        raise RuntimeError(f"{generator} against {name}: {result}")
    if process.pid not in counts or load.pid not in counts:
        raise RuntimeError(f"{generator} against {name}: perf counted nothing")
    mine, theirs = counts[process.pid], counts[load.pid]
    # The generator's steady rate over its own window, applied to perf's: the same figure for
    # both generators (wsload does not know the server's CPU time; perf does, for both).
    if generator == "loadgen":
        round_trips = float(result["count"]) * window / result["elapsed_s"]
        latency = (float("nan"), float("nan"))
    else:
        round_trips = float(result["msgs"]) * window / result["secs"]
        latency = (result["p50_us"], result["p99_us"])
    figures = {"rate": round_trips / mine.cpu_seconds, "server_util": mine.cpu_seconds / window}
    figures["generator_util"] = theirs.cpu_seconds / window
    figures["p50_us"], figures["p99_us"] = latency
    for column in COLUMNS:
        figures[f"server_{column}"] = mine.per_column[column] / round_trips
        figures[f"generator_{column}"] = theirs.per_column[column] / round_trips
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (>= 3)")
    parser.add_argument("--servers", default="ratchetpy,websockets,trio-floor")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    if args.duration < 3:
        parser.error("--duration must be at least 3 s (the perf window is 1.5 s shorter)")
    build_loadgen("gcc")
    build_wsload()
    servers = args.servers.split(",")
    runs: dict[str, list[dict[str, float]]] = {}
    for round_number in range(1, args.rounds + 1):
        for generator in ("loadgen", "wsload"):
            order = servers if round_number % 2 else list(reversed(servers))
            for name in order:
                figures = measure(generator, name, args.duration)
                runs.setdefault(f"{generator}|{name}", []).append(figures)
                print(
                    f"round {round_number} {generator} {name}: {figures['rate']:,.0f} round trips"
                    f" per server CPU s, server {figures['server_util']:.0%} busy",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1))
    print()
    print(
        "| generator | server | round trips / server CPU s | server busy | p50 / p99 µs "
        "| server syscalls | waits | epoll_ctl | reads | writes | switches "
        "| generator syscalls | waits | reads | writes | generator busy |"
    )
    print("|---|---|---:|---:|---:|" + "---:|" * 11)
    for key, figures_list in runs.items():
        generator, name = key.split("|")
        med = {k: statistics.median(f[k] for f in figures_list) for k in figures_list[0]}
        latency = (
            "-" if med["p50_us"] != med["p50_us"] else f"{med['p50_us']:.0f} / {med['p99_us']:.0f}"
        )
        server_cells = [f"{med[f'server_{c}']:.2f}" for c in COLUMNS]
        generator_cells = [
            f"{med[f'generator_{c}']:.2f}" for c in ("syscalls", "wait", "read", "write")
        ]
        print(
            f"| {generator} | {name} | {med['rate']:,.0f} | {med['server_util']:.0%} | {latency} | "
            + " | ".join(server_cells)
            + " | "
            + " | ".join(generator_cells)
            + f" | {med['generator_util']:.0%} |"
        )


if __name__ == "__main__":
    main()
