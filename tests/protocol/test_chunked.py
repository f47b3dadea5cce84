"""ChunkedBodyMeter: the sizes a chunked body announces, read alongside h11 (its oracle)."""

from __future__ import annotations

import h11
from hypothesis import given
from hypothesis import strategies as st

from ratchetpy.protocol.chunked import ChunkedBodyMeter

HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def feed_bytewise(data: bytes) -> ChunkedBodyMeter:
    meter = ChunkedBodyMeter()
    for index in range(len(data)):
        meter.feed(data[index : index + 1])
    return meter


def test_a_size_line_counts_before_its_data_arrives() -> None:
    meter = ChunkedBodyMeter()
    assert meter.feed(b"ffffffffffffffffffff\r\n") == 0xFFFFFFFFFFFFFFFFFFFF
    assert not meter.done


def test_sizes_add_up_across_chunks_and_splits() -> None:
    body = b"5\r\nhello\r\n3;name=value\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    meter = feed_bytewise(body)
    assert meter.declared == 8
    assert meter.done


def test_bytes_after_the_body_are_not_counted() -> None:
    meter = ChunkedBodyMeter()
    meter.feed(b"2\r\nab\r\n0\r\n\r\n" + b"ffff\r\n")  # a pipelined request's bytes
    assert meter.declared == 2
    assert meter.done


def test_data_that_looks_like_a_size_line_is_skipped() -> None:
    meter = ChunkedBodyMeter()
    meter.feed(b"6\r\nff\r\nf\r\n0\r\n\r\n")
    assert meter.declared == 6


def test_garbage_stops_the_meter_and_h11_decides() -> None:
    meter = ChunkedBodyMeter()
    meter.feed(b"zz\r\n")
    assert meter.done and meter.declared == 0
    long_line = ChunkedBodyMeter()
    long_line.feed(b"1" * 5000)
    assert long_line.done


chunks = st.lists(st.binary(min_size=1, max_size=40), max_size=6)


@given(chunks, st.booleans(), st.integers(min_value=1, max_value=17))
def test_the_meter_agrees_with_h11(parts: list[bytes], extensions: bool, step: int) -> None:
    body = b"".join(
        b"%x%s\r\n%s\r\n" % (len(part), b";x=1" if extensions else b"", part) for part in parts
    )
    body += b"0\r\n\r\n"
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(HEAD + body)
    assert isinstance(parser.next_event(), h11.Request)
    received = 0
    while True:
        event = parser.next_event()
        if isinstance(event, h11.Data):
            received += len(event.data)
        else:
            assert isinstance(event, h11.EndOfMessage)
            break
    meter = ChunkedBodyMeter()
    for start in range(0, len(body), step):
        meter.feed(body[start : start + step])
    assert meter.declared == received == sum(map(len, parts))
    assert meter.done
