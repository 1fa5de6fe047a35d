"""The detail <-> clean-up control: one network between a paper-exact model and its photo twin.

A photo model is fine-tuned from a paper-exact (bicubic-trained) model of the same
architecture, so their weights stay in one basin and every point on the straight line between
them is a working network (network interpolation, Wang et al., ESRGAN, ECCV Workshops 2018,
section 3.4). ``clean_up = 0`` is the paper-exact model bit for bit: the most detail, and
noise or JPEG blocks sharpened with it; ``1`` is the photo model bit for bit: noise and blocks
removed, at some cost in fine texture. Values in between trade one for the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from . import catalog
from .errors import FinescaleError, ModelNotFoundError
from .models import SRModel, is_catalogue_id, load_weights

__all__ = ["Endpoints", "blend", "check_clean_up", "default_clean_up", "endpoints"]


def check_clean_up(value: Any) -> float:
    """``value`` as a float in [0, 1]; :class:`ValueError` naming it otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"clean-up must be a number from 0 to 1, not {value!r}.") from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"clean-up must be a number from 0 to 1, not {value!r}.")
    return v


def blend(paper: SRModel, photo: SRModel, clean_up: float) -> SRModel:
    """A new model whose weights are ``(1 - clean_up) * paper + clean_up * photo``.

    The endpoints are returned as exact copies (no arithmetic touches them), so ``0`` and
    ``1`` reproduce the two models bit for bit.
    """
    t = check_clean_up(clean_up)
    a, b = paper.net.state_dict(), photo.net.state_dict()
    if (paper.arch, paper.variant, paper.scale) != (photo.arch, photo.variant, photo.scale) or \
            a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise FinescaleError(f"{paper.name} and {photo.name} cannot be blended: their "
                             "architectures or shapes differ.")
    src = photo if t == 1.0 else paper
    out = load_weights({k: v.clone() for k, v in src.net.state_dict().items()},
                       arch=paper.arch)
    if 0.0 < t < 1.0:
        mixed = {k: torch.lerp(a[k].float(), b[k].float(), t).to(a[k].dtype)
                 if a[k].is_floating_point() else a[k].clone() for k in a}
        out.net.load_state_dict(mixed)
    out.source = f"{paper.source or paper.name} <-> {photo.source or photo.name} at {t:g}"
    return out.eval()


@dataclass(frozen=True)
class Endpoints:
    """The catalogue models a clean-up value needs: one id (``t`` None), or the paper-exact
    and photo ids of a pair and the point ``t`` between them."""

    ids: tuple[str, ...]
    t: float | None = None


def default_clean_up(source: Any) -> float | None:
    """The clean-up value ``source`` runs at when the user names none: a photo model's
    catalogue default (0.75 for ours), None for anything else (files, paper-exact models)."""
    if not (isinstance(source, str) and is_catalogue_id(source)):
        return None
    try:
        e = catalog.get(source)
    except ModelNotFoundError:  # the loader says so, in its own sentence
        return None
    if e.kind != "photo" or e.clean_up is None or catalog.clean_up_pair(e.id) is None:
        return None
    return e.clean_up


def endpoints(model_id: str, clean_up: float | None) -> Endpoints:
    """Which models to load for catalogue model ``model_id`` at ``clean_up``.

    ``None`` means the model itself, bit for bit (see :func:`default_clean_up` for the
    value a photo model runs at by default). A value for a model without a pair is refused
    in one sentence; 0 and 1 name one end of the pair only (bit for bit that model).
    """
    if clean_up is None:
        return Endpoints((catalog.get(model_id).id,))
    pair = catalog.clean_up_pair(model_id)
    t = check_clean_up(clean_up)
    if pair is None:
        raise FinescaleError(catalog.clean_up_unavailable(model_id) or
                             f"{model_id} has no clean-up control.")
    if t in (0.0, 1.0):
        return Endpoints((pair[int(t)],))
    return Endpoints(pair, t)
