"""The super-resolution papers' benchmark protocol, turned into tables.

For every HR image of a dataset folder: load as RGB (grey files expanded to three equal
channels), modcrop to a multiple of the scale, make the LR with the MATLAB-compatible bicubic
:func:`~sr_core.metrics.imresize`, super-resolve it, clamp and round to 8 bits, and measure
PSNR / SSIM on Y with ``scale`` pixels shaved (:mod:`sr_core.metrics`). The model is anything
:func:`~sr_core.loader.load_model` accepts, or ``"bicubic"`` / ``"lanczos"`` for the classic
baseline rows.

With ``degradation`` (a name of :data:`sr_core.degrade.PRESETS`) the LR goes through a fixed,
seeded real-world degradation (blur, noise, JPEG) after the bicubic downscale, and the score
says how well a model restores the photos people actually have; :func:`compare` scores a
model next to the Lanczos and bicubic enlargements of the same inputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, formats
from .errors import FinescaleError, ImageReadError, WriteError
from .metrics import imresize, modcrop, psnr, ssim

#: How the model sees each LR image: ``whole`` runs the whole image at once; ``official``
#: runs the 64/24 tile-averaging harness of ASID's tester (:mod:`sr_core.protocol`);
#: ``auto`` does what each model's authors did (``official`` for ASID, ``whole`` otherwise).
PROTOCOLS = ("auto", "official", "whole")


#: ``progress(done, total)`` after each image.
Progress = Callable[[int, int], None]
#: uint8 LR ``(h, w, 3)`` -> uint8 SR ``(s*h, s*w, 3)``.
SuperResolver = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ImageScore:
    """PSNR / SSIM of one image."""

    image: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class DatasetScore:
    """Mean PSNR / SSIM over one dataset folder, with the per-image rows."""

    dataset: str
    psnr: float
    ssim: float
    images: int
    per_image: tuple[ImageScore, ...] = ()


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate` measured."""

    model: str
    scale: int
    protocol: str
    results: tuple[DatasetScore, ...] = field(default_factory=tuple)
    degradation: str | None = None

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        """The ``finescale eval --json`` object (non-finite numbers become ``null``)."""
        rows = []
        for r in self.results:
            row: dict[str, Any] = {"dataset": r.dataset, "psnr": _finite(r.psnr),
                                   "ssim": _finite(r.ssim), "images": r.images}
            if per_image:
                row["per_image"] = [{"image": p.image, "psnr": _finite(p.psnr),
                                     "ssim": _finite(p.ssim)} for p in r.per_image]
            rows.append(row)
        out: dict[str, Any] = {"model": self.model, "scale": self.scale, "results": rows}
        if self.degradation is not None:
            out["degradation"] = self.degradation
        return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --- data -----------------------------------------------------------------------------------
def dataset_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of a dataset folder, sorted by name (not recursive)."""
    d = Path(folder)
    if not d.is_dir():
        raise ImageReadError(f"{d}: no such dataset folder.")
    known = formats.read_suffixes()
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in known)
    if not files:
        raise ImageReadError(f"{d}: the folder holds no images ({formats.describe()}).")
    return files


def read_rgb8(path: str | os.PathLike[str]) -> np.ndarray:
    """An 8-bit image file as uint8 RGB ``(H, W, 3)``; grey files get three equal channels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "L", "P", "RGBA", "LA", "1"):
                raise ImageReadError(f"{path}: {im.mode} images are not 8-bit RGB or grey; "
                                     "the benchmark protocol needs 8-bit images.")
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        if isinstance(e, ImageReadError):
            raise
        raise ImageReadError(f"{path}: cannot be read as an image ({e}).") from e


