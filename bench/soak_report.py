"""The soak's verdict: slopes fitted after warm-up, the checks, the Markdown table and
the plot."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from soak_config import MIX, Config, KiB, MiB
from soak_load import Load

# -- analysis --------------------------------------------------------------------------------


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through ``(x, y)``: (slope, intercept)."""
    n = len(points)
    if n < 2:
        return 0.0, points[0][1] if points else 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    return slope, mean_y - slope * mean_x


def analyse(
    config: Config,
    load: Load,
    result: dict[str, Any],
    exit_code: int | None,
    exit_seconds: float,
    log: dict[str, Any],
) -> dict[str, Any]:
    samples = [s for s in load.samples if "error" not in s]
    during = [s for s in samples if s["phase"] == "load"]
    post = [s for s in during if s["t"] >= config.warmup]
    idle, final = result["idle"], result["final"]
    window = (post[-1]["t"] - post[0]["t"]) / 60 if len(post) > 1 else 0.0

    series: dict[str, dict[str, float]] = {}
    for key in ("rss", "fds", "tasks", "timers", "open", "fds_beyond", "tasks_beyond"):
        values = [(s["t"] / 60, float(value_of(s, key))) for s in post]
        slope, intercept = fit(values)
        ys = [y for _, y in values] or [0.0]
        series[key] = {
            "slope_per_min": slope,
            "intercept": intercept,
            "min": min(ys),
            "max": max(ys),
            "mean": sum(ys) / len(ys),
            "idle": float(value_of(idle, key)),
            "final": float(value_of(final, key)),
            "at_warmup": ys[0],
            "at_end": ys[-1],
        }
    rss_growth = series["rss"]["slope_per_min"] * window
    opened_after = load.opened_after_warmup
    per_connection = rss_growth / opened_after if opened_after else math.inf

    outcomes: dict[str, dict[str, int]] = {}
    for (kind, outcome), count in sorted(load.outcomes.items()):
        outcomes.setdefault(kind, {})[outcome] = count
    first = samples[0] if samples else {}
    last_load = during[-1] if during else {}
    cpu = {}
    if first and last_load:
        span = last_load["t"] - next(s["t"] for s in samples if s["phase"] == "load")
        first_load = next(s for s in samples if s["phase"] == "load")
        if span > 0:
            cpu = {
                "server": (last_load["server_cpu"] - first_load["server_cpu"]) / span,
                "load": (last_load["load_cpu"] - first_load["load_cpu"]) / span,
            }
    lag_mean = lag_worst = None
    if post and post[-1]["lag_count"] > post[0]["lag_count"]:
        observed = post[-1]["lag_count"] - post[0]["lag_count"]
        lag_mean = (post[-1]["lag_sum"] - post[0]["lag_sum"]) / observed
        # The worst lag after warm-up is at most the first bucket bound holding them all.
        for bound, cumulative in sorted(
            post[-1]["lag_buckets"].items(), key=lambda item: float(item[0])
        ):
            if cumulative - post[0]["lag_buckets"].get(bound, 0) >= observed:
                lag_worst = float(bound)
                break

    client_codes: Counter[str] = Counter()
    for (kind, outcome), count in load.outcomes.items():
        if kind in ("slow", "error", "malformed") and outcome.isdigit():
            client_codes[f"{kind} {outcome}"] += count
    close_sent = final.get("close_sent", {})

    load_lag = max((s.get("load_lag", 0.0) for s in during), default=0.0)
    load_gc = max((s.get("load_gc", 0.0) for s in during), default=0.0)
    before, after = result["objects"]["idle"], result["objects"]["final"]
    grown = Counter(after["by_type"])
    grown.subtract(before["by_type"])
    object_growth = after["total"] - before["total"]
    top_grown = {name: n for name, n in grown.most_common(12) if n > 0}
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    limit = config.max_rss_per_connection
    check(
        "RSS flat after warm-up",
        per_connection <= limit,
        f"slope {series['rss']['slope_per_min'] / KiB:+.1f} KiB/min over {window:.1f} min: "
        f"{rss_growth / MiB:+.2f} MiB for {opened_after} connections opened after warm-up = "
        f"{per_connection:+.0f} B per connection (limit {limit:g})",
    )
    beyond = series["fds_beyond"]
    fd_drift = beyond["slope_per_min"] * window
    check(
        "descriptors flat after warm-up",
        abs(fd_drift) <= config.fd_drift_limit,
        f"descriptors beyond one per open connection: {beyond['idle']:.0f} idle, "
        f"{beyond['min']:.0f}-{beyond['max']:.0f} after warm-up, slope "
        f"{beyond['slope_per_min']:+.2f}/min = {fd_drift:+.1f} over the window (limit "
        f"{config.fd_drift_limit}); all descriptors: "
        f"slope {series['fds']['slope_per_min']:+.1f}/min",
    )
    check(
        "descriptors back to idle",
        final["fds"] - idle["fds"] <= config.fd_tolerance,
        f"{idle['fds']} idle, {final['fds']} after all left (tolerance {config.fd_tolerance})",
    )
    check(
        "tasks back to idle",
        final["tasks"] - idle["tasks"] <= config.task_tolerance,
        f"{idle['tasks']} idle, {final['tasks']} after all left",
    )
    check(
        "timers back to idle",
        final["timers"] - idle["timers"] <= config.timer_tolerance,
        f"{idle['timers']} idle, {final['timers']} after all left",
    )
    check(
        "no connection left",
        final["ws_plain"] + final["ws_tls"] + final["raw"] == 0 and final["http"] <= 1,
        f"websocket {final['ws_plain']}+{final['ws_tls']}, http {final['http']}, raw "
        f"{final['raw']} after all left (the scrape is one http)",
    )
    check(
        "Python objects back to idle",
        object_growth <= config.object_tolerance,
        f"{before['total']} objects tracked by the gc when idle, {after['total']} after all "
        f"left ({object_growth:+d}; tolerance {config.object_tolerance}); grown most: "
        f"{top_grown}",
    )
    check(
        "every client ended as its kind should",
        load.unexpected_count == 0 and not load.stragglers,
        f"{load.unexpected_count} unexpected endings"
        + (
            f", still running after {config.leave_timeout:g} s: {load.stragglers}"
            if load.stragglers
            else ""
        ),
    )
    agree = (
        close_sent.get("1011", 0) == client_codes["error 1011"]
        and close_sent.get("1002", 0) == client_codes["malformed 1002"]
        and final.get("slow_consumer_closes", 0) >= client_codes["slow 1008"]
        and final.get("handler_errors", 0) == client_codes["error 1011"]
    )
    check(
        "server counters agree with the clients",
        agree,
        f"close frames sent {close_sent}; slow consumer closes "
        f"{final.get('slow_consumer_closes')}, handler errors {final.get('handler_errors')}; "
        f"clients saw {dict(client_codes)}",
    )
    check(
        "no unexpected server log record",
        log["unexpected_count"] == 0,
        f"{log['unexpected_count']} unexpected WARNING/ERROR records; expected ones: "
        f"{log['expected']}",
    )
    check(
        "every sample taken",
        not load.scrape_errors,
        f"{len(load.scrape_errors)} failed"
        + (f": {load.scrape_errors[0]}" if load.scrape_errors else ""),
    )
    check(
        "the load generator kept up",
        load_lag <= config.max_load_lag,
        f"its worst scheduling delay was {load_lag * 1e3:.0f} ms (limit "
        f"{config.max_load_lag * 1e3:.0f} ms; beyond it, its own lateness fails clients)",
    )
    check(
        "server exits 0 on SIGTERM",
        exit_code == 0,
        f"exit status {exit_code} after {exit_seconds:.1f} s"
        if exit_code is not None
        else f"killed: no exit within {exit_seconds:.0f} s",
    )
    return {
        "duration_s": config.duration,
        "warmup_s": config.warmup,
        "window_min": window,
        "opened": dict(load.opened),
        "opened_tls": dict(load.opened_tls),
        "opened_total": sum(load.opened.values()),
        "opened_after_warmup": opened_after,
        "outcomes": outcomes,
        "unexpected": load.unexpected,
        "unexpected_count": load.unexpected_count,
        "stragglers": load.stragglers,
        "counts": dict(load.counts),
        "malformed_variants": dict(load.malformed),
        "series": series,
        "rss_growth_bytes": rss_growth,
        "rss_per_connection_bytes": per_connection,
        "cpu": cpu,
        "scheduler_lag_mean_s": lag_mean,
        "scheduler_lag_worst_s": lag_worst,
        "load_lag_max_s": load_lag,
        "load_gc_max_s": load_gc,
        "server_final": {
            key: final.get(key)
            for key in (
                "close_sent",
                "close_received",
                "slow_consumer_closes",
                "handler_errors",
                "accepted",
                "messages_in",
                "messages_out",
            )
        },
        "settled": result["settled"],
        "objects": {
            "idle": before["total"],
            "final": after["total"],
            "grown": top_grown,
            "held_idle": before.get("held", {}),
            "held_final": after.get("held", {}),
        },
        "trim": result["trim"],
        "server_exit": {"code": exit_code, "seconds": exit_seconds},
        "server_log": log,
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }


