"""The soak's verdict (bench/soak_report.py) on made-up samples: a flat run passes, and each
kind of leak or misbehaviour it exists to catch fails the check that names it.

The soak itself runs for two minutes in the test command (scripts/test.sh); these tests show
that its checks can fail, without a server."""

from __future__ import annotations

import gc
import ssl
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# The soak's modules import one another by name, as scripts run from bench/ do.
sys.path.insert(0, str(BENCH))

import json  # noqa: E402

import soak  # noqa: E402
import soak_load  # noqa: E402
from soak_config import Config  # noqa: E402
from soak_load import Load  # noqa: E402
from soak_report import analyse, fit, markdown  # noqa: E402

MiB = 2**20


def make_load(minutes: float = 60) -> tuple[Config, Load]:
    config = Config.from_args(soak.parse_args(["--minutes", str(minutes), "--seed", "1"]))
    load = Load(config, {"plain": 0, "tls": 0, "pid": 0}, 0, ssl.create_default_context())
    return config, load


def sample(t: float, phase: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "t": t,
        "phase": phase,
        "rss": 100 * MiB,
        "fds": 1700 + 11,
        "fds_beyond": 11,
        "tasks": 1800,
        "timers": 2000,
        "ws_plain": 1400,
        "ws_tls": 300,
        "http": 1,
        "raw": 0,
        "server_cpu": t * 0.35,
        "load_cpu": t * 0.8,
        "load_lag": 0.2,
        "lag_sum": 0.0,
        "lag_count": 0.0,
        "lag_buckets": {},
        "close_sent": {"1000": 9000, "1002": 600, "1008": 500, "1011": 550},
        "slow_consumer_closes": 500,
        "handler_errors": 550,
    }
    base.update(values)
    return base


def idle_sample(t: float) -> dict[str, Any]:
    return sample(
        t, "idle", rss=40 * MiB, fds=10, tasks=15, timers=7, ws_plain=0, ws_tls=0, fds_beyond=10
    )


