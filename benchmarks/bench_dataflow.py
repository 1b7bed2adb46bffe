"""Time to map and cost VGG-16 (batch 16) with the full mapping search, all four dataflows
and the best-per-layer choice, on the PE array of ``pe_dataflow_survey`` (256 PEs).

Reference in the same process: one jitted float32 matmul of VGG-16's FC6 shape
(4096 x 25088 @ 25088 x 16), so the figure can be read as a ratio on other machines.
Writes ``benchmarks/results/dataflow.json``. Run: ``python benchmarks/bench_dataflow.py``.
"""

import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp

import nds
from nds.dataflow import DATAFLOWS, PEArray, map_layer, vgg16


def main() -> dict:
    hw = nds.load_card("pe_dataflow_survey", PEArray)
    layers = vgg16(16)
    per_df = {}
    t_all = time.perf_counter()
    energies = {}
    for df in DATAFLOWS:
        t0 = time.perf_counter()
        ms = [map_layer(L, df, hw, equal_area=True) for L in layers]
        per_df[df] = time.perf_counter() - t0
        energies[df] = sum(m.energy for m in ms)
    total = time.perf_counter() - t_all

    a = jnp.ones((4096, 25088), jnp.float32)
    b = jnp.ones((25088, 16), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(10):
        f(a, b).block_until_ready()
    ref = (time.perf_counter() - t0) / 10

    res = {
        "benchmark": "map and cost VGG-16 (16 layers, batch 16) with the mapping search",
        "seconds_per_dataflow": per_df,
        "seconds_all_four_dataflows": total,
        "reference_matmul_s": ref,
        "ratio_all_to_reference": total / ref,
        "energy_normalized": energies,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
    }
    out = pathlib.Path(__file__).parent / "results" / "dataflow.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
