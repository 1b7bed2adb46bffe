"""Exact IR drop in a crossbar (nds.arrays._ir_drop) against closed forms, a dense
Kirchhoff check, SciPy's sparse direct solve and ngspice."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _spice import (  # noqa: E402
    crossbar_netlist,
    crossbar_nodal_system,
    crossbar_spsolve,
    run_op,
)

from nds.arrays._ir_drop import (  # noqa: E402
    crossbar_currents,
    crossbar_currents_first_order,
    crossbar_currents_nonlinear,
    crossbar_node_voltages,
    crossbar_transfer,
    sneak_path_currents as _sneak_path_currents,
)

# Shared compiled functions (resistances traced: one compilation per array shape).
_currents = jax.jit(crossbar_currents)
_transfer = jax.jit(crossbar_transfer)
_nodes = jax.jit(crossbar_node_voltages)
_sneak = jax.jit(_sneak_path_currents, static_argnames=("scheme", "iv", "max_steps"))


def sneak_path_currents(g, row, col, **kw):
    if not (0 <= row < np.shape(g)[0]):  # checked eagerly by the unjitted function
        return _sneak_path_currents(g, row, col, **kw)
    return _sneak(g, row, col, **kw)


def _case(rows, cols, seed):
    rng = np.random.default_rng(seed)
    g = rng.uniform(1e-6, 1e-4, (rows, cols))
    v = rng.uniform(0.0, 0.3, rows)
    return g, v


R_SETS = {
    "wires_only": dict(r_row=2.5, r_col=2.5, r_in=0.0, r_out=0.0),
    "all_nonzero": dict(r_row=1.0, r_col=3.0, r_in=50.0, r_out=20.0),
    "shorted_rows": dict(r_row=0.0, r_col=5.0, r_in=10.0, r_out=0.0),
}


# ----------------------------------------------------------------------------- ngspice


@pytest.mark.parametrize("shape", [(4, 4), (8, 16), (32, 32)])
@pytest.mark.parametrize("rset", sorted(R_SETS))
def test_matches_ngspice(shape, rset):
    rs = R_SETS[rset]
    g, v = _case(*shape, seed=shape[0] * 100 + shape[1])
    lines, names = crossbar_netlist(g, v, **rs)
    spice = run_op(lines, currents=names)
    ref = np.array([spice[f"i({n})"] for n in names])
    out = np.asarray(_currents(g, v, **rs))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)
    # the IR drop is real here: the ideal v @ g is off by far more than the tolerance
    assert np.max(np.abs(v @ g / ref - 1)) > 1e-4


def test_per_segment_resistances_match_ngspice():
    rng = np.random.default_rng(7)
    g, v = _case(5, 6, seed=8)
    rs = dict(
        r_row=rng.uniform(0.5, 5.0, (5, 5)),
        r_col=rng.uniform(0.5, 5.0, (4, 6)),
        r_in=rng.uniform(0.0, 30.0, 5),
        r_out=rng.uniform(0.0, 30.0, 6),
    )
    rs["r_row"][2, 3] = 0.0  # one shorted segment
    lines, names = crossbar_netlist(g, v, **rs)
    spice = run_op(lines, currents=names)
    ref = np.array([spice[f"i({n})"] for n in names])
    np.testing.assert_allclose(np.asarray(crossbar_currents(g, v, **rs)), ref, rtol=1e-9)


# ------------------------------------------------------------------------- closed forms


def test_zero_resistance_is_exactly_v_at_g():
    g, _ = _case(16, 8, seed=1)
    v = np.random.default_rng(2).uniform(0, 0.3, (3, 16))
    z = dict(r_row=0.0, r_col=0.0, r_in=0.0, r_out=0.0)
    np.testing.assert_allclose(np.asarray(_currents(g, v, **z)), v @ g, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(_transfer(g, **z)), g, rtol=1e-12)


@pytest.mark.parametrize(
    "rs",
    [
        dict(r_in=100.0, r_row=50.0, r_out=30.0, r_col=7.0),
        dict(r_in=0.0, r_row=50.0, r_out=0.0, r_col=7.0),
        dict(r_in=100.0, r_row=0.0, r_out=30.0, r_col=0.0),
    ],
)
def test_one_row_two_columns_closed_form(rs):
    """1 × 2 array, by hand. Cell j in series with r_out (r_col carries no current when
    rows = 1) is the conductance h_j = g_j / (1 + g_j r_out). Node 1 hangs off node 0
    through r_row: k_1 = h_1 / (1 + r_row h_1). Node 0 is fed from v through r_in and
    loaded by h_0 + k_1: u_0 = v / (1 + r_in (h_0 + k_1)). Sense currents: the cell
    currents, I_0 = h_0 u_0 and I_1 = k_1 u_0."""
    g = np.array([[1e-3, 2e-3]])
    v = np.array([0.25])
    h = g[0] / (1 + g[0] * rs["r_out"])
    k1 = h[1] / (1 + rs["r_row"] * h[1])
    u0 = v[0] / (1 + rs["r_in"] * (h[0] + k1))
    expected = np.array([h[0] * u0, k1 * u0])
    np.testing.assert_allclose(np.asarray(crossbar_currents(g, v, **rs)), expected, rtol=1e-13)


# ----------------------------------------------------------------- Kirchhoff and SciPy


def test_kirchhoff_residual_dense():
    rng = np.random.default_rng(3)
    rows, cols = 6, 5
    g, v = _case(rows, cols, seed=4)
    rs = dict(
        r_row=rng.uniform(0.5, 20.0, (rows, cols - 1)),
        r_col=rng.uniform(0.5, 20.0, (rows - 1, cols)),
        r_in=rng.uniform(1.0, 50.0, rows),
        r_out=rng.uniform(1.0, 50.0, cols),
    )
    nodes = crossbar_node_voltages(g, v, **rs)
    G, B = crossbar_nodal_system(g, **rs)
    G = G.toarray()
    B = B.toarray()
    x = np.concatenate([np.ravel(nodes.word_line), np.ravel(nodes.bit_line)])
    residual = G @ x - B @ v
    scale = np.abs(G) @ np.abs(x) + np.abs(B) @ np.abs(v)  # sum of |branch currents|
    assert np.max(np.abs(residual) / scale) < 1e-12
    # and the sense currents are r_out's currents, the sum of each column's cells
    np.testing.assert_allclose(
        np.asarray(nodes.currents), np.asarray(nodes.bit_line)[-1] / rs["r_out"], rtol=1e-12
    )
    np.testing.assert_allclose(
        np.asarray(nodes.currents), np.asarray(nodes.cell_currents).sum(0), rtol=1e-12
    )


def test_matches_scipy_sparse_direct_medium():
    g, v = _case(48, 40, seed=5)
    rs = dict(r_row=2.0, r_col=1.5, r_in=3.0, r_out=4.0)
    ref = crossbar_spsolve(g, v, **rs)
    np.testing.assert_allclose(np.asarray(_currents(g, v, **rs)), ref, rtol=1e-11)


def test_transfer_equals_batched_solves():
    g, _ = _case(12, 9, seed=6)
    v = np.random.default_rng(9).uniform(0, 0.3, (3, 2, 12))
    rs = R_SETS["all_nonzero"]
    M = np.asarray(_transfer(g, **rs))
    nodes = _nodes(g, v, **rs)  # independent path: forward + backward sweeps per vector
    assert nodes.currents.shape == (3, 2, 9)
    np.testing.assert_allclose(v @ M, np.asarray(nodes.currents), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(_currents(g, v, **rs)), v @ M, rtol=1e-12)


def test_float32_works():
    g, v = _case(16, 16, seed=10)
    rs = R_SETS["all_nonzero"]
    out = _currents(jnp.asarray(g, jnp.float32), jnp.asarray(v, jnp.float32), **rs)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), np.asarray(_currents(g, v, **rs)), rtol=1e-4)


# ------------------------------------------------------------------------- gradients


def test_gradients_match_finite_differences():
    g, v = _case(4, 3, seed=11)
    g = g * 20  # stronger IR drop so every resistance matters
    w = np.random.default_rng(12).normal(size=3)
    r0 = dict(r_row=3.0, r_col=4.0, r_in=20.0, r_out=10.0)

    @jax.jit
    def loss(g, v, r_row, r_col, r_in, r_out):
        i = crossbar_currents(g, v, r_row=r_row, r_col=r_col, r_in=r_in, r_out=r_out)
        return jnp.sum(i * w)

    args = [g, v, *r0.values()]
    grads = jax.grad(loss, argnums=tuple(range(6)))(*args)
    for k, (a, gr) in enumerate(zip(args, grads)):
        a = np.asarray(a, dtype=float)
        fd = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            h = 1e-5 * (abs(a[idx]) if a[idx] != 0 else 1.0)
            ap, am = a.copy(), a.copy()
            ap[idx] += h
            am[idx] -= h
            lp = loss(*args[:k], ap, *args[k + 1 :])
            lm = loss(*args[:k], am, *args[k + 1 :])
            fd[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(np.asarray(gr), fd, rtol=1e-6, atol=1e-9 * np.max(np.abs(fd)))
        assert np.max(np.abs(fd)) > 0


# ----------------------------------------------------------------------------- errors


def test_errors():
    g, v = _case(4, 3, seed=13)
    with pytest.raises(ValueError, match="r_row"):
        crossbar_currents(g, v, r_row=-1.0, r_col=1.0)
    with pytest.raises(ValueError, match="r_out"):
        crossbar_currents(g, v, r_row=1.0, r_col=1.0, r_out=np.ones(5))
    with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., rows\)"):
        crossbar_currents(g, v[:3], r_row=1.0, r_col=1.0)
    with pytest.raises(ValueError, match="g must be a"):
        crossbar_transfer(g[0], r_row=1.0, r_col=1.0)
    with pytest.raises(ValueError, match="g must be >= 0"):
        crossbar_transfer(-g, r_row=1.0, r_col=1.0)
    bad = v.copy()
    bad[1] = np.nan
    with pytest.raises(Exception, match="v contains NaN"):
        jax.block_until_ready(_currents(g, bad, r_row=1.0, r_col=1.0, r_in=0.0, r_out=0.0))
    with pytest.raises(Exception, match="r_col must be >= 0"):
        jax.block_until_ready(_currents(g, v, r_row=1.0, r_col=-1.0, r_in=0.0, r_out=0.0))


# ------------------------------------------------------------------------ first order


def test_first_order_error_is_second_order_in_r():
    g, v = _case(16, 16, seed=14)
    errs = []
    for r in (0.4, 0.2):
        rs = dict(r_row=r, r_col=r, r_in=0.0, r_out=0.0)
        exact = np.asarray(_currents(g, v, **rs))
        approx = np.asarray(crossbar_currents_first_order(g, v, **rs))
        # the first-order model captures the first-order drop: far better than ideal
        assert np.max(np.abs(approx - exact)) < 0.05 * np.max(np.abs(v @ g - exact))
        errs.append(np.max(np.abs(approx - exact)))
    assert 3.6 < errs[0] / errs[1] < 4.4  # halving r quarters the error


# -------------------------------------------------------------------------- non-linear

_NL_RS = dict(r_row=5.0, r_col=5.0, r_in=20.0, r_out=10.0)
_NL_SHAPE = (5, 4)  # every non-linear test uses this shape: one compilation per law

_nl_jit = jax.jit(
    crossbar_currents_nonlinear, static_argnames=("iv", "return_info", "max_steps")
)


def _nl(g, v, *, return_info=False, **kw):
    out, info = _nl_jit(g, v, **_NL_RS, **kw, return_info=True)  # share one compilation
    return (out, info) if return_info else out


def test_nonlinear_linear_law_equals_linear_solve():
    g, v = _case(*_NL_SHAPE, seed=15)
    np.testing.assert_allclose(
        np.asarray(_nl(g, v, iv="linear")), np.asarray(_currents(g, v, **_NL_RS)), rtol=1e-10
    )


def test_nonlinear_small_signal_limit_and_direction():
    g, v = _case(*_NL_SHAPE, seed=16)
    lin = np.asarray(_currents(g, v, **_NL_RS))
    # small V: sinh(x)/x - 1 ~ x^2/6 = 1.6e-7 at x = 1e-3
    small = np.asarray(_nl(g, v * 1e-3, iv="sinh", v0=0.3))
    np.testing.assert_allclose(small, lin * 1e-3, rtol=3e-7)
    # read voltages comparable to v0: sinh law conducts more than linear
    big, info = _nl(g, v, iv="sinh", v0=0.1, return_info=True)
    big = np.asarray(big)
    assert np.all(big > lin * 1.05)
    assert int(info.num_steps) < 20
    # the solution satisfies the cell law: currents = sum of sinh(cell voltage) per column
    x = np.asarray(info.cell_voltages)
    np.testing.assert_allclose(big, (g * 0.1 * np.sinh(x / 0.1)).sum(0), rtol=1e-12)


def test_nonlinear_matches_ngspice_bsource():
    g, v = _case(*_NL_SHAPE, seed=17)
    g = g * 5
    v0 = 0.1

    def cell(name, a, b, gg):
        return f"B{name} {a} {b} I = {gg:.17g}*{v0}*sinh((v({a})-v({b}))/{v0})"

    lines, names = crossbar_netlist(g, v, **_NL_RS, cell=cell)
    spice = run_op(lines, currents=names)
    ref = np.array([spice[f"i({n})"] for n in names])
    out = np.asarray(_nl(g, v, iv="sinh", v0=v0))
    np.testing.assert_allclose(out, ref, rtol=1e-8)
    lin = np.asarray(_currents(g, v, **_NL_RS))
    assert np.all(ref > lin * 1.05)


def test_nonlinear_gradients_and_nonconvergence():
    """Implicit-function-theorem gradients against central differences."""
    g, v = _case(*_NL_SHAPE, seed=18)
    g = g * 10
    w = jnp.array([1.0, -2.0, 0.5, 0.3])

    def loss(g, v, r_row):
        rs = dict(_NL_RS, r_row=r_row)
        i = crossbar_currents_nonlinear(g, v, **rs, iv="sinh", v0=0.1)
        return jnp.sum(i * w)

    # one compilation serves the gradient and the finite differences
    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    _, (gg, gv, gr) = vg(g, v, 5.0)

    def f(*a):
        return float(vg(*a)[0])

    rng = np.random.default_rng(19)
    dg = rng.normal(size=g.shape) * g * 1e-4
    fd = (f(g + dg, v, 5.0) - f(g - dg, v, 5.0)) / 2
    np.testing.assert_allclose(np.sum(np.asarray(gg) * dg), fd, rtol=1e-6)
    dv = rng.normal(size=v.shape) * 1e-6
    fd = (f(g, v + dv, 5.0) - f(g, v - dv, 5.0)) / 2
    np.testing.assert_allclose(np.sum(np.asarray(gv) * dv), fd, rtol=1e-6)
    fd = (f(g, v, 5.0 + 1e-4) - f(g, v, 5.0 - 1e-4)) / 2e-4
    np.testing.assert_allclose(float(gr), fd, rtol=1e-6)
    with pytest.raises(Exception, match="(?i)maximum number of steps|max_steps"):
        jax.block_until_ready(_nl(g, v, iv="sinh", v0=0.05, max_steps=1))


# ------------------------------------------------------------------------- sneak paths


def test_sneak_2x2_floating_closed_form():
    """Read (0,0) with word line 1 and bit line 1 floating: besides the selected cell, the
    sneak path WL0 -g01-> BL1 -g11-> WL1 -g10-> BL0 is three conductances in series."""
    g = np.array([[2e-5, 5e-5], [7e-5, 3e-5]])
    V = 0.2
    res = sneak_path_currents(g, 0, 0, v_read=V, scheme="floating")
    series = 1 / (1 / g[0, 1] + 1 / g[1, 1] + 1 / g[1, 0])
    np.testing.assert_allclose(float(res.i_sense), V * (g[0, 0] + series), rtol=1e-12)
    np.testing.assert_allclose(float(res.i_sneak), V * series, rtol=1e-10)
    np.testing.assert_allclose(float(res.i_cell), V * g[0, 0], rtol=1e-14)


def test_sneak_2x2_floating_sinh_series():
    """The same three-cell sneak path with sinh cells: one current I through all three,
    V = sum_k v0 asinh(I / (g_k v0)), solved by bisection."""
    g = np.array([[2e-5, 5e-5], [7e-5, 3e-5]])
    V, v0 = 0.6, 0.1
    res = sneak_path_currents(g, 0, 0, v_read=V, scheme="floating", iv="sinh", v0=v0)
    gs = [g[0, 1], g[1, 1], g[1, 0]]
    I = scipy.optimize.brentq(
        lambda I: sum(v0 * np.arcsinh(I / (gk * v0)) for gk in gs) - V, 0, 1, xtol=1e-30, rtol=1e-15
    )
    np.testing.assert_allclose(float(res.i_sneak), I, rtol=1e-9)
    # selector non-linearity suppresses the sneak path relative to the linear cell
    lin = sneak_path_currents(g, 0, 0, v_read=V, scheme="floating")
    assert float(res.i_sneak / res.i_cell) < 0.5 * float(lin.i_sneak / lin.i_cell)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_sneak_grows_with_array_size(n):
    """Uniform n×n, floating: all unselected word lines sit at one voltage, all unselected
    bit lines at another, so the sneak path is (n-1) g, (n-1)^2 g and (n-1) g in series:
    g_sneak = g (n-1)^2 / (2n - 1), growing ~ n g / 2."""
    g0, V = 4e-5, 0.2
    res = sneak_path_currents(np.full((n, n), g0), n - 1, 0, v_read=V, scheme="floating")
    np.testing.assert_allclose(float(res.i_sneak), V * g0 * (n - 1) ** 2 / (2 * n - 1), rtol=1e-10)


def test_sneak_half_bias_schemes():
    """V/2: the n-1 half-selected cells on the selected bit line see V/2, so with sinh
    cells i_sneak / i_cell = (n-1) sinh(V/2v0) / sinh(V/v0) = (n-1) / (2 cosh(V/2v0)),
    falling as the non-linearity grows (v0 shrinks). V/3: they see V/3."""
    n, g0, V = 6, 3e-5, 0.5
    g = np.full((n, n), g0)
    ratios = []
    for v0 in (1.0, 0.2, 0.05):
        r = sneak_path_currents(g, 2, 3, v_read=V, scheme="v/2", iv="sinh", v0=v0)
        ratio = float(r.i_sneak / r.i_cell)
        np.testing.assert_allclose(ratio, (n - 1) / (2 * np.cosh(V / (2 * v0))), rtol=1e-12)
        ratios.append(ratio)
    assert ratios[0] > ratios[1] > ratios[2]
    r3 = sneak_path_currents(g, 2, 3, v_read=V, scheme="v/3")
    np.testing.assert_allclose(float(r3.i_sneak), (n - 1) * g0 * V / 3, rtol=1e-12)
    r0 = sneak_path_currents(g, 2, 3, v_read=V, scheme="ground")
    assert float(r0.i_sneak) == 0.0
    with pytest.raises(ValueError, match="scheme"):
        sneak_path_currents(g, 0, 0, v_read=V, scheme="v/4")
    with pytest.raises(ValueError, match="row"):
        sneak_path_currents(g, 9, 0, v_read=V)
