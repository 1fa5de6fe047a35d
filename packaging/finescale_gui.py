"""Entry script of the bundled ``finescale-gui`` window (PyInstaller needs a file to run)."""

import multiprocessing
import sys

from app.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
