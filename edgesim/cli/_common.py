"""What the command modules share: the parser class, ``--format``/``--out``, progress, tables.

Public names (for the modules of ``edgesim.cli`` only): ``UsageError``, ``Parser``,
``bounded_int``, ``SEED``, ``INPUTS``, ``MAX_INPUTS``, ``add_format``, ``add_eval``,
``add_input_shape``, ``write``, ``progress_printer``, ``CliProgress``, ``LINE_EVERY``, ``policies``,
``prefetch_modes``, ``add_prefetch``, ``with_prefetch``, ``columns``, ``csv_rows``,
``accuracy_line``.

Bad input is one line on stderr and exit code 2: ``Parser.error`` raises ``UsageError`` (an
``EdgesimError``) instead of printing the usage and exiting, and ``edgesim.cli.main`` prints every
``EdgesimError`` as ``edgesim: error: <one line>``.
"""

from __future__ import annotations

import argparse
import sys

from edgesim.errors import EdgesimError
from edgesim.report import FORMATS

__all__ = ["INPUTS", "LINE_EVERY", "MAX_INPUTS", "SEED", "CliProgress", "Parser", "UsageError",
           "accuracy_line", "add_eval", "add_format", "add_input_shape", "add_prefetch",
           "bounded_int", "columns", "csv_rows", "policies", "prefetch_modes", "progress_printer",
           "with_prefetch", "write"]


class UsageError(EdgesimError):
    """A flag or argument of the command line is missing or malformed."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, exit 2, no usage dump."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see --help)")


def bounded_int(lo: int, hi: int):
    """An argparse ``type``: an integer in ``lo..hi`` (else one line naming the flag's value)."""
    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) <= 30 else None
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            shown = text if len(text) <= 30 else text[:27] + "..."
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi:_}, got {shown!r}")
        return value
    parse.__name__ = "integer"
    return parse


#: ``--seed``: a 32-bit unsigned integer (what every generator it seeds accepts).
SEED = bounded_int(0, 2**32 - 1)
#: The most inferences a stream may have (``--inputs``).
MAX_INPUTS = 10**7
#: ``--inputs``: inferences in a stream.
INPUTS = bounded_int(1, MAX_INPUTS)


def add_format(sp: argparse.ArgumentParser) -> None:
    """``--format table|csv|json`` and ``--out FILE``."""
    sp.add_argument("--format", choices=FORMATS, default="table")
    sp.add_argument("--out", help="write to this file instead of standard output")


def add_eval(sp: argparse.ArgumentParser) -> None:
    """``--eval``: top-1 over the labelled ``--data`` (whose inputs become the stream)."""
    sp.add_argument("--eval", action="store_true", dest="evaluate",
                    help="report top-1 accuracy over the labelled --data (a .pt of "
                    "{'x': inputs, 'y': labels}, an .npz, x.npy with y.npy, or an image folder "
                    "with one sub-folder per class); the stream is its inputs (--inputs N: the "
                    "first N)")


def add_input_shape(sp: argparse.ArgumentParser) -> None:
    """``--input-shape CxHxW``: the shape a PyTorch model is traced at."""
    sp.add_argument("--input-shape", metavar="SHAPE",
                    help="trace the model at this input shape, without the batch (3x32x32); "
                    "default: the shape of --data when given, else the factory's input_shape "
                    "attribute or the registered shape")


def accuracy_line(acc: dict, *, random_weights: bool) -> str:
    """The report line of an evaluation: top-1, correct of inputs, the data (and, for seeded
    random weights, that chance level is what they score)."""
    line = (f"# top-1 {100 * acc['top1']:.2f} % ({acc['correct']:,} of {acc['inputs']:,} "
            f"inputs of {acc['data']} correct)")
    if random_weights:
        line += "; the model has seeded random weights (no --weights): expect chance level"
    return line


def write(text: str, out: str | None, flag: str = "--out") -> None:
    """``text`` and a newline to standard output, or to the file ``out`` (folders created;
    ``edgesim.outputs.write_atomically``: only a new name or a regular file is replaced).
    Errors name ``flag``."""
    if out is None:
        sys.stdout.write(text + "\n")
        return
    from edgesim.outputs import write_atomically
    write_atomically(out, text + "\n", flag)


def progress_printer():
    """A ``say(msg)`` printing ``edgesim: msg`` on stderr: one line per stage that does work
    (building, tracing, routing), on a terminal or not."""
    def say(msg: str) -> None:
        print(f"edgesim: {msg}", file=sys.stderr, flush=True)
    return say


#: Piped (not a terminal), a counted step prints a line at most this often, in seconds.
LINE_EVERY = 10.0

