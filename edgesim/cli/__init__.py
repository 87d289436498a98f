"""The command line: a thin layer over ``edgesim.api``, one module per command.

Public names: ``main``, ``build_parser``, ``COMMANDS``, ``version``.

    python -m edgesim run CONFIG --model NAME [--inputs N] [--policy P] [--prefetch M]
                          [--set key=value ...] [--format table|csv|json] [--out FILE]
                          [--per-layer] [--data PATH] [--weights CKPT] [--seed S]
                          [--timeline FILE]
    python -m edgesim models [--model NAME ...] [--format ...]
    python -m edgesim configs [--format ...]
    python -m edgesim trace MODEL [--set ...] [--out FILE]
    python -m edgesim columns [COLUMN ...]
    python -m edgesim sweep | plot | finetune ...
    python -m edgesim compare CONFIG_A CONFIG_B --model M    (or --model A B, --policy P Q)
    python -m edgesim report CONFIG --model M [--out report.html] | report SWEEP_FOLDER
    python -m edgesim --version

Each command is a module of this package exposing ``add_parser(subparsers)`` and
``main(args) -> int``; the ``COMMANDS`` tuple below is the one place a command is registered.
Bad input is one line on stderr, ``edgesim: error: ...``, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from edgesim.cli._common import Parser
from edgesim.errors import EdgesimError

__all__ = ["COMMANDS", "MAX_MESSAGE", "build_parser", "main", "version"]

#: An error line is at most this many characters.
MAX_MESSAGE = 1000

#: The commands, in the order ``edgesim --help`` lists them. Each is the module
#: ``edgesim.cli.<name>`` with ``add_parser(subparsers)`` and ``main(args) -> int``; a new
#: command is one module and one name here.
COMMANDS = ("run", "models", "configs", "columns", "trace", "sweep", "plot", "finetune",
            "compare", "report")


def _module(name: str):
    return importlib.import_module(f"edgesim.cli.{name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``edgesim`` parser with every command of ``COMMANDS`` (or just the command ``only``,
    so that running one command does not import the modules of the others)."""
    p = Parser(prog="edgesim", description="Off-chip weight traffic, latency and energy of "
               "neural networks on edge accelerators.")
    p.add_argument("--version", action="version", version=version())
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    sub.required = True
    for name in COMMANDS if only is None else (only,):
        _module(name).add_parser(sub)
    return p


def version() -> str:
    """``edgesim --version``: the package and the Python it runs on."""
    import platform

    from edgesim import __version__
    return f"edgesim {__version__} (Python {platform.python_version()})"


def _note(message, category, filename, lineno, file=None, line=None) -> None:
    """Print an edgesim warning (a stream that does not fit a flash, ...) as one note line;
    other warnings as Python prints them."""
    from edgesim.encodings import StorageWarning
    if issubclass(category, StorageWarning):
        text = " ".join(str(message).split())
        if text not in _NOTED:          # the same note from two steps of one run, once
            _NOTED.add(text)
            print(f"edgesim: note: {text}", file=sys.stderr)
    else:
        _SHOW(message, category, filename, lineno, file, line)


_SHOW = warnings.showwarning
_NOTED: set[str] = set()


class _Stream:
    """Standard output or error as the commands write to it: a closed stream (``None``) or
    a write that fails (a full disk, ``> /dev/full``) is an ``OutputError`` line for stdout,
    and is dropped for stderr (the exit code still says what happened); a broken pipe stays
    a ``BrokenPipeError`` (a reader that stopped, as ``| head`` does: exit 0)."""

    def __init__(self, stream, name: str, swallow: bool) -> None:
        self.stream, self.name, self.swallow = stream, name, swallow
        self.failed = False

    def _fail(self, reason: str):
        self.failed = True
        if self.swallow:
            return None
        from edgesim.outputs import OutputError
        raise OutputError(f"{self.name}: cannot write ({reason})")

    def write(self, text: str) -> int:
        if self.stream is None:
            return self._fail("it is closed") or len(text)
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:   # ValueError: a closed file object
            return self._fail(getattr(exc, "strerror", None) or str(exc)) or len(text)

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            self._fail(getattr(exc, "strerror", None) or str(exc))

    def isatty(self) -> bool:
        try:
            return self.stream is not None and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _quiet(stream) -> None:
    """Point a failed standard stream's descriptor at /dev/null, so that the interpreter's
    own flush at exit does not print a second error (or change the exit code)."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = _Stream(out, "standard output", swallow=False)
    sys.stderr = _Stream(err, "standard error", swallow=True)
    try:
        with warnings.catch_warnings():    # restores the caller's warning display afterwards
            warnings.simplefilter("default")
            warnings.showwarning = _note
            _NOTED.clear()
            return _main(argv)
    finally:
        failed = [s.stream for s in (sys.stdout, sys.stderr)
                  if isinstance(s, _Stream) and s.failed and s.stream is not None]
        sys.stdout, sys.stderr = out, err
        for stream in failed:
            _quiet(stream)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        if args[:1] == ["--version"]:         # argparse would exit the caller's process
            print(version())
            return 0
        only = args[0] if args and args[0] in COMMANDS else None  # else --help or an error
        a = build_parser(only).parse_args(args)
        code = _module(a.command).main(a)
        sys.stdout.flush()                 # a full disk under stdout is found here, not at exit
        return code
    except EdgesimError as exc:
        message = " ".join(str(exc).split())  # always one line, whatever a library said
        if len(message) > MAX_MESSAGE:       # values are cut where they are named; this is
            message = message[: MAX_MESSAGE - 3] + "..."   # the backstop (a huge --set value)
        print(f"edgesim: error: {message}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name != "torch" and not str(exc.name).startswith("torch."):
            raise
        # a step that needs torch and did not say so itself (edgesim.extras.require_torch)
        from edgesim.extras import missing_extra
        print(f"edgesim: error: {missing_extra('this command')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
