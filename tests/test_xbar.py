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
