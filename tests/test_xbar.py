"""Crossbar-family fixes of issue 11 (item 1) and the write-verify record of issue 12.

* independent random streams: stuck-at faults and PCM drift exponents;
* global drift compensation read through the periphery (scrambled-Hadamard readout by
  default, one-hot and all-ones kept), including layers whose columns sum to zero;
* costs that add up: DAC per row of every array, bit-serial vs multi-bit DACs;
* programming energy and time as their own line of the cost report.

Each test states what the code before these changes gave. Bounds on sampled quantities are
derived from the sample count (stated where used).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import folded_normal_moments, std_standard_error

import nds
from nds.cells import FaultModel
from nds.converters import UniformADC, UniformDAC
from nds.tiles import CrossbarTile

YEAR = 31_536_000.0


# ---------------------------------------------------------------------------- 1. random streams
def test_stuck_cells_and_drift_exponents_are_independent(pcm):
    """100 000 devices at ĝ = 1 (ν ~ |N(0.049, 0.008)|), 5 % stuck low and 5 % stuck high.
    The ν each device draws (the same key programmed without faults) must not depend on
    whether the device is stuck: two-sample KS test between stuck and healthy devices, and
    the healthy devices' ν mean/std equal the card's folded normal within 5 standard errors.

    Before (fault map from ``fold_in(key, 1)``, ν from ``split(key)[1]``, the same key): the
    stuck devices were exactly the 10 % with the lowest ν (KS statistic 1, p = 0), and the
    healthy ν had mean +0.19σ and std 0.85σ of the card's (57 and 40 standard errors off)."""
    w = jnp.ones((200, 500))
    faulty = CrossbarTile(cell=pcm, faults=FaultModel(p_sa0=0.05, p_sa1=0.05), drift_compensation=False)
    clean = dataclasses.replace(faulty, faults=None)
    key = jax.random.key(11)
    nu_all = np.asarray(clean.program(w, key=key).nu[0]).ravel()  # G+ devices, all at g_max
    nu_f = np.asarray(faulty.program(w, key=key).nu[0]).ravel()  # stuck devices: ν = 0
    stuck = nu_f == 0.0
    assert np.all(nu_all > 0) and abs(stuck.mean() - 0.1) < 5 * math.sqrt(0.09 / stuck.size)
    ks = scipy.stats.ks_2samp(nu_all[stuck], nu_all[~stuck])
    assert ks.pvalue > 1e-4, ks  # under independence p is uniform: a false failure has p = 1e-4
    healthy = nu_all[~stuck]
    mu, sd = pcm.nu_stats(jnp.asarray(pcm.g_max))
    m1, s1 = folded_normal_moments(float(mu), float(sd))
    assert abs(healthy.mean() - m1) < 5 * healthy.std() / math.sqrt(healthy.size)
    assert abs(healthy.std() - s1) < 5 * std_standard_error(healthy)


# ---------------------------------------------------------------------------- 2. drift compensation
def _uniform_nu_pcm(pcm, nu=0.06):
    """The PCM card with every device at ν = ``nu``, no programming or 1/f noise."""
    return dataclasses.replace(pcm, nu_mu_a=0.0, nu_mu_b=nu, nu_mu_min=nu, nu_mu_max=nu, nu_sigma_a=0.0,
                               nu_sigma_b=0.0, nu_sigma_min=0.0, nu_sigma_max=0.0, prog_c0=0.0, prog_c1=0.0,
                               prog_c2=0.0, qs_a=0.0, qs_max=0.0)


