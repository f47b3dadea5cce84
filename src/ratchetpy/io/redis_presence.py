"""Presence in Redis: who is in each scope, on every worker, and who came online or went
offline. Owned by :class:`~ratchetpy.io.redis_broker.RedisBroker` (its ``presence`` part).

Per worker ``W`` and scope ``S`` (every key after the broker's prefix):

``presence:W:S``
    a hash, member -> ``user\\ninfo`` (``user`` empty for an anonymous member);
``presence-users:W:S``
    a hash, user -> how many of W's members in S are that user;
``presence-scopes:W``
    the scopes W has members in.

Readers take only live workers into account (the registry: ``worker:W`` exists), so the
members of a worker that died vanish with its announcement. Every change runs as one Lua
script, atomic in Redis: the script that adds a user's first member on W looks at every other
live worker, and only if none has that user publishes "online" on ``presence:S``, so two
workers adding the same user at once cannot both say it. Leaving is the same for "offline".
Members joining and leaving are published by the same scripts ("join", "leave"). Each worker,
every time it announces itself, runs a script that *reaps* every worker whose announcement
expired: the one worker whose ``SREM`` wins deletes its keys and publishes "leave" for each
of its members and "offline" for its users who are nowhere else.

Events are published by the scripts themselves, so every worker sees them in the order Redis
ran them. They carry an envelope whose origin is ``presence`` and one sequence per scope
(``presence-seq:S``, which expires after a day without events). A sequence starts from Redis'
clock in microseconds, so it stays above every number given before, also after its key
expired or Redis restarted empty: receivers never take new events for old ones (a restart
shows as a gap, which it is).

This worker's own members are kept here too (the truth Redis mirrors). Writes are queued in
order and sent by :meth:`RedisPresence.run`; one that Redis did not take marks the mirror
stale, and the next announcement writes this worker's presence again, without events. A
worker whose own announcement was gone (Redis restarted empty, or it was reaped after a
pause longer than the registry's ttl) writes it again with "join" and "online" events: the
others were told that its members left, or know nothing.
"""

from __future__ import annotations

import logging

import trio

from ..broker import PresenceEntry, check_user
from ..exceptions import BrokerError, BrokerUnavailable
from .redis import receive_batch
from .redis_publisher import RedisPublisher

__all__ = ["RedisPresence"]

logger = logging.getLogger("ratchetpy.broker")

_BATCH = 256

# Shared by the scripts below. ARGV[1] is always the prefix.
_PRELUDE = """
local prefix = ARGV[1]
local function elsewhere(me, scope, user)
  for _, w in ipairs(redis.call('SMEMBERS', prefix .. 'workers')) do
    if w ~= me and redis.call('EXISTS', prefix .. 'worker:' .. w) == 1
       and redis.call('HEXISTS', prefix .. 'presence-users:' .. w .. ':' .. scope, user) == 1
    then
      return true
    end
  end
  return false
end
local function tell(scope, kind, user, member, info)
  local channel = prefix .. 'presence:' .. scope
  -- Nobody listens (a scope no worker follows, such as a topic's subscribers): no event, and
  -- no number spent on it.
  if redis.call('PUBSUB', 'NUMSUB', channel)[2] == 0 then return end
  local numbers = prefix .. 'presence-seq:' .. scope
  if redis.call('EXISTS', numbers) == 0 then
    -- From Redis' clock in microseconds: above every number given before, also after the
    -- key expired or Redis restarted empty, so receivers never take new ones for old.
    local now = redis.call('TIME')
    redis.call('SET', numbers, now[1] .. string.format('%06d', tonumber(now[2])))
  end
  local seq = redis.call('INCR', numbers)
  redis.call('PEXPIRE', numbers, 86400000)
  local body = cjson.encode({kind, user, member or '', info or ''})
  -- (%d: a number this large would be written as a float by '..')
  local header = 'rp1 presence ' .. string.format('%d', seq) .. '\\n'
  redis.call('PUBLISH', channel, header .. body)
end
local function depart(w, quiet)
  local scopes = prefix .. 'presence-scopes:' .. w
  local count = 0
  for _, scope in ipairs(redis.call('SMEMBERS', scopes)) do
    local members = prefix .. 'presence:' .. w .. ':' .. scope
    local users = prefix .. 'presence-users:' .. w .. ':' .. scope
    local entries = redis.call('HGETALL', members)
    local gone = redis.call('HKEYS', users)
    redis.call('DEL', members, users)
    count = count + #entries / 2
    if not quiet then
      for i = 1, #entries, 2 do
        tell(scope, 'leave', string.match(entries[i + 1], '^([^\\n]*)\\n'), entries[i])
      end
      for _, user in ipairs(gone) do
        if not elsewhere(w, scope, user) then tell(scope, 'offline', user) end
      end
    end
  end
  redis.call('DEL', scopes)
  return count
end
"""

