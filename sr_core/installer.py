"""Installing models into the cache: download, import, remove and verify.

The one writer of :mod:`sr_core.cache`. A download is resumable and verified against the
catalogue's published sha256 (or, for entries without one, the hash recorded on first use);
every file is converted once to safetensors, read with ``torch.load(weights_only=True)`` so
that pickled code is refused and never run. Everything a user, the network or the disk can
cause raises a :mod:`sr_core.errors` exception with one sentence naming the model.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import archs, atomic, cache, catalog, paths
from .catalog import Entry
from .checkpoint import read_state_dict
from .community import SpandrelFamily
from .download import DownloadOptions, Progress, fetch, mirror_urls, sha256_file
from .errors import (
    CheckpointError,
    ChecksumError,
    FinescaleError,
    ModelNotFoundError,
    WriteError,
)
from .models import build_from_state_dict

__all__ = ["VerifyResult", "import_checkpoint", "install", "remove", "verify"]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify` for one model."""

    id: str
    ok: bool
    message: str




def install(model_id: str, *, progress: Progress | None = None,
                 options: DownloadOptions | None = None) -> Path:
    """The path of the safetensors weights of ``model_id``, downloading them if needed.

    A cache hit returns at once. Otherwise the file is downloaded (resumable, with
    ``progress(done, total)``), checked against the published sha256 -- or, for entries
    without one, against the hash recorded on the first download -- converted once to
    safetensors (read with ``torch.load(weights_only=True)``: pickled code is refused and
    never run) and stored. Two processes asking at once download it once.
    """
    from filelock import FileLock

    e = catalog.get(model_id)
    if e.embedded:
        path = paths.resource_path(e.file)
        if not path.is_file():
            raise ModelNotFoundError(
                f"{e.id}: its weights ship with Finescale ({e.file}) but are missing from this "
                "installation, and there is nothing to download."
            )
        return path
    if catalog.is_installed(e.id):
        return cache.weights_path(e.id)
    if e.origin == "import":
        raise ModelNotFoundError(
            f"{e.id}: the imported weights are gone from the cache; import the file again."
        )
    folder = _writable_cache(e.id)
    with FileLock(str(cache.locks_dir() / f"{e.id}.lock")):
        if catalog.is_installed(e.id):  # another process finished while we waited
            return cache.weights_path(e.id)
        urls = mirror_urls([*e.urls, *e.mirrors], e.filename or f"{e.id}.pth")
        if not urls:
            raise ModelNotFoundError(
                f"{e.id}: there is no direct download for {e.filename}; get it from {e.source} "
                f"and run `finescale models import FILE --name {e.id}`."
            )
        trusted = cache.trust().get(e.id, {}).get("sha256")
        expected = e.sha256 or trusted
        raw = folder / "downloads" / (e.filename or f"{e.id}.pth")
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
        return cache.weights_path(e.id)


def _writable_cache(mid: str) -> Path:
    folder = paths.cache_dir()
    try:
        cache.locks_dir().mkdir(parents=True, exist_ok=True)
        # A uniquely named probe: two threads of one process must not remove each other's.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as e:
        raise WriteError(f"{mid}: cannot write to the model cache {folder} "
                         f"({e.strerror or e}); set {paths.CACHE_ENV} to a writable "
                         "folder.") from e
    return folder


