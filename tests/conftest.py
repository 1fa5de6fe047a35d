"""Shared fixtures: locating ../shared (reference vectors, weights, datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reference import shared_dir_or_none

import sr_core  # noqa: F401 - before torch, as the programs do: OpenMP's idle threads sleep

# --precision auto picks bf16 on CPUs with bf16 instructions (the CI machine may have them,
# this one may not): results must not depend on the CPU, so auto stays fp32 here (inherited
# by the CLI and window subprocesses); the bf16 choice has its own tests.
os.environ.setdefault("FINESCALE_AUTO_CPU_BF16", "0")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; under CI=true its absence fails, elsewhere it skips."""
    d = shared_dir_or_none()
    if d is None:
        msg = "../shared not found (set FINESCALE_SHARED)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def golden(shared: Path) -> Path:
    return shared / "reference" / "golden"

