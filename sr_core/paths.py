"""Where Finescale's files live: the shipped resources and the user's model cache.

Resources (``models.toml``, icons, the sample picture, embedded weights) are found the same
way from a source checkout (``<repo>/resources``), an installed wheel (the package
``sr_core.resources``, which pyproject maps onto that folder) and a PyInstaller bundle
(``sys._MEIPASS``). The model cache is outside the program, in the user's data folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["cache_dir", "CACHE_ENV", "resource_path", "resources_dir"]


#: Environment variable that moves the model cache (tests, portable installs, shared disks).
CACHE_ENV = "FINESCALE_CACHE_DIR"

_MARKER = "models.toml"


def resources_dir() -> Path:
    """The folder holding ``models.toml`` and the other shipped resources.

    Looks in a PyInstaller bundle first (``sys._MEIPASS/sr_core/resources`` or
    ``sys._MEIPASS/resources``), then the installed package ``sr_core.resources``, then the
    source checkout's ``resources/``. Raises ``FileNotFoundError`` naming the places tried
    when none holds ``models.toml`` (a broken installation, not a user error).
    """
    tried = [c for c in _candidates() if c is not None]
    for cand in tried:
        if (cand / _MARKER).is_file():
            return cand
    where = ", ".join(str(c) for c in tried)
    raise FileNotFoundError(f"Finescale's resources ({_MARKER}) were not found; looked in: {where}")


def resource_path(relative: str) -> Path:
    """Absolute path of a shipped resource, e.g. ``resource_path("weights/x.safetensors")``.

    The file need not exist (callers check); ``..`` escapes out of the resources are refused.
    """
    base = resources_dir().resolve()
    path = (base / relative).resolve()
    if base != path and base not in path.parents:
        raise ValueError(f"resource path {relative!r} points outside the resources folder")
    return path


def _candidates() -> list[Path | None]:
    bundle = getattr(sys, "_MEIPASS", None)
    out: list[Path | None] = []
    if bundle:
        out += [Path(bundle) / "sr_core" / "resources", Path(bundle) / "resources"]
    out.append(_package_dir())
    out.append(Path(__file__).resolve().parents[1] / "resources")
    return out


def _package_dir() -> Path | None:
    # Editable installs and source checkouts may not map sr_core.resources at all.
    try:
        import importlib.util

        spec = importlib.util.find_spec("sr_core.resources")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """The model cache: ``$FINESCALE_CACHE_DIR`` or ``<user data dir>/finescale/models``.

    The folder is not created here; writers create it when they first store something.
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("finescale")) / "models"
