"""The model catalogue (``resources/models.toml``) and the local weight cache.

A model id (``hpinet-m-x4``) names an entry of the catalogue, a file shipped inside
Finescale, or a checkpoint the user imported. Downloaded and imported weights are stored
once, converted to safetensors, in the cache (:func:`sr_core.paths.cache_dir`)::

    <cache>/<id>.safetensors   the weights load_model reads (tensors only, never a pickle)
    <cache>/<id>.json          where they came from, hashes, arch / variant / scale
    <cache>/trust.json         hashes recorded on first use for entries without a published one
    <cache>/downloads/         partial downloads (``.part``), resumed on the next attempt

Everything that can fail because of the user, the network or the disk raises a
:mod:`sr_core.errors` exception with one sentence naming the model.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .download import DownloadOptions, Progress, fetch, mirror_urls, sha256_file
from .errors import (
    CheckpointError,
    ChecksumError,
    FinescaleError,
    ModelNotFoundError,
    UnknownArchitectureError,
    WriteError,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Families whose weights the catalogue may name; community models come through spandrel.
ARCHES = ("hpinet", "hat", "spin", "asid")

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


@dataclass(frozen=True)
class Status:
    """What the cache holds for an entry (the ``finescale models list`` row)."""

    entry: Entry
    installed: bool
    verified: bool
    path: Path | None
    size: int | None

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
            "clean_up": e.clean_up,
        }


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify` for one model."""

    id: str
    ok: bool
    message: str


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
    if spec["arch"] not in ARCHES:
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


# --- the cache ----------------------------------------------------------------------------------
def _weights(mid: str) -> Path:
    return paths.cache_dir() / f"{mid}.safetensors"


def _record_path(mid: str) -> Path:
    return paths.cache_dir() / f"{mid}.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _record(mid: str) -> dict[str, Any] | None:
    return _read_json(_record_path(mid))


def _trust() -> dict[str, Any]:
    return _read_json(paths.cache_dir() / "trust.json") or {}


def _imports() -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    cache = paths.cache_dir()
    if not cache.is_dir():
        return out
    for rec_path in sorted(cache.glob("*.json")):
        rec = _read_json(rec_path)
        if not rec or rec.get("origin") != "import" or rec.get("id") != rec_path.stem:
            continue
        out[rec["id"]] = Entry(
            id=rec["id"], arch=rec.get("arch", "?"), variant=str(rec.get("variant", "")),
            scale=int(rec.get("scale", 0)), title=rec.get("title", rec["id"]),
            description=f"Imported from {rec.get('source', 'a file')}.", params=rec.get("params"),
            licence="as the file's author states", origin="import",
            community=bool(rec.get("community")),
        )
    return out


# --- public API ---------------------------------------------------------------------------------
def entries() -> list[Entry]:
    """Every known model: the catalogue (in file order), then imported models by id."""
    models, _ = _catalogue()
    imports = {k: v for k, v in _imports().items() if k not in models}
    return [*models.values(), *imports.values()]


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
    return paths.resource_path(e.file) if e.embedded else _weights(e.id)


def is_installed(model_id: str) -> bool:
    """True when the weights are on this machine (embedded, downloaded or imported)."""
    e = get(model_id)
    if e.embedded:
        return paths.resource_path(e.file).is_file()
    return _weights(e.id).is_file() and _record(e.id) is not None


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
        verified = bool((_record(e.id) or {}).get("verified"))
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


def ensure_model(model_id: str, *, progress: Progress | None = None,
                 options: DownloadOptions | None = None) -> Path:
    """The path of the safetensors weights of ``model_id``, downloading them if needed.

    A cache hit returns at once. Otherwise the file is downloaded (resumable, with
    ``progress(done, total)``), checked against the published sha256 -- or, for entries
    without one, against the hash recorded on the first download -- converted once to
    safetensors (read with ``torch.load(weights_only=True)``: pickled code is refused and
    never run) and stored. Two processes asking at once download it once.
    """
    from filelock import FileLock

    e = get(model_id)
    if e.embedded:
        path = paths.resource_path(e.file)
        if not path.is_file():
            raise ModelNotFoundError(
                f"{e.id}: its weights ship with Finescale ({e.file}) but are missing from this "
                "installation, and there is nothing to download."
            )
        return path
    if is_installed(e.id):
        return _weights(e.id)
    if e.origin == "import":
        raise ModelNotFoundError(
            f"{e.id}: the imported weights are gone from the cache; import the file again."
        )
    cache = _writable_cache(e.id)
    with FileLock(str(cache / ".locks" / f"{e.id}.lock")):
        if is_installed(e.id):  # another process finished while we waited
            return _weights(e.id)
        urls = mirror_urls([*e.urls, *e.mirrors], e.filename or f"{e.id}.pth")
        if not urls:
            raise ModelNotFoundError(
                f"{e.id}: there is no direct download for {e.filename}; get it from {e.source} "
                f"and run `finescale models import FILE --name {e.id}`."
            )
        trusted = _trust().get(e.id, {}).get("sha256")
        expected = e.sha256 or trusted
        raw = cache / "downloads" / (e.filename or f"{e.id}.pth")
        got = fetch(urls, raw, sha256=expected, size=e.size, what=e.id, progress=progress,
                    options=options)
        try:
            # Without a published hash, at least make sure the file is the model it claims.
            _store(e, raw, got.sha256, source=got.url or urls[0], verified=e.pinned,
                   check_arch=not e.pinned)
        finally:
            raw.unlink(missing_ok=True)
        if not e.pinned and not trusted:
            _remember_hash(e.id, got.sha256, raw.name)
        return _weights(e.id)


