"""Thread choice on a shared CPU: all threads on an idle machine, the free cores otherwise;
the engine applies the choice per forward pass and gives torch its setting back."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from sr_core import device as devmod
from sr_core.engine import Upscaler
from sr_core.models import load_model


def _running(*counts: int):
    it = itertools.cycle(counts)
    return lambda: next(it)


def test_idle_machine_gets_every_thread(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 8)
    assert devmod.choose_cpu_threads(8, running=_running(1)) == 8
    assert devmod.choose_cpu_threads(4, running=_running(1)) == 4  # never above the limit


def test_busy_cores_are_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 2)
    assert devmod.choose_cpu_threads(2, running=_running(2)) == 1  # one busy process beside
    assert devmod.choose_cpu_threads(2, running=_running(6)) == 1  # never below one
    monkeypatch.setattr(devmod, "usable_cores", lambda: 8)
    assert devmod.choose_cpu_threads(8, running=_running(4)) == 5


def test_a_passing_process_does_not_count(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 2)
    monkeypatch.setattr(devmod.time, "sleep", lambda s: None)
    assert devmod.choose_cpu_threads(2, running=_running(2, 1, 2)) == 2
    assert devmod.choose_cpu_threads(1, running=_running(1)) == 1


def test_unknown_load_keeps_the_limit(monkeypatch) -> None:
    assert devmod.choose_cpu_threads(3, running=lambda: None) == 3


def test_engine_chooses_per_forward_and_restores(monkeypatch) -> None:
    from sr_core.archs import asid

    model = load_model(asid.build(asid.ASIDConfig(num_blocks=1, num_feat=16, scale=2))
                       .state_dict())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        up = Upscaler(model, device="cpu", precision="fp32", tile=0)
        seen = []

        def fake(limit: int) -> int:
            seen.append(limit)
            return 1

        import sr_core.engine as engmod
        monkeypatch.setattr(engmod, "choose_cpu_threads", fake)
        up.upscale(np.zeros((24, 24, 3), np.uint8))
        assert seen == [2] and up.threads_used == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
