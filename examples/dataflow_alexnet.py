"""AlexNet on a 256-PE spatial array: the survey's dataflow comparison (WS, OS, NLR, RS at
equal area, batch 16) and a TETRIS-like 3D-DRAM design against its 2D-DRAM baseline.

Run: ``python examples/dataflow_alexnet.py [OUT] [--quick]`` → ``OUT/dataflow_alexnet.json``,
``OUT/dataflow_alexnet.png``. The mapping search is analytical: ``--quick`` runs the same.
Run time on 2 idle cores: about 15 s; ``--quick`` about 15 s.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import nds
from nds.console import Column, Reporter, example_parser
from nds.dataflow import (DATAFLOWS, LEVELS, NearMemorySystem, PEArray, alexnet,
                          compare_systems, map_layer)
from nds.memory import DRAM2D, HMC


def main(argv=None) -> dict:
    args = example_parser(__doc__).parse_args(argv)
    with Reporter("dataflow_alexnet", out=args.out, format=args.format) as ui:
        return _run(ui)


def _run(ui: Reporter) -> dict:
    hw = nds.load_card("pe_dataflow_survey", PEArray)
    layers = alexnet(16)
    with ui.part("map AlexNet's 8 layers with WS, OS, NLR and RS", len(DATAFLOWS), "dataflows") as upd:
        runs = {}
        for df in DATAFLOWS:
            runs[df] = [map_layer(L, df, hw, equal_area=True) for L in layers]
            upd(len(runs))
    rs_c = sum(m.energy for m in runs["RS"][:5])
    rs_f = sum(m.energy for m in runs["RS"][5:])
    df_rows = []
    for df in DATAFLOWS:
        c = sum(m.energy for m in runs[df][:5])
        f = sum(m.energy for m in runs[df][5:])
        h = hw.equal_area(df)
        df_rows.append([df, h.rf_bytes, h.buffer_bytes / 1e3, c, f, c / rs_c, f / rs_f, 100 * c / (c + f)])
    ui.table("AlexNet, batch 16, 256 PEs, equal area (energy in ALU-op units)",
             [Column("dataflow"), Column("RF B/PE", "num"), Column("buffer kB", "num"), Column("CONV", "num"),
              Column("FC", "num"), Column("CONV/RS", "num"), Column("FC/RS", "num"), Column("CONV %", "num")],
             df_rows, key="dataflows",
             note="survey: RS 1.4-2.5x less energy on CONV, ~1.3x on FC; CONV ~80 % of the total")

    lv_rows = []
    for df in DATAFLOWS:
        for name, sl in (("CONV", slice(0, 5)), ("FC", slice(5, 8))):
            by = {lv: sum(m.energy_by_level()[lv] for m in runs[df][sl]) for lv in LEVELS}
            tot = sum(by.values())
            lv_rows.append([f"{df} {name}", *[100 * by[lv] / tot for lv in LEVELS]])
    ui.table("energy by level, % of the CONV or FC energy", [Column("dataflow")] + [Column(lv, "num") for lv in LEVELS],
             lv_rows, key="levels")

    pe3 = nds.load_card("pe_tetris_vault", PEArray)
    pe2 = nds.load_card("pe_tetris_2d", PEArray)
    tet = NearMemorySystem("TETRIS (16 vaults, 14x14 PEs each)", pe3, nds.load_card("hmc_gen1", HMC), 16)
    cats = ("compute", "onchip_memory", "offchip", "noc", "static")
    short = {"compute": "MAC", "onchip_memory": "on-chip", "offchip": "DRAM", "noc": "NoC", "static": "static"}
    bases = [NearMemorySystem("L-1 (1 LPDDR3 ch)", pe2, nds.load_card("mem_lpddr3", DRAM2D), 1)]
    for card, label in (("mem_lpddr3", "4 LPDDR3 ch"), ("mem_ddr3", "4 DDR3 ch")):
        bases.append(NearMemorySystem(f"4 engines, {label}", pe2, nds.load_card(card, DRAM2D, channels=4), 4))
    tet_rows, cmp = [], {}
    with ui.part("TETRIS against three 2D-DRAM baselines", len(bases), "baselines") as upd:
        for base in bases:
            r = compare_systems(layers, base, tet)
            cmp[base.name] = r
            b, o = r["baseline_energy_by_category_j"], r["other_energy_by_category_j"]
            tet_rows.append([base.name, r["throughput_ratio"], r["energy_ratio"], *(b[c] for c in cats),
                             *(o[c] for c in cats)])
            upd(len(cmp))
    ui.table("TETRIS-like 3D design against 2D baselines, AlexNet batch 16, RS",
             [Column("2D baseline"), Column("speed-up", "num"), Column("energy ratio", "num")]
             + [Column(f"{short[c]} 2D", "energy", False) for c in cats]
             + [Column(f"{short[c]} 3D", "energy", False) for c in cats],
             tet_rows, key="tetris",
             note="TETRIS paper: 4.1x throughput, 1.5x less energy than a four-channel LPDDR3 design; its Fig. 8 "
                  "as its authors check it: T-16 vs L-1 speed-up 12.25x +-20 %, energy -30 % or more. Energy by "
                  "category: --format markdown")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_path = ui.out / "dataflow_alexnet.png"
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
    plt.close(fig)
    res = {"dataflows": {df: {"conv_energy": r[3], "fc_energy": r[4]} for df, r in zip(DATAFLOWS, df_rows)},
           "tetris": cmp}
    ui.finish(res)
    return res


if __name__ == "__main__":
    main()
