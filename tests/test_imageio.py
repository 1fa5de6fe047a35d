"""Photo-faithful image I/O: pixels, profiles, EXIF, bit depth, alpha, atomic writes, bad files."""

from __future__ import annotations

import errno
import io
import os
import sys
import warnings

import cv2
import imagegen as g
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from sr_core import exif as exifmod
from sr_core import imageio
from sr_core.errors import (
    DiskFullError,
    FinescaleError,
    ImageReadError,
    ImageTooLargeError,
    OutputExistsError,
    SameFileError,
    UnsupportedFormatError,
    WriteError,
)
from sr_core.imageio import AlphaDroppedWarning, Photo, probe_image, read_image, write_image

LOSSLESS = ["png", "tif"]


def to8(a: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(a) * 255).astype(np.uint8)


def to16(a: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(a) * 65535).astype(np.uint16)


def write_png16(path, rgb16: np.ndarray, alpha16: np.ndarray | None = None):
    px = rgb16[..., ::-1] if alpha16 is None else np.dstack([rgb16[..., ::-1], alpha16])
    assert cv2.imwrite(str(path), np.ascontiguousarray(px))
    return path


def only_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- reading the common kinds of file ---------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "webp"])
def test_lossless_8bit_rgb_reads_exactly(tmp_path, ext):
    rgb = g.marked_rgb()
    path = g.save_rgb(tmp_path / f"in.{ext}", rgb, **({"lossless": True} if ext == "webp" else {}))
    photo = read_image(path)
    assert photo.rgb.dtype == np.float32 and photo.rgb.shape == (32, 48, 3)
    assert np.array_equal(to8(photo.rgb), rgb)
    assert photo.bit_depth == 8 and photo.alpha is None and photo.source == path
    assert photo.format == {"png": "PNG", "bmp": "BMP", "tif": "TIFF", "webp": "WEBP"}[ext]


def test_jpeg_reads_close_to_its_pixels(tmp_path):
    rgb = g.marked_rgb()
    photo = read_image(g.save_rgb(tmp_path / "in.jpg", rgb, quality=98, subsampling=0))
    assert photo.format == "JPEG" and photo.bit_depth == 8
    assert np.abs(to8(photo.rgb).astype(int) - rgb).mean() < 2


def test_palette_png_with_transparency(tmp_path):
    idx = np.array([[0, 1, 2, 1], [2, 1, 0, 0]], np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 0, 0, 0, 128, 255, 10, 20, 30] + [0] * (253 * 3))
    im.save(tmp_path / "p.png", transparency=bytes([255, 90, 0]))
    photo = read_image(tmp_path / "p.png")
    pal = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], np.uint8)
    assert np.array_equal(to8(photo.rgb), pal[idx])
    assert np.array_equal(to8(photo.alpha), np.array([255, 90, 0], np.uint8)[idx])


