"""Cancel within one forward pass and per-layer progress (sr_core.interrupt + the engine)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from torch import nn

from sr_core import Upscaler
from sr_core.archs import asid
from sr_core.errors import Cancelled
from sr_core.interrupt import ForwardWatch, step_modules
from sr_core.models import SRModel


def small_asid(blocks: int = 2, scale: int = 2) -> SRModel:
    """A real ASID network, shrunk, with random weights (a one-tile photo in milliseconds)."""
    cfg = dataclasses.replace(asid.config("ASID", scale), num_blocks=blocks, num_feat=16)
    torch.manual_seed(0)
    return SRModel(asid.build(cfg), asid, cfg).eval()


def photo(h: int = 64, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.random((h, w, 3), dtype=np.float32)


def test_cancel_inside_a_one_tile_pass_runs_no_further_layer():
    model = small_asid()
    up = Upscaler(model, device="cpu", tile=0)
    assert len(up.plan(64, 80).tiles) == 1
    cancel = threading.Event()
    ticks = [0]           # module starts so far
    started: dict[str, int] = {}
    cancelled_at: list[int] = []
    ran_after: list[str] = []  # modules that both started and finished after cancel

    def pre(mod, args, n):
        ticks[0] += 1
        started[n] = ticks[0]

    def post(mod, args, out, n):
        if cancelled_at and started[n] > cancelled_at[0]:
            ran_after.append(n)

    for name, m in model.named_modules():
        m.register_forward_pre_hook(lambda mod, a, n=name: pre(mod, a, n))
        m.register_forward_hook(lambda mod, a, o, n=name: post(mod, a, o, n))
    seen: list[float] = []

    def detail(fraction: float, eta: float) -> None:
        seen.append(fraction)
        if fraction > 0.3 and not cancel.is_set():
            cancel.set()
            cancelled_at.append(ticks[0])

    with pytest.raises(Cancelled):
        up.upscale(photo(), cancel=cancel, detail=detail)
    assert 0.3 < seen[-1] < 0.9, "cancel was set in the middle of the only forward pass"
    assert ran_after == [], f"layers ran after cancel: {ran_after[:5]}"
    # nothing started after it, but for the module whose own start check raised
    assert ticks[0] - cancelled_at[0] <= 1
    # the hooks are gone: the model runs normally afterwards
    out = up.upscale(photo())
    assert out.shape == (128, 160, 3)


def test_one_tile_photo_gets_a_rising_percentage_ending_at_one():
    up = Upscaler(small_asid(), device="cpu", tile=0)
    seen: list[tuple[float, float]] = []
    up.upscale(photo(), detail=lambda f, eta: seen.append((f, eta)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert len({round(f, 2) for f in fractions if f < 1}) >= 10  # a moving percentage
    assert fractions[-1] == 1.0 and seen[-1][1] == pytest.approx(0.0)
    assert all(eta >= 0 for f, eta in seen if f >= 0.01)


def test_progress_counts_the_steps_one_pass_really_takes():
    model = small_asid(blocks=1)
    watch = ForwardWatch(model)
    steps: list[tuple[int, int]] = []
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode(), watch.active(None, lambda d, t: steps.append((d, t))):
        model(x)
        first = list(steps)
        steps.clear()
        model(x)
    assert watch.steps_per_pass == len(first)
    assert steps[-1] == (watch.steps_per_pass, watch.steps_per_pass)
    assert len(step_modules(model)) >= 10
    assert all(not h for h in (model._forward_hooks, model._forward_pre_hooks))


class _Timed(nn.Module):
    """A layer that advances a fake clock by ``cost`` seconds when it runs."""

    def __init__(self, clock: list[float], cost: float) -> None:
        super().__init__()
        self.clock, self.cost = clock, cost
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock[0] += self.cost
        return x * self.w


def test_worst_cancel_latency_is_the_longest_layer_by_an_injected_clock():
    clock = [0.0]
    net = nn.Sequential(_Timed(clock, 0.1), _Timed(clock, 0.4), _Timed(clock, 0.2))
    watch = ForwardWatch(net, clock=lambda: clock[0])
    with watch.active(threading.Event()):
        net(torch.ones(1))
    assert watch.max_gap == pytest.approx(0.4)


class _Loop(nn.Module):
    """Functional work inside one module (no sub-module calls), as a block's body is."""

    def __init__(self, cancel: threading.Event, at: int) -> None:
        super().__init__()
        self.cancel, self.at, self.done = cancel, at, 0
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(10):
            x = torch.add(x, self.w)
            self.done += 1
            if i == self.at:
                self.cancel.set()  # the user presses Cancel in the middle of the block
        return x


def test_cancel_reaches_the_operations_inside_a_block():
    cancel = threading.Event()
    net = _Loop(cancel, at=3)
    watch = ForwardWatch(net)
    with pytest.raises(Cancelled), torch.inference_mode(), watch.active(cancel):
        net(torch.zeros(1))
    assert net.done == 4  # the fifth addition never ran
    net.cancel = threading.Event()  # the watch is gone: the block runs whole again
    with torch.inference_mode():
        assert float(net(torch.zeros(1))) == 10.0
