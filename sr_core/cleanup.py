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
from typing import Any

import torch

from . import catalog
from .errors import FinescaleError
from .models import SRModel, is_catalogue_id, load_model


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
    out = load_model({k: v.clone() for k, v in src.net.state_dict().items()},
                     arch=paper.arch)
    if 0.0 < t < 1.0:
        mixed = {k: torch.lerp(a[k].float(), b[k].float(), t).to(a[k].dtype)
                 if a[k].is_floating_point() else a[k].clone() for k in a}
        out.net.load_state_dict(mixed)
    out.source = f"{paper.source or paper.name} <-> {photo.source or photo.name} at {t:g}"
    return out.eval()


def load_with_clean_up(model_id: str, clean_up: float | None) -> SRModel:
    """Load catalogue model ``model_id`` at ``clean_up`` along its detail <-> clean-up pair.

    ``None`` means: the photo model's catalogue default for a photo model, and the model
    unchanged for any other. A value for a model without a pair is refused in one sentence.
    """
    pair = catalog.clean_up_pair(model_id)
    if clean_up is None:
        e = catalog.get(model_id)
        if pair is None or e.kind != "photo" or e.clean_up is None:
            return load_model(model_id)
        clean_up = e.clean_up
    t = check_clean_up(clean_up)
    if pair is None:
        raise FinescaleError(catalog.clean_up_unavailable(model_id) or
                             f"{model_id} has no clean-up control.")
    paper_id, photo_id = pair
    if t == 0.0:
        return load_model(paper_id)
    if t == 1.0:
        return load_model(photo_id)
    return blend(load_model(paper_id), load_model(photo_id), t)


def resolve_model(source: Any, clean_up: float | None = None) -> SRModel:
    """The model to run for ``source``: a catalogue id goes through its clean-up pair (see
    :func:`load_with_clean_up`), anything else :func:`load_model` takes is loaded as is."""
    if clean_up is not None:
        check_clean_up(clean_up)
    if isinstance(source, str) and is_catalogue_id(source):
        return load_with_clean_up(source, clean_up)
    if clean_up is not None:
        raise FinescaleError("clean-up works with catalogue models that have a paper-exact and "
                             "a photo version, not with a checkpoint file or a loaded model.")
    return load_model(source)
