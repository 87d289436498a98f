"""Tests for the shipped hwconfigs/*.yaml: they load, cite sources, hold their datasheet facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgesim.config import HWCONFIG_DIR, config_table, load_config, shipped_configs
from edgesim.technology import energy_scale

SHIPPED = shipped_configs()
IDS = [p.stem for p in SHIPPED]
SECTIONS = ("technology", "compute", "sram", "offchip", "energy", "prefetch")


def raw_of(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_shipped_configs() -> None:
    # the six systems, the U65 with the 384 KB Dedicated_Sram cache of REFERENCE.md C, the
    # U65 and U85 in the edge system of edge_match.ini, and the MLPerf Tiny silicon board
    assert set(IDS) == {"npu_small", "ethos_u55", "ethos_u65", "nvdla_small", "stm32h7",
                        "edgetpu", "ethos_u65_384k", "ethos_u65_edge", "ethos_u85_edge",
                        "stm32h7a3"}
    assert all(p.parent == HWCONFIG_DIR for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_shipped_config_loads_and_is_named_for_its_file(path: Path) -> None:
    hw = load_config(path)
    assert hw.name == path.stem
    assert hw.weight_sram_bytes > 0
    assert hw.act_reserve_bytes >= 0


def test_every_citation_of_a_config_is_a_section_of_the_references() -> None:
    # the sources point into this repository (docs/references.md), not to files beside it
    import re
    root = Path(__file__).resolve().parent.parent
    sections = set(re.findall(r"^###? ([A-G]\d*)\.", (root / "docs" / "references.md")
                              .read_text(encoding="utf-8"), flags=re.M))
    cited = set()
    for path in SHIPPED:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text, path.name
        assert "REFERENCE.md" not in text, path.name
        cited |= set(re.findall(r"docs/references\.md,? ([A-G]\d*)\b", text))
    assert cited                              # the check below can fail: citations exist
    assert cited <= sections, sorted(cited - sections)


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_every_section_has_a_source_that_cites_or_says_assumption(path: Path) -> None:
    raw = raw_of(path)
    texts = {"config": raw["source"]}
    texts.update({s: raw[s]["source"] for s in SECTIONS if s in raw})
    for section, text in texts.items():
        assert isinstance(text, str), section
        assert text.strip(), section
        # every number is covered either by a docs/references.md row / named document or a
        # plain statement that it is an assumption
        assert any(word in text for word in ("docs/references.md", "ssumption", ".spec",
                                             "Vela", "Coral")), section
    hw = load_config(path)
    assert all(text.strip() for text in hw.sources.values())


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_array_shape_matches_int8_peak(path: Path) -> None:
    # the int8 peak is a whole number of MACs per PE of the array (1 for a plain systolic
    # array, 8 for an Ethos-U PE, an 8-wide dot product: edgesim.sim.mapping)
    hw = load_config(path)
    assert hw.macs_per_cycle["int8"] % (hw.array_rows * hw.array_cols) == 0


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_mac_energy_is_scaled_by_the_technology_rule(path: Path) -> None:
    raw = raw_of(path)
    hw = load_config(path)
    scale = energy_scale(raw["energy"]["reference_node_nm"], raw["energy"]["reference_vdd_v"],
                         raw["technology"]["node_nm"], raw["technology"]["vdd_v"])
    for precision, text in raw["energy"]["mac"].items():
        written_pj = float(text.removesuffix("pJ"))
        assert hw.mac_pj[precision] == pytest.approx(written_pj * scale, rel=1e-12)


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_resolved_reloads_to_the_same_config(path: Path, tmp_path: Path) -> None:
    # resolved is the config in the file schema with human units: writing it back and loading it
    # gives the same HardwareConfig (apart from the file name)
    hw = load_config(path)
    again_path = tmp_path / path.name
    again_path.write_text(yaml.safe_dump(hw.to_dict()["resolved"], allow_unicode=True),
                          encoding="utf-8")
    again = load_config(again_path)
    first, second = hw.to_dict(), again.to_dict()
    first.pop("file")
    second.pop("file")
    assert second == first


def test_npu_small_is_the_specified_design() -> None:
    hw = load_config(HWCONFIG_DIR / "npu_small.yaml")
    assert hw.macs_per_cycle["int8"] == 256
    assert hw.clock_hz == 500e6
    assert hw.sram_bytes == 512 * 1024
    assert hw.act_reserve_bytes * 4 == hw.sram_bytes          # 25 %
    assert hw.offchip_kind == "dram"
    assert hw.offchip_bytes_per_s == 4e9
    assert hw.offchip_read_pj_per_bit == 8.0                   # LPDDR4, REFERENCE.md B5
    assert hw.node_nm == 28


def test_ethos_u55_follows_vela_high_end_embedded() -> None:
    hw = load_config(HWCONFIG_DIR / "ethos_u55.yaml")
    assert hw.macs_per_cycle["int8"] == 128
    assert hw.clock_hz == 500e6
    assert hw.offchip_kind == "flash"
    assert hw.offchip_bytes_per_s == 0.5e9
    assert hw.offchip_latency_s * hw.clock_hz == pytest.approx(64)   # 64 cycles at 500 MHz
    assert hw.offchip_write_latency_s * hw.clock_hz == pytest.approx(64)
    assert hw.offchip_burst_bytes == 128
    # Shared_Sram: weights in flash on AXI1, the arena in SRAM
    assert (hw.placement_weights, hw.placement_arena, hw.offchip_port) == ("offchip", "sram",
                                                                           "AXI1")


def test_ethos_u65_follows_vela_high_end_dedicated_sram() -> None:
    hw = load_config(HWCONFIG_DIR / "ethos_u65.yaml")
    assert hw.macs_per_cycle["int8"] == 512
    assert 2 * hw.macs_per_cycle["int8"] * hw.clock_hz == pytest.approx(1.024e12)  # "1 TOPS"
    assert hw.sram_bytes == 2 * 2**20          # >= the 1781 KiB Vela used (summary.csv)
    assert hw.offchip_bytes_per_s == 3.75e9
    assert hw.offchip_latency_s * hw.clock_hz == pytest.approx(500)  # 500 cycles at 1 GHz
    assert hw.offchip_write_latency_s * hw.clock_hz == pytest.approx(250)
    assert hw.offchip_burst_bytes == 128
    # Dedicated_Sram: weights and arena in DRAM
    assert (hw.placement_weights, hw.placement_arena) == ("offchip", "offchip")
    assert load_config(HWCONFIG_DIR / "ethos_u65_384k.yaml").sram_bytes == 384 * 1024


def test_nvdla_small_follows_nv_small_spec() -> None:
    hw = load_config(HWCONFIG_DIR / "nvdla_small.yaml")
    assert hw.macs_per_cycle["int8"] == 8 * 8            # atomic-C x atomic-K
    assert hw.sram_bytes == 32 * 512 * 8                  # CBUF banks x depth x width = 128 KiB
    assert hw.offchip_bytes_per_s == 8 * hw.clock_hz      # 64-bit memif, 8 B per cycle
    assert hw.offchip_burst_bytes == 4 * 8                # max burst 4 beats of 8 B


def test_stm32h7_is_a_flash_mcu() -> None:
    hw = load_config(HWCONFIG_DIR / "stm32h7.yaml")
    assert hw.clock_hz == 480e6
    assert hw.sram_bytes == 512 * 1024
    assert hw.offchip_kind == "flash"
    assert hw.macs_per_cycle["int8"] == 2
    assert hw.offchip_bytes_per_s == pytest.approx(8 * 240e6 / 2)  # half of 64-bit AXI x 240 MHz
    assert hw.mac_pj["int8"] == 150.0                              # quoted at its own node


def test_edgetpu_has_8_mib_for_weights_and_about_4_tops() -> None:
    hw = load_config(HWCONFIG_DIR / "edgetpu.yaml")
    assert hw.weight_sram_bytes == 8 * 1024 * 1024
    tops = 2 * hw.macs_per_cycle["int8"] * hw.clock_hz / 1e12
    assert tops == pytest.approx(4.0, rel=0.02)  # 64 x 64 x 2 x 480 MHz = 3.93 TOPS
    assert hw.offchip_bytes_per_s == 0.5e9        # 5 Gb/s link after 8b/10b


def test_config_table_has_one_row_per_shipped_config() -> None:
    rows = config_table()
    assert [r["name"] for r in rows] == IDS
    assert set(rows[0]) == {"name", "file", "clock", "int8_macs_per_cycle", "sram", "offchip",
                            "offchip_bandwidth", "source"}
    u65 = next(r for r in rows if r["name"] == "ethos_u65")
    assert u65["sram"] == "2 MiB"
    assert u65["offchip_bandwidth"] == "3.75 GB/s"
    assert u65["clock"] == "1 GHz"


def test_ethos_u85_edge_follows_regor_and_edge_match() -> None:
    # regor s_EthosU85Configs Ethos_U85_1024: 1024 MACs = micro-block 2x2 x 32 channels x
    # 8-wide dot products; edge_match.ini: 1 GHz, DRAM 8 GB/s, 512 KiB cache
    hw = load_config("ethos_u85_edge")
    assert (hw.clock_hz, hw.macs_per_cycle["int8"], hw.sram_bytes) == (1e9, 1024, 512 * 1024)
    assert (hw.array_kind, hw.array_rows, hw.array_cols, hw.array_ublock_width) == (
        "broadcast", 4, 32, 2)
    assert hw.offchip_bytes_per_s == 8e9
    assert hw.fuse_eltwise
    # the configs that do not opt in keep the systolic array, depthwise on the vector unit,
    # and no op-class rates
    for name in ("npu_small", "nvdla_small", "edgetpu"):
        other = load_config(name)
        assert (other.array_kind, other.array_depthwise, other.eltwise_cycles_per_element,
                other.softmax_commands, other.fuse_eltwise) == (
            "systolic", "vector", None, 0, False)


def test_the_mcus_run_cortex_m7_kernels() -> None:
    # no MAC array: a CPU's kernels (edgesim.sim.mcu), the NUCLEO-H7A3ZI-Q at 280 MHz with
    # 6 flash wait states (STM32CubeH7's template for the board) and 1376 KiB of RAM
    for name in ("stm32h7", "stm32h7a3"):
        hw = load_config(name)
        assert hw.array_kind == "mcu"
        assert hw.skip_formats == ("nested",)
    a3 = load_config("stm32h7a3")
    assert (a3.clock_hz, a3.kernels["flash_wait_states"], a3.sram_bytes) == (
        280e6, 6, 1376 * 1024)
    assert a3.board_w > 0


def test_the_stored_checked_form_is_a_full_read_of_each_shipped_config(tmp_path: Path) -> None:
    # the store (edgesim.checked_configs) makes a run skip YAML and pydantic; it must give the
    # very config a full read gives (every field, with its type: 500e6 stays a float), and
    # be current: a change to a shipped YAML or to the reading code leaves it stale (then a
    # run reads in full: slower, the same answer) until it is rewritten
    from dataclasses import fields

    from edgesim import checked_configs
    from edgesim.config import config_from_dict, read_config
    assert checked_configs.store_entries() == checked_configs._entries(), (
        "edgesim/hwconfigs/checked.json is stale: run python -c 'from edgesim.checked_configs "
        "import write_store; write_store()'")

    def shown(hw) -> list[tuple[str, str]]:
        return [(f.name, repr(getattr(hw, f.name))) for f in fields(hw)]

    for path in SHIPPED:
        raw, file = read_config(path.stem)
        assert shown(checked_configs.load(path.stem)) == shown(config_from_dict(raw, file=file))
    # a file with other bytes (one more comment) is not in the store, yet reads the same
    edited = tmp_path / "npu_small.yaml"
    edited.write_bytes((HWCONFIG_DIR / "npu_small.yaml").read_bytes() + b"# edited\n")
    assert checked_configs.stored(edited) is None
    assert load_config(edited).to_dict() | {"file": ""} == \
        load_config("npu_small").to_dict() | {"file": ""}


def test_a_prefetch_mode_override_reads_from_the_store_as_a_full_read_does(monkeypatch) -> None:
    # --prefetch M is --set prefetch.mode=M: the store applies it (mode, the section's source
    # noting it, or the note alone where the file has no prefetch section: stm32h7, edgetpu)
    # and must give the very config a full read of the file with that override gives
    from dataclasses import fields

    import edgesim.config
    from edgesim import checked_configs

    def shown(hw) -> list[tuple[str, str]]:
        return [(f.name, repr(getattr(hw, f.name))) for f in fields(hw)]

    sets = ["prefetch.mode=none"]
    full = {path.stem: load_config(path.stem, sets) for path in SHIPPED}
    monkeypatch.setattr(edgesim.config, "load_config", None)   # the store alone answers now
    for name, hw in full.items():
        assert shown(checked_configs.load(name, sets)) == shown(hw), name
    assert checked_configs._has_section(b"schedule: vela\nprefetch:\n  depth: 0\n",
                                        b"prefetch") is True
    assert checked_configs._has_section(b"schedule: vela\n", b"prefetch") is False
    assert checked_configs._has_section(b'{"prefetch": {}}', b"prefetch") is None
