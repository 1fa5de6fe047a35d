"""Thread choice on a shared CPU: every thread where OpenMP's idle threads sleep; where they
spin, all threads on an idle machine and the free cores otherwise. The engine applies the
choice per forward pass and gives torch its setting back."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from sr_core import device as devmod
from sr_core.engine import Upscaler
from sr_core.loader import load_model


def _running(*counts: int):
    it = itertools.cycle(counts)
    return lambda: next(it)


def _spinning(limit: int, *counts: int) -> int:
    """The choice where OpenMP's idle threads spin, with ``counts`` runnable tasks seen."""
    return devmod.choose_cpu_threads(limit, waits_sleep=False, running=_running(*counts))


def test_idle_machine_gets_every_thread(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 8)
    assert _spinning(8, 1) == 8
    assert _spinning(4, 1) == 4  # never above the limit


def test_busy_cores_are_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 2)
    assert _spinning(2, 2) == 1  # one busy process beside
    assert _spinning(2, 6) == 1  # never below one
    monkeypatch.setattr(devmod, "usable_cores", lambda: 8)
    assert _spinning(8, 4) == 5


def test_a_passing_process_does_not_count(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 2)
    monkeypatch.setattr(devmod.time, "sleep", lambda s: None)
    assert _spinning(2, 2, 1, 2) == 2
    assert _spinning(1, 1) == 1


def test_unknown_load_keeps_the_limit(monkeypatch) -> None:
    assert devmod.choose_cpu_threads(3, waits_sleep=False, running=lambda: None) == 3


def test_sleeping_waits_keep_every_thread(monkeypatch) -> None:
    monkeypatch.setattr(devmod, "usable_cores", lambda: 2)
    assert devmod.choose_cpu_threads(2, waits_sleep=True, running=_running(5)) == 2


def test_importing_sr_core_first_makes_waits_sleep() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import sr_core, os; print(os.environ['OMP_WAIT_POLICY'], sr_core.OMP_WAITS_SLEEP)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["PASSIVE", "True"]
    code = "import torch, sr_core, os; print(os.environ.get('OMP_WAIT_POLICY'), " \
           "sr_core.OMP_WAITS_SLEEP)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["None", "False"]


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
