"""EXIF blocks and TIFF directories at the byte level.

An EXIF block is a small TIFF file (``Exif\\0\\0``, a header, IFD0 and sub-directories).
Camera maker notes hold offsets of their own, so re-encoding EXIF through a tag dictionary
breaks them: for JPEG, PNG and WebP we patch the few values that must change (orientation,
pixel size) in place and copy every other byte. A TIFF file keeps its EXIF tags in its own
first directory, so for TIFF we move tags between the file and a block entry by entry.

Everything here works on a ``read(offset, size) -> bytes`` function so that a block in
memory, a memory-mapped file and an open file are read the same way. Malformed input raises
:class:`ExifFormatError`; callers drop the metadata rather than the photo.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

PREFIX = b"Exif\x00\x00"
ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
ICC_PROFILE = 0x8773
_IMAGE_WIDTH, _IMAGE_LENGTH = 0x0100, 0x0101
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003
_POINTERS = frozenset({EXIF_IFD, GPS_IFD, INTEROP_IFD})

_SHORT, _LONG, _UNDEFINED, _IFD = 3, 4, 7, 13
# Bytes per value of each TIFF field type; entries of other types cannot be copied faithfully.
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_ENTRIES = 4096
_MAX_DEPTH = 4

# Tags of a TIFF's first directory that describe how the pixels are stored (or that we carry
# separately: resolution, ICC profile), not the photo; they never travel between files.
_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 282,
    283, 284, 286, 287, 288, 289, 290, 291, 292, 293, 296, 297, 301, 317, 320, 321, 322, 323,
    324, 325, 330, 332, 334, 338, 339, 340, 341, 347, 512, 513, 514, 515, 517, 518, 519, 520,
    521, 529, 530, 531, 532, 700, 32997, 32998, 34377, 37724, ICC_PROFILE, INTEROP_IFD,
})

Reader = Callable[[int, int], bytes]


class ExifFormatError(ValueError):
    """The bytes are not a well-formed (classic, not Big-) TIFF directory tree."""


@dataclass
class Entry:
    """One directory entry: raw value bytes in the tree's byte order, or a child directory."""

    tag: int
    type: int
    count: int
    value: bytes = b""
    field: int = -1  # absolute offset of the entry's 4-byte value field, for in-place patches
    children: list[Entry] | None = None


@dataclass
class Directory:
    """A parsed directory: its entries and where its next-directory pointer lives."""

    entries: list[Entry]
    next_offset: int
    next_field: int


def bytes_reader(data: bytes | bytearray | memoryview) -> Reader:
    """A reader over bytes in memory (or anything that slices like bytes, e.g. an mmap)."""
    return lambda offset, size: bytes(data[offset:offset + size])


def file_reader(f: BinaryIO) -> Reader:
    """A reader over an open binary file; it moves the file position."""

    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        return f.read(size)

    return read


def header(read: Reader) -> tuple[str, int]:
    """Return ``(struct byte-order prefix, offset of IFD0)`` of a classic TIFF structure."""
    head = read(0, 8)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        raise ExifFormatError("not a TIFF header")
    order = "<" if head[:2] == b"II" else ">"
    magic, first = struct.unpack(order + "HI", head[2:8])
    if magic != 42:
        raise ExifFormatError("not a classic TIFF header")
    return order, first


