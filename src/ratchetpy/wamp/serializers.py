"""WAMP v2 serializers: WebSocket messages <-> WAMP message lists, sans-IO.

The WebSocket subprotocol names the serializer: ``wamp.2.json`` travels in text messages,
``wamp.2.msgpack`` in binary ones. Both share one small interface (:class:`Serializer`):

* ``decode(data)`` takes a message *from a client* and returns the list inside it, or raises
  :class:`SerializationError` (the client's fault: wrong frame type, undecodable data, not a
  list). Decoding is bounded: nothing a client sends makes it allocate much more than the
  message itself, or recurse without limit.
* ``encode(message)`` turns a list *the router built* into a ``str`` (send as text) or
  ``bytes`` (send as binary), or raises :class:`EncodeError` when the list holds something the
  format cannot carry (NaN in JSON, a set, ...). When such a value came from another client's
  payload, the router should treat it as that client's fault, not crash.

Values are the WAMP data model: None, bool, int, float, str, bytes, list and dict with str
keys. Both serializers carry ``bytes``: msgpack natively, JSON by WAMP's convention of a string
holding a NUL character followed by the base64 of the bytes.

msgpack is optional: without it installed, :data:`SERIALIZERS` offers JSON only and
:class:`MsgpackSerializer` raises ImportError when instantiated.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Protocol

from ..exceptions import EncodeError, SerializationError

try:
    import msgpack  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - exercised only where msgpack is missing
    msgpack = None

__all__ = [
    "SERIALIZERS",
    "STRICT_JSON",
    "JsonSerializer",
    "MsgpackSerializer",
    "Serializer",
]


class Serializer(Protocol):
    """What the WAMP layer needs from a serializer."""

    #: The WebSocket subprotocol, e.g. ``wamp.2.json``.
    subprotocol: str
    #: True when messages travel as binary WebSocket messages (``encode`` returns bytes).
    binary: bool

    def encode(self, message: list[Any]) -> str | bytes:
        """Serialize a message list; raise :class:`EncodeError` if it cannot be."""
        ...

    def decode(self, data: str | bytes) -> list[Any]:
        """Deserialize a client's message; raise :class:`SerializationError` if it is not one."""
        ...


def _fail(reason: str) -> SerializationError:
    return SerializationError(reason, close_code=1007)


def _wrong_frame(subprotocol: str, got: str) -> SerializationError:
    return SerializationError(
        f"{subprotocol} messages must be {'text' if got == 'binary' else 'binary'},"
        f" got a {got} message",
        close_code=1003,
    )


# -- JSON --------------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    """json.dumps calls this for what it cannot encode: bytes become WAMP's binary strings."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\x00" + base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # 1e999: valid JSON syntax, but no double holds it; Python would make it infinity,
        # which no JSON encoder (ours included) can send on.
        raise ValueError(f"the number {text[:30]} is too large for a double")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    # {"topic": "a", "topic": "b"}: a proxy or validator reading the first key would see
    # another message than the last-key-wins parser behind it.
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key[:40]!r} in an object")
        seen.add(key)
    raise AssertionError("unreachable: dict() dropped no key")


#: JSON as the WAMP router and the publish endpoint read it: standard JSON (no NaN or
#: Infinity), numbers a double can hold, and no object with the same key twice. One decoder
#: for every message (``json.loads`` with options would build a new one each call).
STRICT_JSON = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite, object_pairs_hook=_object
)


# JSON must escape U+0000 inside strings (the decoder rejects it raw), so binary strings can only
# appear when the text holds this escape; most messages skip the walk below entirely.
_NUL_ESCAPE = "\\u0000"
# An escaped surrogate (\uD800-\uDFFF). Paired ones are fine (that is how ensure_ascii encoders
# write emoji); lone ones decode to a str that cannot be UTF-8 encoded, which would only fail
# later, while sending to some other client.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _restore(value: Any, check_surrogates: bool) -> Any:
    """Turn WAMP binary strings back into bytes, recursively; reject lone surrogates."""
    if type(value) is str:
        if value[:1] == "\x00":
            try:
                return base64.b64decode(value[1:], validate=True)
            except (binascii.Error, ValueError):
                raise _fail(f"bad base64 in a binary string: {value[1:40]!r}") from None
        if check_surrogates:
            _check_utf8(value)
        return value
    if type(value) is list:
        return [_restore(item, check_surrogates) for item in value]
    if type(value) is dict:
        if check_surrogates:
            for key in value:
                _check_utf8(key)
        return {key: _restore(item, check_surrogates) for key, item in value.items()}
    return value


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(f"string with a lone surrogate: {text[:40]!r}") from None


