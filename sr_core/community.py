"""Architectures that are not ours (ESRGAN, SwinIR, ...) through the optional spandrel package.

``pip install "finescale[community]"`` installs spandrel; its model is then wrapped in an
:class:`~sr_core.models.SRModel` so that it runs through the same engine (tiling, devices,
precision) as the four families Finescale implements itself. Weights reach spandrel as an
already-read state dict (tensors only), never as a file it would unpickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .archs.layers import ArchInfo
from .errors import CheckpointError, UnknownArchitectureError

INSTALL_HINT = 'pip install "finescale[community]"'


@dataclass(frozen=True)
class CommunityConfig:
    """What spandrel detected: its architecture's name (as ``variant``) and the scale."""

    variant: str
    scale: int


class _SpandrelFamily:
    """The family surface ``SRModel`` expects (``INFO``, ``estimate_memory``) for one model."""

    def __init__(self, info: ArchInfo, num_params: int) -> None:
        self.INFO = info
        self._num_params = num_params

    def estimate_memory(self, config: CommunityConfig, h: int, w: int, dtype_bytes: int = 4) -> int:
        # Not calibrated (the architecture is unknown to us): a deliberately generous guess of
        # sixteen live 64-channel feature maps at input size plus the output and the weights.
        features = 16 * h * w * 64 * dtype_bytes
        output = 4 * h * w * config.scale ** 2 * 3 * dtype_bytes
        return features + output + self._num_params * dtype_bytes


def _descriptor(sd: Mapping[str, torch.Tensor], origin: str, ours: Exception | None) -> Any:
    try:
        import spandrel
    except ImportError:
        found = f"{str(ours).rstrip('.')}; " if ours else f"{origin}: "
        raise UnknownArchitectureError(
            f"{found}other architectures (ESRGAN, SwinIR, ...) need the optional spandrel package, "
            f"which is not installed: {INSTALL_HINT}."
        ) from None
    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(dict(sd))
    except spandrel.UnsupportedModelError:
        raise UnknownArchitectureError(
            f"{origin}: neither Finescale (HPINet, HAT, SPIN, ASID) nor spandrel recognises "
            "these weights."
        ) from None
    except Exception as e:  # spandrel raises many kinds for weights that half-fit an arch
        raise CheckpointError(f"{origin}: spandrel could not load these weights "
                              f"({type(e).__name__}: {str(e).strip()[:120]}).") from e
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.input_channels != 3 \
            or desc.output_channels != 3:
        raise CheckpointError(f"{origin}: is a {desc.architecture.name} model that is not an RGB "
                              "image upscaler; Finescale cannot run it.")
    return desc


def describe(sd: Mapping[str, torch.Tensor], origin: str,
             ours: Exception | None = None) -> tuple[str, str, int, str, int]:
    """``(arch, variant, scale, title, params)`` of weights only spandrel knows.

    ``ours`` is the error our own detection gave, quoted when spandrel is missing.
    """
    desc = _descriptor(sd, origin, ours)
    arch = str(desc.architecture.id).lower()
    params = sum(p.numel() for p in desc.model.parameters())
    name = str(desc.architecture.name)
    return arch, name, int(desc.scale), f"{name} x{desc.scale}", params


def load_community_model(sd: Mapping[str, torch.Tensor], origin: str) -> Any:
    """An :class:`~sr_core.models.SRModel` around spandrel's network for ``sd``."""
    from .models import SRModel

    desc = _descriptor(sd, origin, None)
    req = desc.size_requirements
    halves = tuple(n for n, ok in (("bfloat16", desc.supports_bfloat16),
                                   ("float16", desc.supports_half)) if ok)
    info = ArchInfo(
        name=str(desc.architecture.id).lower(), title=desc.architecture.name,
        input_range=(0.0, 1.0),
        pad_multiple=max(1, int(req.multiple_of)), pad_mode="reflect",
        min_size=max(1, int(req.minimum)), tile_multiple=max(1, int(req.multiple_of)),
        half_dtypes=halves,
    )
    net = desc.model
    family = _SpandrelFamily(info, sum(p.numel() for p in net.parameters()))
    config = CommunityConfig(variant=info.title, scale=int(desc.scale))
    return SRModel(net, family, config, source=origin).eval()  # type: ignore[arg-type]
