"""Error-adaptive classifier boosting (nds.boosting): AdaBoost's formulas, the weak
learners' optimality conditions, and hardware in the loop with a known fault.

Every check is exact (float64) or a closed form; no statistics are needed.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nds import load_card
from nds.arrays._sram_column import SRAMColumn
from nds.boosting import (Chip, _threshold_errors, adaboost_alpha, column_decisions, predict, program_chip,
                          train_eacb, weak_learner)

KW = dict(bias_rows=7, bias_code=4.0)


def _col(**kw):
    return load_card("sram_6t_130nm_zhang2017", SRAMColumn, **kw)


def _data(n=120, f=9, classes=3, seed=0):
    """Odd WLDAC codes (1..31) of three blobs. With an odd number of features and even
    bias values (``KW``) the column sum ``s . x + bias`` is odd, never 0: no comparator ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    means = rng.uniform(4, 27, (classes, f))
    x = 2 * np.clip(np.round((means[labels] + rng.normal(0, 6, (n, f)) - 1) / 2), 0, 15) + 1
    return jnp.asarray(x), jnp.asarray(labels)


def test_adaboost_alpha_closed_form():
    eps = jnp.array([0.1, 0.25, 0.5, 0.9, 0.0, 1.0])
    a = np.asarray(adaboost_alpha(eps, eps_min=1e-6))
    np.testing.assert_allclose(a[:4], [0.5 * math.log(9), 0.5 * math.log(3), 0.0, -0.5 * math.log(9)], rtol=1e-12)
    np.testing.assert_allclose(a[4:], [0.5 * math.log((1 - 1e-6) / 1e-6), -0.5 * math.log((1 - 1e-6) / 1e-6)],
                               rtol=1e-9)


@pytest.mark.parametrize("learner", ["fisher", "error"])
def test_boosting_replays_adaboost(learner):
    """Replaying AdaBoost from the returned columns: each alpha_t is 0.5 ln((1-eps_t)/eps_t)
    with eps_t the D_t-weighted error, and each weak column has error exactly 1/2 under
    D_{t+1} (the reweighting identity). Wrong reweighting or alpha breaks both."""
    x, labels = _data()
    col = _col()
    n_cls, n_weak = 3, 4
    clf = jax.jit(lambda a, b: train_eacb(col, a, b, n_classes=n_cls, n_weak=n_weak, chip=None, learner=learner,
                                          **KW))(x, labels)
    codes = jnp.concatenate([x, jnp.full((x.shape[0], KW["bias_rows"]), KW["bias_code"])], axis=1)
    h = np.asarray(column_decisions(col, None, clf.w, codes, key=None)).reshape(-1, n_cls, n_weak)
    # ideal column = sign(s . x + bias) exactly (no ties, see _data)
    lin = np.asarray(codes @ clf.w)
    assert np.all(np.abs(lin) >= 1)
    np.testing.assert_array_equal(h.reshape(len(x), -1), np.where(lin >= 0, 1.0, -1.0))
    y = np.where(np.asarray(labels)[:, None] == np.arange(n_cls)[None, :], 1.0, -1.0)
    alpha = np.asarray(clf.alpha)
    d = np.full((len(x), n_cls), 1.0 / len(x))
    for t in range(n_weak):
        eps = np.sum(d * (h[:, :, t] != y), axis=0)
        np.testing.assert_allclose(alpha[:, t], 0.5 * np.log((1 - eps) / eps), rtol=1e-9, atol=1e-12)
        d = d * np.exp(-alpha[:, t] * y * h[:, :, t])
        d = d / d.sum(0)
        np.testing.assert_allclose(np.sum(d * (h[:, :, t] != y), axis=0), 0.5, atol=1e-9)
    # the strong classifier is the alpha-weighted vote
    pred = np.asarray(predict(col, clf, None, x, **KW))
    np.testing.assert_array_equal(pred, np.argmax(np.einsum("nct,ct->nc", h, alpha), axis=1))


