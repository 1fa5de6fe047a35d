"""Helpers for the window's tests (fixtures are in conftest.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


def write_picture(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A smooth colourful PNG/JPEG with some texture (what a photo roughly is)."""
    from sr_core.imageio import Photo, write_image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / max(1, width - 1), y / max(1, height - 1),
                    0.5 + 0.5 * np.sin((x + y) / 7.0)], axis=-1)
    rgb += rng.normal(0, 0.03, rgb.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(Photo(rgb=np.clip(rgb, 0, 1).astype(np.float32)), path)
    return path


def tiny_state_dict() -> dict:
    """Random weights of a very small ASID (one block, 16 features, x2): a real network of
    the catalogue's families that runs a 100 x 100 picture in a few milliseconds."""
    import torch

    from sr_core.archs import asid

    cfg = dataclasses.replace(asid.config("ASID", 2), num_blocks=1, num_feat=16)
    torch.manual_seed(0)
    net = asid.build(cfg)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def open_picture(qtbot, window, path: Path) -> None:
    """Open ``path`` in ``window`` and wait until it is shown."""
    window.open_paths([path])
    qtbot.waitUntil(lambda: window.picture is not None and window.picture.path == path,
                    timeout=20_000)


def on_message(window, kind: type, fn, *, direct: bool = False) -> None:
    """Call ``fn(message)`` for each worker message of type ``kind`` (``direct``: in the
    worker's thread, as it is sent)."""
    from PySide6.QtCore import Qt

    def slot(reply) -> None:
        if isinstance(reply.message, kind):
            fn(reply.message)

    how = Qt.ConnectionType.DirectConnection if direct else Qt.ConnectionType.AutoConnection
    window._thread.worker.message.connect(slot, how)