def _remember_hash(mid: str, digest: str, filename: str) -> None:
    from filelock import FileLock

    locks = cache.locks_dir()
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / "trust.json.lock")):  # other models may record theirs meanwhile
        trust = cache.trust()
        trust[mid] = {"sha256": digest, "file": filename,
                      "first_seen": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        cache.write_json(cache.trust_path(), trust)


def _store(e: Entry, raw: Path, digest: str, *, source: str, verified: bool, check_arch: bool,
           community: bool = False, params: int | None = None) -> Path:
    """Convert ``raw`` to ``<cache>/<id>.safetensors`` (atomic) and write its record."""
    from safetensors.torch import save_file

    sd = read_state_dict(raw)
    if check_arch:
        _check_family(e, sd, raw.name)
    out = cache.weights_path(e.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out) as tmp:
        # clone(): safetensors refuses tensors that share storage, as tied weights may.
        save_file({k: v.clone() for k, v in sd.items()}, str(tmp),
                  metadata={"finescale_id": e.id, "source_sha256": digest})
    n_params = params if params is not None else sum(
        v.numel() for v in sd.values() if v.is_floating_point()
    )
    cache.write_json(cache.record_path(e.id), {
        "id": e.id, "arch": e.arch, "variant": e.variant, "scale": e.scale, "title": e.title,
        "params": n_params, "source": source, "source_sha256": digest,
        "sha256": sha256_file(out), "verified": verified, "origin": e.origin,
        "community": community, "stored": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return out


def _check_family(e: Entry, sd: Mapping[str, Any], filename: str) -> None:
    """Refuse a file that is not the entry's arch / variant / scale (e.g. a mislabelled mirror)."""
    family = archs.by_name(e.arch)
    config = family.detect(sd) if family is not None else None
    if family is None or config is None:
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
    e = catalog.get(model_id)
    if e.embedded:
        raise FinescaleError(f"{e.id}: ships with Finescale and cannot be removed.")
    files = [cache.weights_path(e.id), cache.record_path(e.id)]
    if e.filename:
        files.append(cache.downloads_dir() / f"{e.filename}.part")
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
    e = catalog.get(model_id)
    if not catalog.is_installed(e.id):
        raise ModelNotFoundError(f"{e.id}: is not installed, so there is nothing to verify.")
    path = catalog.model_path(e.id)
    have = sha256_file(path)
    if e.embedded:
        if not e.sha256:
            return VerifyResult(e.id, True, "embedded; no published hash to compare with")
        ok = have == e.sha256
        return VerifyResult(e.id, ok, "matches the catalogue" if ok else
                            "differs from the catalogue's sha256: the installation is damaged")
    rec = cache.record(e.id) or {}
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
    src = Path(path)
    sd = read_state_dict(src)  # refuses missing, empty and unsafe files first
    _writable_cache(name or src.name)
    digest = sha256_file(src)
    models = catalog.shipped()
    if name is None:
        name = next((m for m, e in models.items() if e.sha256 == digest), None) or _slug(src.stem)
    if not catalog.valid_id(name):
        raise FinescaleError(
            f"'{name}': a model name uses lower-case letters, digits, '.', '_' and '-'."
        )
    model = build_from_state_dict(sd, origin=src.name)  # spandrel's architectures included
    arch, variant, scale, title = model.arch, model.variant, model.scale, model.name
    params = model.num_params
    community = isinstance(model.family, SpandrelFamily)
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
        if cache.weights_path(name).exists():
            raise FinescaleError(
                f"{name}: a model of that name is already installed; choose another --name "
                f"or run `finescale models remove {name}` first."
            )
        verified = False
        stored = Entry(id=name, arch=arch, variant=variant, scale=scale, title=title,
                       origin="import", community=community)
    _store(stored, src, digest, source=str(src.resolve()), verified=verified, check_arch=False,
           community=community, params=params)
    if entry is not None and not entry.pinned and name not in cache.trust():
        _remember_hash(name, digest, src.name)
    return catalog.get(name)


def _check_import_fits(entry: Entry, filename: str, digest: str, arch: str, variant: str,
                       scale: int, community: bool) -> None:
    if community or arch != entry.arch or scale != entry.scale or \
            _norm_variant(variant, arch) != _norm_variant(entry.variant, entry.arch):
        raise CheckpointError(
            f"{filename}: holds {arch} {variant} x{scale} weights, not {entry.title}; "
            "import it under another --name."
        )
    expected = entry.sha256 or cache.trust().get(entry.id, {}).get("sha256")
    if expected and digest != expected:
        kind = "published" if entry.sha256 else "first-recorded"
        raise ChecksumError(
            f"{filename}: is not the {entry.title} file (its sha256 differs from the {kind} one); "
            "import it under another --name."
        )


def _slug(stem: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return (s or "model")[:64]
