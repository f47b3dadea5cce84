"""Sans-IO protocol code: bytes in, events out, and bytes to write back.

Nothing in this package touches a socket, a clock or trio, or knows about components: it
depends on the standard library, h11, wsproto and (for Redis, optional) hiredis only (an
import-linter contract checks it).
That is what lets the WebSocket codec, the handshake, the HTTP data types and the proxy
headers be tested, fuzzed and reused without a server.

- :mod:`~ratchetpy.protocol.websocket`: :class:`WebSocketProtocol`, the frame codec (RFC 6455)
  of one server-side connection, and the encoders of shared broadcast frames;
- :mod:`~ratchetpy.protocol.events`: what the codec reports (:class:`Message`, :class:`Ping`,
  :class:`Pong`, :class:`CloseReceived`, :class:`ProtocolFailure`);
- :mod:`~ratchetpy.protocol.deflate`: permessage-deflate (RFC 7692) negotiation and codec;
- :mod:`~ratchetpy.protocol.handshake`: the opening handshake, server side;
- :mod:`~ratchetpy.protocol.http`: :class:`HttpRequest`, :class:`HttpResponse`, :class:`Headers`,
  and the ``Host`` helpers ``split_host`` / ``host_matches``;
- :mod:`~ratchetpy.protocol.resp`, :mod:`~ratchetpy.protocol.redis_url` and
  :mod:`~ratchetpy.protocol.redis_pubsub`: the Redis protocol (commands out, replies in, over
  hiredis' parser), Redis URLs, and a subscriber connection's state;
- :mod:`~ratchetpy.protocol.envelope`: the envelope of a message between worker processes and
  the sequence check that finds gaps and duplicates;
- :mod:`~ratchetpy.protocol.chunked`: ``ChunkedBodyMeter``, the sizes a chunked request body
  announces, read alongside h11;
- :mod:`~ratchetpy.protocol.forwarded`: :class:`TrustedProxies`, the client address and scheme
  behind reverse proxies.
"""

from .deflate import DeflateParameters, negotiate_deflate
from .events import CloseReceived, Event, Message, Ping, Pong, ProtocolFailure
from .forwarded import ClientInfo, TrustedProxies
from .handshake import SUPPORTED_VERSION, UpgradeRequest, accept_response, parse_upgrade
from .http import Headers, HttpRequest, HttpResponse, http_response
from .websocket import (
    ProtocolState,
    WebSocketProtocol,
    encode_broadcast,
    encode_broadcast_compressed,
    encode_frame,
)

__all__ = [
    "SUPPORTED_VERSION",
    "ClientInfo",
    "CloseReceived",
    "DeflateParameters",
    "Event",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "Message",
    "Ping",
    "Pong",
    "ProtocolFailure",
    "ProtocolState",
    "TrustedProxies",
    "UpgradeRequest",
    "WebSocketProtocol",
    "accept_response",
    "encode_broadcast",
    "encode_broadcast_compressed",
    "encode_frame",
    "http_response",
    "negotiate_deflate",
    "parse_upgrade",
]
