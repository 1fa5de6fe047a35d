"""Architectures that are not ours (ESRGAN, SwinIR, ...) through the optional spandrel package.

``pip install "finescale[community]"`` installs spandrel. :func:`detect` then gives a
:class:`SpandrelFamily` (the same :class:`~sr_core.archs.Family` contract as our own
families) and :mod:`sr_core.models` wraps its network in an ``SRModel``, so that it runs
through the same engine (tiling, devices, precision) for files, mappings and catalogue ids
alike. Weights reach spandrel as an
already-read state dict (tensors only), never as a file it would unpickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .archs import titles
from .archs.layers import ArchInfo
from .errors import CheckpointError, UnknownArchitectureError

INSTALL_HINT = 'pip install "finescale[community]"'
#: The torchvision that matches the CPU torch the README installs (PyPI's is a CUDA build).
TORCHVISION_HINT = ("pip install torchvision==0.28.0 "
                    "--index-url https://download.pytorch.org/whl/cpu")


@dataclass(frozen=True)
class CommunityConfig:
    """What spandrel detected: its architecture's name (as ``variant``), the scale, the
    network spandrel built and the weights under the key names that network uses."""

    variant: str
    scale: int
    network: nn.Module = field(repr=False, compare=False)
    weights: Mapping[str, torch.Tensor] = field(repr=False, compare=False)


class SpandrelFamily:
    """The :class:`~sr_core.archs.Family` contract for one architecture spandrel knows.

    spandrel detects and builds in one step, so an instance belongs to the weights it was
    made from: ``detect`` recognises weights of the same architecture, and ``build`` returns
    the network spandrel made (``load_weights`` then loads :attr:`CommunityConfig.weights`
    into it strictly, as for our own families).
    """

    def __init__(self, info: ArchInfo, config: CommunityConfig) -> None:
        self.INFO = info
        self._config = config
        self._num_params = sum(p.numel() for p in config.network.parameters())

    def detect(self, state_dict: Mapping[str, torch.Tensor], /) -> CommunityConfig | None:
        """This family's config when ``state_dict`` holds the same architecture, else None."""
        try:
            family, config = detect(state_dict, "checkpoint")
        except (UnknownArchitectureError, CheckpointError):
            return None
        return config if family.INFO.name == self.INFO.name else None

    def build(self, config: CommunityConfig, /) -> nn.Module:
        """spandrel's network for ``config``, in eval mode."""
        return config.network.eval()

    def estimate_memory(self, config: CommunityConfig, h: int, w: int,
                        dtype_bytes: int = 4, /) -> int:
        """A deliberately generous guess: the architecture is not calibrated by us."""
        # Sixteen live 64-channel feature maps at input size plus the output and the weights.
        features = 16 * h * w * 64 * dtype_bytes
        output = 4 * h * w * config.scale ** 2 * 3 * dtype_bytes
        return features + output + self._num_params * dtype_bytes


def _descriptor(sd: Mapping[str, torch.Tensor], origin: str, ours: Exception | None) -> Any:
    found = f"{str(ours).rstrip('.')}; " if ours else f"{origin}: "
    try:
        import spandrel
    except ImportError:
        raise UnknownArchitectureError(
            f"{found}other architectures (ESRGAN, SwinIR, ...) need the optional spandrel package, "
            f"which is not installed: {INSTALL_HINT}."
        ) from None
    except Exception as e:  # typically a torchvision built for another torch (a CUDA one)
        first = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise UnknownArchitectureError(
            f"{found}spandrel is installed but cannot start ({first}); its torchvision must be "
            f"the one built for torch {torch.__version__}: {TORCHVISION_HINT}."
        ) from None
    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(dict(sd))
    except spandrel.UnsupportedModelError:
        raise UnknownArchitectureError(
            f"{origin}: neither Finescale ({titles()}) nor spandrel recognises "
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


def detect(sd: Mapping[str, torch.Tensor], origin: str,
           ours: Exception | None = None) -> tuple[SpandrelFamily, CommunityConfig]:
    """The family and config of weights only spandrel knows (spandrel builds the network).

    ``ours`` is the error our own detection gave, quoted when spandrel is missing.
    """
    desc = _descriptor(sd, origin, ours)
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
    config = CommunityConfig(variant=info.title, scale=int(desc.scale), network=net,
                             weights=net.state_dict())
    return SpandrelFamily(info, config), config
