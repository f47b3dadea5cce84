"""Every input kept in fuzz/corpus/<target>/ (crashes fuzzing found, once fixed, and seeds)
replayed through its fuzz target (fuzz/targets.py): what once broke a parser must not again.
The targets are plain functions: no atheris needed here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ))

from targets import TARGETS  # noqa: E402

KEPT = sorted(
    (target, path)
    for target in TARGETS
    for path in sorted((FUZZ / "corpus" / target).glob("*"))
    if path.is_file()
)


def test_every_target_has_kept_inputs() -> None:
    assert {target for target, _ in KEPT} == set(TARGETS)


@pytest.mark.parametrize(("target", "path"), KEPT, ids=[f"{t}/{p.name}" for t, p in KEPT])
def test_a_kept_input_is_handled(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())
