"""Gradient-based hardware/network co-design under an energy budget, against a grid search.

An MLP (64-32-10) on scikit-learn's 8x8 digits runs on RRAM crossbars (``rram_generic``:
~1 µS absolute programming error, 2 % C2C read noise, 32 levels) with 6-bit DACs and a 4-bit
ADC. Two hardware parameters set accuracy and energy:

* ``g_max`` (the top of the conductance window, i.e. the weight-to-conductance scale): a
  larger window makes the absolute programming error smaller relative to the signal, and
  costs read energy (``v_read² g t_read`` per device and read, from ``nds.cost``);
* the ADC range ``y_range`` (one value for every layer): too small clips the column sums,
  too large wastes the 16 codes of the 4-bit ADC. It costs no energy.

The energy budget is the compute energy per inference (``nds.cost``: the crossbars'
conversions, array reads and partial-sum adds; the memory traffic, 6.9 nJ here, is the same
for every design point and reported apart) of the card at ``--budget-fraction`` of its
``g_max``; since that energy grows monotonically with ``g_max`` the budget is the bound
``g_max <= g_budget`` (bisection on ``nds.cost``).

* Grid search: ``y_range`` x ``g_max`` (within the budget) with the digitally trained
  weights; each point's accuracy over ``--chips`` chips (the same chip keys for every
  point: common random numbers).
* Co-design by gradient: ``log y_range`` and ``log g_max`` are trained jointly with the
  weights by Adam through the same forward path (a fresh chip every step, straight-through
  rounding, learned-step-size gradient for the ADC range), with ``g_max`` projected onto the
  budget after every step. Also the hardware-only variant (weights frozen: the like-for-like
  comparison with the grid, which does not retrain weights either).

Outputs ``OUT/codesign.json`` (every grid point, both co-design results, the budget, the
printed tables and the timing) and ``OUT/codesign.png`` (accuracy against energy).

Usage: ``python examples/codesign.py [OUT] [--quick] [--chips 16] [--budget-fraction 0.5]``.
Default: 1500 digital steps, a 9 x 8 grid, 600 co-design steps, 16 chips; ``--quick``: 300
digital steps, a 5 x 4 grid, 150 co-design steps, 4 chips. Run time on 2 idle cores: about
1 min 10 s; ``--quick``: about 20 s (measured while other jobs shared the machine).
"""

from __future__ import annotations

import os
import time

# compilation dominates this small example (each jitted function runs for well under a
# second): skip XLA's CPU code optimizations, as the test suite does; results are unchanged
# up to float rounding. An explicit setting in XLA_FLAGS wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nds
from nds import streams
from nds.console import Column, Reporter, example_parser
from nds.nn import analog_layers
from nds.sensitivity import surrogate_loss


def set_hw(model, y_range, g_max):
    """``model`` with every analog layer's ADC range and g_max replaced (arrays allowed)."""
    ls = lambda m: analog_layers(m)
    model = eqx.tree_at(lambda m: [l.tile.adc.y_range for l in ls(m)], model, [y_range] * len(ls(model)))
    return eqx.tree_at(lambda m: [l.tile.cell.g_max for l in ls(m)], model, [g_max] * len(ls(model)))


_ENERGY: dict[float, float] = {}


#: the energy the hardware parameters act on: the crossbars' conversions, array reads and
#: digital partial-sum adds (memory traffic, the same for every design point, is reported apart)
CORE = ("conversion", "array", "compute")


def energy(model, g_max: float) -> float:
    """Compute energy per inference (J, categories :data:`CORE`) of ``model`` at ``g_max``
    (S), from ``nds.cost`` (cached)."""
    g = float(g_max)
    if g not in _ENERGY:
        e = nds.cost(set_hw(model, 12.0, g), input_shape=(64,)).total.energy_j
        _ENERGY[g] = float(sum(e.get(c, 0.0) for c in CORE))
    return _ENERGY[g]


def energy_total(model, g_max: float) -> float:
    """Whole energy per inference (J) including memory traffic, from ``nds.cost``."""
    return nds.cost(set_hw(model, 12.0, float(g_max)), input_shape=(64,)).energy_j


def g_for_budget(model, budget: float, lo: float, hi: float) -> float:
    """Largest g_max in [lo, hi] whose energy is within ``budget`` (bisection to 1e-6
    relative; energy grows monotonically with g_max)."""
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if energy(model, mid) <= budget else (lo, mid)
    return lo


def main(argv=None):
    ap = example_parser(__doc__)
    ap.add_argument("--chips", type=int, default=None, help="chips per accuracy estimate (default 16; --quick: 4)")
    ap.add_argument("--budget-fraction", type=float, default=0.5,
                    help="energy budget = energy at this fraction of the card's g_max")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-hardware-only", action="store_true",
                    help="skip the hardware-only co-design (weights frozen)")
    args = ap.parse_args(argv)
    with Reporter("codesign", out=args.out, format=args.format) as ui:
        return _run(ui, args)


