"""The optional C accelerator; everything else is declared in pyproject.toml.

``ratchetpy.protocol._speedups`` is built where a C compiler is found; where it is not, the
install goes on and ratchetpy uses its pure-Python code (``ratchetpy.protocol.masking`` says
which is active). ``RATCHETPY_BUILD_SPEEDUPS=1`` makes a failed build an error instead: the
test command sets it, so that the suite always tests both paths.
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ratchetpy.protocol._speedups",
            sources=["src/ratchetpy/protocol/_speedups.c"],
            optional=os.environ.get("RATCHETPY_BUILD_SPEEDUPS") != "1",
        )
    ]
)
