"""The model catalogue, read-only: what models exist and where each one stands.

A model id (``hpinet-m-x4``) names an entry of the catalogue (``resources/models.toml``), a
file shipped inside Finescale, or a checkpoint the user imported (a record in
:mod:`sr_core.cache`). This module reads; :mod:`sr_core.installer` downloads, imports and
removes, and :mod:`sr_core.loader` turns an id into a model. An unknown id raises
:class:`~sr_core.errors.ModelNotFoundError` with one sentence naming it.
"""

from __future__ import annotations

import difflib
import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import archs, cache, paths
from .errors import (
    ModelNotFoundError,
)

__all__ = ["Availability", "catalog_file", "clean_up_pair", "clean_up_unavailable",
           "default_model", "entries", "Entry", "get", "is_community", "is_installed", "KINDS",
           "model_path", "shipped", "status", "Status", "valid_id"]


#: What a model was trained for: ``paper-exact`` models reproduce the papers' setting (clean
#: bicubic downscales; the benchmark numbers), ``photo`` models are fine-tuned on real-world
#: degradations (blur, noise, JPEG) for the photos people actually have.
KINDS = ("paper-exact", "photo")

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Entry:
    """One model the catalogue knows: a catalogue entry, an embedded file or an import."""

    id: str
    arch: str
    variant: str
    scale: int
    title: str
    description: str = ""
    params: int | None = None
    urls: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None
    file: str | None = None
    psnr: Mapping[str, float] = field(default_factory=dict)
    licence: str = ""
    source: str = ""
    paper: str = ""
    note: str = ""
    origin: str = "catalogue"  # "catalogue" or "import"
    community: bool = False
    kind: str = "paper-exact"  # one of KINDS
    #: For a photo model: the paper-exact model it was fine-tuned from (same architecture,
    #: variant and scale), the other end of the detail <-> clean-up control.
    base: str | None = None
    #: For a photo model with a base: the clean-up value used when none is given.
    clean_up: float | None = None

    @property
    def embedded(self) -> bool:
        """The weights ship inside Finescale (``resources/<file>``): nothing to download."""
        return self.file is not None

    @property
    def pinned(self) -> bool:
        """A published sha256 is known, so a download is verified against it."""
        return self.sha256 is not None

    @property
    def downloadable(self) -> bool:
        """There is at least one direct address for the weights."""
        return bool(self.urls or self.mirrors)


class Availability(enum.StrEnum):
    """Where a model stands on this machine, in the one set of words the CLI and the window
    both use (the window capitalises them)."""

    INCLUDED = "included"  # ships inside Finescale
    INSTALLED = "installed"  # downloaded or imported into the cache
    AVAILABLE = "available"  # a direct download exists
    MANUAL = "manual download"  # no direct link: get the file and import it
    MISSING = "missing"  # shipped, but absent from this installation (a damaged install)