@pytest.mark.parametrize("ref", ["hadamard", "identity", "ones"])
def test_compensation_factor_closed_form_for_uniform_drift(pcm, ref):
    """No noise, every device at ν = 0.06, ideal converters, 300 inputs on 128-row arrays
    (three row blocks, the last partial): the factor is ``((t + t0)/t0)^ν`` for every
    readout, and the compensated outputs at t = 1 year equal the t = 0 outputs (float64)."""
    cell = _uniform_nu_pcm(pcm)
    tile = CrossbarTile(cell=cell, array=nds.arrays.ResistiveCrossbar(rows=128, cols=128), dac=UniformDAC(bits=None),
                        adc=UniformADC(bits=None), drift_reference=ref)
    w = jax.random.normal(jax.random.key(1), (40, 300))
    x = jax.random.normal(jax.random.key(2), (300,))
    st = tile.program(w, key=jax.random.key(3))
    aged = tile.drift(st, YEAR, key=jax.random.key(4))
    want = ((YEAR + 20.0) / 20.0) ** 0.06
    assert float(aged.comp) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(tile.apply(aged, x, key=None), tile.apply(st, x, key=None), rtol=1e-10, atol=1e-12)


def _factors(tile, w, num_chips=32):
    def one(k):
        kp, kd = jax.random.split(k)
        return tile.drift(tile.program(w, key=kp), YEAR, key=kd).comp

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(5), num_chips)))


def test_compensation_scatter_chip_to_chip(pcm):
    """PCM card, 64 × 128 Gaussian weights, default 8-bit converters, one year, 32 chips:
    relative std of the factor with the Hadamard readout (measured 0.23 %) and the one-hot
    readout (0.39 %) is far below the all-ones readout's (2.4 %). Bounds: the sample std of 32
    chips has a relative standard error of ~1/sqrt(62) = 13 %; the asserted ratio 4 is 5
    standard errors of the log ratio (0.18) below the measured 10.

    Before: only the all-ones reference existed (read from the conductances, no converter)."""
    w = jax.random.normal(jax.random.key(0), (64, 128))
    rel = {}
    for ref in ("hadamard", "identity", "ones"):
        f = _factors(CrossbarTile(cell=pcm, drift_reference=ref), w)
        rel[ref] = f.std(ddof=1) / f.mean()
    assert rel["hadamard"] < 0.01 and rel["identity"] < 0.01 and rel["ones"] > 0.01, rel
    assert rel["ones"] > 4 * rel["hadamard"] and rel["ones"] > 4 * rel["identity"], rel


def test_zero_sum_layer_compensated_after_a_year(pcm):
    """A layer whose every output's weights sum to zero (w = [a, −a]), PCM card, default
    converters, 8 chips: one year after programming the compensated outputs with the default
    (Hadamard) readout are within 4 % of each chip's t = 0 outputs (measured 0.980-0.990 of
    scale: a global factor leaves the state-dependence of ν); the all-ones readout leaves
    them at 0.38-0.60 (asserted below 0.8). Before: the all-ones reference gave the same
    failure (48 % of scale in issue 11's case)."""
    a = jax.random.normal(jax.random.key(0), (64, 64))
    w = jnp.concatenate([a, -a], axis=1)
    assert float(jnp.max(jnp.abs(w.sum(axis=1)))) < 1e-12
    x = jax.random.normal(jax.random.key(1), (50, 128))

    def slopes(tile):
        def one(k):
            kp, kd = jax.random.split(k)
            st = tile.program(w, key=kp)
            y0 = jax.vmap(lambda v: tile.apply(st, v, key=None))(x)
            at = tile.drift(st, YEAR, key=kd)
            y1 = jax.vmap(lambda v: tile.apply(at, v, key=None))(x)
            return jnp.sum(y1 * y0) / jnp.sum(y0 * y0)

        return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(9), 8)))

    s_h = slopes(CrossbarTile(cell=pcm))
    s_1 = slopes(CrossbarTile(cell=pcm, drift_reference="ones"))
    assert np.all(np.abs(s_h - 1.0) < 0.04), s_h
    assert np.all(s_1 < 0.8), s_1


