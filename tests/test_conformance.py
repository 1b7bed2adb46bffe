"""Conformance: every cell, converter and tile through the same checks (DESIGN.md, "Tests").

jit (``eqx.filter_jit``), vmap over keys, finite gradients w.r.t. weights and input (and close
to the exact ones), same key ⇒ bit-identical output, different key ⇒ a difference with the
predicted spread, and the ideal limit (no noise, unbounded bits) equal to ``W @ x`` in
float64 to 1e-10 relative, for a matrix partitioned over several arrays.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import clipped_normal_moments, rel_err, std_standard_error

import nds
from nds.arrays import ResistiveCrossbar
from nds.converters import UniformADC, UniformDAC
from nds.dataflow._mapper import PEArray
from nds.memory import DRAM2D
from nds.tiles import CrossbarTile, DigitalTile, PEArrayTile

N_OUT, N_IN = 24, 70          # on 32 × 16 arrays: 3 row blocks × 2 column blocks
ROWS, COLS = 32, 16
W = jax.random.normal(jax.random.key(100), (N_OUT, N_IN))
X = jax.random.normal(jax.random.key(101), (N_IN,))
C = jax.random.normal(jax.random.key(102), (N_OUT,))  # cotangent for gradients


def _pcm():
    return nds.load_card("pcm_joshi2020", nds.cells.PCM)


def _rram():
    return nds.load_card("rram_generic", nds.cells.RRAM)


def _crossbar(cell, **kw):
    return CrossbarTile(cell=cell, array=ResistiveCrossbar(rows=ROWS, cols=COLS), **kw)


def _pe(**kw):
    return PEArrayTile(pe=nds.load_card("pe_eyeriss", PEArray), memory=nds.load_card("mem_lpddr3", DRAM2D), **kw)


def _hw(kind, **kw):
    from nds.hardware import build_tile, entry_defaults

    return build_tile(entry_defaults(dict(name=kind, kind=kind, **kw), "test", 0))


def _isaac():
    from nds.tiles import BitSlicedTile, BitSliceDesign

    return BitSlicedTile.from_design(nds.load_card("isaac", BitSliceDesign), _rram())


TILES = {
    "pcm": lambda: _crossbar(_pcm(), out_noise=0.02),
    "rram": lambda: _crossbar(_rram(), out_noise=0.02),
    "digital": lambda: DigitalTile(bits_weight=8, bits_activation=8),
    "pe_array": lambda: _pe(bits_weight=8, bits_activation=8),
    "bitsliced_isaac": _isaac,
    "sram": lambda: _hw("sram", rows=ROWS, cols=COLS),
    "switched_cap": lambda: _hw("switched_cap", rows=ROWS),
    "sensor": lambda: _hw("sensor"),
}
NOISY = {"pcm", "rram"}
NONLINEAR = {"sram", "sensor"}


@pytest.fixture(scope="module", params=list(TILES))
def tile_case(request):
    return request.param, TILES[request.param]()


@eqx.filter_jit
def _run(tile, w, x, kp, kr):
    return tile.apply(tile.program(w, key=kp), x, key=kr)


def _run_eager(tile, w, x, kp, kr):
    return tile.apply(tile.program(w, key=kp), x, key=kr)


KP, KR = jax.random.key(1), jax.random.key(2)


def test_jit_equals_eager(tile_case):
    _, tile = tile_case
    y_jit = _run(tile, W, X, KP, KR)
    y = _run_eager(tile, W, X, KP, KR)
    assert y.shape == (N_OUT,)
    np.testing.assert_allclose(np.asarray(y_jit), np.asarray(y), rtol=1e-12, atol=1e-12)


def test_same_key_bit_identical(tile_case):
    _, tile = tile_case
    a = np.asarray(_run(tile, W, X, jax.random.key(5), jax.random.key(6)))
    b = np.asarray(_run(tile, W, X, jax.random.key(5), jax.random.key(6)))
    assert np.array_equal(a, b)
    c = np.asarray(_run_eager(tile, W, X, jax.random.key(5), jax.random.key(6)))
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_vmap_over_keys(tile_case):
    """vmap over program keys and read keys gives each key's own result."""
    _, tile = tile_case
    kps = jax.random.split(jax.random.key(7), 3)
    krs = jax.random.split(jax.random.key(8), 3)
    ys = eqx.filter_jit(jax.vmap(lambda kp, kr: tile.apply(tile.program(W, key=kp), X, key=kr)))(kps, krs)
    assert ys.shape == (3, N_OUT)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(ys[i]), np.asarray(_run(tile, W, X, kps[i], krs[i])),
                                   rtol=1e-12, atol=1e-12)


