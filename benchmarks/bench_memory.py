"""Peak memory of a whole upscale against the picture's size (target: flat, and at most the
output's own size + 1.5 GB).

    python benchmarks/bench_memory.py                      # lightest arch, 1, 4, 12 MP, x4, CPU
    python benchmarks/bench_memory.py --family hpinet --sizes 1,4 --device cuda

Each size runs in a fresh subprocess (peak RSS is per process), on a synthetic 4:3 photo
(float32 RGB, as ``read_image`` gives) through random weights of the family's smallest
official variant with ``tile="auto"``. Printed per size: the tile the engine chose, the
output's bytes (uint8 once float32 would be too big), the RSS before the upscale (torch,
model, input), the peak RSS, the peak minus the output, and the time. On CUDA the peak
allocated GPU memory and the memory model's estimate for the largest tile are shown too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SMALLEST = {"hpinet": "S", "hat": "HAT-S", "spin": "light", "asid": "ASID"}
MB = 2 ** 20


def rss_now() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def lightest_family(scale: int) -> str:
    """The family whose smallest official variant has the fewest parameters."""
    from sr_core.models import families

    def params(fam) -> int:
        net = fam.build(fam.config(SMALLEST[fam.INFO.name], scale))
        return sum(p.numel() for p in net.parameters())

    return min(families(), key=params).INFO.name


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from sr_core.engine import Upscaler
    from sr_core.imageio import Photo
    from sr_core.loader import load_model
    from sr_core.models import families

    fam = next(f for f in families() if f.INFO.name == args.family)
    torch.manual_seed(0)
    model = load_model(fam.build(fam.config(SMALLEST[args.family], args.scale)).state_dict(),
                       arch=args.family)
    up = Upscaler(model, device=args.device, tile=args.tile)
    h = int(round((args.mp * 1e6 * 3 / 4) ** 0.5))
    w = int(round(h * 4 / 3))
    rgb = np.empty((h, w, 3), np.float32)
    for y0 in range(0, h, 256):  # smooth texture, built in strips to keep the setup small
        yy = np.arange(y0, min(h, y0 + 256), dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        rgb[y0:y0 + 256, :, 0] = 0.5 + 0.3 * np.sin(yy / 37) * np.cos(xx / 53)
        rgb[y0:y0 + 256, :, 1] = 0.5 + 0.3 * np.sin((yy + xx) / 91)
        rgb[y0:y0 + 256, :, 2] = 0.5 + 0.2 * np.cos(xx / 17)
    photo = Photo(rgb=rgb, bit_depth=8, format="PNG")
    plan = up.plan(h, w)
    before = rss_now()
    if up.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = up.upscale(photo)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sh, sw = plan.max_source
    row = {
        "model": model.name, "mp": args.mp, "input": f"{w}x{h}",
        "output": f"{out.width}x{out.height}", "output_dtype": str(out.rgb.dtype),
        "output_bytes": int(out.rgb.nbytes), "tile": plan.tile, "tiles": len(plan.tiles),
        "rss_before": before, "peak_rss": peak, "seconds": round(seconds, 1),
        "estimate": model.estimate_memory(sh, sw),
    }
    if up.device.type == "cuda":
        row["gpu_peak"] = int(torch.cuda.max_memory_allocated())
    print(json.dumps(row))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="lightest", help="hpinet, hat, spin, asid or lightest")
    ap.add_argument("--sizes", default="1,4,12", help="megapixels, comma-separated")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tile", default="auto")
    ap.add_argument("--child", type=float, dest="mp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mp is not None:
        child(args)
        return 0
    family = lightest_family(args.scale) if args.family == "lightest" else args.family
    print(f"{family} x{args.scale} on {args.device}, tile={args.tile}")
    print(f"{'MP':>5} {'input':>11} {'output':>12} {'tile':>5} {'tiles':>6} {'out MB':>8} "
          f"{'before MB':>10} {'peak MB':>8} {'peak-out':>9} {'target':>7} {'s':>7}")
    for mp in (float(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--child", str(mp), "--family", family,
               "--scale", str(args.scale), "--device", args.device, "--tile", args.tile]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{mp:>5g} failed: {res.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        over = (r["peak_rss"] - r["output_bytes"]) / MB
        target_ok = r["peak_rss"] <= r["output_bytes"] + 1.5 * 2 ** 30
        print(f"{mp:>5g} {r['input']:>11} {r['output']:>12} {r['tile']:>5} {r['tiles']:>6} "
              f"{r['output_bytes'] / MB:>8.0f} {r['rss_before'] / MB:>10.0f} "
              f"{r['peak_rss'] / MB:>8.0f} {over:>9.0f} {'ok' if target_ok else 'OVER':>7} "
              f"{r['seconds']:>7.1f}"
              + (f"  gpu peak {r['gpu_peak'] / MB:.0f} MB, estimate {r['estimate'] / MB:.0f} MB"
                 if "gpu_peak" in r else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
