"""Compare the mapper with the published dataflow and TETRIS figures in survey_points.csv.
Prints model vs published; does not fit anything (the mapper has no fitted constants).
Run from the repository root: ``python calibration/dataflow/check_dataflow.py``."""

import csv
import pathlib

import nds
from nds.dataflow import DATAFLOWS, NearMemorySystem, PEArray, alexnet, compare_systems, map_layer
from nds.memory import DRAM2D, HMC

here = pathlib.Path(__file__).parent
pub = {r["quantity"]: (float(r["low"]), float(r["high"]), float(r["tol"]))
       for r in csv.DictReader(l for l in open(here / "survey_points.csv") if not l.startswith("#"))}
hw = nds.load_card("pe_dataflow_survey", PEArray)
layers = alexnet(16)
runs = {df: [map_layer(L, df, hw, equal_area=True) for L in layers] for df in DATAFLOWS}
conv = {df: sum(m.energy for m in runs[df][:5]) for df in DATAFLOWS}
fc = {df: sum(m.energy for m in runs[df][5:]) for df in DATAFLOWS}
model = {
    "rs_advantage_conv": {df: conv[df] / conv["RS"] for df in ("WS", "OS", "NLR")},
    "rs_advantage_fc": {df: fc[df] / fc["RS"] for df in ("WS", "OS", "NLR")},
    "conv_energy_share": {"RS": conv["RS"] / (conv["RS"] + fc["RS"])},
}
base = NearMemorySystem("2D", nds.load_card("pe_tetris_2d", PEArray),
                        nds.load_card("mem_lpddr3", DRAM2D, channels=4), 4)
tet = NearMemorySystem("3D", nds.load_card("pe_tetris_vault", PEArray), nds.load_card("hmc_gen1", HMC), 16)
r = compare_systems(layers, base, tet)
model["tetris_throughput_ratio"] = {"AlexNet": r["throughput_ratio"]}
model["tetris_energy_ratio"] = {"AlexNet": r["energy_ratio"]}
l1 = NearMemorySystem("L-1", nds.load_card("pe_tetris_2d", PEArray), nds.load_card("mem_lpddr3", DRAM2D), 1)
r1 = compare_systems(layers, l1, tet)
model["tetris_fig8_speedup"] = {"AlexNet": r1["throughput_ratio"]}
model["tetris_fig8_energy_ratio"] = {"AlexNet": r1["energy_ratio"]}
for q, (lo, hi, tol) in pub.items():
    for k, v in model[q].items():
        flag = "in band" if lo * (1 - tol) <= v <= hi * (1 + tol) else "OUT"
        print(f"{q:26s} {k:8s} model {v:6.2f}   published {lo:g}-{hi:g}   {flag}")
