"""permessage-deflate (RFC 7692): offer negotiation and the per-connection codec.

Sans-IO like the rest of the protocol layer: no trio here. The codec objects are created by
:class:`~ratchetpy.protocol.WebSocketProtocol` from the :class:`DeflateParameters` that
:func:`negotiate_deflate` agreed on during the handshake.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = ["DeflateParameters", "Deflater", "Inflater", "compress_alone", "negotiate_deflate"]

EXTENSION_NAME = "permessage-deflate"

# Appended by the receiver, stripped by the sender (RFC 7692 7.2.1 and 7.2.2).
_TAIL = b"\x00\x00\xff\xff"

# RFC 7692 7.1.2: the window bits value is 8..15 written without leading zeros.
_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])\Z")

# zlib's smallest memory level setting that websockets found not to hurt the ratio much; each
# compressor otherwise holds about 256 KiB, which matters with thousands of idle connections.
_MEM_LEVEL = 5


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """What both sides agreed on for permessage-deflate.

    ``server_*`` fields govern what this server compresses, ``client_*`` fields what it
    decompresses. Window bits are always concrete (15 when the response did not limit them).
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int


def _check_bits(name: str, value: int) -> None:
    if not 8 <= value <= 15:
        raise ValueError(f"{name} must be between 8 and 15, got {value!r}")


def _split_unquoted(text: str, sep: str) -> list[str] | None:
    """Split on ``sep`` outside double quotes; None when a quote is left open."""
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        return None
    parts.append(text[start:])
    return parts


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _parse_extension(item: str) -> tuple[str, list[tuple[str, str | None]]] | None:
    """Parse ``name; p1; p2=v`` into the lowercased name and its params; None when malformed."""
    pieces = _split_unquoted(item, ";")
    if pieces is None:
        return None
    name = pieces[0].strip()
    if not _TOKEN.match(name):
        return None
    params: list[tuple[str, str | None]] = []
    for piece in pieces[1:]:
        key, eq, raw = piece.partition("=")
        key = key.strip()
        if not _TOKEN.match(key):
            return None
        value: str | None = None
        if eq:
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
                # RFC 7692 7.1: a quoted value must still be a token once unquoted.
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            if not _TOKEN.match(raw):
                return None
            value = raw
        params.append((key.lower(), value))
    return name.lower(), params


def _accept_offer(
    params: list[tuple[str, str | None]],
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: int,
    client_max_window_bits: int | None,
) -> tuple[DeflateParameters, str] | None:
    seen: set[str] = set()
    offer_server_nct = False
    offer_client_nct = False
    offer_server_bits: int | None = None
    offer_client_bits: int | None = None
    offer_client_bits_present = False
    for key, value in params:
        if key in seen:
            return None
        seen.add(key)
        if key == "server_no_context_takeover":
            if value is not None:
                return None
            offer_server_nct = True
        elif key == "client_no_context_takeover":
            if value is not None:
                return None
            offer_client_nct = True
        elif key == "server_max_window_bits":
            if value is None or not _WINDOW_BITS.match(value):
                return None
            offer_server_bits = int(value)
        elif key == "client_max_window_bits":
            if value is not None and not _WINDOW_BITS.match(value):
                return None
            offer_client_bits_present = True
            offer_client_bits = None if value is None else int(value)
        else:
            return None

    response = [EXTENSION_NAME]
    # The server may always promise not to take over its own context, and must when asked.
    server_nct = offer_server_nct or server_no_context_takeover
    if server_nct:
        response.append("server_no_context_takeover")
    # Echoing the client's own promise lets us drop the decompressor between messages.
    client_nct = offer_client_nct or client_no_context_takeover
    if client_nct:
        response.append("client_no_context_takeover")

    if offer_server_bits is not None:
        server_bits = min(offer_server_bits, server_max_window_bits)
        response.append(f"server_max_window_bits={server_bits}")
    else:
        server_bits = server_max_window_bits
        if server_bits < 15:
            response.append(f"server_max_window_bits={server_bits}")

    wanted_client_bits = 15 if client_max_window_bits is None else client_max_window_bits
    if not offer_client_bits_present:
        if wanted_client_bits < 15:
            # The client did not say it can limit its window, so we cannot ask it to.
            return None
        client_bits = 15
    else:
        offered = 15 if offer_client_bits is None else offer_client_bits
        client_bits = min(offered, wanted_client_bits)
        if client_bits < 15 or offer_client_bits is not None:
            response.append(f"client_max_window_bits={client_bits}")

    agreed = DeflateParameters(
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    return agreed, "; ".join(response)


def negotiate_deflate(
    offer_header_values: list[str],
    *,
    server_no_context_takeover: bool = False,
    client_no_context_takeover: bool = False,
    server_max_window_bits: int = 15,
    client_max_window_bits: int | None = None,
) -> tuple[DeflateParameters, str] | None:
    """Pick the first acceptable permessage-deflate offer.

    ``offer_header_values`` are the client's ``Sec-WebSocket-Extensions`` header values; each may
    hold several comma-separated extensions with ``;``-separated parameters. Returns the agreed
    parameters and the header value to answer with, or None when no offer is acceptable (the
    connection then goes uncompressed). Malformed offers (unknown or repeated parameters, bad
    values) are skipped, as RFC 7692 section 5 asks, rather than failing the handshake.

    The keyword arguments are this server's wishes: ``server_max_window_bits`` caps the window we
    compress with, ``client_max_window_bits`` asks the client to cap its window (offers that do not
    allow that are skipped when it is below 15).
    """
    _check_bits("server_max_window_bits", server_max_window_bits)
    if client_max_window_bits is not None:
        _check_bits("client_max_window_bits", client_max_window_bits)
    for header_value in offer_header_values:
        items = _split_unquoted(header_value, ",")
        if items is None:
            continue
        for item in items:
            if not item.strip():
                continue
            parsed = _parse_extension(item)
            if parsed is None or parsed[0] != EXTENSION_NAME:
                continue
            accepted = _accept_offer(
                parsed[1],
                server_no_context_takeover,
                client_no_context_takeover,
                server_max_window_bits,
                client_max_window_bits,
            )
            if accepted is not None:
                return accepted
    return None


class Deflater:
    """Compresses whole outgoing messages for one connection."""

    __slots__ = ("_compressor", "_no_context_takeover", "_wbits")

    def __init__(self, params: DeflateParameters) -> None:
        self._no_context_takeover = params.server_no_context_takeover
        # zlib refuses an 8-bit window for raw deflate; 9 is what peers built on zlib expect.
        self._wbits = -max(params.server_max_window_bits, 9)
        # Created on first use so that idle connections do not hold zlib's buffers.
        self._compressor: zlib._Compress | None = None

    @property
    def shared_window_bits(self) -> int | None:
        """With no context takeover, the window bits every message is compressed with alone
        (so the same message compresses to the same bytes on every such connection); else
        ``None``: each message depends on this connection's history."""
        return self._wbits if self._no_context_takeover else None

    def compress(self, data: bytes) -> bytes:
        """Return the payload of one compressed message (RSV1 set by the caller)."""
        compressor = self._compressor
        if compressor is None:
            if self._no_context_takeover:
                return compress_alone(data, self._wbits)
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, self._wbits, _MEM_LEVEL
            )
        return _strip_tail(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))


