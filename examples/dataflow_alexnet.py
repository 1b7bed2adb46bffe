"""AlexNet on a 256-PE spatial array: the survey's dataflow comparison (WS, OS, NLR, RS at
equal area, batch 16) and a TETRIS-like 3D-DRAM design against its 2D-DRAM baseline.

Usage: ``python examples/dataflow_alexnet.py [plot.png]`` (default ``dataflow_alexnet.png``).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

import nds
from nds.dataflow import (DATAFLOWS, LEVELS, NearMemorySystem, PEArray, alexnet,
                          compare_systems, map_layer)
from nds.memory import DRAM2D, HMC


def main(plot_path: str = "dataflow_alexnet.png") -> None:
    console = Console()
    hw = nds.load_card("pe_dataflow_survey", PEArray)
    layers = alexnet(16)
    runs = {df: [map_layer(L, df, hw, equal_area=True) for L in layers] for df in DATAFLOWS}

    t = Table(title="AlexNet, batch 16, 256 PEs, equal area (energy in ALU-op units)")
    for col in ("dataflow", "RF B/PE", "buffer kB", "CONV", "FC", "CONV / RS", "FC / RS", "CONV share"):
        t.add_column(col, justify="right")
    rs_c = sum(m.energy for m in runs["RS"][:5])
    rs_f = sum(m.energy for m in runs["RS"][5:])
    for df in DATAFLOWS:
        c = sum(m.energy for m in runs[df][:5])
        f = sum(m.energy for m in runs[df][5:])
        h = hw.equal_area(df)
        t.add_row(df, f"{h.rf_bytes:.0f}", f"{h.buffer_bytes / 1e3:.0f}", f"{c:.3e}", f"{f:.3e}",
                  f"{c / rs_c:.2f}x", f"{f / rs_f:.2f}x", f"{c / (c + f):.0%}")
    console.print(t)
    console.print("survey: RS 1.4-2.5x less energy on CONV, ~1.3x on FC; CONV ~80 % of the total")

    b = Table(title="Energy breakdown by level (share of CONV / FC energy)")
    b.add_column("dataflow")
    for lv in LEVELS:
        b.add_column(lv, justify="right")
    for df in DATAFLOWS:
        for name, sl in (("CONV", slice(0, 5)), ("FC", slice(5, 8))):
            by = {lv: sum(m.energy_by_level()[lv] for m in runs[df][sl]) for lv in LEVELS}
            tot = sum(by.values())
            b.add_row(f"{df} {name}", *[f"{by[lv] / tot:.0%}" for lv in LEVELS])
    console.print(b)

    pe3 = nds.load_card("pe_tetris_vault", PEArray)
    pe2 = nds.load_card("pe_tetris_2d", PEArray)
    tet = NearMemorySystem("TETRIS (16 vaults, 14x14 PEs each)", pe3, nds.load_card("hmc_gen1", HMC), 16)
    x = Table(title="TETRIS-like 3D design vs 2D baselines, AlexNet batch 16, RS")
    cats = ("compute", "onchip_memory", "offchip", "noc", "static")
    short = {"compute": "MAC", "onchip_memory": "on-chip", "offchip": "DRAM", "noc": "NoC", "static": "static"}
    for col in ("2D baseline", "speed-up", "energy ratio", *(f"{short[c]} mJ 2D/3D" for c in cats)):
        x.add_column(col, justify="right")
    bases = [NearMemorySystem("L-1 (1 LPDDR3 ch)", pe2, nds.load_card("mem_lpddr3", DRAM2D), 1)]
    for card, label in (("mem_lpddr3", "4 LPDDR3 ch"), ("mem_ddr3", "4 DDR3 ch")):
        bases.append(NearMemorySystem(f"4 engines, {label}", pe2, nds.load_card(card, DRAM2D, channels=4), 4))
    for base in bases:
        r = compare_systems(layers, base, tet)
        b, o = r["baseline_energy_by_category_j"], r["other_energy_by_category_j"]
        x.add_row(base.name, f"{r['throughput_ratio']:.2f}x", f"{r['energy_ratio']:.2f}x",
                  *(f"{1e3 * b[c]:.1f}/{1e3 * o[c]:.1f}" for c in cats))
    console.print(x)
    console.print("TETRIS paper: 4.1x throughput, 1.5x less energy than a four-channel LPDDR3 design; "
                  "its Fig. 8 as its authors check it: T-16 vs L-1 speed-up 12.25x +-20 %, energy -30 % or more")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (name, sl) in zip(axes, (("CONV", slice(0, 5)), ("FC", slice(5, 8)))):
        bottom = [0.0] * len(DATAFLOWS)
        for lv in LEVELS:
            vals = [sum(m.energy_by_level()[lv] for m in runs[df][sl]) for df in DATAFLOWS]
            ax.bar(DATAFLOWS, vals, bottom=bottom, label=lv)
            bottom = [a + v for a, v in zip(bottom, vals)]
        ax.set_title(f"AlexNet {name} layers, batch 16")
        ax.set_ylabel("energy (ALU-op units)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(plot_path, dpi=120)
    console.print(f"plot written to {plot_path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dataflow_alexnet.png")
