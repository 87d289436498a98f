"""Nothing edgesim writes replaces what is not ours, and nothing it reads blocks.

Each case is what a careless or hostile user would try: an output path that names a device, a
FIFO, a socket or a folder (directly or through a symlink), a FIFO given as ``--data`` or planted
in the cache. Each asserts one error line naming the flag, exit code 2, and that the special file
is still what it was. Device nodes are made in the test's own temp folder, never the system's.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgesim.cli import main
from edgesim.outputs import OutputError, output_path, read_regular, write_atomically
from edgesim.testing import error_line, stderr_lines

ROOT = Path(__file__).resolve().parent.parent


def _device(tmp_path: Path) -> Path:
    """A character device node like /dev/null (1, 3), made in ``tmp_path`` (needs root)."""
    p = tmp_path / "null"
    try:
        os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("making a device node needs root")
    return p


def _fifo(tmp_path: Path, name: str = "fifo") -> Path:
    p = tmp_path / name
    os.mkfifo(p)
    return p


def _socket(tmp_path: Path) -> Path:
    p = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()
    return p


def _specials(tmp_path: Path) -> dict[str, Path]:
    """Every kind of non-regular file, plus a symlink to the device."""
    dev = _device(tmp_path)
    link = tmp_path / "link.csv"
    link.symlink_to(dev)
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"device": dev, "fifo": _fifo(tmp_path), "socket": _socket(tmp_path),
            "folder": folder, "symlink to device": link}


def _modes(paths) -> dict[str, int]:
    return {str(p): os.lstat(p).st_mode for p in paths}


def _one_line(capsys) -> str:
    return error_line(capsys.readouterr().err)


def test_output_path_refuses_every_special_file(tmp_path):
    specials = _specials(tmp_path)
    before = _modes(specials.values())
    for what, p in specials.items():
        with pytest.raises(OutputError, match="expected a regular file or a new file name"):
            output_path(p, "--out")
        with pytest.raises(OutputError):
            write_atomically(p, "x\n", "--out")
        assert what
    assert _modes(specials.values()) == before


def test_symlinks_are_resolved_and_a_regular_target_is_replaced_atomically(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    write_atomically(link, "new\n", "--out")
    assert link.is_symlink()                   # the link is kept, its target replaced
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640   # the mode it had
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    from edgesim.outputs import open_atomically
    target = tmp_path / "t.csv"
    target.write_text("old\n")

    def killed_mid_way():
        with open_atomically(target, "--out") as fh:
            fh.write("half")
            raise RuntimeError("killed mid-way")
    with pytest.raises(RuntimeError):
        killed_mid_way()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


@pytest.mark.parametrize("flag", ["--out", "--timeline"])
def test_run_refuses_special_outputs(tmp_path, capsys, flag):
    specials = _specials(tmp_path)
    before = _modes(specials.values())
    for p in specials.values():
        code = main(["run", "npu_small", "--model", "dense_r50", "--inputs", "2",
                     "--format", "csv", flag, str(p)])
        assert code == 2
        line = _one_line(capsys)
        assert line.startswith(f"edgesim: error: {flag} {p}: is a"), line
    assert _modes(specials.values()) == before


def test_finetune_refuses_a_device_checkpoint_before_any_work(tmp_path, capsys):
    dev = _device(tmp_path)
    link = tmp_path / "tree.pt"
    link.symlink_to(dev)
    for p in (dev, link):
        code = main(["finetune", "sigmab_r50_c100", "--checkpoint", str(p), "--samples", "8"])
        assert code == 2
        assert "--checkpoint" in _one_line(capsys)
        assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_plot_refuses_a_device_output(tmp_path, capsys):
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.csv").write_text(
        "config,model,policy,sram_bytes,weight_dram_bytes_steady,latency_s_steady,status\n"
        "npu_small,dense_r50,lru,1024,10,0.1,ok\nnpu_small,dense_r50,lru,2048,5,0.05,ok\n")
    dev = _device(tmp_path)
    (tmp_path / "fig.png").symlink_to(dev)
    code = main(["plot", "bytes-vs-sram", str(sweep), "--out", str(tmp_path / "fig")])
    assert code == 2
    assert "--out" in _one_line(capsys)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert not (tmp_path / "fig.svg").exists()   # checked before either file is written


def _run(args, env=None, timeout=120):
    """The CLI in a child process, so a hang fails the test at ``timeout`` instead of blocking
    the suite."""
    return subprocess.run([sys.executable, "-m", "edgesim", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT, check=False)


def test_a_fifo_as_data_is_refused_not_read(tmp_path):
    fifo = _fifo(tmp_path, "x.npy")
    r = _run(["run", "npu_small", "--model", "sigmab_r50", "--inputs", "2", "--data", str(fifo)])
    assert r.returncode == 2, r.stderr
    (line,) = stderr_lines(r.stderr)
    assert f"--data {fifo}: is a FIFO; expected a regular file" in line


def test_read_regular_never_blocks_on_a_fifo(tmp_path):
    with pytest.raises(OSError, match="FIFO"):
        read_regular(_fifo(tmp_path), 10)


def test_a_fifo_planted_in_the_cache_is_a_miss(tmp_path):
    """A FIFO at a registry model's cache entry: the run reads the shipped entry instead."""
    from edgesim import api
    from edgesim.zoo.registry import get_spec
    cache = tmp_path / "cache"
    (cache / "workload").mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    key = api.workload_key(get_spec("dense_r50"))
    os.mkfifo(cache / "workload" / f"{key}.npz")
    env = {**os.environ, "EDGESIM_CACHE": str(cache)}
    r = _run(["run", "npu_small", "--model", "dense_r50", "--inputs", "2", "--format", "csv"],
             env=env)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3      # header and two rows
    assert stat.S_ISFIFO(os.lstat(cache / "workload" / f"{key}.npz").st_mode)


@pytest.mark.parametrize("flag", ["--out", "--timeline"])
def test_an_output_under_a_file_names_its_flag_and_the_file(tmp_path, capsys, flag):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "t.csv"
    code = main(["run", "npu_small", "--model", "dense_r50", "--inputs", "1", flag, str(target)])
    assert code == 2
    line = _one_line(capsys)
    assert line == (f"edgesim: error: {flag} {target}: {tmp_path / 'afile'} is not a folder; "
                    "expected a path in a folder")
    assert (tmp_path / "afile").read_text() == "x"
