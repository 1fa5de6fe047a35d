"""ASID -- Attention-Sharing Information Distillation (AAAI 2025), ASID and ASID-D8.

The network takes RGB in [-1, 1] and returns [-1, 1]. It zero-pads right/bottom to a
multiple of ``window_size`` itself (zero in [-1, 1] is mid-grey) and crops the output, as
the authors' forward does. Module attribute names reproduce the official state-dict keys
(``block0.residual_layer.0.SLA1.attn.to_qkv.weight`` ...), so official checkpoints load
unchanged.

Inside, feature maps travel channels-last (``B, H, W, C``): the 1x1 convolutions become
matrix products on the channel axis, the depth-wise 3x3 convolutions run on channels-last
memory (several times faster on CPU than NCHW), and the window / grid partitions are
single ``view -> permute -> reshape`` copies.

Where ``scaled_dot_product_attention`` could go, and why it does not: the first block's
six spatial maps must exist as tensors, since every later block multiplies its values by
them (recomputing them with SDPA in each block would cost the logits and softmax again);
the later blocks only do ``map @ v``. The channel attention could use SDPA (scale 1, the
temperature folded into the normalised q), but explicit ``bmm``s are faster on CPU for its
shapes (48 tokens, 64..4096 long) and let the L2 normalisation fold into the small logits:
SDPA measured 1.3-2.9x slower there with torch 2.13 on this CPU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ArchInfo, in_range, shape_of

INFO = ArchInfo(
    name="asid",
    title="ASID",
    input_range=(-1.0, 1.0),
    pad_multiple=1,  # the network pads to a multiple of 8 itself, with zeros in [-1, 1]
    pad_mode="constant",
    min_size=9,  # ESA's unpadded stride-2 conv + 7x7/3 max-pool need >= 16 after padding
    context=32,
    tile_multiple=8,
    half_dtypes=("bfloat16",),
    cpu_bf16_ok=True,  # 57.4 dB bf16 vs fp32 on a 64x64 crop of resources/sample.png (x4 photo)
)

#: Spatial attention windows are 8x8 in the official code whatever ``window_size`` says.
SPATIAL_WINDOW = 8


@dataclass(frozen=True)
class ASIDConfig:
    """Hyper-parameters of one ASID network.

    Attributes:
        variant: ``"ASID"`` (3 information-distillation blocks) or ``"ASID-D8"`` (8).
        scale: upscale factor (2, 3 or 4 officially).
        num_blocks: number of information-distillation blocks (IDBs).
        num_feat: feature channels (48 officially); a quarter is split off at each stage.
        window_size: channel-attention window and padding multiple (8 officially).
        in_ch: input / output colour channels.
    """

    variant: str = "ASID"
    scale: int = 4
    num_blocks: int = 3
    num_feat: int = 48
    window_size: int = 8
    in_ch: int = 3


#: The published variants, at x4 (:func:`config` gives the other scales).
VARIANTS: dict[str, ASIDConfig] = {
    "ASID": ASIDConfig(variant="ASID", num_blocks=3),
    "ASID-D8": ASIDConfig(variant="ASID-D8", num_blocks=8),
}


def config(variant: str = "ASID", scale: int = 4) -> ASIDConfig:
    """The official configuration of ``variant`` (``"ASID"`` or ``"ASID-D8"``) at ``scale``."""
    key = variant.upper().replace("_", "-")
    if key in ("ASIDD8", "D8"):
        key = "ASID-D8"
    if key not in VARIANTS:
        raise ValueError(f"unknown ASID variant '{variant}' (known: {', '.join(VARIANTS)})")
    if scale not in (2, 3, 4):
        raise ValueError(f"ASID is released for scales 2, 3 and 4, not {scale}")
    return dataclasses.replace(VARIANTS[key], scale=scale)


# --- channels-last helpers ------------------------------------------------------------------
def _pointwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution applied to a channels-last map ``(B, H, W, C)``."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def _pointwise_add(residual: torch.Tensor, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``residual + conv1x1(x)`` in one matrix product (channels-last, conv without bias)."""
    b, hh, ww, _ = residual.shape
    out = torch.addmm(residual.reshape(b * hh * ww, -1), x.reshape(b * hh * ww, -1),
                      conv.weight.flatten(1).t())
    return out.view(b, hh, ww, -1)