def read_directory(read: Reader, offset: int, order: str, depth: int = 0) -> Directory:
    """Parse the directory at ``offset`` (and, recursively, its EXIF/GPS/interop children)."""
    if depth > _MAX_DEPTH or offset < 8:
        raise ExifFormatError("directory offset out of range")
    raw = read(offset, 2)
    if len(raw) < 2:
        raise ExifFormatError("directory outside the data")
    (n,) = struct.unpack(order + "H", raw)
    if n > _MAX_ENTRIES:
        raise ExifFormatError("implausible number of entries")
    table = read(offset + 2, 12 * n + 4)
    if len(table) < 12 * n + 4:
        raise ExifFormatError("directory outside the data")
    entries = []
    for i in range(n):
        tag, typ, count = struct.unpack(order + "HHI", table[12 * i:12 * i + 8])
        raw_field = table[12 * i + 8:12 * i + 12]
        field = offset + 2 + 12 * i + 8
        if typ not in _SIZES:
            continue
        if tag in _POINTERS and typ in (_LONG, _IFD) and count == 1:
            (child,) = struct.unpack(order + "I", raw_field)
            try:
                sub = read_directory(read, child, order, depth + 1)
            except ExifFormatError:
                continue  # a broken sub-directory is dropped, the rest is kept
            entries.append(Entry(tag, _LONG, 1, b"", field, sub.entries))
            continue
        size = _SIZES[typ] * count
        if size <= 4:
            value = raw_field[:size]
        else:
            (where,) = struct.unpack(order + "I", raw_field)
            value = read(where, size)
            if len(value) < size:
                continue  # points outside the data: drop this tag only
        entries.append(Entry(tag, typ, count, value, field))
    (nxt,) = struct.unpack(order + "I", table[12 * n:12 * n + 4])
    return Directory(entries, nxt, offset + 2 + 12 * n)


def serialize(entries: list[Entry], order: str, base: int) -> bytes:
    """Lay out a directory (entries sorted, values and children after it) at offset ``base``."""
    entries = sorted(entries, key=lambda e: e.tag)
    data = bytearray()
    start = base + 2 + 12 * len(entries) + 4
    fields: list[bytes] = []

    def place(blob: bytes) -> int:
        if (start + len(data)) % 2:
            data.append(0)  # TIFF values start on word boundaries
        at = start + len(data)
        data.extend(blob)
        return at

    for e in entries:
        if e.children is not None:
            fields.append(b"")  # filled once the plain values are placed
        elif len(e.value) <= 4:
            fields.append(e.value.ljust(4, b"\x00"))
        else:
            fields.append(struct.pack(order + "I", place(e.value)))
    for i, e in enumerate(entries):
        if e.children is not None:
            if (start + len(data)) % 2:
                data.append(0)
            at = start + len(data)
            data.extend(serialize(e.children, order, at))
            fields[i] = struct.pack(order + "I", at)
    out = bytearray(struct.pack(order + "H", len(entries)))
    for e, f in zip(entries, fields, strict=True):
        typ, count = (_LONG, 1) if e.children is not None else (e.type, e.count)
        out += struct.pack(order + "HHI", e.tag, typ, count) + f
    out += struct.pack(order + "I", 0)
    return bytes(out + data)


def _tiff_part(block: bytes) -> bytes:
    return block[len(PREFIX):] if block.startswith(PREFIX) else block


def _first_directory(block: bytes) -> tuple[str, Directory]:
    read = bytes_reader(_tiff_part(block))
    order, first = header(read)
    return order, read_directory(read, first, order)


def orientation(block: bytes | None) -> int:
    """The EXIF orientation (1..8) of a block; 1 when absent or unreadable."""
    if not block:
        return 1
    try:
        order, ifd0 = _first_directory(block)
    except ExifFormatError:
        return 1
    for e in ifd0.entries:
        if e.tag == ORIENTATION and e.type == _SHORT and e.count == 1:
            (value,) = struct.unpack(order + "H", e.value)
            return value if 1 <= value <= 8 else 1
    return 1


def with_orientation_1(tiff: bytes) -> bytes:
    """A TIFF file's bytes with orientation 1 in its first directory.

    For decoders (OpenCV's TIFF reader) that apply the orientation themselves, in ways that
    differ between versions: we decode the stored pixels and orient them ourselves.
    """
    try:
        order, first = header(bytes_reader(tiff))
        ifd0 = read_directory(bytes_reader(tiff), first, order)
    except ExifFormatError:
        return tiff
    for e in ifd0.entries:
        if e.tag == ORIENTATION and e.type == _SHORT and e.count == 1:
            if struct.unpack(order + "H", e.value)[0] == 1:
                return tiff
            buf = bytearray(tiff)
            struct.pack_into(order + "HH", buf, e.field, 1, 0)
            return bytes(buf)
    return tiff


