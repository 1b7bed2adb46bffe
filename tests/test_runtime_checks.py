"""Runtime checks of issue 12: times, keys and weights checked at program/drift time (also
under jit), zero in gives zero out on the switched-capacitor, SRAM and sensor tiles (up to
their stated offsets), and the wire models' limits."""

from __future__ import annotations

import dataclasses
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.arrays import ResistiveCrossbar, ResistiveWires
from nds.converters import UniformADC, UniformDAC
from nds.tiles import CrossbarTile, SRAMTile, SwitchedCapTile


@pytest.fixture(scope="module")
def pcm_chip():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile = CrossbarTile(cell=pcm, dac=UniformDAC(bits=None), adc=UniformADC(bits=None))
    model = nds.analogize(eqx.nn.Sequential([eqx.nn.Linear(6, 3, key=jax.random.key(0))]), tile)
    return model, nds.program(model, key=jax.random.key(1))


@pytest.mark.parametrize("t", [-30.0, math.inf, math.nan])
def test_drift_refuses_bad_times_as_jax_scalars_under_jit(pcm_chip, t):
    """Was: −30 s as a JAX scalar gave NaN outputs, inf and NaN were accepted."""
    _, chip = pcm_chip
    aged = eqx.filter_jit(lambda c, t: nds.drift(c, t, key=jax.random.key(2)))
    ok = aged(chip, jnp.asarray(10.0))
    assert np.all(np.isfinite(np.asarray(ok.layers[0].state.g)))
    with pytest.raises(Exception, match="t must be a finite time in seconds >= 0"):
        jax.block_until_ready(aged(chip, jnp.asarray(t)))
    with pytest.raises(ValueError, match="t must be a finite time in seconds >= 0 since programming; got t = "):
        nds.drift(chip, t)


def test_program_without_a_key_refuses_a_drifting_cell(pcm_chip):
    """Was: program(key=None) silently programmed ν = 0 for every PCM device (no drift)."""
    model, _ = pcm_chip
    with pytest.raises(ValueError, match="layer 'linear0' has a drifting PCM cell \\(card pcm_joshi2020\\)"):
        nds.program(model, key=None)
    ideal = nds.analogize(eqx.nn.Sequential([eqx.nn.Linear(6, 3, key=jax.random.key(0))]),
                          model.layers[0].tile.ideal())
    nds.program(ideal, key=None)  # the ideal cell draws nothing: allowed


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_weight_refuses_programming_naming_the_layer(pcm_chip, bad):
    """Was: one NaN weight silently corrupted its whole layer, one inf gave all-NaN outputs."""
    model, _ = pcm_chip
    broken = eqx.tree_at(lambda m: m.layers[0].weight, model, model.layers[0].weight.at[1, 2].set(bad))
    with pytest.raises(ValueError, match="layer 'linear0': the weights contain NaN or inf .*\\(1 of 18 entries\\)"):
        nds.program(broken, key=jax.random.key(1))
    with pytest.raises(Exception, match="layer 'linear0': the weights contain NaN or inf"):
        jax.block_until_ready(eqx.filter_jit(lambda m, k: nds.program(m, key=k))(broken, jax.random.key(1)))


# ---------------------------------------------------------------------------- zero in, zero out
def _w_x():
    w = jax.random.normal(jax.random.key(0), (5, 20))
    x = jax.random.uniform(jax.random.key(1), (20,))
    return w, x


@pytest.mark.parametrize("make", [lambda: SwitchedCapTile.from_card(), lambda: SRAMTile.from_card(weight_bits=4)],
                         ids=["switched_cap", "sram"])
def test_zero_in_gives_zero_out(make):
    """All-zero weights, or an all-zero input with the per-vector input scale, give exactly 0
    whatever the mismatch, offsets and noise (the output is the code times the weight and
    input scales). Was: offsets and noise at an arbitrary scale (a scale of 1 substituted
    for the zero one)."""
    tile = make()
    w, x = _w_x()
    k = jax.random.key(3) if tile.needs_key else None
    run = eqx.filter_jit(lambda t, w, x, k: t.apply(t.program(w, key=jax.random.key(2)), x, key=k))
    for ww, xx in ((jnp.zeros_like(w), x), (w, jnp.zeros_like(x))):
        y = run(tile, ww, xx, k)
        assert np.array_equal(np.asarray(y), np.zeros(5)), y
    assert np.all(np.asarray(run(tile, w, x, k)) != 0)  # and not zero otherwise


