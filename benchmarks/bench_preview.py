"""The window's region preview and cancel latency with the default model, on this machine.

    python benchmarks/bench_preview.py                  # 256x256 region of the sample, CPU
    python benchmarks/bench_preview.py --size 128 --repeat 3 --threads 2

Prints the seconds one ``Upscaler.upscale_region`` of a ``size x size`` region takes (the
"Preview" action; target <= 3 s for 256x256 on a 2-core CPU), after one warm-up run, and the
worst cancel latency of a one-tile photo: the longest time between two cancel checks inside
the forward pass (:class:`sr_core.interrupt.ForwardWatch`; target <= 0.5 s). The load
average is printed beside them, since a busy machine shifts both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sr_core import Upscaler, load_model, read_image  # noqa: E402
from sr_core.catalog import default_model  # noqa: E402
from sr_core.paths import resource_path  # noqa: E402


def main() -> None:
    """Run the benchmark and print its numbers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="region side in input pixels")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    ap.add_argument("-m", "--model", default=None, help="model id or checkpoint (default model)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_id = args.model or default_model()
    up = Upscaler(load_model(model_id), device="cpu", tile="auto")
    photo = read_image(resource_path("sample.png"))
    h, w = photo.height, photo.width
    n = args.size
    region = ((w - n) // 2, (h - n) // 2, n, n)
    up.upscale_region(photo, (0, 0, 64, 64))  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        up.upscale_region(photo, region)
        times.append(time.perf_counter() - t0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model {up.model.name}, {torch.get_num_threads()} threads, load average {load:.1f}")
    print(f"preview {n}x{n}: median {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}; target <= 3 s)")
    # cancel latency: one forward of a one-tile photo, longest gap between two checks
    up.watch.max_gap = 0.0
    t0 = time.perf_counter()
    up.upscale_region(photo, region)
    total = time.perf_counter() - t0
    print(f"cancel latency on a one-tile {n}x{n} pass of {total:.2f} s: worst "
          f"{up.watch.max_gap:.3f} s between two checks "
          f"({up.watch.expected_steps} steps per pass; target <= 0.5 s)")


if __name__ == "__main__":
    main()
