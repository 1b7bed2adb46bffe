"""Wire models inside the crossbar tile: exact IR drop, gradients through it, wire energy,
non-linear cells, and IR-drop-aware training."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import rel_err

import nds
from nds.arrays import ResistiveCrossbar, crossbar_transfer
from nds.arrays._crossbar import NonlinearWires, ResistiveWires
from nds.converters import UniformADC, UniformDAC
from nds.arrays import blocks
from nds.tiles import CrossbarTile

N_OUT, N_IN = 12, 20
W = jax.random.normal(jax.random.key(10), (N_OUT, N_IN))
X = jax.random.uniform(jax.random.key(11), (N_IN,), minval=-1.0, maxval=1.0)


def _cell():
    return nds.load_card("rram_wan2022", nds.cells.RRAM).ideal()


def _tile(wires, rows=8, cols=8, cell=None):
    return CrossbarTile(cell=cell or _cell(), array=ResistiveCrossbar(rows=rows, cols=cols, wires=wires),
                        dac=UniformDAC(bits=None), adc=UniformADC(bits=None), drift_compensation=False)


@eqx.filter_jit
def _run(tile, w=W, x=X):
    return tile.apply(tile.program(w, key=None), x, key=None)


def test_zero_resistance_equals_ideal_wires():
    y0 = _run(_tile(nds.arrays.IdealWires()))
    y1 = _run(_tile(ResistiveWires(r_row=0.0, r_col=0.0)))
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y0, W @ X, rtol=1e-10)


@pytest.mark.parametrize("fid", ["exact", "first_order"])
def test_tile_ir_drop_equals_blockwise_reference(fid):
    """Turning IR drop on changes the output by exactly what per-array solves predict."""
    wires = ResistiveWires(r_row=2.0, r_col=3.0, r_in=5.0, r_out=7.0, fidelity=fid)
    tile = _tile(wires)
    st = tile.program(W, key=None)
    y = tile.apply(st, X, key=None)
    c = tile.cell
    # reference: pad every array to 8 x 8 and solve it in full (no corner reduction)
    fn = crossbar_transfer if fid == "exact" else nds.arrays.crossbar_transfer_first_order
    v = X / jnp.max(jnp.abs(X)) * c.v_read
    vb = jnp.pad(v, (0, 24 - N_IN)).reshape(3, 8)
    jfn = jax.jit(lambda g: fn(g, r_row=2.0, r_col=3.0, r_in=5.0, r_out=7.0))
    i = jnp.zeros(16)
    for sign, g in ((1, st.g[0]), (-1, st.g[1])):
        gb = blocks(g, 8, 8)
        for b in range(3):
            for k in range(2):
                m = jfn(gb[b, k])
                i = i.at[8 * k: 8 * k + 8].add(sign * (vb[b] @ m))
    y_ref = i[:N_OUT] / (c.v_read * (c.g_max - c.g_min)) * st.w_scale * jnp.max(jnp.abs(X))
    assert rel_err(y, y_ref) < 1e-10
    assert rel_err(y, W @ X) > 1e-3  # and IR drop does change the result


def test_gradient_through_exact_solve_matches_finite_differences():
    wires = ResistiveWires(r_row=5.0, r_col=5.0, r_in=10.0, r_out=10.0)
    tile = _tile(wires, rows=8, cols=4)
    w = W[:5, :10]
    x = X[:10]
    cvec = jnp.arange(1.0, 6.0)

    @jax.jit
    def loss(w, r):
        t = eqx.tree_at(lambda t: t.array.wires.r_row, tile, r)
        return jnp.dot(cvec, t.apply(t.program(w, key=None), x, key=None))

    gw, gr = jax.jit(jax.grad(loss, argnums=(0, 1)))(w, jnp.asarray(5.0))
    h = 1e-6
    for idx in [(0, 0), (2, 7), (4, 9), (1, 3)]:
        e = jnp.zeros_like(w).at[idx].set(h)
        fd = (loss(w + e, 5.0) - loss(w - e, 5.0)) / (2 * h)  # float64
        assert float(gw[idx]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    fd_r = (loss(w, 5.0 + 1e-4) - loss(w, 5.0 - 1e-4)) / 2e-4
    assert float(gr) == pytest.approx(float(fd_r), rel=1e-6)
    assert float(gr) != 0.0


def test_wire_power_uniform_formula_against_exact_solve():
    rows, cols, g, v, r = 16, 12, 20e-6, 0.2, 0.05  # g r n^2 ~ 3e-4
    wires = ResistiveWires(r_row=r, r_col=2 * r)
    exact = float(wires.wire_power(jnp.full((rows, cols), g), jnp.full((rows,), v)))
    approx = wires.wire_power_uniform(g, v, rows, cols)
    # closed form: (g v)^2 [rows r_row sum k^2 (k<cols) + cols r_col sum k^2 (k<rows)]
    s = lambda n: (n - 1) * n * (2 * n - 1) / 6
    assert approx == pytest.approx((g * v) ** 2 * (rows * r * s(cols) + cols * 2 * r * s(rows)), rel=1e-12)
    assert approx >= exact  # IR drop lowers the currents: first order is an upper bound
    assert approx == pytest.approx(exact, rel=3 * g * 2 * r * rows**2)
    # partially used array: used corner plus the bit-line segments below it
    ex2 = float(wires.wire_power(jnp.zeros((rows, cols)).at[:5, :7].set(g), jnp.full((rows,), v)))
    ap2 = wires.wire_power_uniform(g, v, rows, cols, 5, 7)
    assert ap2 == pytest.approx(ex2, rel=1e-3)


def test_cost_reports_wire_energy():
    tile_i = _tile(nds.arrays.IdealWires(), rows=64, cols=64)
    tile_r = _tile(ResistiveWires(r_row=2.5, r_col=2.5), rows=64, cols=64)
    ci, cr = tile_i.cost((N_OUT, N_IN), 10, w=W), tile_r.cost((N_OUT, N_IN), 10, w=W)
    assert ci.counts["wire_energy_j"] == 0.0
    c = tile_r.cell
    g_t, _ = tile_r.mapping.to_conductance(W, c.g_min, c.g_max, c.levels)
    g_mean = float(jnp.mean(g_t))
    # the ISAAC converter card's DAC is bit-serial: one full read per input bit (16 for an
    # unbounded DAC), each dissipating in the wires
    cycles = cr.counts["input_cycles"]
    assert cycles == (tile_r.dac.bits or 16)
    e = cycles * 2 * 10 * float(c.t_read) * tile_r.array.wires.wire_power_uniform(g_mean, float(c.v_read), 64, 64,
                                                                                  N_IN, N_OUT)
    assert cr.counts["wire_energy_j"] == pytest.approx(e, rel=1e-12) and e > 0
    assert cr.energy_j["array"] == pytest.approx(ci.energy_j["array"] + e, rel=1e-12)


def test_nonlinear_wires_linear_law_equals_resistive_and_sinh_closed_form():
    w, x = W[:4, :6], X[:6]
    lin = _run(_tile(ResistiveWires(r_row=3.0, r_col=3.0)), w, x)
    nl = _run(_tile(NonlinearWires(r_row=3.0, r_col=3.0, iv="linear")), w, x)
    np.testing.assert_allclose(nl, lin, rtol=1e-8)
    # zero wire resistance: every cell sees its word-line voltage, I = g v0 sinh(v/v0)
    v0 = 0.1
    tile = _tile(NonlinearWires(r_row=0.0, r_col=0.0, iv="sinh", v0=v0))
    st = eqx.filter_jit(lambda t, w: t.program(w, key=None))(tile, w)
    y = _run(tile, w, x)
    c = tile.cell
    v = x / jnp.max(jnp.abs(x)) * c.v_read
    i = (v0 * jnp.sinh(v / v0)) @ (st.g[0] - st.g[1])
    y_ref = i / (c.v_read * (c.g_max - c.g_min)) * st.w_scale * jnp.max(jnp.abs(x))
    assert rel_err(y, y_ref) < 1e-9
    assert rel_err(y, w @ x) > 0.1  # sinh at v_read = 2 v0 is far from linear


def test_wires_validation():
    with pytest.raises(ValueError, match="r_row"):
        ResistiveWires(r_row=-1.0, r_col=0.0)
    with pytest.raises(ValueError, match="fidelity"):
        ResistiveWires(r_row=1.0, r_col=1.0, fidelity="approx")
    with pytest.raises(ValueError, match="v0"):
        NonlinearWires(r_row=1.0, r_col=1.0, v0=0.0)


def test_ir_drop_aware_training_recovers_accuracy(digits):
    """Logistic regression on 8x8 digits on one 64 x 16 array with heavy IR drop (100 Ω
    segments, g·r·n² ≈ 8): the digital weights lose accuracy (0.94 → 0.84); 60 steps
    through the exact solve win most of it back (0.92)."""
    x, y, xt, yt = digits
    key = jax.random.key(0)
    model = nds.nn.models.mlp((64, 10), key=key)
    model, _ = nds.train.fit(model, x, y, key=jax.random.key(1), steps=300, batch_size=64,
                             optimizer=optax.adam(1e-2))
    acc_dig = float(nds.train.accuracy(model, xt, yt, key=None))
    tile = CrossbarTile(cell=_cell(), array=ResistiveCrossbar(rows=64, cols=16,
                                                              wires=ResistiveWires(r_row=100.0, r_col=100.0)),
                        dac=UniformDAC(bits=None), adc=UniformADC(bits=None), drift_compensation=False)
    analog = nds.analogize(model, tile)
    acc = lambda m: float(nds.train.accuracy(nds.program(m, key=None), xt, yt, key=None))
    before = acc(analog)
    tuned, _ = nds.train.fit(analog, x, y, key=jax.random.key(2), steps=60, batch_size=64, noise_aware=True,
                             optimizer=optax.adam(3e-3))
    after = acc(tuned)
    assert before < acc_dig - 0.05  # IR drop costs accuracy
    assert after > before + 0.5 * (acc_dig - before)  # training recovers at least half of it
