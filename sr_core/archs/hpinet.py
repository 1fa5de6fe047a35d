"""HPINet -- Hierarchical Pixel Integration (Liu et al., AAAI 2023), variants S, M, L.

Reproduces the authors' network (github.com/passerer/HPINet, ``HPINet.py`` at 25d5db14) so
that their checkpoints load unchanged and give the same output; see
``shared/reference/ARCHITECTURES.md`` section 1. Each block cuts the feature map into
overlapping square patches, pairs every patch with its most similar *other* patch (arg-max
of pooled, layer-normalised descriptors), runs three pre-norm attention layers on the
patch's pixels (the first attends to the paired patch's raw features), pastes the patches
back and adds a 3x3 conv of the result.

Where this differs from the official code, only in how it computes:

* patch division and re-assembly are one gather and one ``index_add`` (no loop per patch);
  the official "halve each overlap band" normalisation, including its 3/4 quirk on some
  sizes, is a precomputed per-row and per-column factor;
* attention goes through ``scaled_dot_product_attention`` with queries and keys zero-padded
  to the value width (the CPU flash kernel wants equal widths; zero columns leave ``QK^T``
  unchanged); ``reference=True`` computes ``softmax(QK^T)V`` explicitly instead;
* patch matching is per image, so a batch gives each image its own output (the official
  eval path takes every image's matches from image 0);
* matching is always the eval-mode arg-max; the official training-mode Gumbel-softmax
  matching is not reproduced (inference only).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (
    ArchInfo,
    extract_patch_tokens,
    in_range,
    overlapping_starts,
    scatter_add_patch_tokens,
    shape_of,
)

INFO = ArchInfo(
    name="hpinet",
    title="HPINet",
    input_range=(0.0, 1.0),
    pad_multiple=1,
    pad_mode="reflect",
    # Below the largest patch size (24) the official slicing silently degenerates.
    min_size=24,
    context=32,
    tile_multiple=8,
    half_dtypes=("float16", "bfloat16"),
)

_SMALL_MEDIUM_PATCHES = (12, 16, 20, 24, 12, 16, 20, 24)
_LARGE_PATCHES = (12, 14, 16, 20, 24, 12, 14, 16, 20, 24)


@dataclass(frozen=True)
class HPINetConfig:
    """Hyper-parameters of one HPINet network.

    Attributes:
        variant: ``"S"``, ``"M"`` or ``"L"`` (``"custom"`` for widths no release uses).
        scale: upscale factor, 2, 3 or 4.
        dim: feature channels.
        qk_dim: width of attention queries and keys (values keep ``dim``).
        mlp_dim: hidden width of the feed-forward networks.
        patch_sizes: patch side of each block, one entry per block.
        layers_per_block: attention + FFN layers in each block (the first is cross-attention).
    """

    variant: str
    scale: int
    dim: int
    qk_dim: int
    mlp_dim: int
    patch_sizes: tuple[int, ...]
    layers_per_block: int = 3


#: The published variants, at x4 (:func:`config` gives the other scales).
VARIANTS: dict[str, HPINetConfig] = {
    "S": HPINetConfig("S", 4, dim=40, qk_dim=24, mlp_dim=72, patch_sizes=_SMALL_MEDIUM_PATCHES),
    "M": HPINetConfig("M", 4, dim=56, qk_dim=32, mlp_dim=100, patch_sizes=_SMALL_MEDIUM_PATCHES),
    "L": HPINetConfig("L", 4, dim=64, qk_dim=36, mlp_dim=128, patch_sizes=_LARGE_PATCHES),
}
_SCALES = (2, 3, 4)


def config(variant: str, scale: int) -> HPINetConfig:
    """The official configuration of ``variant`` (``"S"``, ``"M"``, ``"L"``) at ``scale``."""
    key = variant.upper()
    if key not in VARIANTS:
        raise ValueError(f"unknown HPINet variant {variant!r}; expected one of S, M, L")
    if scale not in _SCALES:
        raise ValueError(f"HPINet supports scales 2, 3 and 4, not {scale}")
    return dataclasses.replace(VARIANTS[key], scale=scale)


# --- patch grid ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _axis_plan(size: int, patch: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Patch starts along one axis and the official overlap factor of every row/column.

    The official re-assembly halves, for each patch after the first, the band from its
    (possibly shifted) start to the end of the previous patch's two-pixel overlap. Bands
    meet when the last, shifted patch reaches back over two earlier ones; such rows are
    halved twice (3 patches, divided by 4), which the released weights were trained with.
    (``size == patch`` gives one start either way, so the official single-patch special case
    needs nothing here.)
    """
    starts, unshifted = overlapping_starts(size, patch)
    factor = [1.0] * size
    for start, nominal in zip(starts[1:], unshifted[1:], strict=True):
        for i in range(start, nominal + 2):
            factor[i] *= 0.5
    return tuple(starts), tuple(factor)


