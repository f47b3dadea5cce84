"""Hypothesis profiles for the differential tests of the WebSocket codec.

"ci" (the default) is derandomized, so every run tries the same examples and a failure in CI
reproduces on any machine, and bounded so that the whole directory stays far below a minute.
``RATCHETPY_HYPOTHESIS=thorough`` loads "thorough": randomized and many more examples, for a
long local or nightly hunt. Neither keeps an example database: nothing is written into the
working tree, and a failure prints the ``@reproduce_failure`` blob to replay it instead.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Examples that cross 64 KiB frames take tens of milliseconds by design, hence no deadline and
# no complaint about slow or large data generation.
_SLOW_BY_DESIGN = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_BY_DESIGN,
)
settings.register_profile(
    "thorough",
    derandomize=False,
    max_examples=5000,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_BY_DESIGN,
)
settings.load_profile("thorough" if os.environ.get("RATCHETPY_HYPOTHESIS") == "thorough" else "ci")
