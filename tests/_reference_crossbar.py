"""The crossbar and bit-sliced tiles' read paths as they were before the fast path (nds
a5c35d3), kept as the references the fast path is tested against (tests/test_fast_path.py).

The crossbar path computes ``einsum("pbr,brc->pbc", v, m⁺ − m⁻)`` on every read (a batched
product over row blocks), draws read noise with ``jax.random.normal`` from
``jax.random.split(key)``, and uses the DAC's old fallback scale of 1 for an all-zero input.
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


def reference_bitsliced_apply_batch(tile, state, x, *, key):
    """``BitSlicedTile.apply_batch`` before the fast path (``column_codes`` inlined): one
    ``einsum("jpbr,esbrc->jespbc", ...)`` over cycles, planes, slices and row blocks on every
    read, noise per plane from ``jax.random.split(key)``."""
    c = tile.cell
    x_int, xs = tile.inputs.integers(x)
    xd = tile.inputs.digits(x_int)  # (J, p, n)
    v_unit = c.v_read / tile.inputs.digit_max
    v = xd * v_unit
    E, S, rb, r = state.m.shape[:4]
    J, p = v.shape[0], v.shape[1]
    vb = pad_to(v, 2, rb * r).reshape(J, p, rb, r)
    g_span = c.g_max - c.g_min
    unit = v_unit * g_span / tile.weights.digit_max
    i = jnp.einsum("jpbr,esbrc->jespbc", vb, state.m)
    i_ref = c.g_min * vb.sum(axis=-1)
    cn = (i - i_ref[:, None, None, :, :, None]) / unit
    need_key = float(tile.adc_noise) > 0 or float(c.read_noise_c2c) > 0
    if need_key:
        k1, k2 = jax.random.split(key)
    if float(c.read_noise_c2c) > 0:
        var = jnp.einsum("jpbr,esbrc->jespbc", vb**2, state.m**2) * (c.read_noise_c2c / unit) ** 2
        cn = cn + _safe_sqrt(var) * jax.random.normal(k1, cn.shape, cn.dtype)
    col = cn[:, 0] - cn[:, 1] if tile.weights.encoding == "differential" else cn[:, 0]
    if float(tile.adc_noise) > 0:
        col = col + tile.adc_noise * tile.adc_lsb * jax.random.normal(k2, col.shape, col.dtype)
    codes = tile._adc(col)
    cw = jnp.asarray(tile.inputs.cycle_weights(), codes.dtype)
    sw = jnp.asarray(tile.weights.slice_weights(), codes.dtype)
    y = jnp.einsum("j,k,jkpbc->pc", cw, sw, codes)
    if tile.weights.offset:
        y = y - tile.weights.offset * x_int.sum(axis=-1)[:, None]
    return y * state.w_step * (xs / tile.inputs.q)