def test_palette_png_without_transparency_has_no_alpha(tmp_path):
    im = Image.fromarray(g.marked_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(tmp_path / "p.png")
    photo = read_image(tmp_path / "p.png")
    assert photo.alpha is None
    assert np.array_equal(to8(photo.rgb), np.asarray(im.convert("RGB")))


def test_greyscale_and_grey_alpha_become_rgb(tmp_path):
    grey = g.marked_rgb()[..., 1]
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    alpha = g.soft_alpha(48, 32)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    for name in ("l.png", "la.png"):
        photo = read_image(tmp_path / name)
        assert photo.rgb.shape == (32, 48, 3)
        for c in range(3):
            assert np.array_equal(to8(photo.rgb[..., c]), grey)
    assert read_image(tmp_path / "l.png").alpha is None
    assert np.array_equal(to8(read_image(tmp_path / "la.png").alpha), alpha)


def test_grey_image_with_grey_profile_is_colour_managed(tmp_path):
    # A linear-light grey of 128 looks like sRGB 188; replicating 128 would darken the photo.
    Image.new("L", (8, 8), 128).save(tmp_path / "g.png", icc_profile=g.gray_profile(1.0))
    photo = read_image(tmp_path / "g.png")
    assert abs(float(photo.rgb[0, 0, 0]) * 255 - 188) <= 2
    assert photo.icc_profile is None  # a GRAY profile cannot describe RGB pixels


def cmyk_jpeg(path, profile: bytes | None):
    a = np.zeros((16, 16, 4), np.uint8)
    a[:, :8, 0] = 255  # left half: cyan ink only; right half: no ink (paper white)
    Image.fromarray(a, "CMYK").save(path, quality=95,
                                    **({"icc_profile": profile} if profile else {}))
    return path


def test_cmyk_jpeg_without_profile_uses_the_usual_inversion(tmp_path):
    photo = read_image(cmyk_jpeg(tmp_path / "c.jpg", None))
    assert np.abs(to8(photo.rgb[4, 2]).astype(int) - [0, 255, 255]).max() <= 3
    assert np.abs(to8(photo.rgb[4, 12]).astype(int) - 255).max() <= 3


def test_cmyk_jpeg_uses_its_embedded_profile(tmp_path):
    photo = read_image(cmyk_jpeg(tmp_path / "c.jpg", g.cmyk_profile()))
    r, gg, b = to8(photo.rgb[4, 2]).astype(int)
    assert r > 230 and gg < 60 and b < 60  # the profile says this cyan ink prints red
    assert np.abs(to8(photo.rgb[4, 12]).astype(int) - 255).max() <= 3
    assert photo.icc_profile is None  # pixels are sRGB now; a CMYK profile would lie


# --- 16 bits --------------------------------------------------------------------------------
def test_16bit_png_and_tiff_keep_every_value(tmp_path):
    v = g.values16()
    write_png16(tmp_path / "a.png", v)
    tifffile.imwrite(tmp_path / "a.tif", v, photometric="rgb")
    for name in ("a.png", "a.tif"):
        photo = read_image(tmp_path / name)
        assert photo.bit_depth == 16
        assert np.array_equal(to16(photo.rgb), v), name
        for ext in LOSSLESS:
            out = write_image(photo, tmp_path / f"out_{name}.{ext}")
            back = read_image(out)
            assert back.bit_depth == 16
            assert np.array_equal(to16(back.rgb), v), (name, ext)


def test_16bit_rgba_png_keeps_alpha_and_colour(tmp_path):
    v = g.values16()
    alpha = np.array([[65535, 1000, 257, 1, 0]] * 4, np.uint16)
    photo = read_image(write_png16(tmp_path / "a.png", v, alpha))
    assert np.array_equal(to16(photo.alpha), alpha)
    for ext in LOSSLESS:
        back = read_image(write_image(photo, tmp_path / f"o.{ext}"))
        assert np.array_equal(to16(back.alpha), alpha), ext
        assert np.array_equal(to16(back.rgb), v), ext


def test_16bit_grey_png(tmp_path):
    grey = g.values16()[..., 0]
    assert cv2.imwrite(str(tmp_path / "g.png"), grey)
    photo = read_image(tmp_path / "g.png")
    assert photo.bit_depth == 16
    assert all(np.array_equal(to16(photo.rgb[..., c]), grey) for c in range(3))


def test_16bit_tiff_with_associated_alpha_is_unpremultiplied(tmp_path):
    colour = np.full((2, 2, 3), 40000, np.uint16)
    alpha = np.array([[65535, 32768], [16384, 0]], np.uint16)
    premultiplied = (colour.astype(np.uint64) * alpha[..., None] // 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", np.dstack([premultiplied, alpha]), photometric="rgb",
                     extrasamples=["assocalpha"])
    photo = read_image(tmp_path / "a.tif")
    got = to16(photo.rgb)
    assert np.abs(got[0, 0].astype(int) - 40000).max() <= 1
    assert np.abs(got[0, 1].astype(int) - 40000).max() <= 3
    assert np.abs(got[1, 0].astype(int) - 40000).max() <= 5


def test_8bit_photo_can_be_written_as_16bit(tmp_path):
    photo = read_image(g.save_rgb(tmp_path / "in.png", g.marked_rgb()))
    back = read_image(write_image(photo, tmp_path / "o.png", bit_depth=16))
    assert back.bit_depth == 16
    assert np.array_equal(to8(back.rgb), g.marked_rgb())
    with pytest.raises(UnsupportedFormatError, match="o.jpg"):
        write_image(photo, tmp_path / "o.jpg", bit_depth=16)


def test_16bit_photo_becomes_8bit_where_the_format_has_no_more(tmp_path):
    photo = read_image(write_png16(tmp_path / "a.png", g.values16()))
    back = read_image(write_image(photo, tmp_path / "o.webp", lossless=True))
    assert back.bit_depth == 8
    assert np.array_equal(to8(back.rgb), to8(photo.rgb))


def test_integer_pixels_from_the_engine_are_written_as_they_are(tmp_path):
    v = g.values16()
    photo = Photo(rgb=v, bit_depth=16)
    assert np.array_equal(to16(read_image(write_image(photo, tmp_path / "o.tif")).rgb), v)
    photo8 = Photo(rgb=g.marked_rgb())
    assert np.array_equal(to8(read_image(write_image(photo8, tmp_path / "o.png")).rgb),
                          g.marked_rgb())


# --- alpha ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ext,options", [("png", {}), ("tif", {}), ("webp", {"lossless": True})])
def test_soft_alpha_edges_survive_exactly(tmp_path, ext, options):
    rgb = g.marked_rgb(64, 16)
    alpha = g.soft_alpha(64, 16)
    photo = read_image(g.save_rgb(tmp_path / "in.png", np.dstack([rgb, alpha])))
    assert np.array_equal(to8(photo.alpha), alpha)
    back = read_image(write_image(photo, tmp_path / f"o.{ext}", **options))
    assert np.array_equal(to8(back.alpha), alpha)
    assert np.array_equal(to8(back.rgb), rgb)  # even under fully transparent pixels


def test_jpeg_output_composites_alpha_on_the_background_and_says_so(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:, 8:] = 255
    photo = read_image(g.save_rgb(tmp_path / "in.png", np.dstack([rgb, alpha])))
    with pytest.warns(AlphaDroppedWarning, match="o.jpg"):
        out = write_image(photo, tmp_path / "o.jpg", background=(1.0, 0.0, 0.0), quality=100)
    back = to8(read_image(out).rgb).astype(int)
    assert np.abs(back[8, 2] - [255, 0, 0]).max() <= 3  # transparent: the background shows
    assert np.abs(back[8, 13] - [0, 0, 0]).max() <= 3  # opaque: the photo shows


# --- EXIF orientation -----------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [6, 8])
def test_orientation_is_applied_and_reset(tmp_path, orientation):
    rgb = g.marked_rgb(48, 32)  # red marker at the stored top-left corner
    path = g.save_rgb(tmp_path / "in.jpg", rgb, quality=98,
                      exif=g.exif_block(orientation, 48, 32))
    photo = read_image(path)
    assert (photo.width, photo.height) == (32, 48)
    # 6: the camera was turned clockwise, so the stored top-left ends at the top-right;
    # 8: counter-clockwise, so it ends at the bottom-left.
    corner = photo.rgb[1, -2] if orientation == 6 else photo.rgb[-2, 1]
    assert np.abs(to8(corner).astype(int) - g.RED).max() < 30
    assert exifmod.orientation(photo.exif) == 1
    for ext in ("jpg", "png", "webp", "tif"):
        out = write_image(photo, tmp_path / f"o.{ext}")
        ifd0, sub = g.exif_tags(Image.open(out).getexif().tobytes())
        assert ifd0[0x0112] == 1, ext
        assert (sub[0xA002], sub[0xA003]) == (32, 48), ext
        again = read_image(out)
        assert (again.width, again.height) == (32, 48), ext


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_orientations_match_pillow(tmp_path, orientation):
    rgb = g.marked_rgb(6, 4)
    path = g.save_rgb(tmp_path / "in.png", rgb, exif=g.exif_block(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(to8(read_image(path).rgb), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_to_16bit_tiff_and_alpha(tmp_path, orientation):
    v = g.values16()
    alpha = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000
    tifffile.imwrite(tmp_path / "a.tif", np.dstack([v, alpha]), photometric="rgb",
                     extrasamples=["unassalpha"], extratags=[(274, 3, 1, orientation, True)])

    def upright(channel: np.ndarray) -> np.ndarray:  # Pillow's reading of the same tag
        im = Image.fromarray(channel)
        im.getexif()[0x0112] = orientation
        return np.asarray(ImageOps.exif_transpose(im))

    photo = read_image(tmp_path / "a.tif")
    for c in range(3):
        assert np.array_equal(to16(photo.rgb[..., c]), upright(v[..., c]))
    assert np.array_equal(to16(photo.alpha), upright(alpha))


# --- metadata -------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_icc_profile_bytes_survive(tmp_path, ext):
    profile = g.rgb_profile()
    photo = read_image(g.save_rgb(tmp_path / "in.png", g.marked_rgb(), icc_profile=profile))
    assert photo.icc_profile == profile
    out = write_image(photo, tmp_path / f"o.{ext}")
    assert read_image(out).icc_profile == profile
    assert Image.open(out).info["icc_profile"] == profile  # other programs see it too
    ImageCms.ImageCmsProfile(io.BytesIO(Image.open(out).info["icc_profile"]))


def test_icc_profile_survives_16bit_output(tmp_path):
    profile = g.rgb_profile()
    photo = Photo(rgb=g.values16(), icc_profile=profile, bit_depth=16)
    for ext in LOSSLESS:
        out = write_image(photo, tmp_path / f"o.{ext}")
        assert Image.open(out).info["icc_profile"] == profile, ext
        assert read_image(out).bit_depth == 16


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_exif_fields_survive(tmp_path, ext):
    photo = read_image(g.save_rgb(tmp_path / "in.jpg", g.marked_rgb(), quality=95,
                                  exif=g.exif_block(3, 48, 32)))
    out = write_image(photo, tmp_path / f"o.{ext}")
    ifd0, sub = g.exif_tags(Image.open(out).getexif().tobytes())
    assert ifd0[0x010F] == "Finescale Camera Co."
    assert ifd0[0x0110] == "FS-1 Mark II"
    assert ifd0[0x0132] == "2024:05:06 07:08:09"
    assert ifd0[0x0112] == 1
    assert sub[0x9003] == "2024:05:06 07:08:00"


def test_exif_survives_16bit_output(tmp_path):
    photo = Photo(rgb=g.values16(), exif=g.exif_block(1, 5, 4), bit_depth=16)
    for ext in LOSSLESS:
        ifd0, sub = g.exif_tags(read_image(write_image(photo, tmp_path / f"o.{ext}")).exif)
        assert ifd0[0x0110] == "FS-1 Mark II" and sub[0x9003] == "2024:05:06 07:08:00", ext


def test_exif_pixel_size_follows_the_upscaled_pixels(tmp_path):
    photo = read_image(g.save_rgb(tmp_path / "in.jpg", g.marked_rgb(), quality=95,
                                  exif=g.exif_block(1, 48, 32)))
    big = photo.with_pixels(np.repeat(np.repeat(photo.rgb, 4, axis=0), 4, axis=1))
    _, sub = g.exif_tags(read_image(write_image(big, tmp_path / "o.jpg")).exif)
    assert (sub[0xA002], sub[0xA003]) == (192, 128)


def test_maker_note_bytes_are_not_rewritten(tmp_path):
    photo = read_image(g.save_rgb(tmp_path / "in.jpg", g.marked_rgb(), quality=95,
                                  exif=g.exif_block(6, 48, 32, maker_note=True)))
    for ext in ("jpg", "png", "webp"):
        out = write_image(photo, tmp_path / f"o.{ext}")
        assert g.MAKER_NOTE in Image.open(out).info["exif"], ext


def test_tiff_exif_is_read_from_the_tiff_directory(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", g.marked_rgb(), photometric="rgb",
                     extratags=[(271, "s", 0, "Finescale Camera Co.", True),
                                (272, "s", 0, "FS-1 Mark II", True)])
    photo = read_image(tmp_path / "a.tif")
    ifd0, _ = g.exif_tags(photo.exif)
    assert ifd0[0x010F] == "Finescale Camera Co." and ifd0[0x0110] == "FS-1 Mark II"
    assert 273 not in ifd0 and 256 not in ifd0  # strip layout is not photo metadata
    out = read_image(write_image(photo, tmp_path / "o.jpg")).exif
    assert g.exif_tags(out)[0][0x0110] == "FS-1 Mark II"


@pytest.mark.parametrize("ext", ["png", "jpg", "tif", "bmp"])
def test_dpi_survives(tmp_path, ext):
    photo = read_image(g.save_rgb(tmp_path / "in.png", g.marked_rgb(), dpi=(300, 300)))
    assert photo.dpi == (300.0, 300.0)
    assert read_image(write_image(photo, tmp_path / f"o.{ext}")).dpi == (300.0, 300.0)


def test_dpi_survives_16bit_png(tmp_path):
    photo = Photo(rgb=g.values16(), dpi=(240.0, 240.0), bit_depth=16)
    out = write_image(photo, tmp_path / "o.png")
    assert Image.open(out).info["dpi"] == pytest.approx((240, 240), abs=0.01)


def test_written_files_are_read_by_independent_decoders(tmp_path):
    """Our chunks and TIFF directories must be valid for libpng, libtiff and tifffile."""
    photo = Photo(rgb=g.values16(), alpha=np.full((4, 5), 40000, np.uint16),
                  icc_profile=g.rgb_profile(), exif=g.exif_block(1), dpi=(72.0, 72.0),
                  bit_depth=16)
    for ext in LOSSLESS:
        out = write_image(photo, tmp_path / f"o.{ext}")
        bgra = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(bgra[..., 2::-1], g.values16()), ext
        Image.open(out).load()
    with tifffile.TiffFile(tmp_path / "o.tif") as t:
        page = t.pages[0]
        assert np.array_equal(page.asarray()[..., :3], g.values16())
        assert page.tags["Model"].value == "FS-1 Mark II"
        assert page.tags["ExifTag"].value["DateTimeOriginal"] == "2024:05:06 07:08:00"
        assert page.tags["InterColorProfile"].value == g.rgb_profile()


def test_jpeg_quality_and_subsampling_are_honoured(tmp_path):
    photo = read_image(g.save_rgb(tmp_path / "in.png", g.marked_rgb(96, 96)))
    small = write_image(photo, tmp_path / "q30.jpg", quality=30).stat().st_size
    large = write_image(photo, tmp_path / "q95.jpg", quality=95).stat().st_size
    assert small < large
    write_image(photo, tmp_path / "s444.jpg", subsampling="4:4:4")
    write_image(photo, tmp_path / "s420.jpg", subsampling="4:2:0")
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "s444.jpg")) == 0
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "s420.jpg")) == 2


