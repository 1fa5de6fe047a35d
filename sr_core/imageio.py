"""Photo-faithful image reading and atomic writing.

A :class:`Photo` is the pixels (float32 RGB in [0, 1], or full-scale uint8/uint16 for huge
engine outputs), the alpha channel beside them, and what a photographer expects to survive
an upscale: the ICC profile (bytes, unchanged), EXIF (orientation applied to the pixels,
written back as 1 with the new pixel size), DPI and the source's bit depth.

Readers: Pillow for headers, metadata and 8-bit pixels; OpenCV for 16-bit PNG/TIFF pixels
(Pillow reduces 16-bit RGB to 8 bits). Writers: OpenCV for PNG (8/16-bit) with our own
iCCP/eXIf/pHYs chunks, Pillow for JPEG/WebP/BMP, tifffile for TIFF (8/16-bit) with EXIF and
ICC added by :mod:`sr_core.exif`. Every write goes to a temporary file in the target folder
that is fsynced and renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import math
import mmap
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageCms

from . import atomic
from . import exif as exifmod
from . import formats as formatsmod
from .errors import (
    DiskFullError,
    FinescaleError,
    ImageReadError,
    ImageTooLargeError,
    OutputExistsError,
    SameFileError,
    UnsupportedFormatError,
    WriteError,
)

__all__ = ["AlphaDroppedWarning", "check_output_size", "check_replaceable", "default_max_pixels",
           "DEFAULT_MAX_PIXELS", "MAX_PIXELS_ENV", "output_format", "Photo", "probe_image",
           "READ_FORMATS", "read_image", "sane_dpi", "write_encoded", "write_error",
           "WRITE_FORMATS", "write_image"]


#: Largest image (width × height) read_image accepts unless told otherwise; override with the
#: environment variable FINESCALE_MAX_PIXELS or read_image(max_pixels=...).
DEFAULT_MAX_PIXELS = 200_000_000
MAX_PIXELS_ENV = "FINESCALE_MAX_PIXELS"

# Our own guard (read_image's max_pixels, checked from the header) replaces Pillow's, which
# would warn, or refuse with its own message, before we could look at the size.
Image.MAX_IMAGE_PIXELS = None

#: The formats read and written without optional plugins (see :mod:`sr_core.formats`).
READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
WRITE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
_PILLOW_FORMATS = formatsmod.PILLOW_NAMES
#: A file that declares more than this many pixels per byte of file, and more than
#: _SPARSE_MIN_PIXELS in all, is refused as a decompression bomb. Real photos hold at most a
#: few pixels per byte; deflate's best case is about 1000 bytes per byte, so this only
#: catches flat or truncated files whose header claims a huge picture. Setting
#: FINESCALE_MAX_PIXELS explicitly turns the check off.
_SPARSE_PIXELS_PER_BYTE = 256
_SPARSE_MIN_PIXELS = 16_000_000
#: Pillow modes of greyscale sources (written back greyscale).
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
#: Formats that store one grey channel (with alpha: PNG at 8 bits, TIFF).
_GREY_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
#: Resolutions outside this range (dots per inch) are damaged metadata and are dropped.
_DPI_RANGE = (1.0, 100_000.0)
_SIXTEEN_BIT = ("PNG", "TIFF")
_WITH_ALPHA = ("PNG", "WEBP", "TIFF")
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1,
             "BMP": 2**31 - 1, "HEIF": 16_384, "AVIF": 65_536}
_SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"II+\x00", b"MM\x00+")
_CHUNK_BYTES = 64 << 20  # pixel conversions work on row blocks of about this size
# LittleCMS values (plain ints: Pillow's enums for them are newer than our minimum Pillow).
# Relative colorimetric with black-point compensation is what photo editors use by default.
_RELATIVE_COLORIMETRIC = 1
_BLACK_POINT_COMPENSATION = 0x2000


class AlphaDroppedWarning(UserWarning):
    """The output format has no alpha channel: the photo was composited on a background."""


@dataclass
class Photo:
    """Pixels plus the metadata that must survive an upscale.

    ``rgb`` is H×W×3, float32 in [0, 1] or full-scale uint8/uint16; ``alpha`` is H×W in the
    same convention, or None. ``exif`` is a JPEG-style block (``Exif\\0\\0``...) whose
    orientation is 1: the orientation has been applied to the pixels.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    bit_depth: int = 8
    format: str | None = None
    source: Path | None = None
    #: The source was greyscale (L, LA, I;16): ``rgb`` holds three equal channels for the
    #: model, and write_image writes one grey channel where the format has it.
    grey: bool = False

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"Photo.rgb must be H×W×3, got shape {self.rgb.shape}")
        for name, a in (("rgb", self.rgb), ("alpha", self.alpha)):
            if a is not None and a.dtype not in (np.float32, np.uint8, np.uint16):
                raise ValueError(f"Photo.{name} must be float32, uint8 or uint16, not {a.dtype}")
        if self.alpha is not None and self.alpha.shape != self.rgb.shape[:2]:
            raise ValueError(f"Photo.alpha must be {self.rgb.shape[:2]}, got {self.alpha.shape}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"Photo.bit_depth must be 8 or 16, not {self.bit_depth}")

    @property
    def height(self) -> int:
        """Rows of pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Columns of pixels."""
        return int(self.rgb.shape[1])

    def as_float(self) -> np.ndarray:
        """The colour as float32 in [0, 1] (the array itself when it already is)."""
        return _as_float(self.rgb)

    def alpha_as_float(self) -> np.ndarray | None:
        """The alpha as float32 in [0, 1], or None."""
        return None if self.alpha is None else _as_float(self.alpha)

    def with_pixels(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> Photo:
        """A new Photo with these pixels (e.g. upscaled) and this photo's metadata."""
        return dataclasses.replace(self, rgb=rgb, alpha=alpha)


# --- limits ---------------------------------------------------------------------------------
def default_max_pixels() -> int:
    """The pixel limit: FINESCALE_MAX_PIXELS if set, else DEFAULT_MAX_PIXELS."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    if not raw.isdigit() or int(raw) <= 0:
        raise FinescaleError(f"{MAX_PIXELS_ENV} must be a positive whole number, not {raw!r}.")
    return int(raw)


# --- reading --------------------------------------------------------------------------------
def _read_error(path: Path | str, problem: str) -> ImageReadError:
    return ImageReadError(f"Cannot read {path}: {problem}.")


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is ("a folder", "a device", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_input(path: Path) -> int:
    """Refuse what is not a non-empty regular file; return its size in bytes."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _read_error(path, "no such file") from None
    except OSError as e:
        raise _read_error(path, (e.strerror or "the file cannot be accessed").lower()) from None
    kind = _not_regular(st.st_mode)
    if kind is not None:
        raise _read_error(path, f"it is {kind}, not an image file")
    if st.st_size == 0:
        raise _read_error(path, "the file is empty (0 bytes)")
    return int(st.st_size)


def _read_bytes(path: Path) -> bytes:
    _check_input(path)
    try:
        return path.read_bytes()
    except PermissionError:
        raise _read_error(path, "permission denied") from None
    except OSError as e:
        raise _read_error(path, e.strerror or "the file cannot be read") from None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _open_pillow(path: Path, fp: BinaryIO) -> Image.Image:
    """Open the header with Pillow, restricted to the formats we read."""
    Image.init()  # registers every plugin; open() alone knows only the common five
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(fp, formats=list(formatsmod.read_formats()) + ["MPO"])
    except MemoryError:
        raise
    except Exception as e:  # Pillow's plugins raise many types for damaged headers
        fp.seek(0)
        head = fp.read(512)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            kind = _tiff_sample_kind(fp)
            if kind is not None:
                raise UnsupportedFormatError(
                    f"Cannot read {path}: its {kind} samples are not supported (8 and 16-bit "
                    "integer TIFFs are).") from e
        if head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            raise _read_error(path, "the file is damaged or truncated") from e
        kind = "it holds text, not an image" if _looks_like_text(head) else \
            f"it is not a {formatsmod.describe()} image"
        if _heif_brand(head) and "HEIF" not in formatsmod.read_formats():
            kind = "HEIC/HEIF images need the pillow-heif package (pip install pillow-heif)"
        raise UnsupportedFormatError(f"Cannot read {path}: {kind}.") from e


def _heif_brand(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim",
                                                   b"heis", b"mif1", b"msf1")


def _tiff_sample_kind(fp: BinaryIO) -> str | None:
    """"32-bit floating-point" (or such) for a TIFF whose header tifffile reads but Pillow
    cannot decode, else None (then the file is damaged)."""
    import tifffile

    try:
        fp.seek(0)
        with tifffile.TiffFile(fp) as tf:
            page = tf.pages.first
            dtype = page.dtype
    except Exception:  # noqa: BLE001 - tifffile raises many types for damaged files
        return None
    if dtype is None:
        return None
    what = {"f": "floating-point", "i": "signed integer", "u": "integer",
            "c": "complex"}.get(dtype.kind, dtype.kind)
    return f"{dtype.itemsize * 8}-bit {what}"


def _check_size(path: Path, width: int, height: int, limit: int, file_bytes: int | None = None,
                sparse_check: bool = True) -> None:
    """Refuse more pixels than ``limit``, and a small file that claims a huge picture."""
    pixels = width * height
    if width <= 0 or height <= 0:
        raise _read_error(path, f"its header claims {width}x{height} pixels")
    if pixels > limit:
        raise ImageTooLargeError(
            f"Cannot read {path}: {width}x{height} is {pixels / 1e6:.0f} megapixels, "
            f"above the limit of {limit / 1e6:g} megapixels (raise it with {MAX_PIXELS_ENV}).")
    if (sparse_check and file_bytes and pixels > _SPARSE_MIN_PIXELS
            and pixels > _SPARSE_PIXELS_PER_BYTE * file_bytes):
        raise ImageTooLargeError(
            f"Cannot read {path}: its header claims {width}x{height} "
            f"({pixels / 1e6:.0f} megapixels) from only {file_bytes / 1024:.0f} KB of data, "
            f"more than {_SPARSE_PIXELS_PER_BYTE} pixels per byte, so it is truncated or a "
            f"decompression bomb (set {MAX_PIXELS_ENV} to accept it).")


def _sparse_check_wanted(max_pixels: int | None) -> bool:
    """The pixels-per-byte check runs unless the caller or the environment set the limit."""
    return max_pixels is None and not os.environ.get(MAX_PIXELS_ENV, "").strip()


def _check_png_chunks(path: Path, data: bytes | mmap.mmap) -> None:
    """Walk a PNG's chunks: every CRC must match, and IDAT and IEND must be there."""
    pos, n, seen_idat = 8, len(data), False
    while pos + 12 <= n:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        end = pos + 12 + length
        if length > 2**31 - 1 or end > n:
            raise _read_error(path, f"the file is truncated (its {kind!r} chunk runs past "
                                    "the end)")
        crc = int.from_bytes(data[end - 4:end], "big")
        if zlib.crc32(data[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
            raise _read_error(path, f"the file is damaged (the checksum of its "
                                    f"{kind.decode('latin-1')} chunk does not match)")
        seen_idat |= kind == b"IDAT"
        if kind == b"IEND":
            break
        pos = end
    if not seen_idat:
        raise _read_error(path, "the file is damaged or truncated (it holds no pixel data)")


def _png_idat_parts(data: bytes | mmap.mmap) -> Iterator[bytes]:
    """The concatenated IDAT payloads of a PNG whose chunks were already checked."""
    pos, n = 8, len(data)
    while pos + 12 <= n:
        length = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"IDAT":
            yield bytes(data[pos + 8:pos + 8 + length])
        pos += 12 + length


def _check_png_pixels(path: Path, data: bytes | mmap.mmap, im: Image.Image) -> None:
    """Inflate the pixel stream (discarding it, in bounded steps) and check its length.

    Costs one pass of zlib over the picture, without holding it: a stream that is not zlib,
    or that ends before the header's size is filled, is damaged.
    """
    bits = {"1": 1, "L": 8, "P": 8, "LA": 16, "RGB": 24, "RGBA": 32, "I": 16, "I;16": 16,
            "I;16B": 16}.get(im.mode)
    head = bytes(data[16:29])
    if len(head) < 13:
        return
    width, height, depth, colour, interlace = (int.from_bytes(head[0:4], "big"),
                                               int.from_bytes(head[4:8], "big"), head[8],
                                               head[9], head[12])
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if samples is None or bits is None or interlace:
        return  # Pillow refused odd ones already; interlaced sizes are not worth the sums
    need = height * (1 + (width * samples * depth + 7) // 8)
    z = zlib.decompressobj()
    got = 0
    try:
        for part in _png_idat_parts(data):
            while part and got < need:
                got += len(z.decompress(part, 1 << 20))
                part = z.unconsumed_tail
            if got >= need:
                return
        got += len(z.flush())
    except zlib.error:
        raise _read_error(path, "the file is damaged (its pixel data is not a valid "
                                "compressed stream)") from None
    if got < need:
        raise _read_error(path, "the file is truncated (its pixel data ends early)")


def _check_jpeg_end(path: Path, data: bytes | mmap.mmap) -> None:
    """A JPEG's scan must be followed by its end marker; a cut file has none."""
    sos = data.find(b"\xff\xda")
    if sos >= 0 and data.find(b"\xff\xd9", sos) < 0:
        raise _read_error(path, "the file is truncated (the picture data ends early)")


def _check_tiff_strips(path: Path, im: Image.Image, size: int) -> None:
    """Every strip or tile a TIFF lists must lie inside the file."""
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        offsets, counts = _tiff_tag(im, offsets_tag), _tiff_tag(im, counts_tag)
        if offsets is None or counts is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        if any(int(o) + int(c) > size for o, c in zip(offsets, counts, strict=False)):
            raise _read_error(path, "the file is truncated (its picture data ends early)")


def _check_bmp_size(path: Path, im: Image.Image, data: bytes | mmap.mmap) -> None:
    """An uncompressed BMP holds at least its rows of pixels after the pixel offset."""
    if len(data) < 34 or int.from_bytes(data[30:34], "little") not in (0, 3):
        return  # compressed (RLE): lengths vary
    offset = int.from_bytes(data[10:14], "little")
    bpp = int.from_bytes(data[28:30], "little")
    row = ((im.width * bpp + 31) // 32) * 4
    if offset + row * im.height > len(data):
        raise _read_error(path, "the file is truncated (its picture data ends early)")


def _check_data(path: Path, fmt: str, im: Image.Image, data: bytes | mmap.mmap) -> None:
    """Cheap checks that the file holds the data its header promises (for probe_image)."""
    if fmt == "PNG":
        _check_png_chunks(path, data)
        _check_png_pixels(path, data, im)
    elif fmt == "JPEG":
        _check_jpeg_end(path, data)
    elif fmt == "TIFF":
        _check_tiff_strips(path, im, len(data))
    elif fmt == "BMP":
        _check_bmp_size(path, im, data)


def _png_bit_depth(head: bytes) -> int:
    return head[24] if len(head) > 24 and head[12:16] == b"IHDR" else 8


def _tiff_tag(im: Image.Image, tag: int) -> Any:
    tags = getattr(im, "tag_v2", None)
    return tags.get(tag) if tags is not None else None


def _source_bits(im: Image.Image, fmt: str, head: bytes) -> int:
    """Bits per channel the file stores (1, 8, 16, 32)."""
    if fmt == "PNG":
        return 8 if im.mode == "P" else _png_bit_depth(head)
    if fmt == "TIFF":
        bps = _tiff_tag(im, 258)
        if bps:
            return int(max(bps) if isinstance(bps, tuple) else bps)
    if fmt == "HEIF":
        return int(im.info.get("bit_depth") or 8)  # 10 and 12 are common on phones
    if fmt == "AVIF":
        return _avif_bits(head)
    if im.mode.startswith("I;16"):
        return 16
    return 1 if im.mode == "1" else 8


def sane_dpi(dpi: Any) -> tuple[float, float] | None:
    """``dpi`` as two finite floats within 1..100000, or None for missing or damaged values."""
    try:
        x, y = (float(v) for v in dpi)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None
    lo, hi = _DPI_RANGE
    if not all(math.isfinite(v) and lo <= v <= hi for v in (x, y)):
        return None
    return x, y


def _dpi(im: Image.Image) -> tuple[float, float] | None:
    dpi = sane_dpi(im.info.get("dpi"))
    if dpi is None:
        return None

    def snap(v: float) -> float:
        # PNG and BMP store pixels per metre: 300 dpi comes back as 299.9994.
        return float(round(v)) if abs(v - round(v)) < 0.05 else float(v)

    return snap(float(dpi[0])), snap(float(dpi[1]))


def _icc_space(icc: bytes | None) -> bytes:
    return icc[16:20] if icc and len(icc) >= 128 else b""


def _cms_to_srgb(im: Image.Image, icc: bytes, mode: str) -> Image.Image | None:
    """Convert with the embedded profile to sRGB, or None if LittleCMS cannot use it."""
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(
            im, src, ImageCms.createProfile("sRGB"), outputMode=mode,
            renderingIntent=_RELATIVE_COLORIMETRIC, flags=_BLACK_POINT_COMPENSATION)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def _pillow_pixels(im: Image.Image, icc: bytes | None, path: Path
                   ) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """Decode with Pillow into (rgb or grey, alpha or None, the profile that still applies)."""
    mode = im.mode
    space = _icc_space(icc)
    if mode == "F":
        raise UnsupportedFormatError(
            f"Cannot read {path}: floating-point samples are not supported.")
    if "transparency" in im.info and mode in ("P", "L", "RGB"):
        im, mode = im.convert("RGBA"), "RGBA"
    if mode == "CMYK":
        converted = _cms_to_srgb(im, icc, "RGB") if space == b"CMYK" else None
        im, icc = (converted if converted is not None else im.convert("RGB")), None
        mode = "RGB"
    elif mode in ("L", "LA") and space == b"GRAY":
        converted = _cms_to_srgb(im.convert("L"), icc, "RGB")
        alpha = np.asarray(im)[..., 1] if mode == "LA" else None
        icc = None
        if converted is not None:
            return np.asarray(converted), alpha, None
    conversions = {"1": "L", "P": "RGB", "PA": "RGBA", "La": "LA", "RGBa": "RGBA",
                   "RGBX": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
    if mode in conversions:
        im = im.convert(conversions[mode])
    a = np.asarray(im)
    if im.mode == "I":  # 16-bit grey that Pillow widened to 32 bits
        a = np.clip(a, 0, 65535).astype(np.uint16)
    if icc and _icc_space(icc) != b"RGB ":
        icc = None  # a grey/CMYK/Lab profile does not describe the RGB pixels we return
    if a.ndim == 3 and a.shape[2] in (2, 4):  # LA or RGBA
        return (a[..., 0] if a.shape[2] == 2 else a[..., :3]), a[..., -1], icc
    return a, None, icc


def _cv2_pixels(data: bytes, path: Path, associated_alpha: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode 16-bit PNG/TIFF with OpenCV, in RGB order."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)  # damaged files are reported by us, in one sentence
    try:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        a = None
    finally:
        log.setLogLevel(level)
    if a is None:
        raise _read_error(path, "the file is damaged or truncated")
    alpha = None
    if a.ndim == 3 and a.shape[2] == 4:
        a, alpha = a[..., 2::-1], a[..., 3]
    elif a.ndim == 3 and a.shape[2] == 3:
        a = a[..., ::-1]
    elif a.ndim == 3 and a.shape[2] == 2:
        a, alpha = a[..., 0], a[..., 1]
    if alpha is not None and associated_alpha:
        a = _unpremultiply(a, alpha)
    return a, alpha


def _heif_high_bit_pixels(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 10/12-bit HEIF at full precision as uint16 (pillow-heif scales the samples to
    16 bits); libheif has applied the rotation and mirroring already, as for 8 bits."""
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    a = np.asarray(heif)
    if a.ndim == 3 and a.shape[2] == 4:
        return a[..., :3], a[..., 3]
    return a, None


def _avif_bits(data: bytes) -> int:
    """Bits per channel of an AVIF, from its ``pixi`` box (8 when there is none)."""
    # The box sits in the meta box at the start: size, "pixi", version and flags (4 bytes),
    # the channel count, then one depth byte per channel.
    i = data.find(b"pixi", 0, 1 << 16)
    if i < 4 or len(data) < i + 10 or data[i + 8] == 0:
        return 8
    return int(data[i + 9])


def _avif_high_bit_pixels(data: bytes, bits: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 10/12-bit AVIF at full precision as uint16 scaled to 16 bits (imagecodecs;
    Pillow's decoder gives 8 bits). Like Pillow, libavif leaves the rotation to the EXIF
    orientation that the caller applies."""
    import imagecodecs

    a = imagecodecs.avif_decode(data)
    top = (1 << bits) - 1
    a = np.rint(a.astype(np.float32) * (65535.0 / top)).clip(0, 65535).astype(np.uint16)
    if a.ndim == 3 and a.shape[2] == 4:
        return a[..., :3], a[..., 3]
    return a, None


def _high_bit_avif_decoder() -> bool:
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(getattr(imagecodecs, "AVIF", None), "available", False))


def _unpremultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    full = float(np.iinfo(rgb.dtype).max)
    a = alpha.astype(np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(a > 0, rgb.astype(np.float32) * full / a, 0.0)
    return np.clip(np.rint(out), 0, full).astype(rgb.dtype)


def _orient(a: np.ndarray | None, orientation: int) -> np.ndarray | None:
    """Apply an EXIF orientation so that the array is upright (as Pillow's exif_transpose)."""
    if a is None or orientation == 1:
        return a
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _as_float(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.float32:
        return a
    if a.dtype in (np.uint8, np.uint16):
        out = a.astype(np.float32)
        out /= float(np.iinfo(a.dtype).max)
        return out
    return a.astype(np.float32)


def _raw_exif(im: Image.Image, fmt: str, read: exifmod.Reader) -> bytes | None:
    if fmt == "TIFF":
        try:
            return exifmod.block_from_tiff(read)
        except exifmod.ExifFormatError:
            return None
    raw = im.info.get("exif")
    return bytes(raw) if raw else None


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Photo:
    """Read a PNG, JPEG, WebP, TIFF or BMP file into an upright :class:`Photo`.

    The size is checked against ``max_pixels`` (default :func:`default_max_pixels`) from the
    header, before any pixel is decoded. 16-bit PNG and TIFF keep 16-bit precision; CMYK is
    converted with its embedded profile when there is one. Raises ImageReadError,
    UnsupportedFormatError or ImageTooLargeError with one sentence naming the file.
    """
    p = Path(path)
    limit = default_max_pixels() if max_pixels is None else max_pixels
    data = _read_bytes(p)
    fp = io.BytesIO(data)
    im = _open_pillow(p, fp)
    with im:
        fmt = _PILLOW_FORMATS[im.format or ""]
        _check_size(p, im.width, im.height, limit, len(data), _sparse_check_wanted(max_pixels))
        if fmt == "PNG":
            _check_png_chunks(p, data)
        bits = _source_bits(im, fmt, data[: 1 << 16])
        if bits > 16:
            raise UnsupportedFormatError(
                f"Cannot read {p}: {bits}-bit samples are not supported (8 and 16 are).")
        icc = im.info.get("icc_profile") or None
        grey_source = im.mode in _GREY_MODES
        try:
            if bits > 8 and fmt == "HEIF":
                color, alpha = _heif_high_bit_pixels(data)
            elif bits > 8 and fmt == "AVIF" and _high_bit_avif_decoder():
                color, alpha = _avif_high_bit_pixels(data, bits)
                if color.shape[:2] != (im.height, im.width):  # a transform Pillow applied
                    im.load()
                    color, alpha, icc = _pillow_pixels(im, icc, p)
            elif bits == 16 and fmt in _SIXTEEN_BIT:
                pixels = exifmod.with_orientation_1(data) if fmt == "TIFF" else data
                color, alpha = _cv2_pixels(pixels, p, _tiff_tag(im, 338) in (1, (1,)))
                if _icc_space(icc) != b"RGB ":
                    icc = None
            else:
                im.load()
                color, alpha, icc = _pillow_pixels(im, icc, p)
        except FinescaleError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # Pillow raises many types for damaged data
            raise _read_error(p, "the file is damaged or truncated") from e
        raw_exif = _raw_exif(im, fmt, exifmod.bytes_reader(data))
        dpi = _dpi(im)
    orientation = exifmod.orientation(raw_exif)
    rgb = _as_float(color)
    grey = rgb.ndim == 2 or grey_source
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    elif not rgb.flags.c_contiguous:
        rgb = np.ascontiguousarray(rgb)
    rgb = _orient(rgb, orientation)
    alpha_f = _orient(None if alpha is None else _as_float(alpha), orientation)
    h, w = rgb.shape[:2]
    kept = bits if color.dtype != np.uint8 or bits <= 8 else 8  # 8: decoded at 8 bits
    return Photo(rgb=rgb, alpha=alpha_f, icc_profile=icc,
                 exif=exifmod.normalized(raw_exif, w, h), dpi=dpi,
                 bit_depth=16 if kept > 8 else 8, format=fmt, source=p, grey=grey)


def probe_image(path: str | os.PathLike[str], *, max_pixels: int | None = None
                ) -> dict[str, Any]:
    """Describe an image from its headers, without decoding its pixels.

    Keys: path, width, height (as displayed, i.e. after the EXIF orientation), format, mode,
    bits (per channel), orientation, icc, exif, alpha (booleans). The same size limits as
    :func:`read_image` apply, and a PNG's chunk checksums are verified, so a file that
    cannot be read is reported here rather than after a long wait.
    """
    p = Path(path)
    limit = default_max_pixels() if max_pixels is None else max_pixels
    file_bytes = _check_input(p)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below, after the mmap
    except OSError as e:
        raise _read_error(p, e.strerror or "the file cannot be read") from None
    with f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        im = _open_pillow(p, f)
        with im:
            fmt = _PILLOW_FORMATS[im.format or ""]
            _check_size(p, im.width, im.height, limit, file_bytes,
                        _sparse_check_wanted(max_pixels))
            _check_data(p, fmt, im, mm)
            raw_exif = _raw_exif(im, fmt, exifmod.bytes_reader(mm))
            orientation = exifmod.orientation(raw_exif)
            mode = im.mode
            alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
            if mode.startswith("I;16") or mode == "I":
                mode = "L"
            if fmt in _SIXTEEN_BIT and mode == "RGB" and _tiff_tag(im, 338) is not None:
                mode, alpha = "RGBA", True  # Pillow reads 16-bit RGBA TIFF as RGB
            w, h = im.size
            if orientation >= 5:
                w, h = h, w
            return {"path": str(path), "width": w, "height": h, "format": fmt, "mode": mode,
                    "bits": _source_bits(im, fmt, bytes(mm[: 1 << 16])), "orientation": orientation,
                    "icc": bool(im.info.get("icc_profile")), "exif": raw_exif is not None,
                    "alpha": alpha}


# --- pixel conversion for writing -----------------------------------------------------------
def _row_blocks(a: np.ndarray) -> Iterator[slice]:
    row = max(1, a[0].nbytes * 4 if a.shape[0] else 1)
    step = max(1, _CHUNK_BYTES // row)
    for i in range(0, a.shape[0], step):
        yield slice(i, i + step)


def _to_int(a: np.ndarray, bits: int) -> np.ndarray:
    """Full-scale uint8/uint16 from float [0,1] (clipped, rounded) or the other integer type."""
    target = np.uint8 if bits == 8 else np.uint16
    if a.dtype == target:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    full = float(np.iinfo(target).max)
    out = np.empty(a.shape, target)
    for s in _row_blocks(a):
        blk = np.nan_to_num(a[s].astype(np.float32), nan=0.0)
        np.clip(blk, 0.0, 1.0, out=blk)
        blk *= full
        blk += 0.5
        out[s] = blk
    return out


def _grey(rgb: np.ndarray) -> np.ndarray:
    """One grey channel from integer RGB (Rec. 601 luma, as Pillow's convert("L")), in row
    blocks; a greyscale source came through the model as three nearly equal channels."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    weights = np.asarray([0.299, 0.587, 0.114], np.float32)
    for s in _row_blocks(rgb):
        out[s] = np.rint(rgb[s].astype(np.float32) @ weights)
    return out


def _composite(photo: Photo, background: tuple[float, float, float], bits: int) -> np.ndarray:
    """Colour over a flat background, for formats without alpha."""
    assert photo.alpha is not None
    bg = np.asarray(background, np.float32)
    out = np.empty(photo.rgb.shape, np.uint8 if bits == 8 else np.uint16)
    for s in _row_blocks(photo.rgb):
        a = _as_float(photo.alpha[s])[..., None]
        out[s] = _to_int(_as_float(photo.rgb[s]) * a + bg * (1.0 - a), bits)
    return out


# --- encoders -------------------------------------------------------------------------------
@dataclass
class _Job:
    """Everything an encoder needs, already converted."""

    rgb: np.ndarray  # uint8 or uint16, H×W×3
    alpha: np.ndarray | None  # same dtype, H×W
    icc: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None
    quality: int
    subsampling: str
    lossless: bool


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _encode_png(job: _Job, f: BinaryIO) -> None:
    if job.rgb.ndim == 2 and job.alpha is not None:  # grey + alpha: Pillow's LA (8-bit)
        extra = _pillow_meta(job)
        if job.dpi:
            extra["dpi"] = job.dpi
        _pillow_image(job).save(f, "PNG", compress_level=3, **extra)
        return
    if job.rgb.ndim == 2:
        px = job.rgb
    else:
        px = (cv2.cvtColor(np.dstack([job.rgb, job.alpha]), cv2.COLOR_RGBA2BGRA)
              if job.alpha is not None else cv2.cvtColor(job.rgb, cv2.COLOR_RGB2BGR))
    # Level 3: on a noisy 24 MP photo level 6 took ~40% longer for a file 2.5% smaller.
    ok, buf = cv2.imencode(".png", px, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(errno.EIO, "the PNG encoder failed")
    png = memoryview(buf)
    ihdr_end = 8 + 12 + 13  # signature, then the IHDR chunk that OpenCV always writes first
    chunks = b""
    if job.icc:
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(job.icc))
    if job.dpi:
        ppm = [max(1, round(d / 0.0254)) for d in job.dpi]
        chunks += _png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1))
    if job.exif:
        chunks += _png_chunk(b"eXIf", job.exif[len(exifmod.PREFIX):])
    f.write(png[:ihdr_end])
    f.write(chunks)
    f.write(png[ihdr_end:])


def _pillow_image(job: _Job) -> Image.Image:
    if job.rgb.ndim == 2:
        if job.alpha is not None:
            return Image.fromarray(np.dstack([job.rgb, job.alpha]), "LA")
        return Image.fromarray(job.rgb, "L")
    if job.alpha is not None:
        return Image.fromarray(np.dstack([job.rgb, job.alpha]), "RGBA")
    return Image.fromarray(job.rgb, "RGB")


def _pillow_meta(job: _Job) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if job.icc:
        meta["icc_profile"] = job.icc
    if job.exif:
        meta["exif"] = job.exif
    return meta


def _encode_jpeg(job: _Job, f: BinaryIO) -> None:
    extra = _pillow_meta(job)
    if job.dpi:
        extra["dpi"] = job.dpi
    _pillow_image(job).save(f, "JPEG", quality=job.quality, subsampling=job.subsampling,
                            **extra)


def _encode_webp(job: _Job, f: BinaryIO) -> None:
    # exact: keep the colour under fully transparent pixels, so lossless is lossless.
    meta = _pillow_meta(job)
    if job.exif:  # the RIFF EXIF chunk holds the TIFF structure without the JPEG prefix
        meta["exif"] = job.exif[len(exifmod.PREFIX):]
    _pillow_image(job).save(f, "WEBP", quality=job.quality, lossless=job.lossless,
                            exact=job.lossless, **meta)


def _encode_avif(job: _Job, f: BinaryIO) -> None:
    _pillow_image(job).save(f, "AVIF", quality=job.quality, **_pillow_meta(job))


def _encode_heif(job: _Job, f: BinaryIO) -> None:
    formatsmod.write_formats()  # registers pillow-heif's writer
    _pillow_image(job).save(f, "HEIF", quality=job.quality, **_pillow_meta(job))


def _encode_bmp(job: _Job, f: BinaryIO) -> None:
    _pillow_image(job).save(f, "BMP", **({"dpi": job.dpi} if job.dpi else {}))


def _encode_tiff(job: _Job, f: BinaryIO) -> None:
    import tifffile

    px = np.dstack([job.rgb, job.alpha]) if job.alpha is not None else job.rgb
    order = exifmod.byte_order(job.exif) or "<"
    big = px.nbytes > 3_900_000_000  # classic TIFF offsets end at 4 GiB
    options: dict[str, Any] = {}
    if job.dpi:
        options.update(resolution=job.dpi, resolutionunit="INCH")
    if job.alpha is not None:
        options["extrasamples"] = ["unassalpha"]
    if big and job.icc:
        options["iccprofile"] = job.icc
    photometric = "minisblack" if job.rgb.ndim == 2 else "rgb"
    tifffile.imwrite(f, px, photometric=photometric, compression="zlib", predictor=True,
                     metadata=None, software=False, byteorder=order, bigtiff=big, **options)
    if big:
        if job.exif:
            warnings.warn("EXIF is not written to TIFF files above 4 GB.", stacklevel=4)
        return
    f.flush()
    try:
        exifmod.add_to_tiff(f, job.exif, job.icc)
    except exifmod.ExifFormatError:
        exifmod.add_to_tiff(f, None, job.icc)  # unreadable EXIF: keep the profile at least


_ENCODERS: dict[str, Callable[[_Job, BinaryIO], None]] = {
    "PNG": _encode_png, "JPEG": _encode_jpeg, "WEBP": _encode_webp, "TIFF": _encode_tiff,
    "BMP": _encode_bmp, "AVIF": _encode_avif, "HEIF": _encode_heif,
}


# --- writing --------------------------------------------------------------------------------
def write_error(path: str | os.PathLike[str], e: OSError) -> WriteError:
    """One sentence for an OSError met while writing ``path`` (disk full, read-only, ...)."""
    path = Path(path)
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(f"Cannot write {path}: no space left on the disk.")
    if e.errno == errno.EROFS:
        return WriteError(f"Cannot write {path}: the disk is read-only.")
    if e.errno == errno.ENAMETOOLONG:
        return WriteError(f"Cannot write {path}: the name is too long for the file system "
                          f"({len(os.fsencode(path.name))} bytes; most allow 255).")
    if isinstance(e, PermissionError):
        return WriteError(f"Cannot write {path}: permission denied.")
    if e.errno == errno.ENOTDIR:
        return WriteError(f"Cannot write {path}: a part of the folder path is a file, not a "
                          "folder.")
    if isinstance(e, FileNotFoundError):
        with contextlib.suppress(OSError):
            if not path.parent.is_dir():
                return WriteError(f"Cannot write {path}: the folder {path.parent} does not "
                                  "exist.")
    return WriteError(f"Cannot write {path}: {(e.strerror or str(e)).lower()}.")


def check_replaceable(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists; raise WriteError if it exists and is not a regular file.

    Only regular files are ever replaced: a folder, a device (``/dev/full``), a named pipe or
    a socket at the output path is refused, with or without ``overwrite``. A symbolic link is
    judged by what it points to (a broken link counts as absent: the rename replaces it).
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise write_error(p, e) from None
    kind = _not_regular(st.st_mode)
    if kind is not None:
        raise WriteError(f"Cannot write {p}: it is {kind}, and only regular files are "
                         "ever replaced.")
    return True


def output_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format written to ``path``: ``format`` (any case, "jpg"/"tif"/"heic" allowed) or
    the extension's; UnsupportedFormatError when Finescale cannot write it."""
    path = Path(path)
    name = (format or formatsmod.suffix_format(path.suffix) or "").upper()
    name = {"JPG": "JPEG", "TIF": "TIFF", "HEIC": "HEIF"}.get(name, name)
    writable = formatsmod.write_formats()
    if name not in writable:
        what = f"format {format!r}" if format else f"the extension {path.suffix or '(none)'!r}"
        raise UnsupportedFormatError(
            f"Cannot write {path}: {what} is not one Finescale writes here "
            f"({formatsmod.describe(writable)}).")
    return name


def check_output_size(path: str | os.PathLike[str], fmt: str, width: int, height: int) -> None:
    """Raise WriteError when ``fmt`` cannot hold a ``width`` x ``height`` picture (JPEG ends
    at 65500 pixels a side, WebP at 16383), so that callers can refuse before upscaling."""
    side = _MAX_SIDE.get(fmt)
    if side is not None and max(width, height) > side:
        raise WriteError(f"Cannot write {path}: {formatsmod.TITLES.get(fmt, fmt)} images are "
                         f"at most {side} pixels on a side and this one would be "
                         f"{width}x{height}.")


_output_format = output_format


def _is_source(photo: Photo, path: Path) -> bool:
    if photo.source is None:
        return False
    try:
        return os.path.samefile(photo.source, path)
    except OSError:
        return Path(os.path.abspath(photo.source)) == Path(os.path.abspath(path))


def _atomic_write(path: Path, encode: Callable[[BinaryIO], None], overwrite: bool) -> None:
    """Encode into a temporary file beside ``path`` and move it into place durably
    (:func:`sr_core.atomic.replacing`); without ``overwrite`` an existing file is kept."""

    def install(tmp: Path, dest: Path) -> None:
        if overwrite:
            check_replaceable(dest)  # again: something may have appeared while encoding
            os.replace(tmp, dest)
            return
        try:
            os.link(tmp, dest)  # fails if another writer got there first
        except FileExistsError:
            raise OutputExistsError(f"Refusing to write {dest}: the file already exists.") \
                from None
        except OSError:  # file systems without hard links
            if dest.exists():
                raise OutputExistsError(
                    f"Refusing to write {dest}: the file already exists.") from None
            os.replace(tmp, dest)

    with atomic.replacing(path, install=install) as tmp, open(tmp, "w+b") as f:
        encode(f)  # a named file object: tifffile wants a path


def write_encoded(path: str | os.PathLike[str], data: bytes, *, overwrite: bool) -> None:
    """Put already-encoded image bytes at ``path`` as :func:`write_image` puts its own
    (atomically; without ``overwrite`` an existing file is kept), one sentence on failure."""
    p = Path(path)
    try:
        _atomic_write(p, lambda f: f.write(data) and None, overwrite)
    except OSError as e:
        raise write_error(p, e) from None


def write_image(photo: Photo, path: str | os.PathLike[str], format: str | None = None,
                quality: int = 95, *, subsampling: str = "4:2:0", lossless: bool = False,
                bit_depth: int | None = None,
                background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                overwrite: bool = True) -> Path:
    """Write ``photo`` to ``path`` atomically, keeping its profile, EXIF, DPI and alpha.

    ``format`` defaults to the extension's. 16-bit output when ``bit_depth`` (default: the
    photo's) is 16 and the format is PNG or TIFF. Formats without alpha (JPEG, BMP) get the
    photo composited on ``background`` and an :class:`AlphaDroppedWarning`. Refuses the
    photo's own source file (SameFileError) and, with ``overwrite=False``, an existing file
    (OutputExistsError); a full disk gives DiskFullError. Returns the path written.
    """
    p = Path(path)
    fmt = _output_format(p, format)
    if bit_depth not in (None, 8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth}")
    if bit_depth == 16 and fmt not in _SIXTEEN_BIT:
        raise UnsupportedFormatError(f"Cannot write {p}: {fmt} holds 8 bits per channel only.")
    if subsampling not in _SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {', '.join(_SUBSAMPLING)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1..100, not {quality}")
    if _is_source(photo, p):
        raise SameFileError(
            f"Refusing to write {p}: it is the input file, and originals are never overwritten.")
    if check_replaceable(p) and not overwrite:
        raise OutputExistsError(f"Refusing to write {p}: the file already exists.")
    check_output_size(p, fmt, photo.width, photo.height)

    bits = (bit_depth or photo.bit_depth) if fmt in _SIXTEEN_BIT else 8
    if photo.alpha is not None and fmt not in _WITH_ALPHA:
        warnings.warn(f"{p.name}: {fmt} has no transparency; the image was placed on a "
                      "background colour.", AlphaDroppedWarning, stacklevel=2)
        rgb, alpha = _composite(photo, background, bits), None
    else:
        rgb = _to_int(photo.rgb, bits)
        alpha = None if photo.alpha is None else _to_int(photo.alpha, bits)
    if photo.grey and fmt in _GREY_FORMATS and not (
            alpha is not None and fmt == "PNG" and bits == 16):  # no 16-bit grey+alpha writer
        rgb = _grey(rgb)
    exif = exifmod.normalized(photo.exif, photo.width, photo.height)
    if fmt == "JPEG" and exif and len(exif) > 65_533:
        warnings.warn(f"{p.name}: the EXIF block is too large for JPEG and was left out.",
                      stacklevel=2)
        exif = None
    icc = photo.icc_profile
    if rgb.ndim == 2 and _icc_space(icc) == b"RGB ":
        icc = None  # an RGB profile does not describe grey pixels
    job = _Job(rgb=np.ascontiguousarray(rgb), alpha=alpha, icc=icc, exif=exif,
               dpi=sane_dpi(photo.dpi), quality=quality, subsampling=subsampling, lossless=lossless)
    try:
        _atomic_write(p, lambda f: _ENCODERS[fmt](job, f), overwrite)
    except OSError as e:
        raise write_error(p, e) from None
    return p
