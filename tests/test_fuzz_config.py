"""Bounded inputs (issue 11, items 3 and 7): hostile configs and flags fail in one line, quickly.

The fuzz tests draw values from the classes an adversarial user tries (huge, tiny, negative,
zero, NaN/inf, wrong type, wrong unit, long text, deep or aliased YAML) for every field of the
config schema and for ``--set``, ``--seed`` and ``--inputs``. A config is checked in-process
(``config_from_dict`` then ``simulate`` on the tiny workload: only ``ConfigError`` may escape, and
what validates must simulate to finite numbers); the flags go through ``edgesim.cli.main`` on the
cached tiny model of ``tests/usermodels.py``: exit code 0 or 2, at most 3 lines on stderr, no
traceback. Time is bounded by hypothesis' ``deadline``, not by timed asserts.
"""

from __future__ import annotations

import copy
import math
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesim.cli import main
from edgesim.config import MAX_DEPTH, MAX_FILE_BYTES, config_from_dict, load_config
from edgesim.errors import ConfigError, DataError
from edgesim.schema import schema_fields, section_at
from edgesim.testing import TINY_CONFIG, tiny_workload

USER = "usermodels:tiny_net"

#: Every leaf key of the schema (sections and the named ``memories`` mapping left out).
LEAVES = [".".join(p) for p, _ in schema_fields() if section_at(p) is None
          and p != ("memories",)]

_NUMBERS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**16, 2**16 + 1, 2**60, 2**60 + 1, 2**64, 1e-300, 1e300]),
)
_UNITS = ["", "B", "KiB", "GiB", "B/s", "GB/s", "Hz", "kHz", "GHz", "s", "ms", "ns", "ps", "pJ",
          "J", "pJ/bit", "pJ/B", "mW", "W", "%", "furlong"]
_EXPONENTS = st.integers(min_value=-(10**9), max_value=10**9)

#: Values of every class an adversarial user tries, as a YAML scalar (text) or a Python value.
VALUES = st.one_of(
    _NUMBERS,
    st.builds(lambda n, u: f"{n} {u}", _NUMBERS, st.sampled_from(_UNITS)),
    st.builds(lambda m, e, u: f"{m}e{e} {u}", st.integers(-9, 9), _EXPONENTS,
              st.sampled_from(_UNITS)),
    st.sampled_from([".inf", "-.inf", ".nan", "nan B", "inf GB/s", "1e400 KiB", "0.001 Hz",
                     "0.1 B/s", "1e300 s", "1.0e+308", "true", "null", "[]", "{}", "~",
                     "1e999999999 B", "-0", "25%", "100%", "1e99999%", "x" * 10_000]),
    st.text(max_size=40),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _set(raw: dict, key: str, value) -> None:
    node = raw
    *head, last = key.split(".")
    for part in head:
        node = node.setdefault(part, {})
    node[last] = value


def _check_config(raw) -> None:
    """Validation raises ConfigError only; what validates simulates to finite numbers."""
    from edgesim.sim import simulate
    try:
        hw = config_from_dict(raw, file="fuzz.yaml")
    except ConfigError as exc:
        message = str(exc)
    else:
        message = None
    if message is not None:
        assert "\n" not in message
        assert len(message) < 2000, message[:200]
        return
    res = simulate(hw, tiny_workload(2))
    assert all(math.isfinite(float(v)) for row in res.rows for v in row
               if isinstance(v, (int, float))), res.rows


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(LEAVES), value=VALUES)
def test_any_value_of_any_field_is_a_config_error_or_simulates(key, value):
    raw = copy.deepcopy(TINY_CONFIG)
    _set(raw, key, value)
    _check_config(raw)


@settings(max_examples=40, deadline=5000)
@given(depth=st.integers(1, 200), flow=st.booleans())
def test_nested_yaml_is_one_line(tmp_path_factory, depth, flow):
    text = ("a: " + "[" * depth + "]" * depth) if flow else "".join(
        " " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v: 1\n"
    path = tmp_path_factory.mktemp("deep") / "hw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "\n" not in str(info.value)
    if depth > MAX_DEPTH + 1:
        assert "nested more than" in str(info.value)


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err[-500:])
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err[:500]
    return code, err


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """The tiny user model traced once (then every run below reads the trace cache)."""
    assert main(["run", "npu_small", "--model", USER, "--inputs", "1", "--format", "csv"]) == 0


