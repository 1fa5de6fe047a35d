"""The papers' own test-time procedures, where they differ from running the whole image.

Published numbers are measured with these procedures, so the evaluation offers them as the
"official protocol". They are not the engine's tiling: the application upscales with
``sr_core.tiling`` (context padding and blended seams), which these deliberately are not.

* ASID (``tester_Matlab.py``, ``patch_test = True``): square tiles of ``min(64, H, W)``
  pixels, 24 px overlap, every tile through the network on its own, overlapping outputs
  averaged with a plain sum / count (no feathering). The grid attention of ASID sees only
  the tile, so this gives different numbers from whole-image inference.

HPINet, HAT and SPIN test on the whole image in one pass, so they have nothing here; which
procedure a model gets is decided in :mod:`sr_core.evaluate` (``--protocol auto``).
"""

from __future__ import annotations

import torch

from .models import SRModel

#: ASID's official tile side and overlap, in input pixels.
ASID_TILE = 64
ASID_OVERLAP = 24


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis as the ASID tester computes them.

    ``0, stride, 2 * stride, ...`` below ``size - tile``, then ``size - tile``, with
    ``stride = tile - overlap``. Where the official script breaks (``tile <= overlap``: a zero
    stride raises, a negative one leaves pixels uncovered) tiles are laid edge to edge
    instead, so every pixel is still covered.
    """
    stride = tile - overlap
    if stride < 1:
        stride = tile
    return list(range(0, size - tile, stride)) + [size - tile]


def official_tiled(model: SRModel, x: torch.Tensor, tile: int = ASID_TILE,
               overlap: int = ASID_OVERLAP) -> torch.Tensor:
    """ASID's official tiled inference: ``x`` ``(N, 3, H, W)`` in [0, 1] -> ``(N, 3, sH, sW)``.

    Each ``min(tile, H, W)``-square tile is upscaled independently (the network pads it to a
    multiple of 8 itself); outputs are summed into place and divided by how many tiles
    covered each output pixel. The result is in [0, 1], unclamped, like ``model(x)``.
    """
    if x.dim() != 4:
        raise ValueError(f"expected (N, 3, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    s = model.scale
    t = min(tile, h, w)
    rows, cols = tile_starts(h, t, overlap), tile_starts(w, t, overlap)
    with torch.inference_mode():
        total = x.new_zeros(n, c, h * s, w * s)
        count = x.new_zeros(1, 1, h * s, w * s)
        for r in rows:
            for q in cols:
                y = model(x[..., r:r + t, q:q + t])
                total[..., r * s:(r + t) * s, q * s:(q + t) * s] += y
                count[..., r * s:(r + t) * s, q * s:(q + t) * s] += 1
        return total / count