#: What each counted step counts, and the verb of its line.
_COUNTED = {"route": ("routing", "input"), "eval": ("evaluating", "input"),
            "simulate": ("simulating", "inference"), "sweep": ("sweep", "task")}


class CliProgress:
    """The command line's ``edgesim.progress.Progress``: stage lines on stderr always, and per
    counted step (inputs routed or evaluated, sweep tasks, inferences of a stream of at least
    512; ``sim_total`` None: as long as the data) a tqdm bar on a terminal, or piped a line
    at most every ``every`` seconds with the count, the time and the rate (and a sweep's last
    line when it is done). ``close`` closes the bars."""

    def __init__(self, tty: bool, sim_total: int | None, *, every: float = LINE_EVERY,
                 clock=None) -> None:
        import time

        from edgesim.progress import Progress
        self.tty, self.sim_total, self.every = tty, sim_total, every
        self.clock = time.monotonic if clock is None else clock
        self.bars: dict[str, _LazyBar] = {}
        self.started: dict[str, float] = {}
        self.shown: dict[str, float] = {}
        self.say = progress_printer()
        self.progress = Progress(say=self.say, counter=self._count)

    def _count(self, step: str, done: int, total: int | None) -> None:
        if step == "simulate":
            total = self.sim_total if total is None else total
            if total is None or total < 512:
                return
        if self.tty:
            bar = self.bars.get(step)
            if bar is None:
                bar = self.bars[step] = _LazyBar(_COUNTED.get(step, (step, "item"))[1])
            bar.update(done, total)
            return
        self._line(step, done, total)

    def _line(self, step: str, done: int, total: int | None) -> None:
        now = self.clock()
        start = self.started.setdefault(step, now)
        finished = total is not None and done >= total
        if finished:
            self.started.pop(step, None)       # a next run of the step starts its own clock
            if step != "sweep":                # the others end with their own stage line
                return
        elif now - self.shown.get(step, start) < self.every:
            return
        self.shown[step] = now
        verb, unit = _COUNTED.get(step, (step, "item"))
        spent = now - start
        of = "" if total is None else f" of {total:,}"
        rate = f", {done / spent:,.1f} {unit}s/s" if spent > 0 else ""
        self.say(f"{verb}: {done:,}{of} {unit}{'s' if (total or done) != 1 else ''}, "
                 f"{spent:,.0f} s{rate}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class _LazyBar:
    """A tqdm bar on stderr opened at the first update (with its total), closed by ``close``."""

    def __init__(self, unit: str) -> None:
        self.unit, self.bar = unit, None

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def policies() -> tuple[str, ...]:
    """The residency policy names: the keys of the simulator's one policy table."""
    from edgesim.sim import POLICIES
    return tuple(POLICIES)


def prefetch_modes() -> tuple[str, ...]:
    """The prefetch mode names, from the simulator's table."""
    from edgesim.sim import PREFETCH_MODES
    return tuple(PREFETCH_MODES)


def add_prefetch(p) -> None:
    """``--prefetch M``: the config's ``prefetch.mode`` for this command (``with_prefetch``)."""
    p.add_argument("--prefetch", choices=prefetch_modes(), default=None,
                   help="whether the DMA fetches weights ahead: --set prefetch.mode=M "
                   "(default: the config's, next when it names none)")


def with_prefetch(sets: list[str], prefetch: str | None) -> list[str]:
    """``sets`` (``--set`` strings) with ``--prefetch M`` as ``prefetch.mode=M`` (None: as
    they are); the mode given both ways is one line."""
    if prefetch is None:
        return list(sets)
    for o in sets:   # (no alias names a prefetch key: edgesim.schema.ALIASES, not imported)
        if tuple(k.strip() for k in o.partition("=")[0].split(".")) == ("prefetch", "mode"):
            raise UsageError(f"--prefetch {prefetch} and --set {o}: give the prefetch mode "
                             "once")
    return [*sets, f"prefetch.mode={prefetch}"]


def columns() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(INFERENCE_COLUMNS, LAYER_COLUMNS)``: the columns of the simulator's result rows."""
    from edgesim.sim import INFERENCE_COLUMNS, LAYER_COLUMNS
    return tuple(INFERENCE_COLUMNS), tuple(LAYER_COLUMNS)


def csv_rows(rows):
    """``rows`` with every text cell a spreadsheet would run as a formula escaped
    (``edgesim.report.csv_safe``: a leading ``'``); numbers unchanged."""
    from edgesim.report import csv_safe
    return [tuple(csv_safe(v) for v in r) for r in rows]
