"""Pieces shared by more than one architecture family.

* :class:`ArchInfo` -- what the rest of the engine needs to know about a family (its
  input domain, padding rule, size limits, tiling needs, safe half precisions).
* Overlapping-patch helpers used by HPINet's patch division and SPIN's local attention:
  the official start rule and vectorised gather / scatter-add (no Python loop per patch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import CheckpointError


@dataclass(frozen=True)
class ArchInfo:
    """Static facts about an architecture family, read by ``SRModel`` and the engine.

    Attributes:
        name: lower-case family name (``"hpinet"``, ``"hat"``, ``"spin"``, ``"asid"``).
        title: the family's name as the paper writes it (``"HPINet"``).
        input_range: the value range the network expects for RGB; ``SRModel`` maps [0,1]
            onto it (``lo + x * (hi - lo)``) and maps the output back.
        pad_multiple: the caller pads H and W up to this multiple before the network and
            crops afterwards (1 = no caller padding; ASID pads inside its own forward).
        pad_mode: ``torch.nn.functional.pad`` mode for that padding (``"reflect"``).
        min_size: smallest accepted input height/width (smaller gets ImageTooSmallError).
        context: LR pixels of context a tile needs on each inner side (>= 32).
        tile_multiple: tile sizes are aligned to this multiple (window / patch size).
        half_dtypes: reduced precisions known to be safe on CUDA, best first
            (e.g. ``("bfloat16",)`` for HAT, which overflows in float16).
        cpu_bf16_ok: the family passed the CPU bf16 accuracy gate (bf16 against fp32 on a
            real photo >= 45 dB PSNR, kept by ``tests/test_bf16_gate.py``), so that
            ``--precision auto`` may run it in bf16 on a CPU with bf16 instructions.
    """

    name: str
    title: str
    input_range: tuple[float, float]
    pad_multiple: int = 1
    pad_mode: str = "reflect"
    min_size: int = 1
    context: int = 32
    tile_multiple: int = 8
    half_dtypes: tuple[str, ...] = ()
    cpu_bf16_ok: bool = False


def shape_of(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    """The shape of ``sd[key]``, refusing a tensor that is not ``ndim``-dimensional.

    Family ``detect()`` functions read hyper-parameters from shapes through this, so that a
    0-D or 1-D tensor where a convolution weight belongs is one sentence naming the key.
    """
    shape = tuple(int(n) for n in sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"its weight '{key}' has shape {shape}, where a {ndim}-D "
                              "tensor belongs.")
    return shape


def in_range(value: int, low: int, high: int, what: str, key: str, family: str) -> int:
    """``value`` if ``low <= value <= high``; else a CheckpointError naming the key and value.

    Each family states the hyper-parameter ranges it accepts (far above the published
    variants, but finite) so that absurd shapes are refused before a network is built.
    """
    if not low <= value <= high:
        raise CheckpointError(
            f"its weight '{key}' gives {what} {value}, outside the {low}..{high} that {family} "
            "accepts, so it was refused before building the network.")
    return value


def overlapping_starts(size: int, patch: int) -> tuple[list[int], list[int]]:
    """Start offsets of the official overlapping patch grid along one axis.

    Step is ``patch - 2``; starts ``0, step, 2*step, ...`` strictly below
    ``size + step - patch``; a patch that would cross the border is shifted back to
    ``size - patch``. Returns ``(starts, unshifted)`` where ``unshifted`` holds the start
    before that shift (HPINet's overlap normalisation needs it). The single-patch case
    ``size == patch`` (step = patch) is the caller's: it is decided on both axes at once.
    """
    step = patch - 2
    return _starts_with_step(size, patch, step)


def _starts_with_step(size: int, patch: int, step: int) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    unshifted: list[int] = []
    r = 0
    while r < size + step - patch:
        unshifted.append(r)
        starts.append(min(r, size - patch))
        r += step
    return starts, unshifted


def _pixel_index(rows: list[int], cols: list[int], patch: int, width: int,
                 device: torch.device) -> torch.Tensor:
    """Flat pixel indices ``(nh, nw, P, P)`` of every patch pixel in an ``H*W`` map."""
    ar = torch.arange(patch, device=device)
    r = torch.tensor(rows, device=device)[:, None] + ar  # (nh, P)
    c = torch.tensor(cols, device=device)[:, None] + ar  # (nw, P)
    return r[:, None, :, None] * width + c[None, :, None, :]


def extract_patch_tokens(x: torch.Tensor, rows: list[int], cols: list[int],
                         patch: int) -> torch.Tensor:
    """Gather patches as tokens ``(B, n, P*P, C)`` from a channels-last map ``(B, H, W, C)``.

    Patches in row-major order, laid out for token-wise layers
    (LayerNorm, Linear, attention) without a transpose copy.
    """
    b, h, w, c = x.shape
    idx = _pixel_index(rows, cols, patch, w, x.device).reshape(-1)
    return x.reshape(b, h * w, c)[:, idx].view(b, len(rows) * len(cols), patch * patch, c)


def scatter_add_patch_tokens(tokens: torch.Tensor, rows: list[int], cols: list[int],
                             height: int, width: int) -> torch.Tensor:
    """Sum tokens ``(B, n, P*P, C)`` into a zero channels-last map ``(B, H, W, C)``."""
    b, n, pp, c = tokens.shape
    p = int(round(pp ** 0.5))
    idx = _pixel_index(rows, cols, p, width, tokens.device).reshape(-1)
    out = tokens.new_zeros(b, height * width, c)
    out.index_add_(1, idx, tokens.reshape(b, n * pp, c))
    return out.view(b, height, width, c)


def patch_coverage(rows: list[int], cols: list[int], patch: int, height: int, width: int,
                   device: torch.device | None = None) -> torch.Tensor:
    """How many patches cover each pixel, ``(H, W)`` int64 (for count-normalised sums)."""
    ar = torch.arange(patch, device=device)
    r = (torch.tensor(rows, device=device)[:, None] + ar).reshape(-1)
    c = (torch.tensor(cols, device=device)[:, None] + ar).reshape(-1)
    return torch.bincount(r, minlength=height)[:, None] * torch.bincount(c, minlength=width)
