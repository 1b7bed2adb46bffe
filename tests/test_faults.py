"""Stuck-at faults, on/off ratio, conductance-dependent programming error (RRAM card vs its
calibration data) and write-verify programming."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.arrays import ResistiveCrossbar
from nds.cells._faults import FaultModel
from nds.cells._write_verify import WriteVerify
from nds.converters import UniformADC, UniformDAC
from nds.tiles import CrossbarTile

REPO = pathlib.Path(__file__).resolve().parent.parent


def _cell():
    return nds.load_card("rram_wan2022", nds.cells.RRAM)


def _tile(**kw):
    return CrossbarTile(cell=_cell().ideal(), array=ResistiveCrossbar(rows=64, cols=64),
                        dac=UniformDAC(bits=None), adc=UniformADC(bits=None), drift_compensation=False, **kw)


def test_fault_rates_binomial():
    f = FaultModel(p_sa0=0.02, p_sa1=0.09)
    m = np.asarray(f.sample((200, 200), key=jax.random.key(0)))
    n = m.size
    for code, p in ((1, 0.02), (2, 0.09)):
        frac = np.mean(m == code)
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_stuck_cells_change_output_by_closed_form():
    """w = +1 everywhere (G+ = g_max, G− = g_min), x = 1: E[y_j] = n (1 − p0 − p1)."""
    n_in, n_out, p0, p1 = 60, 50, 0.05, 0.1
    w, x = jnp.ones((n_out, n_in)), jnp.ones(n_in)
    tile = _tile(faults=FaultModel(p_sa0=p0, p_sa1=p1))
    ys = jax.vmap(lambda k: tile.apply(tile.program(w, key=k), x, key=None))(jax.random.split(jax.random.key(1), 20))
    ys = np.asarray(ys).ravel()
    # per output: n_in cells, each contributes 1 − B(p0) − B(p1) (independent devices)
    var = n_in * (p0 * (1 - p0) + p1 * (1 - p1))
    assert abs(ys.mean() - n_in * (1 - p0 - p1)) < 4 * math.sqrt(var / ys.size)
    # no faults: exactly W x; faults=None and zero rates give the same bits as before
    y_clean = _tile().apply(_tile().program(w, key=jax.random.key(2)), x, key=None)
    y_zero = _tile(faults=FaultModel()).apply(_tile(faults=FaultModel()).program(w, key=jax.random.key(2)), x, key=None)
    np.testing.assert_array_equal(y_clean, y_zero)
    np.testing.assert_allclose(y_clean, n_in, rtol=1e-12)


def test_stuck_open_is_zero_and_stuck_cells_do_not_drift():
    f = FaultModel(p_sa0=1.0, sa0_value="zero")
    g, nu, fm = f.apply(jnp.full((4, 4), 5e-6), jnp.full((4, 4), 0.05), 1e-6, 40e-6, key=jax.random.key(0))
    np.testing.assert_array_equal(g, 0.0)
    np.testing.assert_array_equal(nu, 0.0)
    with pytest.raises(ValueError, match="p_sa1"):
        FaultModel(p_sa1=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        FaultModel(p_sa0=0.6, p_sa1=0.6)


def test_on_off_ratio():
    c = _cell().with_on_off_ratio(10.0)
    assert c.on_off_ratio == pytest.approx(10.0) and float(c.g_min) == pytest.approx(float(c.g_max) / 10)
    # the differential pair cancels g_min in the ideal limit
    w = jax.random.normal(jax.random.key(3), (8, 12))
    x = jax.random.normal(jax.random.key(4), (12,))
    t = _tile()
    t10 = eqx.tree_at(lambda t: t.cell, t, c.ideal())
    np.testing.assert_allclose(t10.apply(t10.program(w, key=None), x, key=None), w @ x, rtol=1e-10)
    with pytest.raises(ValueError, match="ratio"):
        _cell().with_on_off_ratio(1.0)


def test_rram_card_matches_its_calibration_data_and_sigma_is_conductance_dependent():
    spec = importlib.util.spec_from_file_location("fit", REPO / "calibration/rram_wan2022/fit.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    g_us, s_us = fit.load()
    c = _cell()
    model = np.asarray(c.prog_sigma(jnp.asarray(g_us * 1e-6))) * 1e6
    assert np.max(np.abs(model - s_us)) < 0.45  # µS, the quadratic's worst deviation from the cubic
    # sampled programming error follows prog_sigma at two conductances
    for g in (5e-6, 30e-6):
        gp, _ = c.program(jnp.full((20000,), g), key=jax.random.key(int(g * 1e7)))
        sd = float(jnp.std(gp))
        want = float(c.prog_sigma(jnp.asarray(g)))
        assert sd == pytest.approx(want, rel=4 / math.sqrt(2 * 20000))
    assert float(c.prog_sigma(jnp.asarray(15e-6))) > 1.3 * float(c.prog_sigma(jnp.asarray(0.0)))


def _wv(**kw):
    base = dict(tol=1e-6, max_pulses=40, gain=0.5, gain_c2c=0.0, step_noise=0.0, first_sigma=5e-6,
                e_pulse=5e-12, e_verify=1e-12, t_pulse=1e-6)
    base.update(kw)
    return WriteVerify(**base)


def test_write_verify_noise_free_pulse_counts_closed_form():
    wv = _wv()
    g_t = jnp.linspace(12e-6, 28e-6, 500)
    res = jax.jit(lambda g: wv.program(g, 1e-6, 40e-6, key=jax.random.key(7)))(g_t)
    # reproduce the first pulse (its named stream, nds._keys) for the initial error
    from nds._keys import stream

    k0 = stream(jax.random.key(7), "first_pulse")
    e1 = np.abs(np.clip(g_t + 5e-6 * jax.random.normal(k0, g_t.shape, g_t.dtype), 1e-6, 40e-6) - g_t)
    with np.errstate(divide="ignore"):
        k = np.where(e1 < 1e-6, 0, np.ceil(np.log(1e-6 / e1) / np.log(0.5)))
    np.testing.assert_array_equal(np.asarray(res.pulses), 1 + k)
    assert bool(jnp.all(res.converged)) and float(jnp.max(jnp.abs(res.g - g_t))) < 1e-6
    assert float(res.energy_j) == pytest.approx(float(jnp.sum(res.pulses)) * 6e-12, rel=1e-12)
    hist = WriteVerify.pulse_histogram(res.pulses, 40)
    assert hist.sum() == 500 and hist[0] == int(np.sum(e1 < 1e-6))


def test_write_verify_card_in_tile_and_pulse_limit():
    wv = nds.load_card("rram_wan2022_write_verify", WriteVerify)
    g_t = jnp.full((4000,), 20e-6)
    res = wv.program(g_t, 1e-6, 39.26e-6, key=jax.random.key(8))
    conv = np.asarray(res.converged)
    assert conv.mean() > 0.95 and float(jnp.max(jnp.abs(res.g - g_t)[conv])) < 1e-6
    assert int(jnp.max(res.pulses)) <= 30 and float(jnp.mean(res.pulses)) > 1.5
    # one pulse allowed: no verify loop, the first-pulse spread remains
    r1 = dataclasses.replace(wv, max_pulses=1).program(g_t, 1e-6, 39.26e-6, key=jax.random.key(8))
    assert float(jnp.std(r1.g)) == pytest.approx(5e-6, rel=0.1)
    np.testing.assert_array_equal(r1.pulses, 1)
    # inside a tile: write-verify replaces the one-shot error
    tile = CrossbarTile(cell=_cell(), array=ResistiveCrossbar(rows=32, cols=32), write_verify=wv)
    w = jax.random.normal(jax.random.key(9), (16, 20))
    st = tile.program(w, key=jax.random.key(10))
    g_target, _ = tile.mapping.to_conductance(w, tile.cell.g_min, tile.cell.g_max, tile.cell.levels)
    assert float(jnp.mean(jnp.abs(st.g_prog - g_target) < 1e-6)) > 0.95
