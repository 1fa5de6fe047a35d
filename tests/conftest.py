"""Shared fixtures: locating ../shared (reference vectors, weights, datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path | None:
    env = os.environ.get("FINESCALE_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; under CI=true its absence fails, elsewhere it skips."""
    d = _shared_dir()
    if d is None:
        msg = "../shared not found (set FINESCALE_SHARED)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def golden(shared: Path) -> Path:
    return shared / "reference" / "golden"
