"""``Upscaler``: a super-resolution model, a device and a tile plan behind one call.

``Upscaler(model).upscale(photo)`` streams the picture through the model tile by tile
(:mod:`sr_core.tiling`), blends the tiles into one preallocated output, upscales alpha beside
the colour, and resizes to any requested size. It reports progress (per tile, and per
network step within a tile), honours a cancel token before every module of the network (so
Cancel stops a one-tile photo within one layer, :mod:`sr_core.interrupt`), answers
out-of-memory errors with smaller tiles (then the CPU), and never writes a file.
``upscale_region`` upscales part of a picture with its context (the window's preview).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .cleanup import default_clean_up
from .device import (
    choose_cpu_threads,
    choose_device,
    choose_dtype,
    describe,
    dtype_name,
    is_out_of_memory,
    memory_budget,
    release_cached_memory,
    release_freed_memory_promptly,
)
from .errors import Cancelled, FinescaleError
from .interrupt import ForwardWatch
from .loader import load_model
from .models import SRModel
from .tiling import (
    DEFAULT_OVERLAP,
    BandStitcher,
    Span,
    Tile,
    TilePlan,
    band_bytes,
    min_tile,
    plan_tiles,
    source_window,
    split_span,
)

__all__ = ["bleed_colour", "CancelToken", "clip_region", "DETAIL_STEP", "FLOAT_OUTPUT_MAX_BYTES",
           "MAX_SPLITS", "output_size", "Region", "region_source", "resize", "REUSE_COST",
           "TILE_CACHE_BYTES", "TileCache", "TRANSPARENT", "Upscaler"]


ProgressFn = Callable[[int, int, float], None]
TileFn = Callable[[int, int, np.ndarray], None]
#: ``detail(fraction_done, eta_seconds)``: fine progress within and across tiles (eta -1: unknown).
DetailFn = Callable[[float, float], None]
#: ``detail`` is called when the fraction done has grown by at least this much.
DETAIL_STEP = 0.002

#: A float32 output is returned for Photos up to this many bytes of RGB; beyond it the
#: output is uint8 / uint16 (the source's bit depth) so that huge results stay affordable.
FLOAT_OUTPUT_MAX_BYTES = 256 << 20
#: Out-of-memory retries split a tile into 2x2, 4x4, 8x8 pieces before giving up the device.
MAX_SPLITS = 3
#: Alpha at or below this is "transparent": its colour is replaced before the model sees it.
TRANSPARENT = 1.0 / 512
#: ``upscale_region`` computes the whole picture's own tiles (kept for a later full run) when
#: they cost at most this many times the region's context-padded crop; else just the crop.
#: (A 256 x 256 preview inside one CPU tile of ~430 pixels costs about 1.8 times its crop.)
REUSE_COST = 2.0
#: Bytes of model outputs a :class:`TileCache` keeps by default (least recently used go).
TILE_CACHE_BYTES = 384 << 20


class CancelToken(Protocol):
    """Anything with ``is_set()``; :class:`threading.Event` is one."""

    def is_set(self) -> bool: ...


@dataclass
class _Job:
    """One upscale in flight: the (padded) source and the callbacks."""

    rgb: np.ndarray            # H x W x 3 source colour (uint8 / uint16 / float32)
    alpha: np.ndarray | None   # H x W source alpha, same convention, or None
    plan: TilePlan
    cancel: CancelToken | None
    on_tile: TileFn | None
    height: int                # size before padding up to the model's minimum
    width: int
    meter: _Meter | None = None


class TileCache:
    """Model outputs by source window, so a full run reuses what a preview computed.

    A key is the window's place and a digest of its pixels, plus what the output depends on
    besides them (``model``: the model's name and identity, its clean-up, precision and
    device, given by the :class:`Upscaler`). The same input through the same network gives
    the same output bit for bit, so a hit is exactly what a fresh forward pass would return.
    Entries beyond ``max_bytes`` are dropped, least recently used first. ``hits`` and
    ``misses`` count the lookups.
    """

    def __init__(self, max_bytes: int = TILE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(model: tuple[Any, ...], window: np.ndarray, sy: Span, sx: Span) -> tuple[Any, ...]:
        """The key of ``window`` (the source pixels at rows ``sy``, columns ``sx``)."""
        digest = hashlib.blake2b(np.ascontiguousarray(window).data, digest_size=16)
        return (*model, sy.lo, sy.hi, sx.lo, sx.hi, str(window.dtype), window.shape,
                digest.hexdigest())

    def get(self, key: tuple[Any, ...]) -> torch.Tensor | None:
        """The output stored under ``key``, or None."""
        out = self._items.get(key)
        if out is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return out

    def put(self, key: tuple[Any, ...], output: torch.Tensor) -> None:
        """Keep ``output`` (a model output) under ``key``."""
        size = output.element_size() * output.nelement()
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.element_size() * old.nelement()
        self._items[key] = output
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= dropped.element_size() * dropped.nelement()

    def clear(self) -> None:
        """Forget everything (e.g. when another picture is opened)."""
        self._items.clear()
        self._bytes = 0


class _Meter:
    """Fraction of a job done, from finished tiles plus the steps of the tile under way."""

    def __init__(self, plan: TilePlan, detail: DetailFn,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total_px = max(1, sum(t.src_pixels for t in plan.tiles))
        self.done_px = 0
        self.tile_px = 0
        self.detail = detail
        self.clock = clock
        self.started = clock()
        self.shown = -1.0

    def begin_tile(self, tile: Tile) -> None:
        self.tile_px = tile.src_pixels

    def end_tile(self) -> None:
        self.done_px += self.tile_px
        self.tile_px = 0
        self.report(self.done_px / self.total_px)

    def step(self, done: int, total: int) -> None:
        self.report((self.done_px + self.tile_px * done / max(1, total)) / self.total_px)

    def report(self, fraction: float) -> None:
        fraction = min(1.0, fraction)
        if fraction - self.shown < DETAIL_STEP and fraction < 1.0:
            return
        self.shown = fraction
        elapsed = self.clock() - self.started
        eta = elapsed * (1.0 - fraction) / fraction if fraction >= 0.01 else -1.0
        self.detail(fraction, eta)


class Upscaler:
    """Run a super-resolution model over photos of any size.

    Args:
        model: an :class:`SRModel` or anything :func:`load_model` accepts (path, id, state dict).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see ``device.choose_dtype``).
        tile: ``"auto"`` (the largest tile the memory budget allows), ``0`` (the whole image
            in one pass) or the largest tile side in pixels, context included.
        overlap: low-resolution pixels over which neighbouring tiles cross-fade.
        on_message: receives one-sentence notices (falling back to the CPU, ...); by default
            they are issued as :class:`RuntimeWarning`.
        clean_up: for a catalogue model with a paper-exact and a photo version, where to sit
            between them (0 = paper-exact, 1 = photo; :mod:`sr_core.cleanup`). None: the photo
            model's default, and any other model unchanged.
        tile_cache: keep model outputs by source window (:class:`TileCache`), so that
            ``upscale`` reuses the tiles an earlier ``upscale_region`` of the same picture
            computed. None: no cache.

    The model is moved to the chosen device and precision.
    """

    def __init__(self, model: Any, device: str | torch.device = "auto",
                 precision: str | torch.dtype = "auto", tile: int | str = "auto", *,
                 overlap: int = DEFAULT_OVERLAP,
                 on_message: Callable[[str], None] | None = None,
                 clean_up: float | None = None, tile_cache: TileCache | None = None) -> None:
        if clean_up is None:
            clean_up = default_clean_up(model)
        self.model: SRModel = load_model(model, clean_up=clean_up)
        self.clean_up = clean_up
        self.tile_cache = tile_cache
        self.device = choose_device(device)
        self.dtype = choose_dtype(precision, self.device, self.model.info.half_dtypes,
                                  cpu_bf16_ok=self.model.info.cpu_bf16_ok)
        #: Most CPU threads a forward pass may use (torch's setting when this was made); each
        #: pass asks ``device.choose_cpu_threads`` (fewer only where OpenMP's threads spin
        #: and other processes hold cores).
        self.max_threads = torch.get_num_threads()
        #: Threads the latest forward pass ran with.
        self.threads_used = self.max_threads
        self.overlap = overlap
        self.on_message = on_message
        self.context = max(32, int(self.model.info.context))
        self.multiple = max(1, int(self.model.info.tile_multiple))
        self.tile = self._parse_tile(tile)
        self._splits = 0
        #: Cancel checks and step counts inside the forward pass (``watch.max_gap``: the
        #: worst cancel latency seen, in seconds).
        self.watch = ForwardWatch(self.model)
        self.model.to(device=self.device, dtype=self.dtype).eval()
        release_freed_memory_promptly()

    # --- planning ---------------------------------------------------------------------------
    @property
    def min_tile(self) -> int:
        """Smallest tile size this model can be run with (context on every inner side)."""
        return min_tile(self.context, self.overlap, self.multiple)

    def _parse_tile(self, tile: int | str) -> int | str:
        if isinstance(tile, str):
            t = tile.strip().lower()
            if t == "auto":
                return "auto"
            if not t.isdigit():
                raise FinescaleError(f"Tile size '{tile}' is not a number of pixels, 0 or 'auto'.")
            tile = int(t)
        if tile < 0:
            raise FinescaleError(f"Tile size {tile} is negative; use 0 (whole image), auto "
                                 "or a number of pixels.")
        if 0 < tile < self.min_tile:
            raise FinescaleError(f"Tile size {tile} is too small for {self.model.name}: tiles need "
                                 f"at least {self.min_tile} pixels (context on every side).")
        return tile

    def plan(self, height: int, width: int, *, channels: int = 3) -> TilePlan:
        """The tile plan ``upscale`` would use for an ``height x width`` picture."""
        h, w = max(height, self.model.info.min_size), max(width, self.model.info.min_size)
        tile = self.tile
        if tile == "auto":
            tile = self.auto_tile(h, w, channels=channels)
        return self._plan(h, w, int(tile))

    def _plan(self, height: int, width: int, tile: int) -> TilePlan:
        return plan_tiles(height, width, scale=self.model.scale, tile=tile, context=self.context,
                          multiple=self.multiple, overlap=self.overlap)

    def auto_tile(self, height: int, width: int, *, channels: int = 3,
                  budget: int | None = None) -> int:
        """Largest tile (0 = whole image) whose estimated peak memory fits ``budget`` bytes.

        The estimate is the model's own memory model for the largest source window, plus the
        stitcher's float32 band and the high-resolution copies of one tile. ``budget``
        defaults to :func:`sr_core.device.memory_budget` of the current device.
        """
        if budget is None:
            budget = memory_budget(self.device)
        if self._cost(self._plan(height, width, 0), channels) <= budget:
            return 0
        m = self.multiple
        lo, hi = self.min_tile, max(self.min_tile, -(-max(height, width) // m) * m)
        if self._cost(self._plan(height, width, lo), channels) > budget:
            return lo
        while hi - lo > m:  # largest multiple-of-m tile that fits
            mid = (lo + hi) // 2 // m * m
            if mid <= lo:
                break
            if self._cost(self._plan(height, width, mid), channels) <= budget:
                lo = mid
            else:
                hi = mid
        return lo

    def _cost(self, plan: TilePlan, channels: int) -> int:
        sh, sw = plan.max_source
        hr_tile = sh * sw * plan.scale ** 2 * channels * 4
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        model = self.model.estimate_memory(sh, sw, itemsize)
        return model + band_bytes(plan, channels) + 2 * hr_tile

    # --- the public call --------------------------------------------------------------------
    def upscale(self, image: Any, *, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, on_tile: TileFn | None = None,
                scale: float | None = None, width: int | None = None,
                height: int | None = None, detail: DetailFn | None = None) -> Any:
        """Upscale a :class:`~sr_core.imageio.Photo` or an ``H x W x 3|4`` array.

        Args:
            image: a Photo (returned as a Photo with its metadata, alpha upscaled beside the
                colour) or an ndarray (uint8, uint16 or float in [0, 1]; 4 channels = RGBA),
                returned as an ndarray of the same dtype (float input gives float32).
            progress: ``progress(done_tiles, total_tiles, eta_seconds)`` after every tile.
            cancel: checked before every tile and before every module of the network; when
                set, :class:`~sr_core.errors.Cancelled` is raised and nothing is returned.
            on_tile: ``on_tile(y0, x0, rgb_uint8)`` after every tile with a cheap preview: the
                tile's core at the *input* resolution, placed at input pixel ``(y0, x0)``.
            scale, width, height: at most one; the output size (``width`` or ``height`` alone
                keep the aspect ratio). Default: the model's scale. Other sizes are made by
                the model's scale followed by an antialiased resize.
            detail: ``detail(fraction_done, eta_seconds)`` as the network's layers finish
                (every 0.2 % at most), so that a one-tile photo has a percentage too.
        """
        photo = image if _is_photo(image) else None
        rgb, alpha = _split_channels(image.rgb if photo is not None else image,
                                     photo.alpha if photo is not None else None)
        h, w = rgb.shape[:2]
        s = self.model.scale
        target = output_size(h, w, s, scale=scale, out_width=width, out_height=height)
        out_dtype = _output_dtype(rgb.dtype, photo, h * w * s * s)
        if alpha is not None:
            rgb = bleed_colour(rgb, alpha)
        rgb_p, alpha_p = _pad_to_min(rgb, alpha, self.model.info.min_size)
        hp, wp = rgb_p.shape[:2]
        plan = self.plan(hp, wp, channels=3 + (alpha is not None))
        with_alpha = alpha is not None
        if photo is None and with_alpha:  # one RGBA buffer; the stitcher writes through views
            both = np.empty((hp * s, wp * s, 4), dtype=out_dtype)
            out_rgb, out_alpha = both[..., :3], both[..., 3]
        else:
            both = None
            out_rgb = np.empty((hp * s, wp * s, 3), dtype=out_dtype)
            out_alpha = np.empty((hp * s, wp * s), dtype=out_dtype) if with_alpha else None
        job = _Job(rgb_p, alpha_p, plan, cancel, on_tile, h, w,
                   _Meter(plan, detail) if detail is not None else None)
        outputs = [(out_rgb, 3)] + ([(out_alpha, 1)] if out_alpha is not None else [])
        on_step = job.meter.step if job.meter is not None else None
        self.watch.every_op = self.device.type == "cpu"  # GPU kernels run asynchronously
        with torch.inference_mode(), self.watch.active(cancel, on_step):
            self._run(job, BandStitcher(plan, outputs), progress)
        if both is not None:
            result = _finish(both, (h * s, w * s), target)
            return result
        rgb_out = _finish(out_rgb, (h * s, w * s), target)
        alpha_out = _finish(out_alpha, (h * s, w * s), target) if out_alpha is not None else None
        if photo is not None:
            return photo.with_pixels(rgb_out, alpha_out)
        return rgb_out

    def upscale_region(self, image: Any, region: tuple[int, int, int, int], *,
                       progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                       detail: DetailFn | None = None, reuse: float = REUSE_COST) -> Region:
        """Upscale only ``region`` = ``(x, y, width, height)`` (input pixels) of ``image``.

        The model reads the region plus its tiling context, so the result matches the same
        part of a whole-picture upscale (a preview of it) at about the cost of the region.
        When the whole picture's own tiles that touch the region cost at most ``reuse`` times
        the region's context-padded crop (as it would be tiled), those tiles are computed
        (and kept in :attr:`tile_cache`, so a later :meth:`upscale` of the picture does not
        compute them again); otherwise only the crop (:func:`region_source`) is. ``image``
        is a Photo or an array as for :meth:`upscale`; the region is clipped to the picture.
        Returns a :class:`Region` holding the model's output over the region: ``height *
        scale x width * scale`` pixels, RGB or RGBA, uint8/uint16 for such sources, else
        float32.
        """
        photo = image if _is_photo(image) else None
        rgb, alpha = _split_channels(image.rgb if photo is not None else image,
                                     photo.alpha if photo is not None else None)
        hh, ww = rgb.shape[:2]
        x, y, w, h = clip_region(region, ww, hh)
        sy, sx = region_source(Span(y, y + h), hh, self.context, self.multiple), \
            region_source(Span(x, x + w), ww, self.context, self.multiple)
        s = self.model.scale
        tiles = self._tiles_over(hh, ww, x, y, w, h) if alpha is None else None
        crop_cost = sum(t.src_pixels for t in self.plan(sy.size, sx.size).tiles)
        if tiles is not None and sum(t.src_pixels for t in tiles[1]) <= reuse * crop_cost:
            pixels = self._region_from_plan(rgb, tiles[0], tiles[1], (x, y, w, h), progress,
                                            cancel, detail)
            return Region(x, y, w, h, s, pixels, len(tiles[1]))
        crop = rgb[sy.lo:sy.hi, sx.lo:sx.hi]
        if alpha is not None:
            crop = np.dstack((crop, alpha[sy.lo:sy.hi, sx.lo:sx.hi]))
        out = self.upscale(np.ascontiguousarray(crop), progress=progress, cancel=cancel,
                           detail=detail)
        oy, ox = (y - sy.lo) * s, (x - sx.lo) * s
        pixels = np.ascontiguousarray(out[oy:oy + h * s, ox:ox + w * s])
        return Region(x, y, w, h, s, pixels)

    def _tiles_over(self, height: int, width: int, x: int, y: int, w: int,
                    h: int) -> tuple[TilePlan, list[Tile]] | None:
        """The whole picture's plan and its tiles whose output spans meet the region (None
        when there is no tile cache or the picture is below the model's minimum size)."""
        if self.tile_cache is None or min(height, width) < self.model.info.min_size:
            return None
        plan = self.plan(height, width)
        return plan, [t for t in plan.tiles if t.out_y.lo < y + h and y < t.out_y.hi
                      and t.out_x.lo < x + w and x < t.out_x.hi]

    def _region_from_plan(self, rgb: np.ndarray, plan: TilePlan, tiles: list[Tile],
                          rect: tuple[int, int, int, int], progress: ProgressFn | None,
                          cancel: CancelToken | None, detail: DetailFn | None) -> np.ndarray:
        """The region blended from the whole picture's own ``tiles`` (each kept in the cache)."""
        x, y, w, h = rect
        s = self.model.scale
        acc = np.zeros((h * s, w * s, 3), dtype=np.float32)
        sub = TilePlan(plan.height, plan.width, s, plan.tile, plan.context, plan.overlap,
                       plan.multiple, plan.row_cores, plan.col_cores, tuple(tiles))
        job = _Job(rgb, None, sub, cancel, None, plan.height, plan.width,
                   _Meter(sub, detail) if detail is not None else None)
        self.watch.every_op = self.device.type == "cpu"
        with torch.inference_mode(), self.watch.active(cancel, job.meter.step
                                                       if job.meter is not None else None):
            for i, tile in enumerate(tiles):
                _check(cancel)
                if job.meter is not None:
                    job.meter.begin_tile(tile)
                hr = self._tile_pixels(job, tile)
                wy, wx = (torch.from_numpy(v).to(hr.device) for v in plan.weights_hr(tile))
                hr.mul_(wy[None, :, None]).mul_(wx[None, None, :])
                y0, y1 = max(y, tile.out_y.lo), min(y + h, tile.out_y.hi)
                x0, x1 = max(x, tile.out_x.lo), min(x + w, tile.out_x.hi)
                part = hr[:, (y0 - tile.out_y.lo) * s:(y1 - tile.out_y.lo) * s,
                          (x0 - tile.out_x.lo) * s:(x1 - tile.out_x.lo) * s]
                acc[(y0 - y) * s:(y1 - y) * s, (x0 - x) * s:(x1 - x) * s] += \
                    part.permute(1, 2, 0).cpu().numpy()
                if job.meter is not None:
                    job.meter.end_tile()
                if progress is not None:
                    progress(i + 1, len(tiles), 0.0)
        np.clip(acc, 0.0, 1.0, out=acc)
        return _from_float(acc, _output_dtype(rgb.dtype, None, 0))

    # --- the tile loop ----------------------------------------------------------------------
    def _run(self, job: _Job, stitcher: BandStitcher, progress: ProgressFn | None) -> None:
        plan = job.plan
        total_px = sum(t.src_pixels for t in plan.tiles)
        done_px, started = 0, time.perf_counter()
        for row in range(plan.rows):
            for tile in plan.band(row):
                _check(job.cancel)
                if job.meter is not None:
                    job.meter.begin_tile(tile)
                hr = self._tile_pixels(job, tile)
                if job.on_tile is not None:
                    self._preview(job, tile, hr)
                wy, wx = (torch.from_numpy(v).to(hr.device) for v in plan.weights_hr(tile))
                hr.mul_(wy[None, :, None]).mul_(wx[None, None, :])
                stitcher.add(tile, hr.permute(1, 2, 0).contiguous().cpu().numpy(), weighted=True)
                del hr
                done_px += tile.src_pixels
                if job.meter is not None:
                    job.meter.end_tile()
                if progress is not None:
                    eta = (time.perf_counter() - started) * (total_px - done_px) / done_px
                    progress(tile.index + 1, len(plan.tiles), eta)
            stitcher.finish_band(row)

    def _tile_pixels(self, job: _Job, tile: Tile) -> torch.Tensor:
        """The tile's output span at high resolution, ``(C, h, w)`` float32, unweighted.

        An out-of-memory error splits the tile into smaller pieces (each with full context)
        and retries it; past :data:`MAX_SPLITS` the CPU takes over.
        """
        while True:
            try:
                return self._region(job, tile.out_y, tile.out_x, 2 ** self._splits)
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                del e  # drop the traceback: it pins the failed tile's tensors
                release_cached_memory(self.device)
                self._after_oom(tile)

    def _after_oom(self, tile: Tile) -> None:
        piece = max(tile.out_y.size, tile.out_x.size) // 2 ** (self._splits + 1)
        if self._splits < MAX_SPLITS and piece >= self.multiple:
            self._splits += 1
            return
        if self.device.type != "cpu":
            was = describe(self.device)
            self.device, self.dtype, self._splits = torch.device("cpu"), torch.float32, 0
            self.model.to(device=self.device, dtype=self.dtype)
            self._message(f"{was} ran out of memory even with small tiles; continuing on the CPU "
                          "(slower).")
            return
        raise FinescaleError(f"Not enough memory to run {self.model.name} even on tiles of "
                             f"{piece * 2} pixels; close other programs or free some memory.")

    def _region(self, job: _Job, out_y: Span, out_x: Span, parts: int) -> torch.Tensor:
        """Model output over ``out_y x out_x`` computed in up to ``parts x parts`` pieces."""
        s, m, reach = self.model.scale, self.multiple, job.plan.reach
        channels = 3 + (job.alpha is not None)
        res = torch.empty((channels, out_y.size * s, out_x.size * s), device=self.device)
        hp, wp = job.rgb.shape[:2]
        for py in split_span(out_y, parts, m):
            for px in split_span(out_x, parts, m):
                if parts > 1:
                    _check(job.cancel)
                sy, sx = source_window(py, hp, reach, m), source_window(px, wp, reach, m)
                y = self._cached_forward(job.rgb, sy, sx)
                ry, rx = (py.lo - sy.lo) * s, (px.lo - sx.lo) * s
                dy, dx = (py.lo - out_y.lo) * s, (px.lo - out_x.lo) * s
                hh, ww = py.size * s, px.size * s
                res[:3, dy:dy + hh, dx:dx + ww] = y[0, :, ry:ry + hh, rx:rx + ww]
                del y
                if job.alpha is not None:
                    a = _window(job.alpha, sy, sx, self.device)
                    a = F.interpolate(a, scale_factor=s, mode="bicubic", align_corners=False)
                    res[3, dy:dy + hh, dx:dx + ww] = a[0, 0, ry:ry + hh, rx:rx + ww]
        return res

    def _cached_forward(self, rgb: np.ndarray, sy: Span, sx: Span) -> torch.Tensor:
        """The model's output for the source window ``sy x sx``, from the tile cache when
        this very window was computed before."""
        cache = self.tile_cache
        if cache is None:
            return self._forward(_window(rgb, sy, sx, self.device))
        model = (self.model.name, id(self.model), self.clean_up, str(self.dtype),
                 str(self.device))
        key = cache.key(model, rgb[sy.lo:sy.hi, sx.lo:sx.hi], sy, sx)
        y = cache.get(key)
        if y is None:
            y = self._forward(_window(rgb, sy, sx, self.device))
            cache.put(key, y)
        return y

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass in the working precision; float32 out.

        Half precision that overflows (non-finite output) is abandoned for float32 for the
        rest of the run, with a notice: a silently black or speckled tile is worse than slow.
        """
        before = torch.get_num_threads()
        if self.device.type == "cpu" and self.max_threads > 1:
            torch.set_num_threads(choose_cpu_threads(self.max_threads))
        self.threads_used = torch.get_num_threads()
        try:
            y = self.model(x.to(self.dtype)).float()
            if self.dtype != torch.float32 and not bool(torch.isfinite(y).all()):
                self._message(f"{self.model.name} overflowed in {dtype_name(self.dtype)}; "
                              "continuing in fp32.")
                self.dtype = torch.float32
                self.model.to(dtype=self.dtype)
                y = self.model(x.float()).float()
        finally:
            torch.set_num_threads(before)
        return y

    def _preview(self, job: _Job, tile: Tile, hr: torch.Tensor) -> None:
        s = self.model.scale
        y0, y1 = tile.core_y.lo, min(tile.core_y.hi, job.height)
        x0, x1 = tile.core_x.lo, min(tile.core_x.hi, job.width)
        if y1 <= y0 or x1 <= x0:
            return
        oy, ox = (y0 - tile.out_y.lo) * s, (x0 - tile.out_x.lo) * s
        core = hr[None, :3, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s].clamp(0, 1)
        small = F.avg_pool2d(core, s) if s > 1 else core
        img = (small[0] * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        job.on_tile(y0, x0, np.ascontiguousarray(img))

    def _message(self, text: str) -> None:
        if self.on_message is not None:
            self.on_message(text)
        else:
            warnings.warn(text, RuntimeWarning, stacklevel=3)

    def __repr__(self) -> str:
        return (f"Upscaler({self.model.name}, device={describe(self.device)}, "
                f"precision={dtype_name(self.dtype)}, tile={self.tile})")


# --- helpers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    """The model's output over part of a picture: input rectangle ``(x, y, width, height)``
    and ``pixels`` of ``height * scale x width * scale`` (RGB or RGBA)."""

    x: int
    y: int
    width: int
    height: int
    scale: int
    pixels: np.ndarray
    #: Tiles of the whole picture's plan computed (and kept in the tile cache) for it; 0
    #: when only the region's crop was.
    kept_tiles: int = 0


def clip_region(region: tuple[int, int, int, int], width: int,
                height: int) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` cut to a ``width x height`` picture; an empty result is an error."""
    x, y, w, h = (int(round(v)) for v in region)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        raise FinescaleError(f"The region {w} x {h} at ({x}, {y}) lies outside the "
                             f"{width} x {height} picture.")
    return x0, y0, x1 - x0, y1 - y0