def test_switched_cap_with_a_fixed_range_gives_its_adc_offsets_for_zero_input():
    """The stated exception: with a fixed input range an all-zero input gives the SAR ADC's
    offsets referred to the output; they vanish with the ADC's offsets and noise off."""
    tile = dataclasses.replace(SwitchedCapTile.from_card(), x_range=1.0)
    w, x = _w_x()
    run = eqx.filter_jit(lambda t, w, x, k: t.apply(t.program(w, key=jax.random.key(2)), x, key=k))
    y = run(tile, w, jnp.zeros_like(x), jax.random.key(3))
    assert np.any(np.asarray(y) != 0)
    quiet = dataclasses.replace(tile, adc=None, array=dataclasses.replace(tile.array, ktc=False))
    assert np.array_equal(np.asarray(run(quiet, w, jnp.zeros_like(x), None)), np.zeros(5))


def test_sensor_dark_frame_gives_read_and_analog_noise_of_the_stated_size():
    """A dark frame (x = 0) is not zero in the sensor: each pixel carries its read noise
    (``read_noise_e / full_well``) and every output the analog noise at ``snr_db`` of its
    full-scale rms, so ``var(y_j) = Σ_i w_ij² (read_noise_e/full_well)² + (Σ_i w_ij²/3)/SNR``
    (docstring of SensorTile); zero weights give exactly 0. 2000 dark frames: the sample
    variance is within 5 standard errors (sqrt(2/n) relative) of that closed form."""
    tile = nds.tiles.SensorTile(sensor=nds.load_card("sensor_redeye2016", nds.tiles.SensorAnalogCard), out_bits=None,
                                w_bits=None, snr_db=20.0)
    w, _ = _w_x()
    st = tile.program(w)
    n = 2000
    ys = eqx.filter_jit(jax.vmap(lambda k: tile.apply(st, jnp.zeros(20), key=k)))(jax.random.split(jax.random.key(4), n))
    c = tile.sensor
    w2 = np.sum(np.asarray(w) ** 2, axis=1)
    var = w2 * (c.read_noise_e / c.full_well) ** 2 + w2 / 3 / 10 ** (20 / 10)
    rel = np.var(np.asarray(ys), axis=0) / var - 1
    assert np.all(np.abs(rel) < 5 * math.sqrt(2 / n)), rel
    z = tile.apply(tile.program(jnp.zeros_like(w)), jnp.ones(20) * 0.5, key=jax.random.key(5))
    assert np.array_equal(np.asarray(z), np.zeros(5))


# ---------------------------------------------------------------------------- wires
def _fo_tile(r):
    rram = nds.load_card("rram_wan2022", nds.cells.RRAM).ideal()
    return CrossbarTile(cell=rram, array=ResistiveCrossbar(rows=64, cols=64, wires=ResistiveWires(
        r_row=r, r_col=r, fidelity="first_order")), dac=UniformDAC(bits=None), adc=UniformADC(bits=None),
        drift_compensation=False)


def test_first_order_ir_drop_warns_outside_its_validity_and_refuses_wrong_signs():
    """On a 64 × 64 array at g_max of rram_wan2022 the first-order drop is
    ``T_max ∝ g·r·n²``: small at 0.1 Ω (no warning), above 0.25 at 5 Ω (warning), and
    at least 1 at 50 Ω, where some transfers are negative (refused, also under jit). Was:
    saturated, wrong-sign outputs without a word."""
    w = jnp.ones((64, 64))
    prog = eqx.filter_jit(lambda t, w: t.program(w, key=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.block_until_ready(prog(_fo_tile(0.1), w))
    with pytest.warns(RuntimeWarning, match="largest first-order IR drop is .* use fidelity='exact'"):
        jax.block_until_ready(prog(_fo_tile(5.0), w))
    with pytest.raises(Exception, match="first_order'\\) outside its validity"):
        jax.block_until_ready(prog(_fo_tile(50.0), w))


def test_infinite_wire_resistance_is_refused():
    """Was: NaN outputs."""
    with pytest.raises(ValueError, match="ResistiveWires.r_row = inf Ω: must be finite"):
        ResistiveWires(r_row=math.inf, r_col=1.0)
    wires = ResistiveWires(r_row=1.0, r_col=1.0)
    g = jnp.full((4, 4), 1e-5)
    f = eqx.filter_jit(lambda r, g: dataclasses.replace(wires, r_col=r).transfer(g))
    assert np.all(np.isfinite(np.asarray(f(jnp.asarray(2.0), g))))
    with pytest.raises(Exception, match="wire resistances must be finite and >= 0"):
        jax.block_until_ready(f(jnp.asarray(math.inf), g))
