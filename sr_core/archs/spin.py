"""SPIN -- Superpixel Token Interaction (Zhang et al., ICCV 2023), the "light" network.

State-dict compatible with the official ``models/spin.py`` (ArcticHare105/SPIN at
``dce4b33``) and numerically equivalent to it, without its CUDA-only distance extension:

* the 9-neighbour superpixel-pixel distance is plain torch, summed channel after channel in
  channel order with separate element-wise ops: from the same centroids, CPU, CUDA and MPS
  compute the same bits as the official kernel (the centroid sums themselves, like the
  official matrix product, may differ in the last bits between devices);
* the superpixel-pixel association is kept sparse (9 weights per pixel) instead of the
  official dense ``superpixels x pixels`` matrix, and every attention goes through
  ``scaled_dot_product_attention``: memory grows linearly with the image area;
* the top-N pixel choice of every superpixel is deterministic on exact ties (the lower pixel
  index wins, see :meth:`Association.top_pixels`), where the official ``topk`` is not.

The network works in the 0..255 domain like the official one (``INFO.input_range``), divides
by 255 itself, and never writes into its argument.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .layers import (
    ArchInfo,
    extract_patch_tokens,
    in_range,
    overlapping_starts,
    patch_coverage,
    scatter_add_patch_tokens,
    shape_of,
)

INFO = ArchInfo(
    name="spin",
    title="SPIN",
    input_range=(0.0, 255.0),
    pad_multiple=1,
    pad_mode="reflect",
    min_size=24,
    # Association reaches one grid cell (< 2 x 24 px on floor grids) beyond a pixel's own.
    context=48,
    # Tiles on a 24-pixel grid give the 12- and 24-pixel blocks whole cells.
    tile_multiple=24,
    half_dtypes=(),
)

#: Superpixel cell size (= local window size) of each block in the official configs.
OFFICIAL_STOKEN_SIZES = (12, 16, 20, 24, 12, 16, 20, 24)
SCALES = (2, 3, 4)

#: Distance given to candidate superpixels outside the grid (the official kernel's value).
_OFF_GRID = 1e16
#: Grid offsets (dy, dx) of the 9 candidate superpixels, in the official kernel's order.
_NEIGHBOURS = tuple((k // 3 - 1, k % 3 - 1) for k in range(9))


@dataclass(frozen=True)
class SPINConfig:
    """Hyper-parameters of a SPIN network (defaults: the official light configuration)."""

    variant: str = "light"
    scale: int = 4
    in_chans: int = 3
    dim: int = 40
    heads: int = 1
    qk_dim: int = 24
    mlp_dim: int = 72
    stoken_sizes: tuple[int, ...] = OFFICIAL_STOKEN_SIZES
    n_iter: int = 3

    @property
    def num_blocks(self) -> int:
        return len(self.stoken_sizes)


#: The published variants, at x4 (:func:`config` gives the other scales).
VARIANTS: dict[str, SPINConfig] = {"light": SPINConfig(variant="light")}


def config(variant: str = "light", scale: int = 4) -> SPINConfig:
    """The official configuration of ``variant`` (only ``"light"`` exists) at ``scale``."""
    if variant.lower() not in VARIANTS:
        raise ValueError(f"SPIN has one official variant, 'light', not {variant!r}")
    if scale not in SCALES:
        raise ValueError(f"SPIN supports scales {SCALES}, not {scale}")
    return dataclasses.replace(VARIANTS[variant.lower()], scale=scale)


# --- superpixel association --------------------------------------------------------------

def _nearest_labels(size: int, cells: int, device: torch.device) -> torch.Tensor:
    """Grid cell of every pixel along one axis: PyTorch's legacy "nearest" resize rule.

    ``floor(i * (cells / size))`` in float32, clamped to the last cell -- the exact rule of
    ``F.interpolate(mode="nearest")`` that the official code uses on its label grid, written
    out so that every device evaluates the same float32 operations.
    """
    scale = torch.tensor(float(cells), device=device) / torch.tensor(float(size), device=device)
    pos = torch.arange(size, device=device, dtype=torch.float32) * scale
    return pos.floor_().long().clamp_(max=cells - 1)


def _cell_windows(labels: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell, a run of consecutive pixels covering every pixel of it and its two neighbours.

    Returns ``(index, start)``: ``index`` is ``(cells, length)`` pixel positions, ``start`` the
    first one; all runs have the same length and lie inside the axis.
    """
    grid = torch.arange(cells, device=labels.device)
    first = torch.searchsorted(labels, grid - 1, right=False)
    end = torch.searchsorted(labels, grid + 1, right=True)
    length = int((end - first).max())
    start = torch.minimum(first, torch.full_like(first, labels.numel() - length))
    return start[:, None] + torch.arange(length, device=labels.device), start


