"""TLS for :class:`~ratchetpy.IoServer`: an ``ssl.SSLObject`` over memory BIOs, inside the
transport.

A :class:`TlsConnection` is a :class:`~ratchetpy.io.transport.TcpConnection` whose bytes pass
through the TLS object in memory (no ``ssl.SSLSocket``), so the plain reader loop, the merged
writes and the outbound queue work unchanged; only what differs is overridden, and the plain
path pays nothing.

Buffering. The outbound queue holds two things:

* plaintext that the stack queued and that is not yet encrypted (``_out``, as on plain TCP);
* ciphertext that is encrypted and not yet sent in full (``_cipher``).

A flush encrypts the queued plaintext once, joined (whole chunks, up to ``_ENCRYPT_BATCH``
bytes, so that a slow peer never has megabytes committed to ciphertext), and sends the result;
more plaintext is encrypted only once that ciphertext is out. So ``write_urgent`` still puts a
control frame ahead of every queued message that was not encrypted yet (ciphertext plays the
part of plain TCP's "partly written chunk"), and ``discard_queued`` drops exactly that
plaintext. ``_out_size`` (``buffered_amount``, the write limit, ``drain()``) counts plaintext
not yet encrypted plus ciphertext not yet sent: a few dozen bytes per 16 KiB more than the
plaintext they carry. ``Counters.bytes_out`` counts plaintext when it is encrypted.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl

import trio

from ..exceptions import ServerError
from .transport import Hub, TcpConnection

logger = logging.getLogger("ratchetpy.io")

_RECV_SIZE = 65536
_ENCRYPT_BATCH = 256 * 1024


def tls_context(
    ssl_context: ssl.SSLContext | None, certfile: str | None, keyfile: str | None
) -> ssl.SSLContext | None:
    """The server's context from ``IoServer``'s options; None for plain TCP.

    Raises ``ValueError`` for contradictory options, :class:`ServerError` for files that do not
    load. A context made from files has the defaults of ``ssl.create_default_context``.
    """
    if ssl_context is not None and (certfile is not None or keyfile is not None):
        raise ValueError("give either ssl_context or certfile/keyfile, not both")
    if certfile is None:
        if keyfile is not None:
            raise ValueError("keyfile needs a certfile")
        return ssl_context
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as exc:  # ssl.SSLError included
        raise ServerError(f"cannot load the certificate {certfile}: {exc}") from exc
    with contextlib.suppress(NotImplementedError):  # an OpenSSL without ALPN
        context.set_alpn_protocols(["http/1.1"])
    return context


class TlsConnection(TcpConnection):
    """A connection whose bytes are encrypted with TLS; ``secure`` is True."""

    secure = True

    def __init__(
        self,
        hub: Hub,
        sock: socket.socket,
        resource_id: int,
        remote_address: str,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(hub, sock, resource_id, remote_address)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw_recv = sock.recv
        self._cipher = b""  # encrypted, not yet sent
        self._cipher_offset = 0
        self._peer_closed = False  # close_notify received
        self._sent_close_notify = False
        self._handshake_done = False

    # -- handshake ---------------------------------------------------------------------------

    async def open(self, timeout: float) -> bytes | None:
        """Run the handshake, bounded by ``timeout``: the application data that came with its
        end, or None if it failed (logged; the connection is then finished). A checkpoint."""
        failure: object = None
        with trio.move_on_after(timeout) as scope:
            try:
                return await self.handshake()
            except (OSError, ValueError, trio.ClosedResourceError) as exc:
                failure = str(exc) or type(exc).__name__
            except Exception:
                # A bug on our side: lose this connection, not the server.
                logger.exception("internal error in the TLS handshake of #%s", self.resource_id)
                self.finish()
                return None
        if scope.cancelled_caught:
            failure = f"not finished within {timeout} s"
        if self._sock is None:
            logger.debug("connection #%s: dropped during the TLS handshake", self.resource_id)
        else:
            # Bad clients and scanners are normal on a public port: INFO, no traceback.
            logger.info(
                "TLS handshake with %s (#%s) failed: %s",
                self.remote_address,
                self.resource_id,
                failure,
            )
        self.finish()
        return None

    async def handshake(self) -> bytes:
        """Run the server side of the handshake; return the application data that came with
        its last flight (often the first request). A checkpoint.

        Raises ``ssl.SSLError`` if the peer's TLS is bad, ``ConnectionError`` if it hangs up
        first, ``OSError`` or ``trio.ClosedResourceError`` if the connection is aborted.
        """
        sock = self._sock
        assert sock is not None
        do_handshake = self._ssl.do_handshake
        while True:
            try:
                do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError:
                self._send_alert()
                raise
            if self._outgoing.pending:
                self._queue_ciphertext(self._outgoing.read())
                self._write_pending()
            if done:
                break
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("the peer hung up during the TLS handshake")
            self._incoming.write(data)
        self._handshake_done = True
        return self._decrypt()

    def _send_alert(self) -> None:
        """Best effort: tell a failing peer why, without waiting for it."""
        alert = self._outgoing.read()
        sock = self._sock
        if alert and sock is not None and not self._cipher:
            with contextlib.suppress(OSError):
                sock.send(alert)

    # -- reading -----------------------------------------------------------------------------

    def recv(self, size: int) -> bytes:
        """The reader's ``sock.recv``: decrypted bytes, ``b""`` at the end.

        Raises ``BlockingIOError`` when the raw bytes held no application data (a partial
        record, a session ticket), so the reader waits for more as it would on plain TCP.
        """
        if self._peer_closed:
            return b""
        data = self._raw_recv(size)
        if not data:
            # The peer hung up without close_notify. Common and harmless here: our messages
            # are framed, so a truncation cannot pass for a complete message.
            return b""
        self._incoming.write(data)
        try:
            plain = self._decrypt()
        except ssl.SSLError as exc:
            logger.info(
                "connection #%s from %s: TLS error: %s; dropping it",
                self.resource_id,
                self.remote_address,
                exc,
            )
            return b""
        if plain or self._peer_closed:
            # With close_notify and data in one read, the next call (at the peer's FIN)
            # reports the end.
            return plain
        raise BlockingIOError

    def _decrypt(self) -> bytes:
        """Everything the incoming BIO holds, decrypted; queues any TLS answer it calls for."""
        read = self._ssl.read
        chunks: list[bytes] = []
        try:
            while True:
                chunk = read(_RECV_SIZE)
                if not chunk:
                    self._peer_closed = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self._peer_closed = True
        if self._outgoing.pending:
            self._queue_ciphertext(self._outgoing.read())
            if not self._dirty:
                self._mark_dirty()
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    # -- writing -----------------------------------------------------------------------------

    def _queue_ciphertext(self, data: bytes) -> None:
        if self._cipher_offset:
            self._cipher = self._cipher[self._cipher_offset :] + data
            self._cipher_offset = 0
        else:
            self._cipher += data
        self._out_size += len(data)

    def _encrypt_batch(self) -> bool:
        """Encrypt queued plaintext from the front, whole chunks; False if TLS refused."""
        out = self._out
        count = 0
        size = 0
        while count < len(out) and size < _ENCRYPT_BATCH:
            size += len(out[count])
            count += 1
        plain = out[0] if count == 1 else b"".join(out[:count])
        del out[:count]
        self._urgent_end = max(0, self._urgent_end - count)
        self._out_size -= size
        if not size:
            return True
        try:
            view = memoryview(plain)
            written = 0
            while written < size:
                written += self._ssl.write(view[written:])
        except (ssl.SSLError, ValueError) as exc:
            logger.debug("connection #%s: TLS write failed: %s", self.resource_id, exc)
            self._lost_queued_data = True
            return False
        self.counters.bytes_out += size
        self._queue_ciphertext(self._outgoing.read())
        return True

    def _write_once(self) -> bool:
        sock = self._sock
        if sock is None:
            return True
        while True:
            if not self._cipher:
                if not self._out:
                    break
                if not self._encrypt_batch():
                    self.abort()
                    return True
                if not self._cipher:
                    continue
            offset = self._cipher_offset
            cipher = self._cipher
            sent = self._send(memoryview(cipher)[offset:] if offset else cipher)
            if sent is None:
                return True
            if sent < 0:
                return False
            self._out_size -= sent
            if self._taken is not None:
                self._note_taken(sent)
            offset += sent
            if offset < len(cipher):
                self._cipher_offset = offset
                return False
            self._cipher = b""
            self._cipher_offset = 0
        self._written_all()
        return True

    def _has_output(self) -> bool:
        # Ciphertext not yet sent counts too: the drain task must see it out.
        return bool(self._out or self._cipher)

    def _drop_queue(self) -> None:
        super()._drop_queue()
        self._cipher = b""
        self._cipher_offset = 0

    # -- closing -----------------------------------------------------------------------------

    def _shutdown_write(self) -> None:
        """Everything is written: send close_notify, then FIN once that is out too."""
        if self._sock is None or self._out or self._cipher:
            return  # the write path calls again once the queue is empty
        if not self._sent_close_notify:
            self._sent_close_notify = True
            if self._unwrap():
                self._queue_ciphertext(self._outgoing.read())
                self._write_pending()  # comes back here with the queue empty
                return
        super()._shutdown_write()

    def _unwrap(self) -> bool:
        """Start TLS closure (we do not wait for the peer's close_notify); True if there is
        a close_notify to send."""
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, ValueError) as exc:
            logger.debug("connection #%s: TLS unwrap failed: %s", self.resource_id, exc)
            return False
        return self._outgoing.pending > 0

    def finish(self) -> None:
        # The peer hung up or the connection failed: a last close_notify if it fits in one
        # non-blocking send and would not cut a record in two.
        sock = self._sock
        if (
            sock is not None
            and self._handshake_done
            and not self._sent_close_notify
            and not self._cipher
        ):
            self._sent_close_notify = True
            if self._unwrap():
                with contextlib.suppress(OSError):
                    sock.send(self._outgoing.read())
        super().finish()
