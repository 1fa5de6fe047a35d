"""Reproduce the papers' tables with ``sr_core.evaluate`` and print how far each number is.

    python benchmarks/bench_eval.py                 # bicubic rows (seconds)
    python benchmarks/bench_eval.py --hpinet        # + official HPINet checkpoints (slow on CPU)
    python benchmarks/bench_eval.py --json out.json

Data and weights come from ../shared (or $FINESCALE_SHARED). The targets are the published
tables: the classic bicubic row and the HPINet paper (AAAI 2023); the tolerance is the one the
project promises (bicubic +-0.015 dB on Set5/B100, HPINet +-0.03 dB). Set14's bicubic target is
EVALUATION.md's, because the classic table scored its grey image without the RGB->Y formula.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sr_core.evaluate import evaluate

BICUBIC = {  # scale -> dataset -> (PSNR target, tolerance)
    2: {"Set5": (33.66, 0.015), "Set14": (30.32, 0.015), "B100": (29.56, 0.015)},
    3: {"Set5": (30.39, 0.015), "Set14": (27.63, 0.015), "B100": (27.21, 0.015)},
    4: {"Set5": (28.42, 0.015), "Set14": (26.09, 0.015), "B100": (25.96, 0.015)},
}
HPINET = {  # checkpoint -> (scale, dataset -> paper PSNR)
    "HPINet-M-x4.pth": (4, {"Set5": 32.60, "Set14": 28.87, "B100": 27.73}),
    "HPINet-M-x3.pth": (3, {"Set5": 34.70, "Set14": 30.63}),
    "HPINet-M-x2.pth": (2, {"Set5": 38.12, "Set14": 33.94}),
    "HPINet-S-x4.pth": (4, {"Set5": 32.47, "Set14": 28.80}),
}


def shared_dir() -> Path:
    env = os.environ.get("FINESCALE_SHARED")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    if not d.is_dir():
        sys.exit(f"bench_eval: {d} not found; set FINESCALE_SHARED")
    return d


def run(model: str | Path, scale: int, targets: dict[str, tuple[float, float]],
        bench: Path, device: str) -> list[dict]:
    t0 = time.perf_counter()
    res = evaluate(model, [bench / name for name in targets], scale, device=device)
    seconds = time.perf_counter() - t0
    rows = []
    for r in res.results:
        target, tol = targets[r.dataset]
        delta = r.psnr - target
        rows.append({"model": res.model, "scale": scale, "dataset": r.dataset, "psnr": r.psnr,
                     "ssim": r.ssim, "target": target, "delta": delta,
                     "ok": abs(delta) <= tol, "seconds": seconds})
        print(f"{res.model:<14} x{scale}  {r.dataset:<6} {r.psnr:8.3f} / {r.ssim:.4f}   "
              f"target {target:6.2f}  {delta:+.3f} dB  {'ok' if abs(delta) <= tol else 'OFF'}",
              flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hpinet", action="store_true", help="also the HPINet checkpoints")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", metavar="FILE", help="write all rows as JSON")
    args = ap.parse_args()
    shared = shared_dir()
    bench = shared / "datasets" / "benchmark"
    rows: list[dict] = []
    for scale, targets in BICUBIC.items():
        rows += run("bicubic", scale, targets, bench, args.device)
    if args.hpinet:
        for ckpt, (scale, paper) in HPINET.items():
            targets = {k: (v, 0.03) for k, v in paper.items()}
            rows += run(shared / "weights" / "hpinet" / ckpt, scale, targets, bench, args.device)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
