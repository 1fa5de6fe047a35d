"""Architectures we do not implement reach spandrel from every source (file, mapping, id).

CI does not install the optional extra, so these tests stand a small stand-in for spandrel's
loader in ``sys.modules``: what is tested is our side of the contract (the adapter, the
fallback order, the messages), not spandrel. test_catalog.py runs the real package where it
is installed.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from sr_core import Upscaler, installer, load_model
from sr_core.archs import Family
from sr_core.community import SpandrelFamily
from sr_core.errors import UnknownArchitectureError


class _Tiny(nn.Module):
    """A 2x upscaler under foreign key names (``body.*``)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _fake_spandrel() -> types.ModuleType:
    mod = types.ModuleType("spandrel")

    class UnsupportedModelError(Exception):
        pass

    class ImageModelDescriptor:
        def __init__(self, model: nn.Module) -> None:
            self.model = model
            self.scale = 2
            self.input_channels = self.output_channels = 3
            self.architecture = types.SimpleNamespace(id="tiny", name="TinyNet")
            self.size_requirements = types.SimpleNamespace(multiple_of=1, minimum=1)
            self.supports_bfloat16 = True
            self.supports_half = False

    class ModelLoader:
        def __init__(self, device: str = "cpu") -> None:
            self.device = device

        def load_from_state_dict(self, sd: dict) -> ImageModelDescriptor:
            if "body.0.weight" not in sd:
                raise UnsupportedModelError
            net = _Tiny()
            net.load_state_dict(sd)
            return ImageModelDescriptor(net)

    mod.UnsupportedModelError = UnsupportedModelError
    mod.ImageModelDescriptor = ImageModelDescriptor
    mod.ModelLoader = ModelLoader
    return mod


@pytest.fixture
def foreign(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", _fake_spandrel())
    torch.manual_seed(0)
    net = _Tiny().eval()
    path = tmp_path / "tiny_2x.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return net, path


def test_a_foreign_checkpoint_file_loads_by_path_as_by_id(foreign, tmp_path, monkeypatch):
    net, path = foreign
    monkeypatch.setenv("FINESCALE_CACHE_DIR", str(tmp_path / "cache"))
    by_path = load_model(path)
    assert isinstance(by_path.family, SpandrelFamily) and isinstance(by_path.family, Family)
    assert by_path.name == "TinyNet x2"
    entry = installer.import_checkpoint(path, name="tiny-imported")
    by_id = load_model(entry.id)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(by_path(x), net(x)) and torch.equal(by_id(x), net(x))


def test_the_adapter_keeps_the_family_contract(foreign):
    _, path = foreign
    model = load_model(path)
    fam = model.family
    assert fam.detect(model.net.state_dict()) is not None
    assert fam.detect({"unrelated.weight": torch.zeros(1)}) is None
    assert fam.build(model.config) is model.net and not model.net.training
    assert fam.estimate_memory(model.config, 100, 100) > 100 * 100 * 4 * 3 * 4


def test_a_foreign_model_runs_through_the_engine(foreign):
    net, path = foreign
    photo = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    out = Upscaler(path, device="cpu", tile=0).upscale(photo)
    expected = net(torch.from_numpy(photo).permute(2, 0, 1)[None]).clamp(0, 1)[0]
    assert np.abs(out - expected.permute(1, 2, 0).detach().numpy()).max() < 1e-5


def test_a_broken_spandrel_install_is_one_sentence(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel -> ImportError
    path = tmp_path / "odd.safetensors"
    save_file({"body.0.weight": torch.zeros(12, 3, 3, 3)}, path)
    with pytest.raises(UnknownArchitectureError, match="not installed: pip install"):
        load_model(path)
    import builtins

    real_import = builtins.__import__

    def importer(name, *args, **kwargs):
        if name == "spandrel":
            fail()
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "spandrel")
    monkeypatch.setattr(builtins, "__import__", importer)
    with pytest.raises(UnknownArchitectureError, match="cannot start.*download.pytorch.org"):
        load_model(path)