def test_compensation_reads_through_the_periphery(pcm):
    """The calibration is a read through the ADC: with a 1-bit ADC on ±12 every single-device
    one-hot read rounds to the same code, so the one-hot readout R is the same at t = 0 and
    after a year (factor 1); with an ideal ADC it is the closed form. Before: the reference
    was computed from the conductances, whatever the converters."""
    cell = _uniform_nu_pcm(pcm)
    w = jax.random.normal(jax.random.key(1), (8, 16))
    for bits, want in ((1, 1.0), (None, ((YEAR + 20.0) / 20.0) ** 0.06)):
        tile = CrossbarTile(cell=cell, adc=UniformADC(bits=bits), drift_reference="identity")
        aged = tile.drift(tile.program(w, key=jax.random.key(3)), YEAR, key=None)
        assert float(aged.comp) == pytest.approx(want, rel=1e-12)


def test_bad_drift_reference_named():
    with pytest.raises(ValueError, match="drift_reference = 'eye'.*allowed"):
        CrossbarTile(cell=nds.load_card("pcm_joshi2020", nds.cells.PCM), drift_reference="eye")


# ---------------------------------------------------------------------------- 3. costs that add up
PJ, UM2 = 1e-12, 1e-12
ISAAC_DAC_E, ISAAC_DAC_A, ISAAC_ADC8_E = 0.417 * PJ, 0.166 * UM2, 1.67 * PJ


def _cc(**kw):
    return dataclasses.replace(nds.load_card("converters_isaac32nm", nds.converters.ConverterCosts), **kw)


def test_crossbar_bit_serial_dac_counts(pcm):
    """A 300-input, 200-output layer on 128 × 128 arrays (3 row blocks × 2 column blocks),
    8-bit inputs through the ISAAC card's bit-serial 1-bit DAC: 8 full reads per MVM, so
    ADC conversions ceil(300/128)·200·8 = 4800, DAC pulses 300·2·8 = 4800 (one DAC per row of
    each of the 2 column-block arrays), cell reads 8·2·300·200, shift-and-adds 4800, latency
    8 (t_read + 1/f_adc), DAC area 6 arrays × 128 rows × 0.166 µm².
    Before: 600 ADC conversions, 300 DAC conversions of 8 × 0.417 pJ, one read time."""
    tile = CrossbarTile(cell=pcm, array=nds.arrays.ResistiveCrossbar(rows=128, cols=128), converter_costs=_cc())
    c = tile.cost((200, 300), 1)
    assert c.counts["adc_conversions"] == math.ceil(300 / 128) * 200 * 8 == 4800
    assert c.counts["dac_conversions"] == 300 * 2 * 8
    assert c.counts["cell_reads"] == 8 * 2 * 300 * 200
    assert c.counts["digital_adds"] == 4800 and c.counts["input_cycles"] == 8
    assert c.energy_j["conversion"] == pytest.approx(4800 * ISAAC_DAC_E + 4800 * ISAAC_ADC8_E, rel=1e-12)
    assert c.latency_s == pytest.approx(8 * (100e-9 + 1 / 1.2e9), rel=1e-12)
    cell_area = 6 * 2 * 128 * 128 * float(pcm.cell_area)
    adc_area = 6 * 128 * 1200 * UM2
    assert c.area_m2 == pytest.approx(cell_area + adc_area + 6 * 128 * ISAAC_DAC_A, rel=1e-12)


