"""benchmarks/energy_peers.py: edgesim's energy parts against nn-dataflow's and ZigZag's constants.

The peers' NPU: npu_small made a 32x32 array (1024 int8 MACs/cycle) with the 2 MiB SRAM of
ZigZag's ``tpu_like`` (``sram_2MB``), weight-stationary, at npu_small's 28 nm / 0.9 V. edgesim
simulates one inference of ``--model`` (default dense_r50) on it; its counts (MACs, SRAM bytes
read and written, off-chip bytes read and written) are then priced three ways: by edgesim's
own parts (the columns of its result) and by each peer's default constants, event for event.
Same counts, so each ratio is the ratio of the constants: how far each part is from theirs.

The peers' defaults (both repositories read at their newest stored commit):

* nn-dataflow (stanford-mast/nn_dataflow, ``nn_dataflow/tools/nn_dataflow_search.py``):
  ``--op-cost 1``, ``--hier-cost 200 6 2 1`` (DRAM, global buffer, array bus, register file),
  ``--hop-cost 10``, ``--unit-idle-cost 0``, per ``--word 16``-bit word (Eyeriss's normalised
  table, docs/references.md B2, read as pJ). Per byte: DRAM 100, buffer 3, register 0.5 pJ. Its
  register file is charged once per MAC for each of filter, ifmap and ofmap
  (``core/map_strategy.py``: "regf access is based on num of ops"): 3 words, 3 pJ per MAC.
* ZigZag (KULeuven-MICAS/zigzag, ``zigzag/inputs/hardware/tpu_like.yaml``, a 32x32 array):
  MAC ``unit_energy`` 0.04 pJ; costs are per access of a port's ``bandwidth_max`` bits
  (``hardware/architecture/memory_instance.py``): weight register ``rf_128B`` 0.095 pJ per 8
  bits, output register ``rf_2B`` 0.021 pJ per 16 bits, ``sram_2MB`` 416.16 read / 378.4
  write pJ per 2048 bits, ``dram`` 700 read / 750 write pJ per 64 bits. Per MAC at the
  register level: one weight read and one output read + write, 0.095 + 2 x 0.021 = 0.137 pJ
  (inputs come straight from the SRAM: no register of their own).
* Leakage: neither charges any by default (idle cost 0; no static term in tpu_like), nor does
  edgesim (no cited figure).

The register row compares per MAC what each tool charges at its register level; a peer's
mapper may amortise stationary reads below this, so theirs are upper bounds. nn-dataflow's
array bus (2 per word per PE delivery) depends on its mapping and has no edgesim counterpart:
not in the table.

    python benchmarks/energy_peers.py [--model dense_r50]
"""

from __future__ import annotations

import argparse
import sys

from edgesim.api import run
from edgesim.config import load_config
from edgesim.technology import energy_scale

#: npu_small -> the peers' 32x32 NPU (ZigZag tpu_like: 32x32, sram_2MB)
PEER_NPU = ("compute.array.rows=32", "compute.array.cols=32",
            "compute.macs_per_cycle.int8=1024", "compute.macs_per_cycle.int4=2048",
            "compute.macs_per_cycle.fp16=256", "compute.macs_per_cycle.binary=4096",
            "compute.vector.elements_per_cycle=32", "sram.size=2MiB")

#: pJ per event: (MAC, register per MAC, SRAM read per B, SRAM write per B, DRAM read per B,
#: DRAM write per B, leakage W), from the sources in the module docstring.
NN_DATAFLOW = dict(mac=1.0, reg_per_mac=3 * 1.0, sram_r=6 / 2, sram_w=6 / 2, dram_r=200 / 2,
                   dram_w=200 / 2, leak_w=0.0)
ZIGZAG = dict(mac=0.04, reg_per_mac=0.095 + 2 * 0.021, sram_r=416.16 / 256, sram_w=378.4 / 256,
              dram_r=700 / 8, dram_w=750 / 8, leak_w=0.0)

#: CACTI 8 KB at 28 nm, 0.035 pJ/bit read (docs/references.md B4), for the one-source comparison
CACTI_8KB_28NM_PJ_PER_BIT = 0.035


def counts(model: str) -> dict[str, float]:
    """edgesim's counts and parts for one inference of ``model`` on the peers' NPU."""
    row = run("npu_small", model, inputs=1, overrides=PEER_NPU).inferences.iloc[0]
    # the off-chip bytes read: the same run with writes free, its off-chip energy / read price
    hw = load_config("npu_small", list(PEER_NPU))
    reads_only = run("npu_small", model, inputs=1,
                     overrides=[*PEER_NPU, "offchip.write_energy=0 pJ/bit"]).inferences.iloc[0]
    dram_r = round(reads_only.energy_offchip_j / (8 * hw.offchip_read_pj_per_bit * 1e-12))
    dram_total = int(row.weight_dram_bytes + row.act_dram_bytes)
    return dict(hw=hw, macs=int(row.macs), sram_r=int(row.sram_read_bytes),
                sram_w=int(row.sram_write_bytes), dram_r=dram_r, dram_w=dram_total - dram_r,
                latency_s=float(row.latency_s), mac_j=float(row.energy_mac_j),
                array_j=float(row.energy_array_j), sram_j=float(row.energy_sram_j),
                offchip_j=float(row.energy_offchip_j), leak_j=float(row.energy_leak_j))


