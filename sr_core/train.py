"""Training our own weights for any of the four architectures.

HR folders in; LR patches made with the evaluation's MATLAB-compatible bicubic ``imresize``
(per image, on first use, so LR and HR crops are aligned exactly as in the benchmark
protocol); random crops, flips and 90-degree rotations; L1 loss; Adam with a cosine or step
schedule; an exponential moving average (EMA) of the weights, which is what we validate and
ship; validation PSNR on the Y channel in the papers' protocol; resumable checkpoints written
atomically; bf16 autocast on CUDA.

Photo models: with ``degradation`` (a model of :data:`sr_core.degrade.TRAINING_MODELS`) each
HR patch is degraded on the fly by the second-order real-world model instead of the clean
bicubic downscale, ``init`` starts from existing weights (fine-tuning our bicubic-trained
models), validation scores the ``real`` evaluation preset, and ``freq_loss`` optionally adds
an L1 term on the Fourier amplitudes (no pretrained network is needed: our machines are
offline).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from . import atomic, formats
from .errors import FinescaleError
from .models import SRModel, families


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored inside its checkpoints)."""

    arch: str
    scale: int
    data: list[str]
    val: list[str]
    out: str
    variant: str | None = None
    iters: int = 20000
    batch: int = 16
    patch: int = 48  # LR patch side
    lr: float = 5e-4
    schedule: str = "cosine"  # or "step"
    warmup: int = 200
    ema_decay: float = 0.999
    val_every: int = 500
    ckpt_every: int = 250
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    # Training time, in minutes, over all resumes. When set, the learning-rate schedule runs on
    # elapsed training time instead of iterations and training stops when it is spent, so a run
    # split across short GPU slots still ends with a fully annealed schedule.
    budget_minutes: float | None = None
    # Stop this invocation (checkpoint saved) after this many minutes; resume later.
    time_limit_minutes: float | None = None
    # Photo models: the training degradation model (None = clean bicubic, the papers' setting),
    # weights to start from (a file or catalogue id), whether those may be of another scale
    # (everything but the scale-dependent upsampler is copied), and the weight of the
    # frequency-domain L1 term.
    degradation: str | None = None
    init: str | None = None
    init_partial: bool = False
    freq_loss: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def list_images(folders: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Every image file directly inside (or below) the given folders, sorted."""
    out: list[Path] = []
    known = formats.read_suffixes()
    for d in folders:
        p = Path(d)
        if not p.is_dir():
            raise FinescaleError(f"{p}: training data folder not found.")
        out += sorted(q for q in p.rglob("*") if q.suffix.lower() in known)
    if not out:
        raise FinescaleError(f"no images found in {', '.join(map(str, folders))}.")
    return out


def load_rgb(path: Path) -> np.ndarray:
    """uint8 RGB array (grey files expanded to three channels, as the papers' scripts do)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def make_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Modcrop ``hr`` and make its LR with the benchmark protocol's bicubic imresize."""
    from .metrics import imresize, modcrop

    hr = modcrop(hr, scale)
    return hr, imresize(hr, 1.0 / scale)


class PatchStream(IterableDataset):
    """An endless stream of aligned (LR, HR) float32 patches with flips and rotations.

    With ``degradation`` the HR patch is cropped first and its LR made by that real-world
    degradation model (:mod:`sr_core.degrade`); otherwise the LR is the protocol's bicubic.
    """

    def __init__(self, paths: Sequence[Path], scale: int, patch: int, seed: int = 0,
                 degradation: str | None = None) -> None:
        self.paths = list(paths)
        self.scale = scale
        self.patch = patch
        self.seed = seed
        self.degradation = degradation_model(degradation) if degradation else None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            self._cache[i] = make_lr(load_rgb(self.paths[i]), self.scale)
        return self._cache[i]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        wid = info.id if info else 0
        rng = np.random.default_rng([self.seed, wid, int(time.time() * 1e3) % 2**31])
        if self.degradation is not None:
            yield from self._degraded(rng)
            return
        p, s = self.patch, self.scale
        while True:
            hr, lr = self._pair(int(rng.integers(len(self.paths))))
            h, w = lr.shape[:2]
            if h < p or w < p:
                continue
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            lp = lr[y:y + p, x:x + p]
            hp = hr[y * s:(y + p) * s, x * s:(x + p) * s]
            if rng.random() < 0.5:
                lp, hp = lp[:, ::-1], hp[:, ::-1]
            if rng.random() < 0.5:
                lp, hp = lp[::-1], hp[::-1]
            if rng.random() < 0.5:
                lp, hp = lp.transpose(1, 0, 2), hp.transpose(1, 0, 2)
            yield _to_tensor(lp), _to_tensor(hp)

    def _degraded(self, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from .degrade import degrade
        from .metrics import modcrop

        cv2.setNumThreads(1)  # one worker, one core: OpenCV's own threads only fight the model
        p, s = self.patch * self.scale, self.scale
        model = self.degradation
        assert model is not None
        while True:
            i = int(rng.integers(len(self.paths)))
            if i not in self._cache:
                self._cache[i] = (modcrop(load_rgb(self.paths[i]), s), np.empty(0))
            hr = self._cache[i][0]
            h, w = hr.shape[:2]
            if h < p or w < p:
                continue
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            hp = hr[y:y + p, x:x + p]
            if rng.random() < 0.5:
                hp = hp[:, ::-1]
            if rng.random() < 0.5:
                hp = hp[::-1]
            if rng.random() < 0.5:
                hp = hp.transpose(1, 0, 2)
            hf = np.ascontiguousarray(hp, dtype=np.float32) / 255.0
            lf = degrade(hf, s, model, rng)
            yield (torch.from_numpy(np.ascontiguousarray(lf.transpose(2, 0, 1))),
                   torch.from_numpy(np.ascontiguousarray(hf.transpose(2, 0, 1))))


def degradation_model(name: str) -> Any:
    """The training degradation model called ``name``; one sentence if there is none."""
    from .degrade import TRAINING_MODELS

    if name not in TRAINING_MODELS:
        raise FinescaleError(f"Unknown training degradation '{name}'; choose one of "
                             f"{', '.join(TRAINING_MODELS)}.")
    return TRAINING_MODELS[name]


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).transpose(2, 0, 1).astype(np.float32) / 255.0)


def build_model(arch: str, variant: str | None, scale: int) -> SRModel:
    """A freshly initialised model of an official variant, wrapped in the [0,1] convention."""
    fam = next((f for f in families() if f.INFO.name == arch.lower()), None)
    if fam is None:
        names = ", ".join(f.INFO.name for f in families())
        raise FinescaleError(f"unknown architecture '{arch}' (known: {names}).")
    cfg = fam.config(variant, scale) if variant else fam.config(_default_variant(fam), scale)
    return SRModel(fam.build(cfg), fam, cfg, source="training")


def _default_variant(fam: Any) -> str:
    return {"hpinet": "S", "hat": "HAT-S", "spin": "light", "asid": "ASID"}[fam.INFO.name]


def initial_model(cfg: TrainConfig) -> SRModel:
    """The network a run starts from: fresh, or ``cfg.init``'s weights when given.

    The initial weights must be of ``cfg.arch`` and ``cfg.scale`` (and ``cfg.variant`` when
    named); with ``cfg.init_partial`` another scale is allowed and every tensor whose name and
    shape match is copied (all but the upsampler), the rest keeps its fresh initialisation.
    """
    if not cfg.init:
        return build_model(cfg.arch, cfg.variant, cfg.scale)
    from .loader import load_model

    src = load_model(cfg.init)
    if src.arch != cfg.arch.lower():
        raise FinescaleError(f"{cfg.init}: holds {src.name} ({src.arch}) weights, but --arch "
                             f"{cfg.arch} was asked; initial weights must be of the same "
                             "architecture.")
    if cfg.variant and src.variant.lower() != cfg.variant.lower():
        raise FinescaleError(f"{cfg.init}: holds the {src.variant} variant, but --variant "
                             f"{cfg.variant} was asked.")
    if src.scale == cfg.scale:
        src.train()
        return src
    if not cfg.init_partial:
        raise FinescaleError(f"{cfg.init}: upscales x{src.scale}, but x{cfg.scale} training was "
                             "asked; use x{0} weights, or --init-partial to copy all but the "
                             "upsampler.".replace("{0}", str(cfg.scale)))
    model = build_model(cfg.arch, src.variant, cfg.scale)
    own = model.net.state_dict()
    fits = {k: v for k, v in src.net.state_dict().items()
            if k in own and own[k].shape == v.shape}
    model.net.load_state_dict(fits, strict=False)
    return model


def frequency_l1(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """L1 distance of the Fourier amplitudes (orthonormal 2-D FFT per channel)."""
    a = torch.fft.rfft2(sr.float(), norm="ortho").abs()
    b = torch.fft.rfft2(hr.float(), norm="ortho").abs()
    return torch.nn.functional.l1_loss(a, b)


class EMA:
    """Exponential moving average of a network's floating-point state."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        # Short warm-up so that early validation is not dominated by the random init.
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.net.state_dict().values(), net.state_dict().values(), strict=True):
            if e.is_floating_point():
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            else:
                e.copy_(p)


def validation_set(folders: Sequence[str], scale: int,
                   degradation: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(HR, LR) uint8 pairs of the validation images, made once.

    With ``degradation`` (an evaluation preset name) the LR is that preset's degraded input.
    """
    if degradation is None:
        return [make_lr(load_rgb(p), scale) for p in list_images(folders)]
    from .evaluate import make_lr as eval_lr
    from .metrics import modcrop

    pairs = []
    for p in list_images(folders):
        hr = modcrop(load_rgb(p), scale)
        pairs.append((hr, eval_lr(hr, scale, degradation, p.name)))
    return pairs


@torch.no_grad()
def validate(model: SRModel, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
             device: torch.device) -> float:
    """Mean Y-PSNR (papers' protocol: clamp, round to 8 bits, shave ``scale``) over ``pairs``."""
    from .metrics import psnr

    model.eval()
    vals = []
    for hr, lr in pairs:
        x = _to_tensor(lr)[None].to(device)
        y = model(x).clamp(0, 1)[0].float().cpu().numpy().transpose(1, 2, 0)
        sr = np.round(y * 255.0).astype(np.uint8)
        vals.append(psnr(sr, hr, shave=model.scale))
    return float(np.mean(vals))


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``cfg.warmup`` iterations, then cosine
    (or four halvings for "step") over ``progress`` in [0, 1]."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = min(1.0, max(0.0, progress))
    if cfg.schedule == "step":
        return 0.5 ** min(3, int(t * 4))
    return 0.5 * (1 + math.cos(math.pi * t))


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic.replacing(path) as tmp:
        torch.save(obj, tmp)


def export_weights(model_net: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write a network's state dict as safetensors (atomically) with string metadata."""
    from safetensors.torch import save_file

    sd = {k: v.detach().float().contiguous().cpu() for k, v in model_net.state_dict().items()
          if v.is_floating_point()}
    with atomic.replacing(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)


def _done(cfg: TrainConfig, step: int, seconds: float) -> bool:
    if cfg.budget_minutes is not None:
        return seconds >= cfg.budget_minutes * 60
    return step >= cfg.iters


def _progress(cfg: TrainConfig, step: int, seconds: float) -> float:
    if cfg.budget_minutes is not None:
        return seconds / (cfg.budget_minutes * 60)
    return (step - cfg.warmup) / max(1, cfg.iters - cfg.warmup)


def train(cfg: TrainConfig, log: Callable[[str], None] = print,
          clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the best validation PSNR.

    Stops after ``cfg.iters`` iterations, or, with ``cfg.budget_minutes``, once that much
    training time has been spent over all resumes; ``cfg.time_limit_minutes`` ends this
    invocation early with a checkpoint to resume from. ``clock`` (seconds) measures the
    training time; tests pass a fake one so that budgets do not depend on the machine.
    """
    from tqdm import tqdm

    out = Path(cfg.out)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: pick the fastest kernels once
    torch.manual_seed(cfg.seed)
    if cfg.degradation is not None:
        degradation_model(cfg.degradation)  # an unknown name fails before any work
    model = initial_model(cfg).to(device)
    out.mkdir(parents=True, exist_ok=True)  # after the arguments proved usable
    model.exact_fp32 = False  # TF32 convolutions while training on CUDA; validation is exact
    model.train()
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    ema = EMA(model.net, cfg.ema_decay)
    step, best, history, seconds = 0, -1.0, [], 0.0
    last = out / "last.pth"
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        model.net.load_state_dict(state["params"])
        ema.net.load_state_dict(state["params_ema"])
        opt.load_state_dict(state["optimizer"])
        step, best, history = int(state["iter"]), float(state["best_psnr"]), list(state["history"])
        seconds = float(state.get("train_seconds", 0.0))
        log(f"resumed {last} at iteration {step} after {seconds / 60:.1f} min of training "
            f"(best Set5 PSNR so far {best:.3f} dB)")
    ema_model = SRModel(ema.net, model.family, model.config, source="ema")
    # Photo models are selected on what they are for: the 'real' evaluation preset.
    val_pairs = validation_set(cfg.val, cfg.scale, "real" if cfg.degradation else None)
    paths = list_images(cfg.data)
    loader = DataLoader(PatchStream(paths, cfg.scale, cfg.patch, cfg.seed + step,
                                    cfg.degradation),
                        batch_size=cfg.batch, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda")
    batches = iter(loader)
    # Autocast only where the family is known to be exact in bf16 (SPIN's superpixel
    # association is not: it trains in float32).
    amp = device.type == "cuda" and "bfloat16" in model.family.INFO.half_dtypes
    meta = {"arch": model.arch, "variant": model.variant, "scale": str(model.scale),
            "degradation": cfg.degradation or "bicubic"}
    timed = cfg.budget_minutes is not None
    total = round(cfg.budget_minutes * 60) if timed else cfg.iters
    bar = tqdm(total=total, initial=round(seconds) if timed else step,
               desc=f"train {model.name}", unit="s" if timed else "it", dynamic_ncols=True)
    start, loss_avg = clock(), None
    seconds0 = seconds

    def checkpoint() -> None:
        _atomic_save({"params": model.net.state_dict(), "params_ema": ema.net.state_dict(),
                      "optimizer": opt.state_dict(), "iter": step, "best_psnr": best,
                      "history": history, "train_seconds": seconds, "config": asdict(cfg)},
                     last)

    def run_validation() -> None:
        nonlocal best
        p = validate(ema_model, val_pairs, device)
        history.append({"iter": step, "psnr": p, "seconds": seconds})
        if p > best:
            best = p
            export_weights(ema.net, out / "best_ema.safetensors",
                           {**meta, "iterations": str(step), "val_psnr": f"{p:.4f}",
                            "train_minutes": f"{seconds / 60:.1f}"})
        log(f"iteration {step} ({seconds / 60:.1f} min): validation PSNR {p:.3f} dB "
            f"(best {best:.3f})")

    stopped = "finished"
    while not _done(cfg, step, seconds):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(cfg, step, _progress(cfg, step, seconds))
        lr_b, hr_b = (t.to(device, non_blocking=True) for t in next(batches))
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            sr_b = model(lr_b).float()
            loss = torch.nn.functional.l1_loss(sr_b, hr_b)
            if cfg.freq_loss:
                loss = loss + cfg.freq_loss * frequency_l1(sr_b, hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema.update(model.net, step)
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        before, seconds = seconds, seconds0 + clock() - start
        bar.update(round(seconds) - round(before) if timed else 1)
        bar.set_postfix(loss=f"{loss_avg:.4f}", best=f"{best:.2f}", it=step)
        finished = _done(cfg, step, seconds)
        if step % cfg.val_every == 0 or finished:
            run_validation()
        if step % cfg.ckpt_every == 0 or finished:
            checkpoint()
        if (not finished and cfg.time_limit_minutes is not None
                and seconds - seconds0 >= cfg.time_limit_minutes * 60):
            stopped = "time limit"
            if step % cfg.val_every:
                run_validation()
            checkpoint()
            log(f"time limit reached at iteration {step}; resume with the same command")
            break
    bar.close()
    return {"best_psnr": best, "iterations": step, "history": history, "out": str(out),
            "train_minutes": seconds / 60, "stopped": stopped}
