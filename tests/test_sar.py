"""SAR ADC (capacitor-DAC mismatch, offset, noise, STE) and the matrix-multiplying ADC."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

jax.config.update("jax_enable_x64", True)

from nds import load_card  # noqa: E402
from nds.converters._sar import SARADC, MatrixMultiplyingADC  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _adc(**kw):
    return load_card("sar_adc_lee_wong2016", SARADC, **kw)


def test_ideal_sar_is_uniform_quantizer_and_ste():
    adc = _adc().ideal()
    st = adc.nominal_state()
    v = jnp.linspace(-adc.v_ref * 0.999, adc.v_ref * 0.999, 1001)
    d = adc.codes(st, v, key=None)
    expect = jnp.floor((v + adc.v_ref) / adc.lsb)
    np.testing.assert_array_equal(np.asarray(d), np.asarray(expect))
    dnl, inl = adc.dnl_inl(st)
    assert np.abs(dnl).max() < 1e-9 and np.abs(inl).max() < 1e-9
    g = jax.grad(lambda v: jnp.sum(adc(st, v, key=None)))(v)
    np.testing.assert_allclose(np.asarray(g), 1.0)
    y = adc(st, v, key=None)
    assert float(jnp.abs(y - v).max()) <= adc.lsb / 2 + 1e-15


def test_dnl_from_capacitor_mismatch_matches_closed_form():
    """Mid-code DNL std = sigma_u * sqrt(2^B - 1) (first order)."""
    adc = _adc(offset=False, noise=False, a_c=20e-9)
    n = 3000
    sts = jax.vmap(lambda k: adc.program(key=k))(jax.random.split(jax.random.PRNGKey(0), n))
    mid = 2 ** (adc.bits - 1)
    caps = np.asarray(sts.caps)
    c_t = caps.sum(1) + np.asarray(sts.c_dummy)
    width = (caps[:, -1] - caps[:, :-1].sum(1)) / c_t * 2**adc.bits  # in LSB
    dnl_mid = width - 1
    one = jax.tree_util.tree_map(lambda a: a[0], sts)
    assert abs(adc.dnl_inl(one)[0][mid - 2] - dnl_mid[0]) < 1e-9  # width of code mid - 1
    pred = adc.capacitor.sigma_rel * math.sqrt(2**adc.bits - 1)
    assert abs(dnl_mid.std() / pred - 1) < 0.1
    assert pred > 0.05  # a visible effect at this A_C


def test_offset_shifts_transitions_and_noise_flips_half():
    adc = _adc(mismatch=False, noise=False)
    st = adc.program(key=jax.random.PRNGKey(3))
    off = float(st.offset)
    t_nom = adc.transition_levels(adc.nominal_state())
    t = adc.transition_levels(st)
    np.testing.assert_allclose(t, t_nom - 2 * off, atol=1e-12)
    # comparator noise: an input exactly on a transition (noise << LSB) is split 50/50
    adcn = _adc(mismatch=False, offset=False, sigma_noise=0.1 * _adc().lsb)
    st0 = adcn.nominal_state()
    v = jnp.full((4000,), float(t_nom[20]))
    d = adcn.codes(st0, v, key=jax.random.PRNGKey(4))
    p = float(jnp.mean(d >= 21))
    assert abs(p - 0.5) < 4 * math.sqrt(0.25 / 4000)
    with pytest.raises(ValueError, match="key"):
        adcn.codes(st0, v, key=None)
    # input half an LSB + 1 sigma above the transition: Phi(1) above
    v1 = jnp.full((4000,), float(t_nom[20]) + 2 * adcn.sigma_noise)  # u-domain shift = sigma
    p1 = float(jnp.mean(adcn.codes(st0, v1, key=jax.random.PRNGKey(5)) >= 21))
    assert abs(p1 - norm.cdf(1.0)) < 4 * math.sqrt(0.25 / 4000)


def test_mmadc_rms_error_calibrated_and_ideal_limit():
    spec = importlib.util.spec_from_file_location("fit_mm", ROOT / "calibration/sar_adc_zhang2015/fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, pub = mod.check()["normalized_rms_error"]
    assert abs(model - pub) < 0.05 * pub
    adc = mod.card()
    m = MatrixMultiplyingADC(adc=adc.ideal(), ktc=False)
    e = float(m.normalized_rms_error(adc.ideal().nominal_state(), key=jax.random.PRNGKey(0), n=20000))
    fs = m.w_max / 2**m.w_bits
    q = adc.lsb / math.sqrt(12) / (adc.v_ref * fs)
    assert abs(e / q - 1) < 0.05  # only quantization remains
    # exact products at code centres
    st = adc.ideal().nominal_state()
    x = jnp.array([0.5, -0.25, 0.8])
    w = jnp.array([31, -7, 16])
    y = m.multiply(st, x, w, key=None)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x * w / 32), atol=adc.lsb / 2)
    with pytest.raises(ValueError, match="w_bits"):
        MatrixMultiplyingADC(adc=adc, w_bits=9)
