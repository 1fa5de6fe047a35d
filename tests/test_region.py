"""Upscaling a region of a picture (the window's preview) matches the whole picture there."""

from __future__ import annotations

import numpy as np
import pytest
from test_interrupt import small_asid

from sr_core import Upscaler
from sr_core.engine import clip_region, region_source
from sr_core.errors import FinescaleError
from sr_core.tiling import Span


def textured(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([np.sin(x / 5), np.cos(y / 7), np.sin((x + y) / 3)], -1) * 0.4 + 0.5
    return np.clip(rgb + rng.normal(0, 0.05, rgb.shape), 0, 1).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize("region", [(40, 30, 40, 32), (0, 0, 33, 21), (100, 90, 60, 60)])
def test_region_equals_the_same_part_of_the_whole_upscale(region):
    up = Upscaler(small_asid(blocks=2, scale=2), device="cpu", tile=0)
    img = textured(136, 152)
    whole = up.upscale(img)
    part = up.upscale_region(img, region)
    x, y, w, h = clip_region(region, 152, 136)
    assert (part.x, part.y, part.width, part.height) == (x, y, w, h)
    assert part.pixels.shape == (h * 2, w * 2, 3)
    ref = whole[y * 2:(y + h) * 2, x * 2:(x + w) * 2]
    assert psnr(part.pixels, ref) > 50


def test_region_costs_the_region_not_the_picture():
    model = small_asid(blocks=1, scale=2)
    up = Upscaler(model, device="cpu", tile=0)
    sizes = []
    model.register_forward_pre_hook(lambda m, args: sizes.append(tuple(args[0].shape[-2:])))
    up.upscale_region(textured(400, 600), (300, 200, 48, 40))
    assert len(sizes) == 1 and sizes[0][0] * sizes[0][1] < 140 * 140  # not 400 x 600


def test_region_with_alpha_keeps_it_and_an_outside_region_is_one_sentence():
    up = Upscaler(small_asid(blocks=1, scale=2), device="cpu", tile=0)
    rgba = np.dstack((textured(64, 64), np.full((64, 64), 0.5, np.float32)))
    part = up.upscale_region(rgba, (8, 8, 16, 16))
    assert part.pixels.shape == (32, 32, 4)
    assert np.allclose(part.pixels[..., 3], 0.5, atol=0.01)
    with pytest.raises(FinescaleError, match="outside"):
        up.upscale_region(rgba, (70, 0, 10, 10))


def test_region_source_lies_on_the_window_grid_and_inside_the_picture():
    assert region_source(Span(40, 72), 136, 32, 8) == Span(8, 104)
    assert region_source(Span(3, 20), 30, 32, 8) == Span(0, 30)
    assert region_source(Span(50, 51), 200, 10, 16) == Span(32, 64)


def _counted(model):
    calls = []
    model.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape[-2:])))
    return calls


def test_a_full_run_after_a_preview_reuses_its_tiles_and_is_bit_identical():
    from sr_core.engine import TileCache

    model = small_asid(blocks=1, scale=2)
    img = textured(200, 260)
    fresh = Upscaler(model, device="cpu", tile=120)
    whole = fresh.upscale(img)
    up = Upscaler(model, device="cpu", tile=120, tile_cache=TileCache())
    plan = up.plan(200, 260)
    calls = _counted(model)
    part = up.upscale_region(img, (60, 50, 24, 24), reuse=10.0)
    previewed = len(calls)
    assert 1 <= previewed < len(plan.tiles) and part.kept_tiles == previewed
    again = up.upscale(img)
    assert len(calls) - previewed == len(plan.tiles) - previewed  # reused, not recomputed
    assert up.tile_cache.hits == previewed
    assert np.array_equal(again, whole)
    assert psnr(part.pixels, whole[100:148, 120:168]) > 50


def test_without_a_cache_or_when_the_tiles_cost_too_much_the_crop_alone_is_computed():
    from sr_core.engine import TileCache

    model = small_asid(blocks=1, scale=2)
    img = textured(200, 260)
    up = Upscaler(model, device="cpu", tile=0, tile_cache=TileCache())
    calls = _counted(model)
    up.upscale_region(img, (60, 50, 24, 24))  # the one whole-picture tile costs too much
    assert len(calls) == 1 and calls[0][0] * calls[0][1] < 120 * 120
    assert len(up.tile_cache) == 1  # the crop's window, useless to a full run but harmless


def test_the_tile_cache_drops_the_least_recently_used_outputs_beyond_its_budget():
    import torch

    from sr_core.engine import TileCache

    cache = TileCache(max_bytes=3 * 4 * 100)
    for i in range(4):
        cache.put(("k", i), torch.zeros(100))
    assert len(cache) == 3 and cache.get(("k", 0)) is None and cache.get(("k", 3)) is not None
