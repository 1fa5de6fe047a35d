"""``finescale-gui [FILES...]`` and ``python -m app``: start the window.

A picture given on the command line opens at once; a folder goes to the batch tab.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application; returns its exit code."""
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
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