def _split(x: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``c`` channels and the rest of a channels-last map, each contiguous.

    Contiguous parts let the whole map be freed and keep the layer norms off their slow
    strided path.
    """
    return x[..., :c].contiguous(), x[..., c:].contiguous()


def _spatial(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A k x k convolution on a channels-last map; the result is channels-last again."""
    y = conv(x.permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).contiguous()


def _depthwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Bias-free depth-wise 3x3 convolution (padding 1) of a channels-last map."""
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, None, 1, 1, 1, weight.shape[0])
    return y.permute(0, 2, 3, 1).contiguous()


def _projected_part(x: torch.Tensor, project: nn.Conv2d, dwconv: nn.Conv2d, i: int,
                    parts: int) -> torch.Tensor:
    """Channel block ``i`` of ``parts`` of ``dwconv(project(x))`` (1x1 then depth-wise 3x3).

    Both convs act on each output channel block separately, so computing the blocks one by
    one is exact. It keeps each map contiguous and small: glibc serves blocks over 32 MB with
    fresh pages, and first-touch page faults on one 144-channel map made the depth-wise conv
    ten times slower at 256x256 on CPU; it also lets a block be freed before the next exists.
    """
    n = project.out_channels // parts
    rows = slice(i * n, (i + 1) * n)
    return _depthwise(F.linear(x, project.weight.flatten(1)[rows]), dwconv.weight[rows])


#: Token-group layouts. "window": win x win blocks; "grid": win x win tokens spread over the
#: map with spacing H/win, W/win (spatial grid attention); "stride": all pixels with the same
#: (r % win, q % win), spacing win (channel grid attention).
WINDOW, GRID, STRIDE = "window", "grid", "stride"


def _group_view(x: torch.Tensor, kind: str, win: int) -> torch.Tensor:
    """``(B, H, W, C)`` as a 6-d view ``(B, group rows, group cols, token rows, token cols, C)``."""
    b, hh, ww, c = x.shape
    gh, gw = hh // win, ww // win
    if kind == GRID:  # pixel (r, q): group (r % gh, q % gw), token (r // gh, q // gw)
        return x.view(b, win, gh, win, gw, c).permute(0, 2, 4, 1, 3, 5)
    t = x.view(b, gh, win, gw, win, c)
    if kind == WINDOW:  # group (r // win, q // win), token (r % win, q % win)
        return t.permute(0, 1, 3, 2, 4, 5)
    if kind == STRIDE:  # group (r % win, q % win), token (r // win, q // win)
        return t.permute(0, 2, 4, 1, 3, 5)
    raise ValueError(f"unknown partition {kind!r}")


def to_groups(x: torch.Tensor, kind: str, win: int = SPATIAL_WINDOW) -> torch.Tensor:
    """Partition ``(B, H, W, C)`` into token groups ``(B * groups, tokens, C)``.

    Groups are ordered row-major by group coordinates, tokens row-major by token
    coordinates; one copy (runs of C contiguous values), no loop over groups.
    """
    v = _group_view(x, kind, win)
    b, g1, g2, t1, t2, c = v.shape
    return v.reshape(b * g1 * g2, t1 * t2, c)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    """True while training: the in-place/``out=`` fast paths below cannot be differentiated."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _gelu(t: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU of a temporary map, in place at inference.

    Big maps are fresh pages from the system (``device.release_freed_memory_promptly``), so
    every new one costs its page faults; overwriting the temporary costs none.
    """
    return F.gelu(t) if _needs_grad(t) else torch.ops.aten.gelu_(t)


def _ungroup(t: torch.Tensor, shape: tuple[int, ...], kind: str, win: int) -> torch.Tensor:
    """Differentiable inverse of :func:`to_groups` (an out-of-place permute back)."""
    b, hh, ww, c = shape
    gh, gw = hh // win, ww // win
    if kind == WINDOW:
        v = t.reshape(b, gh, gw, win, win, c).permute(0, 1, 3, 2, 4, 5)
    elif kind == GRID:
        v = t.reshape(b, gh, gw, win, win, c).permute(0, 3, 1, 4, 2, 5)
    else:  # STRIDE: group (r % win, q % win), token (r // win, q // win)
        v = t.reshape(b, win, win, gh, gw, c).permute(0, 3, 1, 4, 2, 5)
    return v.reshape(b, hh, ww, c)


def add_from_groups(x: torch.Tensor, t: torch.Tensor, kind: str,
                    win: int = SPATIAL_WINDOW) -> torch.Tensor:
    """``x + t`` where ``t`` holds :func:`to_groups` tokens of a map shaped like ``x``.

    One pass: the tokens are read through the inverse permutation while adding, instead of
    first being copied back into image order.
    """
    if _needs_grad(x, t):
        return x + _ungroup(t, x.shape, kind, win)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    target = _group_view(out, kind, win)
    torch.add(_group_view(x, kind, win), t.view(target.shape), out=target)
    return out


def from_groups(t: torch.Tensor, shape: tuple[int, int, int, int], kind: str,
                win: int = SPATIAL_WINDOW) -> torch.Tensor:
    """Inverse of :func:`to_groups`: the ``(B, H, W, C)`` map of ``shape``."""
    if _needs_grad(t):
        return _ungroup(t, shape, kind, win)
    out = torch.empty(shape, dtype=t.dtype, device=t.device)
    target = _group_view(out, kind, win)
    target.copy_(t.view(target.shape))
    return out


def relative_position_index(win: int = SPATIAL_WINDOW) -> torch.Tensor:
    """``(win^2, win^2)`` index into the ``(2 win - 1)^2`` bias table for token pairs (i, j)."""
    pos = torch.arange(win)
    ys, xs = torch.meshgrid(pos, pos, indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + win - 1
    dx = xs[:, None] - xs[None, :] + win - 1
    return dy * (2 * win - 1) + dx


def channel_attention_maps(q: torch.Tensor, k: torch.Tensor,
                           temperature: torch.Tensor) -> torch.Tensor:
    """``softmax(norm(q)^T norm(k) * temperature)`` for token-major groups ``(G, L, C)``.

    Returns ``(G, C, C)``. ``norm`` is the L2 normalisation of each channel over the group's
    L positions (``F.normalize``, eps 1e-12). Rather than normalising q and k (two passes
    over the maps) the inverse norms scale the small ``C x C`` logits:
    ``(q_i / |q_i|) . (k_j / |k_j|) = (q_i . k_j) / (|q_i| |k_j|)``.
    """
    # (t * t).sum over the token axis is an order of magnitude faster than vector_norm there.
    if _needs_grad(q, k, temperature):
        nq = (q * q).sum(dim=1).sqrt().clamp_min(1e-12)
        nk = (k * k).sum(dim=1).sqrt().clamp_min(1e-12)
        logits = torch.bmm(q.transpose(1, 2), k) * (temperature / (nq[:, :, None] * nk[:, None, :]))
        return logits.softmax(dim=-1)
    nq = (q * q).sum(dim=1).sqrt_().clamp_min_(1e-12)
    nk = (k * k).sum(dim=1).sqrt_().clamp_min_(1e-12)
    logits = torch.bmm(q.transpose(1, 2), k)
    logits.mul_(temperature / (nq[:, :, None] * nk[:, None, :]))
    return logits.softmax(dim=-1)


# --- building blocks ------------------------------------------------------------------------
class GatedFFN(nn.Module):
    """Gated-dconv feed-forward: 1x1 to 2d, depth-wise 3x3, GELU(a) * b, 1x1 back; no biases."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """``x + FFN(norm(x))`` on channels-last maps (the norm is applied here so that its
        output can be freed before the FFN's own maps exist)."""
        y = norm(x)
        h = _gelu(_projected_part(y, self.project_in, self.dwconv, 0, 2))
        g = _projected_part(y, self.project_in, self.dwconv, 1, 2)
        h = h * g if _needs_grad(h, g) else h.mul_(g)
        del y
        return _pointwise_add(x, h, self.project_out)


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2))


