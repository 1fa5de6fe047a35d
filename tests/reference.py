"""Locating ../shared and reading its golden conformance cases (imported by tests).

A module of its own rather than conftest.py: pytest imports every conftest.py under the
name ``conftest``, so ``from conftest import ...`` picks whichever was loaded last.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path | None:
    env = os.environ.get("FINESCALE_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


def golden_case(golden_dir: Path, case_id: str) -> tuple[Path, dict]:
    """Return ``(weights_path, io_tensors)`` of a golden case listed in MANIFEST.json."""
    import json

    from safetensors.torch import load_file

    manifest = json.loads((golden_dir / "MANIFEST.json").read_text())
    case = next(c for c in manifest["cases"] if c["id"] == case_id)
    weights = (golden_dir / case["weights"]["file"]).resolve()
    io = load_file(str(golden_dir / case["io"]["file"]))
    return weights, io


def golden_ids(golden_dir: Path | None, architecture_prefix: str) -> list[str]:
    """Case ids whose id starts with ``architecture_prefix`` (e.g. ``"hpinet_"``)."""
    import json

    if golden_dir is None or not (golden_dir / "MANIFEST.json").exists():
        return []
    manifest = json.loads((golden_dir / "MANIFEST.json").read_text())
    return [c["id"] for c in manifest["cases"] if c["id"].startswith(architecture_prefix)]


def shared_dir_or_none() -> Path | None:
    """For parametrisation at collection time (fixtures are not available there)."""
    return _shared_dir()
