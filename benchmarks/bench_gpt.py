"""GPT forward on PCM crossbars with analog (gain-cell) attention, against the digital model
in the same run; and generation with the KV cache.

The model is the zoo's character-level GPT at the study's size (``nds.nn.gpt``: d = 96, 2
blocks, 4 heads, MLP 256, a 103-character vocabulary), float32, untrained weights (speed does
not depend on them). Measured (median of repeats, after compilation):

* forward of a batch of 32 sequences of 128 tokens: the digital model (Equinox, jitted) and
  the programmed chip (every Linear on a PCM crossbar: 8-bit DAC/ADC, output and 1/f read
  noise at 1 day; attention on the gain-cell tile with write noise, kT/C, leakage) → ratio;
* generation: 32 sequences × 127 new tokens from a 1-token prompt, one token per step through
  the KV cache (``GPT.generate``, ``lax.scan``), digital and on the chip → tokens per second.

Run: ``python benchmarks/bench_gpt.py [--quick]``; writes ``benchmarks/results/gpt.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import nds


def _time(f, *args, repeat: int = 5) -> float:
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(quick: bool = False) -> dict:
    context, batch = 128, 32
    repeat = 2 if quick else 5
    k = jax.random.split(jax.random.key(0), 6)
    gpt = nds.nn.gpt(103, context=context, key=k[0])
    x = jax.random.randint(k[1], (batch, context), 0, 103)
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile = nds.tiles.CrossbarTile(cell=pcm, out_noise=0.04)
    am = nds.analogize(gpt, tile, attention=nds.tiles.GainCellAttention.from_cards(t_token=2 * 65e-9))
    chip = jax.block_until_ready(nds.drift(nds.program(am, key=k[2]), 86400.0, key=k[3]))

    digital_fwd = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))
    analog_fwd = eqx.filter_jit(lambda m, x, key: nds.train.predict(m, x, key=key))

    def gen(m, prompts, key):
        keys = jax.random.split(key, prompts.shape[0])
        return jax.vmap(lambda p, kk: m.generate(p, context - 1, key=kk))(prompts, keys)

    gen_j = eqx.filter_jit(gen)
    prompts = x[:, :1]
    r = {"context": context, "batch": batch, "weights": int(sum(a.size for a in jax.tree_util.tree_leaves(
        eqx.filter(gpt, eqx.is_inexact_array)))), "devices": str(jax.devices())}
    r["digital_fwd_s"] = _time(digital_fwd, gpt, x, repeat=repeat)
    r["analog_fwd_s"] = _time(analog_fwd, chip, x, k[4], repeat=repeat)
    r["ratio_fwd"] = r["analog_fwd_s"] / r["digital_fwd_s"]
    new_tokens = batch * (context - 1)
    r["digital_generate_s"] = _time(gen_j, gpt, prompts, k[5], repeat=repeat)
    r["analog_generate_s"] = _time(gen_j, chip, prompts, k[5], repeat=repeat)
    r["digital_tokens_per_s"] = new_tokens / r["digital_generate_s"]
    r["analog_tokens_per_s"] = new_tokens / r["analog_generate_s"]
    r["ratio_generate"] = r["analog_generate_s"] / r["digital_generate_s"]
    # the KV cache against recomputing the whole prefix every token (digital, same run)
    def no_cache(m, prompts):
        def body(buf, i):
            logits = jax.vmap(m)(buf)
            nxt = jnp.argmax(logits[:, i], -1).astype(buf.dtype)
            return buf.at[:, i + 1].set(nxt), None

        buf = jnp.zeros((prompts.shape[0], context), prompts.dtype).at[:, :1].set(prompts)
        return jax.lax.scan(body, buf, jnp.arange(context - 1))[0]

    r["digital_generate_no_cache_s"] = _time(eqx.filter_jit(no_cache), gpt, prompts, repeat=max(1, repeat // 2))
    r["kv_cache_speedup"] = r["digital_generate_no_cache_s"] / r["digital_generate_s"]
    out = pathlib.Path(__file__).parent / "results" / "gpt.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=1))
    for kk, v in r.items():
        print(f"{kk:32s} {v}")
    return r


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    main(ap.parse_args().quick)
