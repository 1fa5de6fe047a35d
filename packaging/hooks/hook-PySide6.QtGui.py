"""PyInstaller hook for PySide6.QtGui that collects only the Qt plugins Finescale uses.

The stock hook collects every plugin QtGui can load (Wayland, EGL, GTK theme, image formats,
icon engines, ...), and the binary analysis then drags in their system libraries (GTK, cairo,
Wayland, EGL). Filtering here, before that analysis, keeps those libraries out of the bundle.
The window decodes pictures with Pillow/OpenCV, never through Qt's image-format plugins.
"""

from fnmatch import fnmatch
from pathlib import PurePath

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

# (plugin folder, file pattern): a desktop session (xcb; Wayland sessions use it through
# XWayland), headless runs (offscreen), Windows and macOS, and keyboard input methods.
_KEEP = [
    ("platforms", "*qxcb*"), ("platforms", "*qoffscreen*"), ("platforms", "*qwindows*"),
    ("platforms", "*qcocoa*"), ("platforminputcontexts", "*"), ("styles", "*"),
]


def _wanted(dest_dir: str, src: str) -> bool:
    parts = PurePath(dest_dir).parts
    if "plugins" not in parts:
        return True
    kind = parts[parts.index("plugins") + 1] if parts[-1] != "plugins" else ""
    name = PurePath(src).name
    return any(kind == k and fnmatch(name, pat) for k, pat in _KEEP)


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [(src, dest) for src, dest in binaries if _wanted(dest, src)]
