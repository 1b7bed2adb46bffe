"""The crossbar read path at matmul speed (issue 9): prepared differential matrices, one
matrix product per row block, the counter-based read-noise generator of ``nds._rng``.

Checks: the generator is JAX's Threefry-2x32 bit for bit and its Gaussians pass moment,
tail, independence and Kolmogorov–Smirnov tests with bounds from the sample count; the fast
path equals the previous implementation (``tests/_reference_crossbar.py``) bit for bit without
read noise and in distribution with it; batch invariance (a batch equals its examples one at
a time with the same keys); the ideal limit of a batch; zero in ⇒ zero out; noise parameters
that are traced JAX values.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from _reference_crossbar import reference_apply_batch, reference_bitsliced_apply_batch
from conftest import rel_err, std_standard_error

import nds
from nds._rng import normals, threefry2x32
from nds.arrays import ResistiveCrossbar, ResistiveWires
from nds.converters import UniformADC, UniformDAC
from nds.nn import AnalogConv2d, AnalogLinear
from nds.tiles import CrossbarTile

N_OUT, N_IN = 24, 70  # on 32-row arrays: 3 row blocks, the last one partial
W = jax.random.normal(jax.random.key(300), (N_OUT, N_IN)) / math.sqrt(N_IN)
XS = jax.random.normal(jax.random.key(301), (5, N_IN))  # one example's 5 input vectors


_ref = eqx.filter_jit(reference_apply_batch)
_ref_bs = eqx.filter_jit(reference_bitsliced_apply_batch)
_apply_batch = eqx.filter_jit(lambda t, st, x, key: t.apply_batch(st, x, key=key))
_apply = eqx.filter_jit(lambda t, st, x, key: t.apply(st, x, key=key))
_program = eqx.filter_jit(lambda t, w, key: t.program(w, key=key))


def _tile(cell, **kw):
    kw.setdefault("array", ResistiveCrossbar(rows=32, cols=16))
    return CrossbarTile(cell=cell, dac=UniformDAC(bits=8), adc=UniformADC(bits=8, y_range=4.0), **kw)


# ---------------------------------------------------------------------------- the generator
def test_threefry_equals_jax_bit_for_bit():
    """``nds._rng.threefry2x32`` is JAX's Threefry-2x32 (20 rounds): with JAX's
    non-partitionable counter layout (pairs (i, n + i)) it gives ``jax.random.bits`` exactly."""
    key = jax.random.key(7)
    k0, k1 = jax.random.key_data(key)
    n = 4099
    with jax.threefry_partitionable(False):
        want = np.asarray(jax.random.bits(key, (2 * n,), jnp.uint32))
    c = jnp.arange(n, dtype=jnp.uint32)
    a, b = threefry2x32(k0, k1, c, c + jnp.uint32(n))
    assert np.array_equal(np.concatenate([np.asarray(a), np.asarray(b)]), want)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_normals_are_standard_gaussian(dtype):
    """2^19 draws (4 arrays of 2^17): mean 0 and std 1 within 5 standard errors, the tail
    fraction P(|z| > 3) within 5 binomial standard errors of 2Φ(−3), the Box–Muller pair
    (arrays 0 and 1 share hashes) uncorrelated within 5/√n, and the Kolmogorov–Smirnov distance
    to the normal CDF below its 1e-6 critical value sqrt(ln(2/α)/(2n)). In float32 no |z|
    exceeds the documented bound sqrt(48 ln 2) = 5.77."""
    zs = normals(jax.random.key(11), 4, (1 << 17,), dtype)
    assert all(z.dtype == dtype and z.shape == (1 << 17,) for z in zs)
    z = np.concatenate([np.asarray(t, np.float64) for t in zs])
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1.0) < 5 * std_standard_error(z)
    p3 = 2 * scipy.stats.norm.sf(3.0)
    assert abs(np.mean(np.abs(z) > 3.0) - p3) < 5 * math.sqrt(p3 * (1 - p3) / n)
    r = np.corrcoef(np.asarray(zs[0], np.float64), np.asarray(zs[1], np.float64))[0, 1]
    assert abs(r) < 5 / math.sqrt(n // 4)
    d = scipy.stats.kstest(z, "norm").statistic
    assert d < math.sqrt(math.log(2 / 1e-6) / (2 * n))
    if dtype == jnp.float32:
        assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) * (1 + 1e-6)


def test_normals_same_key_same_bits_under_vmap():
    """Counter-based: the draws of a key do not depend on the batch it is drawn in."""
    keys = jax.random.split(jax.random.key(12), 6)
    batched = jax.jit(jax.vmap(lambda k: normals(k, 3, (4, 9))))(keys)
    for i in (0, 5):
        alone = normals(keys[i], 3, (4, 9))
        for a, b in zip(batched, alone):
            assert np.array_equal(np.asarray(a[i]), np.asarray(b))


# ---------------------------------------------------------------------------- fast path = reference
@eqx.filter_jit
def _chip(tile, t=3600.0):
    return tile.drift(tile.program(W, key=jax.random.key(302)), t, key=jax.random.key(303))


def test_fast_path_equals_reference_without_noise(pcm):
    """PCM chip programmed and drifted (1 h), 8-bit DAC and ADC, 3 row blocks (the last
    partial), first-order IR-drop wires (the transfer matrices are not the conductances):
    every output equals the previous implementation's bit for bit (float64: the prepared
    matrix changes the pre-ADC sums by ~1e-16, far from any ADC decision level). With
    unbounded converters: 1e-13 relative."""
    wires = ResistiveWires(r_row=1.0, r_col=1.0, fidelity="first_order")
    tile = _tile(pcm, array=ResistiveCrossbar(rows=32, cols=16, wires=wires))
    st = _chip(tile)
    y = _apply_batch(tile, st, XS, None)
    want = _ref(tile, st, XS, key=None)
    assert np.array_equal(np.asarray(y), np.asarray(want))
    one = _ref(tile, st, XS[2:3], key=None)[0]  # its own DAC scale
    assert np.array_equal(np.asarray(_apply(tile, st, XS[2], None)), np.asarray(one))
    free = dataclasses.replace(tile, dac=UniformDAC(bits=None), adc=UniformADC(bits=None))
    assert rel_err(_apply_batch(free, st, XS, None), _ref(free, st, XS, key=None)) < 1e-13


def test_fast_path_read_noise_matches_reference_in_distribution(rram):
    """RRAM (C2C read noise 2 % per device) with output noise 0.05, unbounded converters,
    one chip, 300 read keys × 5 vectors × 24 outputs: the read noise of the fast path
    (new generator) and of the previous implementation (jax.random.normal), each standardized
    by the predicted per-output σ, have mean 0 and std 1 within 5 standard errors, and their
    two variances agree within 5 standard errors of their difference."""
    tile = dataclasses.replace(_tile(rram, out_noise=0.05), dac=UniformDAC(bits=None), adc=UniformADC(bits=None))
    st = _program(tile, W, jax.random.key(304))
    silent = dataclasses.replace(tile, out_noise=0.0, cell=dataclasses.replace(rram, read_noise_c2c=0.0))
    quiet = np.asarray(_ref(silent, st, XS, key=None))
    c = tile.cell
    x_scale = float(jnp.max(jnp.abs(XS)))
    dg = c.g_max - c.g_min
    rb = 3
    var = rb * tile.out_noise**2 + c.read_noise_c2c**2 * np.einsum(
        "pi,kij->pj", (np.asarray(XS) / x_scale) ** 2, np.asarray(st.g) ** 2) / dg**2
    sigma = np.asarray(st.w_scale) * x_scale * np.sqrt(var)
    keys = jax.random.split(jax.random.key(305), 300)
    fast = np.asarray(eqx.filter_jit(jax.vmap(lambda k: tile.apply_batch(st, XS, key=k)))(keys))
    ref = np.asarray(eqx.filter_jit(jax.vmap(lambda k: reference_apply_batch(tile, st, XS, key=k)))(keys))
    zf, zr = (fast - quiet) / sigma, (ref - quiet) / sigma
    for z in (zf, zr):
        assert abs(z.mean()) < 5 / math.sqrt(z.size)
        assert abs(z.std() - 1.0) < 5 * std_standard_error(z)
    se = math.hypot(std_standard_error(zf), std_standard_error(zr))
    assert abs(zf.std() - zr.std()) < 5 * se


# ---------------------------------------------------------------------------- batches
def _noisy_models(pcm):
    tile = _tile(pcm, out_noise=0.04)
    lin = AnalogLinear.from_linear(eqx.nn.Linear(N_IN, N_OUT, key=jax.random.key(306)), tile)
    conv = AnalogConv2d.from_conv(eqx.nn.Conv2d(4, 3, 3, padding=1, key=jax.random.key(307)), tile)
    return [(lin.program(key=jax.random.key(308)), (3, N_IN)), (conv.program(key=jax.random.key(309)), (3, 4, 5, 6))]


def test_batch_equals_examples_one_at_a_time(pcm):
    """``nds.train.predict`` of a batch (one vmapped computation, the convolution's patches
    of all examples in one product per row block; 36 patch inputs on 32-row arrays) equals each example alone with its own key
    (``jax.random.split`` of the batch key), bit for bit, for AnalogLinear and AnalogConv2d
    with read noise and 8-bit converters."""
    for layer, shape in _noisy_models(pcm):
        x = jax.random.normal(jax.random.key(310), shape)
        key = jax.random.key(311)
        batch = np.asarray(eqx.filter_jit(nds.train.predict)(layer, x, key=key))
        keys = jax.random.split(key, shape[0])
        one = eqx.filter_jit(lambda l, v, k: l(v, key=k))
        for i in range(shape[0]):
            assert np.array_equal(batch[i], np.asarray(one(layer, x[i], keys[i])))


def test_ideal_limit_of_a_batch(pcm):
    """The ideal tile on a batch of examples (vmapped, 3 row blocks, p = 5 vectors each)
    equals W @ x in float64 to 1e-10."""
    tile = _tile(pcm).ideal()
    st = tile.program(W, key=None)
    x = jax.random.normal(jax.random.key(312), (4, 5, N_IN))
    y = eqx.filter_jit(jax.vmap(lambda v: tile.apply_batch(st, v, key=None)))(x)
    assert rel_err(y, np.einsum("oi,bpi->bpo", np.asarray(W), np.asarray(x))) < 1e-10


# ---------------------------------------------------------------------------- zero in, zero out
def test_zero_in_zero_out(rram):
    """Output noise and C2C read noise on: an all-zero input vector, an all-zero weight
    matrix, and (per-column scale) an all-zero weight row each give exactly 0 where they
    should, while a non-zero input on the same chip reads non-zero."""
    tile = _tile(rram, out_noise=0.1)
    st = _program(tile, W, jax.random.key(313))
    k = jax.random.key(314)
    assert np.all(np.asarray(_apply_batch(tile, st, jnp.zeros((5, N_IN)), k)) == 0.0)
    # a column may round to the ADC's zero code (LSB 4/128 of the normalized range): the
    # non-zero input reads non-zero on (nearly) every column, not necessarily on all
    assert np.mean(np.asarray(_apply_batch(tile, st, XS, k)) != 0.0) > 0.95
    z = _program(tile, jnp.zeros_like(W), jax.random.key(315))
    assert np.all(np.asarray(_apply_batch(tile, z, XS, k)) == 0.0)
    col = dataclasses.replace(tile, mapping=nds.mapping.DifferentialMapping(scale_mode="column"))
    w = W.at[3].set(0.0)
    y = np.asarray(_apply_batch(col, _program(col, w, jax.random.key(316)), XS, k))
    assert np.all(y[:, 3] == 0.0) and np.any(y[:, 4] != 0.0)  # a single read may round to code 0


# ---------------------------------------------------------------------------- traced parameters
def test_traced_noise_parameters(pcm, rram):
    """A tile whose ``out_noise`` / C2C noise are traced JAX values (differentiable card
    leaves) builds under jit, needs a key, and reads exactly what the tile with the same
    concrete values reads (a traced zero draws nothing: the quiet output, bit for bit)."""
    x = XS[0]
    k = jax.random.key(317)

    @eqx.filter_jit
    def read(sigma, c2c):
        cell = dataclasses.replace(rram, read_noise_c2c=c2c)
        t = _tile(cell, out_noise=sigma)
        assert t.needs_key
        return t.apply(t.program(W, key=jax.random.key(318)), x, key=k)

    for sigma, c2c in ((0.0, 0.0), (0.05, 0.0), (0.05, 0.02)):
        t = _tile(dataclasses.replace(rram, read_noise_c2c=c2c), out_noise=sigma)
        want = _apply(t, _program(t, W, jax.random.key(318)), x, k)
        got = read(jnp.asarray(sigma), jnp.asarray(c2c))
        assert np.array_equal(np.asarray(got), np.asarray(want)), (sigma, c2c)


# ---------------------------------------------------------------------------- bit-sliced tile
def _bitsliced(rram, enc, **kw):
    from nds.mapping import BitSliceMapping, InputSlicing
    from nds.tiles import BitSlicedTile

    return BitSlicedTile(cell=rram, array=ResistiveCrossbar(rows=32, cols=16),
                         weights=BitSliceMapping(weight_bits=8, bits_per_cell=2, encoding=enc),
                         inputs=InputSlicing(input_bits=6, dac_bits=1), **kw)


@pytest.mark.parametrize("enc", ["offset", "differential"])
def test_bitsliced_fast_path_equals_reference(rram, enc):
    """Bit-sliced RRAM tile (programming error on, 8-bit weights on 2-bit cells, 1-bit DAC
    cycles, 3 row blocks), 9-bit ADC: without read noise every output equals the previous
    implementation bit for bit (float64); with C2C read noise and 0.5 LSB of ADC noise
    (unbounded ADC, 120 read keys) the standardized read noise of both has std 1 within 5
    standard errors of each other and of 1."""
    quiet_cell = dataclasses.replace(rram, read_noise_c2c=0.0)
    tile = _bitsliced(quiet_cell, enc, adc_bits=9)
    st = _program(tile, W, jax.random.key(320))
    y = _apply_batch(tile, st, XS, None)
    assert np.array_equal(np.asarray(y), np.asarray(_ref_bs(tile, st, XS, key=None)))

    noisy = _bitsliced(rram, enc, adc_bits=None, adc_noise=0.5)
    free = _bitsliced(quiet_cell, enc, adc_bits=None)
    st = _program(noisy, W, jax.random.key(321))
    x = XS[:2]
    quiet = np.asarray(_ref_bs(free, st, x, key=None))
    keys = jax.random.split(jax.random.key(322), 120)
    fast = np.asarray(eqx.filter_jit(jax.vmap(lambda k: noisy.apply_batch(st, x, key=k)))(keys)) - quiet
    ref = np.asarray(eqx.filter_jit(jax.vmap(lambda k: reference_bitsliced_apply_batch(noisy, st, x, key=k)))(keys)) - quiet
    # per-output predicted σ from the reference sample itself (both must share it)
    sd = ref.std(axis=0)
    zf, zr = fast / sd, ref / sd
    assert abs(zf.mean()) < 5 / math.sqrt(zf.size)
    assert abs(zf.std() - zr.std()) < 5 * math.hypot(std_standard_error(zf), std_standard_error(zr))


def test_bitsliced_zero_in_zero_out(rram):
    """C2C read noise, ADC noise and a 1-LSB ADC offset on: all-zero inputs or all-zero
    weights give exactly 0."""
    tile = _bitsliced(rram, "offset", adc_bits=9, adc_noise=0.5, adc_offset=1.0)
    st = _program(tile, W, jax.random.key(323))
    k = jax.random.key(324)
    assert np.all(np.asarray(_apply_batch(tile, st, jnp.zeros((5, N_IN)), k)) == 0.0)
    assert np.all(np.asarray(_apply_batch(tile, st, XS, k)) != 0.0)
    z = _program(tile, jnp.zeros_like(W), jax.random.key(325))
    assert np.all(np.asarray(_apply_batch(tile, z, XS, k)) == 0.0)
