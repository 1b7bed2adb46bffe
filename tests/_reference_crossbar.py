"""The crossbar tile's read path as it was before the fast path (nds a5c35d3), kept verbatim
as the reference the fast path is tested against (tests/test_fast_path.py).

It computes ``einsum("pbr,brc->pbc", v, m⁺ − m⁻)`` on every read (a batched product over row
blocks), draws read noise with ``jax.random.normal`` from ``jax.random.split(key)``, and uses
the DAC's old fallback scale of 1 for an all-zero input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nds._ste import clip_ste, round_ste, sign_ste
from nds.arrays._partition import pad_to


def _safe_sqrt(v):
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def reference_dac(dac, x):
    """``UniformDAC.__call__`` before the fast path (scale 1 for an all-zero input)."""
    if dac.x_range is None:
        amax = jnp.max(jnp.abs(x))
        scale = jnp.where(amax > 0, amax, jnp.ones_like(amax))
    else:
        scale = jnp.asarray(dac.x_range, x.dtype)
    xn = x / scale
    if dac.bits is None:
        return (xn if dac.x_range is None else clip_ste(xn, -1.0, 1.0)), scale
    half = 2 ** (dac.bits - 1)
    if dac.bits == 1:
        return sign_ste(xn), scale
    lsb = 1.0 / (half - 1)
    return clip_ste(round_ste(xn / lsb), -(half - 1), half - 1) * lsb, scale


def reference_apply_batch(tile, state, x, *, key):
    """``CrossbarTile.apply_batch`` before the fast path: (p, in) → (p, out)."""
    c = tile.cell
    levels, x_scale = reference_dac(tile.dac, x)
    v = levels * c.v_read
    rb, r = state.m.shape[1], state.m.shape[2]
    vb = pad_to(v, 1, rb * r).reshape(v.shape[0], rb, r)
    i = jnp.einsum("pbr,brc->pbc", vb, state.m[0] - state.m[1])  # (p, rb, out)
    norm = c.v_read * (c.g_max - c.g_min)
    yn = i / norm
    if float(tile.out_noise) > 0 or float(c.read_noise_c2c) > 0:
        k1, k2 = jax.random.split(key)
        if float(tile.out_noise) > 0:
            yn = yn + tile.out_noise * jax.random.normal(k1, yn.shape, yn.dtype)
        if float(c.read_noise_c2c) > 0:
            var = jnp.einsum("pbr,brc->pbc", vb**2, state.m[0] ** 2 + state.m[1] ** 2)
            yn = yn + c.read_noise_c2c * _safe_sqrt(var) / norm * jax.random.normal(k2, yn.shape, yn.dtype)
    yq = tile.adc(yn)
    return yq.sum(axis=1) * state.w_scale[None, :] * x_scale * state.comp