# ARGV: prefix, worker, scope, member, user ('' for none), info, quiet ('1': no event)
_PRESENT = (
    _PRELUDE
    + """
local me, scope, member, user = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('HSET', prefix .. 'presence:' .. me .. ':' .. scope, member, user .. '\\n' .. ARGV[6])
redis.call('SADD', prefix .. 'presence-scopes:' .. me, scope)
if ARGV[7] ~= '1' then tell(scope, 'join', user, member, ARGV[6]) end
if user ~= '' then
  local users = prefix .. 'presence-users:' .. me .. ':' .. scope
  if redis.call('HINCRBY', users, user, 1) == 1 and ARGV[7] ~= '1'
     and not elsewhere(me, scope, user) then
    tell(scope, 'online', user)
  end
end
return 1
"""
)

# ARGV: prefix, worker, scope, member
_ABSENT = (
    _PRELUDE
    + """
local me, scope, member = ARGV[2], ARGV[3], ARGV[4]
local members = prefix .. 'presence:' .. me .. ':' .. scope
local value = redis.call('HGET', members, member)
if not value then return 0 end
redis.call('HDEL', members, member)
local user = string.match(value, '^([^\\n]*)\\n')
tell(scope, 'leave', user, member)
if user and user ~= '' then
  local users = prefix .. 'presence-users:' .. me .. ':' .. scope
  if redis.call('HINCRBY', users, user, -1) <= 0 then
    redis.call('HDEL', users, user)
    if not elsewhere(me, scope, user) then tell(scope, 'offline', user) end
  end
end
if redis.call('HLEN', members) == 0 then
  redis.call('SREM', prefix .. 'presence-scopes:' .. me, scope)
end
return 1
"""
)

# ARGV: prefix. Returns, per worker it reaped: its id, how many members it had.
_REAP = (
    _PRELUDE
    + """
local out = {}
for _, w in ipairs(redis.call('SMEMBERS', prefix .. 'workers')) do
  if redis.call('EXISTS', prefix .. 'worker:' .. w) == 0
     and redis.call('SREM', prefix .. 'workers', w) == 1 then
    out[#out + 1] = w
    out[#out + 1] = depart(w, false)
  end
end
return out
"""
)

# ARGV: prefix, worker, quiet ('1': clear this worker's presence without events)
_DEPART = (
    _PRELUDE
    + """
depart(ARGV[2], ARGV[3] == '1')
return 1
"""
)

# ARGV: prefix, scope, 'count' or 'list'
_READ = """
local prefix, scope = ARGV[1], ARGV[2]
local out, n = {}, 0
for _, w in ipairs(redis.call('SMEMBERS', prefix .. 'workers')) do
  if redis.call('EXISTS', prefix .. 'worker:' .. w) == 1 then
    local members = prefix .. 'presence:' .. w .. ':' .. scope
    if ARGV[3] == 'count' then
      n = n + redis.call('HLEN', members)
    else
      local entries = redis.call('HGETALL', members)
      for i = 1, #entries, 2 do
        out[#out + 1] = w
        out[#out + 1] = entries[i]
        out[#out + 1] = entries[i + 1]
      end
    end
  end
end
if ARGV[3] == 'count' then return n end
return out
"""


def _entry(scope: str, worker: bytes, member: bytes, value: bytes) -> PresenceEntry:
    user, _, info = value.decode("utf-8", "replace").partition("\n")
    return PresenceEntry(
        scope,
        worker.decode("utf-8", "replace"),
        member.decode("utf-8", "replace"),
        user or None,
        info,
    )