def _grid(h: int, w: int, patch: int,
          like: torch.Tensor) -> tuple[list[int], list[int], torch.Tensor]:
    rows, row_f = _axis_plan(h, patch)
    cols, col_f = _axis_plan(w, patch)
    rf = torch.tensor(row_f, dtype=like.dtype, device=like.device)
    cf = torch.tensor(col_f, dtype=like.dtype, device=like.device)
    return list(rows), list(cols), rf[:, None] * cf[None, :]


# --- modules ------------------------------------------------------------------------------
class PreNorm(nn.Module):
    """LayerNorm of the token features, then ``fn`` (extra arguments go to ``fn``)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return self.fn(self.norm(x), *args, **kwargs)


class FeedForward(nn.Module):
    """Two linear layers with an exact GELU between them."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PatchAttention(nn.Module):
    """Single-head attention over the pixels of a patch, without output projection.

    Queries come from ``x``; keys and values from ``support`` when given (cross-attention
    to the matched patch, which is deliberately *not* normalised) else from ``x``.
    """

    def __init__(self, dim: int, qk_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.to_q = nn.Linear(dim, qk_dim, bias=False)
        self.to_k = nn.Linear(dim, qk_dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, support: torch.Tensor | None = None, *,
                reference: bool = False) -> torch.Tensor:
        src = x if support is None else support
        if reference:
            return self._reference(x, src)
        qk, dim = self.qk_dim, self.dim
        wq, wk, wv = self.to_q.weight, self.to_k.weight, self.to_v.weight
        if support is None:
            q, k, v = F.linear(x, torch.cat((wq, wk, wv))).split((qk, qk, dim), dim=-1)
        else:
            q = F.linear(x, wq)
            k, v = F.linear(src, torch.cat((wk, wv))).split((qk, dim), dim=-1)
        # The CPU flash kernel wants one width for q, k and v: zero columns keep QK^T exact.
        width = max(qk, dim)
        q, k, v = (t if t.shape[-1] == width else F.pad(t, (0, width - t.shape[-1]))
                   for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=qk ** -0.5
        ).squeeze(1)
        return out if width == dim else out[..., :dim]

    def _reference(self, x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_q(x), self.to_k(src), self.to_v(src)
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.qk_dim ** -0.5
        return torch.matmul(logits.softmax(dim=-1), v)


class TransformerLayer(nn.ModuleList):
    """``[PreNorm(attention), PreNorm(feed-forward)]``, each applied as a residual."""

    def __init__(self, dim: int, qk_dim: int, mlp_dim: int) -> None:
        super().__init__([PreNorm(dim, PatchAttention(dim, qk_dim)),
                          PreNorm(dim, FeedForward(dim, mlp_dim))])

    def forward(self, x: torch.Tensor, support: torch.Tensor | None = None, *,
                reference: bool = False) -> torch.Tensor:
        attn, ffn = self[0], self[1]
        x = x + attn(x, support, reference=reference)
        return x + ffn(x)


class PatchTransformer(nn.Module):
    """The layers of one block; the first cross-attends to the matched patches."""

    def __init__(self, dim: int, qk_dim: int, mlp_dim: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, qk_dim, mlp_dim) for _ in range(depth))

    def forward(self, tokens: torch.Tensor, support: torch.Tensor, *,
                reference: bool = False) -> torch.Tensor:
        """``tokens``/``support``: ``(patches, pixels, dim)``."""
        for i, layer in enumerate(self.layers):
            tokens = layer(tokens, support if i == 0 else None, reference=reference)
        return tokens


class PatchMatch(nn.Module):
    """For every patch, the index of its most similar *other* patch in the same image.

    Descriptors are the patch means, layer-normalised; similarity is their scaled dot
    product with 100 subtracted on the diagonal (the official self-exclusion, which still
    returns the patch itself when it is the only one).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``(B, n, pixels, dim)`` -> indices ``(B, n)`` into the same image."""
        n, dim = tokens.shape[1], tokens.shape[-1]
        desc = self.norm(tokens.mean(dim=2))
        sim = torch.matmul(desc, desc.transpose(-1, -2)) * dim ** -0.5
        sim = sim - 100 * torch.eye(n, dtype=sim.dtype, device=sim.device)
        return sim.argmax(dim=-1)


class HPINet(nn.Module):
    """The HPINet network; ``forward`` maps RGB [0, 1] ``(B, 3, H, W)`` to ``(B, 3, sH, sW)``."""

    def __init__(self, cfg: HPINetConfig) -> None:
        super().__init__()
        if cfg.scale not in _SCALES:
            raise ValueError(f"HPINet supports scales 2, 3 and 4, not {cfg.scale}")
        self.config = cfg
        dim = cfg.dim
        self.first_conv = nn.Conv2d(3, dim, 3, padding=1)
        self.cross_match = nn.ModuleList(PatchMatch(dim) for _ in cfg.patch_sizes)
        self.blocks = nn.ModuleList(
            PatchTransformer(dim, cfg.qk_dim, cfg.mlp_dim, cfg.layers_per_block)
            for _ in cfg.patch_sizes
        )
        self.mid_convs = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in cfg.patch_sizes)
        if cfg.scale == 4:
            self.upconv1 = nn.Conv2d(dim, dim * 4, 3, padding=1)
            self.upconv2 = nn.Conv2d(dim, dim * 4, 3, padding=1)
        else:
            self.upconv = nn.Conv2d(dim, dim * cfg.scale ** 2, 3, padding=1)
        self.last_conv = nn.Conv2d(dim, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, *, reference: bool = False) -> torch.Tensor:
        """Upscale ``x``; ``reference=True`` uses explicit softmax attention (for tests)."""
        s = self.config.scale
        base = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        # Channels-last features: convolutions keep the layout and patches gather without copies.
        feat = self.first_conv(x.contiguous(memory_format=torch.channels_last))
        for patch, match, block, conv in zip(self.config.patch_sizes, self.cross_match,
                                             self.blocks, self.mid_convs, strict=True):
            feat = feat + conv(self._patch_block(feat, patch, match, block, reference))
        if s == 4:
            up = F.leaky_relu(F.pixel_shuffle(self.upconv1(feat), 2), 0.1, inplace=True)
            up = F.leaky_relu(F.pixel_shuffle(self.upconv2(up), 2), 0.1, inplace=True)
        else:
            up = F.leaky_relu(F.pixel_shuffle(self.upconv(feat), s), 0.1, inplace=True)
        return (base + self.last_conv(up)).contiguous()

    @staticmethod
    def _patch_block(feat: torch.Tensor, patch: int, match: PatchMatch,
                     block: PatchTransformer, reference: bool) -> torch.Tensor:
        b, c, h, w = feat.shape
        rows, cols, factor = _grid(h, w, patch, feat)
        # Token layout (B, n, P*P, C); a channels-last feature map makes the permute free.
        tokens = extract_patch_tokens(feat.permute(0, 2, 3, 1), rows, cols, patch)
        n, pixels = tokens.shape[1], tokens.shape[2]
        partner = match(tokens)
        support = tokens[torch.arange(b, device=feat.device)[:, None], partner]
        out = block(tokens.view(b * n, pixels, c), support.view(b * n, pixels, c),
                    reference=reference)
        summed = scatter_add_patch_tokens(out.view(b, n, pixels, c), rows, cols, h, w)
        return summed.mul_(factor[:, :, None]).permute(0, 3, 1, 2)