def compress_alone(data: bytes, wbits: int) -> bytes:
    """The payload of ``data`` compressed as a message of its own (no context takeover) with
    the negative window bits ``wbits``: the same bytes for every connection that agreed on
    them, which lets a broadcast compress once."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, wbits, _MEM_LEVEL)
    return _strip_tail(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))


def _strip_tail(out: bytes) -> bytes:
    return out[:-4] if out.endswith(_TAIL) else out


class Inflater:
    """Decompresses incoming messages for one connection, never past a size bound."""

    __slots__ = ("_decompressor", "_ended", "_no_context_takeover", "_wbits")

    def __init__(self, params: DeflateParameters) -> None:
        self._no_context_takeover = params.client_no_context_takeover
        # Clients built on zlib compress with a 9-bit window when they agreed on 8, so accept it.
        self._wbits = -max(params.client_max_window_bits, 9)
        self._decompressor: zlib._Decompress | None = None
        # The message's deflate data ended with a final block: until the message ends, the
        # bytes that follow belong to no deflate stream and are ignored.
        self._ended = False

    def decompress(self, data: bytes | bytearray, max_length: int = 0) -> bytes:
        """Feed one piece of a compressed message; return at most ``max_length`` bytes (0: any).

        When exactly ``max_length`` bytes come back, input may be left over: callers pass their
        remaining budget plus one, so a longer result means the message is too big. Raises
        ``zlib.error`` on corrupt data.
        """
        if self._ended:
            return b""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(self._wbits)
        out = decompressor.decompress(data, max_length)
        if decompressor.eof:
            # The peer ended the stream with a BFINAL block (RFC 7692 7.2.3.4): what is left of
            # this message is ignored, as zlib leaves it unused when it comes in the same
            # piece (so the outcome does not depend on where the reads split the frame), and
            # the next message starts afresh, since nothing after a final block can refer back
            # into it.
            self._decompressor = None
            self._ended = True
        return out

    def finish_message(self, max_length: int = 0) -> bytes:
        """Feed the end-of-message tail and return what it flushes out (same bound rule)."""
        if self._ended:
            self._ended = False
            return b""
        decompressor = self._decompressor
        out = b""
        if decompressor is not None:
            out = decompressor.decompress(_TAIL, max_length)
        if self._no_context_takeover or (decompressor is not None and decompressor.eof):
            self._decompressor = None
        return out

    def decompress_message(self, data: bytes, max_length: int = 0) -> bytes:
        """Decompress a whole single-frame message (same bound rule as :meth:`decompress`)."""
        out = self.decompress(data, max_length)
        if max_length:
            if len(out) >= max_length:
                return out
            max_length -= len(out)
        return out + self.finish_message(max_length)
