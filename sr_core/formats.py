"""The image formats Finescale reads and writes, and their file-name suffixes: the one list.

:mod:`sr_core.imageio`, batch discovery, ``finescale info``/``upscale`` and the window's
open dialog all take their suffixes and format names from here. HEIC/HEIF needs the
optional ``pillow-heif`` package; AVIF needs a Pillow built with AVIF (11.3 and later) or
``pillow-avif-plugin``. A format whose decoder is missing is simply not offered.
"""

from __future__ import annotations

import functools

__all__ = ["describe", "dialog_filter", "extension", "OPTION_NAMES", "PILLOW_NAMES",
           "read_formats", "read_suffixes", "suffix_format", "SUFFIXES", "TITLES", "write_formats"]


#: Every format Finescale knows -> its suffixes (the first is the one new files get).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp",),
    "HEIF": (".heic", ".heif", ".hif"),
    "AVIF": (".avif",),
}
#: What ``--format`` and the batch's format option accept (any case) -> format.
OPTION_NAMES: dict[str, str] = {
    "png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tif": "TIFF", "tiff": "TIFF",
    "bmp": "BMP", "avif": "AVIF", "heic": "HEIF",
}
#: Names for messages.
TITLES = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "TIFF": "TIFF", "BMP": "BMP",
          "HEIF": "HEIC", "AVIF": "AVIF"}
_BUILT_IN = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
#: Pillow's format names -> ours.
PILLOW_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP", "TIFF": "TIFF",
                "BMP": "BMP", "HEIF": "HEIF", "AVIF": "AVIF"}


@functools.lru_cache(maxsize=1)
def _plugins() -> tuple[bool, bool, bool]:
    """Register the optional plugins once; (HEIF read, HEIF write, AVIF read+write)."""
    from PIL import Image, features

    heif_read = heif_write = False
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        info = pillow_heif.libheif_info()
        heif_read = bool(info.get("decoders")) or "HEIF" in info
        heif_write = bool(info.get("HEIF"))
    except Exception:  # noqa: BLE001 - absent or broken: HEIC is just not offered
        heif_read = heif_write = False
    avif = bool(features.check("avif"))
    if not avif:
        try:
            import pillow_avif  # noqa: F401 - registers AVIF with Pillow

            avif = True
        except Exception:  # noqa: BLE001
            avif = False
    Image.init()
    return heif_read, heif_write, avif


def read_formats() -> tuple[str, ...]:
    """Formats this install can read, in our names (``"PNG"``, ..., ``"HEIF"``, ``"AVIF"``)."""
    heif, _, avif = _plugins()
    return _BUILT_IN + (("HEIF",) if heif else ()) + (("AVIF",) if avif else ())


def write_formats() -> tuple[str, ...]:
    """Formats this install can write."""
    _, heif, avif = _plugins()
    return _BUILT_IN + (("HEIF",) if heif else ()) + (("AVIF",) if avif else ())


def read_suffixes() -> dict[str, str]:
    """Suffix (lower case, with the dot) -> format, for every format this install reads."""
    return {s: f for f in read_formats() for s in SUFFIXES[f]}


def suffix_format(suffix: str) -> str | None:
    """The format a suffix (any case, with the dot) names, whether readable here or not."""
    s = suffix.lower()
    return next((f for f, names in SUFFIXES.items() if s in names), None)


def extension(fmt: str) -> str:
    """The suffix new files of ``fmt`` get, with the dot (``".jpg"`` for JPEG)."""
    return SUFFIXES[fmt][0]


def describe(formats: tuple[str, ...] | None = None) -> str:
    """``"PNG, JPEG, WebP, TIFF, BMP, HEIC or AVIF"`` for messages."""
    names = [TITLES[f] for f in (formats if formats is not None else read_formats())]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def dialog_filter() -> str:
    """A Qt file-dialog pattern list: ``"*.png *.jpg ..."`` (lower and upper case)."""
    names = list(read_suffixes())
    return " ".join(f"*{s}" for s in names + [n.upper() for n in names])
