"""A nested stream as a hardware stores it: the best encoding per level segment it decodes, and a
note when the stream does not fit a flash-only device (``edgesim.encodings``)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

from edgesim import encodings
from edgesim.encodings import StorageWarning, as_stored, resolve, storage_note

SPARSE = ["dense", "nested", "bitmap", "csr", "csc", "rle"]


@pytest.fixture(scope="module")
def workload():
    """``test_transforms_load:small_nested`` (densities 10 / 30 / 50 %) traced at its top level,
    every level segment measured under every segment encoding."""
    from test_transforms_load import SPECS

    from edgesim.build import build_workload

    torch.set_num_threads(1)
    return build_workload(SPECS["nested"], encodings=SPECS["nested"].encodings)


def _streams(w) -> dict[str, list[int]]:
    """Parameter -> cumulative bytes that sub-network 1..N reads of it, and its dense bytes."""
    out: dict[str, list[int]] = {}
    for b in w.blocks.values():
        if "level" in b.meta:
            out.setdefault(b.meta["parameter"], []).append((b.meta["level"], b))
    streams = {}
    for p, blocks in out.items():
        blocks.sort(key=lambda kb: kb[0])
        acc, prefix = 0, []
        for _, b in blocks:
            acc += b.stored_bytes
            prefix.append(acc)
        streams[p] = (prefix, blocks[0][1].dense_bytes)
    return streams


def test_each_level_segment_carries_its_sparse_encodings(workload) -> None:
    levels = [b for b in workload.blocks.values() if "level" in b.meta]
    assert levels
    for b in levels:
        # the nested (CSR) segment as traced, and each generic sparse format of the segment
        assert set(b.encoded) == {"nested", *encodings.SEGMENT_ENCODINGS}
        assert b.encoded["nested"] == b.stored_bytes
        assert b.encoded["csr"] == b.encoded["nested"]   # a segment in CSR is the nested segment


def test_top_level_stream_is_not_larger_than_dense_when_a_sparse_format_decodes(workload) -> None:
    # In CSR each kept weight costs 8 value bits + a column index (9-13 bits here): at 50 %
    # density that is > 8 bits per weight, more than dense. A bitmap per segment costs 1 bit per
    # weight per level + 8 bits per kept one: 3 + 0.5 x 8 = 7 bits per weight, below dense.
    csr_only = _streams(as_stored(workload, ["dense", "nested"], None))
    assert any(prefix[-1] > dense for prefix, dense in csr_only.values())
    stored = as_stored(workload, SPARSE, None)
    for p, (prefix, dense) in _streams(stored).items():
        assert prefix == sorted(prefix), p             # each level reads a prefix
        assert prefix[-1] <= dense, p                 # the whole stream <= dense int8
    segs = [b for b in stored.blocks.values() if "level" in b.meta]
    assert {b.encoding for b in segs} <= {"bitmap", "rle", "nested", "csr", "csc"}
    for b in segs:   # each segment takes the smallest it can be decoded in
        assert b.stored_bytes == min(b.encoded.values())


def test_a_device_that_decodes_no_segment_format_reads_the_nested_layout(workload) -> None:
    stored = as_stored(workload, ["dense"], None)
    segs = [b for b in stored.blocks.values() if "level" in b.meta]
    assert {b.encoding for b in segs} == {"nested"}
    assert all(b.stored_bytes == b.encoded["nested"] for b in segs)


def _flash(size: int | None, kind: str = "flash", weights: str = "offchip"):
    return SimpleNamespace(name="tinyflash", formats=tuple(SPARSE), act_bits=8,
                           offchip_kind=kind, offchip_bytes=size, placement_weights=weights)


def test_a_stream_that_does_not_fit_the_flash_says_so(workload) -> None:
    stored = as_stored(workload, SPARSE, 8)
    total = stored.stored_bytes
    with pytest.warns(StorageWarning) as record:
        resolve(workload, _flash(total - 1))
    msg = str(record[0].message)
    assert "\n" not in msg
    assert f"nested model t_nested: its weight stream ({total:,} B;" in msg
    assert f"does not fit the {total - 1:,} B flash of tinyflash" in msg
    # what each level reads, the last being the whole stream
    assert f" / {total:,} B)" in msg
    # a stream that fits, a DRAM device, weights in another memory or no known size: no note
    for hw in (_flash(total), _flash(total - 1, kind="dram"),
               _flash(total - 1, weights="flash2"), _flash(None)):
        assert storage_note(stored, hw) is None
        with warnings.catch_warnings():
            warnings.simplefilter("error", StorageWarning)
            resolve(workload, hw)
