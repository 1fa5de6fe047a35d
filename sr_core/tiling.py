"""Tile plans, context windows, raised-cosine blend weights and the streaming stitcher.

Geometry (all in low-resolution pixels unless a name ends in ``_hr``):

* The image is cut into a grid of **cores** that partition it. Core boundaries lie on
  multiples of the architecture's ``tile_multiple``, so the window grid a tile sees is the
  one the whole image would see.
* A tile's **output span** is its core grown by ``overlap // 2`` on every inner side; over
  the ``overlap`` pixels two neighbours share, their weights cross-fade with a raised cosine
  and sum to exactly one (the weights are separable, so corners of four tiles also sum to one).
* A tile's **source window**, the pixels the model reads, is its core grown by at least
  ``context`` on every inner side (aligned to ``tile_multiple``): every core pixel sees
  ``context`` pixels beyond it. The fades lie inside that context, so a pixel in the outer
  half of a fade (weight < 1/2) sees at least ``context - overlap // 2``. Measuring the
  context from the core, as the official HAT tile mode does with its 32-pixel pad, keeps the
  extra work of tiling low.

:class:`BandStitcher` assembles the output one row of tiles (a band) at a time: only the band
lives in float32; finished rows are converted into the caller's preallocated output array
(uint8, uint16 or float32) as soon as no later tile can touch them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: LR pixels over which two neighbouring tiles cross-fade.
DEFAULT_OVERLAP = 16


@dataclass(frozen=True)
class Span:
    """A half-open interval ``[lo, hi)`` of pixel rows or columns."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Tile:
    """One tile of a plan: grid position, core, blended output span and source window."""

    index: int
    row: int
    col: int
    core_y: Span
    core_x: Span
    out_y: Span
    out_x: Span
    src_y: Span
    src_x: Span

    @property
    def src_pixels(self) -> int:
        return self.src_y.size * self.src_x.size


@dataclass(frozen=True)
class TilePlan:
    """How an ``height x width`` image is cut into tiles for a ``scale``-times model."""

    height: int
    width: int
    scale: int
    tile: int
    context: int
    overlap: int
    multiple: int
    row_cores: tuple[Span, ...]
    col_cores: tuple[Span, ...]
    tiles: tuple[Tile, ...] = field(repr=False)

    @property
    def rows(self) -> int:
        return len(self.row_cores)

    @property
    def cols(self) -> int:
        return len(self.col_cores)

    @property
    def reach(self) -> int:
        """LR pixels of source read beyond a tile's output span (>= context)."""
        return source_reach(self.context, self.overlap, self.multiple)

    @property
    def max_source(self) -> tuple[int, int]:
        """Largest source window ``(h, w)`` of any tile: what one forward pass must hold."""
        return (max(t.src_y.size for t in self.tiles), max(t.src_x.size for t in self.tiles))

    def band(self, row: int) -> tuple[Tile, ...]:
        """The tiles of one grid row, left to right."""
        return self.tiles[row * self.cols:(row + 1) * self.cols]

    def band_span_hr(self, row: int) -> Span:
        """Output rows (high resolution) that the tiles of grid row ``row`` write to."""
        t = self.band(row)[0]
        return Span(t.out_y.lo * self.scale, t.out_y.hi * self.scale)

    def final_rows_hr(self, row: int) -> Span:
        """Output rows that are complete once grid rows ``0..row`` have been added."""
        first = 0 if row == 0 else self.band(row)[0].out_y.lo * self.scale
        if row == self.rows - 1:
            return Span(first, self.height * self.scale)
        last = self.band(row + 1)[0].out_y.lo * self.scale
        return Span(first, last)

    def weights_hr(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """Row and column blend weights (float32, high resolution) over ``tile``'s output span."""
        s = self.scale
        wy = axis_weights(tile.out_y.size * s, self.overlap * s,
                          fade_in=tile.row > 0, fade_out=tile.row < self.rows - 1)
        wx = axis_weights(tile.out_x.size * s, self.overlap * s,
                          fade_in=tile.col > 0, fade_out=tile.col < self.cols - 1)
        return wy, wx


def source_reach(context: int, overlap: int, multiple: int) -> int:
    """Source pixels read beyond a tile's output span (its core plus the fades).

    The core-to-source distance ``overlap // 2 + reach`` is ``context`` (at least the fade)
    rounded up to ``multiple``, so that inner source windows start and end on the
    architecture's window grid.
    """
    half = overlap // 2
    return _round_up(max(context, half), multiple) - half


def min_core(overlap: int, multiple: int) -> int:
    """Smallest core size a plan asks for.

    With cores on a ``multiple`` grid, this is what guarantees that :func:`split_axis` can
    always cut an axis into cores that hold both fades (checked exhaustively in the tests).
    """
    return _round_up(max(2 * overlap + multiple, 2 * multiple), multiple)


def min_tile(context: int, overlap: int = DEFAULT_OVERLAP, multiple: int = 8) -> int:
    """Smallest tile size (source window side) that leaves a usable core."""
    reach = source_reach(context, overlap, multiple)
    return min_core(overlap, multiple) + 2 * (overlap // 2 + reach)


def ramp(n: int) -> np.ndarray:
    """Raised-cosine fade-in of ``n`` samples (pixel centres): ``ramp(n) + ramp(n)[::-1] == 1``."""
    k = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / n)).astype(np.float32)


