"""Network architectures: one file per family, shared pieces in :mod:`layers`, and the one
list of families (:data:`FAMILIES`).

Every family module implements :class:`Family`, in the manner of timm's model files: ``INFO``
(static facts, :class:`layers.ArchInfo`), a frozen config dataclass with ``variant`` and
``scale``, ``VARIANTS`` (the published variants as config instances at x4),
``config(variant, scale)``, ``detect(state_dict)``, ``build(config)`` and
``estimate_memory(config, h, w, dtype_bytes)``. The rules every family keeps:

* ``detect`` returns ``None`` when the weights are not the family's, a config when they are,
  and raises :class:`~sr_core.errors.CheckpointError` when they are the family's but unusable
  (hyper-parameters outside the family's stated bounds, malformed shapes).
* ``build`` returns the network with random weights, in eval mode, with attribute names that
  reproduce the official state-dict keys.

Nothing here knows of files, downloads, tiles or devices.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .layers import ArchInfo

__all__ = ["FAMILIES", "Family", "FamilyConfig", "by_name", "families", "names", "titles"]

#: The families Finescale implements, in detection order: the one list. The catalogue, the
#: loader, training and the messages all read it. Their modules (and torch) are imported on
#: first use of :data:`FAMILIES`, so that reading the catalogue stays light.
_NAMES = ("hpinet", "hat", "spin", "asid")
_TITLES = ("HPINet", "HAT", "SPIN", "ASID")


@runtime_checkable
class FamilyConfig(Protocol):
    """What every family's config holds besides its own hyper-parameters."""

    @property
    def variant(self) -> str: ...

    @property
    def scale(self) -> int: ...


@runtime_checkable
class Family(Protocol):
    """The typed contract of an architecture family (a module, or the spandrel adapter)."""

    INFO: ArchInfo

    def detect(self, state_dict: Mapping[str, torch.Tensor], /) -> FamilyConfig | None:
        """The config the weights were made with; None when they are not this family's."""
        ...

    def build(self, config: FamilyConfig, /) -> nn.Module:
        """The network for ``config`` with random weights, in eval mode."""
        ...

    def estimate_memory(self, config: FamilyConfig, h: int, w: int,
                        dtype_bytes: int = 4, /) -> int:
        """Peak working bytes of one ``h x w`` forward (batch 1)."""
        ...


def families() -> tuple[Family, ...]:
    """The family modules, in detection order (imported on first call)."""
    return tuple(importlib.import_module(f"{__name__}.{n}") for n in _NAMES)  # type: ignore[misc]


def __getattr__(name: str) -> Any:
    if name == "FAMILIES":  # the registry as a constant, for `archs.FAMILIES`
        return families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def names() -> tuple[str, ...]:
    """The families' lower-case names (``"hpinet"``, ...), as the catalogue and --arch spell
    them."""
    return _NAMES


def titles() -> str:
    """The families as prose names them: ``"HPINet, HAT, SPIN and ASID"``."""
    return f"{', '.join(_TITLES[:-1])} and {_TITLES[-1]}"


def by_name(name: str) -> Family | None:
    """The family called ``name`` (case, '-' and '_' ignored), or None."""
    wanted = name.lower().replace("-", "").replace("_", "")
    return next((f for f in families() if f.INFO.name == wanted), None)
