"""One worker mechanism: a QObject in its own QThread that runs requests one after another.

The window never runs engine code itself. It hands a request (any object with ``id``,
``cancel`` and ``run(send)``, see :mod:`app.tasks`) to :meth:`RequestWorker.submit`; the
worker calls ``run`` in its thread and answers through one signal, ``message``, whose
payload is always an :class:`app.messages.Reply`: the request and a typed message
(``Status``, ``Progress``, ... and at the end ``Finished(value)``, ``Failed(sentence)`` or
``Cancelled()``). Qt delivers it in the receiver's thread. A request's ``cancel`` event is
set from the window and checked by the engine before every layer (and by a download between
chunks), so Cancel takes effect at once and nothing is written.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from sr_core.errors import Cancelled as CancelledError
from sr_core.errors import FinescaleError

from .messages import Cancelled, Failed, Finished, Reply, Send, check
from .tasks import unexpected

#: The sentence for a picture too large for the memory there is.
NO_MEMORY = ("There is not enough memory for this picture; close other programs or choose a "
             "smaller output size.")


class Request(Protocol):
    """What :class:`RequestWorker` runs."""

    id: int
    cancel: threading.Event

    def run(self, send: Send) -> Any:
        """Do the work, reporting with ``send``; the return value arrives as Finished."""
        ...


class RequestWorker(QObject):
    """Runs requests in its thread and reports on them through ``message``.

    ``extra`` are a caller's own message types (besides :data:`app.messages.MESSAGES`) that
    its requests may send; anything else is refused with TypeError in the worker.
    """

    #: Payload: :class:`app.messages.Reply` (request, typed message), nothing else.
    message = Signal(object)
    _request = Signal(object)

    def __init__(self, extra: tuple[type, ...] = ()) -> None:
        super().__init__()
        self._extra = extra
        self._request.connect(self._handle)

    def submit(self, request: Request) -> None:
        """Queue a request; it runs in the worker's thread after the ones before it."""
        self._request.emit(request)

    def _send(self, request: Request, message: Any) -> None:
        self.message.emit(Reply(request, check(message, self._extra)))

    @Slot(object)
    def _handle(self, request: Request) -> None:
        def send(message: Any) -> None:
            self._send(request, message)

        try:
            if request.cancel.is_set():
                raise CancelledError()
            value = request.run(send)
        except CancelledError:
            send(Cancelled())
        except FinescaleError as e:
            send(Failed(str(e)))
        except MemoryError:
            send(Failed(NO_MEMORY))
        except Exception as e:  # a bug: keep the window alive, leave the details on stderr
            send(Failed(unexpected(e)))
        else:
            send(Finished(value))


class WorkerThread:
    """A :class:`RequestWorker` and the QThread it lives in, started at once.

    :meth:`stop` cancels what runs, ends the thread's event loop and waits for it, so the
    QThread is never destroyed while running.
    """

    def __init__(self, name: str, extra: tuple[type, ...] = ()) -> None:
        self.worker = RequestWorker(extra)
        self.thread = QThread()
        self.thread.setObjectName(name)
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def submit(self, request: Request) -> None:
        """Queue ``request`` for the worker."""
        self.worker.submit(request)

    def stop(self, cancel: list[threading.Event] | None = None) -> None:
        """Set every event in ``cancel``, then end the thread and wait for it to finish."""
        for event in cancel or ():
            event.set()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()