def test_crossbar_multi_bit_dac_counts(pcm):
    """The same layer with a multi-bit DAC card (``dac_serial = 0``): one read per MVM,
    600 ADC conversions, 600 DAC conversions (300 rows × 2 arrays) at 0.417 pJ · 2^7 each,
    one read time, DAC area 6 × 128 × 0.166 µm² · 2^7."""
    tile = CrossbarTile(cell=pcm, array=nds.arrays.ResistiveCrossbar(rows=128, cols=128),
                        converter_costs=_cc(dac_serial=0))
    c = tile.cost((200, 300), 1)
    assert c.counts["adc_conversions"] == 600 and c.counts["dac_conversions"] == 600
    assert c.counts["cell_reads"] == 2 * 300 * 200 and c.counts["input_cycles"] == 1
    assert c.energy_j["conversion"] == pytest.approx(600 * ISAAC_DAC_E * 128 + 600 * ISAAC_ADC8_E, rel=1e-12)
    assert c.latency_s == pytest.approx(100e-9 + 1 / 1.2e9, rel=1e-12)
    cell_area = 6 * 2 * 128 * 128 * float(pcm.cell_area)
    assert c.area_m2 == pytest.approx(cell_area + 6 * 128 * 1200 * UM2 + 6 * 128 * ISAAC_DAC_A * 128, rel=1e-12)


def test_bitsliced_dac_per_slice_crossbar(rram):
    """Bit-sliced, differential 8-bit weights over 2-bit cells (4 slices × 2 planes), 8-bit
    unsigned inputs 2 bits per cycle (4 cycles), the 300 × 200 layer on 128 × 128 arrays
    (3 × 2 blocks): 300·4·4·2·2 = 19 200 two-bit DAC conversions (a DAC per row of every slice
    and plane array) at 0.417 pJ · 2 each; ADC 4·4·3·200 = 9600 conversions.
    Before: 300·4 = 1200 DAC conversions at 2 × 0.417 pJ."""
    from nds.mapping import BitSliceMapping, InputSlicing
    from nds.tiles import BitSlicedTile

    tile = BitSlicedTile(cell=rram, array=nds.arrays.ResistiveCrossbar(rows=128, cols=128),
                         weights=BitSliceMapping(weight_bits=8, bits_per_cell=2, encoding="differential"),
                         inputs=InputSlicing(input_bits=8, dac_bits=2, signed=False), adc_bits=8,
                         converter_costs=_cc())
    assert (tile.weights.n_slices, tile.weights.n_planes, tile.inputs.n_cycles) == (4, 2, 4)
    c = tile.cost((200, 300), 1)
    assert c.counts["dac_conversions"] == 300 * 4 * 4 * 2 * 2
    assert c.counts["adc_conversions"] == 4 * 4 * 3 * 200
    assert c.energy_j["conversion"] == pytest.approx(19200 * 2 * ISAAC_DAC_E + 9600 * ISAAC_ADC8_E, rel=1e-12)


# ---------------------------------------------------------------------------- 4. programming cost
def _linear(tile, w):
    from nds.nn import AnalogLinear
    import equinox as eqx

    return eqx.nn.Sequential([AnalogLinear(weight=w, bias=None, out_scale=None, tile=tile, name="fc")])


def test_one_shot_programming_cost_closed_form(pcm):
    """The 300 × 200 layer on 128 × 128 arrays with the generic one-shot card (5 pJ and
    100 ns per pulse, one pulse per device, a word line at a time): 2·300·200 devices ×
    5 pJ = 0.6 µJ per chip; (128 + 128 + 44) rows × 2 column-block arrays × 100 ns = 60 µs.
    The same in the programmed state's record, the tile's cost, ``CostReport.programming``
    (unprogrammed and programmed model) and the study's report row. Before: no programming
    cost anywhere."""
    tile = CrossbarTile(cell=pcm, array=nds.arrays.ResistiveCrossbar(rows=128, cols=128))
    w = jax.random.normal(jax.random.key(0), (200, 300))
    want_e, want_t = 120_000 * 5e-12, 600 * 100e-9
    st = tile.program(w, key=jax.random.key(1))
    assert float(st.record.energy_j) == pytest.approx(want_e, rel=1e-12)
    assert float(st.record.time_s) == pytest.approx(want_t, rel=1e-12)
    assert int(st.record.pulses) == 120_000 and int(st.record.unconverged) == 0
    assert float(tile.drift(st, 100.0, key=None).record.energy_j) == float(st.record.energy_j)
    c = tile.cost((200, 300), 1)
    assert (c.program_energy_j, c.program_time_s) == pytest.approx((want_e, want_t), rel=1e-12)
    model = _linear(tile, w)
    for m in (model, nds.program(model, key=jax.random.key(2))):
        rep = nds.cost(m, (300,))
        assert (rep.programming.energy_j, rep.programming.time_s) == pytest.approx((want_e, want_t), rel=1e-12)
        assert rep.energy_j < want_e  # per inference energy is a separate, much smaller line
    from nds.study import report_row

    row = report_row("mlp", "pcm", rep, accuracy=0.9, dataset="digits")
    assert row["programming_energy_j"] == pytest.approx(want_e) and row["programming_time_s"] == pytest.approx(want_t)
    from nds.cli import report_table

    _, cols, rows, _ = report_table({"report": [row]})
    names = [col.name if hasattr(col, "name") else col[0] for col in cols]
    i = names.index("program E/chip")
    assert rows[0][i] == pytest.approx(want_e) and rows[0][names.index("program t/chip")] == pytest.approx(want_t)
    assert not cols[i].compact  # shown with --format, not in the 80-column view