class SqueezeExcitation(nn.Module):
    """Channel gate from the spatial mean: linear d -> d/4, SiLU, linear back, sigmoid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = int(dim * 0.25)
        self.gate = nn.Sequential(
            _SpatialMean(), nn.Linear(dim, hidden, bias=False), nn.SiLU(),
            nn.Linear(hidden, dim, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)[:, None, None, :]


class MBConv(nn.Sequential):
    """1x1 conv, GELU, depth-wise 3x3, GELU, squeeze-excitation, 1x1 conv (expansion 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__(
            nn.Conv2d(dim, dim, 1), nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU(),
            SqueezeExcitation(dim), nn.Conv2d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``MBConv(x)`` (plus ``residual`` if given) on a channels-last map."""
        y = _gelu(_pointwise(x, self[0]))
        y = _gelu(_spatial(y, self[2]))
        gate = self[4].gate(y)  # (B, C)
        # The excitation scales the last conv's input channels: fold it into that conv's
        # weights (one matrix per image) instead of rescaling the whole map.
        b, hh, ww, c = y.shape
        last: nn.Conv2d = self[5]
        w = last.weight.flatten(1).t()[None] * gate[:, :, None]  # (B, C, C_out)
        y = y.view(b, hh * ww, c)
        if residual is None:
            out = torch.baddbmm(last.bias, y, w)
        else:
            out = torch.baddbmm(residual.reshape(b, hh * ww, -1), y, w).add_(last.bias)
        return out.view(b, hh, ww, -1)


class Residual(nn.Module):
    """``fn(x) + x``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, residual=x)


class LocalBlock(nn.Module):
    """The "LB" local block: a residual MBConv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = Residual(MBConv(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MapAttention(nn.Module):
    """Single-head 8x8 token attention that computes its map (type A, first block).

    Logits are ``q k^T d^-0.5`` plus a learned relative position bias (always on in the
    official code). The post-softmax map is materialised on purpose: the later blocks
    reuse it, which is also why this is not ``scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, win: int = SPATIAL_WINDOW) -> None:
        super().__init__()
        self.scale = dim ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim, bias=False))
        self.rel_pos_bias = nn.Embedding((2 * win - 1) ** 2, 1)
        self.register_buffer("rel_pos_indices", relative_position_index(win), persistent=False)

    def forward(self, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: normalised ``(B, H, W, d)``; returns (grouped output tokens, the map)."""
        d = x.shape[-1]
        wq, wk, wv = self.to_qkv.weight.chunk(3)
        # to_out(map @ v) == map @ (x (W_out W_v)^T): the output projection is folded into v.
        w = torch.cat((wq, wk, self.to_out[0].weight @ wv))
        q, k, v = to_groups(F.linear(x, w), kind).split(d, dim=-1)
        bias = self.rel_pos_bias.weight[self.rel_pos_indices, 0]
        attn = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=self.scale).softmax(dim=-1)
        return torch.bmm(attn, v), attn


class SharedMapAttention(nn.Module):
    """Attention that reuses a map from the first block and only computes values (type B)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim, bias=False))

    def forward(self, x: torch.Tensor, kind: str, attn: torch.Tensor) -> torch.Tensor:
        """``x``: normalised ``(B, H, W, d)``; returns grouped output tokens."""
        # Both projections act per token and the map mixes tokens linearly, so
        # to_out(map @ to_v(x)) == map @ (x (W_out W_v)^T): one projection instead of two.
        w = self.to_out[0].weight @ self.to_v.weight
        return torch.bmm(attn, to_groups(F.linear(x, w), kind))