@settings(max_examples=60, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(LEAVES), value=VALUES)
def test_set_any_field_any_value_exits_0_or_2(traced, capsys, key, value):
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True
                                                               ).strip().removesuffix("...")
    _cli(capsys, ["run", "npu_small", "--model", USER, "--inputs", "1", "--format", "csv",
                  "--set", f"{key}={text.strip()}"])


_BAD_INTS = st.one_of(
    st.integers(max_value=-1), st.integers(min_value=2**32), st.integers(-(2**70), 2**70),
    st.sampled_from([0, 10**7 + 1, 2**32 - 1, 2**32, 2**64]),
).map(str)
_FLAG_VALUES = {
    # a valid --seed is any 32-bit value: the stream is one inference
    "--seed": st.one_of(_BAD_INTS, st.sampled_from(["1e3", "nan", "", "0x10", "9" * 5000,
                                                    " 3 ", "1_000", "-0"]), st.text(max_size=20)),
    # a valid --inputs is kept small (a stream of 10^7 is valid and slow): 1..4 or invalid
    "--inputs": st.one_of(st.integers(1, 4).map(str), _BAD_INTS.filter(
        lambda v: not 4 < int(v) <= 10**7), st.sampled_from(["", "x", "1.5", "9" * 5000])),
}


@settings(max_examples=60, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), flag=st.sampled_from(sorted(_FLAG_VALUES)))
def test_seed_and_inputs_exit_0_or_2(traced, capsys, data, flag):
    value = data.draw(_FLAG_VALUES[flag])
    code, err = _cli(capsys, ["run", "npu_small", "--model", USER, "--format", "csv",
                              *(["--inputs", "1"] if flag == "--seed" else []),
                              f"{flag}={value}"])
    if code == 2:
        assert flag in err


# --------------------------------------------------------------------------- explicit cases

def _error(capsys, argv: list[str]) -> str:
    code, err = _cli(capsys, argv)
    assert code == 2, err
    return err


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_alias_bomb_is_refused_unexpanded(tmp_path, capsys):
    # 9^9 (387 million) strings if expanded; refused at the first alias, nothing rendered
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 1000
    err = _error(capsys, ["run", str(path), "--model", USER])
    assert "line 2: YAML aliases (*a) are not supported" in err
    assert "lol" not in err


def test_an_alias_in_a_set_value_is_refused(capsys):
    err = _error(capsys, ["run", "npu_small", "--model", USER, "--set", "formats=[&a dense, *a]"])
    assert "aliases" in err


def test_yaml_nested_100000_deep_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000)
    err = _error(capsys, ["run", str(path), "--model", USER])
    assert f"nested more than {MAX_DEPTH} deep" in err


def test_a_set_value_nested_deep_is_one_line(capsys):
    err = _error(capsys, ["run", "npu_small", "--model", USER,
                          "--set", "sram.size=" + "[" * 10_000 + "]" * 10_000])
    assert "nested more than" in err


def test_huge_exponent_is_refused_before_arithmetic(capsys):
    # Fraction("1e999999999") would compute 10**999999999: the exponent is checked first
    err = _error(capsys, ["run", "npu_small", "--model", USER,
                          "--set", "sram.size=1e999999999 B"])
    assert "sram.size (from --set)" in err
    assert "exponent" in err


@pytest.mark.parametrize(("value", "phrase"), [
    ("sram.size=1e400 KiB", "at most"),
    ("clock=0.001 Hz", "at least 1 kHz"),
    ("clock=2000 GHz", "at most"),
    ("offchip.bandwidth=0.1 B/s", "at least 1 B/s"),
    ("offchip.bandwidth=1e400 GB/s", "at most"),
    ("offchip.latency=1e300 s", "below 1 s"),
    ("offchip.burst=1.0e+308 B", "at most 1 GiB"),
    ("compute.array.cols=1180591620717411303424", "less than or equal to 65536"),
    ("technology.vdd_v=.inf", "finite"),
    ("technology.vdd_v=50", "less than or equal to 5"),
    ("technology.node_nm=0.5", "greater than or equal to 1"),
    ("energy.mac.int8=2 J", "below 1 J"),
    ("sram.leakage=1e9 W", "below"),
    ("sram.activation_reserve=1e99999%", "not a percentage"),
    ("prefetch.depth=1000000", "less than or equal to"),
])
def test_out_of_range_values_are_one_line(capsys, value, phrase):
    err = _error(capsys, ["run", "npu_small", "--model", USER, "--set", value])
    assert value.partition("=")[0] in err
    assert phrase in err, err


