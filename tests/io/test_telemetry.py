"""What a worker measures of itself: the scheduler-lag histogram's buckets, the process sample
in and out of trio, and the close-code and handshake counting the layers share."""

from __future__ import annotations

import os
import time

import trio
import trio.testing

from ratchetpy.components.connection import Counters, close_code_label
from ratchetpy.io.telemetry import LAG_BUCKETS, SchedulerLag, process_sample


def test_a_lag_lands_in_the_first_bucket_whose_bound_is_not_below_it() -> None:
    lag = SchedulerLag()
    for seconds in (0.0, 0.001, 0.0011, 0.1, 0.3, 11.0):
        lag.observe(seconds)
    snapshot = lag.snapshot()
    by_bound = dict(zip([*LAG_BUCKETS, float("inf")], snapshot["buckets"], strict=True))
    assert by_bound[0.001] == 2  # cumulative, as Prometheus' buckets are: 0 and 1 ms
    assert by_bound[0.0025] == 3
    assert by_bound[0.1] == 4
    assert by_bound[0.5] == 5
    assert by_bound[10.0] == 5 and by_bound[float("inf")] == 6
    assert snapshot["count"] == 6 and abs(snapshot["sum"] - 11.4021) < 1e-9


def test_the_process_sample_counts_descriptors_memory_and_tasks() -> None:
    outside = process_sample()
    assert "tasks" not in outside  # no trio run to count
    assert outside["resident_memory_bytes"] > 2**20
    assert outside["cpu_seconds"] > 0
    assert 0 < outside["start_time_seconds"] <= time.time()
    read, write = os.pipe()
    try:
        assert process_sample()["open_fds"] == outside["open_fds"] + 2
    finally:
        os.close(read)
        os.close(write)

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            tasks = process_sample()["tasks"]
            nursery.cancel_scope.cancel()
        return tasks

    assert trio.run(main) >= 6  # the five, this one (and trio's own)


def test_close_codes_are_counted_by_a_label_a_peer_cannot_multiply() -> None:
    assert [close_code_label(c) for c in (1000, 1011, 1015, 3001, 4999, 2000, 999, 5000)] == [
        "1000",
        "1011",
        "1015",
        "3xxx",
        "4xxx",
        "other",
        "other",
        "other",
    ]
    counters = Counters()
    for code in (4001, 4002, 1000):
        counters.close_frame_received(code)
    counters.close_frame_sent(1011)
    assert counters.close_received == {"4xxx": 2, "1000": 1}
    assert counters.close_sent == {"1011": 1}


def test_a_refused_handshake_counts_in_both_totals() -> None:
    counters = Counters()
    for status in (101, 101, 403, 429):
        counters.handshake(status)
    assert counters.handshakes == {101: 2, 403: 1, 429: 1}
    assert counters.handshakes_rejected == 2
