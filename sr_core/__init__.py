"""Finescale's engine: super-resolution models, tiled inference and photo-faithful I/O.

Public API (imported lazily so that ``finescale --version`` does not pay for torch)::

    from sr_core import load_model, Upscaler, read_image, write_image
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Before torch (and its OpenMP runtime) loads: idle OpenMP threads sleep instead of spinning.
# On a machine with other work, spinning threads hold cores that the thread everyone waits
# for needs. ASID x4 at 128x128 beside one busy process, 2 threads: 6.6 s spinning, 0.95 s
# sleeping (1 thread: 1.0 s). Set only when the user has not chosen. Where torch was loaded
# first the policy cannot change any more; device.choose_cpu_threads then avoids busy cores.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
#: True when OpenMP's idle threads sleep (the policy above, or the user's, was in place when
#: torch loaded).
OMP_WAITS_SLEEP = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"

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