@dataclass(frozen=True)
class Status:
    """What the cache holds for an entry (the ``finescale models list`` row)."""

    entry: Entry
    installed: bool
    verified: bool
    path: Path | None
    size: int | None

    @property
    def availability(self) -> Availability:
        """Included, installed, available, manual download or missing."""
        e = self.entry
        if e.embedded:
            return Availability.INCLUDED if self.installed else Availability.MISSING
        if self.installed:
            return Availability.INSTALLED
        return Availability.AVAILABLE if e.downloadable else Availability.MANUAL

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row: id, arch, variant, scale, size, installed, verified, licence..."""
        e = self.entry
        return {
            "id": e.id, "arch": e.arch, "variant": e.variant, "scale": e.scale, "title": e.title,
            "params": e.params, "size": self.size, "installed": self.installed,
            "verified": self.verified, "licence": e.licence, "origin": e.origin,
            "embedded": e.embedded, "downloadable": e.downloadable, "community": e.community,
            "description": e.description, "psnr": dict(e.psnr), "source": e.source,
            "path": str(self.path) if self.path else None, "kind": e.kind, "base": e.base,
            "clean_up": e.clean_up, "availability": self.availability.value,
        }


# --- the catalogue file -------------------------------------------------------------------------
def catalog_file() -> Path:
    """Path of the catalogue shipped with Finescale (``resources/models.toml``)."""
    return paths.resources_dir() / "models.toml"


_parsed: dict[tuple[str, float], tuple[dict[str, Entry], tuple[str, ...]]] = {}


def _catalogue() -> tuple[dict[str, Entry], tuple[str, ...]]:
    path = catalog_file()
    key = (str(path), path.stat().st_mtime)
    if key not in _parsed:
        with path.open("rb") as f:
            data = tomllib.load(f)
        specs = data.get("models", {})
        models = {mid: _entry_from_toml(mid, spec, path.name) for mid, spec in specs.items()}
        default = tuple(data.get("default", ()))
        for mid in default:
            if mid not in models:
                raise ValueError(f"{path.name}: default model '{mid}' is not in the catalogue")
        for mid, e in models.items():
            b = models.get(e.base) if e.base else None
            if e.base and (b is None or (b.arch, b.variant, b.scale) != (e.arch, e.variant,
                                                                          e.scale)):
                raise ValueError(f"{path.name}: [models.{mid}] base '{e.base}' is not a "
                                 "catalogue model of the same architecture, variant and scale")
        _parsed.clear()
        _parsed[key] = (models, default)
    return _parsed[key]


def _entry_from_toml(mid: str, spec: Mapping[str, Any], origin: str) -> Entry:
    where = f"{origin} [models.{mid}]"
    if not _ID.match(mid):
        raise ValueError(f"{where}: ids are lower-case letters, digits, '.', '_' and '-'")
    missing = [k for k in ("arch", "variant", "scale", "title") if k not in spec]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    if spec["arch"] not in archs.names():
        raise ValueError(f"{where}: unknown arch '{spec['arch']}'")
    sha = spec.get("sha256")
    if sha is not None and not _HEX64.match(sha):
        raise ValueError(f"{where}: sha256 must be 64 lower-case hex digits")
    urls, mirrors = tuple(spec.get("urls", ())), tuple(spec.get("mirrors", ()))
    filename = spec.get("filename") or (Path(urls[0]).name if urls else None)
    if (urls or mirrors) and not filename:
        raise ValueError(f"{where}: a downloadable entry needs a filename")
    if spec.get("file") and (urls or mirrors):
        raise ValueError(f"{where}: an embedded file cannot also be downloaded")
    kind = spec.get("kind", "paper-exact")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}")
    if (spec.get("base") or spec.get("clean_up") is not None) and kind != "photo":
        raise ValueError(f"{where}: only a photo model has a base and a clean_up default")
    clean = spec.get("clean_up")
    if clean is not None and not (0.0 <= float(clean) <= 1.0):
        raise ValueError(f"{where}: clean_up must lie in 0..1")
    known = set(Entry.__dataclass_fields__) - {"id", "origin", "community"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return Entry(
        id=mid, arch=spec["arch"], variant=str(spec["variant"]), scale=int(spec["scale"]),
        title=spec["title"], description=spec.get("description", ""), params=spec.get("params"),
        urls=urls, mirrors=mirrors, filename=filename, sha256=sha, size=spec.get("size"),
        file=spec.get("file"), psnr=dict(spec.get("psnr", {})), licence=spec.get("licence", ""),
        source=spec.get("source", ""), paper=spec.get("paper", ""), note=spec.get("note", ""),
        kind=kind, base=spec.get("base"), clean_up=None if clean is None else float(clean),
    )


def _imports() -> dict[str, Entry]:
    return {rec["id"]: Entry(
        id=rec["id"], arch=rec.get("arch", "?"), variant=str(rec.get("variant", "")),
        scale=int(rec.get("scale", 0)), title=rec.get("title", rec["id"]),
        description=f"Imported from {rec.get('source', 'a file')}.", params=rec.get("params"),
        licence="as the file's author states", origin="import",
        community=bool(rec.get("community")),
    ) for rec in cache.imported_records()}


# --- public API ---------------------------------------------------------------------------------
def entries() -> list[Entry]:
    """Every known model: the catalogue (in file order), then imported models by id."""
    models, _ = _catalogue()
    imports = {k: v for k, v in _imports().items() if k not in models}
    return [*models.values(), *imports.values()]


def shipped() -> dict[str, Entry]:
    """The catalogue's own entries (``resources/models.toml``) by id, imports left out."""
    models, _ = _catalogue()
    return dict(models)


