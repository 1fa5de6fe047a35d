"""Real-world degradations: what happens to a photo between the scene and the user's file.

Two uses, one set of primitives:

* **Training** (:class:`SecondOrder`): the *second-order* degradation model of Real-ESRGAN
  (Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
  Data", ICCVW 2021, section 3), which applies the classical chain twice with independent
  random parameters, and of BSRGAN (Zhang et al., "Designing a Practical Degradation Model
  for Deep Blind Image Super-Resolution", ICCV 2021), which introduced the randomised mix of
  blur kernels, resize modes, Gaussian/Poisson and JPEG noise it builds on. Each order is::

      blur (isotropic / anisotropic Gaussian, generalised Gaussian, plateau, or sinc)
      -> random resize (area, bilinear or bicubic; up, down or keep)
      -> noise (Gaussian or Poisson, colour or grey)
      -> JPEG

  and the chain ends, as in Real-ESRGAN, with a resize to the low-resolution size, a sinc
  (ringing / overshoot) filter and a last JPEG in random order.

* **Evaluation** (:data:`PRESETS`): fixed, seeded degradations (``mild``, ``real``) that turn a
  benchmark image into the kind of input people bring, so that a model can be scored on it.

The parameter ranges of :data:`REAL_ESRGAN` are the paper's (its released training options
``finetune_realesrgan_x4plus.yml``): kernel sizes 7..21, kernel-type probabilities
0.45/0.25/0.12/0.03/0.12/0.03, sinc probability 0.1, blur sigma [0.2, 3] then [0.2, 1.5],
generalised shape beta [0.5, 4], plateau beta [1, 2], resize up/down/keep 0.2/0.7/0.1 over
[0.15, 1.5] then 0.3/0.4/0.3 over [0.3, 1.2], Gaussian noise probability 0.5 with sigma
[1, 30] then [1, 25] (of 255), Poisson scale [0.05, 3] then [0.05, 2.5], grey noise
probability 0.4, JPEG quality [30, 95], second blur probability 0.8 and final sinc
probability 0.8. :data:`PHOTO` keeps that structure with milder ranges, aimed at phone photos,
scans and web JPEGs rather than the paper's heavily re-compressed web crawl (see its
docstring).

Everything runs on uint8-range float32 NumPy arrays ``(H, W, 3)`` in [0, 1], per image, with
OpenCV filters and Pillow's JPEG codec (the same libjpeg that writes the user's files). It is
made to run inside data-loader workers: a 192x192 patch takes a few milliseconds. Every random
choice comes from the ``numpy.random.Generator`` passed in, so a seed reproduces a degradation
exactly.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

# --- kernels ----------------------------------------------------------------------------------
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(r, r, indexing="xy")


def _inverse_cov(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Inverse covariance of a Gaussian with axes ``sigma_x``/``sigma_y`` rotated by ``theta``."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    return np.linalg.inv(cov)


def _quadratic(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """``x^T C^-1 x`` over a ``size x size`` grid centred on the middle pixel."""
    xx, yy = _grid(size)
    inv = _inverse_cov(sigma_x, sigma_y, theta)
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
    """A normalised (an)isotropic Gaussian blur kernel, ``size`` odd."""
    q = _quadratic(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    k = np.exp(-0.5 * q)
    return (k / k.sum()).astype(np.float32)


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                                beta: float) -> np.ndarray:
    """``exp(-0.5 * q^beta)``: flatter-topped (beta > 1) or peakier (beta < 1) than a Gaussian."""
    q = _quadratic(size, sigma_x, sigma_y, theta)
    k = np.exp(-0.5 * np.power(q, beta))
    return (k / k.sum()).astype(np.float32)


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                   beta: float) -> np.ndarray:
    """``1 / (1 + q^beta)``: a plateau with heavy tails (out-of-focus lenses)."""
    q = _quadratic(size, sigma_x, sigma_y, theta)
    k = 1.0 / (1.0 + np.power(q, beta))
    return (k / k.sum()).astype(np.float32)


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """A circular low-pass (2-D ``jinc``-like sinc) kernel with ``cutoff`` in radians/pixel.

    Its ripples make the ringing and overshoot that sharpening and resampling leave around
    edges in real photos.
    """
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * _bessel_j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff**2 / (4 * np.pi)
    return (k / k.sum()).astype(np.float32)


def _bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1 (numerical integral; no SciPy needed)."""
    t = np.linspace(0.0, np.pi, 257)
    # J1(x) = 1/pi * integral_0^pi cos(t - x sin t) dt, by the trapezoidal rule.
    vals = np.cos(t[None, :] - np.ravel(x)[:, None] * np.sin(t)[None, :])
    dt = t[1] - t[0]
    out = (vals.sum(axis=1) - 0.5 * (vals[:, 0] + vals[:, -1])) * dt / np.pi
    return out.reshape(np.shape(x))


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel``, reflecting the borders."""
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


# --- resize, noise, JPEG --------------------------------------------------------------------
RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def resize(img: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize to ``height x width`` with one of :data:`RESIZE_MODES`."""
    out = cv2.resize(img, (max(1, width), max(1, height)), interpolation=RESIZE_MODES[mode])
    return out if out.ndim == 3 else out[..., None]


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator,
                       grey: bool = False) -> np.ndarray:
    """Add zero-mean Gaussian noise of std ``sigma`` (in [0, 1] units), per channel or grey."""
    h, w, c = img.shape
    n = rng.standard_normal((h, w, 1 if grey else c), dtype=np.float32) * np.float32(sigma)
    return img + n