class RedisPresence:
    """This worker's presence, mirrored into Redis through ``publisher`` (see the module
    docstring). :meth:`run` is the task that writes; :meth:`refresh` (each announcement)
    reaps dead workers and writes everything again when the mirror went stale. A read waits
    until this worker's queued changes are written: it sees its own worker's changes."""

    def __init__(
        self, publisher: RedisPublisher, prefix: str, worker_id: str, *, max_queue: int
    ) -> None:
        self.publisher = publisher
        self.prefix = prefix
        self.worker_id = worker_id
        self._members: dict[str, dict[str, tuple[str | None, str]]] = {}
        self._send, self._queue = trio.open_memory_channel[tuple[str | bytes, ...]](max_queue)
        self._stale = False  # a write Redis did not take: write everything again
        self._closed = False  # left: nothing more is written
        self._writing = trio.Lock()  # a batch and a departure never cross
        # Changes queued and changes written or refused so far, and batches refused: what
        # a wait for "everything queued until now" compares.
        self._queued = 0
        self._done = 0
        self._failures = 0
        self._progress = trio.Event()  # set (and replaced) after each batch

    # -- this worker's members -----------------------------------------------------------------

    def present(self, scope: str, member: str, *, user: str | None = None, info: str = "") -> None:
        check_user(user)
        members = self._members.setdefault(scope, {})
        before = members.get(member)
        if before == (user, info):
            return
        members[member] = (user, info)
        if before is not None and before[0] == user:  # the same user, new info: no event
            key = f"{self.prefix}presence:{self.worker_id}:{scope}"
            self._write(("HSET", key, member, f"{user or ''}\n{info}"))
            return
        if before is not None:
            self._write(self._absent_command(scope, member))
        self._write(self._present_command(scope, member, user, info, quiet=False))

    def absent(self, scope: str, member: str) -> None:
        members = self._members.get(scope)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._members[scope]
        self._write(self._absent_command(scope, member))

    # -- every worker's ------------------------------------------------------------------------

    async def written(self) -> None:
        """Return once what was queued until now is written; BrokerUnavailable if it was not
        within the publisher's buffer time, or Redis refused it (it is written again)."""
        target, failures = self._queued, self._failures
        if not await self._wait_done(target, self.publisher.buffer_time) or (
            self._failures != failures
        ):
            raise BrokerUnavailable(
                f"{self.publisher.address.describe()} did not take this worker's presence "
                f"within {self.publisher.buffer_time:g} s (it is written again once it can)"
            )

    async def presence(self, scope: str) -> list[PresenceEntry]:
        await self.flush(self.publisher.buffer_time)  # this worker's own changes first
        flat = await self.publisher.evaluate(_READ, [], self.prefix, scope, "list")
        return [_entry(scope, *flat[i : i + 3]) for i in range(0, len(flat), 3)]

    async def presence_count(self, scope: str) -> int:
        await self.flush(self.publisher.buffer_time)
        return int(await self.publisher.evaluate(_READ, [], self.prefix, scope, "count"))

    # -- upkeep --------------------------------------------------------------------------------

    async def refresh(self, *, lost: bool) -> None:
        """Reap the workers whose announcement expired, and write this worker's presence again
        if Redis missed a write or lost it (``lost``: this worker's announcement was gone). A
        checkpoint; BrokerError if Redis could not be asked."""
        reaped = await self.publisher.evaluate(_REAP, [], self.prefix)
        for index in range(0, len(reaped), 2):
            logger.info(
                "worker %s is gone: its %d members of presence scopes left",
                reaped[index].decode("utf-8", "replace"),
                reaped[index + 1],
            )
        if (lost or self._stale) and not self._closed:
            # Lost: the others were told these members left (reaped), or Redis restarted
            # and knows nothing: they join again, with events. Only missed writes: quietly.
            await self._rewrite(quiet=not lost)

    async def leave(self) -> None:
        """Take every member of this worker out now (a graceful stop), telling who went
        offline. A checkpoint; BrokerError if Redis did not take it (they expire then)."""
        async with self._writing:
            self._closed = True
            self._members.clear()
            await self.publisher.command("EVAL", _DEPART, "0", self.prefix, self.worker_id, "0")

    async def flush(self, timeout: float) -> int:
        """Wait (at most ``timeout`` seconds) until every change queued until now was written
        or refused; returns how many were still queued then. A checkpoint."""
        await self._wait_done(self._queued, timeout)
        return max(0, self._queued - self._done)

    async def _wait_done(self, target: int, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while self._done < target:
                await self._progress.wait()
            await trio.lowlevel.checkpoint()
            return True
        return False

    async def run(self) -> None:
        """Write what :meth:`present` and :meth:`absent` queued, in order, until cancelled."""
        while True:
            batch = await receive_batch(self._queue, _BATCH)
            try:
                async with self._writing:
                    if not self._closed:
                        await self.publisher.commands(batch)
            except BrokerError as exc:
                self._stale = True
                self._failures += 1
                logger.warning(
                    "%d presence changes did not reach %s (%s): written again once it is back",
                    len(batch),
                    self.publisher.address.describe(),
                    exc,
                )
            finally:
                self._done += len(batch)
                self._progress.set()
                self._progress = trio.Event()

    # -- internals -----------------------------------------------------------------------------

    def _write(self, command: tuple[str | bytes, ...]) -> None:
        if self._closed:
            return
        try:
            self._send.send_nowait(command)
        except trio.WouldBlock:
            self._stale = True  # too many at once: the next announcement writes all
            self._failures += 1
        else:
            self._queued += 1

    async def _rewrite(self, *, quiet: bool) -> None:
        self._stale = False
        commands: list[tuple[str | bytes, ...]] = [
            ("EVAL", _DEPART, "0", self.prefix, self.worker_id, "1")
        ]
        for scope, members in self._members.items():
            for member, (user, info) in members.items():
                commands.append(self._present_command(scope, member, user, info, quiet=quiet))
        async with self._writing:
            try:
                for start in range(0, len(commands), _BATCH):
                    await self.publisher.commands(commands[start : start + _BATCH])
            except BrokerError:
                self._stale = True
                raise
        logger.info("presence of this worker written again (%d members)", len(commands) - 1)

    def _present_command(
        self, scope: str, member: str, user: str | None, info: str, *, quiet: bool
    ) -> tuple[str | bytes, ...]:
        return (
            "EVAL",
            _PRESENT,
            "0",
            self.prefix,
            self.worker_id,
            scope,
            member,
            user or "",
            info,
            "1" if quiet else "0",
        )

    def _absent_command(self, scope: str, member: str) -> tuple[str | bytes, ...]:
        return ("EVAL", _ABSENT, "0", self.prefix, self.worker_id, scope, member)