def _writable_cache(mid: str) -> Path:
    cache = paths.cache_dir()
    try:
        (cache / ".locks").mkdir(parents=True, exist_ok=True)
        # A uniquely named probe: two threads of one process must not remove each other's.
        with tempfile.NamedTemporaryFile(dir=cache, prefix=".write-test."):
            pass
    except OSError as e:
        raise WriteError(f"{mid}: cannot write to the model cache {cache} ({e.strerror or e}); "
                         f"set {paths.CACHE_ENV} to a writable folder.") from e
    return cache


def _remember_hash(mid: str, digest: str, filename: str) -> None:
    from filelock import FileLock

    locks = paths.cache_dir() / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / "trust.json.lock")):  # other models may record theirs meanwhile
        trust = _trust()
        trust[mid] = {"sha256": digest, "file": filename,
                      "first_seen": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_json(paths.cache_dir() / "trust.json", trust)


def _store(e: Entry, raw: Path, digest: str, *, source: str, verified: bool, check_arch: bool,
           community: bool = False, params: int | None = None) -> Path:
    """Convert ``raw`` to ``<cache>/<id>.safetensors`` (atomic) and write its record."""
    from safetensors.torch import save_file

    from .checkpoint import read_state_dict

    sd = read_state_dict(raw)
    if check_arch:
        _check_family(e, sd, raw.name)
    out = _weights(e.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        # clone(): safetensors refuses tensors that share storage, as tied weights may.
        save_file({k: v.clone() for k, v in sd.items()}, str(tmp),
                  metadata={"finescale_id": e.id, "source_sha256": digest})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    n_params = params if params is not None else sum(
        v.numel() for v in sd.values() if v.is_floating_point()
    )
    _write_json(_record_path(e.id), {
        "id": e.id, "arch": e.arch, "variant": e.variant, "scale": e.scale, "title": e.title,
        "params": n_params, "source": source, "source_sha256": digest,
        "sha256": sha256_file(out), "verified": verified, "origin": e.origin,
        "community": community, "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return out


def _check_family(e: Entry, sd: Mapping[str, Any], filename: str) -> None:
    """Refuse a file that is not the entry's arch / variant / scale (e.g. a mislabelled mirror)."""
    import importlib

    family = importlib.import_module(f"sr_core.archs.{e.arch}")
    config = family.detect(sd)
    if config is None:
        raise CheckpointError(
            f"{e.id}: {filename} does not hold {e.title} weights; it was not stored."
        )
    got_variant, got_scale = str(config.variant), int(config.scale)
    same_variant = _norm_variant(got_variant, e.arch) == _norm_variant(e.variant, e.arch)
    if not same_variant or got_scale != e.scale:
        raise CheckpointError(
            f"{e.id}: {filename} holds {family.INFO.title} {got_variant} x{got_scale} weights, "
            f"not {e.title}; it was not stored."
        )


def _norm_variant(variant: str, arch: str) -> str:
    v = re.sub(r"[^a-z0-9]", "", variant.lower())
    return v[len(arch):] if v.startswith(arch) else v


def remove(model_id: str) -> int:
    """Delete the cached weights of ``model_id`` (and any partial download); return bytes freed.

    The hash recorded on first use is kept, so a later download is still checked against it.
    """
    e = get(model_id)
    if e.embedded:
        raise FinescaleError(f"{e.id}: ships with Finescale and cannot be removed.")
    files = [_weights(e.id), _record_path(e.id)]
    if e.filename:
        files.append(paths.cache_dir() / "downloads" / f"{e.filename}.part")
    if not any(f.exists() for f in files):
        raise ModelNotFoundError(f"{e.id}: is not installed.")
    freed = 0
    for f in files:
        if f.exists():
            freed += f.stat().st_size
            f.unlink()
    return freed


def verify(model_id: str) -> VerifyResult:
    """Re-hash the stored weights of ``model_id`` and compare with what was recorded.

    Embedded files are checked against the catalogue's sha256. A model that is not installed
    raises :class:`ModelNotFoundError`.
    """
    e = get(model_id)
    if not is_installed(e.id):
        raise ModelNotFoundError(f"{e.id}: is not installed, so there is nothing to verify.")
    path = model_path(e.id)
    have = sha256_file(path)
    if e.embedded:
        if not e.sha256:
            return VerifyResult(e.id, True, "embedded; no published hash to compare with")
        ok = have == e.sha256
        return VerifyResult(e.id, ok, "matches the catalogue" if ok else
                            "differs from the catalogue's sha256: the installation is damaged")
    rec = _record(e.id) or {}
    if have != rec.get("sha256"):
        return VerifyResult(e.id, False, "changed since it was stored; run "
                            f"`finescale models remove {e.id}` and get it again")
    if rec.get("verified"):
        how = "matches the published sha256"
    elif e.origin == "import":
        how = f"unchanged since it was imported from {rec.get('source', 'a file')} (unverified)"
    else:
        how = "unchanged since the first download (no published hash: trust on first use)"
    return VerifyResult(e.id, True, how)


def import_checkpoint(path: str | os.PathLike[str], name: str | None = None) -> Entry:
    """Register a checkpoint file in the cache under ``name`` and return its entry.

    The architecture, variant and scale are detected from the weights (as ``load_model``
    does); weights of other architectures (ESRGAN, SwinIR...) are accepted through the
    optional ``spandrel`` package. ``name`` defaults to the catalogue id whose published
    hash the file has, else to the file name. A name that is a catalogue id must fit that
    entry (same arch / variant / scale and, where published, the same sha256).
    """
    from .checkpoint import read_state_dict
    from .models import build_from_state_dict

    src = Path(path)
    sd = read_state_dict(src)  # refuses missing, empty and unsafe files first
    _writable_cache(name or src.name)
    digest = sha256_file(src)
    models, _ = _catalogue()
    if name is None:
        name = next((m for m, e in models.items() if e.sha256 == digest), None) or _slug(src.stem)
    if not _ID.match(name):
        raise FinescaleError(
            f"'{name}': a model name uses lower-case letters, digits, '.', '_' and '-'."
        )
    community = False
    try:
        model = build_from_state_dict(sd, origin=src.name)
        arch, variant, scale, title = model.arch, model.variant, model.scale, model.name
        params = model.num_params
    except UnknownArchitectureError as ours:
        from .community import describe

        arch, variant, scale, title, params = describe(sd, src.name, ours)
        community = True
    entry = models.get(name)
    if entry is not None:
        if entry.embedded:
            raise FinescaleError(
                f"{name}: ships with Finescale; import the file under another --name."
            )
        _check_import_fits(entry, src.name, digest, arch, variant, scale, community)
        verified = entry.pinned
        stored = entry
    else:
        if _weights(name).exists():
            raise FinescaleError(
                f"{name}: a model of that name is already installed; choose another --name "
                f"or run `finescale models remove {name}` first."
            )
        verified = False
        stored = Entry(id=name, arch=arch, variant=variant, scale=scale, title=title,
                       origin="import", community=community)
    _store(stored, src, digest, source=str(src.resolve()), verified=verified, check_arch=False,
           community=community, params=params)
    if entry is not None and not entry.pinned and name not in _trust():
        _remember_hash(name, digest, src.name)
    return get(name)


def _check_import_fits(entry: Entry, filename: str, digest: str, arch: str, variant: str,
                       scale: int, community: bool) -> None:
    if community or arch != entry.arch or scale != entry.scale or \
            _norm_variant(variant, arch) != _norm_variant(entry.variant, entry.arch):
        raise CheckpointError(
            f"{filename}: holds {arch} {variant} x{scale} weights, not {entry.title}; "
            "import it under another --name."
        )
    expected = entry.sha256 or _trust().get(entry.id, {}).get("sha256")
    if expected and digest != expected:
        kind = "published" if entry.sha256 else "first-recorded"
        raise ChecksumError(
            f"{filename}: is not the {entry.title} file (its sha256 differs from the {kind} one); "
            "import it under another --name."
        )


def _slug(stem: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return (s or "model")[:64]
