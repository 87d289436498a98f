"""Running ``edgesim`` as a hostile or careless user would, in a box: ``run_cli``.

The command runs in a subprocess whose working folder, ``HOME``, ``TMPDIR`` and
``EDGESIM_CACHE`` are all inside the test's temp folder, under an address-space cap and a
timeout (a run that would allocate gigabytes fails fast instead of swapping; a run that hangs
fails the test). ``Outcome.error_line()`` is the one ``edgesim: error:`` line, checked to be the
only line besides stage lines and free of any traceback; ``outside_unchanged`` checks that the
files the run could have touched outside the temp folder (the repository's top level, the
user's real edgesim cache) are as they were.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgesim.testing import stderr_lines

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

#: The address space a run may take: edgesim with numpy (and torch, when a model is traced)
#: maps well under this; a run that would allocate gigabytes hits it and must say so in a line.
MEMORY_CAP = 4 << 30


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The single error line (stage lines set aside); no traceback."""
        assert "Traceback" not in self.err, self.err
        lines = stderr_lines(self.err)
        assert len(lines) == 1, self.err
        assert lines[0].startswith("edgesim: error: "), self.err
        return lines[0]


def _watched() -> dict[str, tuple[int, int]]:
    """Size and mtime of the files a stray write outside the box would land in."""
    out: dict[str, tuple[int, int]] = {}
    home_cache = Path(os.path.expanduser("~")) / ".cache" / "edgesim"
    roots = [(ROOT, False), (home_cache, True), (Path("/.cache"), True)]
    for root, deep in roots:
        if not root.is_dir():
            continue
        entries = root.rglob("*") if deep else root.iterdir()
        for p in entries:
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p)] = (st.st_size, st.st_mtime_ns if not p.is_dir() else 0)
    return out


def box(tmp_path: Path) -> dict[str, str]:
    """The environment of a boxed run: everything it may write is under ``tmp_path``."""
    for name in ("home", "tmp", "cache", "cwd"):
        (tmp_path / name).mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESIM_")}
    env.update(HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"),
               EDGESIM_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    return env


def run_cli(args: list[str], tmp_path: Path, *, env: dict[str, str] | None = None,
            memory: int = MEMORY_CAP, timeout: float = 120, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            closed: tuple[int, ...] = ()) -> Outcome:
    """``python -m edgesim *args`` boxed in ``tmp_path`` (``box``), capped at ``memory`` bytes
    of address space and ``timeout`` seconds. ``env`` entries are added to the box's; the
    descriptors ``closed`` (1: stdout, 2: stderr) are closed before the command starts."""
    full = box(tmp_path)
    full.update(env or {})

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        for fd in closed:
            os.close(fd)

    before = _watched()
    p = subprocess.run([sys.executable, "-m", "edgesim", *args], cwd=tmp_path / "cwd",
                       env=full, stdout=stdout, stderr=stderr, stdin=stdin, text=True,
                       timeout=timeout, preexec_fn=cap, check=False)
    after = _watched()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files outside the test's temp folder changed: {changed[:5]}"
    return Outcome(p.returncode, p.stdout or "", p.stderr or "")
