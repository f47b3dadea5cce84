"""What a worker measures of itself for its metrics, beyond the counters its layers keep: how
late the trio scheduler runs (:class:`SchedulerLag`), and the process's memory, descriptors,
CPU time and tasks (:func:`process_sample`).

Nothing here renders a metric: :mod:`ratchetpy.metrics` does, from the snapshot
:meth:`IoServer.metrics_snapshot() <ratchetpy.IoServer.metrics_snapshot>` makes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from bisect import bisect_left
from typing import Any

import trio

__all__ = ["LAG_BUCKETS", "LAG_PROBE_INTERVAL", "SchedulerLag", "process_sample"]

#: How often the probe asks to be woken: the lag is how late that wake-up comes.
LAG_PROBE_INTERVAL = 0.1
#: Upper bounds (seconds) of the lag histogram's buckets; a last one, +Inf, is implied.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class SchedulerLag:
    """A histogram of how late a timer fires in this trio run.

    :meth:`run` sleeps until a deadline ``LAG_PROBE_INTERVAL`` seconds ahead, again and
    again, and records how much later than the deadline it woke up. A handler that blocks
    the thread, or more ready work than one core can do, shows up here first: a few ms is
    a busy worker, hundreds of ms an overloaded one.
    """

    __slots__ = ("counts", "observed", "total")

    def __init__(self) -> None:
        #: Observations per bucket of :data:`LAG_BUCKETS`, the last one for over 10 s.
        self.counts = [0] * (len(LAG_BUCKETS) + 1)
        #: Seconds of lag in all.
        self.total = 0.0
        #: Observations in all.
        self.observed = 0

    def observe(self, lag: float) -> None:
        """Record one wake-up that came ``lag`` seconds late."""
        self.counts[bisect_left(LAG_BUCKETS, lag)] += 1
        self.total += lag
        self.observed += 1

    async def run(self) -> None:
        """Probe until cancelled (the server's nursery runs it while serving)."""
        while True:
            deadline = trio.current_time() + LAG_PROBE_INTERVAL
            await trio.sleep_until(deadline)
            self.observe(max(0.0, trio.current_time() - deadline))

    def snapshot(self) -> dict[str, Any]:
        """The histogram as plain data: cumulative counts per bucket bound, sum, count."""
        cumulative, running = [], 0
        for count in self.counts:
            running += count
            cumulative.append(running)
        return {"buckets": cumulative, "sum": self.total, "count": self.observed}


def process_sample() -> dict[str, float]:
    """This process now: resident memory (bytes), open file descriptors, CPU seconds (user
    plus system), when it started (Unix time), and the trio tasks alive (when called inside a
    trio run). Reads ``/proc`` where there is one; elsewhere the peak RSS stands in."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sample: dict[str, float] = {"cpu_seconds": usage.ru_utime + usage.ru_stime}
    try:
        with open("/proc/self/statm", "rb") as statm:
            sample["resident_memory_bytes"] = int(statm.read().split()[1]) * _PAGE_SIZE
        sample["open_fds"] = len(os.listdir("/proc/self/fd"))
    except OSError:
        sample["resident_memory_bytes"] = usage.ru_maxrss * 1024
    sample["start_time_seconds"] = _STARTED_AT
    with contextlib.suppress(RuntimeError):  # outside trio: no tasks to count
        sample["tasks"] = _count_tasks(trio.lowlevel.current_root_task())
    return sample


def _count_tasks(task: trio.lowlevel.Task | None) -> int:
    if task is None:
        return 0
    count, stack = 0, [task]
    while stack:
        current = stack.pop()
        count += 1
        for nursery in current.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


# The process's start, for process_start_time_seconds: from /proc when there is one (the
# true start), else the first import of this module.
def _process_start() -> float:
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as system:
            boot = next(float(line.split()[1]) for line in system if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return time.time()


_STARTED_AT = _process_start()
