"""Bit slicing: digit arithmetic, the ADC-resolution formula (verified exhaustively), exact
integer MVMs, and the closed-form effect of ADC offset and noise."""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import nds
from nds.arrays import ResistiveCrossbar
from nds.arrays._crossbar import ResistiveWires
from nds.mapping._bitslice import (BitSliceMapping, InputSlicing, adc_bits_exact, adc_bits_rule,
                                   combine_digits, slice_digits)
from nds.tiles._bitsliced import BitSlicedTile

W = jax.random.normal(jax.random.key(20), (10, 37))
X = jax.random.normal(jax.random.key(21), (3, 37))


def _cell():
    return nds.load_card("rram_generic", nds.cells.RRAM).ideal()


def _tile(enc="offset", a=1, signed=True, b=2, wb=8, ib=6, adc_bits=None, rows=16, cols=8, **kw):
    return BitSlicedTile(cell=_cell(), array=ResistiveCrossbar(rows=rows, cols=cols),
                         weights=BitSliceMapping(weight_bits=wb, bits_per_cell=b, encoding=enc),
                         inputs=InputSlicing(input_bits=ib, dac_bits=a, signed=signed), adc_bits=adc_bits, **kw)


@eqx.filter_jit
def _y_int(tile, w, x, key=None):
    """Output in integer units (w_int @ x_int) and the integer reference."""
    st = tile.program(w, key=None)
    y = tile.apply_batch(st, x, key=key)
    w_int, _ = tile.weights.integers(w)
    x_int, xs = tile.inputs.integers(x)
    return y / (st.w_step * xs / tile.inputs.q), x_int @ w_int.T


def test_adc_rule_equals_exact_for_powers_of_two_and_bounds_it_otherwise():
    for p, a, b in itertools.product(range(13), range(1, 9), range(1, 9)):
        assert adc_bits_rule(2**p, a, b) == adc_bits_exact(2**p, a, b), (p, a, b)
    for r, a, b in itertools.product(range(1, 300), range(1, 5), range(1, 5)):
        ex, rule = adc_bits_exact(r, a, b), adc_bits_rule(r, a, b)
        assert ex <= rule <= ex + 1, (r, a, b)
        # exact is tight: the worst-case sum fits ex bits and not ex - 1
        top = r * (2**a - 1) * (2**b - 1)
        assert top <= 2**ex - 1 and top > 2 ** (ex - 1) - 1
    assert adc_bits_exact(128, 1, 2) == 9  # ISAAC: 9 bits for exact sums (its 8-bit ADC needs weight flipping)


@pytest.mark.parametrize("rows,a,b", [(1, 1, 1), (3, 1, 2), (4, 2, 2), (5, 2, 3), (8, 3, 1)])
def test_worst_case_column_through_the_tile(rows, a, b):
    """All-maximum digits: exact with adc_bits_exact bits, clipped with one fewer."""
    n = adc_bits_exact(rows, a, b)
    ib = a  # one slice and one (unsigned) cycle
    w = jnp.ones((2, rows))
    x = jnp.ones((1, rows))
    mk = lambda bits: BitSlicedTile(cell=_cell(), array=ResistiveCrossbar(rows=rows, cols=2),
                                    weights=BitSliceMapping(weight_bits=b + 1, bits_per_cell=b, encoding="differential"),
                                    inputs=InputSlicing(input_bits=ib, dac_bits=a, signed=False), adc_bits=bits)
    # differential: signed conversion, one more bit
    yi, ref = _y_int(mk(n + 1), w, x)
    np.testing.assert_allclose(yi, ref, atol=1e-9)
    assert float(ref[0, 0]) == rows * (2**a - 1) * (2**b - 1)
    yi2, _ = _y_int(mk(n), w, x)
    assert float(jnp.max(jnp.abs(yi2 - ref))) >= 1.0