def test_webp_lossy_and_lossless(tmp_path):
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)
    photo = read_image(g.save_rgb(tmp_path / "in.png", noisy))
    lossy = write_image(photo, tmp_path / "a.webp", quality=60).stat().st_size
    lossless = write_image(photo, tmp_path / "b.webp", lossless=True).stat().st_size
    assert lossy < lossless
    assert np.array_equal(to8(read_image(tmp_path / "b.webp").rgb), noisy)
    assert not np.array_equal(to8(read_image(tmp_path / "a.webp").rgb), noisy)


# --- atomic writes and refusals -------------------------------------------------------------
@pytest.fixture
def photo(tmp_path) -> Photo:
    return read_image(g.save_rgb(tmp_path / "in.png", g.marked_rgb()))


def test_written_file_has_ordinary_permissions(tmp_path, photo):
    out = write_image(photo, tmp_path / "o.png")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, photo, monkeypatch):
    target = tmp_path / "o.png"
    target.write_bytes(b"previous result")

    def interrupted(job, f):
        f.write(b"\x89PNG half a file")
        raise KeyboardInterrupt

    monkeypatch.setitem(imageio._ENCODERS, "PNG", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(photo, target)
    assert target.read_bytes() == b"previous result"
    assert only_files(tmp_path) == ["in.png", "o.png"]


def test_failed_first_write_leaves_nothing(tmp_path, photo, monkeypatch):
    def broken(job, f):
        f.write(b"partial")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setitem(imageio._ENCODERS, "TIFF", broken)
    with pytest.raises(WriteError, match="o.tif"):
        write_image(photo, tmp_path / "o.tif")
    assert only_files(tmp_path) == ["in.png"]


def test_disk_full_is_one_clear_error(tmp_path, photo, monkeypatch):
    def full(job, f):
        f.write(b"some bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(imageio._ENCODERS, "JPEG", full)
    with pytest.raises(DiskFullError) as err:
        write_image(photo, tmp_path / "big.jpg")
    assert "big.jpg" in str(err.value) and "space" in str(err.value)
    assert only_files(tmp_path) == ["in.png"]


def test_disk_full_at_fsync(tmp_path, photo, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio.os, "fsync", no_space)
    with pytest.raises(DiskFullError, match="o.png"):
        write_image(photo, tmp_path / "o.png")
    assert only_files(tmp_path) == ["in.png"]


def test_the_input_file_is_never_overwritten(tmp_path, photo):
    before = photo.source.read_bytes()
    with pytest.raises(SameFileError, match="in.png"):
        write_image(photo, photo.source)
    with pytest.raises(SameFileError):
        write_image(photo, tmp_path / "." / "in.png", format="JPEG")
    os.link(photo.source, tmp_path / "hardlink.png")
    with pytest.raises(SameFileError):
        write_image(photo, tmp_path / "hardlink.png")
    assert photo.source.read_bytes() == before


def test_overwrite_false_refuses_an_existing_file(tmp_path, photo):
    (tmp_path / "o.png").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="o.png"):
        write_image(photo, tmp_path / "o.png", overwrite=False)
    assert (tmp_path / "o.png").read_bytes() == b"keep me"
    write_image(photo, tmp_path / "new.png", overwrite=False)
    assert np.array_equal(to8(read_image(tmp_path / "new.png").rgb), g.marked_rgb())
    write_image(photo, tmp_path / "o.png")  # the default replaces it
    assert read_image(tmp_path / "o.png").width == 48


def test_missing_folder_and_unknown_extension(tmp_path, photo):
    with pytest.raises(WriteError, match="does not exist"):
        write_image(photo, tmp_path / "nope" / "o.png")
    with pytest.raises(UnsupportedFormatError, match="o.xyz"):
        write_image(photo, tmp_path / "o.xyz")
    write_image(photo, tmp_path / "o.xyz", format="png")
    assert Image.open(tmp_path / "o.xyz").format == "PNG"


def test_webp_size_limit_is_a_clear_error(tmp_path):
    wide = Photo(rgb=np.zeros((1, 16384, 3), np.uint8))
    with pytest.raises(WriteError, match="o.webp"):
        write_image(wide, tmp_path / "o.webp")
    assert only_files(tmp_path) == []


# --- malformed inputs -----------------------------------------------------------------------
def _truncated(path, keep: float):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def malformed(tmp_path) -> dict:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    cases = {}
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = (ImageReadError, "empty")
    cases["cut.jpg"] = (ImageReadError, "truncated")
    _truncated(g.save_rgb(tmp_path / "cut.jpg", rgb, quality=90), 0.5)
    cases["cut.png"] = (ImageReadError, "truncated")
    _truncated(g.save_rgb(tmp_path / "cut.png", rgb), 0.5)
    cases["cut16.png"] = (ImageReadError, "truncated")
    _truncated(write_png16(tmp_path / "cut16.png", g.values16().repeat(16, 0)), 0.6)
    (tmp_path / "notes.png").write_text("shopping list: milk, eggs\n")
    cases["notes.png"] = (UnsupportedFormatError, "text")
    (tmp_path / "huge.png").write_bytes(g.png_header_only(100_000, 100_000))
    cases["huge.png"] = (ImageTooLargeError, "megapixels")
    (tmp_path / "x.png").mkdir()
    cases["x.png"] = (ImageReadError, "folder")
    cases["missing.png"] = (ImageReadError, "no such file")
    Image.new("RGB", (4, 4)).save(tmp_path / "anim.gif")
    cases["anim.gif"] = (UnsupportedFormatError, "not a PNG, JPEG")
    return cases


def test_malformed_files_each_give_their_own_clear_error(tmp_path, capfd):
    cases = malformed(tmp_path)
    before = only_files(tmp_path)
    for name, (kind, words) in cases.items():
        with pytest.raises(kind) as err:
            read_image(tmp_path / name)
        message = str(err.value)
        assert type(err.value) is kind, name
        assert name in message and words in message, message
        assert "\n" not in message and message.endswith("."), message
    assert only_files(tmp_path) == before
    out, errout = capfd.readouterr()
    assert out == "" and errout == ""  # no decoder chatter on the terminal


def test_huge_header_is_refused_without_decoding(tmp_path, monkeypatch):
    (tmp_path / "huge.png").write_bytes(g.png_header_only(100_000, 100_000))
    # Refused from the header: any decoding would call one of these (no clock involved,
    # so a busy machine cannot fail this).
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("pixels decoded"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would fail here
        with pytest.raises(ImageTooLargeError, match="10000 megapixels"):
            read_image(tmp_path / "huge.png")


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = g.save_rgb(tmp_path / "in.png", g.marked_rgb())  # 48×32 = 1536 pixels
    with pytest.raises(ImageTooLargeError, match="in.png"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=1536).width == 48
    monkeypatch.setenv("FINESCALE_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="FINESCALE_MAX_PIXELS"):
        read_image(path)
    monkeypatch.setenv("FINESCALE_MAX_PIXELS", "lots")
    with pytest.raises(FinescaleError, match="FINESCALE_MAX_PIXELS"):
        read_image(path)


# --- probe ----------------------------------------------------------------------------------
def test_probe_reports_headers(tmp_path):
    g.save_rgb(tmp_path / "o6.jpg", g.marked_rgb(), exif=g.exif_block(6),
               icc_profile=g.rgb_profile())
    info = probe_image(tmp_path / "o6.jpg")
    assert info == {"path": str(tmp_path / "o6.jpg"), "width": 32, "height": 48,
                    "format": "JPEG", "mode": "RGB", "bits": 8, "orientation": 6, "icc": True,
                    "exif": True, "alpha": False}
    write_png16(tmp_path / "a16.png", g.values16(), np.ones((4, 5), np.uint16))
    info = probe_image(tmp_path / "a16.png")
    assert (info["bits"], info["alpha"], info["exif"], info["icc"]) == (16, True, False, False)
    tifffile.imwrite(tmp_path / "a16.tif", np.dstack([g.values16(), g.values16()[..., 0]]),
                     photometric="rgb", extrasamples=["unassalpha"])
    info = probe_image(tmp_path / "a16.tif")
    assert (info["mode"], info["bits"], info["alpha"]) == ("RGBA", 16, True)


def test_probe_refuses_a_header_that_claims_more_than_the_limit_or_has_no_pixels(tmp_path):
    # Issue 18: `finescale info` said 100000x100000 and exit 0 for a 45-byte file.
    (tmp_path / "huge.png").write_bytes(g.png_header_only(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match=r"huge\.png: 100000x100000 is 10000 mega"):
        probe_image(tmp_path / "huge.png")
    header_only = g.png_header_only(300, 200)
    idat = header_only.index(b"IDAT") - 4
    iend = header_only.index(b"IEND") - 4
    (tmp_path / "empty.png").write_bytes(header_only[:idat] + header_only[iend:])
    with pytest.raises(ImageReadError, match=r"empty\.png: .*no pixel data"):
        probe_image(tmp_path / "empty.png")


def test_a_png_with_a_bad_checksum_is_damaged_for_probe_and_read(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(good)
    data = bytearray(good.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # a byte of the compressed pixels; the CRC no longer matches
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    for fn in (probe_image, read_image):
        with pytest.raises(ImageReadError, match=r"bad\.png: the file is damaged .*IDAT"):
            fn(bad)


def test_a_small_file_claiming_a_huge_picture_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.delenv("FINESCALE_MAX_PIXELS", raising=False)
    sparse = tmp_path / "flat.png"
    Image.new("L", (5000, 4000), 0).save(sparse)  # 20 MP of one grey in about 20 KB
    assert sparse.stat().st_size * 256 < 20_000_000
    with pytest.raises(ImageTooLargeError, match=r"flat\.png: its header claims 5000x4000 "
                                                 r"\(20 megapixels\) from only \d+ KB"):
        read_image(sparse)
    assert probe_image(sparse, max_pixels=10**9)["width"] == 5000  # a limit given: accepted


def test_photo_rejects_mismatched_arrays():
    with pytest.raises(ValueError):
        Photo(rgb=np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        Photo(rgb=np.zeros((4, 4, 3), np.float32), alpha=np.zeros((3, 4), np.float32))
    p = Photo(rgb=np.zeros((4, 6, 3), np.uint8), alpha=np.full((4, 6), 255, np.uint8))
    assert (p.height, p.width) == (4, 6)
    assert p.as_float().dtype == np.float32 and float(p.alpha_as_float().max()) == 1.0


def test_damaged_resolution_metadata_is_dropped_not_a_crash(tmp_path):
    from PIL import TiffImagePlugin

    rgb = np.full((6, 8, 3), 120, np.uint8)
    nan_res = TiffImagePlugin.IFDRational(0, 0)  # 0/0: NaN dots per inch
    Image.fromarray(rgb).save(tmp_path / "nan.tif", tiffinfo={282: nan_res, 283: nan_res,
                                                              296: 2})
    assert read_image(tmp_path / "nan.tif").dpi is None
    huge = Image.fromarray(rgb)
    huge.save(tmp_path / "huge.tif", dpi=(4294967295, 4294967295))
    photo = read_image(tmp_path / "huge.tif")
    assert photo.dpi is None
    photo.dpi = (4294967295.0, float("inf"))  # what an API caller may hand over
    out = write_image(photo, tmp_path / "out.png")
    with Image.open(out) as im:
        assert "dpi" not in im.info and im.size == (8, 6)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_overwrite_replaces_only_regular_files(tmp_path):
    photo = Photo(rgb=np.zeros((4, 4, 3), np.float32))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    for target, kind in ((fifo, "named pipe"), (folder, "folder")):
        with pytest.raises(WriteError, match=f"{target.name}: it is a {kind}.*only regular"):
            write_image(photo, target, overwrite=True)
    assert fifo.is_fifo() and folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png", "pipe.png"]
    if os.path.exists("/dev/full"):
        with pytest.raises(WriteError, match="it is a device"):
            write_image(photo, "/dev/full", format="PNG", overwrite=True)


def test_a_device_is_not_called_empty(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    with pytest.raises(ImageReadError, match=r"/dev/zero: it is a device, not an image file"):
        read_image("/dev/zero")


# --- greyscale stays greyscale (issue 18) ---------------------------------------------------
def _grey_ramp(h: int = 12, w: int = 16, top: int = 255) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * top // (h * w - 1)).astype(
        np.uint16 if top > 255 else np.uint8)


@pytest.mark.parametrize("src_name, out_name, want_mode", [
    ("grey.jpg", "out.jpg", "L"),
    ("grey.png", "out.png", "L"),
    ("grey.png", "out.tif", "L"),
    ("grey.png", "out.bmp", "L"),
])
def test_a_greyscale_source_is_written_greyscale(tmp_path, src_name, out_name, want_mode):
    Image.fromarray(_grey_ramp(), "L").save(tmp_path / src_name, quality=95)
    photo = read_image(tmp_path / src_name)
    assert photo.grey and photo.rgb.shape[2] == 3  # three channels for the model
    out = write_image(photo, tmp_path / out_name)
    with Image.open(out) as im:
        assert im.mode == want_mode or (out_name.endswith(".bmp") and im.mode in ("L", "P"))
        back = np.asarray(im.convert("L"), np.int16)
    assert np.abs(back - np.asarray(Image.open(tmp_path / src_name), np.int16)).max() <= 2


def test_sixteen_bit_grey_and_grey_with_alpha_keep_their_channels(tmp_path):
    ramp16 = _grey_ramp(top=65535)
    cv2.imwrite(str(tmp_path / "g16.png"), ramp16)
    photo = read_image(tmp_path / "g16.png")
    assert photo.grey and photo.bit_depth == 16
    write_image(photo, tmp_path / "o16.png")
    back = cv2.imread(str(tmp_path / "o16.png"), cv2.IMREAD_UNCHANGED)
    assert back.ndim == 2 and back.dtype == np.uint16
    assert np.abs(back.astype(np.int64) - ramp16).max() <= 1

    la = np.dstack([_grey_ramp(), np.full((12, 16), 200, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    write_image(read_image(tmp_path / "la.png"), tmp_path / "o_la.png")
    with Image.open(tmp_path / "o_la.png") as im:
        assert im.mode == "LA"
        assert np.array_equal(np.asarray(im), la)


def test_a_colour_source_is_not_made_grey(tmp_path):
    Image.fromarray(np.full((8, 8, 3), (200, 30, 30), np.uint8)).save(tmp_path / "red.png")
    photo = read_image(tmp_path / "red.png")
    assert not photo.grey
    with Image.open(write_image(photo, tmp_path / "out.jpg")) as im:
        assert im.mode == "RGB"


# --- phone formats (issue 18) ---------------------------------------------------------------
def _needs(fmt: str) -> None:
    from sr_core import formats

    if fmt not in formats.read_formats():
        pytest.skip(f"this install cannot read {fmt} (pillow-heif / Pillow AVIF missing)")


def test_heic_from_a_phone_is_read_upright_with_its_profile(tmp_path):
    _needs("HEIF")
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (250, 10, 10)  # red on the left
    icc = g.rgb_profile()
    Image.fromarray(rgb).save(tmp_path / "IMG_0001.HEIC", format="HEIF", quality=95,
                              exif=g.exif_block(orientation=6), icc_profile=icc)
    photo = read_image(tmp_path / "IMG_0001.HEIC")
    assert (photo.width, photo.height, photo.format) == (20, 40, "HEIF")  # turned upright
    assert photo.icc_profile == icc
    top = photo.rgb[:15].mean(axis=(0, 1))
    assert top[0] > 0.8 and top[1] < 0.2  # rotated clockwise: the red half is on top
    info = probe_image(tmp_path / "IMG_0001.HEIC")
    assert (info["width"], info["height"], info["format"]) == (20, 40, "HEIF")


def test_ten_bit_heic_keeps_more_than_eight_bits(tmp_path):
    _needs("HEIF")
    import pillow_heif

    ramp = np.linspace(0, 1023, 32 * 32 * 3).reshape(32, 32, 3).astype(np.uint16) * 64
    pillow_heif.from_bytes(mode="RGB;16", size=(32, 32), data=ramp.tobytes()).save(
        tmp_path / "ten.heic", quality=-1)
    photo = read_image(tmp_path / "ten.heic")
    assert photo.bit_depth == 16 and probe_image(tmp_path / "ten.heic")["bits"] == 10
    assert len(np.unique(photo.rgb)) > 256  # 8 bits could hold 256 levels at most


def _ten_bit_avif(path, orientation: int = 1) -> np.ndarray:
    """A 10-bit AVIF ramp (imagecodecs writes it; Pillow's encoder has 8 bits only)."""
    imagecodecs = pytest.importorskip("imagecodecs", reason="writes the 10-bit test file")
    ramp = np.linspace(0, 1023, 24 * 40 * 3).reshape(24, 40, 3).astype(np.uint16)
    path.write_bytes(imagecodecs.avif_encode(ramp, level=100, bitspersample=10))
    return ramp


def test_ten_bit_avif_keeps_more_than_eight_bits(tmp_path):
    _needs("AVIF")
    ramp = _ten_bit_avif(tmp_path / "ten.avif")
    photo = read_image(tmp_path / "ten.avif")
    assert probe_image(tmp_path / "ten.avif")["bits"] == 10
    assert photo.bit_depth == 16 and (photo.width, photo.height) == (40, 24)
    assert len(np.unique(photo.rgb)) > 256  # 8 bits could hold 256 levels at most
    assert np.abs(photo.rgb - ramp / 1023.0).max() < 2 / 1023  # lossless at level 100


def test_ten_bit_avif_without_a_high_bit_decoder_is_read_at_eight_bits(tmp_path, monkeypatch):
    _needs("AVIF")
    ramp = _ten_bit_avif(tmp_path / "ten.avif")
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import imagecodecs -> ImportError
    photo = read_image(tmp_path / "ten.avif")
    assert photo.bit_depth == 8 and (photo.width, photo.height) == (40, 24)
    assert np.abs(photo.rgb - ramp / 1023.0).max() < 3 / 255


@pytest.mark.parametrize("fmt, suffix", [("AVIF", ".avif"), ("HEIF", ".heic")])
def test_avif_and_heic_are_written_and_read_back(tmp_path, fmt, suffix):
    _needs(fmt)
    rgb = np.zeros((16, 24, 3), np.float32)
    rgb[..., 1] = np.linspace(0, 1, 24)[None, :]
    out = write_image(Photo(rgb=rgb, dpi=(300.0, 300.0)), tmp_path / f"out{suffix}",
                      quality=90)
    back = read_image(out)
    assert (back.width, back.height, back.format) == (24, 16, fmt)
    assert np.abs(back.rgb - rgb).max() < 0.1


def test_every_place_takes_its_suffixes_from_one_list():
    from sr_core import batch, formats

    suffixes = formats.read_suffixes()
    assert {".png", ".jpg", ".tif", ".webp", ".bmp"} <= set(suffixes)
    for fmt in formats.read_formats():
        for s in formats.SUFFIXES[fmt]:
            assert s in suffixes and f"*{s}" in formats.dialog_filter()
    if "HEIF" in formats.read_formats():
        assert suffixes[".heic"] == "HEIF" and "HEIC" in formats.describe()
    assert batch.OUTPUT_FORMATS["heic"] == ("HEIF", "heic")


def test_a_valid_float_tiff_is_called_unsupported_not_damaged(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "hdr.tif", np.full((8, 8, 3), 0.5, np.float32),
                     photometric="rgb")
    with pytest.raises(UnsupportedFormatError, match=r"hdr\.tif: its 32-bit floating-point "
                                                     r"samples are not supported"):
        read_image(tmp_path / "hdr.tif")


@pytest.mark.parametrize("code, words", [(errno.EROFS, "the disk is read-only"),
                                         (errno.ENAMETOOLONG, "the name is too long")])
def test_read_only_disk_and_long_names_are_one_sentence_with_nothing_left(
        tmp_path, photo, monkeypatch, code, words):
    def refuse(job, f):
        f.write(b"half a picture")
        raise OSError(code, os.strerror(code))

    monkeypatch.setitem(imageio._ENCODERS, "PNG", refuse)
    with pytest.raises(WriteError) as err:
        write_image(photo, tmp_path / "out.png")
    assert str(err.value) == str(err.value).splitlines()[0]
    assert "out.png" in str(err.value) and words in str(err.value)
    assert only_files(tmp_path) == ["in.png"]