def make_lr(hr: np.ndarray, scale: int, degradation: str | None = None,
            image_name: str = "") -> np.ndarray:
    """The benchmark LR of a (modcropped) uint8 HR image: MATLAB bicubic by ``1/scale``.

    With ``degradation`` the named preset of :data:`sr_core.degrade.PRESETS` (seeded by
    ``image_name``) blurs, downscales, adds noise and JPEG-compresses instead.
    """
    h, w = hr.shape[:2]
    if degradation is None:
        return imresize(hr, output_shape=(h // scale, w // scale))
    return preset(degradation).apply(
        hr, scale, image_name,
        lambda x, s: imresize(x, output_shape=(x.shape[0] // s, x.shape[1] // s)))


def preset(name: str) -> Any:
    """The evaluation degradation preset called ``name``; one sentence if there is none."""
    from .degrade import PRESETS

    if name not in PRESETS:
        raise FinescaleError(f"Unknown degradation preset '{name}'; choose one of "
                             f"{', '.join(PRESETS)}.")
    return PRESETS[name]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


# --- super-resolvers ------------------------------------------------------------------------
def bicubic(scale: int) -> SuperResolver:
    """The baseline: upscale with the same bicubic imresize, treated like a model's output.

    The LR goes in as floats (as a network gets LR/255) and the result is rounded to 8 bits
    once, as every model's output is.
    """

    def run(lr: np.ndarray) -> np.ndarray:
        h, w = lr.shape[:2]
        return _to_uint8(imresize(lr.astype(np.float64), output_shape=(h * scale, w * scale)))

    return run


def lanczos(scale: int) -> SuperResolver:
    """The "normal enlargement" baseline: Pillow's Lanczos resampling of the LR image."""
    from PIL import Image

    def run(lr: np.ndarray) -> np.ndarray:
        h, w = lr.shape[:2]
        return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.LANCZOS))

    return run


#: Model names :func:`evaluate` treats as classic interpolation instead of a network.
BASELINES = {"bicubic": bicubic, "lanczos": lanczos}


def model_resolver(model: Any, protocol: str = "whole", device: Any = "cpu") -> SuperResolver:
    """Run an :class:`~sr_core.models.SRModel` on uint8 LR images in float32 as the papers do.

    ``protocol`` is ``"whole"`` (one forward of the whole image) or ``"official"`` (ASID's
    64/24 tile-averaging harness from :mod:`sr_core.protocol`). The output is clamped to
    [0, 1], scaled to 0..255 and rounded.
    """
    import torch

    if protocol == "official":
        from .protocol import official_tiled as forward
    elif protocol == "whole":
        forward = model
    else:
        raise ValueError(f"protocol must be 'whole' or 'official', not {protocol!r}")

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float().div_(255.0)
        x = x.unsqueeze(0).to(device)
        with torch.inference_mode():
            y = model(x) if forward is model else forward(model, x)
            y = y[0].float().clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        return y.permute(1, 2, 0).cpu().numpy()

    return run


def resolve_protocol(protocol: str, arch: str | None) -> str:
    """Turn ``auto`` into ``official`` (ASID, whose published numbers are tiled) or ``whole``."""
    if protocol not in PROTOCOLS:
        choices = ", ".join(PROTOCOLS)
        raise FinescaleError(f"Unknown protocol '{protocol}'; choose one of {choices}.")
    if protocol == "auto":
        return "official" if arch == "asid" else "whole"
    return protocol


# --- the protocol ---------------------------------------------------------------------------
def evaluate(model: Any, datasets: Sequence[str | os.PathLike[str]], scale: int, *,
             protocol: str = "auto", device: str = "auto",
             save_dir: str | os.PathLike[str] | None = None,
             progress: Progress | None = None,
             degradation: str | None = None) -> EvalResult:
    """Score ``model`` on dataset folders in the papers' protocol and return the table.

    ``model`` is ``"bicubic"``, ``"lanczos"``, an :class:`~sr_core.models.SRModel`, or anything
    :func:`~sr_core.loader.load_model` accepts (checkpoint path, catalogue id). The model
    must upscale by ``scale``. ``device`` is ``auto``/``cpu``/``cuda`` (always float32).
    With ``save_dir`` the 8-bit SR images are written to ``save_dir/<dataset>/<name>.png``.
    ``degradation`` names a preset of :data:`sr_core.degrade.PRESETS` applied to every LR.
    """
    if degradation is not None:
        preset(degradation)  # an unknown name fails before any work
    if scale < 1:
        raise FinescaleError(f"The scale must be a positive integer, not {scale}.")
    folders = [Path(d) for d in datasets]
    if not folders:
        raise FinescaleError("No dataset folder was given.")
    files = [dataset_images(d) for d in folders]  # check every folder before the long part
    name, run, used = _resolver(model, scale, protocol, device)

    total = sum(len(f) for f in files)
    done = 0
    results = []
    for folder, paths in zip(folders, files, strict=True):
        out_dir = Path(save_dir) / folder.name if save_dir is not None else None
        rows = []
        for path in paths:
            hr = modcrop(read_rgb8(path), scale)
            if min(hr.shape[:2]) < scale:
                raise ImageReadError(f"{path}: too small for x{scale} evaluation.")
            sr = run(make_lr(hr, scale, degradation, path.name))
            rows.append(ImageScore(path.name, psnr(sr, hr, shave=scale), ssim(sr, hr, shave=scale)))
            if out_dir is not None:
                _write_png(sr, out_dir / f"{path.stem}.png")
            done += 1
            if progress is not None:
                progress(done, total)
        results.append(DatasetScore(folder.name, _mean(r.psnr for r in rows),
                                    _mean(r.ssim for r in rows), len(rows), tuple(rows)))
    return EvalResult(name, scale, used, tuple(results), degradation)


def compare(model: Any, datasets: Sequence[str | os.PathLike[str]], scale: int, *,
            degradation: str | None = None, protocol: str = "auto", device: str = "auto",
            progress: Progress | None = None) -> tuple[EvalResult, ...]:
    """``model``, then Lanczos, then bicubic, scored on the same (degraded) inputs."""
    rows = [model] if str(model).strip().lower() not in BASELINES else []
    rows += ["lanczos", "bicubic"]
    files = sum(len(dataset_images(d)) for d in datasets)
    out, base = [], 0
    for m in rows:
        def step(done: int, total: int, base: int = base) -> None:
            if progress is not None:
                progress(base + done, files * len(rows))

        out.append(evaluate(m, datasets, scale, protocol=protocol, device=device,
                            degradation=degradation, progress=step))
        base += files
    return tuple(out)


def format_comparison(results: Sequence[EvalResult]) -> str:
    """One table of PSNR / SSIM per dataset (rows) and model (columns), with the gain of the
    first model over the second (Lanczos) -- what ``finescale eval --degradation`` prints."""
    first = results[0]
    head = f"x{first.scale}" + (f", degradation '{first.degradation}'"
                                if first.degradation else ", clean bicubic LR")
    names = [r.model for r in results]
    width = max([len("dataset")] + [len(d.dataset) for d in first.results])
    col = max(15, *(len(n) for n in names))
    lines = [head, f"{'dataset':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names)
             + (f"  {'gain':>7}" if len(results) > 1 else "")]
    for i, d in enumerate(first.results):
        cells = [f"{r.results[i].psnr:.2f} / {r.results[i].ssim:.4f}" for r in results]
        gain = f"  {d.psnr - results[1].results[i].psnr:>+6.2f}" if len(results) > 1 else ""
        lines.append(f"{d.dataset:<{width}}  " + "  ".join(f"{c:>{col}}" for c in cells) + gain)
    lines.append("(PSNR dB / SSIM on Y; gain = first column over the second, in dB)")
    return "\n".join(lines)


def _resolver(model: Any, scale: int, protocol: str,
              device: str) -> tuple[str, SuperResolver, str]:
    """``(display name, super-resolver, protocol used)`` for the model argument."""
    if isinstance(model, str) and model.strip().lower() in BASELINES:
        resolve_protocol(protocol, None)  # validates the name
        key = model.strip().lower()
        return key, BASELINES[key](scale), "whole"
    from .device import choose_device
    from .loader import load_model

    m = load_model(model)
    if m.scale != scale:
        raise FinescaleError(f"{m.name} upscales x{m.scale}, but x{scale} evaluation was asked; "
                             f"use --scale {m.scale} or a x{scale} model.")
    used = resolve_protocol(protocol, m.arch)
    dev = choose_device(device)
    m = m.to(dev).float().eval()
    return m.name, model_resolver(m, used, dev), used


def _mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))


def _write_png(img: np.ndarray, path: Path) -> None:
    """Write through a temporary file in the target folder, renamed into place."""
    from PIL import Image

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(path) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    except OSError as e:
        raise WriteError(f"{path}: cannot be written ({e.strerror or e}).") from e


def format_table(result: EvalResult, per_image: bool = False) -> str:
    """A plain-text table of an :class:`EvalResult` (what ``finescale eval`` prints)."""
    lines = [f"{result.model}  x{result.scale}  (protocol: {result.protocol})"]
    width = max([len("dataset")] + [len(r.dataset) for r in result.results])
    lines.append(f"{'dataset':<{width}}  {'images':>6}  {'PSNR':>8}  {'SSIM':>6}")
    for r in result.results:
        lines.append(f"{r.dataset:<{width}}  {r.images:>6}  {r.psnr:>8.3f}  {r.ssim:>6.4f}")
        if per_image:
            for p in r.per_image:
                lines.append(f"  {p.image:<{width + 6}}  {p.psnr:>8.3f}  {p.ssim:>6.4f}")
    return "\n".join(lines)