@dataclass(frozen=True)
class Association:
    """Soft assignment of pixels to superpixels: 9 candidate weights per pixel.

    ``weights[b, k, p]`` is the official ``softmax(-distance)`` of pixel ``p`` to the
    superpixel at grid offset ``_NEIGHBOURS[k]`` from the pixel's initial cell
    (``rows[y]``, ``cols[x]``); candidates outside the grid weigh exactly 0. This is the
    official dense ``(superpixels, pixels)`` matrix with only its non-zero entries kept.
    """

    weights: torch.Tensor  # (B, 9, H*W)
    rows: torch.Tensor  # (H,) initial grid row of every pixel row
    cols: torch.Tensor  # (W,) initial grid column of every pixel column

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.rows[-1]) + 1, int(self.cols[-1]) + 1

    def _cell_sums(self, feats: torch.Tensor) -> torch.Tensor:
        """``sum_p A[m, p] * feats[p]`` per superpixel ``m`` as ``(B, nH, nW, C)``.

        ``feats`` is channels-last ``(B, H, W, C)``. Summed per initial cell, then each of the
        9 candidate offsets adds its cells' sums to the superpixel it points to.
        """
        b = self.weights.shape[0]
        h, w = self.rows.numel(), self.cols.numel()
        nh, nw = self.grid
        wk = self.weights.view(b, 9, h, w, 1)
        c = feats.shape[-1]
        out = wk.new_zeros(b, nh + 2, nw + 2, c)
        for k, (dy, dx) in enumerate(_NEIGHBOURS):
            y = feats * wk[:, k]
            part = y.new_zeros(b, nh, w, c).index_add_(1, self.rows, y)
            part = y.new_zeros(b, nh, nw, c).index_add_(2, self.cols, part)
            # A pixel of cell (gy, gx) votes for superpixel (gy + dy, gx + dx); votes that leave
            # the grid land in the margin and are dropped (they weigh exactly 0).
            out[:, 1 + dy: 1 + dy + nh, 1 + dx: 1 + dx + nw] += part
        return out[:, 1:-1, 1:-1]

    def mean_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Association-weighted mean of ``feats`` ``(B, H, W, C)`` per superpixel: ``(B, M, C)``.

        The official ``A @ feats / (A.sum(pixels) + 1e-16)``; a channel of ones carries the
        row sums through the same pass.
        """
        sums = self._cell_sums(F.pad(feats, (0, 1), value=1.0)).flatten(1, 2)
        return sums[..., :-1] / (sums[..., -1:] + 1e-16)

    def top_pixels(self, n: int) -> torch.Tensor:
        """The ``n`` pixels of largest association for every superpixel: ``(B, M, n)`` indices.

        Ordered by association, descending. Tie rule: among equal values the lower pixel
        index (row-major) wins, on every device. The official ``topk`` over the dense row
        leaves ties to the implementation (CPU and CUDA differ); without ties both agree.

        Only pixels of the superpixel's cell and its 8 neighbour cells can weigh more than 0;
        a window around them plus the first ``n`` pixels of the image (where the
        lowest-index zeros are, should zeros be needed) hold the answer of the full row.
        """
        b = self.weights.shape[0]
        w = self.cols.numel()
        nh, nw = self.grid
        dev = self.weights.device
        win_r, r0 = _cell_windows(self.rows, nh)  # (nh, Rh)
        win_c, c0 = _cell_windows(self.cols, nw)  # (nw, Rw)
        gy = torch.arange(nh, device=dev)
        gx = torch.arange(nw, device=dev)
        # Window candidates: (nh, nw, Rh, Rw), flattened per superpixel.
        dy = (gy[:, None] - self.rows[win_r])[:, None, :, None]
        dx = (gx[:, None] - self.cols[win_c])[None, :, None, :]
        pix_w = win_r[:, None, :, None] * w + win_c[None, :, None, :]
        val_w = self._lookup(dy, dx, pix_w)
        pix_w = pix_w.reshape(nh * nw, -1)
        # Prefix candidates: pixels 0..n-1 for every superpixel, minus those already in its window.
        pre = torch.arange(n, device=dev)
        py, px = pre // w, pre % w
        dy_p = gy[:, None, None] - self.rows[py][None, None, :]  # (nh, 1, n)
        dx_p = gx[None, :, None] - self.cols[px][None, None, :]  # (1, nw, n)
        val_p = self._lookup(dy_p, dx_p, pre.expand(nh, nw, n))
        inside = ((py >= r0[:, None, None]) & (py < r0[:, None, None] + win_r.shape[1])
                  & (px >= c0[None, :, None]) & (px < c0[None, :, None] + win_c.shape[1]))
        pix = torch.cat([pix_w, pre.expand(nh * nw, n)], 1)  # (M, K)
        vals = torch.cat([val_w.reshape(b, nh * nw, -1), val_p.reshape(b, nh * nw, n)], 2)
        keys = _tie_break_keys(vals, pix)
        keys[:, :, pix_w.shape[1]:].masked_fill_(inside.reshape(1, nh * nw, n), -1)
        top = keys.topk(n, dim=-1).indices
        return pix.expand(b, -1, -1).gather(2, top)

    def _lookup(self, dy: torch.Tensor, dx: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
        """``A[m, p]`` for grid offsets ``(dy, dx)`` from pixel ``p``'s cell to superpixel ``m``."""
        b, _, npix = self.weights.shape
        ok = ((dy.abs() <= 1) & (dx.abs() <= 1)).broadcast_to(pix.shape)
        k = (dy.clamp(-1, 1) + 1) * 3 + (dx.clamp(-1, 1) + 1)
        flat = k * npix + pix
        vals = self.weights.reshape(b, 9 * npix)[:, flat.reshape(-1)].view(b, *flat.shape)
        return vals.masked_fill(~ok, 0.0)


