"""HAT -- Hybrid Attention Transformer (Chen et al., CVPR 2023).

Variants HAT-S, HAT and HAT-L at x2/x3/x4 (the ImageNet-pretrained and Real-HAT-GAN
weights reuse the HAT / HAT-L architectures). The module tree reproduces the official
state-dict keys (XPixelGroup/HAT ``hat/archs/hat_arch.py``), so the authors' checkpoints
load unchanged; the maths follows ``ARCHITECTURES.md`` section 2.

The network expects RGB in [0, 1] with H and W multiples of the window size; the reflect
padding to 16 and the crop afterwards are the caller's (``SRModel``, ``INFO.pad_multiple``).
Window attention and the overlapping cross-attention run through
``scaled_dot_product_attention`` with the relative-position bias (plus the shifted-window
mask) as the additive attention mask, all windows of one mask pattern in one call.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .layers import ArchInfo, in_range, shape_of

INFO = ArchInfo(
    name="hat",
    title="HAT",
    input_range=(0.0, 1.0),
    pad_multiple=16,
    pad_mode="reflect",
    min_size=9,  # reflect padding to 16 needs a pad smaller than the side
    context=32,
    tile_multiple=16,
    half_dtypes=("bfloat16",),  # activations overflow float16 (NaN / black tiles)
)

#: DIV2K RGB mean the network subtracts from its input (official constant).
RGB_MEAN = (0.4488, 0.4371, 0.4040)

#: Value added to attention logits across shifted-window region borders (official: -100).
MASK_VALUE = -100.0


@dataclass(frozen=True)
class HATConfig:
    """Hyper-parameters of one HAT network (defaults: the official HAT x4).

    ``conv_scale`` and ``img_range`` cannot be read from weights; they keep the official
    values. ``window_size`` must divide the caller's padding multiple (16).
    """

    variant: str = "HAT"
    scale: int = 4
    embed_dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    window_size: int = 16
    overlap_ratio: float = 0.5
    compress_ratio: int = 3
    squeeze_factor: int = 30
    conv_scale: float = 0.01
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    img_range: float = 1.0
    in_chans: int = 3
    num_feat: int = 64
    resi_connection: str = "1conv"
    upsampler: str = "pixelshuffle"

    @property
    def overlap_win_size(self) -> int:
        """Side of the key/value window of the overlapping cross-attention (24 for 16)."""
        return int(self.window_size * self.overlap_ratio) + self.window_size


#: The published variants, at x4 (:func:`config` gives the other scales).
VARIANTS: dict[str, HATConfig] = {
    "HAT-S": HATConfig(variant="HAT-S", embed_dim=144, compress_ratio=24, squeeze_factor=24),
    "HAT": HATConfig(variant="HAT"),
    "HAT-L": HATConfig(variant="HAT-L", depths=(6,) * 12, num_heads=(6,) * 12),
}
_SCALES = (2, 3, 4)


def config(variant: str = "HAT", scale: int = 4) -> HATConfig:
    """The official configuration of ``variant`` ("HAT-S", "HAT", "HAT-L") at ``scale``."""
    key = variant.upper()
    if not key.startswith("HAT"):
        key = f"HAT-{key}"
    if key not in VARIANTS:
        raise ValueError(f"unknown HAT variant {variant!r}; known: {', '.join(VARIANTS)}")
    if scale not in _SCALES:
        raise ValueError(f"HAT is released for scales 2, 3 and 4, not {scale}")
    return dataclasses.replace(VARIANTS[key], scale=scale)


# --- relative-position index tables ---------------------------------------------------------
def _grid(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return y.reshape(-1), x.reshape(-1)


def relative_position_index_sa(window_size: int) -> torch.Tensor:
    """``[ws², ws²]`` int64: table row of the bias between query i and key j of a window."""
    y, x = _grid(window_size)
    dy = y[:, None] - y[None, :] + window_size - 1
    dx = x[:, None] - x[None, :] + window_size - 1
    return dy * (2 * window_size - 1) + dx


def relative_position_index_oca(window_size: int, overlap_win_size: int) -> torch.Tensor:
    """``[ws², ows²]`` int64 index of the overlapping cross-attention bias.

    Reproduces the official orientation (key minus query) and offset ``ws - ows + 1``,
    which leaves negative entries; they address the table from its end, and the trained
    checkpoints depend on exactly that wrap-around.
    """
    yq, xq = _grid(window_size)
    yk, xk = _grid(overlap_win_size)
    offset = window_size - overlap_win_size + 1
    dy = yk[None, :] - yq[:, None] + offset
    dx = xk[None, :] - xq[:, None] + offset
    return dy * (window_size + overlap_win_size - 1) + dx


def shift_mask_patterns(window_size: int, shift: int) -> torch.Tensor:
    """The three non-zero shifted-window masks ``(3, ws², ws²)``: right, bottom, corner.

    After the cyclic shift only windows in the last window column/row straddle the wrap
    seam; inside them, tokens from different sides (split at ``ws - shift``) get
    :data:`MASK_VALUE`. Every other window has an all-zero mask. This equals the official
    per-size label-map construction, whatever the (multiple-of-window) image size.
    """
    y, x = _grid(window_size)
    row_side = y >= window_size - shift
    col_side = x >= window_size - shift
    cut_cols = col_side[:, None] != col_side[None, :]
    cut_rows = row_side[:, None] != row_side[None, :]
    cuts = torch.stack([cut_cols, cut_rows, cut_cols | cut_rows])
    return torch.zeros(cuts.shape).masked_fill_(cuts, MASK_VALUE)


# --- window helpers -------------------------------------------------------------------------
def _to_windows(t: torch.Tensor, ws: int, parts: int, heads: int) -> torch.Tensor:
    """``(B, H, W, parts*heads*d)`` -> ``(parts, B, nh, nw, heads, ws², d)`` (one copy)."""
    b, h, w, c = t.shape
    d = c // (parts * heads)
    t = t.view(b, h // ws, ws, w // ws, ws, parts, heads, d)
    return t.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(parts, b, h // ws, w // ws, heads, ws * ws, d)


def _from_windows(t: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, nh, nw, heads, ws², d)`` -> ``(B, nh*ws, nw*ws, heads*d)``."""
    b, nh, nw, heads, _, d = t.shape
    t = t.view(b, nh, nw, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6)
    return t.reshape(b, nh * ws, nw * ws, heads * d)


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


