"""Many worker processes on one port: the :class:`Supervisor`, what a worker gets from it, and
how a serving worker keeps itself in the broker's registry of live workers (:func:`announce`).

``IoServer.run(workers=4)`` (``App.run(workers=4)``, ``ratchetpy serve ... --workers 4``)
makes the process a supervisor. It binds the port once and starts the same program again
four times, as workers, each inheriting the listening socket: the kernel hands each
connection to one of them, and a worker that dies leaves the connections still queued to the
others. trio cannot fork once it runs, and a program's ``__main__`` builds its app itself, so
a worker is the same command line again (``sys.orig_argv``) with three environment variables:

``RATCHETPY_LISTEN_FD``
    The inherited listening socket (absent with ``reuse_port``: each worker binds its own
    with ``SO_REUSEPORT``, for process managers that start workers themselves).
``RATCHETPY_SUPERVISOR_FD``
    One end of a socket pair: the worker writes ``ready`` on it once it serves (its broker
    connected), and shuts down gracefully when the supervisor's end closes (the supervisor
    died, even by SIGKILL: no worker outlives it).
``RATCHETPY_WORKER``
    The worker's number, 1 to N, for its logs.

The supervisor (this module; the worker's side is :class:`WorkerLink`):

* starts every worker and waits until each is ready; if one exits before it ever was, it
  stops the others and raises :class:`~ratchetpy.ServerError` with the reason (the worker
  printed its own error);
* restarts a worker that exits later, with exponential backoff (reset once a worker stayed up
  for a minute);
* on SIGTERM or SIGINT sends SIGTERM to every worker (each shuts down gracefully: 1001 to
  every client, queued data flushed) and waits for them (``shutdown_timeout`` plus a margin,
  then SIGKILL); a second signal is passed on, which stops workers at once;
* on SIGHUP restarts the workers one by one: a new worker is ready (serving, on the same
  socket) before the old one is told to drain, so no connection attempt is refused.

Workers run in sessions of their own, so a terminal's Ctrl-C reaches the supervisor only,
which passes it on once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ..broker import MessageBroker
from ..exceptions import BrokerError, ServerError

__all__ = ["Supervisor", "WorkerLink", "announce", "withdraw", "worker_command"]

logger = logging.getLogger("ratchetpy.workers")

LISTEN_FD = "RATCHETPY_LISTEN_FD"
SUPERVISOR_FD = "RATCHETPY_SUPERVISOR_FD"
WORKER = "RATCHETPY_WORKER"

_READY = b"ready\n"
# A worker that stayed up this long had no start-up problem: the next restart is quick again.
_STABLE_AFTER = 60.0
# Beyond shutdown_timeout, what a worker may take to flush its broker and exit.
_EXIT_MARGIN = 5.0


# How often a serving worker tells the others it is alive, and how long that holds: a worker
# that died is out of every worker's list within ANNOUNCE_TTL seconds.
ANNOUNCE_EVERY = 1.0
ANNOUNCE_TTL = 3.0


async def announce(
    broker: MessageBroker,
    info: Callable[[], dict[str, Any]],
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    """Put this worker in the broker's registry with ``info()``, report started, and renew it
    every ``ANNOUNCE_EVERY`` seconds until ``scope`` is cancelled. A refusal is logged (at
    DEBUG: the broker logs its outages itself) and tried again next time."""

    async def once() -> None:
        try:
            await broker.announce(json.dumps(info()).encode(), ANNOUNCE_TTL)
        except BrokerError as exc:
            logger.debug("could not announce this worker: %s", exc)

    with scope:
        await once()
        task_status.started()
        while True:
            await trio.sleep(ANNOUNCE_EVERY)
            await once()


async def withdraw(broker: MessageBroker) -> None:
    """Take this worker out of the registry now (a graceful stop), waiting at most a second:
    else its entry expires by itself. A checkpoint."""
    with trio.move_on_after(1.0):
        try:
            await broker.leave()
        except BrokerError as exc:
            logger.debug("could not withdraw this worker: %s (it expires)", exc)


def worker_command() -> list[str]:
    """The command line that starts this program again: the interpreter, then the original
    arguments (``-m ratchetpy serve ...``, ``examples/chat.py --port 8080``, a console script).

    Raises :class:`~ratchetpy.ServerError` for an interactive interpreter, which has no
    program to start again.
    """
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if len(argv) < 2 or argv[1] == "-i":
        raise ServerError(
            "workers start the program again, and an interactive interpreter is none: "
            "run a script, a module (python -m) or the ratchetpy command"
        )
    return [sys.executable, *argv[1:]]


class WorkerLink:
    """What a worker process got from its supervisor; :meth:`from_environment` reads it."""

    def __init__(self, index: int, listen_fd: int | None, supervisor_fd: int) -> None:
        self.index = index
        self.listen_fd = listen_fd
        self.supervisor_fd = supervisor_fd

    @staticmethod
    def in_worker() -> bool:
        """True in a worker process whose link was not read yet."""
        return SUPERVISOR_FD in os.environ

    @classmethod
    def from_environment(cls) -> WorkerLink | None:
        """The link if this process is a worker (once: the variables are removed, so that a
        program the worker starts does not take itself for one)."""
        supervisor = os.environ.pop(SUPERVISOR_FD, None)
        listen = os.environ.pop(LISTEN_FD, None)
        index = os.environ.pop(WORKER, None)
        if supervisor is None:
            return None
        try:
            return cls(int(index or 0), int(listen) if listen else None, int(supervisor))
        except ValueError:
            raise ServerError(
                f"a worker's environment that makes no sense: {SUPERVISOR_FD}"
            ) from None

    def listener(self) -> socket.socket | None:
        """The inherited listening socket (``None`` with ``reuse_port``)."""
        if self.listen_fd is None:
            return None
        sock = socket.socket(fileno=self.listen_fd)
        sock.setblocking(False)
        return sock

    async def run(self, shutdown: Callable[[], object]) -> None:
        """Say ``ready``, then wait until the supervisor's end closes and call ``shutdown()``.
        A checkpoint; runs until then or until cancelled (the server stopped first)."""
        stream = trio.SocketStream(
            trio.socket.from_stdlib_socket(socket.socket(fileno=self.supervisor_fd))
        )
        try:
            await stream.send_all(_READY)
            while await stream.receive_some(64):
                pass
        except (trio.BrokenResourceError, OSError):
            pass
        logger.warning("worker %d: the supervisor is gone; shutting down", self.index)
        shutdown()


@dataclass(eq=False)
class _Worker:
    """One worker process, as the supervisor follows it."""

    index: int
    process: trio.Process
    ready: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)
    started_at: float = 0.0
    retiring: bool = False  # told to stop by a rolling restart or a shutdown

    def describe(self) -> str:
        return f"worker {self.index} (pid {self.process.pid})"

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


class Supervisor:
    """Start ``workers`` copies of ``command`` on one listening socket and keep them up.

    ``listener``: the bound, listening socket the workers inherit; ``None`` when each worker
    binds its own (``reuse_port``). ``shutdown_timeout``: what each worker's graceful stop
    may take. ``backoff``: ``(first, most)`` seconds between restarts of a crashed worker.
    ``ready_timeout``: seconds a new worker may take to say it serves.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        workers: int,
        listener: socket.socket | None,
        shutdown_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.5, 10.0),
        ready_timeout: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.command = list(command)
        self.workers = workers
        self.listener = listener
        self.shutdown_timeout = shutdown_timeout
        self.backoff = backoff
        self.ready_timeout = ready_timeout
        #: Workers restarted after they exited unexpectedly, since :meth:`serve` started.
        self.restarts = 0
        self._slots: list[_Worker | None] = [None] * workers
        self._stopping = False
        self._restarting = False
        self._nursery: trio.Nursery | None = None

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers now serving, by worker number."""
        return [w.process.pid for w in self._slots if w is not None and w.ready.is_set()]

    def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every worker gracefully. Blocks.
        Raises :class:`~ratchetpy.ServerError` if the workers could not start."""
        failure = trio.run(self._run_until_signalled)
        if failure is not None:
            raise failure  # here, as itself, not inside the exception group of a nursery

    async def _run_until_signalled(self) -> ServerError | None:
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        with trio.open_signal_receiver(*signals) as received:
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(self.serve)
                except ServerError as exc:
                    return exc

                async def watch() -> None:
                    async for signum in received:
                        if signum == signal.SIGHUP:
                            nursery.start_soon(self.rolling_restart)
                        elif self._stopping:
                            logger.warning("second %s: stopping the workers now", _name(signum))
                            self._signal_all(signal.SIGTERM)  # a worker's second: at once
                        else:
                            logger.info("%s: stopping the workers", _name(signum))
                            nursery.start_soon(self._stop_then_cancel, nursery.cancel_scope)

                nursery.start_soon(watch)
        return None

    async def _stop_then_cancel(self, scope: trio.CancelScope) -> None:
        await self.stop()
        scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers, report started once every one is ready, then keep them up until
        cancelled (which kills them: call :meth:`stop` first for a graceful end). Raises
        :class:`~ratchetpy.ServerError` if a worker exits before it was ever ready."""
        failure: ServerError | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                started: dict[int, _Worker | None] = {}

                async def start(index: int) -> None:
                    started[index] = await self._start(index)

                async with trio.open_nursery() as starting:  # all at once: each imports the app
                    for index in range(1, self.workers + 1):
                        starting.start_soon(start, index)
                for index, worker in sorted(started.items()):
                    self._slots[index - 1] = worker
                failed = [index for index, worker in sorted(started.items()) if worker is None]
                if failed:
                    failure = ServerError(
                        f"worker {failed[0]} could not start (its error is above); stopped"
                    )
                else:
                    logger.info("%d workers serving: pids %s", self.workers, self.pids)
                    task_status.started()
                    for index in range(1, self.workers + 1):
                        nursery.start_soon(self._keep, index)
                    await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self._kill_all()
        if failure is not None:
            raise failure  # after the nursery, so that it is not wrapped in its group

    async def stop(self) -> None:
        """Stop every worker gracefully and wait until they exited (SIGKILL after
        ``shutdown_timeout`` plus a margin). A checkpoint."""
        self._stopping = True
        for worker in self._slots:
            if worker is not None:
                worker.retiring = True
        self._signal_all(signal.SIGTERM)
        with trio.move_on_after(self.shutdown_timeout + _EXIT_MARGIN):
            for worker in self._slots:
                if worker is not None:
                    await worker.exited.wait()
        await self._kill_all()

    async def rolling_restart(self) -> None:
        """Replace the workers one by one, each by a new one that is ready before the old one
        drains. A checkpoint. If a new worker cannot start, the old one stays and the restart
        stops there (logged)."""
        if self._restarting:
            logger.warning("a rolling restart is under way already; this one is ignored")
            return
        self._restarting = True
        try:
            await self._replace_each()
        finally:
            self._restarting = False

    async def _replace_each(self) -> None:
        logger.info("rolling restart of %d workers", self.workers)
        for index in range(1, self.workers + 1):
            if self._stopping:
                return
            old = self._slots[index - 1]
            new = await self._start(index)
            if new is None:
                logger.error("rolling restart: a new worker %d could not start; stopped", index)
                return
            self._slots[index - 1] = new
            if old is not None:
                old.retiring = True
                old.signal(signal.SIGTERM)
                with trio.move_on_after(self.shutdown_timeout + _EXIT_MARGIN):
                    await old.exited.wait()
                old.signal(signal.SIGKILL)
        logger.info("rolling restart done: pids %s", self.pids)

    # -- internals ---------------------------------------------------------------------------

    async def _start(self, index: int) -> _Worker | None:
        """Start worker ``index`` and return it once ready; ``None`` if it exited (or was
        killed for not being ready in time) before."""
        assert self._nursery is not None
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env[SUPERVISOR_FD] = str(theirs.fileno())
        env[WORKER] = str(index)
        fds = [theirs.fileno()]
        if self.listener is not None:
            env[LISTEN_FD] = str(self.listener.fileno())
            fds.append(self.listener.fileno())
        else:
            env.pop(LISTEN_FD, None)
        try:
            process = await trio.lowlevel.open_process(
                self.command, env=env, pass_fds=fds, start_new_session=True
            )
        except OSError as exc:
            ours.close()
            raise ServerError(f"cannot start a worker ({self.command[0]}): {exc}") from exc
        finally:
            theirs.close()
        worker = _Worker(index, process)
        self._nursery.start_soon(self._follow, worker, ours)
        with trio.move_on_after(self.ready_timeout):
            while not (worker.ready.is_set() or worker.exited.is_set()):
                await _first_of(worker.ready, worker.exited)
        if worker.ready.is_set():
            worker.started_at = trio.current_time()
            logger.info("%s ready", worker.describe())
            return worker
        if not worker.exited.is_set():
            logger.error("%s not ready in %g s; killing it", worker.describe(), self.ready_timeout)
            worker.signal(signal.SIGKILL)
            await worker.exited.wait()
        logger.error(
            "%s exited with status %s before serving", worker.describe(), process.returncode
        )
        return None

    async def _follow(self, worker: _Worker, link: socket.socket) -> None:
        """Watch ``worker``: its ``ready``, then its exit. The link is held open while it
        lives (closing it tells the worker the supervisor is gone)."""
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(link))
        async with trio.open_nursery() as nursery:

            async def read_ready() -> None:
                received = b""
                try:
                    while len(received) < len(_READY):
                        data = await stream.receive_some(64)
                        if not data:
                            return
                        received += data
                except (trio.BrokenResourceError, OSError):
                    return
                if received.startswith(_READY):
                    worker.ready.set()

            nursery.start_soon(read_ready)
            await worker.process.wait()
            nursery.cancel_scope.cancel()
        await stream.aclose()
        worker.exited.set()

    async def _keep(self, index: int) -> None:
        """Keep slot ``index`` served: restart its worker when it exits unexpectedly."""
        delay = self.backoff[0]
        while True:
            worker = self._slots[index - 1]
            assert worker is not None
            await worker.exited.wait()
            if self._stopping:
                return
            if worker.retiring or self._slots[index - 1] is not worker:
                continue  # replaced by a rolling restart: follow the new one
            uptime = trio.current_time() - worker.started_at
            if uptime >= _STABLE_AFTER:
                delay = self.backoff[0]
            logger.warning(
                "%s exited with status %s after %.1f s; restarting it in %.1f s",
                worker.describe(),
                worker.process.returncode,
                uptime,
                delay,
            )
            while True:
                await trio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                if self._stopping:
                    return
                replacement = await self._start(index)
                if replacement is not None:
                    self._slots[index - 1] = replacement
                    self.restarts += 1
                    break

    def _signal_all(self, signum: int) -> None:
        for worker in self._slots:
            if worker is not None:
                worker.signal(signum)

    async def _kill_all(self) -> None:
        for worker in self._slots:
            if worker is not None and worker.process.returncode is None:
                logger.warning("%s did not stop in time; killing it", worker.describe())
                worker.signal(signal.SIGKILL)
                await worker.process.wait()


async def _first_of(*events: trio.Event) -> None:
    """Return once any of ``events`` is set. A checkpoint."""
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)


def _name(signum: int) -> str:
    return signal.Signals(signum).name
