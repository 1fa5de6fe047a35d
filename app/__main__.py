"""``finescale-gui [FILES...]`` and ``python -m app``: start the window.

A picture given on the command line opens at once; a folder goes to the batch tab.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QCoreApplication

STYLE = """
QPushButton#primary { font-weight: bold; padding: 6px 18px; }
"""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="finescale-gui",
                                     description="Finescale's window: upscale photos.")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="a picture to open, or a folder to convert in the batch tab")
    parser.add_argument("--settings", metavar="INI",
                        help="use this settings file instead of the user's")
    return parser.parse_known_args(argv)[0]  # Qt's own options (-platform ...) pass through


def _ensure_streams() -> None:
    """Give ``sys.stdout``/``sys.stderr`` a sink when the window runs without a console.

    pythonw and PyInstaller's windowed executables start with both set to None; print()
    copes, but tqdm (and any code calling ``sys.stderr.write``) would crash the window.
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


@contextmanager
def _quit_on_signals(app: QCoreApplication) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT (logout, kill, Ctrl+C) close the window normally."""
    from PySide6.QtCore import QTimer

    previous = {sig: signal.signal(sig, lambda *_: app.quit())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    # Python runs signal handlers only between byte codes; an idle timer gives it that chance
    # while Qt's event loop waits in C++.
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(250)
    try:
        yield
    finally:
        timer.stop()
        timer.deleteLater()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application; returns its exit code."""
    _ensure_streams()
    from PySide6.QtWidgets import QApplication

    from .main_window import APP_NAME, MainWindow
    from .settings import ORGANISATION, Settings

    rest = list(sys.argv[1:] if argv is None else argv)
    args = _parse(rest)
    app = QApplication.instance() or QApplication([sys.argv[0], *rest])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APP_NAME)
    app.setStyle("Fusion")
    app.setStyleSheet(STYLE)
    window = MainWindow(Settings(args.settings) if args.settings else None)
    # Quitting without closing the window (a session ending) must still stop the threads.
    app.aboutToQuit.connect(window.shutdown)
    window.show()
    if args.files:
        window.open_paths([Path(f).expanduser() for f in args.files])
    with _quit_on_signals(app):
        return app.exec()


if __name__ == "__main__":
    sys.exit(main())
