"""DAC and ADC: step size, saturation, and that a column's sum, not each product, is quantized."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.converters import UniformADC, UniformDAC, quantize


@pytest.mark.parametrize("bits,y_range", [(4, 8.0), (6, 12.0), (8, 12.0), (3, 1.0)])
def test_adc_step_size(bits, y_range):
    """LSB = range / 2^(bits−1); mid-tread: values round to the nearest multiple of the LSB."""
    adc = UniformADC(bits=bits, y_range=y_range)
    lsb = y_range / 2 ** (bits - 1)
    assert adc.lsb == lsb
    half = 2 ** (bits - 1)
    codes = np.arange(-half, half)
    # just inside the rounding thresholds of every code: lands on the code
    for eps in (-0.49, 0.0, 0.49):
        y = jnp.asarray((codes + eps) * lsb)
        np.testing.assert_allclose(np.asarray(adc(y)), codes * lsb, rtol=0, atol=1e-12 * y_range)
    # crossing a threshold moves one LSB
    got = np.asarray(adc(jnp.asarray([0.51 * lsb, -0.51 * lsb, 1.51 * lsb])))
    np.testing.assert_allclose(got, [lsb, -lsb, 2 * lsb], rtol=1e-12)
    # quantization error of in-range values is at most LSB/2
    y = jnp.linspace(-y_range, y_range - lsb, 1001)
    assert float(jnp.max(jnp.abs(adc(y) - y))) <= lsb / 2 * (1 + 1e-12)


@pytest.mark.parametrize("bits,y_range", [(4, 8.0), (8, 12.0)])
def test_adc_saturates_at_range(bits, y_range):
    """Codes −2^(b−1) .. 2^(b−1)−1: output saturates at −range and at range − LSB."""
    adc = UniformADC(bits=bits, y_range=y_range)
    lsb = adc.lsb
    got = np.asarray(adc(jnp.asarray([1e6, 2 * y_range, y_range, -y_range, -2 * y_range, -1e6])))
    np.testing.assert_allclose(got, [y_range - lsb] * 3 + [-y_range] * 3, rtol=1e-12)


def test_one_bit_adc_is_a_comparator():
    got = np.asarray(quantize(jnp.asarray([-3.0, -0.1, 0.0, 0.2, 5.0]), 1, 2.0))
    np.testing.assert_array_equal(got, [-2.0, -2.0, 2.0, 2.0, 2.0])


def test_unbounded_adc_is_identity():
    y = jax.random.normal(jax.random.key(0), (100,)) * 100
    assert np.array_equal(np.asarray(UniformADC(bits=None)(y)), np.asarray(y))


def test_converter_validation():
    with pytest.raises(ValueError, match="bits"):
        UniformADC(bits=0)
    with pytest.raises(ValueError, match="y_range"):
        UniformADC(bits=8, y_range=0.0)
    with pytest.raises(ValueError, match="x_range"):
        UniformDAC(bits=8, x_range=-1.0)
    with pytest.raises(ValueError, match="bits"):
        quantize(jnp.zeros(3), 0, 1.0)


def test_dac_dynamic_range_and_step():
    """Dynamic DAC: scale = max|x|; symmetric codes ±(2^(b−1) − 1), LSB = 1/(2^(b−1) − 1)."""
    dac = UniformDAC(bits=4)  # 7 levels per sign
    x = jnp.asarray([2.0, -1.0, 0.3, 0.0, 1.1])
    lv, s = dac(x)
    assert float(s) == 2.0
    np.testing.assert_allclose(np.asarray(lv), np.round(np.asarray(x) / 2 * 7) / 7, rtol=1e-12)
    assert float(jnp.max(jnp.abs(lv))) == 1.0


def test_dac_fixed_range_clips():
    dac = UniformDAC(bits=3, x_range=1.0)  # codes −3..3, LSB 1/3
    lv, s = dac(jnp.asarray([5.0, -5.0, 0.5, 0.1]))
    assert float(s) == 1.0
    np.testing.assert_allclose(np.asarray(lv), [1.0, -1.0, 2 / 3, 0.0], rtol=1e-12)
    lv, _ = UniformDAC(bits=None, x_range=1.0)(jnp.asarray([5.0, -0.25]))
    np.testing.assert_allclose(np.asarray(lv), [1.0, -0.25], rtol=0)


def test_ste_gradients_pass_through():
    """Rounding and clipping: exact forward, identity derivative (nds._ste)."""
    g = jax.grad(lambda y: jnp.sum(quantize(y, 4, 1.0) * jnp.arange(1.0, 4.0)))(jnp.asarray([0.3, 5.0, -7.0]))
    np.testing.assert_array_equal(np.asarray(g), [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------- the sum is quantized
def _two_input_tile(pcm, rows):
    """Ideal cell and wires, unbounded fixed-range DAC (x ∈ [−1, 1] passes unchanged), and a
    3-bit ADC on ±4 (LSB = 1 in normalized units)."""
    return nds.tiles.CrossbarTile(
        cell=pcm.ideal(), array=nds.arrays.ResistiveCrossbar(rows=rows, cols=256),
        dac=UniformDAC(bits=None, x_range=1.0), adc=UniformADC(bits=3, y_range=4.0))


def test_adc_quantizes_the_column_sum_not_each_product(pcm):
    """W = [[0.5, 0.5]], x = (0.6, 0.6). Normalized weights (÷ max|w| = 0.5) are (1, 1), so
    the column carries 0.6 + 0.6 = 1.2 LSB.

    * quantizing the sum:          round(1.2) = 1   → y = 1 · 0.5 · 1 = 0.5
    * quantizing each product:     round(0.6) + round(0.6) = 2 → y = 1.0
    * exact:                       W x = 0.6
    """
    w = jnp.asarray([[0.5, 0.5]])
    x = jnp.asarray([0.6, 0.6])
    tile = _two_input_tile(pcm, rows=256)
    y = tile.apply(tile.program(w, key=None), x, key=None)
    assert float(y[0]) == pytest.approx(0.5, rel=1e-12)
    # with one word line per array each product is its own partial sum, converted separately:
    # that is per-product quantization (one ADC conversion per column per array)
    tile1 = _two_input_tile(pcm, rows=1)
    y1 = tile1.apply(tile1.program(w, key=None), x, key=None)
    assert float(y1[0]) == pytest.approx(1.0, rel=1e-12)
    # the unbounded ADC gives the exact product
    y_id = tile.ideal().apply(tile.ideal().program(w, key=None), x, key=None)
    assert float(y_id[0]) == pytest.approx(0.6, rel=1e-12)


def test_adc_saturation_inside_a_tile(pcm):
    """Column sum 8 · 0.9 = 7.2 on a ±4 ADC saturates at code 3 (= 4 − LSB): y = 3 · w_scale."""
    w = jnp.full((1, 8), 0.25)
    x = jnp.full((8,), 0.9)
    tile = _two_input_tile(pcm, rows=256)
    y = tile.apply(tile.program(w, key=None), x, key=None)
    assert float(y[0]) == pytest.approx(3 * 0.25, rel=1e-12)


def test_absmax_derivative_is_one_element_without_comparisons():
    """``nds._ste.absmax``: value ``max |x|``; derivative ``sign(x_i*)`` at the first element
    attaining it (ties: the first, not shared), zero for all-zero input, and per row along an
    axis. jnp.max's derivative shares ties by comparing a recomputed ``|x|`` with the maximum,
    which under XLA's fused backward can match nothing and return inf (nds.sensitivity gave
    NaN gradients through the DAC's dynamic range)."""
    from nds._ste import absmax

    x = jnp.array([1.0, -3.0, 3.0, 0.5])
    assert float(absmax(x)) == 3.0
    np.testing.assert_array_equal(np.asarray(jax.grad(absmax)(x)), [0.0, -1.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.grad(absmax))(jnp.zeros(3))), [0.0, 0.0, 0.0])
    w = jnp.array([[2.0, -1.0], [0.5, -4.0]])
    np.testing.assert_array_equal(np.asarray(absmax(w, 1)), [2.0, 4.0])
    g = jax.jacobian(lambda a: absmax(a, 1))(w)  # (2 rows, 2, 2)
    np.testing.assert_array_equal(np.asarray(g[0]), [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(g[1]), [[0.0, 0.0], [0.0, -1.0]])