def add_poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator,
                      grey: bool = False) -> np.ndarray:
    """Shot noise: Poisson counts at 8-bit photon levels, the deviation scaled by ``scale``.

    Brighter pixels get more absolute noise (std grows with the square root of the signal),
    as on a camera sensor. ``grey`` draws one deviation per pixel from the luma.
    """
    levels = 255.0
    base = img if not grey else (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    base = np.clip(base, 0.0, 1.0)
    counts = rng.poisson(base * levels).astype(np.float32) / levels
    return img + (counts - base) * np.float32(scale)


def jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    """Encode a [0, 1] RGB image as a baseline JPEG of ``quality`` (Pillow / libjpeg, 4:2:0)."""
    from PIL import Image

    a = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Compress and decompress through JPEG at ``quality``: blocks, ringing, colour bleed."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg_bytes(img, quality))) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def quantise8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to 8-bit levels, as every saved photo is."""
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


# --- the second-order model ---------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    """The random ranges of one order of the classical degradation chain."""

    blur_prob: float
    kernel_sizes: tuple[int, ...]
    kernel_probs: tuple[float, ...]  # over KERNEL_TYPES
    sinc_prob: float
    blur_sigma: tuple[float, float]
    beta_generalized: tuple[float, float]
    beta_plateau: tuple[float, float]
    resize_probs: tuple[float, float, float]  # up, down, keep
    resize_range: tuple[float, float]
    gaussian_noise_prob: float
    noise_sigma: tuple[float, float]  # of 255
    poisson_scale: tuple[float, float]
    grey_noise_prob: float
    jpeg_quality: tuple[int, int]


@dataclass(frozen=True)
class SecondOrder:
    """A second-order degradation model: two :class:`Order` s, a final sinc and JPEG.

    ``second_order_prob`` is the chance the second order runs at all (1.0 in Real-ESRGAN),
    ``final_sinc_prob`` the chance of the last ringing filter, and ``clean_prob`` the chance
    that a sample is left as the plain bicubic downscale (0 in the paper; a little keeps a
    fine-tuned model faithful on clean input).
    """

    name: str
    first: Order
    second: Order
    second_order_prob: float = 1.0
    final_sinc_prob: float = 0.8
    clean_prob: float = 0.0


_KERNEL_SIZES = tuple(range(7, 22, 2))
_PAPER_KERNEL_PROBS = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)

