"""Cancel and progress *inside* one forward pass, at the network's module boundaries.

A one-tile photo is one forward pass of 20-30 s on a laptop CPU; checking a cancel token only
between tiles leaves Cancel dead for that long. :class:`ForwardWatch` registers forward
hooks on every module of a network for the duration of a ``with`` block:

* before each module runs *and before each torch operation* (a convolution, a matmul, an
  addition: through a :class:`torch.overrides.TorchFunctionMode`, which also reaches the
  functional code inside a block), the cancel token is checked and
  :class:`~sr_core.errors.Cancelled` raised when it is set, so no further operation starts;
  the worst-case cancel latency is the longest single operation (``max_gap``, the longest
  time between two checks, measured with an injectable clock);
* after each module that owns parameters (a convolution, a linear layer, a norm: the
  network's *steps*), ``on_step(done, expected)`` reports progress within the pass, which
  gives a one-tile photo a percentage. ``expected`` is the number of such modules until a
  first complete pass has been counted, then the steps that pass really took.

Hooks are removed when the block ends, so a model is never left instrumented. This module
does not import Qt and works with any :class:`torch.nn.Module`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import Cancelled

StepFn = Callable[[int, int], None]


class CancelToken(Protocol):
    """Anything with ``is_set()``; :class:`threading.Event` is one."""

    def is_set(self) -> bool: ...


def step_modules(net: nn.Module) -> list[nn.Module]:
    """The modules of ``net`` that own parameters themselves: the units of progress."""
    return [m for m in net.modules() if any(True for _ in m.parameters(recurse=False))]


class ForwardWatch:
    """Check a cancel token before every module of ``net`` and count its steps.

    Args:
        net: the network to watch (e.g. an :class:`~sr_core.models.SRModel`).
        clock: seconds as a float (``time.perf_counter`` by default); only ``max_gap`` uses it.
        every_op: check before every torch operation, not only before every module.

    Use ``with watch.active(cancel, on_step): model(x)``; the same watch may be used for
    many passes and learns how many steps one pass takes.
    """

    def __init__(self, net: nn.Module, *, clock: Callable[[], float] = time.perf_counter,
                 every_op: bool = True) -> None:
        self.net = net
        self.clock = clock
        #: Check before every torch operation too (about 15 us each, some 2,000 per ASID
        #: pass: a few per cent of a CPU pass). An accelerator runs its kernels
        #: asynchronously, so there a check per module is all that helps.
        self.every_op = every_op
        self._steps = step_modules(net)
        #: Steps of one complete pass, once one has been counted (None before).
        self.steps_per_pass: int | None = None
        #: Longest time seen between two cancel checks, in seconds of ``clock``.
        self.max_gap = 0.0
        #: Modules that started running (pre-hook passed) in the current pass.
        self.started = 0
        self._done = 0
        self._last = 0.0
        self._cancel: CancelToken | None = None
        self._on_step: StepFn | None = None
        self._handles: list[Any] = []
        self._mode: _CheckEveryOp | None = None

    @property
    def expected_steps(self) -> int:
        """Steps one pass is expected to take (counted, else the number of step modules)."""
        return self.steps_per_pass or max(1, len(self._steps))

    def active(self, cancel: CancelToken | None, on_step: StepFn | None = None) -> ForwardWatch:
        """Arm the watch for the passes run inside the following ``with`` block."""
        self._cancel, self._on_step = cancel, on_step
        return self

    def __enter__(self) -> ForwardWatch:
        if self.every_op:
            self._mode = _CheckEveryOp(self)
            self._mode.__enter__()
        step_ids = {id(m) for m in self._steps}
        for m in self.net.modules():
            self._handles.append(m.register_forward_pre_hook(self._before))
            if id(m) in step_ids:
                self._handles.append(m.register_forward_hook(self._after))
        self._handles.append(self.net.register_forward_pre_hook(self._begin_pass, prepend=True))
        self._handles.append(self.net.register_forward_hook(self._end_pass))
        self._last = self.clock()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._cancel = self._on_step = None
        mode, self._mode = self._mode, None
        if mode is not None:
            mode.__exit__(kind, error, tb)

    # --- hooks ------------------------------------------------------------------------------
    def _begin_pass(self, module: nn.Module, args: Any) -> None:
        self._done = 0
        self.started = 0
        self._last = self.clock()  # time between passes is the tile loop's, not a module's

    def _end_pass(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.steps_per_pass is None:
            self.steps_per_pass = max(1, self._done)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the token is set; note the time since the last check."""
        now = self.clock()
        self.max_gap = max(self.max_gap, now - self._last)
        self._last = now
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled()

    def _before(self, module: nn.Module, args: Any) -> None:
        self.check()
        self.started += 1

    def _after(self, module: nn.Module, args: Any, output: Any) -> None:
        self._done += 1
        if self._on_step is not None:
            total = self.expected_steps
            self._on_step(min(self._done, total), total)


class _CheckEveryOp(TorchFunctionMode):
    """Runs every torch function and tensor method as usual, after a cancel check."""

    def __init__(self, watch: ForwardWatch) -> None:
        super().__init__()
        self.watch = watch

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        self.watch.check()
        return func(*args, **(kwargs or {}))
