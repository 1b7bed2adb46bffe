"""Analog linear layer (512x512, batch 256, PCM programming + read noise, 8-bit DAC and ADC,
float32) against a plain jitted ``x @ W.T`` of the same shapes, forward and forward+backward.

Run: ``python benchmarks/bench_analog_linear.py``; writes ``benchmarks/results/analog_linear.json``.
The chip is programmed once (program time is reported separately); each forward samples
read noise (PCM 1/f noise at t = 1 day and per-read output noise).
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import nds


def _time(f, *args, repeat: int = 30) -> float:
    jax.block_until_ready(f(*args))
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> dict:
    n, batch = 512, 256
    k = jax.random.split(jax.random.key(0), 6)
    w = jax.random.normal(k[0], (n, n), jnp.float32) / jnp.sqrt(n)
    x = jax.random.normal(k[1], (batch, n), jnp.float32)
    cell = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile = nds.tiles.CrossbarTile(cell=cell, dac=nds.converters.UniformDAC(bits=8),
                                  adc=nds.converters.UniformADC(bits=8, y_range=12.0), out_noise=0.04)
    layer = nds.nn.AnalogLinear(weight=w, bias=None, out_scale=None, tile=tile, name="bench")

    t0 = time.perf_counter()
    chip = jax.block_until_ready(nds.drift(nds.program(layer, key=k[2]), 86400.0, key=k[3]))
    t_program = time.perf_counter() - t0

    @jax.jit
    def matmul(w, x):
        return x @ w.T

    @eqx.filter_jit
    def analog(chip, x, key):
        return nds.train.predict(chip, x, key=key)

    @jax.jit
    def matmul_grad(w, x):
        return jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w.T)))(w)

    @jax.jit
    def matmul_grad_x(w, x):
        return jax.grad(lambda x: jnp.sum(jnp.tanh(x @ w.T)))(x)

    @eqx.filter_jit
    def analog_grad_x(chip, x, key):
        # backward through a programmed chip (read noise, DAC/ADC with straight-through)
        return jax.grad(lambda x: jnp.sum(jnp.tanh(nds.train.predict(chip, x, key=key))))(x)

    quiet = eqx.tree_at(lambda c: c.tile.out_noise, chip, 0.0)

    @eqx.filter_jit
    def analog_grad(layer, x, key):
        # noise-aware training step: program a fresh chip (524k devices: programming noise,
        # drift exponents) and differentiate through program + forward w.r.t. the weights
        def loss(wt):
            l = eqx.tree_at(lambda l: l.weight, layer, wt)
            c = nds.program(l, key=key)
            return jnp.sum(jnp.tanh(nds.train.predict(c, x, key=key)))

        return jax.grad(loss)(layer.weight)

    r = {
        "shape": [batch, n, n],
        "matmul_fwd_s": _time(matmul, w, x),
        "analog_fwd_s": _time(analog, chip, x, k[4]),
        "analog_fwd_no_read_noise_s": _time(analog, quiet, x, None),
        "matmul_fwd_bwd_x_s": _time(matmul_grad_x, w, x),
        "analog_fwd_bwd_x_s": _time(analog_grad_x, chip, x, k[4]),
        "matmul_fwd_bwd_s": _time(matmul_grad, w, x),
        "analog_fwd_bwd_s": _time(analog_grad, layer, x, k[5]),
        "program_and_drift_s_first_call": t_program,
        "devices": str(jax.devices()),
    }
    r["ratio_fwd"] = r["analog_fwd_s"] / r["matmul_fwd_s"]
    r["ratio_fwd_no_read_noise"] = r["analog_fwd_no_read_noise_s"] / r["matmul_fwd_s"]
    r["ratio_fwd_bwd_x"] = r["analog_fwd_bwd_x_s"] / r["matmul_fwd_bwd_x_s"]
    r["ratio_noise_aware_step"] = r["analog_fwd_bwd_s"] / r["matmul_fwd_bwd_s"]
    out = pathlib.Path(__file__).parent / "results" / "analog_linear.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=1))
    for kk, v in r.items():
        print(f"{kk:32s} {v}")
    return r


if __name__ == "__main__":
    main()
