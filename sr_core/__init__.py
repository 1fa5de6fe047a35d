"""Finescale's engine: super-resolution models, tiled inference and photo-faithful I/O.

Public API (imported lazily so that ``finescale --version`` does not pay for torch)::

    from sr_core import load_model, Upscaler, read_image, write_image
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("loader", "load_model"),
    "SRModel": ("models", "SRModel"),
    "Upscaler": ("engine", "Upscaler"),
    "read_image": ("imageio", "read_image"),
    "write_image": ("imageio", "write_image"),
    "Photo": ("imageio", "Photo"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"sr_core.{module}"), attr)
    raise AttributeError(f"module 'sr_core' has no attribute {name!r}")
