"""Switched-capacitor compute: capacitor, charge-sharing array (vs ngspice), tile, calibration.

ngspice tolerances: charge sharing of a 3-input bank (final node voltage) 1e-4 relative;
RC sampling settling at half a clock period 1e-4 relative.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from nds import load_card  # noqa: E402
from nds.arrays._charge_sharing import ChargeSharingArray  # noqa: E402
from nds.cells._capacitor import K_BOLTZMANN, UnitCapacitor  # noqa: E402
from nds.tiles._switched_cap import SwitchedCapTile, adc_conversion_reduction  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _spice_tran import run_tran, value_at  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _arr(**kw):
    return load_card("sc_lee_wong2016", ChargeSharingArray, **kw)


def test_ktc_variance_of_summing_node():
    arr = _arr(mismatch=False, settling=False)
    n_w = jnp.array([[3.0, -2.0, 7.0, 0.0]])
    st = arr.program(n_w, key=None)
    v = jnp.zeros(4)
    n = 20000
    ks = jax.random.split(jax.random.PRNGKey(0), n)
    vp = jax.jit(jax.vmap(lambda k: arr.nodes(st, v, key=k)[0][0]))(ks)
    c_tot = float(st.c_tot_p[0])
    assert abs(c_tot - arr.c_total(4)) < 1e-25
    pred = K_BOLTZMANN * arr.temperature / c_tot
    var = float(jnp.var(vp))
    # sample variance of n Gaussian draws: relative std sqrt(2/(n-1)); 4-sigma bound
    assert abs(var / pred - 1) < 4 * math.sqrt(2 / (n - 1))
    assert abs(float(jnp.mean(vp))) < 4 * math.sqrt(pred / n)


def test_charge_sharing_vs_ngspice():
    arr = _arr(mismatch=False, ktc=False, settling=False, c_par=0.0)
    n_w = jnp.array([[3.0, 1.0, 7.0]])
    v = jnp.array([0.3, 0.9, 0.5])
    vp_model = float(arr.nodes(arr.program(n_w, key=None), v, key=None)[0][0])
    cu = arr.c_u
    lines, k = [], 0
    for i, (ni, vi) in enumerate(zip([3, 1, 7], [0.3, 0.9, 0.5])):
        for units, ic in ((ni, vi), (7 - ni, 0.0)):
            if units == 0:
                continue
            lines += [f"C{k} n{k} 0 {units * cu!r} IC={ic!r}", f"R{k} n{k} sum 1k"]
            k += 1
    lines.append("Csum sum 0 1e-21 IC=0")
    res = run_tran("\n".join(lines), step=1e-13, stop=2e-11, vectors=["v(sum)"])
    v_sp = value_at(res, "v(sum)", 2e-11)
    exact = cu * (3 * 0.3 + 1 * 0.9 + 7 * 0.5) / (21 * cu)
    assert abs(vp_model - exact) < 1e-12
    assert abs(v_sp - vp_model) < 1e-4 * vp_model


def test_settling_vs_ngspice_and_closed_form():
    arr = _arr(mismatch=False, ktc=False, r_on=2e6, f_clk=1e9)  # tau = 0.6 ns, T/2 = 0.5 ns
    t_half = 0.5 / arr.f_clk
    res = run_tran(f"V1 in 0 DC 1\nR1 in a {arr.r_on!r}\nC1 a 0 {arr.c_u!r} IC=0", step=1e-12, stop=1e-9,
                   vectors=["v(a)"])
    g1 = value_at(res, "v(a)", t_half)
    assert abs(g1 - (1 - math.exp(-t_half / (arr.r_on * arr.c_u)))) < 1e-4
    assert abs(arr.settling_gain - g1**2) < 2e-4
    # the switch changes the output by exactly the settling gain
    n_w = jnp.array([[3.0, -5.0]])
    v = jnp.array([0.4, 0.7])
    on = arr.mac(arr.program(n_w, key=None), v, key=None)
    off = dataclasses.replace(arr, settling=False).mac(arr.program(n_w, key=None), v, key=None)
    np.testing.assert_allclose(np.asarray(on), arr.settling_gain * np.asarray(off), rtol=1e-12)
    assert arr.settling_gain < 0.5


def test_capacitor_mismatch_statistics():
    cap = UnitCapacitor(c_u=300e-18, a_c=3.9e-9, c_density=2e-3)
    n_units = jnp.full((20000,), 4.0)
    c = cap.sample(n_units, key=jax.random.PRNGKey(1))
    rel = np.asarray(c / (4 * cap.c_u) - 1)
    pred = cap.sigma_rel / 2  # sigma_u / sqrt(n)
    assert abs(rel.std() / pred - 1) < 4 * math.sqrt(2 / 20000)
    assert abs(cap.sigma_rel - 3.9e-9 * math.sqrt(2e-3 / 300e-18)) < 1e-15
    with pytest.raises(ValueError, match="c_u"):
        UnitCapacitor(c_u=-1e-15, a_c=1e-9, c_density=1e-3)
    with pytest.raises(ValueError, match="c_par"):
        _arr(c_par=-1e-15)


def test_tile_ideal_limit_and_nonidealities():
    t = SwitchedCapTile.from_card(rows=16)
    w = jax.random.normal(jax.random.PRNGKey(0), (6, 40))
    x = jax.random.normal(jax.random.PRNGKey(1), (40,))
    ti = t.ideal()
    y = jax.jit(lambda w, x: ti.apply(ti.program(w, key=None), x, key=None))(w, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(w @ x), atol=1e-10 * float(jnp.abs(w @ x).max()))
    # quantization only (3-bit weights, 6-bit inputs, no analog errors, no ADC): exact integer arithmetic
    tq = dataclasses.replace(t, adc=None, array=dataclasses.replace(t.array, mismatch=False, ktc=False, settling=False))
    yq = tq.apply(tq.program(w, key=None), x, key=None)
    s_w, s_x = float(jnp.abs(w).max()), float(jnp.abs(x).max())
    wq = jnp.clip(jnp.round(w / s_w * 7), -7, 7) * s_w / 7
    xq = jnp.sign(x) * jnp.round(jnp.abs(x) / s_x * 63) * s_x / 63
    np.testing.assert_allclose(np.asarray(yq), np.asarray(wq @ xq), rtol=1e-10, atol=1e-12)
    # kT/C on: error variance per output = 2 passes * kT/C_tot on each of P and N, in output units
    tk = dataclasses.replace(tq, array=dataclasses.replace(tq.array, ktc=True))
    st = tk.program(w, key=None)
    ks = jax.random.split(jax.random.PRNGKey(2), 4000)
    ys = jax.jit(jax.vmap(lambda k: tk.apply(st, x, key=k)))(ks)
    arr = tk.array
    c_tot = arr.c_total(16)
    gain = arr.c_u * arr.v_ref / (c_tot * 63)
    unit = s_w / 7 * s_x / 63
    nb = 3
    pred = math.sqrt(2 * 2 * nb * K_BOLTZMANN * arr.temperature / c_tot) / gain * unit
    std = np.asarray(ys.std(0))
    assert np.all(np.abs(std / pred - 1) < 4 * math.sqrt(2 / 4000) + 0.01)
    np.testing.assert_allclose(np.asarray(ys.mean(0)), np.asarray(yq), atol=5 * pred / math.sqrt(4000))


def test_calibration_tops_per_watt_and_adc_reduction():
    """Lee & Wong: e_switch is calibrated on 8.7 TOPS/W at 1 GHz (reproduced exactly: a
    calibration, not a check); the 2.5 GHz point is predicted by the fitted card with the
    switches resized for the clock (gate drive ∝ f). Published 7.7; the model gives 8.45
    (+10 %): switch sizing explains about a quarter of the published drop. The bound below
    pins that prediction (regression pin for the miss, which calibration/README.md states):
    it must fall between the published point and the frequency-independent 8.7."""
    spec = importlib.util.spec_from_file_location("fit_sc", ROOT / "calibration/sc_lee_wong2016/fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.check()
    model, pub = res["tops_per_watt_calibration"]
    assert model == pytest.approx(pub, rel=1e-3)
    assert abs(mod.fit()["e_switch"] - _arr().e_switch) < 1e-3 * _arr().e_switch
    pred, pub2 = res["tops_per_watt_check"]
    assert pub2 == 7.7
    assert pred == pytest.approx(8.45, abs=0.01)
    assert pub2 < pred < model
    # the gate drive scales with the clock: 2.5x the 1 GHz drive at 2.5 GHz
    arr = _arr()
    assert float(arr.at_clock(2.5e9).e_drive) == pytest.approx(2.5 * float(arr.e_drive), rel=1e-12)
    assert float(arr.at_clock(2.5e9).settling_gain) == pytest.approx(float(arr.settling_gain), rel=1e-12)
    assert abs(adc_conversion_reduction(256, 12, 256) - 256 / 12) < 1e-12
    assert 21.0 <= adc_conversion_reduction(256, 12, 256) < 22.0
    # splitting the accumulation over blocks costs conversions
    assert adc_conversion_reduction(256, 12, 64) == pytest.approx(256 / 48)
    with pytest.raises(ValueError, match="baseline"):
        adc_conversion_reduction(4, 1, 4, baseline="pixels")
