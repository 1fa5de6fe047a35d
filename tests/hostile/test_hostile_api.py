"""Issue 18: the Python API under hostile arguments and files.

The public functions raise :mod:`sr_core.errors` types for bad files and ``ValueError`` /
``TypeError`` for bad arguments, each with one line of text; never another exception type,
and never a result made of NaN.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from sr_core import Photo, Upscaler, load_model, read_image, write_image
from sr_core.errors import FinescaleError

ALLOWED = (FinescaleError, ValueError, TypeError)


def _api_cases(root: Path, good_model: Path) -> list[tuple[str, object]]:
    """(name, zero-argument call) pairs that must each raise one allowed, one-line error."""
    from corpus import build, close_sockets

    cases, model, _ = build(root)
    close_sockets()
    images = sorted(Path(c.argv[1]) for c in cases if c.argv[:1] == ["info"]
                    and Path(c.argv[1]).parent.name == "images")
    checkpoints = sorted({Path(c.argv[c.argv.index("-m") + 1]) for c in cases
                          if c.name.startswith("upscale -m ")})
    up = Upscaler(str(model), device="cpu", tile=0)
    rgb = np.zeros((16, 16, 3), np.float32)
    calls: list[tuple[str, object]] = []
    calls += [(f"read_image {p.name}", lambda p=p: read_image(p)) for p in images]
    calls += [(f"load_model {p.name}", lambda p=p: load_model(p)) for p in checkpoints]
    nan = rgb.copy()
    nan[1, 1] = math.nan
    calls += [
        ("load_model(None)", lambda: load_model(None)),
        ("load_model(42)", lambda: load_model(42)),
        ("load_model({})", lambda: load_model({})),
        ("load_model(list)", lambda: load_model({"a": [1, 2]})),
        ("load_model(tensor dict, bad arch)", lambda: load_model(
            {"x": torch.zeros(1)}, arch="nonsense")),
        ("load_model(bad override)", lambda: load_model(str(model), no_such_field=3)),
        ("upscale NaN", lambda: up.upscale(nan)),
        ("upscale inf", lambda: up.upscale(np.full((16, 16, 3), np.inf, np.float32))),
        ("upscale 2-D", lambda: up.upscale(np.zeros((16, 16), np.float32))),
        ("upscale 5 channels", lambda: up.upscale(np.zeros((16, 16, 5), np.float32))),
        ("upscale strings", lambda: up.upscale(np.full((4, 4, 3), "x"))),
        ("upscale complex", lambda: up.upscale(np.zeros((4, 4, 3), np.complex64))),
        ("upscale scale 0", lambda: up.upscale(rgb, scale=0)),
        ("upscale scale nan", lambda: up.upscale(rgb, scale=math.nan)),
        ("upscale width -1", lambda: up.upscale(rgb, width=-1)),
        ("upscale scale and width", lambda: up.upscale(rgb, scale=2, width=30)),
        ("Upscaler tile -5", lambda: Upscaler(str(model), device="cpu", tile=-5)),
        ("Upscaler tile word", lambda: Upscaler(str(model), device="cpu", tile="huge")),
        ("Upscaler device", lambda: Upscaler(str(model), device="quantum")),
        ("Photo 2-D", lambda: Photo(rgb=np.zeros((4, 4), np.float32))),
        ("Photo float64", lambda: Photo(rgb=np.zeros((4, 4, 3), np.float64))),
        ("Photo bit depth", lambda: Photo(rgb=rgb, bit_depth=12)),
        ("write quality 0", lambda: write_image(Photo(rgb=rgb), root / "q.jpg", quality=0)),
        ("write quality 101", lambda: write_image(Photo(rgb=rgb), root / "q.jpg",
                                                  quality=101)),
        ("write bit depth 12", lambda: write_image(Photo(rgb=rgb), root / "b.png",
                                                   bit_depth=12)),
        ("write 16-bit JPEG", lambda: write_image(Photo(rgb=rgb), root / "b.jpg",
                                                  bit_depth=16)),
        ("write format bogus", lambda: write_image(Photo(rgb=rgb), root / "b.png",
                                                   format="bogus")),
        ("write no extension", lambda: write_image(Photo(rgb=rgb), root / "noext")),
        ("write into a file", lambda: write_image(Photo(rgb=rgb), good_model / "x.png")),
        ("write /dev/full", lambda: write_image(Photo(rgb=rgb), "/dev/full", format="PNG")),
        ("write a huge WebP", lambda: write_image(
            Photo(rgb=np.zeros((2, 17000, 3), np.uint8)), root / "wide.webp")),
        ("write subsampling", lambda: write_image(Photo(rgb=rgb), root / "s.jpg",
                                                  subsampling="4:1:1")),
    ]
    return calls


def test_every_hostile_api_call_raises_one_clear_error(tmp_path):
    good_model = tmp_path / "corpus" / "checkpoints" / "good.safetensors"
    calls = _api_cases(tmp_path / "corpus", good_model)
    assert len(calls) >= 100
    problems = []
    for name, call in calls:
        try:
            result = call()
        except ALLOWED as e:
            text = str(e)
            if not text or "\n" in text.strip() or "Traceback" in text:
                problems.append(f"{name}: {type(e).__name__} not one line: {text[:200]!r}")
        except Exception as e:  # noqa: BLE001 - any other type is the bug we look for
            problems.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
        else:
            problems.append(f"{name}: returned {type(result).__name__} instead of raising")
    assert not problems, f"{len(problems)} of {len(calls)} calls:\n" + "\n".join(problems)
    root = tmp_path / "corpus"
    stray = [p.name for p in root.iterdir() if p.is_file() or p.name.startswith(".")]
    assert stray == []  # no q.jpg, b.png, wide.webp, nor a temporary file
