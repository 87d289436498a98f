"""Sweep arguments a careless user gives: a Dask scheduler that is not an address, a worker
count beyond any machine. One line each, exit 2, nothing outside the test's folder changed."""

from __future__ import annotations

import pytest
from hostile import run_cli

pytest.importorskip("distributed")


@pytest.mark.parametrize(("address", "why"), [
    ("foo://x:1", "unknown address scheme 'foo'"),
    ("tcp://[::1", "invalid address '[::1'"),
    ("localhost", "missing port number in address 'localhost'"),
])
def test_a_scheduler_that_is_not_an_address_is_one_line(tmp_path, address, why):
    # only OSError was caught: each of these was a ValueError traceback
    r = run_cli(["sweep", "npu_small", "--model", "dense_r50", "--inputs", "1", "--out",
                 "s", "--executor", "dask", "--scheduler", address], tmp_path, timeout=300)
    assert r.code == 2
    line = r.error_line()
    assert line.startswith(f"edgesim: error: --scheduler {address}: not a Dask scheduler "
                           "address (expected tcp://HOST:PORT)"), line
    assert why in line


def test_the_worker_count_is_bounded_and_says_so(tmp_path):
    r = run_cli(["sweep", "npu_small", "--model", "dense_r50", "--out", "s", "--workers",
                 "99999"], tmp_path)
    assert r.code == 2
    assert "--workers: expected an integer in 1..1_024" in r.error_line()
    helped = run_cli(["sweep", "--help"], tmp_path)
    assert "at most 1024" in helped.out
    assert "at most 10,000,000" in helped.out          # --inputs