#: The ranges published with Real-ESRGAN (see the module docstring).
REAL_ESRGAN = SecondOrder(
    name="realesrgan",
    first=Order(blur_prob=1.0, kernel_sizes=_KERNEL_SIZES, kernel_probs=_PAPER_KERNEL_PROBS,
                sinc_prob=0.1, blur_sigma=(0.2, 3.0), beta_generalized=(0.5, 4.0),
                beta_plateau=(1.0, 2.0), resize_probs=(0.2, 0.7, 0.1),
                resize_range=(0.15, 1.5), gaussian_noise_prob=0.5, noise_sigma=(1.0, 30.0),
                poisson_scale=(0.05, 3.0), grey_noise_prob=0.4, jpeg_quality=(30, 95)),
    second=Order(blur_prob=0.8, kernel_sizes=_KERNEL_SIZES, kernel_probs=_PAPER_KERNEL_PROBS,
                 sinc_prob=0.1, blur_sigma=(0.2, 1.5), beta_generalized=(0.5, 4.0),
                 beta_plateau=(1.0, 2.0), resize_probs=(0.3, 0.4, 0.3),
                 resize_range=(0.3, 1.2), gaussian_noise_prob=0.5, noise_sigma=(1.0, 25.0),
                 poisson_scale=(0.05, 2.5), grey_noise_prob=0.4, jpeg_quality=(30, 95)),
)

#: Finescale's photo training model: Real-ESRGAN's structure and kernel family, with ranges
#: for the photos our users bring (phone pictures, scans, web JPEGs): lighter blur and
#: resizing, noise up to sigma 15 then 10 (of 255; ISO noise of a phone in dim light), the same
#: JPEG range, a second order half of the time, and 10 % clean bicubic samples. The paper's
#: ranges target far heavier damage; with a small model they cost detail on ordinary photos.
PHOTO = SecondOrder(
    name="real",
    first=Order(blur_prob=0.7, kernel_sizes=_KERNEL_SIZES, kernel_probs=_PAPER_KERNEL_PROBS,
                sinc_prob=0.1, blur_sigma=(0.2, 2.0), beta_generalized=(0.5, 4.0),
                beta_plateau=(1.0, 2.0), resize_probs=(0.2, 0.5, 0.3),
                resize_range=(0.5, 1.3), gaussian_noise_prob=0.6, noise_sigma=(1.0, 15.0),
                poisson_scale=(0.05, 1.5), grey_noise_prob=0.4, jpeg_quality=(30, 95)),
    second=Order(blur_prob=0.5, kernel_sizes=_KERNEL_SIZES, kernel_probs=_PAPER_KERNEL_PROBS,
                 sinc_prob=0.1, blur_sigma=(0.2, 1.2), beta_generalized=(0.5, 4.0),
                 beta_plateau=(1.0, 2.0), resize_probs=(0.2, 0.3, 0.5),
                 resize_range=(0.7, 1.2), gaussian_noise_prob=0.6, noise_sigma=(1.0, 10.0),
                 poisson_scale=(0.05, 1.0), grey_noise_prob=0.4, jpeg_quality=(40, 95)),
    second_order_prob=0.5,
    final_sinc_prob=0.5,
    clean_prob=0.1,
)

#: The training degradation models by the name ``finescale train --degradation`` takes.
TRAINING_MODELS = {m.name: m for m in (PHOTO, REAL_ESRGAN)}


