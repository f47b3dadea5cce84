"""What collecting metrics costs, measured by the independent load generator.

    python3 bench/metrics_cost.py                  # 5 alternating rounds of each scenario
    python3 bench/metrics_cost.py --rounds 1 --duration 2

The same App serves the load twice per round, alternating: ``bench_ratchetpy_app.py``
(``ratchetpy-app``) and ``bench_ratchetpy_metrics.py`` (that App with ``app.metrics`` routed,
so its scheduler-lag probe runs). The load generator is ``../shared/bench/wsload.c`` (built
into ``bench/build/wsload``), pinned to the second core, the server to the first; the figure
is work per second of server CPU, sampled from /proc between the generator's measure markers;
the report gives medians and the ratio with ÷ without metrics. ``bench/run.py --servers
ratchetpy-app,ratchetpy-metrics`` measures the same with the project's own generator.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_out import ROOT, build_wsload, free_port, load_pinned_server

SERVERS = {
    "without metrics": ROOT / "bench" / "servers" / "bench_ratchetpy_app.py",
    "with metrics": ROOT / "bench" / "servers" / "bench_ratchetpy_metrics.py",
}
# name -> (server's --scenario, wsload arguments, what the figure counts)
SCENARIOS = {
    "echo 64x1": ("echo", ["--mode", "echo", "--conns", "64", "--depth", "1"], "round trips"),
    "echo 16x100": ("echo", ["--mode", "echo", "--conns", "16", "--depth", "100"], "messages"),
    "broadcast 1000": (
        "broadcast",
        ["--mode", "broadcast", "--conns", "1000", "--window", "16", "--conc", "100"],
        "deliveries",
    ),
}


def measure(server: str, scenario: str, duration: float) -> float:
    mode, generator, _ = SCENARIOS[scenario]
    port = free_port()
    command = [sys.executable, str(SERVERS[server]), "--port", str(port), "--scenario", mode]
    timing = ["--size", "32", "--warmup", "1", "--duration", str(duration)]
    result, used = load_pinned_server(command, port, [*generator, *timing])
    return float(result["msgs"]) / used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds")
    args = parser.parse_args()
    build_wsload()
    figures: dict[tuple[str, str], list[float]] = {}
    for round_number in range(1, args.rounds + 1):
        for scenario in SCENARIOS:
            # Alternate which goes first, so neither always runs on a warmer machine.
            order = list(SERVERS) if round_number % 2 else list(reversed(SERVERS))
            for server in order:
                figure = measure(server, scenario, args.duration)
                figures.setdefault((scenario, server), []).append(figure)
                print(f"round {round_number} {scenario} {server}: {figure:,.0f} per CPU s")
    print()
    print("| scenario (per server CPU second) | without metrics | with metrics | with ÷ without |")
    print("|---|---:|---:|---:|")
    for scenario, (_, _, unit) in SCENARIOS.items():
        without = statistics.median(figures[scenario, "without metrics"])
        with_ = statistics.median(figures[scenario, "with metrics"])
        print(f"| {scenario} ({unit}) | {without:,.0f} | {with_:,.0f} | {with_ / without:.2f}x |")


if __name__ == "__main__":
    main()
