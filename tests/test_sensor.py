"""In-sensor first layers: RedEye-style analog front end and ASP filter bank."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from nds import load_card  # noqa: E402
from nds.tiles._sensor import (ASPCard, ASPFilterBank, AnalogSensorFrontEnd, SensorAnalogCard,  # noqa: E402
                               SensorTile, asp_kernels)


def _card():
    return load_card("sensor_redeye2016", SensorAnalogCard)


def test_ideal_limit_and_quantized():
    t = SensorTile(sensor=_card())
    w = jax.random.normal(jax.random.PRNGKey(0), (5, 25))
    x = jax.random.uniform(jax.random.PRNGKey(1), (25,))
    ti = t.ideal()
    np.testing.assert_allclose(np.asarray(ti.apply(ti.program(w), x, key=None)), np.asarray(w @ x), atol=1e-12)
    with pytest.raises(ValueError, match="key"):
        t.apply(t.program(w), x, key=None)


def test_shot_noise_variance():
    c = _card()
    t = SensorTile(sensor=c, analog_noise=False, w_bits=None, out_bits=None)
    w = jnp.eye(3)
    x = jnp.array([0.1, 0.5, 0.9])
    n = 20000
    ys = jax.jit(jax.vmap(lambda k: t.apply(w, x, key=k)))(jax.random.split(jax.random.PRNGKey(2), n))
    pred = (x * c.full_well + c.read_noise_e**2) / c.full_well**2
    var = np.asarray(ys.var(0))
    assert np.all(np.abs(var / np.asarray(pred) - 1) < 4 * math.sqrt(2 / n))


def test_snr_knob_noise_and_energy():
    c = _card()
    w = jax.random.normal(jax.random.PRNGKey(0), (4, 9))
    x = jnp.full((9,), 0.5)
    out = {}
    for snr in (20.0, 30.0):
        t = SensorTile(sensor=c, snr_db=snr, shot_noise=False, w_bits=None, out_bits=None)
        ys = jax.jit(jax.vmap(lambda k: t.apply(w, x, key=k)))(jax.random.split(jax.random.PRNGKey(3), 8000))
        ref = np.sqrt(np.sum(np.asarray(w) ** 2, axis=1) / 3)
        pred = ref / math.sqrt(10 ** (snr / 10))
        assert np.all(np.abs(np.asarray(ys.std(0)) / pred - 1) < 4 * math.sqrt(1 / 8000) * 1.5)
        out[snr] = t.cost((4, 9), 1).energy_j["compute"]
    e_s = c.energy_per_sample(30.0) / c.energy_per_sample(20.0)
    assert abs(e_s - 10.0) < 1e-9  # energy per sample proportional to SNR
    assert out[30.0] > out[20.0]


def test_front_end_and_asp_shapes_costs_fixed_filters():
    c = _card()
    fe = AnalogSensorFrontEnd(tile=SensorTile(sensor=c), pool=2)
    img = jax.random.uniform(jax.random.PRNGKey(0), (12, 12))
    ker = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 5))
    y = fe(ker, img, key=jax.random.PRNGKey(2))
    assert y.shape == (3, 4, 4)
    cost = fe.cost((3, 5, 5), (12, 12))
    assert cost.counts["adc_conversions"] == 3 * 4 * 4
    assert cost.counts["pixel_reads"] == 144
    g = jax.grad(lambda k: jnp.sum(fe(k, img, key=jax.random.PRNGKey(2))))(ker)
    assert bool(jnp.all(jnp.isfinite(g)))
    a = load_card("sensor_asp2012", ASPCard)
    bank = ASPFilterBank(asp=a)
    k = asp_kernels(5, 4, 2)
    assert k.shape == (8, 5, 5) and np.allclose(k.sum(axis=(1, 2)), 0)
    r1 = bank(img, key=jax.random.PRNGKey(4))
    assert r1.shape == (8, 4, 4)
    # non-trainable: the bank has no array leaves to train
    assert len(jax.tree_util.tree_leaves(bank)) == len(jax.tree_util.tree_leaves(a))
    np.testing.assert_array_equal(np.asarray(bank(img, key=jax.random.PRNGKey(4))), np.asarray(r1))
    assert bank.cost((12, 12)).energy_j["array"] > 0


def test_front_end_pixel_exposed_once_shot_noise_variance():
    """Every pixel is exposed once per frame: two identical 1x1 kernels see the same noisy
    pixel (identical outputs), and a 1x1 identity kernel's output variance is the shot + read
    noise closed form (x FW + rn^2) / FW^2 (pool 1, no analog noise, no quantization, no
    weight quantization; pixels high enough that the ReLU never clips)."""
    c = _card()
    t = SensorTile(sensor=c, analog_noise=False, w_bits=None, out_bits=None)
    fe = AnalogSensorFrontEnd(tile=t, pool=1)
    img = jnp.linspace(0.2, 0.9, 16).reshape(4, 4)
    ker = jnp.ones((2, 1, 1))
    n = 4000
    ys = jax.jit(jax.vmap(lambda k: fe(ker, img, key=k)))(jax.random.split(jax.random.PRNGKey(5), n))
    np.testing.assert_array_equal(np.asarray(ys[:, 0]), np.asarray(ys[:, 1]))
    pred = (np.asarray(img) * c.full_well + c.read_noise_e**2) / c.full_well**2
    var = np.asarray(ys[:, 0].var(0))
    # sample variance: relative standard error sqrt(2 / n); 4 sigma
    assert np.all(np.abs(var / pred - 1) < 4 * math.sqrt(2 / n))
    # analog noise on (20 dB): independent per output, so the two kernels' outputs differ by
    # noise of variance 2 ref^2 / SNR, ref^2 = sum(w^2) / 3 = 1/3 (the darkest pixel, 0.2, is
    # 3.5 sigma above the ReLU corner: clipping biases the variance by < 1e-3)
    fe2 = AnalogSensorFrontEnd(tile=SensorTile(sensor=c, w_bits=None, out_bits=None, snr_db=20.0), pool=1)
    y2 = jax.jit(jax.vmap(lambda k: fe2(ker, img, key=k)))(jax.random.split(jax.random.PRNGKey(6), n))
    var2 = np.asarray((y2[:, 0] - y2[:, 1]).var(0))
    assert np.all(np.abs(var2 / (2 / 3 / 100) - 1) < 4 * math.sqrt(2 / n))
    with pytest.raises(ValueError, match="key"):
        fe2(ker, img, key=None)
