"""nds.evaluate: the one-call Monte Carlo over chips and times, and the label / shape checks of
evaluate, accuracy, fit and cost."""

from __future__ import annotations

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nds
from nds._keys import streams
from nds.nn.models import mlp

TIMES = (1.0, 86400.0)


@pytest.fixture(scope="module")
def setup(digits):
    """A small trained MLP on the 8x8 digits (100 test digits) and its PCM version."""
    xtr, ytr, xte, yte = digits
    net = mlp((64, 10), key=jax.random.key(0))
    net, _ = nds.train.fit(net, xtr, ytr, key=jax.random.key(1), steps=60, batch_size=64,
                           optimizer=optax.adam(1e-2))
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile = nds.tiles.CrossbarTile(cell=pcm, array=nds.arrays.ResistiveCrossbar(rows=64, cols=64),
                                  out_noise=0.05)
    return net, nds.analogize(net, tile), xte[:100], yte[:100]


def _by_hand(model, x, y, t, *, key, num_chips, batch_size=None):
    """The hand-written program → drift → accuracy Monte Carlo."""
    def one_chip(m, k):
        kp, kd, kr = streams(k, "program", "drift", "read")
        chip = nds.program(m, key=kp)
        if t is not None:
            chip = nds.drift(chip, t, key=kd)
        return nds.train.accuracy(chip, x, y, key=kr)

    return np.asarray(nds.monte_carlo(one_chip, model, key=key, num_chips=num_chips, batch_size=batch_size).samples)


def test_evaluate_equals_hand_written_monte_carlo_bit_for_bit(setup):
    """Several times share each programmed chip, and every time's column equals the
    hand-written Monte Carlo at that time with the same keys, exactly; one scalar time gives
    the same column; the chip batch size changes nothing."""
    _, am, x, y = setup
    key = jax.random.key(7)
    ev = nds.evaluate(am, x, y, key=key, num_chips=4, t=TIMES, batch_size=3)
    assert ev.samples.shape == (4, 2) and ev.times == TIMES
    for i, t in enumerate(TIMES):
        want = _by_hand(am, x, y, t, key=key, num_chips=4, batch_size=2)
        np.testing.assert_array_equal(ev.samples[:, i], want)
    one = nds.evaluate(am, x, y, key=key, num_chips=4, t=TIMES[1], batch_size=2)
    assert one.samples.shape == (4,)
    np.testing.assert_array_equal(one.samples, ev.samples[:, 1])
    # the chips differ (programming error, drift, read noise) and drift costs accuracy on average
    assert len(set(ev.samples[:, 1].tolist())) > 1


def test_evaluate_without_ageing_and_statistics(setup):
    """t=None skips nds.drift (equal to program → accuracy by hand); the summary statistics
    are those of the samples, and test_se is the binomial sqrt(p(1-p)/n) at the chip mean."""
    _, am, x, y = setup
    key = jax.random.key(3)
    ev = nds.evaluate(am, x, y, key=key, num_chips=4, batch_size=3)
    np.testing.assert_array_equal(ev.samples, _by_hand(am, x, y, None, key=key, num_chips=4, batch_size=3))
    s = ev.samples
    assert ev.mean == pytest.approx(s.mean(), rel=1e-15)
    assert ev.std == pytest.approx(s.std(ddof=1), rel=1e-12)
    assert ev.test_se == pytest.approx(math.sqrt(s.mean() * (1 - s.mean()) / 100), rel=1e-12)
    # accuracies are counts over 100 test digits
    np.testing.assert_allclose(s * 100, np.round(s * 100), atol=1e-9)
    row = ev.rows()[0]
    assert row["t_seconds"] is None and row["n_test"] == 100 and row["samples"] == s.tolist()


def test_custom_metric_per_example_gets_test_se(setup):
    """A metric returning one value per example: the value is their mean, test_se the mean
    over chips of std(ddof=1)/sqrt(n); a digital model reads the same on every chip."""
    net, _, x, y = setup

    def correct(model, xx, yy, *, key):
        return (jnp.argmax(jax.vmap(lambda xi: model(xi, key=None))(xx), -1) == yy).astype(jnp.float32)

    ev = nds.evaluate(net, x, y, key=jax.random.key(0), num_chips=2, metric=correct)
    c = np.asarray(correct(net, x, y, key=None), np.float64)
    assert ev.metric == "correct"
    np.testing.assert_allclose(ev.samples, [c.mean(), c.mean()], rtol=1e-6)
    assert ev.test_se == pytest.approx(c.std(ddof=1) / 10.0, rel=1e-5)
    # a scalar custom metric has no test-set error
    ev2 = nds.evaluate(net, x, y, key=jax.random.key(0), metric=lambda m, xx, yy, *, key: correct(m, xx, yy, key=key).mean())
    assert ev2.test_se is None and ev2.samples[0] == pytest.approx(c.mean(), rel=1e-6)