def build(cfg: HPINetConfig) -> HPINet:
    """The HPINet network for ``cfg`` (random weights; load a state dict into it), in eval
    mode."""
    return HPINet(cfg).eval()


# --- detection ----------------------------------------------------------------------------
_MARKERS = ("first_conv.weight", "cross_match.0.norm.weight",
            "blocks.0.layers.0.0.fn.to_q.weight", "mid_convs.0.weight", "last_conv.weight")


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd for m in [rx.fullmatch(k)] if m}
    n = 0
    while n in found:
        n += 1
    return n


#: Hyper-parameter ranges detect() accepts: far above HPINet-L (64/36/128, depth 2), but
#: finite, so that absurd shapes are refused before the network is built.
LIMITS = {"dim": (4, 512), "qk_dim": (1, 512), "mlp_dim": (1, 4096), "depth": (1, 32)}


def detect(state_dict: Mapping[str, torch.Tensor]) -> HPINetConfig | None:
    """Recognise an HPINet state dict and read its configuration from keys and shapes.

    Returns ``None`` when the keys are not HPINet's. The variant follows from the width and
    block count (patch sizes cannot be read from weights, so unknown block counts are not
    recognised); the scale from the reconstruction convs.
    """
    sd = state_dict
    if not all(k in sd for k in _MARKERS):
        return None
    dim = in_range(shape_of(sd, "first_conv.weight", 4)[0], *LIMITS["dim"], "a width of",
                   "first_conv.weight", "HPINet")
    q_key = "blocks.0.layers.0.0.fn.to_q.weight"
    qk_dim = in_range(shape_of(sd, q_key, 2)[0], *LIMITS["qk_dim"], "a key width of", q_key,
                      "HPINet")
    fc1 = sd.get("blocks.0.layers.0.1.fn.fc1.weight")
    if fc1 is None:
        return None
    mlp_dim = in_range(shape_of(sd, "blocks.0.layers.0.1.fn.fc1.weight", 2)[0],
                       *LIMITS["mlp_dim"], "an MLP width of",
                       "blocks.0.layers.0.1.fn.fc1.weight", "HPINet")
    blocks = _count(sd, r"blocks\.(\d+)\.layers\.0\.0\.fn\.to_q\.weight")
    depth = in_range(_count(sd, r"blocks\.0\.layers\.(\d+)\.0\.fn\.to_q\.weight"),
                     *LIMITS["depth"], "a depth of", q_key, "HPINet")

    if "upconv1.weight" in sd and "upconv2.weight" in sd:
        scale = 4
    elif "upconv.weight" in sd:
        ratio = sd["upconv.weight"].shape[0] / dim
        scale = round(math.sqrt(ratio))
        if scale * scale != ratio or scale not in (2, 3):
            return None
    else:
        return None

    variant = next((v for v, c in VARIANTS.items() if (c.dim, c.qk_dim, c.mlp_dim,
                                                        len(c.patch_sizes)) ==
                    (dim, qk_dim, mlp_dim, blocks)), None)
    if variant is not None:
        patches = VARIANTS[variant].patch_sizes
    else:
        by_count = {len(p): p for p in (_SMALL_MEDIUM_PATCHES, _LARGE_PATCHES)}
        if blocks not in by_count:
            return None
        variant, patches = "custom", by_count[blocks]
    return HPINetConfig(variant, scale, dim, qk_dim, mlp_dim, patches, depth)


def estimate_memory(cfg: HPINetConfig, h: int, w: int, dtype_bytes: int = 4) -> int:
    """Peak working bytes of one forward on an ``h x w`` input at batch 1 (weights excluded).

    Calibrated by measuring the peak resident memory of CPU forwards (S/M/L x2/x3/x4,
    96..256 px; ``benchmarks/bench_hpinet.py --memory``): the patch stage peaks near 15
    feature maps (patch overlap, matched support, q/k/v, FFN hidden); the reconstruction
    tail holds the last upsampling conv's output and its pixel shuffle (2 * s^2 maps at LR
    size, plus the first stage's output at x4) and the bilinear base. The larger wins,
    plus 10% and a little fixed overhead.
    """
    s = cfg.scale
    body = 15 * cfg.dim
    tail = (2 * s * s + (4 if s == 4 else 0) + 1) * cfg.dim + 3 * s * s
    per_pixel = max(body, tail) * dtype_bytes
    return int(1.1 * h * w * per_pixel) + 8 * 2**20