def _tie_break_keys(values: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering by value (descending), then pixel index (ascending); all distinct.

    The bit pattern of a non-negative float32 grows with its value, so the key keeps the
    order of different values and only decides among equal ones.
    """
    bits = values.contiguous().view(torch.int32).to(torch.int64)
    return bits * (1 << 31) + ((1 << 31) - 1 - pixels)


def _distances(planar: torch.Tensor, centroids: torch.Tensor, rows: torch.Tensor,
               cols: torch.Tensor) -> torch.Tensor:
    """Squared distance ``(B, 9, H*W)`` of every pixel to its 9 candidate centroids.

    ``planar`` is ``(B, C, H, W)``, ``centroids`` ``(B, C, nH, nW)``, ``rows``/``cols`` the
    pixels' initial grid cells. Candidate ``k`` sits at grid offset ``_NEIGHBOURS[k]``;
    candidates off the grid get ``1e16``. Summed over channels one channel at a time, in
    channel order, as the official kernel does: each step is a separate element-wise op, so
    no device reorders or fuses it.
    """
    b, c, h, w = planar.shape
    nh, nw = centroids.shape[-2:]
    shift = torch.arange(3, device=planar.device)[:, None]  # d + 1 for d = -1, 0, 1
    ridx = (rows[None] + shift).reshape(-1)  # (3H,) rows of the grid padded by one cell
    cidx = (cols[None] + shift).reshape(-1)  # (3W,)
    # Centroid of candidate (dy, dx) at pixel (y, x) = padded grid at (rows[y]+dy+1,
    # cols[x]+dx+1): expanding columns then rows copies whole rows instead of gathering
    # single values. Layout (B, dy, y, dx, x); the margin holds off-grid candidates.
    grid = F.pad(centroids, (1, 1, 1, 1)).index_select(3, cidx)  # (B, C, nH+2, 3W)
    acc = None
    pix = planar[:, :, None, :, None, :].unbind(1)  # per channel (B, 1, H, 1, W)
    for ch, cent in enumerate(grid.unbind(1)):
        d = cent.index_select(1, ridx).view(b, 3, h, 3, w)
        d.sub_(pix[ch])
        d.mul_(d)
        acc = d if acc is None else acc.add_(d)
    ty, tx = rows[None] + shift - 1, cols[None] + shift - 1
    off_y = (ty < 0) | (ty >= nh)  # (3, H)
    off_x = (tx < 0) | (tx >= nw)  # (3, W)
    acc.masked_fill_(off_y[None, :, :, None, None] | off_x[None, None, None], _OFF_GRID)
    return acc.permute(0, 1, 3, 2, 4).reshape(b, 9, h * w)


@torch.no_grad()
def associate(tokens: torch.Tensor, cell: int, n_iter: int = 3) -> Association:
    """Soft k-means superpixels of channels-last ``tokens`` ``(B, H, W, C)`` on a floor grid
    of ``cell`` x ``cell`` cells.

    The official algorithm: adaptive-average-pooled initial centroids, legacy nearest
    initial labels, ``n_iter`` association passes with a centroid update between
    consecutive ones.
    """
    b, h, w, c = tokens.shape
    nh, nw = h // cell, w // cell
    rows = _nearest_labels(h, nh, tokens.device)
    cols = _nearest_labels(w, nw, tokens.device)
    planar = tokens.permute(0, 3, 1, 2).contiguous()  # one channel per plane, for the distance
    centroids = F.adaptive_avg_pool2d(planar, (nh, nw))
    assoc = None
    for it in range(n_iter):
        weights = (-_distances(planar, centroids, rows, cols)).softmax(1)
        assoc = Association(weights, rows, cols)
        if it < n_iter - 1:
            centroids = assoc.mean_features(tokens).transpose(1, 2).reshape(b, c, nh, nw)
    if assoc is None:
        raise ValueError("n_iter must be at least 1")
    return assoc


# --- modules -----------------------------------------------------------------------------
# Blocks work on channels-last tokens (B, H, W, C): every 1x1 convolution of the official
# code becomes one matrix product, and the 3x3 convolutions between blocks read the same
# memory as an NCHW tensor in channels_last format, without copies.

def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q @ k^T * scale) @ v`` over the last two axes, through the fused kernel."""
    e, ev = q.shape[-1], v.shape[-1]
    # The CPU fused kernel needs equal q/k and v widths and unit last strides, else it
    # materialises every logit; zero channels leave the dot products unchanged.
    if e < ev:
        q, k = F.pad(q, (0, ev - e)), F.pad(k, (0, ev - e))
    elif ev < e:
        v = F.pad(v, (0, e - ev))
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, scale=scale)[..., :ev]


