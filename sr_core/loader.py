"""From a source to a model: the one way the CLI, the window and the API load one.

A source is a checkpoint file, a state-dict mapping, an :class:`~sr_core.models.SRModel`, or a
catalogue id. An id goes through the detail <-> clean-up control (:mod:`sr_core.cleanup`);
each model it needs is installed first when it is not yet on this machine
(:func:`sr_core.installer.install`, with download progress and cancel), then read from the
cache. Files and mappings go straight to :func:`sr_core.models.load_weights`; weights none of
our families knows reach spandrel there, whatever the source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from . import catalog, cleanup, installer
from .checkpoint import read_state_dict
from .download import DownloadOptions
from .errors import Cancelled, FinescaleError
from .models import SRModel, build_from_state_dict, is_catalogue_id, load_weights
from .units import format_bytes

__all__ = ["CancelToken", "is_catalogue_id", "load_model"]


class CancelToken(Protocol):
    """Anything with ``is_set()`` (a :class:`threading.Event`)."""

    def is_set(self) -> bool: ...


def load_model(source: Any, *, clean_up: float | None = None, arch: str | None = None,
               progress: Callable[[int, int | None], None] | None = None,
               cancel: CancelToken | None = None,
               on_status: Callable[[str], None] | None = None,
               download: DownloadOptions | None = None, **overrides: Any) -> SRModel:
    """Load ``source`` as a ready :class:`SRModel` (eval mode, on the CPU).

    Args:
        source: a checkpoint path, a state dict, an SRModel, or a catalogue id.
        clean_up: for a catalogue model with a paper-exact and a photo version, the point
            between them (0 = paper-exact, 1 = photo); None is the model the id names, bit
            for bit (:func:`sr_core.cleanup.default_clean_up` gives the value a photo model
            runs at by default). Refused for anything else.
        arch: restrict detection to one family (files and mappings).
        progress: ``progress(done_bytes, total_bytes or None)`` while a model downloads.
        cancel: stops a download (the part fetched is kept for next time) with
            :class:`~sr_core.errors.Cancelled`.
        on_status: one sentence per step ("Downloading ...", "Loading the model...").
        download: network options for a download.
        overrides: config fields that shapes cannot tell (files and mappings).
    """
    def say(text: str) -> None:
        if on_status is not None:
            on_status(text)

    if not (isinstance(source, str) and is_catalogue_id(source)):
        if clean_up is not None:
            cleanup.check_clean_up(clean_up)
            raise FinescaleError("clean-up works with catalogue models that have a "
                                 "paper-exact and a photo version, not with a checkpoint "
                                 "file or a loaded model.")
        if not isinstance(source, (SRModel, Mapping)):
            say("Loading the model...")
        return load_weights(source, arch=arch, **overrides)
    ends = cleanup.endpoints(source, clean_up)
    paths = [_install(mid, progress, cancel, say, download) for mid in ends.ids]
    say("Loading the model...")
    loaded = [build_from_state_dict(read_state_dict(path), origin=mid, arch=arch, **overrides)
              for mid, path in zip(ends.ids, paths, strict=True)]
    if ends.t is None:
        return loaded[0]
    return cleanup.blend(loaded[0], loaded[1], ends.t)


def _install(model_id: str, progress: Callable[[int, int | None], None] | None,
             cancel: CancelToken | None, say: Callable[[str], None],
             options: DownloadOptions | None) -> Path:
    """The weights' path, downloading them first when they are not on this machine."""
    if catalog.is_installed(model_id):
        return installer.install(model_id)  # there already: its path, at once
    entry = catalog.get(model_id)
    size = f" ({format_bytes(entry.size)})" if entry.size else ""
    say(f"Downloading {entry.title}{size}...")

    def report(done: int, total: int | None) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Download cancelled; it resumes where it stopped next time.")
        if progress is not None:
            progress(done, total)

    return installer.install(model_id, progress=report, options=options)
