"""Image-quality metrics in the super-resolution papers' protocol.

* :func:`imresize` -- MATLAB-compatible bicubic resize (antialiased when shrinking), which
  makes the low-resolution inputs exactly as the papers' MATLAB scripts did.
* :func:`modcrop` -- crop an image so that its size is a multiple of the scale.
* :func:`rgb_to_y` -- ITU-R BT.601 luma in 16..235, rounded to integers.
* :func:`psnr` and :func:`ssim` -- on Y in 0..255 with ``shave`` pixels removed at each border.

Everything is plain NumPy (and OpenCV for the SSIM filter); no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

_BT601 = np.array([65.481, 128.553, 24.966])


# --- resizing -------------------------------------------------------------------------------
def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(in_len: int, out_len: int, scale: float, antialias: bool,
                   border: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``(out_len, taps)`` of one 1-D resize, as MATLAB builds them."""
    width = 4.0
    if scale < 1 and antialias:
        # Shrinking stretches the kernel by 1/scale so that it also low-passes (antialiasing).
        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

        width /= scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # output pixel centres in 1-based input coordinates
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    idx = idx.astype(np.int64) - 1  # to 0-based
    if border == "replicate":
        idx = np.clip(idx, 0, in_len - 1)
    elif border == "symmetric":
        period = 2 * in_len
        m = np.mod(idx, period)
        idx = np.where(m < in_len, m, period - 1 - m)
    else:
        raise ValueError(f"border must be 'replicate' or 'symmetric', not {border!r}")
    keep = np.any(w != 0, axis=0)  # MATLAB drops taps that are zero for every output pixel
    return idx[:, keep], w[:, keep]


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """im2uint8's rounding: half away from zero, saturated to 0..255."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool,
                 border: str) -> np.ndarray:
    idx, w = _contributions(img.shape[axis], out_len, scale, antialias, border)
    src = np.moveaxis(img, axis, 0).astype(np.float64, copy=False)
    shape = (out_len,) + (1,) * (src.ndim - 1)
    acc = np.zeros((out_len,) + src.shape[1:], dtype=np.float64)
    # One vectorised step per tap, summed in tap order like MATLAB's resizer.
    for k in range(idx.shape[1]):
        acc += w[:, k].reshape(shape) * src[idx[:, k]]
    return np.moveaxis(acc, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None,
             output_shape: Sequence[int] | None = None, *, antialias: bool = True,
             border: str = "replicate") -> np.ndarray:
    """Bicubic resize that reproduces MATLAB's ``imresize(img, scale)``.

    ``img`` is ``(H, W)`` or ``(H, W, C)``. Give either ``scale`` (output size
    ``ceil(scale * size)``) or ``output_shape`` ``(H', W')``. Each axis is resized with
    MATLAB's cubic kernel (a = -0.5), widened by ``1/scale`` when shrinking with
    ``antialias``, weights normalised to sum 1, the axis with the smaller scale first
    (height first when equal). ``border`` is ``"replicate"`` (older MATLAB; bit-identical
    to the LR files distributed with the benchmarks) or ``"symmetric"`` (newer MATLAB).

    A ``uint8`` image comes back as ``uint8``, rounded half away from zero after *each*
    1-D pass as MATLAB does; a float image comes back as ``float64`` without rounding.
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    in_hw = img.shape[:2]
    if output_shape is not None:
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        scales = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    else:
        if scale <= 0:
            raise ValueError(f"scale must be positive, not {scale}")
        # The tolerance keeps e.g. 255 * (1/3) from rounding up to 86 through float error.
        out_hw = tuple(int(math.ceil(n * scale - 1e-9)) for n in in_hw)
        scales = (float(scale), float(scale))
    if min(out_hw) < 1:
        raise ValueError(f"output size {out_hw} is empty")
    is_uint8 = img.dtype == np.uint8
    out = img
    for axis in sorted((0, 1), key=lambda a: scales[a]):  # stable: height first on ties
        out = _resize_axis(out, axis, out_hw[axis], scales[axis], antialias, border)
        if is_uint8:
            out = _round_uint8(out)
    return out if is_uint8 else out.astype(np.float64, copy=False)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom rows and right columns so that height and width divide by ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


# --- measuring ------------------------------------------------------------------------------
def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB in 0..255: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    Rounded to integers (half away from zero) as the papers' test scripts do; returned as
    ``float64`` ``(H, W)``.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    y = 16.0 + img.astype(np.float64) @ _BT601 / 255.0
    return np.floor(y + 0.5)


def _to_y(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3 and img.shape[2] == 3:
        return rgb_to_y(img)
    if img.ndim == 2:
        return img.astype(np.float64)
    raise ValueError(f"expected (H, W, 3) RGB or an (H, W) Y channel, got shape {img.shape}")


def _prepare(a: np.ndarray, b: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ya, yb = _to_y(a), _to_y(b)
    if shave:
        ya, yb = ya[shave:-shave, shave:-shave], yb[shave:-shave, shave:-shave]
    if ya.size == 0:
        raise ValueError(f"nothing left of a {a.shape[:2]} image after shaving {shave} pixels")
    return ya, yb


def psnr(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """Peak signal-to-noise ratio in dB on Y (peak 255), ``shave`` pixels off each border.

    ``a`` and ``b`` are RGB ``(H, W, 3)`` in 0..255 (converted with :func:`rgb_to_y`) or
    ``(H, W)`` Y channels. Identical images give ``inf``.
    """
    ya, yb = _prepare(a, b, shave)
    mse = float(np.mean((ya - yb) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    g = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F)
    return g @ g.T


def ssim(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """Structural similarity of Wang et al. (2004) on Y, ``shave`` pixels off each border.

    11x11 Gaussian window (sigma 1.5), statistics only where the window fits ("valid"),
    K1 = 0.01, K2 = 0.03, L = 255; the mean of the SSIM map. Inputs as for :func:`psnr`.
    """
    ya, yb = _prepare(a, b, shave)
    if min(ya.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after shaving, got {ya.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    win = _gaussian_window()

    def blur(x: np.ndarray) -> np.ndarray:
        # filter2D keeps the input size; cropping 5 px keeps only windows inside the image.
        return cv2.filter2D(x, cv2.CV_64F, win)[5:-5, 5:-5]

    mu_a, mu_b = blur(ya), blur(yb)
    va = blur(ya * ya) - mu_a**2
    vb = blur(yb * yb) - mu_b**2
    cov = blur(ya * yb) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    return float(np.mean(num / den))