def _set_integer(buf: bytearray, order: str, e: Entry, value: int) -> None:
    if e.count != 1 or e.type not in (_SHORT, _LONG):
        return
    if e.type == _SHORT and value > 0xFFFF:
        struct.pack_into(order + "H", buf, e.field - 6, _LONG)  # the entry's type field
        e.type = _LONG
    if e.type == _SHORT:
        struct.pack_into(order + "HH", buf, e.field, value, 0)
    else:
        struct.pack_into(order + "I", buf, e.field, value)


def normalized(block: bytes | None, width: int, height: int) -> bytes | None:
    """A copy of the block for pixels already upright and ``width``×``height`` in size.

    Orientation becomes 1, the pixel-size tags say the new size, and when the orientation
    changed the thumbnail directory is unlinked (it shows the old, unrotated picture). Every
    other byte is kept, so maker notes stay valid. Returns None for an unreadable block.
    """
    if not block:
        return None
    buf = bytearray(_tiff_part(block))
    try:
        order, ifd0 = _first_directory(bytes(buf))
    except ExifFormatError:
        return None
    rotated = False
    for e in ifd0.entries:
        if e.tag == ORIENTATION and e.type == _SHORT and e.count == 1:
            rotated = struct.unpack(order + "H", e.value)[0] != 1
            struct.pack_into(order + "HH", buf, e.field, 1, 0)
        elif e.tag in (_IMAGE_WIDTH, _IMAGE_LENGTH):
            _set_integer(buf, order, e, width if e.tag == _IMAGE_WIDTH else height)
        elif e.tag == EXIF_IFD and e.children:
            for c in e.children:
                if c.tag in (_PIXEL_X, _PIXEL_Y):
                    _set_integer(buf, order, c, width if c.tag == _PIXEL_X else height)
    if rotated and ifd0.next_offset:
        struct.pack_into(order + "I", buf, ifd0.next_field, 0)
    return PREFIX + bytes(buf)


def _photo_tags(entries: list[Entry], skip: set[int] | frozenset[int] = frozenset()) -> list[Entry]:
    return [e for e in entries
            if e.tag not in _LAYOUT_TAGS and e.tag not in skip
            and (e.children is None or e.tag in (EXIF_IFD, GPS_IFD))]


def block_from_tiff(read: Reader) -> bytes | None:
    """The EXIF block (JPEG style) holding the descriptive tags of a TIFF's first image."""
    order, first = header(read)
    tags = _photo_tags(read_directory(read, first, order).entries)
    if not tags:
        return None
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    return PREFIX + head + serialize(tags, order, 8)


def byte_order(block: bytes | None) -> str | None:
    """``"<"`` or ``">"`` for a readable block, else None."""
    if not block:
        return None
    try:
        return header(bytes_reader(_tiff_part(block)))[0]
    except ExifFormatError:
        return None


def add_to_tiff(f: BinaryIO, block: bytes | None, icc_profile: bytes | None) -> None:
    """Give the TIFF in ``f`` (opened read/write) the block's tags and an ICC profile.

    A new first directory (the file's own entries plus the photo's) is appended at the end
    of the file and the header is pointed at it; the old directory stays as unused bytes.
    The block must share the file's byte order (its raw values are copied unchanged).
    """
    read = file_reader(f)
    order, first = header(read)
    own = read_directory(read, first, order).entries
    extra: list[Entry] = []
    if block:
        try:
            block_order, ifd0 = _first_directory(block)
        except ExifFormatError:
            ifd0 = None
        if ifd0 is not None:
            if block_order != order:
                raise ExifFormatError("EXIF and TIFF byte orders differ")
            extra = _photo_tags(ifd0.entries, skip={e.tag for e in own})
    if icc_profile:
        extra.append(Entry(ICC_PROFILE, _UNDEFINED, len(icc_profile), icc_profile))
    if not extra:
        return
    end = f.seek(0, 2)
    at = end + end % 2
    body = serialize(own + extra, order, at)
    if at + len(body) > 0xFFFFFFFF:
        raise ExifFormatError("metadata would not fit in a classic TIFF")
    f.write(b"\x00" * (at - end) + body)
    f.seek(4)
    f.write(struct.pack(order + "I", at))