@dataclass
class Record:
    """What one call of :func:`degrade` did, step by step (for tests and for debugging)."""

    steps: list[tuple[str, dict[str, float | str]]] = field(default_factory=list)

    def add(self, step: str, **params: float | str) -> None:
        self.steps.append((step, params))

    def values(self, step: str, key: str) -> list[float | str]:
        """Every value of ``key`` recorded for ``step``, in order."""
        return [p[key] for s, p in self.steps if s == step and key in p]


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def random_kernel(order: Order, rng: np.random.Generator,
                  record: Record | None = None) -> np.ndarray:
    """Draw one blur kernel of ``order``'s family (sinc with probability ``sinc_prob``)."""
    size = int(rng.choice(order.kernel_sizes))
    if rng.random() < order.sinc_prob:
        # Narrow kernels get a higher minimum cutoff: a very low cutoff needs room to ring.
        lo = math.pi / 3 if size < 13 else math.pi / 5
        cutoff = float(rng.uniform(lo, math.pi))
        if record is not None:
            record.add("blur", kind="sinc", size=size, cutoff=cutoff)
        return sinc_kernel(size, cutoff)
    kind = str(rng.choice(KERNEL_TYPES, p=np.asarray(order.kernel_probs) /
                          sum(order.kernel_probs)))
    sx = _uniform(rng, order.blur_sigma)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy = sx if iso else _uniform(rng, order.blur_sigma)
    theta = 0.0 if iso else float(rng.uniform(-math.pi, math.pi))
    if kind in ("iso", "aniso"):
        k = gaussian_kernel(size, sx, sy, theta)
        beta = 2.0
    elif kind.startswith("generalized"):
        beta = _uniform(rng, order.beta_generalized)
        k = generalized_gaussian_kernel(size, sx, sy, theta, beta)
    else:
        beta = _uniform(rng, order.beta_plateau)
        k = plateau_kernel(size, sx, sy, theta, beta)
    if record is not None:
        record.add("blur", kind=kind, size=size, sigma_x=sx, sigma_y=sy, theta=theta, beta=beta)
    return k


def _one_order(img: np.ndarray, order: Order, rng: np.random.Generator,
               size: tuple[int, int], record: Record | None) -> np.ndarray:
    """One pass of blur -> resize -> noise -> JPEG; ``size`` is the (H, W) it resizes from."""
    if rng.random() < order.blur_prob:
        img = filter2d(img, random_kernel(order, rng, record))
    direction = rng.choice(3, p=np.asarray(order.resize_probs) / sum(order.resize_probs))
    if direction == 0:
        factor = float(rng.uniform(1.0, order.resize_range[1]))
    elif direction == 1:
        factor = float(rng.uniform(order.resize_range[0], 1.0))
    else:
        factor = 1.0
    mode = str(rng.choice(tuple(RESIZE_MODES)))
    h, w = size
    img = resize(img, max(1, round(h * factor)), max(1, round(w * factor)), mode)
    if record is not None:
        record.add("resize", factor=factor, mode=mode)
    grey = bool(rng.random() < order.grey_noise_prob)
    if rng.random() < order.gaussian_noise_prob:
        sigma = _uniform(rng, order.noise_sigma) / 255.0
        img = add_gaussian_noise(img, sigma, rng, grey)
        if record is not None:
            record.add("noise", kind="gaussian", sigma=sigma * 255.0, grey=str(grey))
    else:
        scale = _uniform(rng, order.poisson_scale)
        img = add_poisson_noise(img, scale, rng, grey)
        if record is not None:
            record.add("noise", kind="poisson", scale=scale, grey=str(grey))
    quality = int(rng.integers(order.jpeg_quality[0], order.jpeg_quality[1] + 1))
    img = jpeg(np.clip(img, 0.0, 1.0), quality)
    if record is not None:
        record.add("jpeg", quality=quality)
    return img