def _effective_matrix(tile, state):
    """The (out, in) matrix a programmed chip applies (what the tile's gradient w.r.t. x
    must be, up to quantization error and input-dependent read noise)."""
    if isinstance(tile, CrossbarTile):
        c = tile.cell
        return state.w_scale[:, None] * (state.g[0] - state.g[1]).T / (c.g_max - c.g_min) * state.comp
    if isinstance(state, jax.Array):  # digital tiles: the (quantized) weights
        return state
    return W  # bit-sliced and switched-capacitor: the target, within the stated tolerance


def test_gradients_finite_and_close_to_exact(tile_case):
    """d(c·y)/dx = W_chipᵀc, the programmed chip's matrix, on every input but the largest
    (straight-through rounding and clipping; the dynamic DAC scale max|x| adds a
    quantization-error term on the argmax input only). Exact for PCM (no input-dependent
    noise) and the digital tiles; RRAM's C2C read noise (2 % per device, σ ∝ |x|) adds a
    term of that relative size. d(c·y)/dW ≈ c xᵀ: programming error perturbs it through
    dσ_prog/dg (≈ 0.08 for PCM) times a standard normal per device, ~10 % in norm; the
    digital tiles only by their rounding error (< 1 %). A missing scale or a dropped path
    would be off by O(1)."""
    name, tile = tile_case
    f = lambda w, x: jnp.dot(C, tile.apply(tile.program(w, key=KP), x, key=KR))
    gw, gx = eqx.filter_jit(jax.grad(f, argnums=(0, 1)))(W, X)
    assert np.isfinite(np.asarray(gw)).all() and np.isfinite(np.asarray(gx)).all()
    if name in NONLINEAR:
        # the chip is non-linear in x (alpha-power cell current vs word-line voltage, bit-line
        # saturation; pixel and analog front end): dy/dx is not a matrix of weights, so only
        # finiteness is checked here; their own test files check the physics.
        return
    w_chip = _effective_matrix(tile, tile.program(W, key=KP))
    keep = np.arange(N_IN) != int(jnp.argmax(jnp.abs(X)))
    ex = rel_err(np.asarray(gx)[keep], np.asarray(w_chip.T @ C)[keep])
    ew = float(jnp.linalg.norm(gw - jnp.outer(C, X)) / jnp.linalg.norm(jnp.outer(C, X)))
    # bit-sliced ISAAC: its 8-bit ADC clips sums above 255 (9 bits are needed for exact
    # partial sums) and the RRAM cell adds C2C noise, which enters dy/dW as dσ/dg times the
    # read's Gaussians: over 60 read keys ew spans 0.07-0.22 (median 0.09-0.10, the same for
    # the pre-issue-9 read path and the present one), over 40 (program, read) key pairs
    # 0.07-0.20 (median 0.09); the fixed keys KP, KR give 0.26 since programming draws its
    # error from a named stream (issue 11), hence 0.3; switched-capacitor: 3-bit weights
    # (relative rounding error up to 2^-3) and 6-bit activations.
    tol_x, tol_w = {"pcm": (1e-10, 0.2), "rram": (0.06, 0.2), "bitsliced_isaac": (0.35, 0.3),
                    "switched_cap": (0.3, 0.05)}.get(name, (1e-10, 0.02))
    assert ex < tol_x and ew < tol_w, (ex, ew)


