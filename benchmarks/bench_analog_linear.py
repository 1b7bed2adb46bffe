"""The headline analog layer against a plain matmul, side by side with aihwkit-lightning.

Layer: 512 inputs × 512 outputs, batch 256, float32; PCM (``pcm_joshi2020``) programmed and
drifted to t = 1 day, output read noise σ = 0.04 per column and array, 8-bit DAC (dynamic
range) and 8-bit ADC on ±12; arrays of 256×256 (2 row blocks) and 512×512 (1 row block).

What is timed, each as a ratio to its framework's own plain product of the same shape in the
same round:

* nds (JAX, ``eqx.filter_jit``), against a jitted ``x @ W.T`` (float32):
  ``fwd`` = ``nds.train.predict`` of the programmed, drifted chip with read noise;
  ``fwd_no_read_noise`` = the same chip with ``out_noise = 0``;
  ``fwd_bwd`` = gradient of ``Σ tanh(y)`` w.r.t. the input through the noisy chip, against the
  same for ``x @ W.T``; ``train_step`` = one noise-aware training step: program a fresh chip
  from the weights (programming noise), read it with read noise, gradient of ``Σ tanh(y)``
  w.r.t. the weights, against the gradient of ``Σ tanh(x @ W.T)`` w.r.t. ``W``.
  Ablations (where the time goes): ``fwd_no_converters`` (no read noise, unbounded DAC and
  ADC: the block products, scales and the NaN check alone) and ``fwd_jax_normal`` (read
  noise drawn with ``jax.random.normal`` instead of nds's counter-based generator).
* aihwkit-lightning (PyTorch, when installed: ``pip install -e .[bench]``), against
  ``torch.nn.Linear`` of the same shape: its ``AnalogLinear`` in train mode (in eval mode it
  applies no noise at all) with the closest configuration: ``max_input_size`` = array rows
  (the same row blocks), dynamic per-vector input range, 8-bit input and output
  (``inp_res = out_res = 2^8 − 2``), ``out_bound = 12``, output noise 0.04 per tile
  (``out_noise = 0.04·√(blocks)``: lightning divides by that), and additive Gaussian weight
  noise drawn on every forward (``ADD_NORMAL``, σ = 0.038·max|W|, PCM programming noise at
  half range relative to g_max) standing in for nds's programmed chip. ``fwd`` under
  ``torch.no_grad``; ``fwd_bwd`` the input gradient of ``Σ tanh(y)``; ``train_step`` the
  weight gradient.

Threads: every thread setting runs in its own subprocess, pinned with ``taskset``:
1 thread = ``taskset -c 0`` with ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1"`` and ``torch.set_num_threads(1)``; 2 threads =
``taskset -c 0,1``, XLA's default thread pool and ``torch.set_num_threads(2)``.

Measurement: rounds interleave every measurement of every framework (reference first); in a
round each function runs ``--inner`` times after warm-up and its fastest run counts; the
ratio of a round is that time over the same round's reference; the figure reported is the
median over ``--rounds`` rounds (robust to other load on a shared machine). The JSON also
keeps the median ratio of process CPU times (``cpu_ratio``: with one thread the work itself,
insensitive to waiting for a shared core) and the median absolute times.

Run (one command; writes ``benchmarks/results/analog_linear.json`` and prints the table)::

    python benchmarks/bench_analog_linear.py

``--threads 1`` or ``--threads 2`` runs one setting only; ``--rounds`` / ``--inner`` set the
repetitions (default 15 / 5).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
N_IN = N_OUT = 512
BATCH = 256
ARRAYS = (256, 512)
OUT_NOISE = 0.04
W_NOISE = 0.038


# ---------------------------------------------------------------------------- timing
def _best_of(f, inner: int) -> tuple[float, float]:
    """Fastest of ``inner`` runs: (wall seconds, process CPU seconds of that run)."""
    best, cpu = float("inf"), float("inf")
    for _ in range(inner):
        c0, t0 = time.process_time(), time.perf_counter()
        f()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best:
            best, cpu = t, c
    return best, cpu


def _interleaved(groups: dict, rounds: int, inner: int) -> dict:
    """``groups``: name -> (reference callable, {case: callable}). Returns per group and case
    the median over rounds of the wall-time ratio (``ratio``) and of the process-CPU-time
    ratio (``cpu_ratio``: less sensitive to other load; with one thread it is the work
    itself), and the median absolute wall times (s)."""
    for ref, cases in groups.values():  # warm-up (compilation)
        for f in (ref, *cases.values()):
            f()
            f()
    ratios = {g: {c: [] for c in cases} for g, (_, cases) in groups.items()}
    cpu_ratios = {g: {c: [] for c in cases} for g, (_, cases) in groups.items()}
    times = {g: {c: [] for c in ("reference", *cases)} for g, (_, cases) in groups.items()}
    for _ in range(rounds):
        for g, (ref, cases) in groups.items():
            t_ref, c_ref = _best_of(ref, inner)
            times[g]["reference"].append(t_ref)
            for c, f in cases.items():
                t, cpu = _best_of(f, inner)
                times[g][c].append(t)
                ratios[g][c].append(t / t_ref)
                cpu_ratios[g][c].append(cpu / c_ref if c_ref > 0 else float("nan"))
    return {g: {"ratio": {c: statistics.median(v) for c, v in ratios[g].items()},
                "cpu_ratio": {c: statistics.median(v) for c, v in cpu_ratios[g].items()},
                "median_s": {c: statistics.median(v) for c, v in times[g].items()}}
            for g in groups}


# ---------------------------------------------------------------------------- nds
def _nds_groups() -> tuple[dict, dict]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import nds

    k = jax.random.split(jax.random.key(0), 8)
    w = jax.random.normal(k[0], (N_OUT, N_IN), jnp.float32) / jnp.sqrt(N_IN)
    x = jax.random.normal(k[1], (BATCH, N_IN), jnp.float32)
    cell = nds.load_card("pcm_joshi2020", nds.cells.PCM)

    def block(f, *a):
        return lambda: jax.block_until_ready(f(*a))

    mm = jax.jit(lambda w, x: x @ w.T)
    mm_gx = jax.jit(lambda w, x: jax.grad(lambda x: jnp.sum(jnp.tanh(x @ w.T)))(x))
    mm_gw = jax.jit(lambda w, x: jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w.T)))(w))
    fwd = eqx.filter_jit(lambda c, x, key: nds.train.predict(c, x, key=key))
    fwd_bwd = eqx.filter_jit(
        lambda c, x, key: jax.grad(lambda x: jnp.sum(jnp.tanh(nds.train.predict(c, x, key=key))))(x))

    @eqx.filter_jit
    def train_step(layer, x, key):
        kp, kr = jax.random.split(key)

        def loss(wt):
            chip = nds.program(eqx.tree_at(lambda l: l.weight, layer, wt), key=kp)
            return jnp.sum(jnp.tanh(nds.train.predict(chip, x, key=kr)))

        return jax.grad(loss)(layer.weight)

    fwd_cases, bwd_cases, step_cases, info = {}, {}, {}, {}
    for rows in ARRAYS:
        tile = nds.tiles.CrossbarTile(
            cell=cell, array=nds.arrays.ResistiveCrossbar(rows=rows, cols=rows),
            dac=nds.converters.UniformDAC(bits=8), adc=nds.converters.UniformADC(bits=8, y_range=12.0),
            out_noise=OUT_NOISE)
        layer = nds.nn.AnalogLinear(weight=w, bias=None, out_scale=None, tile=tile, name=f"a{rows}")
        t0 = time.perf_counter()
        chip = jax.block_until_ready(nds.drift(nds.program(layer, key=k[2]), 86400.0, key=k[3]))
        info[f"nds_{rows}_program_and_drift_s_first_call"] = time.perf_counter() - t0
        quiet = eqx.tree_at(lambda c: c.tile.out_noise, chip, 0.0)
        bare = eqx.tree_at(lambda c: (c.tile.dac, c.tile.adc), quiet,
                           (nds.converters.UniformDAC(bits=None), nds.converters.UniformADC(bits=None)))
        jaxrng = eqx.tree_at(lambda c: c.tile, chip, dataclasses.replace(chip.tile, noise_rng="jax"))
        fwd_cases[f"nds_{rows}"] = block(fwd, chip, x, k[4])
        fwd_cases[f"nds_{rows}_no_read_noise"] = block(fwd, quiet, x, None)
        fwd_cases[f"nds_{rows}_no_converters"] = block(fwd, bare, x, None)
        fwd_cases[f"nds_{rows}_jax_normal"] = block(fwd, jaxrng, x, k[4])
        bwd_cases[f"nds_{rows}"] = block(fwd_bwd, chip, x, k[4])
        step_cases[f"nds_{rows}"] = block(train_step, layer, x, k[5])
    groups = {"nds_fwd": (block(mm, w, x), fwd_cases), "nds_fwd_bwd": (block(mm_gx, w, x), bwd_cases),
              "nds_train_step": (block(mm_gw, w, x), step_cases)}
    info["jax"] = jax.__version__
    info["devices"] = str(jax.devices())
    return groups, info


# ---------------------------------------------------------------------------- aihwkit-lightning
def _lightning_groups(threads: int) -> tuple[dict, dict]:
    try:
        import torch
        from aihwkit_lightning.nn import AnalogLinear
        from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig, WeightNoiseInjectionType
    except ImportError as e:  # optional: pip install -e .[bench]
        return {}, {"lightning": f"not installed ({e})"}
    import aihwkit_lightning

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(BATCH, N_IN)
    lin = torch.nn.Linear(N_IN, N_OUT, bias=False)
    lin.weight.requires_grad_(False)

    def fwd_of(m):
        def f():
            with torch.no_grad():
                m(x)
        return f

    def fwd_bwd_of(m):
        def f():
            xx = x.clone().requires_grad_(True)
            torch.tanh(m(xx)).sum().backward()
        return f

    def step_of(m):
        def f():
            m.weight.requires_grad_(True)
            m.weight.grad = None
            torch.tanh(m(x)).sum().backward()
            m.weight.requires_grad_(False)
        return f

    fwd_cases, bwd_cases, step_cases = {}, {}, {}
    for rows in ARRAYS:
        blocks = -(-N_IN // rows)
        rpu = TorchInferenceRPUConfig()
        rpu.mapping.max_input_size = rows
        rpu.pre_post.input_range.enable = True
        rpu.pre_post.input_range.dynamic = True
        rpu.forward.inp_res = 2**8 - 2
        rpu.forward.out_res = 2**8 - 2
        rpu.forward.out_bound = 12.0
        rpu.forward.out_noise = OUT_NOISE * blocks**0.5
        rpu.modifier.noise_type = WeightNoiseInjectionType.ADD_NORMAL
        rpu.modifier.std_dev = W_NOISE
        a = AnalogLinear(N_IN, N_OUT, bias=False, rpu_config=rpu)
        with torch.no_grad():
            a.set_weights(lin.weight)
        a.weight.requires_grad_(False)
        a.train()  # noise on (eval mode applies none)
        fwd_cases[f"lightning_{rows}"] = fwd_of(a)
        bwd_cases[f"lightning_{rows}"] = fwd_bwd_of(a)
        step_cases[f"lightning_{rows}"] = step_of(a)
    groups = {"lightning_fwd": (fwd_of(lin), fwd_cases), "lightning_fwd_bwd": (fwd_bwd_of(lin), bwd_cases),
              "lightning_train_step": (step_of(lin), step_cases)}
    info = {"torch": torch.__version__, "aihwkit_lightning": getattr(aihwkit_lightning, "__version__", "?"),
            "torch_threads": torch.get_num_threads()}
    return groups, info


# ---------------------------------------------------------------------------- driver
def _worker(threads: int, rounds: int, inner: int) -> dict:
    groups, info = _nds_groups()
    lg, linfo = _lightning_groups(threads)
    # interleave nds and lightning group by group, round by round
    order = {}
    for kind in ("fwd", "fwd_bwd", "train_step"):
        order[f"nds_{kind}"] = groups[f"nds_{kind}"]
        if f"lightning_{kind}" in lg:
            order[f"lightning_{kind}"] = lg[f"lightning_{kind}"]
    res = _interleaved(order, rounds, inner)
    return {"threads": threads, "rounds": rounds, "inner": inner, "results": res, **info, **linfo,
            "load_average_after": os.getloadavg()}


def _run_setting(threads: int, rounds: int, inner: int) -> dict:
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
        cpus = "0"
    else:
        cpus = ",".join(str(i) for i in range(threads))
    env["OMP_NUM_THREADS"] = str(threads)
    cmd = ["taskset", "-c", cpus, sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
           "--threads", str(threads), "--rounds", str(rounds), "--inner", str(inner)]
    load = os.getloadavg()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark worker failed ({' '.join(cmd)}):\n{p.stderr[-4000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["load_average_before"] = load
    r["command"] = " ".join(cmd)
    r["xla_flags"] = env.get("XLA_FLAGS", "")
    return r


def _table(settings: list[dict], which: str = "ratio") -> str:
    """Markdown table of the median ratios (``which``: "ratio" wall time, "cpu_ratio" CPU time)."""
    lines = ["| framework | arrays | threads | fwd | fwd (no read noise) | fwd+bwd (dx) | train step (dW) |",
             "|---|---|---|---|---|---|---|"]
    for fw in ("nds", "lightning"):
        for rows in ARRAYS:
            for s in settings:
                r = s["results"]
                case = f"{fw}_{rows}"
                if f"{fw}_fwd" not in r:
                    continue
                get = lambda g, c=case: r[f"{fw}_{g}"][which].get(c)
                nn = get("fwd", f"{case}_no_read_noise") if fw == "nds" else None
                cells = [get("fwd"), nn, get("fwd_bwd"), get("train_step")]
                txt = [f"{v:.2f}x" if v is not None else "–" for v in cells]
                lines.append(f"| {'nds' if fw == 'nds' else 'aihwkit-lightning (noise on)'} | {rows}x{rows} | "
                             f"{s['threads']} | " + " | ".join(txt) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, choices=(1, 2), default=None, help="one thread setting only")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.threads, a.rounds, a.inner)))
        return {}
    settings = [_run_setting(t, a.rounds, a.inner) for t in ((a.threads,) if a.threads else (1, 2))]
    out = {"layer": {"n_in": N_IN, "n_out": N_OUT, "batch": BATCH, "dtype": "float32", "cell": "pcm_joshi2020",
                     "t_drift_s": 86400.0, "out_noise": OUT_NOISE, "dac_bits": 8, "adc_bits": 8, "adc_range": 12.0,
                     "arrays": list(ARRAYS)},
           "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                       "python": platform.python_version()},
           "settings": settings}
    for s in settings:  # ablation summary: where the forward's time goes, in matmul units
        for rows in ARRAYS:
            f = s["results"]["nds_fwd"]["ratio"]
            s.setdefault("where_time_goes", {})[f"nds_{rows}"] = {
                "products_scales_and_checks": f[f"nds_{rows}_no_converters"],
                "dac_and_adc": f[f"nds_{rows}_no_read_noise"] - f[f"nds_{rows}_no_converters"],
                "read_noise": f[f"nds_{rows}"] - f[f"nds_{rows}_no_read_noise"],
                "read_noise_with_jax_random_normal": f[f"nds_{rows}_jax_normal"] - f[f"nds_{rows}_no_read_noise"],
            }
    path = HERE / "results" / "analog_linear.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print("Median ratios of wall time (each framework to its own plain product, same rounds):")
    print(_table(settings))
    print("\nThe same as ratios of process CPU time (insensitive to waiting for a shared core):")
    print(_table(settings, "cpu_ratio"))
    for s in settings:
        print(f"threads={s['threads']}: load average before {s['load_average_before']}, after {s['load_average_after']}")
        for k, v in s["where_time_goes"].items():
            print(f"  {k}: " + ", ".join(f"{a} {b:.2f}" for a, b in v.items()))
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