def test_write_verify_record_reaches_the_cost_report(rram):
    """A 3 × 4 layer programmed with write-verify (5 pJ per pulse, 1 pJ per verify, 1 µs
    per pulse-verify cycle). Noise-free loop with the first pulse on target: every one of
    the 2·3·4 devices takes 1 pulse, so the chip costs 24 × 6 pJ and 24 µs (closed form).
    With the noisy card loop, the state's record equals the full record the tile returns
    for the same key (its pulses × 6 pJ; unconverged devices counted), and the programmed
    model's ``CostReport.programming`` carries it. Before: the tile discarded the record."""
    from nds.cells import WriteVerify

    base = nds.load_card("rram_wan2022_write_verify", WriteVerify)
    w = jax.random.normal(jax.random.key(0), (3, 4))
    exact = dataclasses.replace(base, first_sigma=0.0, gain_c2c=0.0, step_noise=0.0)
    tile = CrossbarTile(cell=rram, write_verify=exact)
    st = tile.program(w, key=jax.random.key(1))
    assert float(st.record.energy_j) == pytest.approx(24 * 6e-12, rel=1e-12)
    assert float(st.record.time_s) == pytest.approx(24 * 1e-6, rel=1e-12)
    assert int(st.record.pulses) == 24 and int(st.record.unconverged) == 0

    noisy = CrossbarTile(cell=rram, write_verify=dataclasses.replace(base, max_pulses=3, tol=0.2e-6))
    key = jax.random.key(2)
    st = noisy.program(w, key=key)
    full = noisy.write_verify_record(w, key=key)
    np.testing.assert_array_equal(np.asarray(full.g), np.asarray(st.g_prog))  # the same loop, same bits
    n = int(np.sum(np.asarray(full.pulses)))
    assert int(st.record.pulses) == n and n > 24
    assert float(st.record.energy_j) == pytest.approx(n * 6e-12, rel=1e-12)
    assert int(st.record.unconverged) == int(np.sum(~np.asarray(full.converged))) > 0
    rep = nds.cost(nds.program(_linear(noisy, w), key=key), (4,))
    chip = nds.nn.analog_layers(nds.program(_linear(noisy, w), key=key))[0].state
    assert rep.programming.energy_j == pytest.approx(float(chip.record.energy_j), rel=1e-12)
    # an unprogrammed model: the upper bound, every device at max_pulses
    up = nds.cost(_linear(noisy, w), (4,)).programming
    assert up.energy_j == pytest.approx(24 * 3 * 6e-12, rel=1e-12) and up.time_s == pytest.approx(72e-6, rel=1e-12)
    with pytest.raises(ValueError, match="one-shot"):
        CrossbarTile(cell=rram).write_verify_record(w, key=key)