def test_ideal_limit_equals_matmul(tile_case):
    """tile.ideal(): no noise, unbounded converters, ideal wires ⇒ W @ x to 1e-10 (float64),
    with and without a key, and (for drifting devices) after ageing."""
    _, tile = tile_case
    ideal = tile.ideal()
    assert not ideal.needs_key
    want = np.asarray(W, np.float64) @ np.asarray(X, np.float64)
    for kp in (None, jax.random.key(9)):
        st = ideal.program(W, key=kp)
        y = ideal.apply(st, X, key=None)
        assert y.dtype == jnp.float64
        assert rel_err(y, want) < 1e-10
        aged = ideal.drift(st, 3.0e7, key=jax.random.key(10))
        assert rel_err(ideal.apply(aged, X, key=None), want) < 1e-10
    # one example's batch of MVMs (the convolution path)
    xs = jax.random.normal(jax.random.key(11), (5, N_IN))
    yb = ideal.apply_batch(ideal.program(W, key=None), xs, key=None)
    assert rel_err(yb, np.asarray(xs) @ np.asarray(W).T) < 1e-10


def test_ideal_gradient_is_exact(tile_case):
    _, tile = tile_case
    ideal = tile.ideal()
    f = lambda w, x: jnp.dot(C, ideal.apply(ideal.program(w, key=None), x, key=None))
    gw, gx = eqx.filter_jit(jax.grad(f, argnums=(0, 1)))(W, X)
    assert rel_err(gx, W.T @ C) < 1e-10
    assert rel_err(gw, jnp.outer(C, X)) < 1e-10


# ---------------------------------------------------------------------------- noise statistics
def _quiet(tile, **kw):
    """The same cell and array with unbounded converters (so noise is the only error)."""
    return dataclasses.replace(tile, dac=UniformDAC(bits=None), adc=UniformADC(bits=None), **kw)


@pytest.mark.parametrize("name", sorted(NOISY))
def test_different_read_keys_spread_as_predicted(name):
    """Two reads of one chip differ by read noise only. Predicted σ per output j:
    (w_scale_j x_scale)² [rb σ_out² + c2c² Σ_i (x_i/x_scale)² (g⁺_ij² + g⁻_ij²)/Δg²]
    (out_noise per column per array; C2C noise relative per device). The standardized
    difference (y₁ − y₂)/(√2 σ) must have std 1 within 5 standard errors (n = 400 × 24)."""
    tile = _quiet(TILES[name]())
    st = tile.program(W, key=KP)
    c = tile.cell
    dg = c.g_max - c.g_min
    x_scale = float(jnp.max(jnp.abs(X)))
    rb = math.ceil(N_IN / ROWS)
    var_n = rb * tile.out_noise**2 + c.read_noise_c2c**2 * jnp.einsum(
        "i,kij->j", (X / x_scale) ** 2, st.g**2) / dg**2
    sigma = np.asarray(st.w_scale * x_scale * jnp.sqrt(var_n))
    keys = jax.random.split(jax.random.key(12), 800)
    ys = np.asarray(eqx.filter_jit(jax.vmap(lambda k: tile.apply(st, X, key=k)))(keys))
    z = (ys[0::2] - ys[1::2]) / (math.sqrt(2) * sigma)
    assert abs(z.std() - 1.0) < 5 * std_standard_error(z)
    assert abs(z.mean()) < 5 / math.sqrt(z.size)


