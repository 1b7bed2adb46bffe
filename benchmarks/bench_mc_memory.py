"""Peak memory of a Monte Carlo run against the number of chips: the default study's PCM row.

The default study's PCM row (``nds study``: LeNet-5 on MNIST, 1000 test images, PCM
``pcm_joshi2020`` on 256×256 arrays, 6-bit DAC and ADC, t = 1 s after programming): each
chip is programmed, drifted and classifies the 1000 images, exactly as
:func:`nds.study.run_study` evaluates it. Each configuration runs in a fresh Python process
and reports its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
which includes JAX, XLA's compiler and the dataset), its RSS just before the Monte Carlo
call, and the wall time. Configurations: 32 and 320 chips, with the study's ``chip_batch``
(8 chips per call) and with ``nds.monte_carlo``'s default batch (chosen from XLA's memory
estimate, see ``nds._monte_carlo.chip_batch_size``). For scale, XLA's own estimate of the
working set of the former default (all chips in one call) is read from a compile-only
lowering; it is not run.

The network weights are LeNet-5's initial ones (training changes values, not shapes or
memory). Run: ``python benchmarks/bench_mc_memory.py`` → ``benchmarks/results/mc_memory.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(num_chips: int, batch: str) -> dict:
    import jax
    import jax.numpy as jnp

    import nds
    import nds.datasets
    from nds._monte_carlo import _run_batch, chip_batch_size
    from nds.nn._analogize import analogize
    from nds.study import load_study, make_tile

    cfg = load_study()
    d = cfg["dataset"]
    ds = nds.datasets.load_dataset(d["name"], n_train=d["n_train"], n_test=d["n_test"], seed=cfg["study"]["seed"])
    xte, yte = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    entries = {h["name"]: h for h in cfg["hardware"]}
    net = nds.nn.lenet5(ds.input_shape, 10, key=jax.random.key(0))
    model = analogize(net, make_tile(entries["pcm"], entries))

    def eval_fn(args, k):  # as nds.study.run_study
        m, t = args
        kp, kd, kr = jax.random.split(k, 3)
        chip = nds.drift(nds.program(m, key=kp), t, key=kd)
        return nds.train.accuracy(chip, xte, yte, key=kr)

    args = (model, jnp.asarray(1.0, jnp.float32))
    key = jax.random.key(0)
    out = {"num_chips": num_chips, "batch": batch}
    if batch == "all_estimate":  # compile only: XLA's estimate of all chips in one call
        keys = jax.random.key_data(jax.random.split(key, num_chips))
        c = _run_batch.lower(eval_fn, args, keys, "threefry2x32").compile(
            compiler_options={"xla_backend_optimization_level": 0})
        ma = c.compiled.memory_analysis()
        out["xla_temp_bytes"] = int(ma.temp_size_in_bytes)
        return out
    bs = cfg["study"]["chip_batch"] if batch == "study" else None
    if bs is None:
        out["default_batch"] = chip_batch_size(eval_fn, args, key=key, max_chips=num_chips)
    out["rss_before_bytes"] = _rss_now()
    t0 = time.perf_counter()
    r = nds.monte_carlo(eval_fn, args, key=key, num_chips=num_chips, batch_size=bs)
    out["wall_s"] = time.perf_counter() - t0
    out["accuracy_mean"] = r.stats["mean"]
    out["rss_after_bytes"] = _rss_now()
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print("RESULT" + json.dumps(child(int(sys.argv[2]), sys.argv[3])), flush=True)
        return
    res = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
           "load_avg_1min_at_start": os.getloadavg()[0], "runs": []}
    for batch in ("study", "default"):
        for n in (32, 320):
            p = subprocess.run([sys.executable, __file__, "--child", str(n), batch], capture_output=True,
                               text=True, check=True)
            r = json.loads(p.stdout.split("RESULT", 1)[1])
            res["runs"].append(r)
            print(f"{n:4d} chips, batch {batch:7s}{'(' + str(r.get('default_batch')) + ')' if batch == 'default' else ''}: "
                  f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB, RSS before the Monte Carlo "
                  f"{r['rss_before_bytes'] / 2**20:.0f} MiB, {r['wall_s']:.0f} s", flush=True)
    p = subprocess.run([sys.executable, __file__, "--child", "320", "all_estimate"], capture_output=True, text=True,
                       check=True)
    r = json.loads(p.stdout.split("RESULT", 1)[1])
    res["all_chips_at_once_320_xla_temp_bytes"] = r["xla_temp_bytes"]
    print(f"320 chips in one call (the former default): XLA estimates {r['xla_temp_bytes'] / 2**30:.1f} GiB "
          "of temporaries (not run)")
    res["load_avg_1min_at_end"] = os.getloadavg()[0]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "mc_memory.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
