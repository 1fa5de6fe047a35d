"""``SRModel`` -- one calling convention for every architecture -- and loading weights into it.

This module turns a checkpoint *file* or a state-dict *mapping* into an :class:`SRModel`
(:func:`load_weights`). Catalogue ids, downloads and the clean-up control live above it, in
:mod:`sr_core.loader`, whose ``load_model`` is the public entry point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import archs, community
from .archs import Family
from .archs.layers import ArchInfo
from .checkpoint import CHECKPOINT_SUFFIXES, read_state_dict, unwrap_state_dict
from .errors import (
    CheckpointError,
    ImageTooSmallError,
    ModelNotFoundError,
    UnknownArchitectureError,
)

__all__ = ["SRModel", "build_from_state_dict", "detect", "families", "is_catalogue_id",
           "load_weights"]


def families() -> tuple[Family, ...]:
    """The architecture families Finescale implements, in detection order."""
    return archs.families()


def _without_tf32() -> contextlib.AbstractContextManager[None]:
    """cuDNN's current flags with TF32 convolutions turned off."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                       deterministic=cudnn.deterministic, allow_tf32=False)


class SRModel(nn.Module):
    """A super-resolution network behind one convention.

    ``forward(x)`` takes float RGB ``(N, 3, H, W)`` in [0, 1] and returns ``(N, 3, sH, sW)``
    in the [0, 1] domain, unclamped, whatever the network's own domain and padding rules.
    The caller's tensor is never modified.
    """

    def __init__(
        self,
        net: nn.Module,
        family: Family,
        config: Any,
        *,
        source: str = "",
        skipped_keys: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.family = family
        self.info: ArchInfo = family.INFO
        self.config = config
        self.source = source
        self.skipped_keys = skipped_keys
        #: float32 on CUDA without TF32 (reproduces the official outputs). Training turns it
        #: off: TF32 is the usual trade there, and it is several times faster.
        self.exact_fp32 = True

    @property
    def arch(self) -> str:
        return self.info.name

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @property
    def name(self) -> str:
        """Human-readable name, e.g. ``"HPINet-M x4"``."""
        v = self.variant
        title = self.info.title
        label = v if v.upper().startswith(title.upper()) else f"{title}-{v}" if v else title
        return f"{label} x{self.scale}"

    def estimate_memory(self, height: int, width: int, dtype_bytes: int = 4) -> int:
        """Peak working memory in bytes for one ``height x width`` input (batch 1)."""
        return int(self.family.estimate_memory(self.config, height, width, dtype_bytes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) RGB, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if min(h, w) < self.info.min_size:
            raise ImageTooSmallError(
                f"{h}x{w} pixels is too small for {self.name}: it needs at least "
                f"{self.info.min_size}x{self.info.min_size}."
            )
        lo, hi = self.info.input_range
        z = x * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else x
        m = self.info.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            z = F.pad(z, (0, pw, 0, ph), mode=self.info.pad_mode)
        exact = (self.exact_fp32 and z.is_cuda and z.dtype == torch.float32
                 and torch.backends.cudnn.allow_tf32)
        # cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa): measured on an
        # H100 that moves SPIN's output by 5 grey levels and the others by 2e-4, far outside
        # the golden tolerances. float32 on CUDA means float32.
        with _without_tf32() if exact else contextlib.nullcontext():
            y = self.net(z)
        s = self.scale
        if ph or pw:
            y = y[..., : h * s, : w * s]
        if (lo, hi) != (0.0, 1.0):
            y = (y - lo) / (hi - lo)
        return y


def load_weights(source: Any, *, arch: str | None = None, **overrides: Any) -> SRModel:
    """Load a model from a checkpoint file or a state-dict mapping (an SRModel is returned
    as is).

    Architecture, variant and scale are detected from the keys and shapes; ``arch``
    restricts detection to one family and ``overrides`` replace config fields that shapes
    cannot tell. Weights none of our families recognises go to spandrel when it is installed
    (:mod:`sr_core.community`). Loading is strict: missing parameters, unknown weights and
    shape mismatches are refused with a :class:`CheckpointError` that names what was found.
    The model is returned in eval mode on the CPU.
    """
    if isinstance(source, SRModel):
        return source
    if isinstance(source, Mapping):
        origin = "the given state dict"
        sd = unwrap_state_dict(source, origin)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if is_catalogue_id(str(source)):
            raise ModelNotFoundError(f"{source}: no such file.")
        origin = path.name
        sd = read_state_dict(path)
    else:
        raise TypeError(
            f"load_model() takes a path, a state dict or a model id, not {type(source).__name__}"
        )
    return build_from_state_dict(sd, origin=origin, arch=arch, **overrides)


def is_catalogue_id(source: str) -> bool:
    """True when ``source`` names no file and has no checkpoint suffix, so that the loader
    treats it as a catalogue id."""
    path = Path(source)
    return not (path.exists() or path.suffix.lower() in CHECKPOINT_SUFFIXES)


def detect(
    sd: Mapping[str, torch.Tensor], *, arch: str | None = None, origin: str = "checkpoint"
) -> tuple[Family, Any]:
    """Find the one family whose ``detect()`` recognises ``sd``; return it and its config."""
    fams = families()
    if arch is not None:
        one = archs.by_name(arch)
        if one is None:
            raise UnknownArchitectureError(
                f"{origin}: unknown architecture '{arch}' (known: {', '.join(archs.names())})."
            )
        fams = (one,)
    hits = []
    for f in fams:
        try:
            c = f.detect(sd)
        except CheckpointError as e:  # a family recognised the weights but refuses them
            raise type(e)(f"{origin}: {e}") from e
        except (ValueError, IndexError, TypeError, ZeroDivisionError, RuntimeError) as e:
            # Shapes so malformed that reading the configuration failed (e.g. a 1-D tensor
            # where a convolution belongs): the family's keys are there, the weights unusable.
            raise CheckpointError(
                f"{origin}: malformed {f.INFO.title} weights (a tensor has an impossible "
                f"shape: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__})."
            ) from e
        if c is not None:
            hits.append((f, c))
    if not hits:
        keys = sorted(sd)
        sample = ", ".join(keys[:4])
        raise UnknownArchitectureError(
            f"{origin}: no supported architecture ({archs.titles()}) recognises these "
            f"weights ({len(keys)} tensors, e.g. {sample})."
        )
    if len(hits) > 1:
        names = ", ".join(f.INFO.title for f, _ in hits)
        raise UnknownArchitectureError(
            f"{origin}: ambiguous weights, they fit {names}; pass arch=..."
        )
    return hits[0]


def build_from_state_dict(
    sd: Mapping[str, torch.Tensor],
    *,
    origin: str = "checkpoint",
    arch: str | None = None,
    **overrides: Any,
) -> SRModel:
    """Detect, build and strictly load a model from an unwrapped state dict.

    Weights none of our families recognises are offered to spandrel (without ``arch``).
    """
    try:
        family, config = detect(sd, arch=arch, origin=origin)
    except UnknownArchitectureError as ours:
        if arch is not None or overrides:
            raise
        family, config = community.detect(sd, origin, ours)
        sd = config.weights  # the same tensors under the key names spandrel's network uses
    if overrides:
        try:
            config = dataclasses.replace(config, **overrides)
        except TypeError as e:
            fields = ", ".join(f.name for f in dataclasses.fields(config))
            raise CheckpointError(
                f"{origin}: invalid override ({e}); valid fields: {fields}."
            ) from e
    net = family.build(config)
    skipped = _load_strict(net, sd, origin,
                           f"{family.INFO.title} {config.variant} x{config.scale}")
    if skipped:
        warnings.warn(
            f"{origin}: ignored {len(skipped)} non-weight entries: {', '.join(skipped)}",
            stacklevel=2,
        )
    model = SRModel(net, family, config, source=origin, skipped_keys=tuple(skipped))
    return model.eval()


def _load_strict(
    net: nn.Module, sd: Mapping[str, torch.Tensor], origin: str, what: str
) -> list[str]:
    """Load every parameter; refuse missing or unexpected weights and wrong shapes.

    Buffers the network rebuilds itself (index tables) may be absent from the file; integer
    entries the network does not have are skipped and reported rather than refused.
    """
    own = net.state_dict()
    params = {n for n, _ in net.named_parameters()}
    for k in own:
        if k not in sd:
            continue
        t = sd[k]
        if k in params and not t.is_floating_point():
            kind = str(t.dtype).replace("torch.", "")
            raise CheckpointError(f"{origin}: weight '{k}' holds {kind} numbers, where "
                                  "floating-point weights belong.")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "infinite"
            raise CheckpointError(f"{origin}: weight '{k}' holds {bad} values, so the model "
                                  "would give a black or flat picture; it was refused.")
    missing = [k for k in own if k not in sd and k in params]
    unexpected = [k for k in sd if k not in own]
    skipped = [k for k in unexpected if not sd[k].is_floating_point()]
    unexpected = [k for k in unexpected if sd[k].is_floating_point()]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weight(s) such as '{missing[0]}'")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weight(s) such as '{unexpected[0]}'")
        raise CheckpointError(f"{origin}: does not fit {what}: {' and '.join(parts)}.")
    for k, v in own.items():
        if k in sd and tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{origin}: weight '{k}' has shape {tuple(sd[k].shape)} "
                f"but {what} expects {tuple(v.shape)}."
            )
    net.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return skipped
