"""Batch throughput: the single-process batch against ``--ray local:N`` on this machine.

    python benchmarks/bench_cluster.py                           # 16 photos of 128x96, x4
    python benchmarks/bench_cluster.py --count 32 --size 192x144 --workers 2 -m finescale-asid-x4

Needs the cluster extra (``pip install -e ".[cluster]"``). A folder of synthetic PNG photos
is converted three times with the same model on the CPU: by the single-process batch with
torch's default thread count (all cores), by the single-process batch with 1 thread, and by
``run_batch_ray`` on a private local cluster of N workers with 1 CPU and 1 torch thread each.
Printed per run: wall seconds, files per minute and input megapixels per minute; for Ray,
the cluster's start and its workers' start (model sent, loaded) are timed apart from the
conversion. The outputs of the three runs are compared byte for byte. The load average
before and after is printed too: on a busy machine the numbers are lower, not wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_photos(folder: Path, count: int, width: int, height: int) -> int:
    """``count`` noisy-gradient PNGs; returns the total input pixels."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(count):
        rng = np.random.default_rng(i)
        base = (xx * (i + 1) + yy * 3) % 256
        rgb = np.stack([base, (base * 7 + i) % 256, yy * 255 // max(1, height - 1)], -1)
        noisy = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"photo{i:03d}.png")
    return count * width * height


def outputs(folder: Path) -> dict[str, bytes]:
    """Relative output name -> bytes (the report left out)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix == ".png" and not p.name.startswith(".")}


def single(src: Path, dst: Path, model: str, threads: int | None) -> float:
    """Seconds the single-process batch takes (model loaded before the clock starts)."""
    import torch

    from sr_core.batch import plan_batch, run_batch
    from sr_core.engine import Upscaler

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        up = Upscaler(model, device="cpu", precision="fp32", tile="auto")
        plan = plan_batch(src, dst, model=up)
        t0 = time.perf_counter()
        report = run_batch(plan, up)
        took = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    assert report.state == "finished" and not report.failed
    return took


def on_ray(src: Path, dst: Path, model: str, workers: int) -> tuple[float, float, float]:
    """(cluster start, workers start, conversion) seconds of ``--ray local:N``."""
    from sr_core.batch import plan_batch
    from sr_core.cluster import RayOptions, connect, run_batch_ray
    from sr_core.loader import load_model

    m = load_model(model)
    options = RayOptions(address=f"local:{workers}", cpus_per_worker=1, device="cpu",
                         precision="fp32", tile="auto")
    t0 = time.perf_counter()
    with connect(options):
        t_cluster = time.perf_counter() - t0
        plan = plan_batch(src, dst, model=m)
        first: list[float] = []
        t1 = time.perf_counter()
        report = run_batch_ray(plan, m, options, progress=lambda p: first.append(
            time.perf_counter()) if not first else None)
        t_end = time.perf_counter()
    assert report.state == "finished" and not report.failed
    return t_cluster, first[0] - t1, t_end - first[0]


def main() -> None:
    """Run the three conversions and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=16, help="photos (default 16)")
    ap.add_argument("--size", default="128x96", help="WxH of each photo (default 128x96)")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    ap.add_argument("-m", "--model", default=None, help="model (default: the embedded one)")
    args = ap.parse_args()
    from sr_core import catalog

    model = args.model or catalog.default_model()
    w, h = (int(v) for v in args.size.lower().split("x"))
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="finescale-bench-") as tmp:
        src = Path(tmp, "in")
        pixels = make_photos(src, args.count, w, h)
        rows = []
        t = single(src, Path(tmp, "single"), model, None)
        rows.append((f"single process, {os.cpu_count()} cores, default threads", t, ""))
        t = single(src, Path(tmp, "single1"), model, 1)
        rows.append(("single process, 1 thread", t, ""))
        t_cluster, t_workers, t = on_ray(src, Path(tmp, "ray"), model, args.workers)
        rows.append((f"--ray local:{args.workers}, 1 CPU + 1 thread per worker", t,
                     f"(+ {t_cluster:.1f} s cluster start, {t_workers:.1f} s workers start)"))
        same = outputs(Path(tmp, "single")) == outputs(Path(tmp, "single1")) == \
            outputs(Path(tmp, "ray"))
    load1 = os.getloadavg()
    print(f"{args.count} photos of {w}x{h} ({pixels / 1e6:.2f} MP in), model {model}, CPU, "
          f"{os.cpu_count()} cores")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (1 min)")
    print(f"{'run':<52} {'seconds':>8} {'files/min':>10} {'MP/min':>8}")
    for name, secs, extra in rows:
        print(f"{name:<52} {secs:8.1f} {60 * args.count / secs:10.1f} "
              f"{60 * pixels / 1e6 / secs:8.2f} {extra}")
    print(f"outputs byte-identical across the three runs: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