def valid_id(name: str) -> bool:
    """True when ``name`` may be a model id (lower-case letters, digits, '.', '_', '-')."""
    return bool(_ID.match(name))


def get(model_id: str) -> Entry:
    """The entry for ``model_id``; :class:`ModelNotFoundError` if there is none."""
    models, _ = _catalogue()
    if model_id in models:
        return models[model_id]
    imported = _imports()
    if model_id in imported:
        return imported[model_id]
    known = sorted([*models, *imported])
    close = difflib.get_close_matches(model_id.lower(), known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ModelNotFoundError(
        f"'{model_id}' is neither a file nor a known model{hint}; "
        "`finescale models list` shows them."
    )


def model_path(model_id: str) -> Path:
    """Where the weights of ``model_id`` are (or would be) stored."""
    e = get(model_id)
    return paths.resource_path(e.file) if e.embedded else cache.weights_path(e.id)


def is_installed(model_id: str) -> bool:
    """True when the weights are on this machine (embedded, downloaded or imported)."""
    e = get(model_id)
    if e.embedded:
        return paths.resource_path(e.file).is_file()
    return cache.weights_path(e.id).is_file() and cache.record(e.id) is not None


def is_community(model_id: str) -> bool:
    """True for an imported model of an architecture that only spandrel knows."""
    return get(model_id).community


def status(model_id: str) -> Status:
    """Installed / verified state and size on disk of one model."""
    e = get(model_id)
    installed = is_installed(model_id)
    path = model_path(model_id) if installed else None
    if e.embedded:
        verified = e.pinned
    elif installed:
        verified = bool((cache.record(e.id) or {}).get("verified"))
    else:
        verified = e.pinned
    size = path.stat().st_size if path else e.size
    return Status(e, installed, verified, path, size)


def clean_up_pair(model_id: str) -> tuple[str, str] | None:
    """``(paper-exact id, photo id)`` of the detail <-> clean-up pair ``model_id`` belongs to.

    None when the model has no such partner (the control does not apply to it).
    """
    e = get(model_id)
    if e.kind == "photo" and e.base:
        return e.base, e.id
    for other in entries():
        if other.kind == "photo" and other.base == e.id:
            return e.id, other.id
    return None


def clean_up_unavailable(model_id: str) -> str | None:
    """Why the detail <-> clean-up control does not apply to ``model_id`` (one sentence), or
    None when it does."""
    if clean_up_pair(model_id) is not None:
        return None
    e = get(model_id)
    if e.kind == "photo":
        return (f"{e.id} has no paper-exact twin of ours to blend with, so clean-up is "
                "fixed at its full strength.")
    pairs = [f"{e.base} / {e.id}" for e in entries() if e.kind == "photo" and e.base]
    return (f"{e.id} has no photo-trained version to blend with; clean-up works with "
            f"{' and '.join(pairs) or 'no installed model'}.")


def default_model() -> str:
    """The model ``finescale upscale`` uses when none is named.

    The first installed model of the catalogue's ``default`` list (the embedded default
    first). Raises :class:`ModelNotFoundError` saying which model to download when none is.
    """
    _, default = _catalogue()
    for mid in default:
        if is_installed(mid):
            return mid
    wanted = next((m for m in default if get(m).downloadable), None)
    if wanted is None:
        raise ModelNotFoundError("No default model is installed; pass a model with -m.")
    size = get(wanted).size
    about = f" (about {size / 1e6:.0f} MB)" if size else ""
    raise ModelNotFoundError(
        f"No model is installed yet: run `finescale models download {wanted}`{about} once, "
        "or name a checkpoint file with -m."
    )


