"""The command line: a thin layer over ``edgesim.api``, one module per command.

Public names: ``main``, ``build_parser``, ``COMMANDS``.

    python -m edgesim run CONFIG --model NAME [--inputs N] [--policy P] [--prefetch M]
                          [--set key=value ...] [--format table|csv|json] [--out FILE]
                          [--per-layer] [--data PATH] [--weights CKPT] [--seed S]
                          [--timeline FILE]
    python -m edgesim models [--model NAME ...] [--format ...]
    python -m edgesim configs [--format ...]
    python -m edgesim trace MODEL [--set ...] [--out FILE]
    python -m edgesim sweep | plot | finetune ...

Each command is a module exposing ``add_parser(subparsers)`` and ``main(args) -> int``; the
``COMMANDS`` table below is the one place a command is registered (its order is the order of
``edgesim --help``). Bad input is one line on stderr, ``edgesim: error: ...``, and exit code 2;
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from edgesim.cli._common import Parser
from edgesim.errors import EdgesimError

__all__ = ["COMMANDS", "build_parser", "main"]

#: The commands: name -> the module that holds it (``add_parser`` and ``main``).
#: Modules not yet moved here expose ``register`` and ``cmd_<name>`` instead.
COMMANDS: dict[str, str] = {
    "run": "edgesim.cli.run",
    "models": "edgesim.cli.models",
    "configs": "edgesim.cli.configs",
    "trace": "edgesim.cli.trace",
    "sweep": "edgesim.cli.sweep",
    "plot": "edgesim.cli.plot",
    "finetune": "edgesim.cli.finetune",
}


def _hooks(name: str) -> tuple[Callable, Callable]:
    """``(add_parser, main)`` of the command ``name``."""
    mod = importlib.import_module(COMMANDS[name])
    if hasattr(mod, "add_parser"):
        return mod.add_parser, mod.main
    return mod.register, getattr(mod, f"cmd_{name}")


def build_parser() -> argparse.ArgumentParser:
    """The ``edgesim`` parser with every command of ``COMMANDS``."""
    p = Parser(prog="edgesim", description="Off-chip weight traffic, latency and energy of "
               "neural networks on edge accelerators.")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        _hooks(name)[0](sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        a = build_parser().parse_args(argv)
        return _hooks(a.command)[1](a)
    except EdgesimError as exc:
        message = " ".join(str(exc).split())  # always one line, whatever a library said
        print(f"edgesim: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