# --- modules --------------------------------------------------------------------------------
class Mlp(nn.Module):
    """Token MLP: fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate (``attention.1`` / ``attention.3`` are the 1x1 convs)."""

    def __init__(self, dim: int, squeeze_factor: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim // squeeze_factor, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // squeeze_factor, dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block: 3x3 conv (compress) -> GELU -> 3x3 conv -> channel gate."""

    def __init__(self, dim: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        hidden = dim // compress_ratio
        self.cab = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 3, 1, 1),
            ChannelAttention(dim, squeeze_factor),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def bias(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(heads, ws², ws²)`` additive bias gathered from the table."""
        return _gather_bias(self.relative_position_bias_table, index, dtype)

    def forward(self, x: torch.Tensor, index: torch.Tensor,
                masks: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within windows of the (already shifted) map ``x`` ``(B, H, W, C)``.

        ``masks`` are the three :func:`shift_mask_patterns` (right column, bottom row,
        corner window) for a shifted block, else ``None``.
        """
        ws, heads = self.window_size, self.num_heads
        q, k, v = _to_windows(self.qkv(x), ws, 3, heads)  # each (B, nh, nw, heads, L, d)
        bias = self.bias(index, q.dtype)
        if masks is None:
            out = _attend(q, k, v, bias, self.scale)
        else:
            m = masks.to(q.dtype)
            out = torch.empty_like(q)
            # Windows grouped by mask pattern: one attention call per group, no per-window loop.
            groups = ((slice(None, -1), slice(None, -1), bias),
                      (slice(None, -1), slice(-1, None), bias + m[0]),
                      (slice(-1, None), slice(None, -1), bias + m[1]),
                      (slice(-1, None), slice(-1, None), bias + m[2]))
            for rows, cols, mask in groups:
                part = out[:, rows, cols]
                if part.numel():
                    out[:, rows, cols] = _attend(q[:, rows, cols], k[:, rows, cols],
                                                 v[:, rows, cols], mask, self.scale)
        return self.proj(_from_windows(out, ws))


def _gather_bias(table: torch.Tensor, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(heads, *index.shape)`` rows of a ``(rows, heads)`` table; ``index`` non-negative."""
    # index_select on the transposed table is ~7x faster than advanced indexing here.
    b = torch.index_select(table.t().contiguous(), 1, index.reshape(-1))
    return b.view(-1, *index.shape).to(dtype)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
            scale: float) -> torch.Tensor:
    """SDPA over windows ``(..., heads, Lq, d)`` with one additive ``(heads, Lq, Lk)`` mask."""
    lead = q.shape[:-3]
    heads, lq, d = q.shape[-3:]
    lk = k.shape[-2]
    out = F.scaled_dot_product_attention(
        q.reshape(-1, heads, lq, d), k.reshape(-1, heads, lk, d), v.reshape(-1, heads, lk, d),
        attn_mask=mask[None], scale=scale)  # 4-D: the fused CPU kernel refuses a 3-D mask
    return out.view(*lead, heads, lq, d)


class HAB(nn.Module):
    """Hybrid attention block: (shifted) window attention + scaled CAB, then MLP."""

    def __init__(self, cfg: HATConfig, num_heads: int, shift: int) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.shift = shift
        self.conv_scale = cfg.conv_scale
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, cfg.window_size, num_heads, cfg.qkv_bias)
        self.conv_block = CAB(dim, cfg.compress_ratio, cfg.squeeze_factor)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, index: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, H, W, C)`` tokens as a map."""
        n = self.norm1(x)
        conv = _nhwc(self.conv_block(_nchw(n)))
        s = self.shift
        if s:
            n = torch.roll(n, shifts=(-s, -s), dims=(1, 2))
            a = self.attn(n, index, masks)
            a = torch.roll(a, shifts=(s, s), dims=(1, 2))
        else:
            a = self.attn(n, index, None)
        x = x + a + conv * self.conv_scale
        return x + self.mlp(self.norm2(x))


class OCAB(nn.Module):
    """Overlapping cross-attention: ws x ws query windows against ows x ows key windows.

    Keys and values are cut from the projected map zero-padded by ``(ows - ws) / 2`` (the
    zeros come after the projection and are not masked, as in the official code).
    """

    def __init__(self, cfg: HATConfig, num_heads: int) -> None:
        super().__init__()
        dim, ws, ows = cfg.embed_dim, cfg.window_size, cfg.overlap_win_size
        self.window_size, self.overlap_win_size = ws, ows
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=cfg.qkv_bias)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((ws + ows - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def bias(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(heads, ws², ows²)`` from an index already wrapped into the table's rows."""
        return _gather_bias(self.relative_position_bias_table, index, dtype)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, H, W, C)``."""
        ws, ows, heads = self.window_size, self.overlap_win_size, self.num_heads
        b, h, w, c = x.shape
        qkv = self.qkv(self.norm1(x))
        q = _to_windows(qkv[..., :c], ws, 1, heads)[0]  # (B, nh, nw, heads, L, d)
        pad = (ows - ws) // 2
        kv = F.pad(qkv[..., c:], (0, 0, pad, pad, pad, pad))
        kv = kv.unfold(1, ows, ws).unfold(2, ows, ws)  # (B, nh, nw, 2C, ows, ows) view
        nh, nw = kv.shape[1], kv.shape[2]
        kv = kv.view(b, nh, nw, 2, heads, c // heads, ows, ows).permute(3, 0, 1, 2, 4, 6, 7, 5)
        kv = kv.reshape(2, b, nh, nw, heads, ows * ows, c // heads)  # the only copy
        out = _attend(q, kv[0], kv[1], self.bias(index, q.dtype), self.scale)
        x = self.proj(_from_windows(out, ws)) + x
        return x + self.mlp(self.norm2(x))


class AttenBlocks(nn.Module):
    """The HABs of one group (even: plain windows, odd: shifted by ws/2) and its OCAB."""

    def __init__(self, cfg: HATConfig, depth: int, num_heads: int) -> None:
        super().__init__()
        shift = cfg.window_size // 2
        self.blocks = nn.ModuleList(
            HAB(cfg, num_heads, shift if i % 2 else 0) for i in range(depth))
        self.overlap_attn = OCAB(cfg, num_heads)

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor, rpi_oca: torch.Tensor,
                masks: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, rpi_sa, masks)
        return self.overlap_attn(x, rpi_oca)


class RHAG(nn.Module):
    """Residual hybrid attention group: blocks, a 3x3 conv, and the group residual."""

    def __init__(self, cfg: HATConfig, depth: int, num_heads: int) -> None:
        super().__init__()
        self.residual_group = AttenBlocks(cfg, depth, num_heads)
        dim = cfg.embed_dim
        self.conv = (nn.Conv2d(dim, dim, 3, 1, 1) if cfg.resi_connection == "1conv"
                     else nn.Identity())

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor, rpi_oca: torch.Tensor,
                masks: torch.Tensor) -> torch.Tensor:
        y = self.residual_group(x, rpi_sa, rpi_oca, masks)
        return _nhwc(self.conv(_nchw(y))) + x


class PatchEmbed(nn.Module):
    """Holds the LayerNorm applied to the flattened shallow features (``patch_embed.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class HAT(nn.Module):
    """The HAT network in the official domain: RGB [0, 1], H and W multiples of the window."""

    def __init__(self, cfg: HATConfig) -> None:
        super().__init__()
        if cfg.upsampler != "pixelshuffle":
            raise ValueError(f"HAT upsampler {cfg.upsampler!r} is not supported")
        self.config = cfg
        ws, dim, nf = cfg.window_size, cfg.embed_dim, cfg.num_feat
        self.register_buffer("relative_position_index_SA", relative_position_index_sa(ws))
        self.register_buffer("relative_position_index_OCA",
                             relative_position_index_oca(ws, cfg.overlap_win_size))
        self.register_buffer("shift_masks", shift_mask_patterns(ws, ws // 2), persistent=False)
        mean = RGB_MEAN if cfg.in_chans == 3 else (0.0,) * cfg.in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(cfg.in_chans, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(dim)
        self.layers = nn.ModuleList(
            RHAG(cfg, d, h) for d, h in zip(cfg.depths, cfg.num_heads, strict=True))
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = (nn.Conv2d(dim, dim, 3, 1, 1) if cfg.resi_connection == "1conv"
                                else nn.Identity())
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, nf, 3, 1, 1),
                                                  nn.LeakyReLU(inplace=True))
        self.upsample = _upsample(cfg.scale, nf)
        self.conv_last = nn.Conv2d(nf, cfg.in_chans, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ws = self.config.window_size
        h, w = x.shape[-2:]
        if h % ws or w % ws:
            raise ValueError(f"HAT needs H and W to be multiples of {ws}, got {h}x{w}")
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.config.img_range
        x = self.conv_first(x)
        t = self.patch_embed(_nhwc(x))
        # Negative OCA entries address the table from its end (official Python indexing).
        ows = self.config.overlap_win_size
        rpi_oca = torch.remainder(self.relative_position_index_OCA, (ws + ows - 1) ** 2)
        for layer in self.layers:
            t = layer(t, self.relative_position_index_SA, rpi_oca, self.shift_masks)
        x = self.conv_after_body(_nchw(self.norm(t))) + x
        x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        return x / self.config.img_range + mean


def _upsample(scale: int, nf: int) -> nn.Sequential:
    if scale == 3:
        return nn.Sequential(nn.Conv2d(nf, 9 * nf, 3, 1, 1), nn.PixelShuffle(3))
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"HAT supports scales 2^n and 3, not {scale}")
    mods: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        mods += [nn.Conv2d(nf, 4 * nf, 3, 1, 1), nn.PixelShuffle(2)]
    return nn.Sequential(*mods)


def build(cfg: HATConfig) -> HAT:
    """The network for ``cfg`` (random weights; load a state dict into it), in eval mode."""
    return HAT(cfg).eval()


# --- detection ------------------------------------------------------------------------------
_MARKER = "layers.0.residual_group.overlap_attn.relative_position_bias_table"
_BLOCK_KEY = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")
_UPSAMPLE_KEY = re.compile(r"^upsample\.(\d+)\.weight$")


def _ratio(dim: int, reduced: int, preferred: tuple[int, ...]) -> int:
    """A ratio r with ``dim // r == reduced``, the official value when it fits."""
    for r in preferred:
        if dim // r == reduced:
            return r
    r = dim // reduced if reduced else 0
    if r < 1 or dim // r != reduced:
        raise CheckpointError(f"its HAT layer widths ({reduced} of {dim} channels) fit no ratio.")
    return r


def _square_side(n: int, what: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise CheckpointError(f"its HAT {what} has {n} rows, not a square number.")
    return side


#: Hyper-parameter ranges detect() accepts: far above HAT-L (180 wide, 12 groups of 6 blocks,
#: 6 heads), but finite, so that absurd shapes are refused before the network is built.
LIMITS = {"embed_dim": (6, 1024), "groups": (1, 64), "blocks": (1, 64), "heads": (1, 64),
          "num_feat": (1, 1024), "mlp_hidden": (1, 8192)}


def detect(sd: Mapping[str, torch.Tensor]) -> HATConfig | None:
    """Read a HAT config from a state dict's keys and shapes; ``None`` if it is not HAT.

    Raises :class:`CheckpointError` for HAT weights that cannot be run (unsupported
    options, inconsistent tables) or whose index buffers differ from the rebuilt ones.
    """
    if _MARKER not in sd or "conv_first.weight" not in sd:
        return None
    dim, in_chans = shape_of(sd, "conv_first.weight", 4)[:2]
    in_range(dim, *LIMITS["embed_dim"], "a width of", "conv_first.weight", "HAT")
    if in_chans != 3:
        raise CheckpointError(
            f"its HAT network takes {in_chans}-channel images; Finescale upscales RGB.")
    if "absolute_pos_embed" in sd:
        raise CheckpointError("its HAT network uses an absolute position embedding (ape), "
                              "which ties it to one input size and is not supported.")
    if "conv_before_upsample.0.weight" not in sd:
        raise CheckpointError("its HAT network has no pixel-shuffle upsampler; only the "
                              "'pixelshuffle' reconstruction of the SR models is supported.")

    layer_keys = {int(m.group(1)): k for k in sd if (m := _LAYER_KEY.match(k))}
    n_layers = 1 + max(layer_keys)
    in_range(n_layers, *LIMITS["groups"], "a group count of", layer_keys[n_layers - 1], "HAT")
    depths = [0] * n_layers
    for k in sd:
        if m := _BLOCK_KEY.match(k):
            layer, block = int(m.group(1)), int(m.group(2))
            in_range(block + 1, *LIMITS["blocks"], "a block count of", k, "HAT")
            depths[layer] = max(depths[layer], block + 1)

    heads = []
    for layer in range(n_layers):
        table = sd.get(f"layers.{layer}.residual_group.overlap_attn.relative_position_bias_table")
        if table is None or table.dim() != 2:
            raise CheckpointError(f"its HAT group {layer} has no overlapping-attention table.")
        heads.append(in_range(int(table.shape[1]), *LIMITS["heads"], "a head count of",
                              f"layers.{layer}.residual_group.overlap_attn."
                              "relative_position_bias_table", "HAT"))
    p = "layers.0.residual_group"
    sa_table = sd.get(f"{p}.blocks.0.attn.relative_position_bias_table")
    if sa_table is None:
        raise CheckpointError("its first HAT group has no attention blocks.")
    ws = (_square_side(sa_table.shape[0], "window attention table") + 1) // 2
    ows = _square_side(sd[_MARKER].shape[0], "overlapping attention table") - ws + 1
    in_range(ows, 1, 64, "an overlapping window of", _MARKER, "HAT")
    if 16 % ws or ows <= ws or (ows - ws) % 2:
        raise CheckpointError(f"its HAT windows ({ws} and {ows} pixels) are not supported "
                              "(the window must divide 16 and the overlap must be even).")

    cab = f"{p}.blocks.0.conv_block.cab"
    fc1 = in_range(shape_of(sd, f"{p}.overlap_attn.mlp.fc1.weight", 2)[0],
                   *LIMITS["mlp_hidden"], "an MLP width of", f"{p}.overlap_attn.mlp.fc1.weight",
                   "HAT")
    mlp_ratio = fc1 / dim
    if int(dim * mlp_ratio) != fc1:
        mlp_ratio = math.nextafter(mlp_ratio, math.inf)

    nf = in_range(shape_of(sd, "conv_before_upsample.0.weight", 4)[0], *LIMITS["num_feat"],
                  "a feature count of", "conv_before_upsample.0.weight", "HAT")
    ups = sorted(int(m.group(1)) for k in sd if (m := _UPSAMPLE_KEY.match(k)))
    outs = [int(sd[f"upsample.{i}.weight"].shape[0]) for i in ups]
    if outs == [9 * nf]:
        scale = 3
    elif outs and all(o == 4 * nf for o in outs):
        scale = 2 ** len(outs)
    else:
        raise CheckpointError(
            f"its HAT upsampler (convolutions with {outs} outputs) fits no scale.")

    cfg = HATConfig(
        variant="custom",
        scale=scale,
        embed_dim=int(dim),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=ws,
        overlap_ratio=(ows - ws) / ws,
        compress_ratio=_ratio(dim, int(sd[f"{cab}.0.weight"].shape[0]), (3, 24)),
        squeeze_factor=_ratio(dim, int(sd[f"{cab}.3.attention.1.weight"].shape[0]), (30, 24)),
        mlp_ratio=mlp_ratio,
        qkv_bias=f"{p}.overlap_attn.qkv.bias" in sd,
        in_chans=int(in_chans),
        num_feat=nf,
        resi_connection="1conv" if "conv_after_body.weight" in sd else "identity",
    )
    _check_index_buffers(sd, cfg)
    for name in VARIANTS:
        if scale in _SCALES and dataclasses.replace(config(name, scale), variant="custom") == cfg:
            return dataclasses.replace(cfg, variant=name)
    return cfg


def _check_index_buffers(sd: Mapping[str, torch.Tensor], cfg: HATConfig) -> None:
    """Refuse index buffers that differ from the ones the official code builds."""
    rebuilt = {
        "relative_position_index_SA": relative_position_index_sa(cfg.window_size),
        "relative_position_index_OCA": relative_position_index_oca(cfg.window_size,
                                                                   cfg.overlap_win_size),
    }
    for key, want in rebuilt.items():
        got = sd.get(key)
        if got is not None and (got.shape != want.shape or not torch.equal(got.long(), want)):
            raise CheckpointError(
                f"its {key} buffer differs from the one HAT builds for {cfg.window_size}-pixel "
                "windows (tampered or from modified code), so the weights are refused.")


# --- memory ---------------------------------------------------------------------------------
def estimate_memory(cfg: HATConfig, h: int, w: int, dtype_bytes: int = 4) -> int:
    """Peak working bytes of one forward on an ``h x w`` input at batch 1 (no autograd).

    Linear in the padded pixel count: the attention groups peak at about 19.5 feature maps
    of ``embed_dim`` channels, the upsampler at about 2.3 maps of ``num_feat * scale²``
    (peak RSS growth measured on the CPU with ``benchmarks/bench_hat.py --memory``).
    """
    pixels = (-(-h // INFO.pad_multiple) * INFO.pad_multiple) * (-(-w // INFO.pad_multiple)
                                                                * INFO.pad_multiple)
    per_pixel = max(19.5 * cfg.embed_dim, 2.3 * cfg.num_feat * cfg.scale ** 2)
    return int(pixels * per_pixel * dtype_bytes) + 16 * 2**20
