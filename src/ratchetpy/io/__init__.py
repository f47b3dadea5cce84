"""The trio I/O layer: the only code of the server that imports trio or touches sockets.

- :mod:`~ratchetpy.io.server`: :class:`~ratchetpy.IoServer`: listening, one task per
  connection, graceful shutdown, timers and the way in from other threads;
- :mod:`~ratchetpy.io.transport`: the TCP connection at the bottom of every stack, its bounded
  outbound queue and merged non-blocking writes;
- :mod:`~ratchetpy.io.timers`: every ``call_later`` of a server in one heap served by one task;
- :mod:`~ratchetpy.io.tls`: TLS inside the same transport (``wss://``, ``https://``);
- :mod:`~ratchetpy.io.redis`, :mod:`~ratchetpy.io.redis_subscriber`,
  :mod:`~ratchetpy.io.redis_publisher`: Redis for the broker between worker processes: an
  ordered pipelined connection, a subscriber that does not go deaf, the one publish connection.
"""
