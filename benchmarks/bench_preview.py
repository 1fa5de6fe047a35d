"""The window's region preview, the whole photo after it, and cancel latency, on this machine.

    python benchmarks/bench_preview.py                  # 256x256 region, default model, CPU
    python benchmarks/bench_preview.py --size 128 --repeat 3 --threads 2 --picture 1600x1200
    python benchmarks/bench_preview.py --full           # and the whole photo after it

Prints, after one warm-up forward pass (what the window does when a model is loaded):

* the raw forward pass of the region's context-padded crop (the floor no tiling can beat),
  and of the region alone (what the context adds);
* the preview, ``Upscaler.upscale_region`` of a ``size x size`` region in the middle of a
  ``--picture`` sized photo (the sample enlarged): as the window runs it (computing the whole
  picture's own tiles when they cost at most twice the crop, so the full run reuses them)
  and crop-only (``reuse=0``); target <= 3 s for 256x256 on a 2-core CPU;
* with ``--full``, the forward passes a whole-photo upscale after the preview makes, and how
  many tiles it took from the preview;
* the worst cancel latency inside a one-tile pass (the longest time between two cancel
  checks, :class:`sr_core.interrupt.ForwardWatch`; target <= 0.5 s).

Wall-clock and CPU seconds are both printed, with the load average: on a shared machine
the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sr_core import Upscaler, load_model, read_image  # noqa: E402
from sr_core.catalog import default_model  # noqa: E402
from sr_core.engine import TileCache, region_source, resize  # noqa: E402
from sr_core.paths import resource_path  # noqa: E402
from sr_core.tiling import Span  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of ``repeat`` calls of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    """Run the benchmark and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="region side in input pixels")
    ap.add_argument("--picture", default="1024x768", help="photo size WxH (sample enlarged)")
    ap.add_argument("--full", action="store_true",
                    help="also upscale the whole photo after the preview (minutes on a CPU)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    ap.add_argument("-m", "--model", default=None, help="model id or checkpoint (default model)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pw, ph = (int(v) for v in args.picture.lower().split("x"))
    model = load_model(args.model or default_model())
    sample = read_image(resource_path("sample.png"))
    rgb = np.ascontiguousarray(resize(sample.rgb, (ph, pw)))
    n = args.size
    region = ((pw - n) // 2, (ph - n) // 2, n, n)
    plain = Upscaler(model, device="cpu", tile="auto")
    sy = region_source(Span(region[1], region[1] + n), ph, plain.context, plain.multiple)
    sx = region_source(Span(region[0], region[0] + n), pw, plain.context, plain.multiple)
    crop = torch.from_numpy(np.ascontiguousarray(rgb[sy.lo:sy.hi, sx.lo:sx.hi])).permute(2, 0, 1)
    alone = torch.from_numpy(np.ascontiguousarray(
        rgb[region[1]:region[1] + n, region[0]:region[0] + n])).permute(2, 0, 1)
    w0 = time.perf_counter()
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))  # the window's warm-up after loading a model
    warm = time.perf_counter() - w0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {model.name}, {torch.get_num_threads()} threads, load average {load:.1f}; "
          f"first 64x64 pass (warm-up) {warm:.2f} s")

    def forward(x: torch.Tensor) -> None:
        with torch.inference_mode():
            model(x[None])

    for what, x in (("context-padded crop", crop), ("region alone", alone)):
        wall, cpu = timed(lambda x=x: forward(x), args.repeat)
        print(f"raw forward, {what} {x.shape[2]}x{x.shape[1]}: {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU")

    cached = Upscaler(model, device="cpu", tile="auto", tile_cache=TileCache())
    wall, cpu = timed(lambda: plain.upscale_region(rgb, region, reuse=0.0), args.repeat)
    print(f"preview {n}x{n} of a {pw}x{ph} photo, crop only: {wall:.2f} s wall, {cpu:.2f} s "
          f"CPU (target <= 3 s)")

    def window_preview() -> None:
        cached.tile_cache.clear()
        cached.upscale_region(rgb, region)

    wall, cpu = timed(window_preview, args.repeat)
    kept = len(cached.tile_cache)
    print(f"preview {n}x{n} as the window runs it: {wall:.2f} s wall, {cpu:.2f} s CPU; "
          f"{kept} whole-picture tile(s) kept for the full run")
    if args.full:
        plan = cached.plan(ph, pw)
        calls: list[int] = []
        hook = model.register_forward_pre_hook(lambda m, a: calls.append(1))
        w0 = time.perf_counter()
        cached.upscale(rgb)
        hook.remove()
        print(f"whole photo after the preview: {len(calls)} forward passes for "
              f"{len(plan.tiles)} tiles ({cached.tile_cache.hits} reused), "
              f"{time.perf_counter() - w0:.1f} s")

    plain.watch.max_gap = 0.0
    w0 = time.perf_counter()
    plain.upscale(np.ascontiguousarray(rgb[:n, :n]))
    total = time.perf_counter() - w0
    print(f"cancel latency on a one-tile {n}x{n} pass of {total:.2f} s: worst "
          f"{plain.watch.max_gap:.3f} s between two checks "
          f"({plain.watch.expected_steps} steps per pass; target <= 0.5 s)")


if __name__ == "__main__":
    main()