def test_threshold_errors_brute_force():
    rng = np.random.default_rng(3)
    score = rng.integers(-40, 40, (2, 50)).astype(float)
    y = np.where(rng.random((2, 50)) < 0.4, 1.0, -1.0)
    d = rng.random((2, 50))
    d /= d.sum(1, keepdims=True)
    b = np.arange(-20, 21, 4.0)
    got = np.asarray(_threshold_errors(jnp.asarray(score), jnp.asarray(y), jnp.asarray(d), jnp.asarray(b)))
    ref = np.array([[np.sum(d[c] * (np.where(score[c] + bk >= 0, 1, -1) != y[c])) for bk in b] for c in range(2)])
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_weak_learners_are_local_optima():
    """"fisher": no single bit flip raises the weighted Fisher ratio (s.r)^2 / s^T S s;
    "error": no single flip lowers the best-threshold weighted error, and it ends no worse
    than "fisher" (its starting point) on that error."""
    x, labels = _data(n=150, f=11, seed=1)
    y = jnp.where(labels[None, :] == jnp.arange(3)[:, None], 1.0, -1.0)
    d = jnp.asarray(np.random.default_rng(2).random((3, 150)))
    d = d / jnp.sum(d, axis=1, keepdims=True)
    bias = (2 * jnp.arange(8.0) - 7) * 4.0
    xn, yn, dn = np.asarray(x), np.asarray(y), np.asarray(d)
    ridge = 0.1

    def fisher(c, s):
        mu = dn[c] @ xn
        xc = xn - mu
        cov = (xc * dn[c][:, None]).T @ xc
        cov = cov + (ridge * np.trace(cov) / xn.shape[1] + 1e-9) * np.eye(xn.shape[1])
        r = (dn[c] * yn[c]) @ xc
        num = s @ r
        return num * abs(num) / (s @ cov @ s)

    def err(c, s):
        sc = xn @ s
        return min(np.sum(dn[c] * (np.where(sc + b >= 0, 1, -1) != yn[c])) for b in np.asarray(bias))

    s_f = np.asarray(weak_learner(x, y, d, learner="fisher", ridge=ridge, passes=20))
    s_e = np.asarray(weak_learner(x, y, d, learner="error", ridge=ridge, passes=20, bias_vals=bias))
    s_m = np.asarray(weak_learner(x, y, d, learner="meandiff"))
    assert set(np.unique(s_f)) <= {-1.0, 1.0} and set(np.unique(s_e)) <= {-1.0, 1.0}
    for c in range(3):
        for j in range(xn.shape[1]):
            flip = np.ones(xn.shape[1])
            flip[j] = -1
            assert fisher(c, s_f[c] * flip) <= fisher(c, s_f[c]) * (1 + 1e-7)
            assert err(c, s_e[c] * flip) >= err(c, s_e[c]) - 1e-12
        assert err(c, s_e[c]) <= err(c, s_f[c]) + 1e-12  # "error" descends from "fisher"
    assert s_m.shape == s_f.shape and set(np.unique(s_m)) <= {-1.0, 1.0}


def test_hardware_in_the_loop_alpha_of_a_stuck_column():
    """A comparator whose offset is -1 V always answers +1 (the swing is < 0.1 V). In the
    loop, its vote weight is the closed form for a constant +1 classifier under uniform
    weights, 0.5 ln(p / (1 - p)), p the class prior; conventional training keeps the ideal
    model's alpha. The stuck column's inputs do not matter: the result is exact."""
    x, labels = _data(n=90, f=9, seed=4)
    col = dataclasses.replace(_col(), noise=False)
    chip = program_chip(col, 16, 6, key=jax.random.PRNGKey(0))
    chip = Chip(dvt=chip.dvt, offset=chip.offset.at[0].set(-1.0))  # class 0, round 0
    kw = dict(n_classes=3, n_weak=2, **KW)
    hil, conv = jax.jit(lambda ch: (train_eacb(col, x, labels, chip=ch, **kw),
                                    train_eacb(col, x, labels, chip=None, **kw)))(chip)
    p = float(np.mean(np.asarray(labels) == 0))
    assert float(hil.alpha[0, 0]) == pytest.approx(0.5 * math.log(p / (1 - p)), rel=1e-9)
    assert float(conv.alpha[0, 0]) > 0.3  # the ideal column is a useful classifier
    # round 0 starts from uniform weights in both: same cells (columns c * n_weak + 0)
    np.testing.assert_array_equal(np.asarray(hil.w[:, 0::2]), np.asarray(conv.w[:, 0::2]))


def test_unknown_learner_raises():
    x, labels = _data(n=20)
    with pytest.raises(ValueError, match="learner"):
        train_eacb(_col(), x, labels, n_classes=3, n_weak=1, chip=None, learner="svm", **KW)
