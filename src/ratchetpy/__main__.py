"""``python -m ratchetpy serve MODULE:ATTR``: see :mod:`ratchetpy.cli`."""

from .cli import main_exit

main_exit()
