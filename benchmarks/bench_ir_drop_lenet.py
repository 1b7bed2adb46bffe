"""LeNet-5 Monte Carlo over 32 chips with exact IR drop, on this machine's CPU cores.

Each chip: program every layer (RRAM ``rram_wan2022`` card: programming error; 256×256
arrays with 2.5 Ω wire segments, exact per-array IR-drop transfer matrices for G+ and G−),
then classify 1000 MNIST test images with read noise. The same run with ideal wires is the
reference in this process. Times: the first call (compile + run) and a second, warm call
(run only), both for all 32 chips in one ``nds.monte_carlo`` (chips vmapped in batches of
``BATCH``).

Run: ``python benchmarks/bench_ir_drop_lenet.py`` → ``benchmarks/results/ir_drop_lenet.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp

import nds
import nds.datasets
from nds.arrays._crossbar import ResistiveCrossbar, ResistiveWires
from nds.tiles import CrossbarTile

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_CHIPS, BATCH, N_TEST, ROWS, R_WIRE = 32, 8, 1000, 256, 2.5


def main():
    ds = nds.datasets.load_dataset("mnist", n_train=4000, n_test=N_TEST)
    x, y, xt, yt = map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    model = nds.nn.lenet5(key=jax.random.key(0))
    model, _ = nds.train.fit(model, x, y, key=jax.random.key(1), steps=300, batch_size=64)
    card = nds.load_card("rram_wan2022", nds.cells.RRAM)
    res = {"num_chips": NUM_CHIPS, "batch_size": BATCH, "n_test": N_TEST, "array": [ROWS, ROWS],
           "r_wire_ohm": R_WIRE, "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}
    for name, wires in (("ideal_wires", None),
                        ("exact_ir_drop", ResistiveWires(r_row=jnp.asarray(R_WIRE), r_col=jnp.asarray(R_WIRE)))):
        arr = ResistiveCrossbar(rows=ROWS, cols=ROWS, **({} if wires is None else {"wires": wires}))
        am = nds.analogize(model, CrossbarTile(cell=card, array=arr))
        fn = lambda m, k: nds.train.accuracy(nds.program(m, key=k), xt, yt, key=jax.random.fold_in(k, 1))
        t0 = time.perf_counter()
        mc = nds.monte_carlo(fn, am, key=jax.random.key(2), num_chips=NUM_CHIPS, batch_size=BATCH)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        mc = nds.monte_carlo(fn, am, key=jax.random.key(2), num_chips=NUM_CHIPS, batch_size=BATCH)
        t_warm = time.perf_counter() - t0
        res[name] = {"first_call_s": t_first, "warm_s": t_warm, "warm_s_per_chip": t_warm / NUM_CHIPS,
                     "accuracy": mc.stats}
        print(f"{name}: first call {t_first:.1f} s, warm {t_warm:.1f} s ({t_warm / NUM_CHIPS:.2f} s/chip), "
              f"accuracy {mc.stats['mean']:.3f} ± {mc.stats['std']:.3f}")
    res["ratio_warm_ir_to_ideal"] = res["exact_ir_drop"]["warm_s"] / res["ideal_wires"]["warm_s"]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "ir_drop_lenet.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"ratio (warm, exact IR drop / ideal wires): {res['ratio_warm_ir_to_ideal']:.2f}")


if __name__ == "__main__":
    main()
