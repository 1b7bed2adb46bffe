"""Speed of the exact IR-drop crossbar solve (nds.arrays._ir_drop).

Run: ``python benchmarks/bench_ir_drop.py``. Writes ``benchmarks/results/ir_drop.json`` and
prints a table. All times are medians of repeated runs after a warm-up (compilation
excluded), measured in this process, with ``block_until_ready``; ratios are to references
run here: a plain jitted ``v @ g`` of the same shapes, SciPy's sparse direct solve of the
full nodal system (float64) and ngspice on the same netlist.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as spla

jax.config.update("jax_enable_x64", True)  # for the float64 accuracy reference only;
# every timed array below is explicitly float32

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from _spice import crossbar_netlist, crossbar_nodal_system, run_op  # noqa: E402

from nds.arrays._ir_drop import (  # noqa: E402
    crossbar_transfer,
    crossbar_transfer_first_order,
)

ROWS = COLS = 256
BATCH = 1024
SPICE_N = 64
WIRES = dict(r_row=1.0, r_col=1.0, r_in=0.0, r_out=0.0)  # Ω per segment
WIRES_POS = dict(r_row=1.0, r_col=1.0, r_in=1e-3, r_out=1e-3)  # nodal form needs r > 0


MIN_TIMES: dict = {}  # best-of, recorded beside the medians (shared 2-core machines are noisy)


def median_time(fn, *args, repeats=7, warmup=1, name=None):
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    if name:
        MIN_TIMES[name] = float(np.min(ts))
    return float(np.median(ts))


def wall(fn, repeats=3):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main():
    rng = np.random.default_rng(0)
    g64 = rng.uniform(1e-6, 1e-4, (ROWS, COLS))
    v64 = rng.uniform(0.0, 0.3, (BATCH, ROWS))
    g = jnp.asarray(g64, jnp.float32)
    v = jnp.asarray(v64, jnp.float32)
    res: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
        "shape": [ROWS, COLS],
        "batch": BATCH,
        "dtype": "float32",
        "wires_ohm": WIRES,
    }

    # --- per-chip preparation and the MVM -------------------------------------------
    prep = jax.jit(lambda g: crossbar_transfer(g, **WIRES))
    M = prep(g)
    t_prep = median_time(prep, g, repeats=5, name="prep_exact_s")
    mvm = jax.jit(lambda v, m: v @ m)
    t_ideal = median_time(mvm, v, g, repeats=21, name="mvm_ideal_s")
    t_ir = median_time(mvm, v, M, repeats=21, name="mvm_ir_drop_prepared_s")
    full = jax.jit(lambda g, v: v @ crossbar_transfer(g, **WIRES))
    t_full = median_time(full, g, v, repeats=3, name="unprepared_prep_plus_mvm_s")
    prep1 = jax.jit(lambda g: crossbar_transfer_first_order(g, **WIRES))
    t_prep1 = median_time(prep1, g, repeats=21)
    res["mvm_ideal_s"] = t_ideal
    res["mvm_ir_drop_prepared_s"] = t_ir
    res["mvm_ratio_to_ideal"] = t_ir / t_ideal
    res["prep_exact_s"] = t_prep
    res["prep_first_order_s"] = t_prep1
    res["unprepared_prep_plus_mvm_s"] = t_full
    res["unprepared_ratio_to_ideal"] = t_full / t_ideal
    res["per_vector_amortized_s"] = t_full / BATCH

    # --- accuracy: float32 vs float64, first order vs exact --------------------------
    print("timing done; accuracy...", flush=True)
    if True:
        acc = {}
        g_d = jnp.asarray(g64)
        v_d = jnp.asarray(v64[:64])
        for r in (0.01, 0.1, 1.0):
            w = dict(r_row=r, r_col=r, r_in=0.0, r_out=0.0)
            exact = v_d @ crossbar_transfer(g_d, **w)
            first = v_d @ crossbar_transfer_first_order(g_d, **w)
            ideal = v_d @ g_d
            acc[f"r={r}"] = {
                "ir_drop_rel": float(jnp.linalg.norm(ideal - exact) / jnp.linalg.norm(exact)),
                "first_order_rel_err": float(
                    jnp.linalg.norm(first - exact) / jnp.linalg.norm(exact)
                ),
            }
        exact = v_d @ crossbar_transfer(g_d, **WIRES)
        f32 = jnp.asarray(v64[:64], jnp.float32) @ M
        acc["float32_rel_err"] = float(jnp.linalg.norm(f32 - exact) / jnp.linalg.norm(exact))
        res["accuracy"] = acc

    print("scipy...", flush=True)
    # --- SciPy sparse direct (float64) on the full nodal system, 256x256 ----------------
    G, B = crossbar_nodal_system(g64, **WIRES_POS)
    Gc = G.tocsc()
    t_sp = wall(lambda: spla.spsolve(Gc, B @ v64[0]))
    lu = spla.splu(Gc)
    t_splu = wall(lambda: spla.splu(Gc))
    rhs = (B @ v64[:64].T)
    t_lu_solve = wall(lambda: lu.solve(rhs)) / 64
    res["scipy_spsolve_per_vector_s"] = t_sp
    res["scipy_splu_factor_s"] = t_splu
    res["scipy_splu_solve_per_vector_s"] = t_lu_solve
    res["speedup_vs_spsolve_per_vector"] = t_sp / res["per_vector_amortized_s"]
    res["speedup_vs_splu_solve_per_vector"] = t_lu_solve / res["per_vector_amortized_s"]
    res["prep_vs_splu_factor"] = t_prep / t_splu

    print("ngspice...", flush=True)
    # --- ngspice and ours on 64x64 -----------------------------------------------------
    gs = g64[:SPICE_N, :SPICE_N]
    vs = v64[0, :SPICE_N]
    lines, names = crossbar_netlist(gs, vs, **WIRES)
    t_spice = wall(lambda: run_op(lines, currents=names), repeats=1)
    gs32 = jnp.asarray(gs, jnp.float32)
    vs32 = jnp.asarray(vs, jnp.float32)
    one = jax.jit(lambda g, v: v @ crossbar_transfer(g, **WIRES))
    t_one = median_time(one, gs32, vs32, repeats=11)
    Gs, Bs = crossbar_nodal_system(gs, **WIRES_POS)
    Gsc = Gs.tocsc()
    t_sp64 = wall(lambda: spla.spsolve(Gsc, Bs @ vs))
    res["n64"] = {
        "ngspice_op_s": t_spice,
        "scipy_spsolve_s": t_sp64,
        "nds_single_vector_s": t_one,
        "speedup_vs_ngspice": t_spice / t_one,
        "speedup_vs_spsolve": t_sp64 / t_one,
    }

    res["min_times_s"] = MIN_TIMES
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "ir_drop.json"), "w") as f:
        json.dump(res, f, indent=2)

    def row(name, val, unit="s"):
        print(f"  {name:<58s} {val:12.4g} {unit}")

    print(f"IR-drop crossbar, {ROWS}x{COLS}, batch {BATCH}, float32, wires {WIRES}")
    row("plain jitted v @ g", t_ideal)
    row("IR-drop MVM with prepared transfer matrix", t_ir)
    row("  ratio to v @ g", t_ir / t_ideal, "x")
    row("per-chip preparation (exact transfer matrix)", t_prep)
    row("  best of repeats", MIN_TIMES["prep_exact_s"])
    row("per-chip preparation (first order)", t_prep1)
    row("unprepared: preparation + MVM of the batch", t_full)
    row("  ratio to v @ g", t_full / t_ideal, "x")
    row("amortized time per vector (batch 1024, incl. preparation)", t_full / BATCH)
    row("SciPy spsolve per vector (float64, full nodal system)", t_sp)
    row("SciPy splu factorisation (float64)", t_splu)
    row("SciPy splu solve per vector (float64)", t_lu_solve)
    row("  speedup vs spsolve per vector", t_sp / (t_full / BATCH), "x")
    row("  speedup vs splu solve per vector", t_lu_solve / (t_full / BATCH), "x")
    for k, a in acc.items():
        if isinstance(a, dict):
            row(f"IR drop |ideal-exact|/|exact| at {k} Ω", a["ir_drop_rel"], "")
            row(f"first order |first-exact|/|exact| at {k} Ω", a["first_order_rel_err"], "")
    row("float32 relative error vs float64", acc["float32_rel_err"], "")
    print(f"{SPICE_N}x{SPICE_N}, one vector:")
    row("ngspice .op", t_spice)
    row("SciPy spsolve", t_sp64)
    row("nds (transfer + matvec, float32)", t_one)
    row("  speedup vs ngspice", t_spice / t_one, "x")
    row("  speedup vs spsolve", t_sp64 / t_one, "x")


if __name__ == "__main__":
    main()
