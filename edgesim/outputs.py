"""Where edgesim writes and what it reads from the user: checked paths, atomic replacement.

Every output path (``--out``, ``--timeline``, ``--checkpoint``, plot and report files) goes
through ``output_path``: symlinks are resolved first, and the result must be a new name or an
existing regular file. A device, FIFO, socket or folder is refused in one line, so
``--checkpoint /dev/null`` can never replace the system's device node with a regular file. An
existing file is replaced only atomically (``write_atomically``, ``open_atomically``: a temporary
file beside it, renamed over it), so it is always either the old file or the new one, whole.

Every file read from the user or the cache goes through ``input_file``: it must be a regular file
before it is opened, so a FIFO never blocks a run.

Public names: ``OutputError``, ``output_path``, ``write_atomically``, ``open_atomically``,
``end_atomically``, ``input_file``, ``read_regular``, ``file_kind``.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomically(d / "a" / "t.csv", "x,y\\n", "--out").read_text()
'x,y\\n'
>>> try:
...     output_path(d, "--out")
... except OutputError as exc:
...     print(str(exc).split(": ", 1)[1])
is a folder; expected a regular file or a new file name
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from edgesim.errors import DataError, EdgesimError

__all__ = ["OutputError", "end_atomically", "file_kind", "input_file", "open_atomically",
           "output_path", "read_regular", "write_atomically"]


class OutputError(EdgesimError):
    """An output path names something that is not ours to replace, or cannot be written."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` names, in words ("a regular file", "a FIFO", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def output_path(path: str | os.PathLike, flag: str) -> Path:
    """The real path ``path`` names once it is safe to write: symlinks resolved, and either a
    new name or an existing regular file. Anything else is one ``OutputError`` line naming
    ``flag`` and the path. Nothing is created."""
    shown = os.fspath(path)
    if not shown:
        raise OutputError(f"{flag}: empty path; expected a file name")
    try:
        real = Path(os.path.realpath(path))
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):
        return real       # a new name (the caller's mkdir or write says why a folder fails)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise OutputError(f"{flag} {shown}: cannot use this path ({reason})") from None
    if not stat.S_ISREG(st.st_mode):
        via = f" (via {real})" if str(real) != os.path.abspath(shown) else ""
        raise OutputError(f"{flag} {shown}: is {file_kind(st.st_mode)}{via}; expected a "
                          "regular file or a new file name")
    return real


def _new_mode(target: Path) -> int:
    """The mode a replaced file keeps, or a new file's default under the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def open_atomically(path: str | os.PathLike, flag: str, *, binary: bool = False):
    """A file to write that replaces ``path`` only when the block ends without an error: the
    text goes to a temporary file beside the target, renamed over it at the end (the target is
    checked again just before). Folders are created. ``OutputError`` names ``flag``."""
    real = output_path(path, flag)
    shown = os.fspath(path)
    up = next((a for a in real.parents if os.path.lexists(a)), None)
    if up is not None and not up.is_dir():
        raise OutputError(f"{flag} {shown}: {up} is not a folder; expected a path in a folder")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{flag} {shown}: cannot write ({exc.strerror})") from None
    done = False
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            yield fh
        os.chmod(tmp, _new_mode(real))
        output_path(real, flag)              # still a new name or a regular file
        os.replace(tmp, real)
        done = True
    except OSError as exc:
        raise OutputError(f"{flag} {shown}: cannot write ({exc.strerror or exc})") from None
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def end_atomically(opened, ok: bool) -> None:
    """End an ``open_atomically`` block entered by hand (a writer that outlives one ``with``):
    ``ok`` renames the file over its target, otherwise it is dropped and the target left as it
    was."""
    if ok:
        opened.__exit__(None, None, None)
    else:
        opened.__exit__(RuntimeError, RuntimeError("run failed"), None)


def write_atomically(path: str | os.PathLike, data: str | bytes, flag: str) -> Path:
    """``data`` written to ``path`` through ``open_atomically``; returns the real path."""
    with open_atomically(path, flag, binary=isinstance(data, bytes)) as fh:
        fh.write(data)
    return output_path(path, flag)


def input_file(path: str | os.PathLike, what: str, error: type[EdgesimError] = DataError) -> Path:
    """``path`` once it names a regular file (after symlinks): a missing file, a folder, a FIFO
    or a device is one ``error`` line naming ``what`` and the path, before anything opens it
    (opening a FIFO blocks until a writer comes)."""
    shown = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {shown}: no such file") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise error(f"{what} {shown}: cannot read ({reason})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {shown}: is {file_kind(st.st_mode)}; expected a regular file")
    return Path(path)


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path``, opened without blocking and read only when it is
    a regular file (checked on the open descriptor, so nothing can swap it in between): a FIFO,
    device or folder raises ``OSError`` at once instead of blocking."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.fspath(path)} is {file_kind(st.st_mode)}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            # read(n) reserves n bytes at once: ask for what the file holds, then the rest
            want = min(limit, st.st_size) + 1
            data = fh.read(want)
            if len(data) == want and want <= limit:    # it grew since fstat
                data += fh.read(limit + 1 - want)
            return data
    finally:
        os.close(fd)