def axis_weights(length: int, overlap: int, *, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Weights of one tile along one axis: 1 inside, a raised cosine over each inner overlap."""
    w = np.ones(length, dtype=np.float32)
    if overlap > 0:
        r = ramp(overlap)
        if fade_in:
            w[:overlap] = r
        if fade_out:
            w[length - overlap:] = r[::-1]
    return w


def split_axis(size: int, core: int, multiple: int) -> list[Span]:
    """Cut ``[0, size)`` into the fewest near-equal pieces of at most ``core`` pixels whose
    boundaries lie on the ``multiple`` grid (the last piece absorbs the remainder)."""
    if core <= 0 or size <= core:
        return [Span(0, size)]
    n = math.ceil(size / core)
    while True:
        spans = _even_split(Span(0, size), n, multiple)
        if max(sp.size for sp in spans) <= core:
            return spans
        n += 1


def _even_split(span: Span, n: int, multiple: int) -> list[Span]:
    """``n`` pieces of ``span``: whole grid units shared out evenly, remainder to the last."""
    units, rest = divmod(span.size, multiple)
    n = max(1, min(n, units))
    base, extra = divmod(units, n)
    cuts = [span.lo]
    for i in range(n):
        cuts.append(cuts[-1] + (base + (i < extra)) * multiple)
    cuts[-1] += rest
    return [Span(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def source_window(span: Span, size: int, reach: int, multiple: int) -> Span:
    """``span`` grown by ``reach`` on each side, aligned outwards to ``multiple``, clipped."""
    lo = max(0, (span.lo - reach) // multiple * multiple)
    hi = min(size, _round_up(span.hi + reach, multiple))
    return Span(lo, hi)


def plan_tiles(height: int, width: int, *, scale: int, tile: int, context: int = 32,
               multiple: int = 8, overlap: int = DEFAULT_OVERLAP) -> TilePlan:
    """Plan the tiles for an ``height x width`` image.

    ``tile`` is the largest source window side a forward pass may see (0 = the whole image
    in one pass); it must be at least :func:`min_tile` unless it covers the image anyway.
    """
    if overlap % 2:
        raise ValueError("overlap must be even")
    smallest = min_tile(context, overlap, multiple)
    if tile and tile < smallest and tile < max(height, width):
        raise ValueError(f"tile {tile} is smaller than the minimum {smallest}")
    half = overlap // 2
    reach = source_reach(context, overlap, multiple)
    core = 0 if tile <= 0 else (tile - 2 * (half + reach)) // multiple * multiple
    if tile > 0 and tile >= height and tile >= width:
        core = 0
    rows = split_axis(height, core, multiple)
    cols = split_axis(width, core, multiple)
    cut = [sp for axis in (rows, cols) if len(axis) > 1 for sp in axis]
    if cut and min(sp.size for sp in cut) < overlap:
        raise ValueError(f"tile plan for {height}x{width} (tile {tile}) has a core narrower "
                         f"than the {overlap}-pixel overlap")
    tiles = []
    for i, cy in enumerate(rows):
        oy = Span(cy.lo - (half if i > 0 else 0), cy.hi + (half if i < len(rows) - 1 else 0))
        sy = source_window(oy, height, reach, multiple)
        for j, cx in enumerate(cols):
            ox = Span(cx.lo - (half if j > 0 else 0), cx.hi + (half if j < len(cols) - 1 else 0))
            sx = source_window(ox, width, reach, multiple)
            tiles.append(Tile(len(tiles), i, j, cy, cx, oy, ox, sy, sx))
    return TilePlan(height, width, scale, max(tile, 0), context, overlap, multiple,
                    tuple(rows), tuple(cols), tuple(tiles))


def split_span(span: Span, parts: int, multiple: int) -> list[Span]:
    """Cut ``span`` into up to ``parts`` pieces on a ``multiple`` grid (out-of-memory retries)."""
    if parts <= 1 or span.size < 2 * multiple:
        return [span]
    # grid relative to the image, not the span, so the pieces keep the window alignment
    lo = _round_up(span.lo, multiple)
    pieces = _even_split(Span(lo, span.hi), parts, multiple)
    if lo > span.lo:
        pieces[0] = Span(span.lo, pieces[0].hi)
    return pieces


def band_bytes(plan: TilePlan, channels: int) -> int:
    """Bytes of the float32 band buffer a :class:`BandStitcher` keeps for ``plan``."""
    tallest = max(plan.band_span_hr(r).size for r in range(plan.rows))
    return tallest * plan.width * plan.scale * channels * 4


class BandStitcher:
    """Blend tiles into preallocated outputs, one band of rows at a time.

    ``outputs`` are ``(array, channels)`` pairs that together hold the stitched channels in
    order, e.g. ``[(rgb, 3), (alpha, 1)]``; each array is ``(H*s, W*s, c)`` or, for a single
    channel, ``(H*s, W*s)``, of dtype float32 (clipped to [0, 1]), uint8 or uint16 (full
    scale, rounded). Add every tile of grid row ``r`` with :meth:`add`, then call
    :meth:`finish_band` ``(r)``; rows are written out as soon as they are final.
    """

    #: Rows converted per step when flushing, to keep the conversion's temporaries small.
    FLUSH_ROWS = 64

    def __init__(self, plan: TilePlan, outputs: Sequence[tuple[np.ndarray, int]]) -> None:
        self.plan = plan
        self.outputs = list(outputs)
        self.channels = sum(c for _, c in self.outputs)
        s = plan.scale
        for arr, c in self.outputs:
            want = (plan.height * s, plan.width * s) + ((c,) if arr.ndim == 3 else ())
            if arr.shape != want or (arr.ndim == 2 and c != 1):
                raise ValueError(f"output of shape {arr.shape} does not fit the plan ({want})")
        tallest = max(plan.band_span_hr(r).size for r in range(plan.rows))
        self._acc = np.zeros((tallest, plan.width * s, self.channels), dtype=np.float32)
        self._top = 0  # output row held by self._acc[0]

    def add(self, tile: Tile, pixels: np.ndarray, weighted: bool = False) -> None:
        """Accumulate ``pixels`` ``(h, w, channels)`` float32, the tile's output span at high
        resolution. Pass ``weighted=True`` if the blend weights are already applied."""
        s = self.plan.scale
        y0 = tile.out_y.lo * s - self._top
        x0 = tile.out_x.lo * s
        h, w = tile.out_y.size * s, tile.out_x.size * s
        if pixels.shape != (h, w, self.channels):
            raise ValueError(f"tile {tile.index}: expected {(h, w, self.channels)}, "
                             f"got {pixels.shape}")
        dst = self._acc[y0:y0 + h, x0:x0 + w]
        if weighted:
            dst += pixels
        else:
            wy, wx = self.plan.weights_hr(tile)
            dst += pixels * wy[:, None, None] * wx[None, :, None]

    def finish_band(self, row: int) -> Span:
        """Write the rows that grid row ``row`` completed; return them (high resolution)."""
        done = self.plan.final_rows_hr(row)
        for a in range(done.lo, done.hi, self.FLUSH_ROWS):
            b = min(done.hi, a + self.FLUSH_ROWS)
            self._flush(a, b)
        if row + 1 < self.plan.rows:  # slide the carried overlap rows to the buffer's top
            nxt = self.plan.band_span_hr(row + 1)
            carried = self.plan.band_span_hr(row).hi - nxt.lo  # the shared fade rows
            start = nxt.lo - self._top
            self._acc[:carried] = self._acc[start:start + carried]  # no overlap: start >= carried
            self._acc[carried:] = 0
            self._top = nxt.lo
        return done

    def _flush(self, a: int, b: int) -> None:
        block = self._acc[a - self._top:b - self._top]
        c0 = 0
        for arr, c in self.outputs:
            part = block[..., c0:c0 + c]
            dst = arr[a:b]
            if arr.ndim == 2:
                part = part[..., 0]
            _store(part, dst)
            c0 += c


def _store(values: np.ndarray, dst: np.ndarray) -> None:
    """Clip float values in [0, 1] into ``dst``: float32 as is, integers full-scale rounded."""
    if dst.dtype == np.float32:
        np.clip(values, 0.0, 1.0, out=dst)
        return
    top = float(np.iinfo(dst.dtype).max)
    scaled = values * top
    scaled += 0.5
    np.clip(scaled, 0.0, top, out=scaled)
    dst[...] = scaled  # truncation after +0.5 rounds half up


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