@pytest.mark.parametrize("name", sorted(NOISY))
def test_different_program_keys_spread_as_predicted(name):
    """Two chips differ by programming error only (no read noise). Per device g_prog =
    max(g_target + N(0, σ_prog(g_target)), 0), a clipped normal (closed-form variance);
    Var y_j = (w_scale_j/Δg)² Σ_i x_i² (Var g⁺_ij + Var g⁻_ij). Standardized chip-to-chip
    differences must have std 1 within 5 standard errors (n = 200 pairs × 24 outputs)."""
    base = TILES[name]()
    tile = _quiet(base, out_noise=0.0, cell=dataclasses.replace(base.cell, read_noise_c2c=0.0))
    assert not tile.needs_key
    c = tile.cell
    g_t, w_scale = tile.mapping.to_conductance(W, c.g_min, c.g_max, c.levels)
    _, s = clipped_normal_moments(np.asarray(g_t), np.asarray(c.prog_sigma(g_t)))
    dg = c.g_max - c.g_min
    sigma = np.asarray(w_scale) / dg * np.sqrt(np.einsum("i,kij->j", np.asarray(X) ** 2, s**2))
    keys = jax.random.split(jax.random.key(13), 400)
    ys = np.asarray(eqx.filter_jit(jax.vmap(lambda k: tile.apply(tile.program(W, key=k), X, key=None)))(keys))
    z = (ys[0::2] - ys[1::2]) / (math.sqrt(2) * sigma)
    assert abs(z.std() - 1.0) < 5 * std_standard_error(z)


@pytest.mark.parametrize("name", ["digital", "pe_array"])
def test_digital_tiles_fixed_point_reference(name):
    """8-bit symmetric per-tensor quantization of W and of x (scale max|·|/127), computed
    here in NumPy float64; no randomness, so every key gives the same bits."""
    tile = TILES[name]()
    w, x = np.asarray(W), np.asarray(X)
    qw = np.clip(np.round(w / (np.abs(w).max() / 127)), -127, 127) * (np.abs(w).max() / 127)
    qx = np.clip(np.round(x / (np.abs(x).max() / 127)), -127, 127) * (np.abs(x).max() / 127)
    want = qw @ qx
    ys = [np.asarray(_run(tile, W, X, jax.random.key(k), jax.random.key(k + 1))) for k in (0, 5)]
    assert rel_err(ys[0], want) < 1e-12
    assert np.array_equal(ys[0], ys[1])
    assert not tile.needs_key


def test_noisy_tiles_need_a_read_key():
    tile = TILES["pcm"]()
    st = tile.program(W, key=KP)
    with pytest.raises(ValueError, match="key"):
        tile.apply(st, X, key=None)


# ---------------------------------------------------------------------------- cells
CELLS = {"pcm": _pcm, "rram": _rram}
G_T = jnp.linspace(0.0, 1.0, 50)


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_conformance(name):
    cell = CELLS[name]()
    g = cell.g_min + (cell.g_max - cell.g_min) * G_T
    prog = eqx.filter_jit(lambda c, g, k: c.program(g, key=k))
    a = prog(cell, g, jax.random.key(0))
    b = prog(cell, g, jax.random.key(0))
    assert all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(a, b))
    e = cell.program(g, key=jax.random.key(0))
    for u, v in zip(a, e):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-20)
    # vmap over keys = per-key results
    ks = jax.random.split(jax.random.key(1), 3)
    gv, _ = jax.vmap(lambda k: cell.program(g, key=k))(ks)
    np.testing.assert_allclose(np.asarray(gv[2]), np.asarray(cell.program(g, key=ks[2])[0]), rtol=1e-12)
    # different keys: programming errors (g_prog − g_target) of the two chips are independent,
    # their difference has variance 2 Var(clipped normal) per device
    _, s = clipped_normal_moments(np.asarray(g), np.asarray(cell.prog_sigma(g)))
    big = jnp.tile(g, 2000)
    d = np.asarray(cell.program(big, key=jax.random.key(2))[0] - cell.program(big, key=jax.random.key(3))[0])
    z = d / (math.sqrt(2) * np.tile(s, 2000))
    assert abs(z.std() - 1) < 5 * std_standard_error(z)
    # gradient of g_prog = max(g + z σ(g), 0) w.r.t. the target g: 1 + z σ'(g) where not
    # clipped, 0 where clipped; σ'(g) = (2 c2 ĝ + c1)/g_max from the polynomial, z recovered
    # from the sample as (g_prog − g)/σ(g)
    kg = jax.random.key(4)
    grad = np.asarray(eqx.filter_jit(jax.grad(lambda c, g: jnp.sum(c.program(g, key=kg)[0]), argnums=1))(cell, g))
    assert np.isfinite(grad).all()
    gp = np.asarray(cell.program(g, key=kg)[0])
    gn, sig = np.asarray(g), np.asarray(cell.prog_sigma(g))
    zs = (gp - gn) / sig
    dsig = (2 * cell.prog_c2 * gn / cell.g_max + cell.prog_c1) / cell.g_max
    want = np.where(gp > 0, 1 + zs * dsig, 0.0)
    np.testing.assert_allclose(grad, want, rtol=1e-9, atol=1e-12)
    # ideal cell: programming is exact, time does nothing
    ideal = cell.ideal()
    gi, nu = ideal.program(g, key=jax.random.key(5))
    assert np.array_equal(np.asarray(gi), np.asarray(g))
    assert np.array_equal(np.asarray(ideal.at_time(gi, nu, 3e7, key=jax.random.key(6))), np.asarray(g))


