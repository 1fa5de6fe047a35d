"""load_model: every checkpoint layout the authors publish loads; anything else is refused
with one clear sentence naming the file and the problem, and no pickled code ever runs.

Small randomly initialised HPINet-S x2 state dicts keep this fast.
"""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import sr_core
from sr_core.archs import hpinet
from sr_core.errors import (
    CheckpointError,
    FinescaleError,
    UnknownArchitectureError,
    UnsafeCheckpointError,
)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(7)
    model = hpinet.build(hpinet.config("S", 2)).eval()
    with torch.no_grad():  # perturb the default init so every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(1, 3, 24, 28)


@pytest.fixture(scope="module")
def expected(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def _check(model: sr_core.SRModel, x: torch.Tensor, expected: torch.Tensor) -> None:
    assert (model.arch, model.variant, model.scale) == ("hpinet", "S", 2)
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def _one_sentence(err: pytest.ExceptionInfo, *must_contain: str) -> str:
    msg = str(err.value)
    assert isinstance(err.value, FinescaleError)
    assert "\n" not in msg and msg.endswith("."), msg
    assert "Traceback" not in msg
    for part in must_contain:
        assert part in msg, msg
    return msg


# --- accepted layouts ---------------------------------------------------------------------
def test_pth_file(tmp_path: Path, net, x, expected) -> None:
    path = tmp_path / "plain.pth"
    torch.save(_state(net), path)
    _check(sr_core.load_model(path), x, expected)
    _check(sr_core.load_model(str(path)), x, expected)


def test_safetensors_file(tmp_path: Path, net, x, expected) -> None:
    path = tmp_path / "weights.safetensors"
    save_file(_state(net), str(path))
    _check(sr_core.load_model(path), x, expected)


def test_state_dict_mapping(net, x, expected) -> None:
    _check(sr_core.load_model(_state(net)), x, expected)


@pytest.mark.parametrize("container", ["params_ema", "params", "model_state_dict", "state_dict"])
def test_containers_with_module_prefix(tmp_path: Path, net, x, expected, container: str) -> None:
    wrapped = {container: {f"module.{k}": v for k, v in _state(net).items()},
               "epoch": 12, "optimizer": {"lr": 1e-4}}
    path = tmp_path / f"{container}.pth"
    torch.save(wrapped, path)
    _check(sr_core.load_model(path), x, expected)
    _check(sr_core.load_model(wrapped), x, expected)


def test_params_ema_preferred_over_params(tmp_path: Path, net, x, expected) -> None:
    stale = {k: torch.zeros_like(v) for k, v in _state(net).items()}
    path = tmp_path / "basicsr.pth"
    torch.save({"params": stale, "params_ema": _state(net)}, path)
    _check(sr_core.load_model(path), x, expected)


# --- refusals -----------------------------------------------------------------------------
class _OpensAFile:
    """Pickles to a call of open(target, "w"): loading it unsafely creates ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, net) -> None:
    # Proof that the payload works: an unsafe unpickle does create its file.
    control = tmp_path / "control-created"
    pickle.loads(pickle.dumps(_OpensAFile(control))).close()
    assert control.exists()

    victim = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"params": _state(net), "hook": _OpensAFile(victim)}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        sr_core.load_model(path)
    _one_sentence(err, "evil.pth", "refused", "open")
    assert not victim.exists()


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(path)
    _one_sentence(err, "empty.pth", "empty")


def test_truncated_pth(tmp_path: Path, net) -> None:
    whole = tmp_path / "whole.pth"
    torch.save(_state(net), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(cut)
    _one_sentence(err, "cut.pth", "truncated or corrupt")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(tmp_path / "nowhere.pth")
    _one_sentence(err, "nowhere.pth", "no such file")


def test_unrecognised_weights_say_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"encoder.conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(UnknownArchitectureError) as err:
        sr_core.load_model(path)
    _one_sentence(err, "resnet.pth", "no supported architecture", "2 tensors",
                  "encoder.conv1.weight")


def test_shape_mismatch_names_the_key(net) -> None:
    sd = _state(net)
    sd["mid_convs.3.bias"] = torch.zeros(41)
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(sd)
    _one_sentence(err, "'mid_convs.3.bias'", "(41,)", "(40,)")


def test_missing_key_is_named(tmp_path: Path, net) -> None:
    sd = _state(net)
    del sd["blocks.2.layers.1.1.fn.fc2.bias"]
    path = tmp_path / "partial.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(path)
    _one_sentence(err, "partial.safetensors", "missing", "'blocks.2.layers.1.1.fn.fc2.bias'")


def test_unexpected_weight_is_named(net) -> None:
    sd = _state(net)
    sd["blocks.0.layers.0.0.fn.to_out.weight"] = torch.zeros(40, 40)
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(sd)
    _one_sentence(err, "unexpected", "'blocks.0.layers.0.0.fn.to_out.weight'")


# --- bounded checkpoints (issue 18) ---------------------------------------------------------
def _small_state(family: str) -> tuple[dict[str, torch.Tensor], str]:
    """A small random state dict of ``family`` and the key of its first convolution."""
    import dataclasses

    from sr_core.archs import asid, hat, spin

    if family == "hat":
        cfg = dataclasses.replace(hat.config("HAT-S", 2), embed_dim=12, depths=(1,),
                                  num_heads=(2,), compress_ratio=3, squeeze_factor=4,
                                  num_feat=8)
        return _state(hat.build(cfg)), "conv_first.weight"
    if family == "spin":
        return _state(spin.build(spin.config("light", 2))), "first_conv.weight"
    if family == "asid":
        return _state(asid.build(asid.config("ASID", 2))), "input.weight"
    return _state(hpinet.build(hpinet.config("S", 2))), "first_conv.weight"


FAMILIES = ("hpinet", "hat", "spin", "asid")


@pytest.mark.parametrize("family", FAMILIES)
def test_an_absurd_width_is_refused_before_the_network_is_built(family, monkeypatch):
    sd, key = _small_state(family)
    sd[key] = torch.zeros(65536, *sd[key].shape[1:])  # 1.5 MB of weights asking for GBs
    built = []
    from sr_core import models

    for fam in models.families():
        monkeypatch.setattr(fam, "build", lambda cfg, _b=fam.build: built.append(cfg) or _b(cfg))
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(sd)
    _one_sentence(err, key, "65536", "refused before building")
    assert built == []


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(), (7,)], ids=["0-D", "1-D"])
def test_a_weight_of_the_wrong_rank_is_one_sentence(family, shape):
    sd, key = _small_state(family)
    sd[key] = torch.ones(shape)
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(sd)
    _one_sentence(err, key, str(tuple(shape)))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bad", ["nan", "inf", "int"])
def test_nan_inf_or_integer_weights_are_refused_naming_the_key(family, bad):
    sd, key = _small_state(family)
    w = sd[key].clone()
    if bad == "int":
        w = w.to(torch.int32)
    else:
        w.view(-1)[3] = float(bad)
    sd[key] = w
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(sd)
    _one_sentence(err, key, {"nan": "NaN", "inf": "infinite", "int": "int32"}[bad])


def test_random_bytes_are_not_called_pickled_code(tmp_path):
    import random

    path = tmp_path / "noise.pth"
    path.write_bytes(random.Random(5).randbytes(4096))
    with pytest.raises(CheckpointError) as err:
        sr_core.load_model(path)
    assert not isinstance(err.value, UnsafeCheckpointError)
    _one_sentence(err, "noise.pth", "not a readable PyTorch checkpoint")
