"""Entry script of the bundled ``finescale`` command (PyInstaller needs a file to run)."""

import multiprocessing
import sys

from sr_core.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
