"""The real-world degradation model: its statistics, measured back from what it produces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sr_core import degrade as D
from sr_core.metrics import imresize

# libjpeg's standard luminance table (ITU-T T.81, Annex K), which quality scales.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def quality_from_tables(data: bytes) -> int:
    """The IJG quality whose scaled standard table matches the file's luminance table."""
    with Image.open(io.BytesIO(data)) as im:
        table = np.array(sorted(im.quantization[0]), dtype=np.int64)
    best, err = 0, None
    for q in range(1, 101):
        s = 5000 // q if q < 50 else 200 - 2 * q
        t = np.clip((_STD_LUMA * s + 50) // 100, 1, 255)
        e = int(np.abs(np.sort(t) - table).sum())
        if err is None or e < err:
            best, err = q, e
    return best


def _photo(seed: int, size: int = 192) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    return imresize(small, output_shape=(size, size)).clip(0, 1).astype(np.float32)


@pytest.mark.parametrize("quality", [30, 47, 60, 75, 95])
def test_jpeg_quality_is_measured_back_from_the_quantisation_tables(quality: int) -> None:
    data = D.jpeg_bytes(_photo(0), quality)
    assert quality_from_tables(data) == quality


def test_the_pipelines_jpeg_steps_write_the_quality_they_record() -> None:
    rng = np.random.default_rng(5)
    hr = _photo(1)
    seen = []
    for _ in range(20):
        rec = D.Record()
        D.degrade(hr, 4, D.REAL_ESRGAN, rng, rec)
        seen += [int(q) for q in rec.values("jpeg", "quality")]
    assert all(30 <= q <= 95 for q in seen)
    # Every recorded quality is one libjpeg actually wrote (measured from its tables).
    for q in seen[:6]:
        assert quality_from_tables(D.jpeg_bytes(hr, q)) == q


def test_gaussian_noise_sigma_is_measured_back_from_a_flat_patch() -> None:
    flat = np.full((128, 128, 3), 0.5, np.float32)
    for sigma in (5 / 255, 10 / 255, 25 / 255):
        noisy = D.add_gaussian_noise(flat, sigma, np.random.default_rng(3))
        assert noisy.std() == pytest.approx(sigma, rel=0.03)
        assert abs(noisy.mean() - 0.5) < 0.002
    grey = D.add_gaussian_noise(flat, 0.05, np.random.default_rng(3), grey=True)
    assert np.array_equal(grey[..., 0], grey[..., 2])  # one deviation for all channels


def test_poisson_noise_grows_with_brightness_like_shot_noise() -> None:
    rng = np.random.default_rng(4)
    dark = D.add_poisson_noise(np.full((128, 128, 3), 0.1, np.float32), 1.0, rng)
    bright = D.add_poisson_noise(np.full((128, 128, 3), 0.8, np.float32), 1.0, rng)
    # std of counts/255 is sqrt(v/255): 0.0198 at 0.1 and 0.056 at 0.8.
    assert dark.std() == pytest.approx(np.sqrt(0.1 / 255), rel=0.05)
    assert bright.std() == pytest.approx(np.sqrt(0.8 / 255), rel=0.05)


def test_noise_sigma_of_a_whole_degradation_is_what_it_recorded() -> None:
    # A flat grey HR through a chain whose only random step is the noise: the LR's std on a
    # flat patch is the recorded sigma. Grey noise lives in luma, which JPEG at 95 keeps
    # (colour noise would be halved by the 4:2:0 chroma subsampling).
    order = D.Order(blur_prob=0.0, kernel_sizes=(7,), kernel_probs=(1, 0, 0, 0, 0, 0),
                    sinc_prob=0.0, blur_sigma=(1, 1), beta_generalized=(1, 1),
                    beta_plateau=(1, 1), resize_probs=(0, 0, 1), resize_range=(1, 1),
                    gaussian_noise_prob=1.0, noise_sigma=(8.0, 8.0), poisson_scale=(1, 1),
                    grey_noise_prob=1.0, jpeg_quality=(95, 95))
    quiet = D.Order(**{**order.__dict__, "noise_sigma": (0.0, 0.0)})
    model = D.SecondOrder("test", first=quiet, second=order, final_sinc_prob=0.0)
    rec = D.Record()
    lr = D.degrade(np.full((256, 256, 3), 0.5, np.float32), 2, model,
                   np.random.default_rng(0), rec)
    assert rec.values("noise", "sigma")[-1] == pytest.approx(8.0)
    assert lr[8:-8, 8:-8].std() * 255 == pytest.approx(8.0, rel=0.15)


def test_a_seed_reproduces_a_degradation_and_another_seed_does_not() -> None:
    hr = _photo(2)
    a = D.degrade(hr, 4, D.PHOTO, np.random.default_rng(11))
    b = D.degrade(hr, 4, D.PHOTO, np.random.default_rng(11))
    c = D.degrade(hr, 4, D.PHOTO, np.random.default_rng(12))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("model", [D.PHOTO, D.REAL_ESRGAN], ids=lambda m: m.name)
@pytest.mark.parametrize("scale", [2, 4])
def test_output_is_the_low_resolution_size_quantised_to_8_bits(model, scale: int) -> None:
    rng = np.random.default_rng(scale)
    for _ in range(5):
        lr = D.degrade(_photo(3), scale, model, rng)
        assert lr.shape == (192 // scale, 192 // scale, 3)
        assert lr.dtype == np.float32 and lr.min() >= 0 and lr.max() <= 1
        assert np.allclose(lr * 255, np.rint(lr * 255), atol=1e-4)


def test_parameters_cover_the_papers_ranges() -> None:
    rng = np.random.default_rng(9)
    hr = _photo(4, 96)
    kinds, sigmas, qualities, modes = set(), [], [], set()
    for _ in range(300):
        rec = D.Record()
        D.degrade(hr, 4, D.REAL_ESRGAN, rng, rec)
        kinds |= {str(k) for k in rec.values("blur", "kind")}
        sigmas += [float(s) for s in rec.values("noise", "sigma")]
        qualities += [int(q) for q in rec.values("jpeg", "quality")]
        modes |= {str(m) for m in rec.values("resize", "mode")}
    assert kinds == {*D.KERNEL_TYPES, "sinc"}
    assert modes == set(D.RESIZE_MODES)
    assert 1 <= min(sigmas) < 4 and 27 < max(sigmas) <= 30
    assert min(qualities) <= 33 and max(qualities) >= 92
    assert 55 < np.mean(qualities) < 70  # uniform over 30..95


def test_kernels_are_normalised_and_shaped_as_named() -> None:
    iso = D.gaussian_kernel(21, 2.0)
    aniso = D.gaussian_kernel(31, 4.0, 1.0, 0.0)
    assert iso.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(iso, iso.T, atol=1e-7)
    # Wide along x (columns), narrow along y (rows): its second moments are the sigmas squared.
    r = np.arange(31) - 15
    assert (aniso.sum(axis=0) * r**2).sum() == pytest.approx(16.0, rel=0.05)
    assert (aniso.sum(axis=1) * r**2).sum() == pytest.approx(1.0, rel=0.05)
    plateau = D.plateau_kernel(21, 2.0, 2.0, 0.0, 2.0)
    gen = D.generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 4.0)
    for k in (plateau, gen):
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and k.argmax() == 220
    sinc = D.sinc_kernel(21, np.pi / 3)
    assert sinc.sum() == pytest.approx(1.0, abs=1e-5)
    assert sinc.min() < 0  # the ripples that make ringing


def test_presets_are_fixed_per_image_and_within_their_stated_ranges() -> None:
    hr = np.clip(_photo(6, 96) * 255, 0, 255).astype(np.uint8)

    def down(x: np.ndarray, s: int) -> np.ndarray:
        return imresize(x, output_shape=(x.shape[0] // s, x.shape[1] // s))

    for p in D.PRESETS.values():
        a = p.apply(hr, 4, "baby.png", down)
        assert np.array_equal(a, p.apply(hr, 4, "baby.png", down))
        assert not np.array_equal(a, p.apply(hr, 4, "bird.png", down))
        assert a.shape == (24, 24, 3) and a.dtype == np.uint8
        for name in ("a.png", "b.png", "c.png", "d.png"):
            sigma, q = p.params(name)
            assert p.noise_sigma[0] <= sigma <= p.noise_sigma[1]
            assert p.jpeg_quality[0] <= q <= p.jpeg_quality[1]
    assert set(D.PRESETS) >= {"mild", "real"}
