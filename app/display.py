"""Display buffers for pictures of any size: a uint8 mip pyramid and tile rendering.

Qt cannot hold a 100-megapixel picture as one QImage (it refuses images over 256 MB) and
scaling one for every repaint would be far too slow. A :class:`DisplayImage` keeps the
picture as numpy arrays -- the full-resolution pixels plus area-averaged halvings of them --
and renders any rectangle of the picture *as it appears at a given zoom*, so the window only
ever converts the few hundred thousand pixels that are on the screen.

Coordinates: at zoom ``(zx, zy)`` (screen pixels per image pixel) image pixel ``i`` covers
zoomed pixels ``[i * zx, (i + 1) * zx)``; zoomed pixel ``p`` shows image pixel
``floor((p + 0.5) / zx)`` at 100 % and above (nearest neighbour, pixel exact) and a bilinear
sample of the nearest finer pyramid level below 100 %. ``smooth`` rendering enlarges with
Lanczos instead of nearest neighbour above 100 %: what an ordinary enlargement looks like,
the fair "before" to set a model's result against.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import cv2
import numpy as np

#: Pyramid levels stop once both sides are at most this many pixels.
MIN_LEVEL_SIDE = 256
_uids = itertools.count(1)

#: Rows converted at a time when a float or 16-bit picture is turned into display bytes.
_ROW_BLOCK_BYTES = 32 << 20


def to_display_uint8(a: np.ndarray) -> np.ndarray:
    """8-bit display copy of an image plane: float in [0, 1], uint16 or uint8 (returned as is).

    Converted in row blocks so that a huge float picture never needs a second float copy.
    """
    if a.dtype == np.uint8:
        return a
    out = np.empty(a.shape, dtype=np.uint8)
    row_bytes = max(1, a[0].nbytes if a.shape[0] else 1)
    step = max(1, _ROW_BLOCK_BYTES // row_bytes)
    for y in range(0, a.shape[0], step):
        block = a[y:y + step]
        if block.dtype == np.uint16:
            out[y:y + step] = (block >> 8).astype(np.uint8)
        else:
            out[y:y + step] = np.clip(block * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _halve(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    out = cv2.resize(a, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
    return out[..., None] if out.ndim == 2 and a.ndim == 3 else out


class DisplayImage:
    """A picture prepared for display: uint8 RGB (and alpha) at full size plus a pyramid.

    Args:
        rgb: ``H x W x 3`` pixels, uint8 (kept without a copy), uint16 or float in [0, 1].
        alpha: ``H x W`` transparency in the same convention, or None.

    ``uid`` names this picture for good (unlike ``id()``, never reused) and ``version``
    grows whenever pixels change (:meth:`update_region`), so renderings cached under an
    older version, or for another picture, are never shown.
    """

    def __init__(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected H x W x 3 pixels, got shape {rgb.shape}")
        base_rgb = to_display_uint8(rgb)
        base_alpha = None if alpha is None else to_display_uint8(alpha)
        self.levels: list[tuple[np.ndarray, np.ndarray | None]] = [(base_rgb, base_alpha)]
        while max(self.levels[-1][0].shape[:2]) > MIN_LEVEL_SIDE:
            r, a = self.levels[-1]
            self.levels.append((_halve(r), None if a is None else _halve(a)))
        self.uid = next(_uids)
        self.version = 0

    @classmethod
    def from_photo(cls, photo: Any) -> DisplayImage:
        """Display buffers for a :class:`sr_core.imageio.Photo` (its rgb and alpha)."""
        return cls(photo.rgb, photo.alpha)

    @property
    def width(self) -> int:
        """Full-resolution width in pixels."""
        return int(self.levels[0][0].shape[1])

    @property
    def height(self) -> int:
        """Full-resolution height in pixels."""
        return int(self.levels[0][0].shape[0])

    @property
    def has_alpha(self) -> bool:
        """True when the picture has a transparency channel."""
        return self.levels[0][1] is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the pyramid (the full-size level included)."""
        return sum(r.nbytes + (0 if a is None else a.nbytes) for r, a in self.levels)

    def copy(self) -> DisplayImage:
        """An independent copy (e.g. a canvas that finished tiles are pasted into)."""
        twin = DisplayImage.__new__(DisplayImage)
        twin.levels = [(r.copy(), None if a is None else a.copy()) for r, a in self.levels]
        twin.uid = next(_uids)
        twin.version = 0
        return twin

    def dim(self, amount: float) -> None:
        """Blend every level towards mid grey by ``amount`` (0..1), in place."""
        keep = 1.0 - amount
        for r, _ in self.levels:
            for y in range(0, r.shape[0], 512):
                block = r[y:y + 512]
                block[...] = (block * keep + 128 * amount + 0.5).astype(np.uint8)
        self.version += 1

    # --- editing --------------------------------------------------------------------------------
    def update_region(self, y0: int, x0: int, rgb: np.ndarray) -> None:
        """Paste ``rgb`` (uint8/uint16/float) at full-resolution pixel ``(y0, x0)``.

        The coarser levels are recomputed over the affected area only, so pasting the tiles
        of a running upscale costs as much as the tiles themselves.
        """
        base = self.levels[0][0]
        h = min(rgb.shape[0], base.shape[0] - y0)
        w = min(rgb.shape[1], base.shape[1] - x0)
        if h <= 0 or w <= 0 or y0 < 0 or x0 < 0:
            return
        base[y0:y0 + h, x0:x0 + w] = to_display_uint8(rgb[:h, :w])
        ya, yb, xa, xb = y0, y0 + h, x0, x0 + w
        for k in range(1, len(self.levels)):
            fine, coarse = self.levels[k - 1][0], self.levels[k][0]
            # Grow to even bounds on the finer level so that each coarse pixel sees all four.
            ya, xa = ya // 2 * 2, xa // 2 * 2
            yb, xb = min(fine.shape[0], yb + yb % 2), min(fine.shape[1], xb + xb % 2)
            block = _halve(np.ascontiguousarray(fine[ya:yb, xa:xb]))
            cy, cx = ya // 2, xa // 2
            ch = min(block.shape[0], coarse.shape[0] - cy)
            cw = min(block.shape[1], coarse.shape[1] - cx)
            coarse[cy:cy + ch, cx:cx + cw] = block[:ch, :cw]
            ya, yb, xa, xb = cy, cy + ch, cx, cx + cw
        self.version += 1

    # --- rendering ------------------------------------------------------------------------------
    def extent(self, zx: float, zy: float) -> tuple[int, int]:
        """Size ``(width, height)`` in screen pixels of the whole picture at this zoom."""
        return max(1, round(self.width * zx)), max(1, round(self.height * zy))

    def level_for(self, zoom: float) -> int:
        """Pyramid level drawn at ``zoom``: the coarsest one still at least as fine as the
        screen (0 at 100 % and above)."""
        if zoom >= 1.0:
            return 0
        return min(len(self.levels) - 1, int(math.floor(math.log2(1.0 / zoom) + 1e-9)))

    def render(self, zx: float, zy: float, px: int, py: int, w: int, h: int, *,
               smooth: bool = False) -> np.ndarray:
        """Pixels of the zoomed picture over ``[px, px + w) x [py, py + h)``.

        Returns ``h x w x 3`` (or ``x 4`` with alpha) uint8, C-contiguous. The rectangle
        should lie inside :meth:`extent`; pixels beyond the picture repeat its edge.
        ``smooth`` enlarges with Lanczos rather than pixel by pixel above 100 %.
        """
        level = self.level_for(min(zx, zy))
        rgb, alpha = self.levels[level]
        if level == 0 and min(zx, zy) >= 1.0:
            if smooth and max(zx, zy) > 1.0:
                return self._bilinear(rgb, alpha, zx, zy, px, py, w, h,
                                      interpolation=cv2.INTER_LANCZOS4, margin=4)
            return self._nearest(rgb, alpha, zx, zy, px, py, w, h)
        lx = zx * self.width / rgb.shape[1]   # screen pixels per pixel of this level
        ly = zy * self.height / rgb.shape[0]
        return self._bilinear(rgb, alpha, lx, ly, px, py, w, h)

    @staticmethod
    def _nearest(rgb: np.ndarray, alpha: np.ndarray | None, zx: float, zy: float, px: int,
                 py: int, w: int, h: int) -> np.ndarray:
        ix = np.clip(np.floor((np.arange(px, px + w) + 0.5) / zx).astype(np.intp),
                     0, rgb.shape[1] - 1)
        iy = np.clip(np.floor((np.arange(py, py + h) + 0.5) / zy).astype(np.intp),
                     0, rgb.shape[0] - 1)
        x0, x1, y0, y1 = ix[0], ix[-1] + 1, iy[0], iy[-1] + 1
        out = rgb[y0:y1, x0:x1][iy - y0][:, ix - x0]
        if alpha is not None:
            a = alpha[y0:y1, x0:x1][iy - y0][:, ix - x0]
            out = np.dstack((out, a))
        return np.ascontiguousarray(out)

    @staticmethod
    def _bilinear(rgb: np.ndarray, alpha: np.ndarray | None, lx: float, ly: float, px: int,
                  py: int, w: int, h: int, *, interpolation: int = cv2.INTER_LINEAR,
                  margin: int = 1) -> np.ndarray:
        # Source footprint of the rectangle on this level, ``margin`` pixels for the filter.
        sx0 = max(0, int(math.floor((px + 0.5) / lx - 0.5)) - margin)
        sy0 = max(0, int(math.floor((py + 0.5) / ly - 0.5)) - margin)
        sx1 = min(rgb.shape[1], int(math.ceil((px + w - 0.5) / lx - 0.5)) + margin + 1)
        sy1 = min(rgb.shape[0], int(math.ceil((py + h - 0.5) / ly - 0.5)) + margin + 1)
        sx0, sy0 = min(sx0, rgb.shape[1] - 1), min(sy0, rgb.shape[0] - 1)
        sx1, sy1 = max(sx1, sx0 + 1), max(sy1, sy0 + 1)
        src = rgb[sy0:sy1, sx0:sx1]
        if alpha is not None:
            src = np.dstack((src, alpha[sy0:sy1, sx0:sx1]))
        # Inverse map: screen pixel centre -> level pixel centre, relative to the crop.
        m = np.array([[1.0 / lx, 0.0, (px + 0.5) / lx - 0.5 - sx0],
                      [0.0, 1.0 / ly, (py + 0.5) / ly - 0.5 - sy0]], dtype=np.float64)
        out = cv2.warpAffine(np.ascontiguousarray(src), m, (w, h),
                             flags=interpolation | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(out)
