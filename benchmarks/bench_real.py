"""Real-world protocol table: models next to Lanczos and bicubic on degraded benchmark inputs.

    python benchmarks/bench_real.py                                  # default models, x4
    python benchmarks/bench_real.py -m finescale-asid-x4 -m finescale-asid-x4-photo \\
        --preset real --preset mild --dataset Set14 --dataset B100 --scale 4
    python benchmarks/bench_real.py --clean-up 0 --clean-up 0.5 --clean-up 1   # the blend curve
    python benchmarks/bench_real.py --json out.json

For every preset (``sr_core.degrade.PRESETS``) and dataset it prints PSNR / SSIM on Y of each
model, of Lanczos and of bicubic, all on the same seeded inputs, and the model's gain over
Lanczos; ``clean`` is the papers' bicubic protocol. ``--clean-up`` values score the default
photo model's detail <-> clean-up pair at those points instead of separate models. Data comes
from ../shared (or $FINESCALE_SHARED).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sr_core.evaluate import evaluate


def shared_dir() -> Path:
    env = os.environ.get("FINESCALE_SHARED")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    if not d.is_dir():
        sys.exit(f"bench_real: {d} not found; set FINESCALE_SHARED")
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", action="append",
                    help="catalogue id or checkpoint (repeat); default: the paper-exact and "
                         "the photo ASID of the chosen scale")
    ap.add_argument("--clean-up", type=float, action="append",
                    help="score the photo pair at this clean-up value (repeat)")
    ap.add_argument("--preset", action="append", help="real, mild or clean (repeat; default all)")
    ap.add_argument("--dataset", action="append", help="Set5, Set14, B100 (repeat; default all)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--protocol", default="auto", choices=("auto", "official", "whole"),
                    help="how the network sees each LR (auto: ASID's official 64/24 tiles)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args()

    root = shared_dir() / "datasets" / "benchmark"
    datasets = [root / d for d in (args.dataset or ["Set5", "Set14", "B100"])]
    presets = args.preset or ["clean", "mild", "real"]
    models: list[tuple[str, Any]] = []
    if args.clean_up:
        from sr_core.loader import load_model

        photo = f"finescale-asid-x{args.scale}-photo"
        models = [(f"clean-up {t:g}", load_model(photo, clean_up=t)) for t in args.clean_up]
    else:
        ids = args.model or [f"finescale-asid-x{args.scale}", f"finescale-asid-x{args.scale}-photo"]
        models = [(m, m) for m in ids]
    rows: list[dict[str, Any]] = []
    print(f"x{args.scale}, protocol {args.protocol}; PSNR dB / SSIM on Y; "
          "gain = model - Lanczos (dB)")
    for preset in presets:
        degradation = None if preset == "clean" else preset
        base = {name: evaluate(name, datasets, args.scale, degradation=degradation)
                for name in ("lanczos", "bicubic")}
        for label, model in models:
            t0 = time.perf_counter()
            res = evaluate(model, datasets, args.scale, degradation=degradation,
                           protocol=args.protocol)
            secs = time.perf_counter() - t0
            for i, d in enumerate(res.results):
                lz, bc = base["lanczos"].results[i], base["bicubic"].results[i]
                row = {"preset": preset, "dataset": d.dataset, "model": label,
                       "protocol": res.protocol,
                       "psnr": round(d.psnr, 3), "ssim": round(d.ssim, 4),
                       "lanczos_psnr": round(lz.psnr, 3), "bicubic_psnr": round(bc.psnr, 3),
                       "gain_over_lanczos": round(d.psnr - lz.psnr, 3), "seconds": round(secs, 1)}
                rows.append(row)
                print(f"{preset:<6} {d.dataset:<6} {label:<28} {d.psnr:6.2f} / {d.ssim:.4f}   "
                      f"lanczos {lz.psnr:6.2f}   bicubic {bc.psnr:6.2f}   "
                      f"gain {d.psnr - lz.psnr:+.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
