"""One progress interface for every step that takes time: stage lines and counters.

Public names: ``Progress``, ``QUIET``, ``as_progress``.

A step that does work (building, tracing, importing a file, routing, evaluating) says so in
one line (``stage``); a step over many items (inputs routed or evaluated, inferences
simulated, sweep tasks done) reports ``count(step, done, total)``. The CLI prints the lines
on stderr and, per counted step, draws a bar on a terminal or prints a line every few seconds
when piped (``edgesim.cli._common.CliProgress``); the API is quiet unless given one.

>>> seen = []
>>> p = Progress(say=seen.append)
>>> p.stage("tracing m"); p.count("route", 3, 10)      # no counter: nothing happens
>>> seen
['tracing m']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["QUIET", "Progress", "as_progress"]

#: The counted steps: inputs routed, inputs evaluated, inferences simulated, sweep tasks done.
STEPS = ("route", "eval", "simulate", "sweep")


@dataclass(frozen=True, slots=True)
class Progress:
    """``say(line)`` for stage lines; ``counter(step, done, total)`` for counted steps (total
    None: not known in advance)."""

    say: Callable[[str], None] | None = None
    counter: Callable[[str, int, int | None], None] | None = None

    def stage(self, line: str) -> None:
        """A step that does work, in one line."""
        if self.say is not None:
            self.say(line)

    def count(self, step: str, done: int, total: int | None) -> None:
        """``done`` of ``total`` items of ``step`` (one of ``STEPS``)."""
        if self.counter is not None:
            self.counter(step, done, total)

    def of(self, step: str) -> Callable[..., None] | None:
        """``count`` bound to ``step`` as ``f(done, total=None)``, or None when nothing
        counts (so a loop can skip its bookkeeping)."""
        if self.counter is None:
            return None
        counter = self.counter
        return lambda done, total=None: counter(step, done, total)


#: Nothing reported.
QUIET = Progress()


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    """A ``Progress`` from what a caller gave: one, a ``say(line)`` callable, or None."""
    if progress is None:
        return QUIET
    if isinstance(progress, Progress):
        return progress
    return Progress(say=progress)