def value_of(sample: dict[str, Any], key: str) -> float:
    """A sampled value; ``fds_beyond`` and ``tasks_beyond`` are those beyond one per open
    connection of any kind (what must stay constant whatever the churn)."""
    if key == "open":
        return float(sample["ws_plain"] + sample["ws_tls"])
    if key == "tasks_beyond":
        connections = sample["ws_plain"] + sample["ws_tls"] + sample["http"] + sample["raw"]
        return float(sample["tasks"] - connections)
    return float(sample[key])


# -- output ----------------------------------------------------------------------------------


def markdown(config: Config, summary: dict[str, Any]) -> str:
    s = summary["series"]
    c = summary["counts"]
    rows = [
        (
            "duration",
            f"{config.duration / 60:g} min (warm-up {config.warmup:g} s, fit over the "
            f"{summary['window_min']:.1f} min after it)",
        ),
        (
            "clients open at once (target)",
            f"{config.clients:,} ({s['open']['mean']:,.0f} WebSockets on average after warm-up)",
        ),
        (
            "connections opened",
            f"{summary['opened_total']:,} ({summary['opened_after_warmup']:,} after warm-up)",
        ),
        (
            "chat messages sent / received",
            f"{c.get('chat messages sent', 0):,} / {c.get('chat messages received', 0):,}",
        ),
        (
            "WAMP publications / events received",
            f"{c.get('WAMP publications', 0):,} / {c.get('WAMP events received', 0):,}",
        ),
        ("echoes", f"{c.get('echoes', 0):,}"),
    ]
    for kind, _ in MIX:
        ends = summary["outcomes"].get(kind, {})
        tls = summary["opened_tls"].get(kind, 0)
        parts = [
            f"{count:,} {outcome}" for outcome, count in sorted(ends.items(), key=lambda kv: -kv[1])
        ]
        rows.append(
            (
                f"{kind} ({tls:,} over TLS)" if tls and kind != "chat-tls" else kind,
                ", ".join(parts) or "none",
            )
        )
    rss = s["rss"]
    rows += [
        (
            "RSS idle / end of warm-up / end of load / after all left",
            f"{rss['idle'] / MiB:.1f} / {rss['at_warmup'] / MiB:.1f} / {rss['at_end'] / MiB:.1f} / "
            f"{rss['final'] / MiB:.1f} MiB",
        ),
        (
            "RSS after warm-up min / mean / max",
            f"{rss['min'] / MiB:.1f} / {rss['mean'] / MiB:.1f} / {rss['max'] / MiB:.1f} MiB",
        ),
        (
            "RSS slope after warm-up",
            f"{rss['slope_per_min'] / KiB:+.1f} KiB/min "
            f"({summary['rss_per_connection_bytes']:+.0f} B per connection "
            f"opened; limit {config.max_rss_per_connection:g})",
        ),
    ]
    trim = summary["trim"]
    rows.append(
        (
            "RSS after all left, after gc and malloc_trim(0)",
            f"{trim['before'] / MiB:.1f} -> {trim['after'] / MiB:.1f} MiB",
        )
    )
    objects = summary["objects"]
    rows.append(
        (
            "objects tracked by the gc: idle / after all left",
            f"{objects['idle']:,} / {objects['final']:,}",
        )
    )
    for key, name in (("fds", "open descriptors"), ("tasks", "trio tasks"), ("timers", "timers")):
        v = s[key]
        rows.append(
            (
                f"{name}: idle / after warm-up min-max (mean) / after all left",
                f"{v['idle']:.0f} / {v['min']:.0f}-{v['max']:.0f} ({v['mean']:.0f}) / "
                f"{v['final']:.0f}",
            )
        )
        rows.append((f"{name}: slope after warm-up", f"{v['slope_per_min']:+.2f} per min"))
    cpu = summary["cpu"]
    if cpu:
        processes = config.load_processes
        rows.append(
            (
                "CPU: server / load generator",
                f"{cpu['server']:.0%} / {cpu['load']:.0%} of a core"
                + (f" (in {processes} processes)" if processes > 1 else ""),
            )
        )
    if summary["scheduler_lag_mean_s"] is not None:
        worst = summary["scheduler_lag_worst_s"]
        rows.append(
            (
                "server scheduler lag: mean / worst (bucket bound)",
                f"{summary['scheduler_lag_mean_s'] * 1e3:.1f} ms / "
                + (f"<= {worst * 1e3:g} ms" if worst is not None else "n/a"),
            )
        )
    rows.append(
        (
            "load generator: worst scheduling delay / longest gc pause",
            f"{summary['load_lag_max_s'] * 1e3:.0f} ms / "
            f"{summary.get('load_gc_max_s', 0.0) * 1e3:.0f} ms",
        )
    )
    exit_ = summary["server_exit"]
    rows.append(("server on SIGTERM", f"exit {exit_['code']} in {exit_['seconds']:.1f} s"))
    failed = [check["name"] for check in summary["checks"] if not check["ok"]]
    rows.append(("checks", "all passed" if not failed else "FAILED: " + "; ".join(failed)))
    lines = ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def plot(
    config: Config, all_samples: list[dict[str, Any]], summary: dict[str, Any], path: Path
) -> None:
    """Draw the run's samples (``Load.samples``, or a ``--json`` document's) to a PNG.
    Needs matplotlib: ImportError without it (``soak.py`` checks before it starts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in all_samples if "error" not in s and s["phase"] != "idle"]
    idle = next(
        (s for s in reversed(all_samples) if s["phase"] == "idle" and "error" not in s), None
    )
    xs = [s["t"] / 60 for s in samples]
    panels = (
        ("RSS (MiB)", "rss", lambda s: s["rss"] / MiB, MiB),
        ("open file descriptors", "fds", lambda s: s["fds"], 1),
        ("trio tasks", "tasks", lambda s: s["tasks"], 1),
        ("open WebSockets", "open", lambda s: s["ws_plain"] + s["ws_tls"], 1),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 10), sharex=True)
    warm = config.warmup / 60
    end = config.duration / 60
    for ax, (label, key, value, unit) in zip(axes, panels, strict=True):
        ax.plot(xs, [value(s) for s in samples], lw=1, color="tab:blue")
        ax.axvspan(min(xs[0], 0) if xs else 0, warm, color="0.9", label="warm-up")
        ax.axvline(end, color="0.5", lw=0.8, ls=":")
        line = summary["series"][key]
        fx = [warm, end]
        ax.plot(
            fx,
            [(line["intercept"] + line["slope_per_min"] * x) / unit for x in fx],
            color="tab:red",
            lw=1.2,
            label=f"fit after warm-up: {line['slope_per_min'] / unit:+.3g}/min"
            if key != "rss"
            else f"fit after warm-up: {line['slope_per_min'] / KiB:+.0f} KiB/min",
        )
        if idle is not None and key != "open":
            ax.axhline(value(idle), color="tab:green", lw=0.8, ls="--", label="idle")
        if key == "open":
            ax.plot(
                xs, [s["ws_tls"] for s in samples], lw=0.8, color="tab:orange", label="of which TLS"
            )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel("minutes (dotted: load stops, all clients leave)")
    fig.suptitle(
        f"ratchetpy soak: {config.clients:,} clients, {summary['opened_total']:,} connections "
        f"in {config.duration / 60:g} min"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
