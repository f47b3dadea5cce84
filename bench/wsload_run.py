"""The speed scenarios under the independent load generator, ``../shared/bench/wsload.c``.

    python3 bench/wsload_run.py                      # 3 alternating rounds, every server found
    python3 bench/wsload_run.py --rounds 1 --duration 2 --scenarios "1 MiB echo"
    python3 bench/wsload_run.py --servers ratchetpy,ratchetpy-python,websockets

``bench/run.py`` measures with the project's own generator (``loadgen.c``); this is the second
opinion. The generator (built into ``bench/build/wsload``) runs pinned to the second core, each
server in a fresh process pinned to the first; the figure is work per second of server CPU,
sampled from /proc between the generator's measure markers, and the table gives the median of
the rounds and ratchetpy's ratio to each other server. ``ratchetpy-python`` is ratchetpy with
its C accelerator turned off (``RATCHETPY_NO_SPEEDUPS=1``). picows (``pip install picows``)
and Node's ws (``npm install --prefix bench/build ws``) are measured where installed; a server
whose library is not installed is left out, saying so. ``--baseline SRC`` adds
``ratchetpy-baseline``: the same server script importing the ratchetpy under SRC (the ``src/``
of an older checkout, its C accelerator built in place), so that a change is measured against
what it changes in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_out import ROOT, build_wsload, free_port, load_pinned_server

SERVERS_DIR = ROOT / "bench" / "servers"


@dataclass(frozen=True)
class Server:
    script: str
    needs: str  # the Python module its library must provide, or the path Node's must be at
    env: dict[str, str] = field(default_factory=dict)
    echo_only: bool = False  # a floor to compare with, not a server: it only echoes

    @property
    def node(self) -> bool:
        return self.script.endswith(".js")

    def command(self) -> list[str]:
        return ["node" if self.node else sys.executable, str(SERVERS_DIR / self.script)]


SERVERS = {
    "ratchetpy": Server("bench_ratchetpy.py", "ratchetpy"),
    "ratchetpy-python": Server("bench_ratchetpy.py", "ratchetpy", {"RATCHETPY_NO_SPEEDUPS": "1"}),
    "websockets": Server("bench_websockets.py", "websockets"),
    "trio-websocket": Server("bench_trio_websocket.py", "trio_websocket"),
    "picows": Server("bench_picows.py", "picows"),
    "trio-floor": Server("bench_trio_floor.py", "trio", echo_only=True),
    "node-ws": Server("bench_node_ws.js", "bench/build/node_modules/ws"),
}


@dataclass(frozen=True)
class Scenario:
    server_mode: str  # the server script's --scenario
    wsload: tuple[str, ...]
    counts: str  # what the figure counts
    megabytes: bool = False  # report MB of payload instead of messages
    latency: bool = False  # also report the generator's round-trip latency (p50, p99)


SCENARIOS = {
    "echo 64x1": Scenario(
        "echo",
        ("--mode", "echo", "--conns", "64", "--depth", "1", "--size", "32"),
        "round trips",
        latency=True,
    ),
    "echo 16x100": Scenario(
        "echo", ("--mode", "echo", "--conns", "16", "--depth", "100", "--size", "32"), "messages"
    ),
    "broadcast 1000": Scenario(
        "broadcast",
        ("--mode", "broadcast", "--conns", "1000", "--window", "16", "--size", "32"),
        "deliveries",
    ),
    "1 MiB echo": Scenario(
        "echo",
        ("--mode", "echo", "--conns", "4", "--depth", "1", "--size", "1048576", "--binary"),
        "MB",
        megabytes=True,
    ),
}


def baseline_server(src: Path) -> Server:
    """ratchetpy's server script on the ratchetpy under ``src`` (an older checkout's src/)."""
    if not (src / "ratchetpy" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {src}: no ratchetpy package there")
    return Server("bench_ratchetpy.py", "ratchetpy", {"PYTHONPATH": str(src.resolve())})


def available(server: Server) -> bool:
    if server.node:
        return (ROOT / server.needs).is_dir()
    probe = [sys.executable, "-c", f"import {server.needs}"]
    env_path = {"PYTHONPATH": server.env.get("PYTHONPATH", str(ROOT / "src"))}
    return subprocess.run(probe, env=env_path, capture_output=True).returncode == 0


@dataclass(frozen=True)
class Figure:
    per_cpu_second: float
    p50_ms: float  # the generator's latency, from queueing a message to reading its echo
    p99_ms: float


def measure(name: str, scenario: Scenario, duration: float) -> Figure:
    server = SERVERS[name]
    port = free_port()
    command = [*server.command(), "--port", str(port), "--scenario", scenario.server_mode]
    timing = ["--warmup", "1", "--duration", str(duration)]
    if scenario.server_mode == "broadcast":
        timing += ["--conc", "100"]
    result, used = load_pinned_server(command, port, [*scenario.wsload, *timing], server.env)
    amount = float(result["msgs"]) * (1048576 / 1e6 if scenario.megabytes else 1.0)
    return Figure(amount / used, float(result["p50_us"]) / 1e3, float(result["p99_us"]) / 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--baseline", type=Path, help="an older checkout's src/ to compare with")
    args = parser.parse_args()
    build_wsload()
    if args.baseline:
        SERVERS["ratchetpy-baseline"] = baseline_server(args.baseline)
        args.servers += ",ratchetpy-baseline"
    servers = []
    for name in args.servers.split(","):
        if available(SERVERS[name]):
            servers.append(name)
        else:
            print(f"{name}: {SERVERS[name].needs} is not installed; left out", file=sys.stderr)
    scenarios = args.scenarios.split(",")
    figures: dict[str, dict[str, list[float]]] = {s: {n: [] for n in servers} for s in scenarios}
    latencies: dict[str, dict[str, list[tuple[float, float]]]] = {
        s: {n: [] for n in servers} for s in scenarios if SCENARIOS[s].latency
    }
    for round_number in range(1, args.rounds + 1):
        for scenario in scenarios:
            # Alternate the order, so that no server always runs on a warmer machine.
            order = servers if round_number % 2 else list(reversed(servers))
            for name in order:
                if SERVERS[name].echo_only and SCENARIOS[scenario].server_mode != "echo":
                    continue
                figure = measure(name, SCENARIOS[scenario], args.duration)
                figures[scenario][name].append(figure.per_cpu_second)
                latency = ""
                if scenario in latencies:
                    latencies[scenario][name].append((figure.p50_ms, figure.p99_ms))
                    latency = f" (latency p50 {figure.p50_ms:.2f} ms, p99 {figure.p99_ms:.2f} ms)"
                print(
                    f"round {round_number} {scenario} {name}: {figure.per_cpu_second:,.1f} per "
                    f"CPU s{latency}"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"figures": figures, "latencies": latencies}, indent=1))
    others = [n for n in servers if n != "ratchetpy"]
    print()
    print(
        "| scenario (per server CPU second) | "
        + " | ".join(servers)
        + " | "
        + " | ".join(f"ratchetpy ÷ {n}" for n in others)
        + " |"
    )
    print("|---|" + "---:|" * (len(servers) + len(others)))
    for scenario in scenarios:
        runs = figures[scenario]
        medians = {n: statistics.median(runs[n]) for n in servers if runs[n]}
        cells = [f"{medians[n]:,.0f}" if n in medians else "-" for n in servers]
        mine = medians.get("ratchetpy")
        cells += [f"{mine / medians[n]:.2f}x" if mine and n in medians else "-" for n in others]
        print(f"| {scenario} ({SCENARIOS[scenario].counts}) | " + " | ".join(cells) + " |")
    for scenario, runs in latencies.items():
        # The generator keeps every connection busy, so this is latency at full load: queueing
        # in the server, not an idle round trip.
        print()
        print(f"| {scenario}: latency, ms (median of the rounds) | p50 | p99 |")
        print("|---|---:|---:|")
        for name in servers:
            if runs[name]:
                p50 = statistics.median(p for p, _ in runs[name])
                p99 = statistics.median(p for _, p in runs[name])
                print(f"| {name} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