def degrade(hr: np.ndarray, scale: int, model: SecondOrder, rng: np.random.Generator,
            record: Record | None = None) -> np.ndarray:
    """A low-resolution ``(H/scale, W/scale, 3)`` float32 image made from ``hr`` by ``model``.

    ``hr`` is float32 RGB in [0, 1] whose sides are multiples of ``scale``. The output is
    8-bit quantised, in [0, 1]. With probability ``model.clean_prob`` it is the plain bicubic
    downscale.
    """
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"the HR size {h}x{w} is not a multiple of the scale {scale}")
    lh, lw = h // scale, w // scale
    if rng.random() < model.clean_prob:
        if record is not None:
            record.add("clean")
        return quantise8(resize(hr, lh, lw, "bicubic"))
    img = _one_order(hr.astype(np.float32, copy=False), model.first, rng, (h, w), record)
    if rng.random() < model.second_order_prob:
        # The second order resizes relative to the low-resolution size, as in Real-ESRGAN.
        img = _one_order(img, model.second, rng, (lh, lw), record)
    sinc = (sinc_kernel(int(rng.choice(_KERNEL_SIZES)), float(rng.uniform(math.pi / 3, math.pi)))
            if rng.random() < model.final_sinc_prob else None)
    mode = str(rng.choice(tuple(RESIZE_MODES)))
    quality = int(rng.integers(model.second.jpeg_quality[0], model.second.jpeg_quality[1] + 1))
    if rng.random() < 0.5:  # resize + sinc, then JPEG
        img = resize(img, lh, lw, mode)
        if sinc is not None:
            img = filter2d(img, sinc)
        img = jpeg(np.clip(img, 0.0, 1.0), quality)
    else:  # JPEG, then resize + sinc
        img = jpeg(np.clip(img, 0.0, 1.0), quality)
        img = resize(img, lh, lw, mode)
        if sinc is not None:
            img = filter2d(img, sinc)
    if record is not None:
        record.add("final", mode=mode, sinc=str(sinc is not None))
        record.add("jpeg", quality=quality)
    return quantise8(img)


# --- fixed evaluation presets -----------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A fixed, seeded degradation for evaluation: what a benchmark image goes through.

    HR -> (Gaussian blur of ``blur_sigma`` HR pixels) -> the protocol's MATLAB bicubic
    downscale -> Gaussian colour noise with sigma drawn from ``noise_sigma`` (of 255) ->
    8-bit -> JPEG with quality drawn from ``jpeg_quality``. The draws are seeded by the preset
    name and the image's file name, so every run and every model sees the same inputs.
    """

    name: str
    description: str
    blur_sigma: float
    noise_sigma: tuple[float, float]
    jpeg_quality: tuple[int, int]

    def rng(self, image_name: str) -> np.random.Generator:
        """The generator for one image (stable across runs, machines and NumPy versions)."""
        return np.random.default_rng([zlib.crc32(self.name.encode()),
                                      zlib.crc32(image_name.encode())])

    def params(self, image_name: str) -> tuple[float, int]:
        """``(noise sigma of 255, JPEG quality)`` used for ``image_name``."""
        rng = self.rng(image_name)
        sigma = float(rng.uniform(*self.noise_sigma))
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        return sigma, quality

    def apply(self, hr: np.ndarray, scale: int, image_name: str,
              downscale: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """The degraded uint8 LR of a modcropped uint8 HR image.

        ``downscale(hr_float, scale)`` is the protocol's bicubic (passed in so that this
        module does not depend on the metrics module's resizer).
        """
        sigma, quality = self.params(image_name)
        x = hr.astype(np.float32) / 255.0
        if self.blur_sigma > 0:
            size = 2 * math.ceil(3 * self.blur_sigma) + 1
            x = filter2d(x, gaussian_kernel(size, self.blur_sigma))
        lr = downscale(x, scale).astype(np.float32)
        noise_rng = np.random.default_rng([zlib.crc32(self.name.encode()),
                                           zlib.crc32(image_name.encode()), 1])
        lr = quantise8(add_gaussian_noise(lr, sigma / 255.0, noise_rng))
        return np.clip(np.rint(jpeg(lr, quality) * 255.0), 0, 255).astype(np.uint8)


#: The evaluation presets ``finescale eval --degradation`` takes.
PRESETS = {p.name: p for p in (
    Preset("mild", "a web JPEG: bicubic downscale, light noise (sigma 1-3 of 255), "
           "JPEG quality 70-80", blur_sigma=0.0, noise_sigma=(1.0, 3.0), jpeg_quality=(70, 80)),
    Preset("real", "a phone photo or scan: Gaussian blur (sigma 1.0 HR px), bicubic downscale, "
           "noise sigma 5-10 of 255, JPEG quality 50-60", blur_sigma=1.0,
           noise_sigma=(5.0, 10.0), jpeg_quality=(50, 60)),
)}
