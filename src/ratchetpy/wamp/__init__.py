"""WAMP v2 (Basic Profile) for ratchetpy, router side: sans-IO messages and serializers."""

from .messages import *  # noqa: F403
from .messages import __all__ as _messages_all
from .serializers import *  # noqa: F403
from .serializers import __all__ as _serializers_all

__all__ = [*_messages_all, *_serializers_all]
