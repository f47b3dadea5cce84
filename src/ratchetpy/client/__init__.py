"""ratchetpy.client: push to WAMP subscribers from any Python code, and a trio WAMP client.

From a web application (Flask, Django, a script, any thread), one blocking call POSTs to the
server's :class:`~ratchetpy.wamp.publish.PublishEndpoint`, signed with the shared secret:

.. code-block:: python

    from ratchetpy.client import publish

    publish("http://127.0.0.1:8080/publish", "com.example.record.42", {"title": "x"},
            secret=SECRET)

From trio code, a WAMP v2 session over WebSocket (wsproto on trio streams):

.. code-block:: python

    from ratchetpy.client import open_session

    async with open_session("ws://127.0.0.1:8080/ws", realm="realm1") as session:
        await session.subscribe("com.example.news", print)
        await session.publish("com.example.news", "hello", acknowledge=True)

Its exceptions, which live in :mod:`ratchetpy.exceptions` with all the others and are
re-exported here: :class:`PublishError`, :class:`SessionClosed`, :class:`WampRequestError`,
:class:`WampCallError`.
"""

from ..exceptions import PublishError, SessionClosed, WampCallError, WampRequestError
from ._http import Publisher, apublish, publish, sign
from ._session import CallResult, Registration, Session, Subscription, open_session

__all__ = [
    "CallResult",
    "PublishError",
    "Publisher",
    "Registration",
    "Session",
    "SessionClosed",
    "Subscription",
    "WampCallError",
    "WampRequestError",
    "apublish",
    "open_session",
    "publish",
    "sign",
]