def _linear_1x1(x: torch.Tensor, *convs: nn.Conv2d) -> torch.Tensor:
    """Apply 1x1 convolutions (concatenated along the output) to channels-last ``x``."""
    weight = torch.cat([c.weight.flatten(1) for c in convs], 0) if len(convs) > 1 else \
        convs[0].weight.flatten(1)
    biases = [c.bias for c in convs]
    bias = None if biases[0] is None else torch.cat(biases) if len(biases) > 1 else biases[0]
    return F.linear(x, weight, bias)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel (eps 1e-6); applied to channels-last tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(tokens)


class GatedFFN(nn.Module):
    """Feed-forward on a channel-gated and a pixel-gated copy of the normalised map."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        red = dim // 8
        self.ca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, red, 1), nn.GELU(),
                                nn.Conv2d(red, dim, 1), nn.Sigmoid())
        self.pa = nn.Sequential(nn.Conv2d(dim, red, 1), nn.GELU(), nn.Conv2d(red, 1, 1),
                                nn.Sigmoid())
        self.fc1 = nn.Conv2d(2 * dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens)
        ca = torch.sigmoid(_linear_1x1(F.gelu(_linear_1x1(x.mean((1, 2), keepdim=True),
                                                          self.ca[1])), self.ca[3]))
        pa = torch.sigmoid(_linear_1x1(F.gelu(_linear_1x1(x, self.pa[0])), self.pa[2]))
        gated = torch.cat([x * ca, x * pa], dim=-1)
        return _linear_1x1(F.gelu(_linear_1x1(gated, self.fc1)), self.fc2)


class SuperpixelCrossAttention(nn.Module):
    """SPCA: pixels update superpixel tokens (softmax over pixels), then read them back
    (softmax over superpixels). Official ``inter_layer.0``."""

    def __init__(self, dim: int, heads: int, qk_dim: int) -> None:
        super().__init__()
        self.heads, self.qk_dim = heads, qk_dim
        self.q = nn.Conv2d(dim, qk_dim, 1, bias=False)
        self.k = nn.Conv2d(dim, qk_dim, 1, bias=False)
        self.v = nn.Conv2d(dim, dim, 1, bias=False)
        self.sp = nn.Linear(dim, qk_dim, bias=False)
        self.norm = LayerNorm2d(dim)
        self.scale = (qk_dim // heads) ** -0.5

    def forward(self, tokens: torch.Tensor, assoc: Association) -> torch.Tensor:
        b, h, w, c = tokens.shape
        heads = self.heads
        xn = self.norm(tokens)
        # Official channel split is head-major: channel = head * width + i.
        s = self.sp(assoc.mean_features(xn))  # (B, M, qk)
        s = s.view(b, -1, heads, self.qk_dim // heads).transpose(1, 2)
        qkv = _linear_1x1(xn.view(b, h * w, c), self.q, self.k, self.v)
        q, k, v = (t.view(b, h * w, heads, -1).transpose(1, 2)
                   for t in qkv.split([self.qk_dim, self.qk_dim, c], dim=-1))
        updated = _attention(s, k, v, self.scale)  # (B, heads, M, C/heads)
        out = _attention(q, s, updated, self.scale)  # (B, heads, N, C/heads)
        return out.transpose(1, 2).reshape(b, h, w, c)


class SuperpixelSelfAttention(nn.Module):
    """ISPA: attention among the top-N pixels of every superpixel, averaged back with the
    pixel's own value projection (count + 1). Official ``intra_layer.0``."""

    def __init__(self, dim: int, heads: int, qk_dim: int, topk: int) -> None:
        super().__init__()
        self.heads, self.qk_dim, self.topk = heads, qk_dim, topk
        self.q = nn.Conv2d(dim, qk_dim, 1, bias=False)
        self.k = nn.Conv2d(dim, qk_dim, 1, bias=False)
        self.v = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm = LayerNorm2d(dim)
        self.scale = (qk_dim // heads) ** -0.5

    def forward(self, tokens: torch.Tensor, assoc: Association) -> torch.Tensor:
        b, h, w, c = tokens.shape
        n, heads = h * w, self.heads
        qkv = _linear_1x1(self.norm(tokens).view(b, n, c), self.q, self.k, self.v)
        with torch.no_grad():
            idx = assoc.top_pixels(self.topk)  # (B, M, T)
            m, t = idx.shape[1:]
            rows = (idx + torch.arange(b, device=idx.device).view(b, 1, 1) * n).reshape(-1)
        sel = qkv.reshape(b * n, -1)[rows].view(b * m, t, -1)
        q, k, v = (z.reshape(b * m, t, heads, -1).transpose(1, 2)
                   for z in sel.split([self.qk_dim, self.qk_dim, c], dim=-1))
        out = _attention(q, k, v, self.scale).transpose(1, 2).reshape(b * m * t, c)
        # Each pixel: (own value + every output it received) / (1 + times it was picked),
        # summed in the official order (superpixel, then rank).
        # (index_add_ rather than index_put_(accumulate=True): the latter adds atomically
        # from several CPU threads, so its float sums change from run to run.)
        acc = qkv[..., 2 * self.qk_dim:].reshape(b * n, c).index_add(0, rows, out)
        count = torch.bincount(rows, minlength=b * n).add_(1).to(acc.dtype)
        return (acc / count[:, None]).view(b, h, w, c)


class _QKV(nn.Module):
    """Projections of the local attention (official ``attn``: no biases, no output layer)."""

    def __init__(self, dim: int, qk_dim: int) -> None:
        super().__init__()
        self.to_q = nn.Linear(dim, qk_dim, bias=False)
        self.to_k = nn.Linear(dim, qk_dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)


class LocalAttention(nn.Module):
    """Self-attention in overlapping ``s x s`` windows (step ``s - 2``, last one shifted to
    the border), averaged over the true coverage. Official ``local_layer.0``."""

    def __init__(self, dim: int, heads: int, qk_dim: int, window: int) -> None:
        super().__init__()
        self.heads, self.qk_dim, self.window = heads, qk_dim, window
        self.norm = nn.LayerNorm(dim)
        self.attn = _QKV(dim, qk_dim)
        self.scale = qk_dim ** -0.5  # official: the full qk width, whatever the head count

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h, w, c = tokens.shape
        p, heads, a = self.window, self.heads, self.attn
        # LayerNorm and projections act per pixel: run them once on the map, not per window.
        weight = torch.cat([a.to_q.weight, a.to_k.weight, a.to_v.weight], 0)
        qkv = F.linear(self.norm(tokens), weight)  # (B, H, W, 2qk + C)
        rows, _ = overlapping_starts(h, p)
        cols, _ = overlapping_starts(w, p)
        tok = extract_patch_tokens(qkv, rows, cols, p)  # (B, n, P*P, 2qk + C)
        n = tok.shape[1]
        q, k, v = (z.reshape(b * n, p * p, heads, -1).transpose(1, 2)
                   for z in tok.split([self.qk_dim, self.qk_dim, c], dim=-1))
        out = _attention(q, k, v, self.scale).transpose(1, 2).reshape(b, n, p * p, c)
        # Windows are summed in window order, as the official loop does, then averaged.
        summed = scatter_add_patch_tokens(out, rows, cols, h, w)
        count = patch_coverage(rows, cols, p, h, w, tokens.device)
        return summed / count.to(summed.dtype)[:, :, None]


class SPINBlock(nn.Module):
    """Superpixel cross-attention, intra-superpixel attention and local attention, each
    followed by a gated FFN; one association (from the block input) serves both superpixel
    layers."""

    def __init__(self, cfg: SPINConfig, cell: int) -> None:
        super().__init__()
        self.cell, self.n_iter = cell, cfg.n_iter
        d = cfg.dim
        self.inter_layer = nn.ModuleList([SuperpixelCrossAttention(d, cfg.heads, cfg.qk_dim),
                                          GatedFFN(d, cfg.mlp_dim)])
        self.intra_layer = nn.ModuleList([
            SuperpixelSelfAttention(d, cfg.heads, cfg.qk_dim, topk=cell * cell),
            GatedFFN(d, cfg.mlp_dim)])
        self.local_layer = nn.ModuleList([LocalAttention(d, cfg.heads, cfg.qk_dim, cell),
                                          GatedFFN(d, cfg.mlp_dim)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens``: channels-last ``(B, H, W, C)``; returns the same layout."""
        x = tokens
        assoc = associate(x, self.cell, self.n_iter)
        x = self.inter_layer[0](x, assoc) + x
        x = self.inter_layer[1](x) + x
        x = self.intra_layer[0](x, assoc) + x
        x = self.intra_layer[1](x) + x
        x = self.local_layer[0](x) + x
        return self.local_layer[1](x) + x


class SPIN(nn.Module):
    """SPIN network; input and output RGB in 0..255 (the official domain)."""

    def __init__(self, cfg: SPINConfig) -> None:
        super().__init__()
        if cfg.scale not in SCALES:
            raise ValueError(f"SPIN supports scales {SCALES}, not {cfg.scale}")
        self.cfg = cfg
        d = cfg.dim
        self.first_conv = nn.Conv2d(cfg.in_chans, d, 3, 1, 1)
        self.blocks = nn.ModuleList([SPINBlock(cfg, s) for s in cfg.stoken_sizes])
        self.mid_convs = nn.ModuleList([nn.Conv2d(d, d, 3, 1, 1) for _ in cfg.stoken_sizes])
        if cfg.scale == 4:
            self.upconv1 = nn.Conv2d(d, d * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(d, d * 4, 3, 1, 1)
        else:
            self.upconv = nn.Conv2d(d, d * cfg.scale**2, 3, 1, 1)
        self.last_conv = nn.Conv2d(d, cfg.in_chans, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.cfg.scale
        x = x / 255.0  # never in place: the caller's tensor stays as it was
        base = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        cl = torch.channels_last
        f = self.first_conv(x.contiguous(memory_format=cl))
        for block, conv in zip(self.blocks, self.mid_convs, strict=True):
            t = f.permute(0, 2, 3, 1).contiguous()  # a view when f is channels_last already
            f = f + conv(block(t).permute(0, 3, 1, 2).contiguous(memory_format=cl))
        if s == 4:
            out = F.leaky_relu(F.pixel_shuffle(self.upconv1(f), 2), 0.1, inplace=True)
            out = F.leaky_relu(F.pixel_shuffle(self.upconv2(out), 2), 0.1, inplace=True)
        else:
            out = F.leaky_relu(F.pixel_shuffle(self.upconv(f), s), 0.1, inplace=True)
        return (base + self.last_conv(out)).contiguous() * 255.0


# --- building, detection, memory ---------------------------------------------------------


def build(cfg: SPINConfig) -> SPIN:
    """The network for ``cfg``, with the official state-dict keys, in eval mode."""
    return SPIN(cfg).eval()


#: Hyper-parameter ranges detect() accepts: far above SPIN-light (40/24/72, 8 blocks), but
#: finite, so that absurd shapes are refused before the network is built.
LIMITS = {"dim": (4, 512), "in_chans": (1, 4), "qk_dim": (1, 512), "mlp_dim": (1, 4096),
          "num_blocks": (1, 64)}


def detect(state_dict: Mapping[str, torch.Tensor]) -> SPINConfig | None:
    """Read a SPIN configuration from a state dict's keys and shapes; None if not SPIN.

    Cell sizes and the head count leave no trace in the weights: the official values are
    assumed (cell sizes repeat 12, 16, 20, 24 when the block count differs from 8). SPIN
    weights with no usable upsampler raise :class:`CheckpointError`.
    """
    sd = state_dict
    needed = ("first_conv.weight", "last_conv.weight", "blocks.0.inter_layer.0.sp.weight",
              "blocks.0.intra_layer.0.q.weight", "blocks.0.local_layer.0.attn.to_q.weight",
              "blocks.0.inter_layer.1.fc1.weight")
    if any(k not in sd for k in needed):
        return None
    dim, in_chans = shape_of(sd, "first_conv.weight", 4)[:2]
    in_range(dim, *LIMITS["dim"], "a width of", "first_conv.weight", "SPIN")
    in_range(in_chans, *LIMITS["in_chans"], "an input channel count of", "first_conv.weight",
             "SPIN")
    qk_key, mlp_key = "blocks.0.inter_layer.0.sp.weight", "blocks.0.inter_layer.1.fc1.weight"
    qk_dim = in_range(sd[qk_key].shape[0] if sd[qk_key].dim() else 0, *LIMITS["qk_dim"],
                      "a key width of", qk_key, "SPIN")
    mlp_dim = in_range(sd[mlp_key].shape[0] if sd[mlp_key].dim() else 0, *LIMITS["mlp_dim"],
                       "an MLP width of", mlp_key, "SPIN")
    num_blocks = 0
    while f"blocks.{num_blocks}.inter_layer.0.sp.weight" in sd:
        num_blocks += 1
        in_range(num_blocks, *LIMITS["num_blocks"], "a block count of",
                 f"blocks.{num_blocks - 1}.inter_layer.0.sp.weight", "SPIN")
    if "upconv1.weight" in sd and "upconv2.weight" in sd:
        scale = 4
    elif "upconv.weight" in sd:
        ratio = int(sd["upconv.weight"].shape[0]) / dim
        scale = math.isqrt(int(ratio))
        if scale * scale != ratio or scale not in (2, 3):
            raise CheckpointError(
                f"SPIN weights whose upsampler has {int(sd['upconv.weight'].shape[0])} "
                f"channels for width {dim}, which is no supported scale (x2, x3, x4).")
    else:
        raise CheckpointError("SPIN weights without an upsampler (upconv or upconv1/upconv2).")
    if num_blocks == len(OFFICIAL_STOKEN_SIZES):
        sizes = OFFICIAL_STOKEN_SIZES
    else:
        sizes = tuple(OFFICIAL_STOKEN_SIZES[i % 4] for i in range(num_blocks))
    official = (dim, in_chans, qk_dim, mlp_dim, num_blocks) == (40, 3, 24, 72, 8)
    return SPINConfig(variant="light" if official else "custom", scale=scale, in_chans=in_chans,
                      dim=dim, qk_dim=qk_dim, mlp_dim=mlp_dim, stoken_sizes=sizes)


def estimate_memory(cfg: SPINConfig, h: int, w: int, dtype_bytes: int = 4) -> int:
    """Peak working bytes of one forward on an ``h x w`` input at batch 1.

    Linear in the pixel count (the association is sparse and every attention is fused):
    about 11 feature maps of width ``dim`` for a block, plus about 3 maps of ``dim`` channels
    at the output resolution for the upsampler (convolution output, its reorder, the pixel
    shuffle). Fitted as an upper envelope of CPU measurements, 64x64 to 512x512 at x2, x3
    and x4 (``benchmarks/bench_spin.py``); from 128x128 up it exceeds them by 10-80%.
    """
    per_pixel = cfg.dim * (_BLOCK_MAPS + _UPSAMPLER_MAPS * cfg.scale**2)
    return int(per_pixel * h * w * dtype_bytes + _BASE_BYTES)


# Calibration of estimate_memory (feature maps of ``dim`` channels per input pixel).
_BLOCK_MAPS = 11.0
_UPSAMPLER_MAPS = 3.0
_BASE_BYTES = 8 << 20
