"""Tracing, routing and evaluating run on EDGESIM_TORCH_THREADS torch threads (default 1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgesim import api
from edgesim.cli import main
from edgesim.testing import stderr_lines

SEEN: list[int] = []


class _Probe(nn.Module):
    """A linear layer that records how many torch threads its forward pass ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        SEEN.append(torch.get_num_threads())
        return self.fc(x.flatten(1))


def probe_net() -> nn.Module:
    return _Probe()


probe_net.input_shape = (4,)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("env", "expected"), [(None, 1), ("2", 2)])
def test_a_trace_runs_on_the_threads_asked_for_and_restores_them(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("EDGESIM_TORCH_THREADS", raising=False)
    else:
        monkeypatch.setenv("EDGESIM_TORCH_THREADS", env)
    torch.set_num_threads(2 if expected == 1 else 1)
    before = torch.get_num_threads()
    SEEN.clear()
    api.workload("test_threads:probe_net", use_cache=False)
    assert SEEN, "the model never ran"
    assert set(SEEN) == {expected}
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("raw", ["lots", "0", "1000000000", "9" * 40])
def test_a_bad_thread_count_is_one_line(monkeypatch, capsys, raw):
    # a billion threads made libgomp abort the process with no edgesim line (issue 17)
    monkeypatch.setenv("EDGESIM_TORCH_THREADS", raw)
    code = main(["run", "npu_small", "--model", "test_threads:probe_net", "--inputs", "1"])
    err = "\n".join(stderr_lines(capsys.readouterr().err))
    assert code == 2
    shown = raw if len(raw) <= 30 else raw[:27] + "..."
    assert err == (f"edgesim: error: EDGESIM_TORCH_THREADS={shown!r}: expected a whole number "
                   "of threads in 1..1024")