# ---------------------------------------------------------------------------- converters
CONVERTERS = {
    "dac8": lambda: UniformDAC(bits=8), "dac4_fixed": lambda: UniformDAC(bits=4, x_range=1.5),
    "adc8": lambda: UniformADC(bits=8, y_range=3.0), "adc5": lambda: UniformADC(bits=5, y_range=1.0),
}


def _conv_out(conv, x):
    out = conv(x)
    return out[0] * out[1] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", list(CONVERTERS))
def test_converter_conformance(name):
    conv = CONVERTERS[name]()
    x = jax.random.normal(jax.random.key(0), (64,))
    y = _conv_out(conv, x)
    yj = eqx.filter_jit(_conv_out)(conv, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(yj), rtol=1e-12, atol=1e-15)
    yv = jax.vmap(lambda v: _conv_out(conv, v))(jnp.stack([x, 2 * x]))
    np.testing.assert_allclose(np.asarray(yv[1]), np.asarray(_conv_out(conv, 2 * x)), rtol=1e-12)
    # straight-through: gradient of Σ c·y w.r.t. x is c, plus for a dynamic DAC (y = Q(x/s)·s,
    # s = max|x|) the path through s: ∂s/∂x_k = sign(x_k) at k = argmax|x|, times
    # Σ_i c_i (Q(x_i/s) − x_i/s) (the quantization error)
    c = jnp.arange(64.0)
    g = jax.grad(lambda v: jnp.dot(c, _conv_out(conv, v)))(x)
    want = np.asarray(c).copy()
    if isinstance(conv, UniformDAC) and conv.x_range is None:
        lv, s = conv(x)
        k = int(jnp.argmax(jnp.abs(x)))
        want[k] += float(jnp.sign(x[k]) * jnp.dot(c, lv - x / s))
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12, atol=1e-12)
    # ideal limit: identity (within range for a fixed-range DAC)
    xi = x / jnp.max(jnp.abs(x))
    assert rel_err(_conv_out(conv.ideal(), xi), xi) < 1e-15
    # quantization error bounded by half a step inside the range
    if isinstance(conv, UniformADC):
        xin = jnp.clip(x, -conv.y_range, conv.y_range - conv.lsb)
        assert float(jnp.max(jnp.abs(conv(xin) - xin))) <= conv.lsb / 2 * (1 + 1e-12)


def test_zero_input_is_finite(tile_case):
    """An all-zero input (a dead ReLU map, a black frame) must not divide by a zero input
    scale: the output is finite for every tile, and exactly zero for the noise-free digital
    tiles (per-vector quantization of 0 is 0)."""
    name, tile = tile_case
    y = _run(tile, W, jnp.zeros(N_IN), KP, KR)
    assert np.isfinite(np.asarray(y)).all(), y
    if name in ("digital", "pe_array"):
        assert np.array_equal(np.asarray(y), np.zeros(N_OUT))
