"""sr_core.metrics against results derived by hand from MATLAB's imresize and the papers' metrics.

The cubic kernel (a = -0.5) at the distances that occur here:
k(0.25) = 0.8671875, k(0.75) = 0.2265625, k(1.25) = -0.0703125, k(1.75) = -0.0234375.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sr_core.metrics import imresize, modcrop, psnr, rgb_to_y, ssim

# A x2 upscale of two samples (replicate borders): output centres fall at 0.75, 1.25, 1.75,
# 2.25 in 1-based input coordinates, so the taps sit at the kernel distances above.
UP2 = np.array([[1.0703125, -0.0703125],
                [0.796875, 0.203125],
                [0.203125, 0.796875],
                [-0.0703125, 1.0703125]])


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_constant_image_stays_constant(scale: float) -> None:
    img = np.full((36, 24, 3), 173, np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8
    assert out.shape == (round(36 * scale), round(24 * scale), 3)
    assert np.all(out == 173)
    flt = imresize(img.astype(np.float64) / 255, scale)
    np.testing.assert_allclose(flt, 173 / 255, atol=1e-12)


def test_2x2_to_4x4_float_uses_the_cubic_weights() -> None:
    x = np.array([[0.0, 1.0], [0.5, 0.25]])
    out = imresize(x, 2)
    assert out.dtype == np.float64 and out.shape == (4, 4)
    np.testing.assert_allclose(out, UP2 @ x @ UP2.T, atol=1e-12)
    # overshoot on both sides of a step, as bicubic does (no clamping for float input)
    assert out.min() < 0 and out.max() > 1


def test_2x2_to_4x4_uint8_rounds_after_each_pass() -> None:
    x = np.array([[0, 100], [100, 200]], np.uint8)
    # height pass: columns [0,100] -> [-7.03, 20.31, 79.69, 107.03] -> [0, 20, 80, 107] and
    # [100,200] -> [93, 120, 180, 207]; then the width pass on each rounded row.
    expected = np.array([[0, 19, 74, 100],
                         [13, 40, 100, 127],
                         [73, 100, 160, 187],
                         [100, 127, 187, 214]], np.uint8)
    out = imresize(x, 2)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    rgb = imresize(np.stack([x] * 3, axis=-1), output_shape=(4, 4))
    np.testing.assert_array_equal(rgb, np.stack([expected] * 3, axis=-1))


def test_ramp_downscale_is_linear_inside_and_clamped_at_the_border() -> None:
    ramp = np.tile(np.arange(32, dtype=np.float64), (4, 1))
    out = imresize(ramp, output_shape=(4, 16))[0]
    # output pixel k is centred on input position 2k + 0.5 (0-based); cubic reproduces lines
    np.testing.assert_allclose(out[2:14], 2 * np.arange(2, 14) + 0.5, atol=1e-12)
    # first output: antialiased weights 0.4336, 0.1133, -0.0352, -0.0117 each side; the left
    # taps read x[0] = 0 (replicate) instead of -1, -2, -3: 0.5 + 0.0078125
    assert out[0] == pytest.approx(0.5078125, abs=1e-12)
    sym = imresize(ramp, output_shape=(4, 16), border="symmetric")[0]
    assert sym[0] == pytest.approx(0.44921875, abs=1e-12)  # mirrored taps read 0, 1, 2
    assert out[-1] == pytest.approx(30.5 - 0.0078125, abs=1e-12)  # same on the right, mirrored


def test_uint8_rounding_is_half_away_from_zero_per_pass() -> None:
    # Shrinking 2 -> 1 averages the two samples exactly (the weights are symmetric).
    assert imresize(np.array([[2, 3]], np.uint8), output_shape=(1, 1))[0, 0] == 3  # 2.5 -> 3
    assert imresize(np.array([[0, 1]], np.uint8), output_shape=(1, 1))[0, 0] == 1  # 0.5 -> 1
    # 2x2 -> 1x1: rows first give 2.5 -> 3 and 3.5 -> 4, then 3.5 -> 4; rounding only at the
    # end would give 3.
    x = np.array([[2, 3], [3, 4]], np.uint8)
    assert imresize(x, 0.5)[0, 0] == 4
    assert imresize(x.astype(np.float64), 0.5)[0, 0] == pytest.approx(3.0)


def test_uint8_output_saturates() -> None:
    out = imresize(np.array([[0, 255], [0, 255]], np.uint8), 2)
    np.testing.assert_array_equal(out[0], [0, 52, 203, 255])  # -17.9 -> 0, 272.9 -> 255


def test_output_size_for_thirds() -> None:
    assert imresize(np.zeros((255, 111), np.uint8), 1 / 3).shape == (85, 37)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 2, output_shape=(8, 8))


def test_modcrop() -> None:
    img = np.arange(7 * 10 * 3).reshape(7, 10, 3)
    assert modcrop(img, 3).shape == (6, 9, 3)
    np.testing.assert_array_equal(modcrop(img, 3), img[:6, :9])
    assert modcrop(img[..., 0], 2).shape == (6, 10)


def test_rgb_to_y_bt601_rounded() -> None:
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    # 16, 16+219, 16+65.481, 16+128.553, 16+24.966 -> rounded
    np.testing.assert_array_equal(rgb_to_y(px), [[16, 235, 81, 145, 41]])


def test_psnr_identical_is_inf_and_known_mse() -> None:
    a = np.full((20, 20), 100.0)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 5) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)  # MSE 25
    rgb = np.full((20, 20, 3), 128, np.uint8)
    assert psnr(rgb, rgb, shave=4) == math.inf


def test_psnr_shave_ignores_the_border() -> None:
    a = np.full((20, 20), 50.0)
    b = a.copy()
    b[:2] += 40
    b[:, -2:] -= 30
    assert psnr(a, b, shave=2) == math.inf
    assert psnr(a, b, shave=1) < 30


def test_psnr_on_y_not_rgb() -> None:
    # Changing only blue by 10 moves Y by 24.966*10/255 = 0.98 -> rounded 1.
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[..., 2] += 10
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 1), abs=1e-12)


def test_ssim_identical_and_constant_images() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert ssim(a, a, shave=2) == pytest.approx(1.0, abs=1e-12)
    # constant images: no variance, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    c1 = (0.01 * 255) ** 2
    x, y = np.full((20, 20), 100.0), np.full((20, 20), 110.0)
    assert ssim(x, y) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-12)


def test_ssim_drops_with_noise_and_is_symmetric() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 40)).astype(np.float64)
    noise = rng.normal(0, 1, a.shape)
    b = np.clip(a + 20 * noise, 0, 255)
    s = ssim(a, b)
    assert 0.5 < s < 0.99
    assert ssim(a, np.clip(a + 60 * noise, 0, 255)) < s - 0.1
    assert ssim(b, a) == pytest.approx(s, abs=1e-12)
    assert ssim(a, 255 - a) < 0  # inverted structure correlates negatively
    with pytest.raises(ValueError):
        ssim(a[:12, :12], b[:12, :12], shave=1)