def test_slice_and_combine_roundtrip_and_gradient():
    u = jnp.asarray(np.random.default_rng(0).integers(0, 2**16, size=200), jnp.float64)
    for b in (1, 2, 3, 4):
        n = -(-16 // b)
        d = slice_digits(u, b, n)
        assert d.shape == (n, 200) and float(d.min()) >= 0 and float(d.max()) <= 2**b - 1
        np.testing.assert_array_equal(combine_digits(d, b), u)
        g = jax.grad(lambda v: jnp.sum(combine_digits(slice_digits(v, b, n), b)))(u)
        np.testing.assert_allclose(g, 1.0, rtol=1e-12)


@pytest.mark.parametrize("enc,a,signed,b", [("offset", 1, True, 2), ("offset", 2, True, 3), ("offset", 2, False, 1),
                                            ("differential", 1, True, 4), ("differential", 3, False, 2)])
def test_integer_mvm_is_exact(enc, a, signed, b):
    t = _tile(enc, a, signed, b, adc_bits=adc_bits_exact(16, a, b, signed=enc == "differential"))
    x = X if signed else jnp.abs(X)
    yi, ref = _y_int(t, W, x)
    assert float(jnp.max(jnp.abs(ref))) > 100
    np.testing.assert_allclose(yi, ref, rtol=0, atol=1e-8)


def test_ideal_limit_equals_w_at_x():
    t = _tile(adc_bits=8).ideal()
    y = t.apply_batch(t.program(W, key=None), X, key=None)
    assert rel_err(y, X @ W.T) < 1e-10


@pytest.mark.parametrize("enc", ["offset", "differential"])
def test_one_lsb_adc_offset_gives_predicted_error(enc):
    """+1 LSB in every conversion shifts each output by rb Σ_j c_j Σ_k 2^(b k) integer units."""
    t0 = _tile(enc, adc_bits=None)
    t1 = eqx.tree_at(lambda t: t.adc_offset, t0, 1.0)
    y0, ref = _y_int(t0, W, X)
    y1, _ = _y_int(t1, W, X)
    rb = 3  # 37 inputs on 16-row arrays
    pred = rb * t0.inputs.cycle_weights().sum() * t0.weights.slice_weights().sum()
    np.testing.assert_allclose(y1 - y0, pred, rtol=1e-12)
    np.testing.assert_allclose(y0, ref, atol=1e-8)
    assert pred != 0


def test_adc_noise_gives_predicted_variance():
    t = eqx.tree_at(lambda t: t.adc_noise, _tile("offset", adc_bits=None), 0.5)
    x = X[:1]
    keys = jax.random.split(jax.random.key(5), 400)
    ys = jax.vmap(lambda k: _y_int(t, W, x, k)[0])(keys)  # (400, 1, 10)
    y0, _ = _y_int(_tile("offset", adc_bits=None), W, x)
    err = (np.asarray(ys) - np.asarray(y0)[None]).ravel()
    cw, sw = t.inputs.cycle_weights(), t.weights.slice_weights()
    var = 0.25 * 3 * np.sum(cw**2) * np.sum(sw**2)
    n = err.size
    assert abs(err.mean()) < 4 * math.sqrt(var / n)
    assert err.var() == pytest.approx(var, rel=4 * math.sqrt(2 / n))


def test_ir_drop_zero_resistance_and_on():
    t_ideal = _tile(adc_bits=None)
    t_r0 = _tile(adc_bits=None, rows=16, cols=8)
    t_r0 = eqx.tree_at(lambda t: t.array, t_r0, ResistiveCrossbar(rows=16, cols=8, wires=ResistiveWires(r_row=0.0, r_col=0.0)))
    y0, ref = _y_int(t_ideal, W, X)
    y1, _ = _y_int(t_r0, W, X)
    np.testing.assert_allclose(y1, y0, atol=1e-8)
    t_r = eqx.tree_at(lambda t: t.array, t_r0, ResistiveCrossbar(rows=16, cols=8, wires=ResistiveWires(r_row=20.0, r_col=20.0)))
    y2, _ = _y_int(t_r, W, X)
    assert float(jnp.mean(jnp.abs(y2 - ref))) > 1.0  # IR drop is visible at the integer level


def test_errors():
    with pytest.raises(ValueError, match="encoding"):
        BitSliceMapping(encoding="sign")
    with pytest.raises(ValueError, match="bits_per_cell"):
        BitSliceMapping(bits_per_cell=0)
    with pytest.raises(ValueError, match="dac_bits"):
        InputSlicing(dac_bits=0)
    with pytest.raises(ValueError, match="adc_lsb"):
        _tile(adc_lsb=0.0)
    with pytest.raises(ValueError, match="rows"):
        adc_bits_exact(0, 1, 1)