def region_source(span: Span, size: int, context: int, multiple: int) -> Span:
    """Input rows (or columns) the model reads to upscale ``span`` as the whole picture would:
    ``span`` grown by ``context`` on each side, both ends on the architecture's ``multiple``
    grid (so windows fall where they fall for the whole picture), clipped to ``[0, size)``."""
    lo = max(0, (span.lo - context) // multiple * multiple)
    hi = min(size, -(-(span.hi + context) // multiple) * multiple)
    return Span(lo, hi)


def output_size(height: int, width: int, model_scale: int, *, scale: float | None = None,
                out_width: int | None = None, out_height: int | None = None) -> tuple[int, int]:
    """Output ``(height, width)`` for at most one of ``scale``, ``out_width``, ``out_height``.

    A width or height alone keeps the aspect ratio; none of them gives the model's scale.
    """
    width_out, height_out = out_width, out_height
    given = [v is not None for v in (scale, width_out, height_out)]
    if sum(given) > 1:
        raise FinescaleError("Give at most one of scale, width and height.")
    if scale is not None:
        if not (scale > 0 and math.isfinite(scale)):
            raise FinescaleError(f"Scale {scale} is not a positive number.")
        return max(1, round(height * scale)), max(1, round(width * scale))
    if width_out is not None:
        if width_out < 1:
            raise FinescaleError(f"Width {width_out} is not a positive number of pixels.")
        return max(1, round(height * width_out / width)), int(width_out)
    if height_out is not None:
        if height_out < 1:
            raise FinescaleError(f"Height {height_out} is not a positive number of pixels.")
        return int(height_out), max(1, round(width * height_out / height))
    return height * model_scale, width * model_scale


def bleed_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill the colour of fully transparent pixels from their visible surroundings.

    Transparent pixels often hold black; a network reads them as dark neighbours and draws
    a dark fringe into soft edges. A push-pull pyramid (area-downsampled premultiplied
    colour, then upsampled and composited "under") gives every transparent pixel a smooth
    continuation of the nearby visible colour. Visible pixels are left untouched. Returns
    ``rgb`` itself when nothing is transparent, else a new array of ``rgb``'s dtype.
    """
    a = _as_float(alpha)
    mask = a > TRANSPARENT
    if mask.all() or not mask.any():
        return rgb
    colour = _as_float(rgb)
    wgt = mask.astype(np.float32)
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    cur_c, cur_w = colour * wgt[..., None], wgt
    while min(cur_w.shape) > 1:
        levels.append((cur_c, cur_w))
        size = ((cur_w.shape[1] + 1) // 2, (cur_w.shape[0] + 1) // 2)
        cur_c = cv2.resize(cur_c, size, interpolation=cv2.INTER_AREA)
        cur_w = cv2.resize(cur_w, size, interpolation=cv2.INTER_AREA)
        if cur_c.ndim == 2:  # cv2 drops a trailing axis of length 1; never for 3 channels
            cur_c = cur_c[..., None]
    fill = cur_c / np.maximum(cur_w, 1e-8)[..., None]
    for c, wt in reversed(levels):
        up = cv2.resize(fill, (wt.shape[1], wt.shape[0]), interpolation=cv2.INTER_LINEAR)
        fill = c + up * (1.0 - wt)[..., None]
    out = np.where(mask[..., None], colour, fill)
    return _from_float(out, rgb.dtype)


def _is_photo(x: Any) -> bool:
    return hasattr(x, "rgb") and hasattr(x, "with_pixels")


def _split_channels(rgb: Any, alpha: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 (or x 4) image, got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16) and not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected uint8, uint16 or float pixels, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.dtype == np.float32 and not _all_finite(arr):
        raise ValueError("the image holds NaN or infinite values; pixels must be finite "
                         "numbers in [0, 1]")
    if arr.shape[2] == 4:
        return arr[..., :3], arr[..., 3]
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.dtype != arr.dtype:
            alpha = _from_float(_as_float(alpha), arr.dtype)
    return arr, alpha


def _all_finite(a: np.ndarray) -> bool:
    """Whether every value is finite, checked in row blocks (no full-size temporary)."""
    step = max(1, (16 << 20) // max(1, a[0].nbytes if a.shape[0] else 1))
    return all(bool(np.isfinite(a[i:i + step]).all()) for i in range(0, a.shape[0], step))


def _output_dtype(src: np.dtype, photo: Any, out_pixels: int) -> np.dtype:
    if src in (np.uint8, np.uint16):
        return np.dtype(src)
    if photo is None or out_pixels * 3 * 4 <= FLOAT_OUTPUT_MAX_BYTES:
        return np.dtype(np.float32)
    return np.dtype(np.uint16 if getattr(photo, "bit_depth", 8) > 8 else np.uint8)


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32, copy=False)


def _from_float(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype in (np.uint8, np.uint16):
        top = np.iinfo(dtype).max
        return np.clip(a * top + 0.5, 0, top).astype(dtype)
    return a.astype(np.float32, copy=False)


def _pad_to_min(rgb: np.ndarray, alpha: np.ndarray | None,
                min_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror-pad right/bottom up to the model's minimum side (cropped off afterwards)."""
    h, w = rgb.shape[:2]
    ph, pw = max(0, min_size - h), max(0, min_size - w)
    if not (ph or pw):
        return rgb, alpha

    def pad(a: np.ndarray) -> np.ndarray:
        mode = "reflect" if min(a.shape[:2]) > 1 else "edge"
        return np.pad(a, ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2), mode=mode)

    return pad(rgb), (pad(alpha) if alpha is not None else None)


def _window(a: np.ndarray, sy: Span, sx: Span, device: torch.device) -> torch.Tensor:
    """A source window as a ``(1, C, h, w)`` float32 tensor in [0, 1] on ``device``."""
    win = a[sy.lo:sy.hi, sx.lo:sx.hi]
    if win.dtype == np.uint16:  # torch's uint16 support is partial: convert on the host
        t = torch.from_numpy(win.astype(np.float32) / 65535.0).to(device)
    else:
        t = torch.from_numpy(np.ascontiguousarray(win)).to(device)
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    return t[None]


def _finish(arr: np.ndarray, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """Crop the minimum-size padding off, then resize to ``target`` if it differs."""
    h, w = size
    if arr.shape[:2] != (h, w):
        arr = np.ascontiguousarray(arr[:h, :w])
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if (h, w) == target:
        return arr
    return resize(arr, target)


def resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """High-quality resize to ``(height, width)``: area averaging when shrinking (no
    aliasing), Lanczos when enlarging; floats are clipped back into [0, 1]."""
    th, tw = size
    h, w = arr.shape[:2]
    interp = cv2.INTER_AREA if th <= h and tw <= w else cv2.INTER_LANCZOS4
    out = cv2.resize(arr, (tw, th), interpolation=interp)
    if out.ndim == 2 and arr.ndim == 3:
        out = out[..., None]
    if out.dtype == np.float32:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()
