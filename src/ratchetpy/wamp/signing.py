"""How a publication to :class:`~ratchetpy.wamp.PublishEndpoint` is signed, sans-IO.

The endpoint checks it and :mod:`ratchetpy.client` (and any other sender: PHP, a shell script
with openssl) produces it: the Unix time in whole seconds goes in ``X-Ratchetpy-Timestamp``,
and ``X-Ratchetpy-Signature`` carries ``sha256=<hex>``, the HMAC-SHA256 keyed with the shared
secret over ``timestamp + "." + body``.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Secret", "signature"]

#: Header carrying the Unix time (whole seconds) the request was signed at.
TIMESTAMP_HEADER = "X-Ratchetpy-Timestamp"
#: Header carrying ``sha256=<hex>``: HMAC-SHA256 with the secret over ``timestamp + "." + body``.
SIGNATURE_HEADER = "X-Ratchetpy-Signature"

#: A shared secret, as text (encoded as UTF-8) or bytes.
Secret = str | bytes


def signature(secret: Secret, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with ``secret`` over ``timestamp + "." + body``.

    The signed bytes bind the body to the moment it was sent, so a captured request cannot be
    replayed once the timestamp is outside the endpoint's window, nor its body changed.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()
