"""permessage-deflate negotiation (RFC 7692) and the codec, without sockets."""

from __future__ import annotations

import os
import zlib

import pytest

from ratchetpy.protocol.deflate import DeflateParameters, Deflater, Inflater, negotiate_deflate

DEFAULT = DeflateParameters(
    server_no_context_takeover=False,
    client_no_context_takeover=False,
    server_max_window_bits=15,
    client_max_window_bits=15,
)


def params(**kw: object) -> DeflateParameters:
    fields = {
        "server_no_context_takeover": False,
        "client_no_context_takeover": False,
        "server_max_window_bits": 15,
        "client_max_window_bits": 15,
    }
    fields.update(kw)
    return DeflateParameters(**fields)  # type: ignore[arg-type]


# -- negotiation -----------------------------------------------------------------------------


def test_plain_offer() -> None:
    assert negotiate_deflate(["permessage-deflate"]) == (DEFAULT, "permessage-deflate")


def test_no_offer() -> None:
    assert negotiate_deflate([]) is None
    assert negotiate_deflate(["x-webkit-deflate-frame"]) is None
    assert negotiate_deflate([""]) is None


def test_client_max_window_bits_without_value_is_accepted() -> None:
    # What browsers send: the client can limit its window but does not say to what.
    agreed = negotiate_deflate(["permessage-deflate; client_max_window_bits"])
    assert agreed == (DEFAULT, "permessage-deflate")


def test_client_max_window_bits_without_value_and_server_wish() -> None:
    agreed = negotiate_deflate(
        ["permessage-deflate; client_max_window_bits"], client_max_window_bits=10
    )
    assert agreed == (
        params(client_max_window_bits=10),
        "permessage-deflate; client_max_window_bits=10",
    )


def test_client_max_window_bits_with_value_is_echoed_or_lowered() -> None:
    agreed = negotiate_deflate(["permessage-deflate; client_max_window_bits=12"])
    assert agreed == (
        params(client_max_window_bits=12),
        "permessage-deflate; client_max_window_bits=12",
    )
    agreed = negotiate_deflate(
        ["permessage-deflate; client_max_window_bits=12"], client_max_window_bits=9
    )
    assert agreed is not None
    assert agreed[0].client_max_window_bits == 9
    assert agreed[1] == "permessage-deflate; client_max_window_bits=9"


def test_server_wants_client_window_limit_but_client_cannot() -> None:
    assert negotiate_deflate(["permessage-deflate"], client_max_window_bits=10) is None
    # 15 is no limit at all, so that is fine.
    assert negotiate_deflate(["permessage-deflate"], client_max_window_bits=15) == (
        DEFAULT,
        "permessage-deflate",
    )


def test_server_max_window_bits_offered() -> None:
    agreed = negotiate_deflate(["permessage-deflate; server_max_window_bits=10"])
    assert agreed == (
        params(server_max_window_bits=10),
        "permessage-deflate; server_max_window_bits=10",
    )
    # The server may go lower than offered, never higher.
    agreed = negotiate_deflate(
        ["permessage-deflate; server_max_window_bits=12"], server_max_window_bits=9
    )
    assert agreed is not None
    assert agreed[0].server_max_window_bits == 9
    agreed = negotiate_deflate(
        ["permessage-deflate; server_max_window_bits=10"], server_max_window_bits=12
    )
    assert agreed is not None
    assert agreed[0].server_max_window_bits == 10


def test_server_max_window_bits_from_config_only() -> None:
    agreed = negotiate_deflate(["permessage-deflate"], server_max_window_bits=11)
    assert agreed == (
        params(server_max_window_bits=11),
        "permessage-deflate; server_max_window_bits=11",
    )


def test_no_context_takeover_offered_and_configured() -> None:
    agreed = negotiate_deflate(
        ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"]
    )
    assert agreed == (
        params(server_no_context_takeover=True, client_no_context_takeover=True),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    )
    agreed = negotiate_deflate(
        ["permessage-deflate"], server_no_context_takeover=True, client_no_context_takeover=True
    )
    assert agreed is not None
    assert agreed[0].server_no_context_takeover
    assert agreed[0].client_no_context_takeover


def test_all_parameters_with_quotes_spaces_and_case() -> None:
    agreed = negotiate_deflate(
        [
            'Permessage-Deflate ;Server_Max_Window_Bits="10" ; client_max_window_bits = 11 ;'
            " server_no_context_takeover"
        ]
    )
    assert agreed == (
        params(
            server_no_context_takeover=True, server_max_window_bits=10, client_max_window_bits=11
        ),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
        "client_max_window_bits=11",
    )


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=16",
        'permessage-deflate; client_max_window_bits="1 0"',
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        'permessage-deflate; server_max_window_bits="10',
        "permessage-deflate; =10",
        "permessage-deflate;",
    ],
)
def test_malformed_offers_are_skipped(offer: str) -> None:
    assert negotiate_deflate([offer]) is None
    # ... and the next acceptable offer wins.
    agreed = negotiate_deflate([offer + ", permessage-deflate; client_no_context_takeover"])
    if '"' in offer and offer.count('"') % 2:
        # An unbalanced quote spoils the whole header value; later values still count.
        assert agreed is None
        agreed = negotiate_deflate([offer, "permessage-deflate; client_no_context_takeover"])
    assert agreed == (
        params(client_no_context_takeover=True),
        "permessage-deflate; client_no_context_takeover",
    )