def test_evaluate_data_are_arguments_not_constants(setup, caplog):
    """Other test data of the same shape reuse the compiled program: the data are arguments of
    the compiled function, not constants folded into it (no compilation on the second call)."""
    _, am, x, y = setup
    nds.evaluate(am, x, y, key=jax.random.key(1), num_chips=4, t=TIMES, batch_size=3)
    x2, y2 = x[::-1], y[::-1]
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        caplog.clear()
        ev = nds.evaluate(am, x2, y2, key=jax.random.key(1), num_chips=4, t=TIMES, batch_size=3)
    compiles = [r.getMessage()[:120] for r in caplog.records if r.getMessage().startswith("Compiling")]
    assert compiles == [], compiles
    assert ev.samples.shape == (4, 2)


@pytest.mark.parametrize("bad,match", [
    (lambda x, y: (x, y[:, None]), r"y has shape \(100, 1\); expected integer class labels of shape \(N,\) = \(100,\)"),
    (lambda x, y: (x, y.astype(jnp.float32)), "y has dtype float32; expected integer class labels"),
    (lambda x, y: (x, y[:50]), r"shape \(N,\) = \(100,\)"),
    (lambda x, y: (jnp.stack([x, x], 1), y), r"does not accept one example of shape \(2, 1, 8, 8\).*without a batch axis"),
    (lambda x, y: (x, y + 10), r"labels y span \[10, 19\]; the model has 10 outputs"),
])
def test_evaluate_rejects_bad_labels_and_shapes(setup, bad, match):
    net, _, x, y = setup
    xb, yb = bad(x, y)
    with pytest.raises(ValueError, match=match):
        nds.evaluate(net, xb, yb, key=jax.random.key(0))


@pytest.mark.parametrize("t,match", [(-1.0, "t = -1.0"), ([], "empty"), ([1.0, float("nan")], "finite"),
                                     ("1 d", "expected None")])
def test_evaluate_rejects_bad_times(setup, t, match):
    net, _, x, y = setup
    with pytest.raises(ValueError, match=match):
        nds.evaluate(net, x, y, key=jax.random.key(0), t=t)
    with pytest.raises(ValueError, match="num_chips"):
        nds.evaluate(net, x, y, key=jax.random.key(0), num_chips=0)


def test_accuracy_and_fit_reject_column_labels(setup, digits):
    """y of shape (N, 1) used to broadcast against the predictions ("accuracy" 50.76 on MNIST);
    now accuracy and fit say what they expect."""
    net, _, x, y = setup
    for fn in (lambda: nds.train.accuracy(net, x, y[:, None], key=None),
               lambda: nds.train.fit(net, x, y[:, None], key=jax.random.key(0), steps=1, batch_size=8)):
        with pytest.raises(ValueError, match=r"y has shape \(100, 1\); expected integer class labels of shape "
                                             r"\(N,\) = \(100,\).*y\[:, 0\]"):
            fn()
    with pytest.raises(ValueError, match="fit: y has dtype float"):
        nds.train.fit(net, x, y.astype(jnp.float32), key=jax.random.key(0), steps=1, batch_size=8)


def test_cost_rejects_batch_axis_input_shape():
    """input_shape is one example: (8, 1, 28, 28) names the expected shape instead of 'too many
    values to unpack'."""
    net = nds.nn.lenet5(key=jax.random.key(0))
    am = nds.analogize(net, nds.tiles.DigitalTile())
    with pytest.raises(ValueError, match=r"input_shape = \(8, 1, 28, 28\).*ONE example without a batch axis "
                                         r"\(e\.g\. \(1, 28, 28\)"):
        nds.cost(am, input_shape=(8, 1, 28, 28))
    assert nds.cost(am, input_shape=(1, 28, 28)).total.macs > 0
