"""What a request tells the window while and after it runs: typed messages, without Qt.

The worker carries every message in one ``Signal(object)`` as a :class:`Reply` (the request
and one of the dataclasses below), and :func:`check` refuses anything else, so a receiver
dispatches on the message's type instead of on the position of untyped arguments.

While running: :class:`Status`, :class:`Download`, :class:`Progress`, :class:`Fraction`,
:class:`TileDone`, or a request's own dataclass (the batch's plan and steps). At the end,
exactly one of :class:`Finished` (the request's return value), :class:`Failed` (one
sentence) or :class:`Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Status:
    """What is happening, one sentence."""

    text: str


@dataclass(frozen=True)
class Download:
    """A model download: bytes done of ``total`` (0 when unknown)."""

    done: int
    total: int


@dataclass(frozen=True)
class Progress:
    """Tiles done of ``total``, and the seconds left as the engine measures them."""

    done: int
    total: int
    eta: float


@dataclass(frozen=True)
class Fraction:
    """Fraction of the work done as the network's layers finish (``eta`` -1: unknown)."""

    fraction: float
    eta: float


@dataclass(frozen=True)
class TileDone:
    """A finished tile's core at the input's resolution (uint8 RGB) placed at ``(y0, x0)``."""

    y0: int
    x0: int
    rgb: Any


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The request ended well; ``value`` is what its ``run`` returned."""

    value: T


@dataclass(frozen=True)
class Failed:
    """The request ended with an error, told in one sentence."""

    text: str


@dataclass(frozen=True)
class Cancelled:
    """The request was cancelled; it produced nothing."""


#: The messages every request may send; a request may add its own dataclasses (``extra``).
MESSAGES: tuple[type, ...] = (Status, Download, Progress, Fraction, TileDone, Finished, Failed,
                              Cancelled)
#: The messages that end a request.
ENDINGS: tuple[type, ...] = (Finished, Failed, Cancelled)

#: ``send(message)``: how a request's ``run`` reports.
Send = Callable[[Any], None]


@dataclass(frozen=True)
class Reply:
    """One message about one request, as the worker's signal carries it."""

    request: Any
    message: Any

    @property
    def ends(self) -> bool:
        """True for the request's last message."""
        return isinstance(self.message, ENDINGS)


def check(message: Any, extra: tuple[type, ...] = ()) -> Any:
    """``message`` itself if it is one of :data:`MESSAGES` or ``extra``; else TypeError."""
    if not isinstance(message, MESSAGES + extra):
        raise TypeError(f"{type(message).__name__} is not a worker message")
    return message