def priced(c: dict, k: dict) -> dict[str, float]:
    """The parts of ``c``'s counts at a peer's constants ``k``, in joules."""
    pj = 1e-12
    return dict(mac=c["macs"] * k["mac"] * pj, array=c["macs"] * k["reg_per_mac"] * pj,
                sram=(c["sram_r"] * k["sram_r"] + c["sram_w"] * k["sram_w"]) * pj,
                offchip=(c["dram_r"] * k["dram_r"] + c["dram_w"] * k["dram_w"]) * pj,
                leak=k["leak_w"] * c["latency_s"])


def _ratio(a: float, b: float) -> str:
    return "-" if b == 0 else f"{a / b:.2f}x"


def table(model: str) -> str:
    """The README's table: per part, edgesim's unit cost and energy against each peer's."""
    c = counts(model)
    hw = c["hw"]
    es = dict(mac=c["mac_j"], array=c["array_j"], sram=c["sram_j"], offchip=c["offchip_j"],
              leak=c["leak_j"])
    nd, zz = priced(c, NN_DATAFLOW), priced(c, ZIGZAG)
    es["on-chip"] = es["mac"] + es["array"] + es["sram"] + es["leak"]
    for p in (nd, zz):
        p["on-chip"] = p["mac"] + p["array"] + p["sram"] + p["leak"]
    for p in (es, nd, zz):
        p["total"] = p["on-chip"] + p["offchip"]
    reg = c["array_j"] / c["macs"] * 1e12
    sram_pb = c["sram_j"] / (c["sram_r"] + c["sram_w"]) * 1e12
    unit = {
        "mac": (f"{hw.mac_pj['int8']:.3f} pJ/MAC", "1 pJ/MAC", "0.04 pJ/MAC"),
        "array": (f"{reg:.3f} pJ/MAC", "3 pJ/MAC", "0.137 pJ/MAC"),
        "sram": (f"{sram_pb:.2f} pJ/B", "3 pJ/B", "1.63 r / 1.48 w pJ/B"),
        "offchip": (f"{hw.offchip_read_pj_per_bit * 8:.0f} pJ/B", "100 pJ/B",
                    "87.5 r / 93.75 w pJ/B"),
        "leak": (f"{hw.sram_leak_w * 1e3:g} mW", "0", "0"),
        "on-chip": ("mac + array + sram + leak", "", ""),
        "total": ("", "", ""),
    }
    lines = [
        f"{model}, 1 inference on npu_small as 32x32 (1024 MACs/cycle), 2 MiB SRAM, "
        f"{hw.node_nm:g} nm / {hw.vdd_v:g} V: {c['macs']:,} MACs, SRAM {c['sram_r']:,} B read "
        f"+ {c['sram_w']:,} B written, off-chip {c['dram_r']:,} B read + {c['dram_w']:,} B "
        "written; every column prices these same counts.",
        "",
        "| part | edgesim unit | nn-dataflow unit | ZigZag unit | edgesim mJ | nn-dataflow mJ "
        "| ZigZag mJ | edgesim / nn-dataflow | edgesim / ZigZag |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for part in ("mac", "array", "sram", "offchip", "leak", "on-chip", "total"):
        u = unit[part]
        lines.append(f"| {part} | {u[0]} | {u[1]} | {u[2]} | {es[part] * 1e3:.3f} | "
                     f"{nd[part] * 1e3:.3f} | {zz[part] * 1e3:.3f} | "
                     f"{_ratio(es[part], nd[part])} | {_ratio(es[part], zz[part])} |")
    cacti45 = CACTI_8KB_28NM_PJ_PER_BIT * 8 / energy_scale(45, 0.9, 28, 0.9)
    lines += ["", f"One SRAM source: Horowitz ISSCC'14 8 KB = 1.25 pJ/B at 45 nm / 0.9 V; CACTI "
              f"8 KB 28 nm {CACTI_8KB_28NM_PJ_PER_BIT} pJ/bit = {cacti45:.3f} pJ/B at 45 nm "
              f"(x 1/energy_scale(45, 0.9, 28, 0.9)): Horowitz / CACTI = {1.25 / cacti45:.2f}x."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dense_r50")
    args = ap.parse_args(argv)
    sys.stdout.write(table(args.model) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
