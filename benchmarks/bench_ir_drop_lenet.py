"""LeNet-5 Monte Carlo over 100 chips × 1000 MNIST test images with exact IR drop, on this
machine's CPU cores, quiet and with the cores shared.

Each chip: program every layer (RRAM ``rram_wan2022`` card: programming error; 256×256
arrays with 2.5 Ω wire segments, exact per-array IR-drop transfer matrices for G+ and G−,
``ResistiveWires(fidelity="exact")``), then classify 1000 MNIST test images with read noise.
The same run with ideal wires is the reference in this process. For each: the first call
(compile + run) and a second, warm call (run only), both for all chips in one
``nds.monte_carlo`` (``BATCH`` chips per compiled call).

``--contend K`` repeats the warm calls while ``K`` busy processes (one pure-Python spin loop
each, a stand-in for the other work that shares the cores) run. Then, under the same
conditions, the exact-IR-drop path on ``--collapse-chips`` chips is timed twice: as
``nds.monte_carlo`` runs it (OpenBLAS, which JAX's CPU LAPACK calls go to, held to one
thread) and with OpenBLAS at its default thread count (what nds did before; its spinning
worker threads then fight XLA's pool and whatever else runs).

Run: ``python benchmarks/bench_ir_drop_lenet.py [--chips 100] [--contend 2]`` →
``benchmarks/results/ir_drop_lenet.json``. Wall times depend on the machine's load: compare
the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl

import nds
import nds.datasets
from nds._keys import streams
from nds.arrays._crossbar import ResistiveCrossbar, ResistiveWires
from nds.tiles import CrossbarTile

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, N_TEST, ROWS, R_WIRE = 8, 1000, 256, 2.5


def _spinners(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def _blas_unlimited_mc(fn, model, key, num_chips: int, batch: int) -> float:
    """The same chips through one jitted vmap per batch, OpenBLAS at its default thread
    count (nds before this change). Returns the warm wall time (s)."""
    run = jax.jit(jax.vmap(lambda k: fn(model, k)))
    keys = jax.random.split(key, num_chips)
    with threadpoolctl.threadpool_limits(limits=os.cpu_count(), user_api="blas"):
        jax.block_until_ready(run(keys[:batch]))
        t0 = time.perf_counter()
        for i in range(0, num_chips, batch):
            jax.block_until_ready(run(keys[i:i + batch]))
        return time.perf_counter() - t0


def _nds_mc_warm(fn, model, key, num_chips: int, cpu: list | None = None) -> tuple[float, nds.MonteCarloResult]:
    """Wall time of one ``nds.monte_carlo`` call (and its process CPU time appended to ``cpu``:
    user + system seconds of every thread, a figure that other processes' load inflates far
    less than the wall time)."""
    t0, c0 = time.perf_counter(), time.process_time()
    mc = nds.monte_carlo(fn, model, key=key, num_chips=num_chips, batch_size=BATCH)
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    return time.perf_counter() - t0, mc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chips", type=int, default=100)
    ap.add_argument("--contend", type=int, default=0, help="busy processes sharing the cores (0: none)")
    ap.add_argument("--collapse-chips", type=int, default=8, help="chips for the OpenBLAS-threads comparison")
    args = ap.parse_args()
    ds = nds.datasets.load_dataset("mnist", n_train=4000, n_test=N_TEST)
    x, y, xt, yt = map(jnp.asarray, (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    model = nds.nn.lenet5(key=jax.random.key(0))
    model, _ = nds.train.fit(model, x, y, key=jax.random.key(1), steps=300, batch_size=64)
    card = nds.load_card("rram_wan2022", nds.cells.RRAM)
    res = {"num_chips": args.chips, "batch_size_per_device": BATCH, "n_test": N_TEST, "array": [ROWS, ROWS],
           "r_wire_ohm": R_WIRE, "cpu_count": os.cpu_count(), "load_avg_1min_at_start": os.getloadavg()[0],
           "platform": platform.platform(), "jax": jax.__version__,
           "devices": [str(d) for d in jax.devices()], "blas": threadpoolctl.threadpool_info()}

    def fn(m, k):
        kp, kr = streams(k, "program", "read")
        return nds.train.accuracy(nds.program(m, key=kp), xt, yt, key=kr)

    key = jax.random.key(2)
    models = {}
    for name, wires in (("ideal_wires", None),
                        ("exact_ir_drop", ResistiveWires(r_row=jnp.asarray(R_WIRE), r_col=jnp.asarray(R_WIRE)))):
        arr = ResistiveCrossbar(rows=ROWS, cols=ROWS, **({} if wires is None else {"wires": wires}))
        am = nds.analogize(model, CrossbarTile(cell=card, array=arr))
        models[name] = am
        cpu: list[float] = []
        t_first, _ = _nds_mc_warm(fn, am, key, args.chips, cpu)
        t_warm, mc = _nds_mc_warm(fn, am, key, args.chips, cpu)
        res[name] = {"first_call_s": t_first, "warm_s": t_warm, "warm_s_per_chip": t_warm / args.chips,
                     "first_call_cpu_s": cpu[0], "warm_cpu_s": cpu[1], "accuracy": mc.stats,
                     "load_avg_1min": os.getloadavg()[0]}
        print(f"{name}: first call {t_first:.1f} s ({cpu[0]:.1f} s CPU), warm {t_warm:.1f} s ({cpu[1]:.1f} s CPU, "
              f"{t_warm / args.chips:.3f} s/chip), accuracy {mc.stats['mean']:.4f} ± {mc.stats['std']:.4f}, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    res["ratio_warm_ir_to_ideal"] = res["exact_ir_drop"]["warm_s"] / res["ideal_wires"]["warm_s"]
    res["ratio_first_ir_to_ideal"] = res["exact_ir_drop"]["first_call_s"] / res["ideal_wires"]["first_call_s"]
    res["ratio_warm_cpu_ir_to_ideal"] = res["exact_ir_drop"]["warm_cpu_s"] / res["ideal_wires"]["warm_cpu_s"]
    print(f"ratio exact IR drop / ideal wires: warm {res['ratio_warm_ir_to_ideal']:.2f}, "
          f"first call {res['ratio_first_ir_to_ideal']:.2f}", flush=True)
    procs = _spinners(args.contend)
    try:
        time.sleep(1.0 if procs else 0.0)
        c = {"busy_processes": args.contend, "load_avg_1min": os.getloadavg()[0]}
        if procs:
            for name, am in models.items():
                t, _ = _nds_mc_warm(fn, am, key, args.chips)
                c[name] = {"warm_s": t, "slowdown_vs_quiet": t / res[name]["warm_s"]}
                print(f"{name}, {args.contend} busy processes: warm {t:.1f} s "
                      f"(x{t / res[name]['warm_s']:.2f} of the run without them)", flush=True)
            c["ratio_warm_ir_to_ideal"] = c["exact_ir_drop"]["warm_s"] / c["ideal_wires"]["warm_s"]
        n = args.collapse_chips
        if n > 0:
            t_one, _ = _nds_mc_warm(fn, models["exact_ir_drop"], key, n)
            t_def = _blas_unlimited_mc(fn, models["exact_ir_drop"], key, n, BATCH)
            c["openblas"] = {"chips": n, "one_thread_s": t_one, "default_threads_s": t_def,
                             "ratio_default_to_one": t_def / t_one}
            print(f"exact IR drop, {n} chips, {args.contend} busy processes, load {os.getloadavg()[0]:.1f}: "
                  f"OpenBLAS 1 thread {t_one:.1f} s, default threads {t_def:.1f} s (x{t_def / t_one:.1f})",
                  flush=True)
    finally:
        _stop(procs)
    res["contended"] = c
    res["load_avg_1min_at_end"] = os.getloadavg()[0]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "ir_drop_lenet.json"), "w") as f:
        json.dump(res, f, indent=1, default=lambda o: np.asarray(o).tolist())


if __name__ == "__main__":
    main()
