"""Servers as subprocesses, their logs echoed and kept: the examples, the ``ratchetpy``
command, a supervisor and its workers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

#: Where the apps that the process tests serve live (their working directory).
SUPPORT = Path(__file__).resolve().parent

_READY = re.compile(r"worker \d+ \(pid (\d+)\) ready")
_SERVING = re.compile(r"(?:workers serving|rolling restart done): pids \[([\d, ]+)\]")


class ServerProcess:
    """A server (a command that logs ``listening on 127.0.0.1:PORT``) as a subprocess; its
    log (stderr) is collected and echoed. ``port`` is the one it logged first."""

    def __init__(self, command: list[str], name: str, *, cwd: Path | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._terminated = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self.wait_for_log(r"listening on 127\.0\.0\.1:(\d+)", timeout=20)
        self.port = int(listening[0].group(1))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            print(f"[{self.name} pid {self.proc.pid}] {line.rstrip()}", flush=True)
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_log(
        self, pattern: str, count: int = 1, timeout: float = 10
    ) -> list[re.Match[str]]:
        """Wait until ``count`` log lines match ``pattern`` (or the log ends); return them."""

        def found() -> list[re.Match[str]]:
            return [m for line in self.lines if (m := re.search(pattern, line))]

        with self._changed:
            self._changed.wait_for(lambda: len(found()) >= count or self._eof, timeout)
            matches = found()
            log = "".join(self.lines)
        if len(matches) < count:
            state = "exited" if self.proc.poll() is not None else "still running"
            raise AssertionError(
                f"{self.name} ({state}) logged {len(matches)} of {count} lines matching "
                f"{pattern!r}; its log:\n{log}"
            )
        return matches

    def errors(self) -> list[str]:
        """Log lines at level ERROR or above, and tracebacks."""
        return [
            line
            for line in self.lines
            if re.search(r" (ERROR|CRITICAL) ", line) or line.startswith("Traceback")
        ]

    def terminate(self) -> None:
        """Send SIGTERM (a graceful stop), once."""
        if not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (if not sent yet), wait for the exit; the exit status."""
        self.terminate()
        returncode = self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return returncode

    def kill(self) -> None:
        """SIGKILL, and SIGKILL to every worker it logged as ready (a supervisor's)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.worker_pids(every=True):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=5)

    def worker_pids(self, *, every: bool = False) -> list[int]:
        """A supervisor's workers: those serving now, as its log last said (``every``: all
        it ever started)."""
        if every:
            return [int(m.group(1)) for line in self.lines if (m := _READY.search(line))]
        for line in reversed(self.lines):
            if found := _SERVING.search(line):
                return [int(pid) for pid in found.group(1).split(", ")]
        return []


class ExampleProcess(ServerProcess):
    """An example server (``examples/NAME.py --port PORT ...``) as a subprocess."""

    def __init__(self, script: Path, port: int, *args: str) -> None:
        super().__init__([sys.executable, str(script), "--port", str(port), *args], script.name)


#: ``start(target, *options, workers=2)`` (the ``supervisor`` fixture): a supervisor serving.
StartWorkers = Callable[..., ServerProcess]
