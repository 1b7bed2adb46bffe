"""Resistive crossbar tile: partitioning onto fixed-size arrays, partial sums and their noise,
differential mapping, conductance levels and drift compensation edge cases."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import nds
from nds.arrays import ResistiveCrossbar
from nds.converters import UniformADC, UniformDAC
from nds.tiles import CrossbarTile

N_OUT, N_IN = 600, 1000
W = jax.random.normal(jax.random.key(200), (N_OUT, N_IN)) / math.sqrt(N_IN)
X = jax.random.normal(jax.random.key(201), (N_IN,))
UNBOUNDED = dict(dac=UniformDAC(bits=None), adc=UniformADC(bits=None))


def test_partitioned_layer_equals_one_array_in_ideal_limit(pcm):
    """1000×600 on 256×256 arrays (4 row blocks × 3 column blocks) equals one 1024×1024 array
    and W @ x, in float64 to 1e-10."""
    small = CrossbarTile(cell=pcm, array=ResistiveCrossbar(rows=256, cols=256)).ideal()
    big = CrossbarTile(cell=pcm, array=ResistiveCrossbar(rows=1024, cols=1024)).ideal()
    assert small.array.grid(N_IN, N_OUT) == (4, 3)
    assert big.array.grid(N_IN, N_OUT) == (1, 1)
    s_small, s_big = small.program(W, key=None), big.program(W, key=None)
    assert s_small.m.shape == (2, 4, 256, N_OUT)  # four partial sums per column
    assert s_big.m.shape == (2, 1, N_IN, N_OUT)
    y_small = small.apply(s_small, X, key=None)
    y_big = big.apply(s_big, X, key=None)
    want = np.asarray(W) @ np.asarray(X)
    assert rel_err(y_small, y_big) < 1e-10
    assert rel_err(y_small, want) < 1e-10


@pytest.fixture(scope="module")
def read_noise_samples(pcm):
    """Output errors of one chip (ideal cell, unbounded converters, out_noise σ = 0.1) over
    120 read keys, for 256-row arrays (rb = 4) and 1024-row arrays (rb = 1)."""
    sigma = 0.1
    out = {}
    for rows in (256, 1024):
        tile = CrossbarTile(cell=pcm.ideal(), array=ResistiveCrossbar(rows=rows, cols=256),
                            out_noise=sigma, **UNBOUNDED)
        st = tile.program(W, key=None)
        keys = jax.random.split(jax.random.key(202), 120)
        ys = eqx.filter_jit(jax.vmap(lambda k: tile.apply(st, X, key=k)))(keys)
        scale = st.w_scale * jnp.max(jnp.abs(X))  # w_scale · x_scale per output
        out[rows] = np.asarray((ys - (W @ X)[None, :]) / scale[None, :])
    return sigma, out


def test_read_noise_variance_grows_with_partial_sums(read_noise_samples):
    """Each array's column conversion carries out_noise σ; the rb partial sums add, so
    Var y = rb σ² (w_scale x_scale)². n = 120 reads × 600 outputs = 72 000 samples: the
    relative SE of a variance estimate is sqrt(2/n) = 0.53 %; bounds are 5 SE."""
    sigma, out = read_noise_samples
    n = out[256].size
    se_rel = math.sqrt(2 / n)
    v4, v1 = out[256].var(), out[1024].var()
    assert abs(v4 / (4 * sigma**2) - 1) < 5 * se_rel
    assert abs(v1 / (1 * sigma**2) - 1) < 5 * se_rel
    # the ratio of two independent estimates: relative SE sqrt(2) · sqrt(2/n)
    assert abs((v4 / v1) / 4 - 1) < 5 * math.sqrt(2) * se_rel
    # noise is zero-mean
    assert abs(out[256].mean()) < 5 * 2 * sigma / math.sqrt(n)


def test_one_adc_conversion_per_column_per_array(pcm):
    """Each row block's partial sum is quantized separately: with a 4-bit ADC on ±8 (LSB 1)
    and rows = 2, the 4 inputs form two partial sums 2·0.7 = 1.4 → 1 each, total 2, whereas one
    array of 4 rows quantizes 2.8 → 3."""
    w = jnp.ones((1, 4))
    x = jnp.full((4,), 0.7)
    mk = lambda rows: CrossbarTile(cell=pcm.ideal(), array=ResistiveCrossbar(rows=rows, cols=4),
                                   dac=UniformDAC(bits=None, x_range=1.0), adc=UniformADC(bits=4, y_range=8.0))
    t2, t4 = mk(2), mk(4)
    assert float(t2.apply(t2.program(w, key=None), x, key=None)[0]) == pytest.approx(2.0, rel=1e-12)
    assert float(t4.apply(t4.program(w, key=None), x, key=None)[0]) == pytest.approx(3.0, rel=1e-12)


def test_differential_mapping(rram):
    """g± = g_min + (g_max − g_min) relu(±w / max|w|); the unused device sits at g_min."""
    w = jnp.asarray([[0.5, -1.0, 0.0], [2.0, 0.25, -0.5]])
    m = nds.mapping.DifferentialMapping()
    g, s = m.to_conductance(w, rram.g_min, rram.g_max, 0)
    assert g.shape == (2, 3, 2)  # (G±, in, out)
    np.testing.assert_allclose(np.asarray(s), [2.0, 2.0])
    dg = rram.g_max - rram.g_min
    wn = np.asarray(w).T / 2.0
    np.testing.assert_allclose(np.asarray(g[0]), rram.g_min + dg * np.maximum(wn, 0), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(g[1]), rram.g_min + dg * np.maximum(-wn, 0), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(g[0] - g[1]) / dg * 2.0, np.asarray(w).T, rtol=1e-12, atol=1e-15)
    # per-column scale
    gc, sc = nds.mapping.DifferentialMapping(scale_mode="column").to_conductance(w, rram.g_min, rram.g_max, 0)
    np.testing.assert_allclose(np.asarray(sc), [1.0, 2.0])
    with pytest.raises(ValueError, match="scale_mode"):
        nds.mapping.DifferentialMapping(scale_mode="row")


def test_conductance_levels_quantize_weights(rram):
    """An otherwise ideal RRAM with its 32 levels stores w rounded to 31 steps of max|w|/31:
    the tile output equals round(31 w/s) s/31 @ x (float64 reference)."""
    cell = dataclasses.replace(rram.ideal(), levels=32)
    tile = CrossbarTile(cell=cell, array=ResistiveCrossbar(rows=256, cols=256), **UNBOUNDED)
    w = W[:40, :300]
    x = X[:300]
    s = float(jnp.max(jnp.abs(w)))
    wq = np.round(np.asarray(w) / s * 31) / 31 * s
    y = tile.apply(tile.program(w, key=None), x, key=None)
    assert rel_err(y, wq @ np.asarray(x)) < 1e-10
    assert rel_err(y, np.asarray(w) @ np.asarray(x)) > 1e-3  # the levels matter


def test_columns_summing_to_zero_keep_their_output(pcm):
    """Regression: a matrix whose every output row sums to zero gives a zero drift-compensation
    reference (all-ones input); compensation must then be off (factor 1), not zero the output."""
    w = jnp.asarray([[1.0, -1.0, 0.0], [2.0, 0.0, -2.0]])
    tile = CrossbarTile(cell=pcm).ideal()
    st = tile.program(w, key=None)
    assert float(st.comp) == 1.0
    x = jnp.asarray([1.0, 0.25, -0.5])
    assert rel_err(tile.apply(st, x, key=None), np.asarray(w) @ np.asarray(x)) < 1e-12
    aged = tile.drift(st, 1e6, key=None)
    assert float(aged.comp) == 1.0


def test_drift_state_is_recomputed_from_programmed(pcm):
    """drift(t) ages g_prog (not the previous g): drifting to t1 then t2 equals drifting to t2."""
    tile = CrossbarTile(cell=pcm)
    st = tile.program(W[:20, :50], key=jax.random.key(0))
    a = tile.drift(tile.drift(st, 100.0), 1e5)
    b = tile.drift(st, 1e5)
    np.testing.assert_array_equal(np.asarray(a.g), np.asarray(b.g))
    np.testing.assert_allclose(np.asarray(b.g), np.asarray(st.g_prog * ((1e5 + 20.0) / 20.0) ** (-st.nu)),
                               rtol=1e-12)
