"""The layout of the local model cache, and reading what it holds.

Downloaded and imported weights are stored once, converted to safetensors, in
:func:`sr_core.paths.cache_dir`::

    <cache>/<id>.safetensors   the weights the loader reads (tensors only, never a pickle)
    <cache>/<id>.json          where they came from, hashes, arch / variant / scale
    <cache>/trust.json         hashes recorded on first use for entries without a published one
    <cache>/downloads/         partial downloads (``.part``), resumed on the next attempt
    <cache>/.locks/            file locks, so that two processes install a model once

Reading only; :mod:`sr_core.installer` is the one writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import atomic, paths

__all__ = ["downloads_dir", "imported_records", "locks_dir", "read_json", "record",
           "record_path", "trust", "trust_path", "weights_path", "write_json"]


def weights_path(model_id: str) -> Path:
    """Where the safetensors weights of a downloaded or imported model are stored."""
    return paths.cache_dir() / f"{model_id}.safetensors"


def record_path(model_id: str) -> Path:
    """Where the JSON record of a stored model is."""
    return paths.cache_dir() / f"{model_id}.json"


def trust_path() -> Path:
    """The hashes recorded on first use for entries without a published one."""
    return paths.cache_dir() / "trust.json"


def downloads_dir() -> Path:
    """Partial downloads, kept between attempts."""
    return paths.cache_dir() / "downloads"


def locks_dir() -> Path:
    """The cache's file locks."""
    return paths.cache_dir() / ".locks"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, damaged or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` by ``data`` as JSON, durably and atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))


def record(model_id: str) -> dict[str, Any] | None:
    """The record of a stored model, or None when there is none."""
    return read_json(record_path(model_id))


def trust() -> dict[str, Any]:
    """``{id: {"sha256": ..., "file": ..., "first_seen": ...}}`` recorded on first use."""
    return read_json(trust_path()) or {}


def imported_records() -> Iterator[dict[str, Any]]:
    """The records of models the user imported, in id order."""
    cache = paths.cache_dir()
    if not cache.is_dir():
        return
    for path in sorted(cache.glob("*.json")):
        rec = read_json(path)
        if rec and rec.get("origin") == "import" and rec.get("id") == path.stem:
            yield rec