class SpatialAttention(nn.Module):
    """SLA (8x8 windows) or SGA (8x8 grid over the whole map), each followed by a gated FFN.

    ``shares=False`` is the first block's kind (computes and returns its attention map);
    ``shares=True`` takes the map of the same position in the first block.
    """

    def __init__(self, dim: int, grid: bool, shares: bool) -> None:
        super().__init__()
        self.kind = GRID if grid else WINDOW
        self.norm = nn.LayerNorm(dim)
        self.attn: nn.Module = SharedMapAttention(dim) if shares else MapAttention(dim)
        self.cnorm = nn.LayerNorm(dim, eps=1e-6)
        self.gfn = GatedFFN(dim)

    def forward(self, x: torch.Tensor,
                attn: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(x)
        if attn is None:
            out, attn = self.attn(y, self.kind)
        else:
            out = self.attn(y, self.kind, attn)
        del y
        x = add_from_groups(x, out, self.kind)
        del out
        return self.gfn(x, self.cnorm), attn


class ChannelAttention(nn.Module):
    """Transposed (channel x channel) attention inside windows or across a stride grid.

    q, k, v come from a 1x1 then a depth-wise 3x3 conv; q and k are L2-normalised over the
    group's positions and the logits scaled by a learned temperature.
    """

    def __init__(self, dim: int, grid: bool, win: int) -> None:
        super().__init__()
        self.grid = grid
        self.win = win
        self.temperature = nn.Parameter(torch.ones(1, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """``x + attention(norm(x))`` on channels-last maps."""
        kind = STRIDE if self.grid else WINDOW
        y = norm(x)
        q, k, v = (to_groups(_projected_part(y, self.qkv, self.qkv_dwconv, i, 3), kind, self.win)
                   for i in range(3))
        del y
        attn = channel_attention_maps(q, k, self.temperature)  # (G, C_out, C_in)
        del q, k
        # Token-major output: out = v attn^T, then the 1x1 projection P: out P^T.
        # Folded per group into one C x C matrix attn^T P^T.
        mix = torch.matmul(attn.transpose(1, 2), self.project_out.weight.flatten(1).t())
        return add_from_groups(x, torch.bmm(v, mix), kind, self.win)


class ChannelBlock(nn.Module):
    """BlockC: window then grid channel attention, each followed by a gated FFN (pre-norm)."""

    def __init__(self, dim: int, win: int) -> None:
        super().__init__()
        self.canorm1 = nn.LayerNorm(dim, eps=1e-6)
        self.canorm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cttn1 = ChannelAttention(dim, grid=False, win=win)
        self.cttn2 = ChannelAttention(dim, grid=True, win=win)
        self.cnorm1 = nn.LayerNorm(dim, eps=1e-6)
        self.cnorm2 = nn.LayerNorm(dim, eps=1e-6)
        self.gfn1 = GatedFFN(dim)
        self.gfn2 = GatedFFN(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cttn1(x, self.canorm1)
        x = self.gfn1(x, self.cnorm1)
        x = self.cttn2(x, self.canorm2)
        return self.gfn2(x, self.cnorm2)


Maps = tuple[torch.Tensor, ...]


class IDSABlock(nn.Module):
    """Information distillation with spatial attention: three stages that each keep a quarter
    of the channels, then channel attention over all of them."""

    def __init__(self, dim: int, win: int, shares: bool) -> None:
        super().__init__()
        c = dim // 4
        self.split = c
        self.LB1 = LocalBlock(dim)
        self.LB2 = LocalBlock(3 * c)
        self.LB3 = LocalBlock(2 * c)
        self.SLA1 = SpatialAttention(3 * c, grid=False, shares=shares)
        self.SLA2 = SpatialAttention(2 * c, grid=False, shares=shares)
        self.SLA3 = SpatialAttention(c, grid=False, shares=shares)
        self.SGA1 = SpatialAttention(3 * c, grid=True, shares=shares)
        self.SGA2 = SpatialAttention(2 * c, grid=True, shares=shares)
        self.SGA3 = SpatialAttention(c, grid=True, shares=shares)
        self.BlockC = ChannelBlock(dim, win)
        self.pw1 = nn.Conv2d(dim, dim, 1)
        self.pw2 = nn.Conv2d(3 * c, 3 * c, 1)
        self.pw3 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, maps: Maps | None = None) -> tuple[torch.Tensor, Maps]:
        c = self.split
        shared = list(maps) if maps is not None else [None] * 6
        new: list[torch.Tensor] = []

        def attend(layer: SpatialAttention, y: torch.Tensor) -> torch.Tensor:
            y, a = layer(y, shared[len(new)])
            new.append(a)
            return y

        loc, x = _split(self.LB1(x), c)
        y = attend(self.SGA1, attend(self.SLA1, x))
        x1, x = _split(_pointwise(torch.cat((y, loc), dim=-1), self.pw1), c)
        loc, x = _split(self.LB2(x), c)
        y = attend(self.SGA2, attend(self.SLA2, x))
        x2, x = _split(_pointwise(torch.cat((y, loc), dim=-1), self.pw2), c)
        loc, x = _split(self.LB3(x), c)
        y = attend(self.SGA3, attend(self.SLA3, x))
        x = _pointwise(torch.cat((x1, x2, y, loc), dim=-1), self.pw3)
        del x1, x2, y, loc  # free the distilled parts before the channel attention runs
        return self.BlockC(x), tuple(new)


class ESA(nn.Module):
    """Enhanced spatial attention: a coarse (stride 2, unpadded, then 7x7/3 max-pool) mask."""

    def __init__(self, dim: int, f: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = _pointwise(x, self.conv1)
        coarse = self.conv2(c1.permute(0, 3, 1, 2))
        coarse = self.conv3(F.max_pool2d(coarse, kernel_size=7, stride=3))
        coarse = F.interpolate(coarse, size=x.shape[1:3], mode="bilinear", align_corners=False)
        fine = _pointwise(c1, self.conv_f)
        # Added into the channels-last operand, so the sum stays contiguous for conv4 (the
        # upsampled NCHW map first gave a permuted sum that the next product had to copy).
        fine = fine + coarse.permute(0, 2, 3, 1) if _needs_grad(fine, coarse) \
            else fine.add_(coarse.permute(0, 2, 3, 1))
        m = _pointwise(fine, self.conv4)
        if _needs_grad(x, m):
            return x * torch.sigmoid(m)
        return m.sigmoid_().mul_(x)


class IDB(nn.Module):
    """Information-distillation block: IDSA block, 1x1 ``res_end``, residual, ESA."""

    def __init__(self, dim: int, win: int, first: bool) -> None:
        super().__init__()
        block = IDSABlock(dim, win, shares=not first)
        # The first block sits in a one-element container in the official code (key ".0.").
        self.residual_layer: nn.Module = nn.ModuleList([block]) if first else block
        self.res_end = nn.Conv2d(dim, dim, 1)
        self.esa = ESA(dim, max(dim // 4, 16))

    def forward(self, x: torch.Tensor, maps: Maps | None) -> tuple[torch.Tensor, Maps]:
        layer = self.residual_layer[0] if isinstance(self.residual_layer, nn.ModuleList) \
            else self.residual_layer
        out, maps = layer(x, maps)
        return self.esa(_pointwise(out, self.res_end) + x), maps


class ASID(nn.Module):
    """The network in its official domain: ``(N, 3, H, W)`` in [-1, 1] -> ``(N, 3, sH, sW)``."""

    def __init__(self, cfg: ASIDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.num_feat
        self.input = nn.Conv2d(cfg.in_ch, f, 3, padding=1)
        for i in range(cfg.num_blocks):
            self.add_module(f"block{i}", IDB(f, cfg.window_size, first=(i == 0)))
        self.output = nn.Conv2d(f, f, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(f, cfg.in_ch * cfg.scale ** 2, 3, padding=1),
                                nn.PixelShuffle(cfg.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.cfg.window_size
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="constant", value=0.0)
        feat = _spatial(x.permute(0, 2, 3, 1).contiguous(), self.input)
        out, maps = feat, None
        for i in range(self.cfg.num_blocks):
            out, maps = getattr(self, f"block{i}")(out, maps)
        del maps  # the shared maps are the largest tensors; the tail does not need them
        out = _spatial(out, self.output).add_(feat)
        y = self.up[0](out.permute(0, 3, 1, 2))
        y = F.pixel_shuffle(y.contiguous(), self.cfg.scale)
        s = self.cfg.scale
        return y[..., : h * s, : w * s]


def build(cfg: ASIDConfig) -> ASID:
    """The network for ``cfg`` (random weights), in eval mode."""
    return ASID(cfg).eval()


# --- detection ------------------------------------------------------------------------------
_SIGNATURE = "block0.residual_layer.0.SLA1.attn.to_qkv.weight"


#: Hyper-parameter ranges detect() accepts: far above ASID (48 features, 3 blocks) and
#: ASID-D8, but finite, so that absurd shapes are refused before the network is built.
LIMITS = {"num_feat": (4, 512), "in_ch": (1, 4), "num_blocks": (1, 64), "scale": (1, 8)}


def detect(state_dict: Mapping[str, torch.Tensor]) -> ASIDConfig | None:
    """Recognise an ASID / ASID-D8 state dict and read its configuration from shapes.

    Widths, block counts and scales outside :data:`LIMITS` raise CheckpointError."""
    sd = state_dict
    needed = (_SIGNATURE, "block0.residual_layer.0.BlockC.cttn2.temperature", "input.weight",
              "up.0.weight", "block0.res_end.weight")
    if not all(k in sd for k in needed):
        return None
    feat, in_ch = shape_of(sd, "input.weight", 4)[:2]
    in_range(feat, *LIMITS["num_feat"], "a width of", "input.weight", "ASID")
    in_range(in_ch, *LIMITS["in_ch"], "an input channel count of", "input.weight", "ASID")
    up = shape_of(sd, "up.0.weight", 4)[0]
    scale = math.isqrt(max(up // max(in_ch, 1), 1))
    if feat % 4 or scale < 1 or in_ch * scale * scale != up:
        return None
    in_range(scale, *LIMITS["scale"], "a scale of", "up.0.weight", "ASID")
    n = 0
    while f"block{n}.res_end.weight" in sd:
        n += 1
        in_range(n, *LIMITS["num_blocks"], "a block count of", f"block{n - 1}.res_end.weight",
                 "ASID")
    variant = next((v for v, c in VARIANTS.items() if c.num_blocks == n), f"ASID-D{n}")
    return ASIDConfig(variant=variant, scale=scale, num_blocks=n, num_feat=int(feat),
                      in_ch=int(in_ch))


def estimate_memory(cfg: ASIDConfig, h: int, w: int, dtype_bytes: int = 4) -> int:
    """Peak working bytes of one forward on an ``h x w`` input at batch 1.

    The six shared attention maps of the first block (64 values per pixel each) live until
    the last block and dominate; on top of them about nine feature maps are alive at the
    peak (inside the channel attention), plus the ``win^2`` grid groups' channel x channel
    maps. Calibrated by counting live tensor bytes on CPU over sizes 9x9 to 200x120,
    1 and 8 blocks, 16 and 48 features (``benchmarks/bench_asid.py --memory``): the
    estimate is 0 to 11 % above the measurement.
    """
    m = cfg.window_size
    pixels = (h + (-h) % m) * (w + (-w) % m)
    f = cfg.num_feat
    body = pixels * (6 * SPATIAL_WINDOW ** 2 + 9 * f + 4) + 3 * m * m * f * f
    tail = pixels * (2 * f + 6 * cfg.in_ch * cfg.scale ** 2)  # output conv, upsampler
    return int(dtype_bytes * max(body, tail))
