"""Gain-cell attention (Leroux et al., Nat. Comput. Sci. 2025): ideal limit, retention decay,
kT/C and write noise, write levels, the card against the authors' figures, and the digital
attention tile against Equinox's attention."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from equinox.nn._attention import dot_product_attention

import nds
from nds.cells import K_BOLTZMANN, GainCell
from nds.tiles import DigitalAttention, GainCellAttention


@pytest.fixture(scope="module")
def cell():
    return nds.load_card("gain_cell_leroux2025", GainCell)


def _qkv(t=6, h=2, d=8, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    return tuple(jax.random.normal(ki, (t, h, d), jnp.float64) for ki in k)


def _reference(q, k, v, mask):
    """Equinox's softmax attention, head by head."""
    return jax.vmap(lambda qh, kh, vh: dot_product_attention(qh, kh, vh, mask), in_axes=1, out_axes=1)(q, k, v)


@pytest.mark.parametrize("causal", [False, True])
def test_ideal_limits_equal_softmax_attention(causal):
    q, k, v = _qkv()
    t = q.shape[0]
    mask = jnp.tril(jnp.ones((t, t), bool)) if causal else None
    pos = jnp.arange(t) if causal else None
    ref = _reference(q, k, v, mask)
    gc = GainCellAttention.from_cards().ideal()
    np.testing.assert_allclose(gc.attend(q, k, v, mask, pos, pos), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(DigitalAttention().attend(q, k, v, mask, pos, pos), ref, rtol=1e-12, atol=1e-12)


def test_sliding_window_masks_old_keys():
    """Window w: query i attends to keys i−w+1..i; equals softmax attention with that mask."""
    q, k, v = _qkv(t=7)
    pos = jnp.arange(7)
    w = 3
    band = (pos[:, None] >= pos[None, :]) & (pos[:, None] - pos[None, :] < w)
    ref = _reference(q, k, v, band)
    gc = GainCellAttention.from_cards(window=w).ideal()
    causal = pos[:, None] >= pos[None, :]
    np.testing.assert_allclose(gc.attend(q, k, v, causal, pos, pos), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(DigitalAttention(window=w).attend(q, k, v, causal, pos, pos), ref, rtol=1e-12)


@pytest.mark.parametrize("t_hold", [0.0, 1e-3, 5e-3, 2e-2])
def test_retention_decay_of_a_stored_value_matches_the_closed_form(cell, t_hold):
    """One stored token: the attention weight is 1, so the output is the stored value times the
    retention factor exp(−age/τ), age = (pos_q − pos_k)·t_token + t_hold (card: τ = 5 ms)."""
    c = GainCell(v_max=cell.v_max, v_offset=cell.v_offset, c_store=cell.c_store, sigma_write=0.0,
                 temperature=cell.temperature, tau_retention=cell.tau_retention, t_layer=cell.t_layer,
                 kv_bits=None, write_noise=False, ktc=False, retention=True)
    tile = GainCellAttention(cell=c, q_bits=None, p_bits=None, s_bits=None, out_bits=None, t_token=1e-6,
                             t_hold=t_hold)
    q, k, v = _qkv(t=1)
    dpos = 40
    out = tile.attend(q, k, v, None, jnp.array([dpos]), jnp.array([0]))
    age = dpos * 1e-6 + t_hold
    np.testing.assert_allclose(out, v * math.exp(-age / 5e-3), rtol=1e-12)
    assert float(c.decay(age)) == pytest.approx(math.exp(-age / 5e-3), rel=1e-14)


def test_decay_per_token_matches_the_authors_configuration(cell):
    """Second figure of the card: GPT-2's 12 layers at t_layer = 65 ns with τ = 5 ms give a
    decay of 12·65 ns/5 ms = 1.56e-4 per token, the authors' decay_factor 1.6e-4
    (configs/experiments/gpt-text/ft_lineardram_gpt2.py), to the 2 digits they quote."""
    per_token = 12 * cell.t_layer / cell.tau_retention
    assert per_token == pytest.approx(1.6e-4, abs=0.05e-4)


def test_ktc_variance(cell):
    """Writes with only kT/C noise on: the sample variance of the stored voltage equals
    k_B T / C (1.380649e-23 J/K · 300 K / 1 fF = 4.14e-6 V²) within 5 standard errors
    (SE of a variance of n normal samples: σ² √(2/(n−1)))."""
    c = GainCell(v_max=0.9, v_offset=0.45, c_store=1e-15, sigma_write=0.0, temperature=300.0, tau_retention=5e-3,
                 t_layer=65e-9, kv_bits=None, write_noise=False, ktc=True)
    n = 200_000
    x = c.write(jnp.zeros((n,)), key=jax.random.key(1)) * c.v_half
    var = float(np.var(np.asarray(x), ddof=1))
    expected = 1.380649e-23 * 300.0 / 1e-15
    assert K_BOLTZMANN == 1.380649e-23
    assert float(c.ktc_variance()) == pytest.approx(expected, rel=1e-12)
    assert abs(var - expected) < 5 * expected * math.sqrt(2 / (n - 1))


def test_write_noise_adds_to_ktc_in_quadrature(cell):
    """The card's write error (10 mV) and kT/C (1 fF) add in variance: σ² = σ_w² + kT/C."""
    n = 200_000
    x = cell.ideal()  # noise off, unbounded levels
    c = GainCell(v_max=0.9, v_offset=0.45, c_store=cell.c_store, sigma_write=cell.sigma_write, temperature=300.0,
                 tau_retention=5e-3, t_layer=65e-9, kv_bits=None)
    assert x.write(jnp.ones(3) * 0.3, key=None).tolist() == [0.3, 0.3, 0.3]
    y = np.asarray(c.write(jnp.zeros((n,)), key=jax.random.key(2))) * c.v_half
    expected = 0.01**2 + K_BOLTZMANN * 300.0 / 1e-15
    assert abs(np.var(y, ddof=1) - expected) < 5 * expected * math.sqrt(2 / (n - 1))
    assert float(c.write_sigma_normalized()) == pytest.approx(math.sqrt(expected) / 0.45, rel=1e-12)


def test_write_levels_are_the_papers_grid(cell):
    """kv_bits = 3: 8 levels between 0 and 0.9 V, i.e. −1 + 2m/7 in normalized units."""
    c = GainCell(v_max=0.9, v_offset=0.45, c_store=1e-15, sigma_write=0.0, temperature=300.0, tau_retention=5e-3,
                 t_layer=65e-9, kv_bits=3, write_noise=False, ktc=False)
    x = np.asarray(c.write(jnp.linspace(-1.2, 1.2, 1001), key=None))
    levels = np.unique(np.round(x, 12))
    np.testing.assert_allclose(levels, -1 + 2 * np.arange(8) / 7, atol=1e-12)
    np.testing.assert_allclose(c.voltage(jnp.asarray(levels)), 0.9 * np.arange(8) / 7, atol=1e-12)


def test_cost_at_the_reference_geometry_reproduces_the_papers_breakdown():
    """Regression pin of the calibration (the per-cell energies are the paper's per-token
    figures divided by window × head dim, so this checks the scaling code, not the model):
    one token, one head, window 1024, d = 64 → Φ(QKᵀ) 1120 pJ + Φ(S)V 700 pJ (array, plus the
    two 64-cell writes), DAC 330 pJ, digital 4 nJ, 65 ns."""
    tile = GainCellAttention.from_cards(s_bits=None)
    c = tile.cost(1, 1024, 1, 64, 64)
    e_write = 2 * 64 * 1e-15 * 0.9**2
    assert c.energy_j["array"] == pytest.approx(1120e-12 + 700e-12 + e_write, rel=1e-9)
    conv = nds.load_card("converters_isaac32nm", nds.converters.ConverterCosts)
    assert c.energy_j["conversion"] == pytest.approx(330e-12 + 64 * conv.adc_energy(5), rel=1e-9)
    softmax = nds.tiles._digital_ops.digital_op_cost("softmax", 1024)
    assert c.energy_j["compute"] == pytest.approx(4e-9 + softmax.energy_j["compute"], rel=1e-9)
    assert c.latency_s == pytest.approx(65e-9 + softmax.latency_s, rel=1e-12)  # the digital softmax follows


def test_noisy_writes_need_a_key_and_are_reproducible():
    tile = GainCellAttention.from_cards()
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="pass key"):
        tile.attend(q, k, v)
    a = tile.attend(q, k, v, key=jax.random.key(3))
    b = tile.attend(q, k, v, key=jax.random.key(3))
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_digital_attention_cost_counts():
    """Digital tile: pairs·H·(d_k + d_v) MACs at the digital_45nm fp32 MAC energy, and the
    softmax over pairs·H elements."""
    c = DigitalAttention().cost(10, 55, 2, 8, 8)
    macs = 55 * 2 * 16
    assert c.macs == macs
    card = nds.load_card("digital_45nm", nds.tiles.DigitalMACCosts)
    soft = nds.tiles._digital_ops.digital_op_cost("softmax", 110).energy_j["compute"]
    assert c.energy_j["compute"] == pytest.approx(macs * card.e_mac_fp32 + soft, rel=1e-12)
    assert c.energy_j["onchip_memory"] == pytest.approx(macs * card.e_weight_read_32b, rel=1e-12)


def test_write_noise_is_a_differentiable_leaf():
    """``sigma_write`` may be traced: the write draws and scales by it (no ``float()`` on the
    parameter), so the derivative of ``Σ out²`` w.r.t. ``sigma_write`` equals the central finite
    difference with the same noise draw (``float()`` on the traced value used to fail here)."""
    import dataclasses

    from nds.cells import GainCell

    c = nds.load_card("gain_cell_leroux2025", GainCell)
    x = jnp.linspace(-0.5, 0.5, 8)
    key = jax.random.key(0)
    f = lambda s: jnp.sum(dataclasses.replace(c, sigma_write=s).write(x, key=key) ** 2)
    s0 = jnp.asarray(float(c.sigma_write))
    eps = 1e-3 * float(s0)
    fd = (f(s0 + eps) - f(s0 - eps)) / (2 * eps)
    assert float(jax.grad(f)(s0)) == pytest.approx(float(fd), rel=1e-4)
