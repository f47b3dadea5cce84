"""The dealer's side between workers: calls this worker sent to other workers' callees, and
the answers it owes to other workers' callers. Sans-IO (the broker's methods are awaited).

:class:`CallsAcross` owns this worker's channel of a realm (``wamp-rpc:<realm>:<worker>``),
numbers the calls it sends (``ref``), watches the workers that owe it answers, and tells the
:class:`~ratchetpy.wamp.dealer.Dealer`, which owns every open call, what happened through
three callbacks: a call for one of its callees came in, an answer came back, or a call sent
away cannot be answered any more (its callee's worker is gone, or the broker lost messages).
The wire format is :mod:`~ratchetpy.wamp.cluster_rpc`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from ..broker import MessageBroker
from ..exceptions import BrokerError, EncodeError
from .cluster_rpc import ClusterCall, ClusterReply, decode, procedure_key, rpc_channel
from .messages import BROKER_UNAVAILABLE, CANCELED, INVALID_ARGUMENT, NO_SUCH_PROCEDURE
from .realm import WampConnection

__all__ = ["CallsAcross", "RemoteCall", "RemoteCaller"]

logger = logging.getLogger("ratchetpy.wamp")

#: A call to send: the broker, the procedure, its arguments and keyword arguments.
Pending = tuple[MessageBroker, str, list[Any], dict[str, Any]]


class RemoteCall:
    """A call of a session of this worker that goes to a callee on another worker: ``pending``
    until it is sent, then ``ref`` on the callee's ``worker``."""

    __slots__ = ("call_id", "caller", "pending", "ref", "worker")

    def __init__(self, caller: WampConnection, call_id: int, pending: Pending) -> None:
        self.caller = caller
        self.call_id = call_id
        self.pending: Pending | None = pending
        self.ref = 0
        self.worker = ""


class RemoteCaller:
    """The caller's leg of an invocation made for call ``ref`` of another ``worker``."""

    __slots__ = ("ref", "worker")

    def __init__(self, worker: str, ref: int) -> None:
        self.worker = worker
        self.ref = ref


class CallsAcross:
    """The calls of one realm between this worker and the others (see the module docstring).

    ``on_call(call)``: a call for a callee of this worker. ``on_answer(remote, answer)``: the
    answer to a call sent away. ``on_lost(remote, error, why)``: a call sent away that will
    not be answered; the dealer answers its caller with the WAMP error ``error``.
    """

    def __init__(
        self,
        realm: str,
        *,
        on_call: Callable[[ClusterCall], None],
        on_answer: Callable[[RemoteCall, ClusterReply], None],
        on_lost: Callable[[RemoteCall, str, str], None],
    ) -> None:
        self.realm = realm
        self._on_call = on_call
        self._on_answer = on_answer
        self._on_lost = on_lost
        self._sent: dict[int, RemoteCall] = {}  # by ref, until answered or lost
        self._refs = itertools.count(1)
        self._awaited: dict[str, int] = {}  # worker -> calls it owes (watched while any)
        self._listening: MessageBroker | None = None

    async def listen(self, cluster: MessageBroker) -> None:
        """Receive this worker's calls and answers from now on. A checkpoint; BrokerError if
        the broker does not confirm it."""
        channel = rpc_channel(self.realm, cluster.worker_id)
        if self._listening is None:
            self._listening = cluster
            cluster.listen(channel, self._received)
        await cluster.wait_listening(channel)

    def detach(self) -> None:
        """The realm is gone: receive nothing more."""
        listening, self._listening = self._listening, None
        if listening is not None:
            listening.unlisten(rpc_channel(self.realm, listening.worker_id), self._received)

    async def send(self, remote: RemoteCall) -> tuple[str, str] | None:
        """Send ``remote`` to the worker of its procedure's callee (once): ``None`` once it
        is on its way, else the WAMP error and reason to answer its caller with. A
        checkpoint."""
        if remote.pending is None:
            return None
        (cluster, uri, args, kwargs), remote.pending = remote.pending, None
        try:
            await self.listen(cluster)  # before the answer can come
            found = await cluster.owner(procedure_key(self.realm, uri))
            # This worker as the owner: its own callee would have been found (a key whose
            # release Redis missed; its own messages would never come back to it).
            if found is None or not found[1].isdigit() or found[0] == cluster.worker_id:
                return NO_SUCH_PROCEDURE, f"no callee registered for {uri}"
            worker, registration_id = found[0], int(found[1])
            ref = next(self._refs)
            call = ClusterCall(ref, cluster.worker_id, uri, registration_id, args, kwargs)
            try:
                body = call.encode()
            except EncodeError as exc:
                return INVALID_ARGUMENT, f"arguments cannot cross: {exc}"
            remote.ref, remote.worker = ref, worker
            self._sent[ref] = remote
            if self._awaited.get(worker, 0) == 0:
                cluster.watch(worker, self._worker_gone)
            self._awaited[worker] = self._awaited.get(worker, 0) + 1
            receivers = await cluster.publish(rpc_channel(self.realm, worker), body)
        except BrokerError as exc:
            self.forget(remote)
            return BROKER_UNAVAILABLE, f"the call cannot cross workers: {exc}"
        if receivers == 0:
            self.forget(remote)
            return NO_SUCH_PROCEDURE, (
                f"the worker of the callee of {uri} does not listen: it stopped or lost the broker"
            )
        return None

    def reply(self, caller_leg: RemoteCaller, answer: ClusterReply) -> None:
        """Send the answer to a call of another worker (a refusal is logged by the broker; the
        caller's worker then fails the call once it notices)."""
        listening = self._listening
        if listening is None:
            return  # never listened: no call can have come from another worker
        try:
            body = answer.encode()
        except EncodeError as exc:
            why = [f"the answer cannot reach the caller: {exc}"]
            body = ClusterReply(answer.ref, INVALID_ARGUMENT, why, {}).encode()
        listening.publish_nowait(rpc_channel(self.realm, caller_leg.worker), body)

    def forget(self, remote: RemoteCall) -> None:
        """``remote`` needs no answer any more (answered, failed, or its caller left)."""
        if self._sent.pop(remote.ref, None) is None:
            return
        left = self._awaited[remote.worker] - 1
        if left:
            self._awaited[remote.worker] = left
            return
        del self._awaited[remote.worker]
        if self._listening is not None:
            self._listening.unwatch(remote.worker, self._worker_gone)

    def missed(self, channel: str) -> None:
        """Messages of ``channel`` may have been lost: if it is this worker's, answers to the
        calls sent away may be among them, and those calls fail."""
        listening = self._listening
        if listening is None or channel != rpc_channel(self.realm, listening.worker_id):
            return
        why = "the broker between workers lost messages: the answer may have been lost"
        for remote in list(self._sent.values()):
            self.forget(remote)
            self._on_lost(remote, BROKER_UNAVAILABLE, why)

    def _worker_gone(self, worker: str) -> None:
        why = f"the callee's worker ({worker}) stopped before answering"
        for remote in [r for r in self._sent.values() if r.worker == worker]:
            self.forget(remote)
            self._on_lost(remote, CANCELED, why)

    def _received(self, body: bytes) -> None:
        try:
            message = decode(body)
        except ValueError as exc:
            logger.warning("dropped a message of realm %s from another worker: %s", self.realm, exc)
            return
        if isinstance(message, ClusterCall):
            self._on_call(message)
            return
        remote = self._sent.get(message.ref)
        if remote is None:
            return  # failed already (its worker seemed gone), or its caller left
        self.forget(remote)
        self._on_answer(remote, message)