def test_shipped_configs_lie_inside_the_ranges():
    from edgesim.config import shipped_configs
    for path in shipped_configs():
        load_config(path)


def test_a_config_file_above_the_size_limit_is_refused_unread(tmp_path, capsys):
    # a few MB of unknown keys: refused by size before YAML sees it
    path = tmp_path / "keys.yaml"
    path.write_text("".join(f"key{i}: {i}\n" for i in range(400_000)))
    assert path.stat().st_size > 2 * MAX_FILE_BYTES
    err = _error(capsys, ["run", str(path), "--model", USER])
    assert "larger than 1024 KiB" in err
    assert len(err) < 300


def test_many_unknown_keys_are_cut(tmp_path):
    # under the size limit in a file, and 200,000 keys in-process: five named, the rest counted
    raw = copy.deepcopy(TINY_CONFIG)
    raw["sram"].update({f"junk{i}": i for i in range(200_000)})
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, file="f.yaml")
    msg = str(info.value)
    assert "sram.junk0, sram.junk1, sram.junk2, sram.junk3, sram.junk4 and 199995 more" in msg
    assert len(msg) < 400
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, **{f"k{i}": "x" * 20 for i in range(30_000)}}))
    with pytest.raises(ConfigError, match="and 29995 more: unknown keys"):
        load_config(path)


def test_a_long_value_is_cut_in_the_error(capsys):
    err = _error(capsys, ["run", "npu_small", "--model", USER,
                          "--set", "offchip.bandwidth=" + "9" * 100_000 + " GB/s"])
    assert len(err) < 400
    assert "chars" in err


def test_a_long_key_is_cut_in_the_error():
    raw = copy.deepcopy(TINY_CONFIG)
    raw["k" * 1_000_000] = 1
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert len(str(info.value)) < 400


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG claiming ``width`` x ``height`` RGB pixels (its data is a few zero bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _bmp_header(width: int, height: int) -> bytes:
    """A 54-byte 24-bit BMP header claiming ``width`` x ``height`` pixels (no pixel data)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


@pytest.mark.parametrize(("name", "data"), [
    ("bomb.png", _png_header(30_000, 30_000)),   # 900 Mpx: 13.6 GB once decoded
    ("big.png", _png_header(10_000, 10_000)),    # 100 Mpx: under Pillow's own limit, over ours
    ("bomb.bmp", _bmp_header(30_000, 30_000)),
])
def test_an_image_with_a_huge_header_is_refused_before_decoding(tmp_path, name, data):
    from edgesim.zoo.data import load_inputs
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError) as info:
        load_inputs(tmp_path, "image", (3, 8, 8))
    assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_seed_2_to_the_64_is_one_line(capsys):
    err = _error(capsys, ["run", "npu_small", "--model", USER, "--seed", str(2**64)])
    assert "--seed: expected an integer in 0..4_294_967_295" in err


@pytest.mark.parametrize("value", ["0", "10000001", "-5", "x"])
def test_inputs_out_of_bounds_is_one_line(capsys, value):
    err = _error(capsys, ["run", "npu_small", "--model", USER, "--inputs", value])
    assert "--inputs: expected an integer in 1..10_000_000" in err


def test_a_grid_above_the_point_limit_is_one_line(tmp_path, capsys):
    err = _error(capsys, ["sweep", "npu_small", "--model", "dense_r50", "--out", str(tmp_path),
                          "--set", "prefetch.depth=0..400:+1",
                          "--set", "compute.array.rows=1..400:+1"])
    assert "the grid has 160,400 points with this axis; at most 100,000" in err
    assert not any(Path(tmp_path).iterdir())
