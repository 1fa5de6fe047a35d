"""Tile plans, blend weights and the streaming stitcher (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest

from sr_core.tiling import (
    BandStitcher,
    Span,
    min_core,
    min_tile,
    plan_tiles,
    ramp,
    split_axis,
    split_span,
)

PLANS = [  # height, width, scale, tile, context, multiple
    (300, 517, 4, 200, 32, 16),
    (256, 256, 2, 144, 32, 8),
    (1000, 37, 3, 120, 32, 8),
    (97, 401, 4, 216, 48, 24),
    (64, 64, 4, 0, 32, 8),
    (50, 700, 1, 130, 32, 1),
]


def test_raised_cosine_fades_are_complementary():
    for n in (2, 7, 16, 64):
        r = ramp(n)
        assert np.allclose(r + r[::-1], 1.0, atol=1e-7)
        assert np.all(np.diff(r) > 0) and 0 < r[0] < 0.5 < r[-1] < 1


@pytest.mark.parametrize("h,w,s,tile,ctx,m", PLANS)
def test_weights_sum_to_one_everywhere(h, w, s, tile, ctx, m):
    plan = plan_tiles(h, w, scale=s, tile=tile, context=ctx, multiple=m)
    total = np.zeros((h * s, w * s), np.float64)
    for t in plan.tiles:
        wy, wx = plan.weights_hr(t)
        total[t.out_y.lo * s:t.out_y.hi * s, t.out_x.lo * s:t.out_x.hi * s] += np.outer(wy, wx)
    assert np.abs(total - 1).max() < 1e-6


@pytest.mark.parametrize("h,w,s,tile,ctx,m", PLANS)
def test_every_core_pixel_has_its_context(h, w, s, tile, ctx, m):
    plan = plan_tiles(h, w, scale=s, tile=tile, context=ctx, multiple=m)
    if tile:
        assert max(plan.max_source) <= tile
    half = plan.overlap // 2
    for t in plan.tiles:
        for core, out, src, size in ((t.core_y, t.out_y, t.src_y, h),
                                     (t.core_x, t.out_x, t.src_x, w)):
            assert src.lo == 0 or (core.lo - src.lo >= ctx and out.lo - src.lo >= ctx - half)
            assert src.hi == size or (src.hi - core.hi >= ctx and src.hi - out.hi >= ctx - half)
            # inner windows sit on the architecture's window grid
            assert src.lo % m == 0 and (src.hi == size or src.hi % m == 0)
    # cores partition the image
    assert plan.row_cores[0].lo == 0 and plan.row_cores[-1].hi == h
    assert all(a.hi == b.lo for a, b in zip(plan.row_cores, plan.row_cores[1:], strict=False))


def test_cores_always_hold_both_fades():
    """Exhaustive over sizes: the smallest core the plans use never yields a piece narrower
    than the overlap, and no piece exceeds the core (the bound min_core() promises)."""
    overlap = 16
    for m in (1, 8, 12, 16, 24, 32):
        for core in range(min_core(overlap, m), min_core(overlap, m) + 6 * m, m):
            for size in range(core + 1, 1200):
                spans = split_axis(size, core, m)
                sizes = [sp.size for sp in spans]
                assert min(sizes) >= overlap and max(sizes) <= core, (m, core, size, sizes)
                assert all(sp.lo % m == 0 for sp in spans)


def test_too_small_tile_is_refused():
    with pytest.raises(ValueError):
        plan_tiles(500, 500, scale=2, tile=min_tile(32, 16, 8) - 8, context=32, multiple=8)
    plan = plan_tiles(500, 500, scale=2, tile=min_tile(32, 16, 8), context=32, multiple=8)
    assert plan.rows > 1


def test_split_span_keeps_the_grid():
    pieces = split_span(Span(67, 152), 4, 8)
    assert pieces[0].lo == 67 and pieces[-1].hi == 152
    assert all(p.lo % 8 == 0 for p in pieces[1:])
    assert all(a.hi == b.lo for a, b in zip(pieces, pieces[1:], strict=False))
    assert split_span(Span(0, 10), 4, 8) == [Span(0, 10)]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_stitcher_streams_bands_into_the_output(dtype):
    """Tiles carrying a smooth global picture reproduce it exactly, whatever the output type;
    the float buffer it keeps is one band tall, not the whole output."""
    h, w, s = 200, 150, 3
    plan = plan_tiles(h, w, scale=s, tile=120, context=32, multiple=8)
    assert plan.rows >= 3 and plan.cols >= 2
    yy, xx = np.mgrid[0:h * s, 0:w * s].astype(np.float32)
    truth = np.stack([np.sin(yy / 37) * 0.5 + 0.5, xx / (w * s), (yy + xx) / ((h + w) * s)], -1)
    truth[:5, :5] = [1.4, -0.2, 0.5]  # out of range: clipped
    rgb = np.zeros((h * s, w * s, 3), dtype)
    alpha = np.zeros((h * s, w * s), dtype)
    st = BandStitcher(plan, [(rgb, 3), (alpha, 1)])
    assert st._acc.shape[0] < h * s / 2
    for r in range(plan.rows):
        for t in plan.band(r):
            ys, xs = slice(t.out_y.lo * s, t.out_y.hi * s), slice(t.out_x.lo * s, t.out_x.hi * s)
            px = np.concatenate([truth[ys, xs], truth[ys, xs, :1]], axis=2)
            st.add(t, px)
        done = st.finish_band(r)
        assert done.hi == (h * s if r == plan.rows - 1 else plan.band(r + 1)[0].out_y.lo * s)
    want = np.clip(truth, 0, 1)
    if dtype != np.float32:
        top = np.iinfo(dtype).max
        want = np.floor(want * top + 0.5).astype(dtype)
        assert np.abs(rgb.astype(np.int64) - want).max() <= 1
        assert np.abs(alpha.astype(np.int64) - want[..., 0]).max() <= 1
    else:
        assert np.abs(rgb - want).max() < 1e-6
        assert np.abs(alpha - want[..., 0]).max() < 1e-6