def test_first_acceptable_offer_across_header_values() -> None:
    agreed = negotiate_deflate(
        [
            "x-webkit-deflate-frame, permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits=12, permessage-deflate",
        ]
    )
    assert agreed == (
        params(server_max_window_bits=12),
        "permessage-deflate; server_max_window_bits=12",
    )


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        negotiate_deflate(["permessage-deflate"], server_max_window_bits=16)
    with pytest.raises(ValueError):
        negotiate_deflate(["permessage-deflate"], client_max_window_bits=7)


# -- codec -----------------------------------------------------------------------------------


def client_compress(compressor: zlib._Compress, data: bytes) -> bytes:
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def client_decompress(decompressor: zlib._Decompress, data: bytes) -> bytes:
    return decompressor.decompress(data + b"\x00\x00\xff\xff")


TEXT = b"the quick brown fox jumps over the lazy dog; " * 20


def test_deflater_with_context_takeover() -> None:
    deflater = Deflater(DEFAULT)
    first = deflater.compress(TEXT)
    second = deflater.compress(TEXT)
    # The second message refers back to the first.
    assert len(second) < len(first)
    d = zlib.decompressobj(-15)
    assert client_decompress(d, first) == TEXT
    assert client_decompress(d, second) == TEXT


def test_deflater_without_context_takeover() -> None:
    deflater = Deflater(params(server_no_context_takeover=True))
    first = deflater.compress(TEXT)
    second = deflater.compress(TEXT)
    assert first == second
    assert client_decompress(zlib.decompressobj(-15), second) == TEXT


def test_deflater_window_bits_8_uses_9() -> None:
    deflater = Deflater(params(server_max_window_bits=8))
    data = os.urandom(300) * 4
    assert client_decompress(zlib.decompressobj(-9), deflater.compress(data)) == data


def test_deflater_empty_message() -> None:
    deflater = Deflater(DEFAULT)
    assert client_decompress(zlib.decompressobj(-15), deflater.compress(b"")) == b""


def test_inflater_with_and_without_context_takeover() -> None:
    c = zlib.compressobj(wbits=-15)
    inflater = Inflater(DEFAULT)
    for _ in range(3):
        assert inflater.decompress_message(client_compress(c, TEXT)) == TEXT

    inflater = Inflater(params(client_no_context_takeover=True))
    for _ in range(3):
        fresh = zlib.compressobj(wbits=-15)
        assert inflater.decompress_message(client_compress(fresh, TEXT)) == TEXT


def test_inflater_window_bits_8_accepts_zlib_peers() -> None:
    c = zlib.compressobj(wbits=-9)
    data = os.urandom(200) * 5
    inflater = Inflater(params(client_max_window_bits=8))
    assert inflater.decompress_message(client_compress(c, data)) == data


def test_inflater_is_bounded() -> None:
    bomb = client_compress(zlib.compressobj(wbits=-15), b"\x00" * (10 << 20))
    assert len(bomb) < 20_000
    out = Inflater(DEFAULT).decompress_message(bomb, 1001)
    assert len(out) == 1001
    out = Inflater(DEFAULT).decompress(bomb, 5000)
    assert len(out) == 5000


def test_inflater_handles_final_block() -> None:
    # A peer may end each message with BFINAL set (RFC 7692 7.2.3.4); the next still decodes.
    inflater = Inflater(DEFAULT)
    for _ in range(2):
        c = zlib.compressobj(wbits=-15)
        payload = c.compress(TEXT) + c.flush(zlib.Z_FINISH)
        assert inflater.decompress_message(payload) == TEXT


@pytest.mark.parametrize("split", [None, -1, -3])
def test_what_follows_a_final_block_is_ignored_however_the_reads_split(split: int | None) -> None:
    # Found by the differential tests: with the final block and the byte after it in one read,
    # zlib leaves the byte unused; in two reads, the byte reached a fresh inflater and failed.
    c = zlib.compressobj(wbits=-15)
    payload = c.compress(TEXT) + c.flush(zlib.Z_FINISH) + b"\xff\x00\xff"
    inflater = Inflater(DEFAULT)
    pieces = [payload] if split is None else [payload[:split], payload[split:]]
    out = b"".join(inflater.decompress(piece) for piece in pieces)
    assert out + inflater.finish_message() == TEXT
    # ... and the next message starts a deflate stream of its own.
    assert inflater.decompress_message(client_compress(zlib.compressobj(wbits=-15), TEXT)) == TEXT


def test_inflater_corrupt_data() -> None:
    with pytest.raises(zlib.error):
        Inflater(DEFAULT).decompress_message(b"\xff\xff\xff\xff")


def test_quoted_value_with_escape_and_bad_names() -> None:
    agreed = negotiate_deflate(['permessage-deflate; server_max_window_bits="1\\0"'])
    assert agreed is not None
    assert agreed[0].server_max_window_bits == 10
    assert negotiate_deflate(["permessage deflate", "; server_no_context_takeover"]) is None


def test_inflater_bound_not_reached() -> None:
    payload = client_compress(zlib.compressobj(wbits=-15), TEXT)
    assert Inflater(DEFAULT).decompress_message(payload, len(TEXT) + 1) == TEXT
