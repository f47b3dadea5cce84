"""Components: the layers of the stack and the base classes of yours (Ratchet's components).

Each receives ``on_open`` / ``on_message`` / ``on_close`` / ``on_error`` from the layer below
and talks only to the connection object it was given (``send``, ``close``, ``call_later``). They
drive the sans-IO code of :mod:`ratchetpy.protocol` and never import trio or touch a socket (an
import-linter contract checks it), so each one is tested with an in-memory connection
(:mod:`ratchetpy.testing`).

- :mod:`~ratchetpy.components.base`: :class:`MessageComponent`, :class:`HttpComponent`,
  :class:`HttpDecorator`, and how layers call handlers that may be ``async``;
- :mod:`~ratchetpy.components.connection`: :class:`Connection` (what a component sees of a
  client) and the :class:`Transport` the I/O layer provides;
- :mod:`~ratchetpy.components.http_server`: :class:`HttpServer` (requests, limits, keep-alive);
- :mod:`~ratchetpy.components.ws_server`: :class:`WsServer` (the handshake, options);
- :mod:`~ratchetpy.components.ws_connection`: :class:`WsConnection` (frames, closing,
  keepalive, slow consumers) and :func:`broadcast`;
- :mod:`~ratchetpy.components.router`, :mod:`~ratchetpy.components.endpoint`,
  :mod:`~ratchetpy.components.static`: routes, functions as endpoints, files;
- :mod:`~ratchetpy.components.guards`, :mod:`~ratchetpy.components.auth`,
  :mod:`~ratchetpy.components.session`: who may connect, who they are, their web session.

The WAMP router is a component too, in a package of its own: :mod:`ratchetpy.wamp`.
"""