def _run(ui: Reporter, args) -> dict:
    quick = args.quick
    out = ui.out
    chips = args.chips or (4 if quick else 16)
    k_net, k_fit, k_eval, k_cd, k_hw = streams(jax.random.key(args.seed), "net", "fit", "eval", "codesign",
                                               "hw_only")

    ds = nds.datasets.load_dataset("digits", seed=args.seed)
    x = jnp.asarray(ds.x_train).reshape(len(ds.y_train), -1)
    y = jnp.asarray(ds.y_train)
    xt = jnp.asarray(ds.x_test).reshape(len(ds.y_test), -1)
    yt = jnp.asarray(ds.y_test)
    net = nds.nn.models.mlp((64, 32, 10), key=k_net)
    fit_steps = 300 if quick else 1500
    with ui.part("train the MLP digitally", fit_steps) as update:
        net, _ = nds.train.fit(net, x, y, key=k_fit, steps=fit_steps, batch_size=64, progress=update)
        acc_digital = float(nds.train.accuracy(net, xt, yt, key=None))
    ui.log(f"  digital MLP: {100 * acc_digital:.2f}% test accuracy")

    card = nds.load_card("rram_generic", nds.cells.RRAM)
    tile = nds.tiles.CrossbarTile(cell=card, dac=nds.converters.UniformDAC(bits=6),
                                  adc=nds.converters.UniformADC(bits=4, y_range=12.0))
    model = nds.analogize(net, tile)
    g_card = float(card.g_max)
    g_lo = 2.0 * float(card.g_min)
    with ui.part("energy budget (bisection on nds.cost)"):
        budget = energy(model, args.budget_fraction * g_card)
        g_budget = g_for_budget(model, budget, g_lo, g_card)
        memory_j = energy_total(model, g_budget) - energy(model, g_budget)
    ui.log(f"  compute-energy budget {budget * 1e9:.3f} nJ per inference -> g_max <= {g_budget * 1e6:.2f} uS "
           f"(memory traffic adds {memory_j * 1e9:.2f} nJ)")

    chip_keys = jax.random.split(k_eval, chips)

    @eqx.filter_jit
    def accuracy(m, y_range, g_max):
        mm = set_hw(m, y_range, g_max)

        def one(k):
            kp, kr = streams(k, "program", "read")
            return nds.train.accuracy(nds.program(mm, key=kp), xt, yt, key=kr)

        return jax.lax.map(one, chip_keys)

    def evaluate(m, y_range, g_max):
        a = np.asarray(accuracy(m, jnp.asarray(y_range), jnp.asarray(g_max)), np.float64)
        return {"y_range": float(y_range), "g_max_s": float(g_max), "energy_j": energy(model, float(g_max)),
                "accuracy": float(a.mean()), "accuracy_se": float(a.std(ddof=1) / np.sqrt(len(a))),
                "accuracy_chips": a.tolist()}

    # ------------------------------------------------------------------ grid search
    y_grid = np.geomspace(1.0, 16.0, 5 if quick else 9)
    g_grid = np.linspace(g_lo, g_budget, 4 if quick else 8)
    grid = []
    n_grid = len(y_grid) * len(g_grid)
    with ui.part(f"grid search over {n_grid} points, {chips} chips each", n_grid, "points") as update:
        for yr in y_grid:
            for gm in g_grid:
                grid.append(evaluate(model, yr, gm))
                update(len(grid))
    best = max(grid, key=lambda r: r["accuracy"])

    # ------------------------------------------------------------------ co-design by gradient
    steps = 150 if quick else 600
    log_gb, log_glo = float(np.log(g_budget)), float(np.log(g_lo))

    def codesign(train_weights: bool, key, update):
        spec = nds.train.weights_filter(model) if train_weights else jax.tree_util.tree_map(lambda _: False, model)
        w, static = eqx.partition(model, spec)
        hw = {"log_y": jnp.log(jnp.asarray(12.0)), "log_g": jnp.asarray(log_gb)}
        params = (w, hw)
        opt = optax.multi_transform({"w": optax.adam(1e-3), "hw": optax.adam(0.05)}, ("w", {"log_y": "hw", "log_g": "hw"}))
        state = opt.init(params)

        @eqx.filter_jit
        def step(params, state, xb, yb, k):
            def loss(p):
                w, hw = p
                m = set_hw(eqx.combine(w, static), jnp.exp(hw["log_y"]), jnp.exp(hw["log_g"]))
                return surrogate_loss(m, xb, yb, key=k)[0]

            l, g = eqx.filter_value_and_grad(loss)(params)
            upd, state = opt.update(g, state, params)
            params = eqx.apply_updates(params, upd)
            w, hw = params  # project onto the energy budget
            hw = {"log_y": hw["log_y"], "log_g": jnp.clip(hw["log_g"], log_glo, log_gb)}
            return (w, hw), state, l

        trace = []
        for i in range(steps):
            key, kb, ks = jax.random.split(key, 3)
            idx = jax.random.choice(kb, x.shape[0], (64,), replace=False)
            params, state, l = step(params, state, x[idx], y[idx], ks)
            if i % 25 == 0 or i == steps - 1:
                hw = params[1]
                trace.append({"step": i, "loss": float(l), "y_range": float(jnp.exp(hw["log_y"])),
                              "g_max_s": float(jnp.exp(hw["log_g"]))})
            update(i + 1)
        w, hw = params
        m = eqx.combine(w, static)
        yr, gm = float(jnp.exp(hw["log_y"])), float(jnp.exp(hw["log_g"]))
        return m, yr, gm, trace

    t0 = time.time()
    with ui.part("co-design: weights + ADC range + g_max", steps) as update:
        m_joint, yr, gm, tr_joint = codesign(True, k_cd, update)
        joint = evaluate(m_joint, yr, gm) | {"trace": tr_joint, "seconds": time.time() - t0}
    hw_only = None
    if not args.skip_hardware_only:
        t0 = time.time()
        with ui.part("co-design: hardware only (weights frozen)", steps) as update:
            m_hw, yr, gm, tr_hw = codesign(False, k_hw, update)
            hw_only = evaluate(m_hw, yr, gm) | {"trace": tr_hw, "seconds": time.time() - t0}

    res = {"dataset": "digits", "n_test": int(len(yt)), "chips": chips, "quick": quick,
           "digital_accuracy": acc_digital, "budget_j": budget, "g_max_budget_s": g_budget,
           "budget_fraction": args.budget_fraction, "energy_categories": list(CORE),
           "memory_energy_j": memory_j, "grid": grid, "grid_best": best,
           "codesign_joint": joint, "codesign_hardware_only": hw_only,
           "wall_s": ui.elapsed}

    cols = [Column("design"), Column("ADC range", "num"), Column("g_max uS", "num"), Column("energy", "energy"),
            Column("accuracy", "pct"), Column("SE", "pp")]
    rows = [["digital", None, None, None, acc_digital, None],
            [f"best of {len(grid)} grid points", best["y_range"], 1e6 * best["g_max_s"], best["energy_j"],
             best["accuracy"], best["accuracy_se"]]]
    if hw_only is not None:
        rows.append(["co-design, hardware only", hw_only["y_range"], 1e6 * hw_only["g_max_s"], hw_only["energy_j"],
                     hw_only["accuracy"], hw_only["accuracy_se"]])
    rows.append(["co-design, weights + hardware", joint["y_range"], 1e6 * joint["g_max_s"], joint["energy_j"],
                 joint["accuracy"], joint["accuracy_se"]])
    ui.table(f"co-design under {fmt_nj(budget)} compute energy per inference: MLP on 8x8 digits, RRAM, "
             f"4-bit ADC, {chips} chips", cols, rows, key="designs",
             note=f"energy: compute per inference (conversion + array + adds; memory adds {fmt_nj(memory_j)}); "
                  "SE: standard error over chips, percentage points")
    ui.table(f"grid search with the digital weights ({len(grid)} points)",
             [Column("ADC range", "num"), Column("g_max uS", "num"), Column("energy", "energy"),
              Column("accuracy", "pct"), Column("SE", "pp")],
             [[r["y_range"], 1e6 * r["g_max_s"], r["energy_j"], r["accuracy"], r["accuracy_se"]] for r in grid],
             key="grid")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    sc = ax.scatter([r["energy_j"] * 1e9 for r in grid], [100 * r["accuracy"] for r in grid],
                    c=[np.log2(r["y_range"]) for r in grid], cmap="viridis", s=28, label="grid (digital weights)")
    fig.colorbar(sc, ax=ax, label="log2 ADC range")
    for r, mk, lab in ((joint, "*", "co-design: weights + hardware"), (hw_only, "D", "co-design: hardware only")):
        if r is None:
            continue
        ax.errorbar([r["energy_j"] * 1e9], [100 * r["accuracy"]], yerr=[100 * r["accuracy_se"]], fmt=mk, ms=11,
                    color="C3" if mk == "*" else "C1", label=lab)
    ax.axvline(budget * 1e9, color="gray", ls="--", lw=1, label="energy budget")
    ax.set_xlabel("compute energy per inference (nJ, nds.cost: conversion + array + adds)")
    ax.set_ylabel(f"test accuracy (%), mean of {chips} chips")
    ax.set_title("MLP on 8x8 digits, RRAM crossbar, 4-bit ADC (error bars: ±1 SE over chips)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.25, 1.0))
    fig.tight_layout()
    fig.savefig(out / "codesign.png", dpi=120)
    plt.close(fig)
    ui.finish(res)
    return res


def fmt_nj(j: float) -> str:
    return f"{j * 1e9:.3f} nJ"


if __name__ == "__main__":
    main()