class JsonSerializer:
    """``wamp.2.json``: compact JSON in text messages.

    ``bytes`` (anywhere in the message) are sent as ``"\\u0000" + base64`` strings and such
    strings come back as ``bytes``, per the WAMP spec; a str that genuinely starts with NUL
    cannot be told apart and also becomes bytes (the convention's known ambiguity). NaN and
    infinities are refused both ways, as JSON has no such values and browsers cannot parse them;
    so are numbers too large for a double (``1e999``) and objects with a key twice.
    """

    __slots__ = ()

    subprotocol = "wamp.2.json"
    binary = False

    def encode(self, message: list[Any]) -> str:
        """Compact JSON with non-ASCII characters kept as they are (shorter than ``\\uXXXX``)."""
        try:
            text = json.dumps(
                message,
                ensure_ascii=False,
                allow_nan=False,
                separators=(",", ":"),
                default=_json_default,
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise EncodeError(f"cannot encode as JSON: {exc}") from None
        # With ensure_ascii=False a lone surrogate passes through json.dumps and would only
        # fail when the WebSocket layer encodes the text as UTF-8; catch it here, where the
        # caller can still tell which message was at fault. ASCII text needs no check.
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise EncodeError("cannot encode as JSON: a str holds a lone surrogate") from None
        return text

    def decode(self, data: str | bytes) -> list[Any]:
        if not isinstance(data, str):
            raise _wrong_frame(self.subprotocol, "binary")
        try:
            value = STRICT_JSON.decode(data)
        except RecursionError:
            raise _fail("JSON nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, NaN, 1e999, ints too long, duplicate keys
            raise _fail(f"invalid JSON: {exc}") from None
        if type(value) is not list:
            raise _fail(f"a WAMP message must be a JSON array, got {type(value).__name__}")
        check_surrogates = _SURROGATE_ESCAPE.search(data) is not None
        if check_surrogates or _NUL_ESCAPE in data:
            try:
                restored: list[Any] = _restore(value, check_surrogates)
            except RecursionError:
                raise _fail("JSON nested too deeply") from None
            return restored
        return value


# -- msgpack -----------------------------------------------------------------------------------


def _str_keys(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Build a map, insisting on str keys: WAMP dicts are keyed by strings, and a bytes key
    (which msgpack allows) would break the JSON encoding of the same payload for others.
    Each key once, as in JSON."""
    for key, _ in pairs:
        if type(key) is not str:
            raise ValueError(f"map keys must be strings, got {type(key).__name__}")
    return _object(pairs)


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of WAMP")


class MsgpackSerializer:
    """``wamp.2.msgpack``: MessagePack in binary messages.

    str and bytes stay distinct (``use_bin_type``), strings must be valid UTF-8, map keys must
    be distinct str, and extension types are refused, except msgpack's timestamp, which decodes
    to int nanoseconds since the epoch so that JSON subscribers of the same payload see the
    same value.
    Every length limit is derived from the size of the message (an element takes at least one
    byte), so a short message cannot announce a huge array, and nesting is bounded by msgpack's
    own stack limit.
    """

    __slots__ = ()

    subprotocol = "wamp.2.msgpack"
    binary = True

    def __init__(self) -> None:
        if msgpack is None:
            raise ImportError("wamp.2.msgpack needs the msgpack package: pip install msgpack")

    def encode(self, message: list[Any]) -> bytes:
        try:
            data: bytes = msgpack.packb(message, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode as msgpack: {exc}") from None
        return data

    def decode(self, data: str | bytes) -> list[Any]:
        if isinstance(data, str):
            raise _wrong_frame(self.subprotocol, "text")
        size = len(data)
        try:
            value = msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                object_pairs_hook=_str_keys,
                ext_hook=_no_ext,
                timestamp=2,
                max_str_len=size,
                max_bin_len=size,
                max_array_len=size,
                max_map_len=size // 2,
                max_ext_len=size,
            )
        except msgpack.StackError:
            raise _fail("msgpack nested too deeply") from None
        except msgpack.ExtraData:
            raise _fail("invalid msgpack: extra data after the message") from None
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
            # Truncated or malformed data, invalid UTF-8 (UnicodeDecodeError is a ValueError),
            # lengths beyond the limits, non-str keys, extension types.
            raise _fail(f"invalid msgpack: {str(exc) or type(exc).__name__}") from None
        if type(value) is not list:
            raise _fail(f"a WAMP message must be a msgpack array, got {type(value).__name__}")
        return value


def _available() -> dict[str, Serializer]:
    serializers: dict[str, Serializer] = {}
    json_serializer = JsonSerializer()
    serializers[json_serializer.subprotocol] = json_serializer
    if msgpack is not None:
        msgpack_serializer = MsgpackSerializer()
        serializers[msgpack_serializer.subprotocol] = msgpack_serializer
    return serializers


#: Subprotocol -> serializer, in the server's order of preference: JSON first, because every
#: WAMP client speaks it (browsers, autobahn-js by default) and it is always available here;
#: msgpack second, when installed. ratchetpy's WsServer picks the first subprotocol in the
#: *client's* list that it supports, so a client preferring msgpack still gets msgpack; this
#: order only matters where the server chooses (advertising, tie-breaks).
SERIALIZERS: dict[str, Serializer] = _available()
