"""Test inputs made on the fly: photos with markers, ICC profiles, EXIF blocks, odd files.

Nothing binary is committed; every test builds what it reads. The ICC profiles are minimal
but valid version-2 profiles (LittleCMS accepts them), written byte by byte from the ICC
specification so that tests need no colour-management files from the system.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

D50 = (0.9642, 1.0, 0.8249)

# Display P3 colorants adapted to D50, as in Apple's published profile.
P3_COLORANTS = ((0.5151, 0.2412, -0.0011), (0.2919, 0.6922, 0.0419), (0.1572, 0.0666, 0.7841))


# --- ICC profiles ---------------------------------------------------------------------------
def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _profile(device_class: bytes, space: bytes, pcs: bytes,
             tags: list[tuple[bytes, bytes]]) -> bytes:
    table, body = b"", b""
    first = 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        table += sig + struct.pack(">II", first + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = first + len(body)
    head = (struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02100000)
            + device_class + space + pcs + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp"
            + b"\0" * 28 + _s15(D50[0]) + _s15(D50[1]) + _s15(D50[2]) + b"\0" * 48)
    assert len(head) == 128
    return head + struct.pack(">I", len(tags)) + table + body


def rgb_profile(name: str = "Finescale test Display P3", gamma: float = 2.2,
                colorants: tuple = P3_COLORANTS) -> bytes:
    """A matrix/TRC RGB display profile (Display-P3-like primaries by default)."""
    (r, g, b) = colorants
    return _profile(b"mntr", b"RGB ", b"XYZ ", [
        (b"desc", _desc(name)), (b"wtpt", _xyz(*D50)),
        (b"rXYZ", _xyz(*r)), (b"gXYZ", _xyz(*g)), (b"bXYZ", _xyz(*b)),
        (b"rTRC", _curve(gamma)), (b"gTRC", _curve(gamma)), (b"bTRC", _curve(gamma)),
        (b"cprt", b"text\0\0\0\0public domain\0"),
    ])


def gray_profile(gamma: float = 1.0) -> bytes:
    """A grey display profile with a pure power curve (1.0 = linear light)."""
    return _profile(b"mntr", b"GRAY", b"XYZ ", [
        (b"desc", _desc(f"Finescale test grey gamma {gamma}")), (b"wtpt", _xyz(*D50)),
        (b"kTRC", _curve(gamma)),
    ])


# Colours of the four inks of the fake CMYK profile below, as sRGB: deliberately unlike real
# inks (cyan prints red) so that a test can tell a profile conversion from the naive one.
FAKE_INKS = {"C": (1.0, 0.1, 0.1), "M": (0.1, 1.0, 0.1), "Y": (0.1, 0.1, 1.0),
             "K": (0.0, 0.0, 0.0)}


def _srgb_to_lab8(colours: list[tuple[float, float, float]]) -> list[bytes]:
    """Encode sRGB colours as ICC v2 8-bit Lab (the encoding of Pillow's LAB mode too)."""
    px = Image.new("RGB", (len(colours), 1))
    px.putdata([tuple(round(255 * c) for c in col) for col in colours])
    lab = ImageCms.applyTransform(px, ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"))
    return [bytes(lab.getpixel((i, 0))) for i in range(len(colours))]


def cmyk_profile() -> bytes:
    """An output (printer) CMYK profile whose A2B0 table maps each ink to FAKE_INKS."""
    corners = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    rgb = np.ones(3)
                    for ink, on in zip("CMYK", (c, m, y, k), strict=True):
                        if on:
                            rgb = rgb * np.asarray(FAKE_INKS[ink])
                    corners.append(tuple(float(v) for v in rgb))
    clut = b"".join(_srgb_to_lab8(corners))
    identity = bytes(range(256))
    matrix = b"".join(_s15(1.0 if i % 4 == 0 else 0.0) for i in range(9))
    a2b0 = b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + matrix + identity * 4 + clut + identity * 3
    return _profile(b"prtr", b"CMYK", b"Lab ", [
        (b"desc", _desc("Finescale test CMYK (cyan prints red)")), (b"wtpt", _xyz(*D50)),
        (b"A2B0", a2b0),
    ])


# --- EXIF -----------------------------------------------------------------------------------
MAKER_NOTE = bytes(range(7, 7 + 40)) + b"offset-sensitive maker data"


def exif_block(orientation: int | None = None, width: int | None = None,
               height: int | None = None, maker_note: bool = False) -> bytes:
    """A camera-like EXIF block: Make/Model/DateTime, a sub-IFD with DateTimeOriginal."""
    ex = Image.Exif()
    ex[0x010F] = "Finescale Camera Co."
    ex[0x0110] = "FS-1 Mark II"
    ex[0x0132] = "2024:05:06 07:08:09"
    if orientation is not None:
        ex[0x0112] = orientation
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = "2024:05:06 07:08:00"
    if width is not None and height is not None:
        sub[0xA002] = width
        sub[0xA003] = height
    if maker_note:
        sub[0x927C] = MAKER_NOTE
    return ex.tobytes()


def exif_tags(block: bytes) -> tuple[dict, dict]:
    """(IFD0 tags, EXIF sub-IFD tags) of a block, decoded by Pillow (an independent reader)."""
    ex = Image.Exif()
    ex.load(block)
    return dict(ex), dict(ex.get_ifd(0x8769))


# --- pixels ---------------------------------------------------------------------------------
RED = (255, 0, 0)


def marked_rgb(width: int = 48, height: int = 32) -> np.ndarray:
    """A smooth uint8 picture with a red 4×4 marker in its top-left corner."""
    y, x = np.mgrid[0:height, 0:width]
    a = np.stack([40 + x * 3 % 120, 60 + y * 4 % 150, 90 + (x + y) % 60], axis=-1)
    a = a.astype(np.uint8)
    a[:4, :4] = RED
    return a


def soft_alpha(width: int = 64, height: int = 16) -> np.ndarray:
    """uint8 alpha with every value 0..255 (a soft transparent edge)."""
    return (np.arange(width * height) % 256).reshape(height, width).astype(np.uint8)


def values16() -> np.ndarray:
    """A 4×5 16-bit RGB image holding values that 8 bits cannot keep (257, 1000, 65534...)."""
    vals = np.array([0, 1, 257, 1000, 12345, 32768, 40001, 65534, 65535, 7, 300, 999, 2,
                     65533, 256, 4097, 30000, 50000, 60000, 17], np.uint16)
    return np.stack([vals, vals[::-1], np.roll(vals, 7)], axis=-1).reshape(4, 5, 3)


# --- odd files ------------------------------------------------------------------------------
def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a size; its pixel data is a few bytes (a bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def save_rgb(path: Path, rgb: np.ndarray, **options: object) -> Path:
    """Save a uint8 RGB/RGBA array with Pillow (format from the suffix)."""
    Image.fromarray(rgb).save(path, **options)
    return path
