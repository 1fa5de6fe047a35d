"""What the window remembers between runs, on top of QSettings (organisation "Finescale").

Every value has a type and a default here, so the rest of the app reads plain Python values
and a damaged or hand-edited settings file can only ever yield a default, never a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from sr_core import formats
from sr_core.batch import POLICIES, SAME_FORMAT
from sr_core.device import DEVICE_CHOICES

ORGANISATION = "Finescale"
APPLICATION = "Finescale"

SCALE_MODES = ("model", "factor", "width", "height")
#: The engine's words, stored as they are: its formats (plus "same"), devices and policies.
OUTPUT_FORMATS = (SAME_FORMAT, *formats.write_formats())
DEVICES = DEVICE_CHOICES
COMPARE_MODES = ("side", "wipe")
ORIGINAL_AS = ("pixels", "smooth")
EXISTING_POLICIES = POLICIES

#: key -> (type, default)
_SPEC: dict[str, tuple[type, Any]] = {
    "model": (str, ""),
    "scale_mode": (str, "model"),
    "scale_factor": (float, 2.0),
    "out_width": (int, 3840),
    "out_height": (int, 2160),
    "out_format": (str, "same"),
    "quality": (int, 95),
    "clean_up": (float, -1.0),  # detail <-> clean-up 0..1; below 0: the photo model's default
    "out_dir": (str, ""),
    "device": (str, "auto"),
    "compare_mode": (str, "side"),
    "original_as": (str, "pixels"),
    "last_dir": (str, ""),
    "batch/in_dir": (str, ""),
    "batch/out_dir": (str, ""),
    "batch/recursive": (bool, True),
    "batch/template": (str, ""),
    "batch/existing": (str, "skip"),
}
_CHOICES = {"scale_mode": SCALE_MODES, "out_format": OUTPUT_FORMATS, "device": DEVICES,
            "compare_mode": COMPARE_MODES, "original_as": ORIGINAL_AS,
            "batch/existing": EXISTING_POLICIES}
_RANGES = {"scale_factor": (0.1, 16.0), "out_width": (1, 200_000), "out_height": (1, 200_000),
           "quality": (1, 100), "clean_up": (-1.0, 1.0)}


class Settings:
    """Typed access to the window's settings.

    Args:
        path: an INI file to use instead of the user's settings (tests, screenshots).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self._q = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                ORGANISATION, APPLICATION)
        else:
            self._q = QSettings(str(path), QSettings.Format.IniFormat)

    @property
    def file(self) -> str:
        """Where the settings are stored."""
        return self._q.fileName()

    def get(self, key: str) -> Any:
        """The stored value of ``key``, or its default when missing or unusable."""
        kind, default = _SPEC[key]
        raw = self._q.value(key, None)
        if raw is None:
            return default
        try:
            if kind is bool:
                value: Any = raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1")
            else:
                value = kind(raw)
        except (TypeError, ValueError):
            return default
        if key in _CHOICES and value not in _CHOICES[key]:
            return default
        if key in _RANGES:
            lo, hi = _RANGES[key]
            if not lo <= value <= hi:
                return default
        return value

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (one of the known keys)."""
        kind, _ = _SPEC[key]
        self._q.setValue(key, kind(value))

    def geometry(self) -> QByteArray | None:
        """The saved window geometry, if any."""
        g = self._q.value("window/geometry")
        return g if isinstance(g, QByteArray) and not g.isEmpty() else None

    def set_geometry(self, geometry: QByteArray) -> None:
        """Remember the window geometry."""
        self._q.setValue("window/geometry", geometry)

    def sync(self) -> None:
        """Write pending changes to disk now."""
        self._q.sync()
