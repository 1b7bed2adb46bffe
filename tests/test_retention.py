"""DRAM retention errors, bit flips and refresh energy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import nds
from nds.memory import DRAMRetention, retention_flip


@pytest.fixture(scope="module")
def ret():
    return nds.load_card("dram_retention_raidr", DRAMRetention)


def test_zero_errors_at_nominal_refresh(ret):
    for T in (300.0, 318.15, 358.15):
        assert float(ret.ber(0.064, T)) == 0.0
    # 250 k int8 weights (2 M bits) stored at the nominal refresh: no flips at all
    x = jnp.zeros((250_000,), jnp.int8)
    y = retention_flip(x, float(ret.ber(0.064, 358.15)), key=jax.random.key(0))
    assert int(jnp.sum(y != 0)) == 0
    # above 85 C the 64 ms interval is no longer enough (JEDEC halves it there)
    assert float(ret.ber(0.064, 368.15)) > 0


def test_ber_follows_card_distribution(ret):
    # before repair: F(t) = Phi((ln t - mu) / sigma) at the reference temperature
    for t in (0.128, 0.256, 1.0, 10.0):
        f = norm.cdf((math.log(t) - ret.mu_ln) / ret.sigma_ln)
        assert float(ret.retention_cdf(t, ret.reference_temperature)) == pytest.approx(f, rel=1e-3)
    # the RAIDR points the card was fitted to: 30 and 1030 cells in 2^38 bits
    bits = 2.0**38
    assert float(ret.retention_cdf(0.128, 358.15)) * bits == pytest.approx(30, rel=0.02)
    assert float(ret.retention_cdf(0.256, 358.15)) * bits == pytest.approx(1030, rel=0.02)
    # monotone in interval and temperature; Arrhenius: 10 K hotter ~ 1.7x shorter retention
    assert float(ret.ber(1.0, 300.0)) < float(ret.ber(1.0, 358.15)) < float(ret.ber(2.0, 358.15))
    assert float(ret.acceleration(368.15)) == pytest.approx(
        math.exp(ret.activation_energy / 1.380649e-23 * (1 / 358.15 - 1 / 368.15)))


def test_flip_rate_statistics():
    p = 0.01
    x = jnp.zeros((200_000,), jnp.int16)
    y = retention_flip(x, p, key=jax.random.key(1))
    bits = np.unpackbits(np.asarray(y).view(np.uint8))
    n, k = bits.size, int(bits.sum())
    sd = math.sqrt(n * p * (1 - p))
    assert abs(k - n * p) < 5 * sd                          # 5 sigma from 3.2M Bernoulli trials
    # each bit position flips at the same rate
    per_bit = np.unpackbits(np.asarray(y).view(np.uint8).reshape(-1, 2), axis=1).mean(0)
    assert np.all(np.abs(per_bit - p) < 5 * math.sqrt(p * (1 - p) / x.size))


def test_small_ber_rate():
    # p = 1e-6 over 3.2e7 bits: 32 expected flips, within 5 sigma
    p = 1e-6
    x = jnp.zeros((1_000_000,), jnp.int32)
    k = int(np.unpackbits(np.asarray(retention_flip(x, p, key=jax.random.key(5))).view(np.uint8)).sum())
    lam = 32e6 * p
    assert abs(k - lam) < 5 * math.sqrt(lam)


def test_flip_reproducible_and_dtype():
    x = jnp.arange(-128, 128, dtype=jnp.int8)
    a = retention_flip(x, 0.1, key=jax.random.key(7))
    b = retention_flip(x, 0.1, key=jax.random.key(7))
    c = retention_flip(x, 0.1, key=jax.random.key(8))
    assert a.dtype == jnp.int8 and jnp.array_equal(a, b) and not jnp.array_equal(a, c)
    assert jnp.array_equal(retention_flip(x, 0.0, key=jax.random.key(7)), x)
    assert jnp.array_equal(retention_flip(x, 1.0, key=jax.random.key(7)), ~x)
    assert jnp.array_equal(jax.jit(lambda v: retention_flip(v, 0.1, key=jax.random.key(7)))(x), a)
    with pytest.raises(TypeError, match="dtype"):
        retention_flip(jnp.zeros(3), 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="ber"):
        retention_flip(x, 1.5, key=jax.random.key(0))


def test_refresh_energy_vs_interval(ret):
    cap = 2 * 2**30
    p64 = ret.refresh_power(cap, 0.064)
    assert p64 == pytest.approx(8 * cap * 0.12e-12 / 0.064)
    assert ret.refresh_power(cap, 0.256) == pytest.approx(p64 / 4)
    assert ret.refresh_energy(cap, 10.0, 0.064) == pytest.approx(10 * p64)
    with pytest.raises(ValueError, match="refresh_interval_s"):
        ret.refresh_power(cap, 0.0)
