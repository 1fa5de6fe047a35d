"""Issue 18: a hostile corpus, made at test time, through the real command line.

Every case must fail the way a user can live with: exit code 1 (a file) or 2 (usage), one
``finescale: error:`` sentence and no traceback, nothing written where the output would go,
the model cache untouched, and every input byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux",
                                reason="uses FIFOs, sockets, /dev/full and non-UTF-8 names")


def _state(p: Path) -> tuple:
    """What must not change about a path: kind, and bytes + mtime for a regular file."""
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        return ("absent",)
    except OSError as e:  # a name too long to exist
        return ("absent", e.errno)
    if stat.S_ISREG(st.st_mode):
        return ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
    if stat.S_ISDIR(st.st_mode):  # hidden entries are bookkeeping (the cache's .locks)
        return ("dir", tuple(sorted(n for n in os.listdir(p) if not n.startswith("."))))
    return ("other", stat.S_IFMT(st.st_mode))


def test_every_hostile_case_fails_cleanly(tmp_path, monkeypatch, capsys):
    from corpus import build, close_sockets

    from sr_core import cli

    monkeypatch.setenv("FINESCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FINESCALE_MAX_PIXELS", raising=False)
    monkeypatch.setenv("FINESCALE_MIRROR", "http://127.0.0.1:9/")  # never the network
    (tmp_path / "cache").mkdir()
    try:
        cases, _, _ = build(tmp_path)
        assert len(cases) >= 150
        problems = []
        for case in cases:
            watched = case.inputs + case.outputs + case.watch
            before = {p: _state(p) for p in watched}
            try:
                code = cli.main(case.argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 2
            except BaseException as e:  # noqa: BLE001 - a crash is what we are looking for
                code = f"raised {type(e).__name__}: {e}"
            captured = capsys.readouterr()
            err = captured.err or captured.out  # bare `finescale` prints its help
            why = []
            if code not in (1, 2):
                why.append(f"exit {code}")
            if "Traceback" in err:
                why.append("traceback")
            if not any(line.startswith(("finescale: error:", "usage:", "finescale "))
                       for line in err.splitlines()):
                why.append("no error sentence")
            for p in watched:
                now = _state(p)
                if p in case.outputs and before[p] == ("absent",) and now != ("absent",):
                    why.append(f"wrote {p.name}")
                elif now != before[p]:
                    why.append(f"changed {p.name}")
            if why:
                last = err.strip().splitlines()[-1:] or [""]
                problems.append(f"{case.name}: {', '.join(why)} | {last[0][:200]}")
        assert not (tmp_path / "PAYLOAD_RAN").exists(), "a pickled payload ran"
        assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
    finally:
        close_sockets()
