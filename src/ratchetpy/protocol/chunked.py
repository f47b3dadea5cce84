"""How big a chunked request body says it will be, as soon as it says so; sans-IO.

h11 parses ``Transfer-Encoding: chunked`` bodies but keeps each chunk's announced size to
itself: it reports data only as it arrives. A client that announces a 2^80-byte chunk and then
trickles (or sends nothing) would only be stopped by the request timeout. :class:`ChunkedBodyMeter`
follows the same bytes alongside h11, reads every chunk-size line and keeps the running total,
so :class:`~ratchetpy.HttpServer` can answer 413 the moment a declared size passes its limit.

It validates nothing: h11 remains the parser that decides what the body is and refuses
malformed framing. On anything it does not understand the meter stops counting (its total
stays what it was) and leaves the verdict to h11.
"""

from __future__ import annotations

__all__ = ["ChunkedBodyMeter"]

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
# h11 allows 20 hex digits and short extensions; a size line longer than this is garbage that
# h11 will refuse, so the meter gives up rather than buffer it.
_MAX_LINE = 4096
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class ChunkedBodyMeter:
    """Feed it the body bytes of one chunked request (from the first byte after the head);
    :attr:`declared` is the sum of the chunk sizes announced so far.

    Bytes after the body's end (a pipelined next request) are ignored: :attr:`done` says the
    last chunk and the trailer section went by.
    """

    __slots__ = ("_line", "_remaining", "_state", "declared")

    def __init__(self) -> None:
        self.declared = 0
        self._state = _SIZE
        self._line = bytearray()
        self._remaining = 0  # bytes of chunk data, or of its closing CRLF, still to skip

    @property
    def done(self) -> bool:
        """True once the body ended, or once the framing stopped making sense to the meter."""
        return self._state == _DONE

    def feed(self, data: bytes) -> int:
        """Follow ``data``; return :attr:`declared`."""
        view = memoryview(data)
        position = 0
        end = len(view)
        while position < end and self._state != _DONE:
            state = self._state
            if state in (_DATA, _DATA_END):
                step = min(self._remaining, end - position)
                position += step
                self._remaining -= step
                if self._remaining == 0:
                    if state == _DATA:
                        self._state, self._remaining = _DATA_END, 2  # the CRLF after the data
                    else:
                        self._state = _SIZE
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self._line += view[position:]
                position = end
                if len(self._line) > _MAX_LINE:
                    self._state = _DONE
                continue
            self._line += view[position:newline]
            position = newline + 1
            line = bytes(self._line).rstrip(b"\r")
            self._line.clear()
            if state == _SIZE:
                self._size_line(line)
            elif not line.strip():  # the empty line that ends the trailer section
                self._state = _DONE
        return self.declared

    def _size_line(self, line: bytes) -> None:
        digits = 0
        while digits < len(line) and line[digits] in _HEX_DIGITS:
            digits += 1
        if digits == 0:
            self._state = _DONE  # not a chunk size: h11 refuses it
            return
        size = int(line[:digits], 16)
        self.declared += size
        if size == 0:
            self._state = _TRAILER
        else:
            self._state, self._remaining = _DATA, size
