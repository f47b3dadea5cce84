"""The test suite on every supported CPython installed here: ``nox -s tests``.

``scripts/test.sh`` (the README's test command) runs the suite in ``.venv`` on the default
Python, then ``nox -s tests`` for every other one: each CPython from 3.11 (what
``requires-python`` says) to the newest on the machine, found under ``~/.pyenv/versions`` or
on ``PATH``. Each gets a virtualenv of its own in ``.nox/`` with ``.[test]``. The programs the
tests drive (redis-server, nginx, chromium) and the ``RATCHETPY_REQUIRE_*`` switches come
from the environment, as for the main run. ``RATCHETPY_NOX_SKIP=3.11`` leaves out a version
(the one the main run covered already).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

OLDEST_MINOR = 11  # pyproject.toml's requires-python: 3.11
NEWEST_MINOR = 15  # looked for up to 3.15


def _interpreter(minor: int) -> Path | None:
    """CPython 3.minor here (a real interpreter, not a pyenv shim), or None."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(versions.glob(f"3.{minor}.*/bin/python3.{minor}"), reverse=True):
        return candidate
    found = shutil.which(f"python3.{minor}")
    if found and "/shims/" not in found:
        return Path(found)
    return None


def _installed() -> dict[str, Path]:
    skipped = set(os.environ.get("RATCHETPY_NOX_SKIP", "").split(","))
    found = {}
    for minor in range(OLDEST_MINOR, NEWEST_MINOR + 1):
        version, path = f"3.{minor}", _interpreter(minor)
        if path is not None and version not in skipped:
            found[version] = path
    return found


INSTALLED = _installed()
# nox finds "3.12" as python3.12 on PATH: put each interpreter's directory first.
os.environ["PATH"] = os.pathsep.join(
    [*(str(path.parent) for path in INSTALLED.values()), os.environ.get("PATH", "")]
)

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]


@nox.session(python=list(INSTALLED))
def tests(session: nox.Session) -> None:
    """The whole pytest suite on one interpreter."""
    session.install("-q", "-e", ".[test]")
    session.run("python", "--version")
    session.run("pytest", "-q", *session.posargs)