def run(
    load: Load,
    config: Config,
    *,
    rss_per_minute: float = 0.0,
    fds_beyond_per_minute: float = 0.0,
    final: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A run of ``config.duration`` with samples every 5 s, RSS and the descriptors beyond
    one per connection changing at the rates given, and the clients' endings all right."""
    samples = [idle_sample(-10.0), idle_sample(-5.0)]
    t = 0.0
    while t <= config.duration:
        minutes = t / 60
        # Load-shaped noise, as the real samples have: a few MiB up and down.
        wobble = ((int(t) * 7919) % 11 - 5) * 0.4 * MiB
        samples.append(
            sample(
                t,
                "load",
                rss=int(100 * MiB + wobble + rss_per_minute * minutes),
                fds_beyond=11 + int(fds_beyond_per_minute * minutes),
            )
        )
        t += 5.0
    load.samples = samples
    load.opened_after_warmup = 200_000
    # Added to, not replaced: what another load process merged in stays.
    load.opened.update({"chat": 150_000, "slow": 12_000, "error": 12_000, "malformed": 12_000})
    load.outcomes.update(
        {
            ("chat", "1000"): 150_000,
            ("slow", "1008"): 500,
            ("slow", "room too quiet"): 20,
            ("error", "1011"): 550,
            ("malformed", "1002"): 600,
        }
    )
    idle = samples[1]
    ending = idle_sample(config.duration + 30)
    ending.update({"phase": "after", "http": 1})
    ending.update(
        close_sent={"1000": 9000, "1002": 600, "1008": 500, "1011": 550},
        slow_consumer_closes=500,
        handler_errors=550,
    )
    if final:
        ending.update(final)
    objects = {"total": 32_000, "by_type": {"dict": 10_000}, "held": {}}
    result = {
        "idle": idle,
        "final": ending,
        "settled": True,
        "left_at": config.duration + 5,
        "objects": {"idle": objects, "final": objects},
        "trim": {"before": 60 * MiB, "after": 45 * MiB, "malloc_trim": True},
    }
    log = {"expected": {}, "unexpected": [], "unexpected_count": 0}
    return analyse(config, load, result, 0, 0.2, log)


def failed(summary: dict[str, Any]) -> list[str]:
    return [check["name"] for check in summary["checks"] if not check["ok"]]


def test_fit_recovers_a_line() -> None:
    slope, intercept = fit([(x, 3.0 * x + 2.0) for x in range(10)])
    assert slope == pytest.approx(3.0)
    assert intercept == pytest.approx(2.0)


def test_a_flat_run_passes_every_check_and_renders_its_table() -> None:
    config, load = make_load()
    summary = run(load, config)
    assert failed(summary) == []
    assert summary["ok"]
    assert abs(summary["rss_per_connection_bytes"]) < 10
    table = markdown(config, summary)
    assert "| checks | all passed |" in table
    assert "20 room too quiet" in table


def test_rss_growing_per_connection_fails_the_rss_check() -> None:
    config, load = make_load()
    # 200,000 connections after warm-up; 1 KiB each over the 45 minutes after it.
    summary = run(load, config, rss_per_minute=200_000 * 1024 / 45)
    assert failed(summary) == ["RSS flat after warm-up"]
    assert summary["rss_per_connection_bytes"] == pytest.approx(1024, rel=0.1)


def test_descriptors_leaking_fail_the_descriptor_check() -> None:
    config, load = make_load()
    summary = run(load, config, fds_beyond_per_minute=1.0)
    assert failed(summary) == ["descriptors flat after warm-up"]


def test_what_is_not_back_to_idle_fails_its_own_check() -> None:
    config, load = make_load()
    summary = run(load, config, final={"tasks": 40, "timers": 30, "fds": 25})
    assert failed(summary) == [
        "descriptors back to idle",
        "tasks back to idle",
        "timers back to idle",
    ]


async def test_a_client_that_ended_wrongly_fails_the_run() -> None:
    config, load = make_load()
    load.finish("slow", False, "not closed", "room 3: 300 KiB queued, then read 900 KiB")
    assert load.unexpected[0]["outcome"] == "not closed"
    summary = run(load, config)
    assert failed(summary) == ["every client ended as its kind should"]
    assert summary["unexpected_count"] == 1


def test_server_counters_disagreeing_with_the_clients_fail() -> None:
    config, load = make_load()
    # The clients saw 550 handler errors answered with 1011; the server counted one fewer.
    summary = run(load, config, final={"handler_errors": 549})
    assert failed(summary) == ["server counters agree with the clients"]


async def test_neutral_endings_do_not_fail() -> None:
    _, load = make_load()
    load.finish("slow", False, "room too quiet", "")
    load.finish("slow", True, "open at the end", "")
    assert load.unexpected_count == 0


def other_process(config: Config) -> Load:
    return Load(
        config, {"plain": 0, "tls": 0, "pid": 0}, 0, ssl.create_default_context(), share=(1, 2)
    )


async def test_a_wrong_ending_in_another_load_process_fails_the_run() -> None:
    config, load = make_load()
    other = other_process(config)
    other.opened["chat-tls"] += 3
    other.finish("chat-tls", True, "1000", "")
    other.finish("chat-tls", True, "sent 1000 (OK); no close frame received", "room 1 (busy)")
    other.stragglers = {"wamp subscribing": 1}
    # What the first process gets is the result as JSON, over a pipe.
    load.note_remote(1, json.loads(json.dumps(other.status())))
    assert load.unexpected_so_far() == 1  # in the progress lines while the load runs
    load.merge_remote(1, json.loads(json.dumps(other.share_result())))
    assert load.unexpected_so_far() == 1  # folded in, not counted twice
    assert load.opened["chat-tls"] == 3
    assert load.outcomes[("chat-tls", "1000")] == 1
    summary = run(load, config)
    assert failed(summary) == ["every client ended as its kind should"]
    assert summary["unexpected_count"] == 1
    assert summary["unexpected"][0]["detail"] == "room 1 (busy)"
    assert summary["stragglers"] == {"load process 1: wamp subscribing": 1}


async def test_another_load_process_being_late_counts_as_the_load_generator_being_late() -> None:
    config, load = make_load()
    other = other_process(config)
    other.lag_window = 1.7
    other.live["chat"] = 900
    load.live["chat"] = 1000
    load.note_remote(1, json.loads(json.dumps(other.status())))
    assert other.lag_window == 0.0  # each status says the worst since the last one
    assert load.lag_window == 1.7
    assert load.remote[1]["live"] == {"chat": 900}


def test_each_process_has_its_own_ids_rate_and_slots() -> None:
    config, first = make_load()
    other = other_process(config)
    assert first.new_id() == "0.1" and other.new_id() == "1.1"
    assert other.limiter.interval == pytest.approx(2 / config.max_rate)
    assert first.rng.random() != other.rng.random()


def test_the_config_survives_its_trip_to_another_process() -> None:
    config, _ = make_load()
    config.load_processes = 2
    assert Config.from_json(json.loads(json.dumps(asdict(config)))) == config


def test_gc_pauses_reports_the_longest_collection_once() -> None:
    with soak_load.GcPauses() as pauses:
        gc.collect()
        assert pauses.take() > 0.0
        assert pauses.take() == 0.0
    gc.collect()
    assert pauses.take() == 0.0  # no longer watching
