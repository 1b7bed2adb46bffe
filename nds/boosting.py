"""Error-adaptive classifier boosting (EACB) with the SRAM chip in the loop.

Wang, Zhang & Verma (ICASSP 2014) and Zhang, Wang & Verma (IEEE JSSC 52(4), 2017): each
column of the 6T SRAM array in classify mode is a weak linear classifier with ±1 weights
(the comparator's sign of the bit-line difference, :class:`nds.arrays.SRAMColumn`);
AdaBoost combines ``n_weak`` columns per class into a strong one-vs-all classifier and a
ten-way decision takes the class with the largest boosted score. In EACB the sample
re-weighting and the vote weights ``alpha_t = 0.5 ln((1 - eps_t) / eps_t)`` use the errors
``eps_t`` of the *programmed chip's* columns (hardware in the loop), so later weak
classifiers learn to correct the faults and variation of earlier ones; conventional
training computes them with the ideal model and programs the result onto every chip.

Weak learner (per class, per round, trained in software on the ideal column and the current
sample weights ``D``), ``learner=``:

* ``"fisher"`` (default): the ±1 vector ``s`` that maximises the D-weighted Fisher ratio
  ``(s . r)^2 / (s^T S s)`` (``r``: weighted class-mean difference, ``S``: weighted feature
  covariance plus ``ridge * tr(S)/f`` on the diagonal), found by greedy single-bit flips
  (closed-form update, ``passes`` sweeps) from the sign of the ridge LDA direction — a
  binary linear discriminant, in the spirit of the paper's constrained-resolution training
  of the base classifiers (our formulation, not the paper's algorithm);
* ``"error"``: the same start, then greedy bit flips that lower the weighted training error
  of the column with its best threshold (costlier: ``n_bias + 1`` thresholds × n per flip);
* ``"meandiff"``: ``s = sign(sum_n D_n y_n (x_n - mean_D x))`` (the first version).

The per-column threshold is realised with ``bias_rows`` rows driven at the constant code
``bias_code``, ``k`` of which store ``+1`` (bias ``(2k - bias_rows) * bias_code``), ``k``
chosen to minimise the weighted error of the ideal column.

Limits: the weak learners are greedy (local optima), and none of them optimises the weighted
error exactly, so a round can return a column whose error under the new weights is exactly
1/2 (``alpha = 0``, a wasted column) or, when the bias range ``±bias_rows * bias_code`` is
too small for the scores, above 1/2 (negative ``alpha``).

Randomness: ``key`` arguments only (chip = program-time key, reads = read-time key).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .arrays._sram_column import SRAMColumn

__all__ = ["Chip", "BoostedClassifier", "program_chip", "column_decisions", "train_eacb", "predict",
           "adaboost_alpha", "weak_learner"]


class Chip(NamedTuple):
    """One manufactured SRAM array: V_t offsets ``dvt`` (2, rows, cols) (V) and comparator
    offsets ``offset`` (cols,) (V)."""

    dvt: Float[Array, "2 rows cols"]
    offset: Float[Array, " cols"]


class BoostedClassifier(NamedTuple):
    """Cells ``w`` (rows, n_classes * n_weak) of ±1, vote weights ``alpha`` (n_classes,
    n_weak); column ``c * n_weak + t`` is weak classifier ``t`` of class ``c``."""

    w: Float[Array, "rows cols"]
    alpha: Float[Array, "classes weak"]


def program_chip(column: SRAMColumn, rows: int, cols: int, *, key: PRNGKeyArray) -> Chip:
    """Sample one chip's V_t and comparator offsets (program time)."""
    k1, k2 = jax.random.split(key)  # TODO(issue 11): named streams; kept while the EACB claim test is re-derived
    return Chip(dvt=column.sample_dvt((rows, cols), key=k1), offset=column.sample_offsets(cols, key=k2))


def _inputs(x_codes, column, bias_rows, bias_code):
    n = x_codes.shape[0]
    b = jnp.full((n, bias_rows), float(bias_code), x_codes.dtype)
    return jnp.concatenate([x_codes, b], axis=1)


def column_decisions(column: SRAMColumn, chip: Chip | None, w: Float[Array, "rows cols"],
                     codes: Float[Array, "n rows"], *, key: PRNGKeyArray | None,
                     batch: int = 500) -> Float[Array, "n cols"]:
    """±1 decisions of the columns ``w`` for inputs ``codes`` (n, rows). ``chip=None``: the
    ideal column (linear, no variation). Comparator noise from ``key`` (None: noise off)."""
    if chip is None:
        col = column.ideal()
        col = dataclasses.replace(col, dac_bits=column.dac_bits)
        dv = col.differential_batch(codes, w, None) if col.dac_bits is not None else \
            jax.vmap(lambda c: col.differential(c, w, None))(codes)
        return jnp.where(dv >= 0, 1.0, -1.0)
    dvt, off = chip.dvt, chip.offset
    if column.dac_bits is not None:
        dv = column.differential_batch(codes, w, dvt)
    else:
        dv = jax.lax.map(lambda c: column.differential(c, w, dvt), codes, batch_size=batch)
    noise = column.comparator_noise(dv.shape, key=key, dtype=dv.dtype) if key is not None else 0.0
    return jnp.where(dv - off[None, :] - noise >= 0, 1.0, -1.0)


def adaboost_alpha(eps: Float[Array, "..."], *, eps_min: float = 1e-6) -> Float[Array, "..."]:
    """AdaBoost's vote weight ``0.5 ln((1 - eps) / eps)`` of a weak classifier with weighted
    error ``eps`` (clipped to ``[eps_min, 1 - eps_min]``)."""
    e = jnp.clip(eps, eps_min, 1 - eps_min)
    return 0.5 * jnp.log((1 - e) / e)


def _weighted_stats(d, y, x):
    """D-weighted covariance (C, f, f) and class-difference vector r (C, f) (``d`` sums to 1)."""
    mu = d @ x  # (C, f)
    dy = d * y
    r = dy @ x - jnp.sum(dy, axis=1, keepdims=True) * mu
    cov = jnp.einsum("cn,nf,ng->cfg", d, x, x) - mu[:, :, None] * mu[:, None, :]
    return r, cov


def _ridge(cov, ridge):
    f = cov.shape[-1]
    tr = jnp.trace(cov, axis1=1, axis2=2)[:, None, None] / f
    return cov + (ridge * tr + 1e-9) * jnp.eye(f, dtype=cov.dtype)[None]


def _fisher_flips(s, r, cov, passes):
    """Greedy single-bit flips of s (C, f) that raise (s.r)^2 / (s^T cov s) with s.r > 0."""
    f = s.shape[1]
    num = jnp.sum(s * r, axis=1)
    cs = jnp.einsum("cfg,cg->cf", cov, s)
    den = jnp.sum(s * cs, axis=1)
    diag = jnp.diagonal(cov, axis1=1, axis2=2)

    def step(carry, j):
        s, num, den, cs = carry
        sj = s[:, j]
        nn = num - 2 * sj * r[:, j]
        nd = den - 4 * sj * cs[:, j] + 4 * diag[:, j]
        better = (nn > 0) & (nn * nn * den > num * num * nd * (1 + 1e-9)) & (nd > 0)
        sgn = jnp.where(better, -1.0, 1.0).astype(s.dtype)
        cs = cs - jnp.where(better, 2 * sj, 0.0)[:, None] * cov[:, :, j]
        s = s.at[:, j].multiply(sgn)
        return (s, jnp.where(better, nn, num), jnp.where(better, nd, den), cs), None

    js = jnp.tile(jnp.arange(f), passes)
    (s, _, _, _), _ = jax.lax.scan(step, (s, num, den, cs), js)
    return s


def _threshold_errors(score, y, d, bias_vals):
    """Weighted error (C, K) of ``sign(score + b_k)`` for every bias value."""
    dy = d * y
    step = (score[:, None, :] + bias_vals[None, :, None] >= 0).astype(score.dtype)  # (C, K, n)
    return 0.5 + 0.5 * jnp.sum(dy, axis=1)[:, None] - jnp.einsum("ckn,cn->ck", step, dy)


def _error_flips(s, x, y, d, bias_vals, passes):
    """Greedy single-bit flips of s (C, f) that lower the best-threshold weighted error."""
    f = s.shape[1]
    score = s @ x.T
    e = jnp.min(_threshold_errors(score, y, d, bias_vals), axis=1)

    def step(carry, j):
        s, score, e = carry
        ns = score - 2 * s[:, j][:, None] * x[:, j][None, :]
        ne = jnp.min(_threshold_errors(ns, y, d, bias_vals), axis=1)
        better = ne < e - 1e-12
        s = s.at[:, j].multiply(jnp.where(better, -1.0, 1.0).astype(s.dtype))
        return (s, jnp.where(better[:, None], ns, score), jnp.where(better, ne, e)), None

    js = jnp.tile(jnp.arange(f), passes)
    (s, _, _), _ = jax.lax.scan(step, (s, score, e), js)
    return s


def weak_learner(x_codes: Float[Array, "n f"], y: Float[Array, "c n"], d: Float[Array, "c n"], *,
                 learner: str = "fisher", ridge: float = 0.1, passes: int = 2,
                 bias_vals: Float[Array, " k"] | None = None) -> Float[Array, "c f"]:
    """±1 feature weights of one weak column per row of ``y`` (labels ±1) under sample weights
    ``d`` (each row sums to 1); see the module doc for ``learner``.

    Raises:
        ValueError: unknown ``learner``; ``learner="error"`` without ``bias_vals``.
    """
    if learner not in ("fisher", "error", "meandiff"):
        raise ValueError(f"weak_learner: learner = {learner!r}; allowed 'fisher', 'error', 'meandiff'")
    if learner == "meandiff":
        mu = d @ x_codes
        dirn = jnp.einsum("cn,cn,nf->cf", d, y, x_codes) - jnp.sum(d * y, axis=1, keepdims=True) * mu
        return jnp.where(dirn >= 0, 1.0, -1.0).astype(x_codes.dtype)
    r, cov = _weighted_stats(d, y, x_codes)
    cov_r = _ridge(cov, ridge)
    # one unbatched solve per class (lax.map): jaxlib's batched LAPACK kernels split their
    # batch over XLA's intra-op thread pool and wait for it, which deadlocks (every pool
    # thread parked, 0 % CPU) when two such kernels run concurrently, as the independent
    # weak learners of one program do
    w = jax.lax.map(lambda ab: jnp.linalg.solve(ab[0], ab[1]), (cov_r, r))
    s = jnp.where(w >= 0, 1.0, -1.0).astype(x_codes.dtype)
    s = _fisher_flips(s, r, cov_r, passes)
    if learner == "error":
        if bias_vals is None:
            raise ValueError("weak_learner: learner = 'error' needs `bias_vals`")
        s = _error_flips(s, x_codes, y, d, bias_vals, passes)
    return s


def train_eacb(column: SRAMColumn, x_codes: Float[Array, "n f"], labels: Int[Array, " n"], *, n_classes: int,
               n_weak: int, chip: Chip | None, bias_rows: int, bias_code: float,
               key: PRNGKeyArray | None = None, learner: str = "fisher", ridge: float = 0.1,
               passes: int = 2) -> BoostedClassifier:
    """Train a boosted ten-way (``n_classes``) classifier, ``n_weak`` columns per class.

    Args:
        column: the array's card (:class:`nds.arrays.SRAMColumn`).
        x_codes: WLDAC codes of the training features, (n, f), ``f + bias_rows`` rows used.
        labels: integer class labels (n,).
        chip: the programmed chip (hardware in the loop, EACB) or None (conventional:
            the ideal model's outputs drive the boosting).
        bias_rows, bias_code: rows used for the column thresholds and their input code.
        key: comparator noise during the in-the-loop reads (None: noise-free reads).
        learner, ridge, passes: the weak learner (module doc), its covariance ridge
            (fraction of the mean variance) and its bit-flip sweeps.

    Returns:
        :class:`BoostedClassifier`. The chip's column for (class c, round t) is
        ``c * n_weak + t``; columns beyond ``n_classes * n_weak`` are unused.

    Raises:
        ValueError: more columns or rows than the chip has; unknown ``learner``.
    """
    n, f = x_codes.shape
    rows = f + bias_rows
    cols_needed = n_classes * n_weak
    if chip is not None and (chip.dvt.shape[1] < rows or chip.dvt.shape[2] < cols_needed):
        raise ValueError(f"train_eacb: need rows={rows}, cols={cols_needed}; chip has {chip.dvt.shape[1:]}")
    if learner not in ("fisher", "error", "meandiff"):
        raise ValueError(f"train_eacb: learner = {learner!r}; allowed 'fisher', 'error', 'meandiff'")
    y = jnp.where(labels[None, :] == jnp.arange(n_classes)[:, None], 1.0, -1.0).astype(x_codes.dtype)  # (C, n)
    codes = _inputs(x_codes, column, bias_rows, bias_code)
    d = jnp.full((n_classes, n), 1.0 / n, x_codes.dtype)
    ks = jnp.arange(bias_rows + 1, dtype=x_codes.dtype)
    bias_vals = (2 * ks - bias_rows) * bias_code  # (K,)
    w_all, a_all = [], []
    keys = jax.random.split(key, n_weak) if key is not None else [None] * n_weak
    for t in range(n_weak):
        s = weak_learner(x_codes, y, d, learner=learner, ridge=ridge, passes=passes, bias_vals=bias_vals)
        score = s @ x_codes.T  # (C, n)
        err = _threshold_errors(score, y, d, bias_vals)  # (C, K)
        k = jnp.argmin(err, axis=1)  # (C,)
        brow = jnp.where(jnp.arange(bias_rows)[None, :] < k[:, None], 1.0, -1.0)  # (C, bias_rows)
        wcol = jnp.concatenate([s, brow], axis=1).T  # (rows, C)
        if chip is None:
            h = column_decisions(column, None, wcol, codes, key=None).T  # (C, n)
        else:
            idx = jnp.arange(n_classes) * n_weak + t
            sub = Chip(dvt=chip.dvt[:, :rows, idx], offset=chip.offset[idx])
            h = column_decisions(column, sub, wcol, codes, key=keys[t]).T
        eps = jnp.sum(d * (h != y), axis=1)
        alpha = adaboost_alpha(eps)
        d = d * jnp.exp(-alpha[:, None] * y * h)
        d = d / jnp.sum(d, axis=1, keepdims=True)
        w_all.append(wcol)
        a_all.append(alpha)
    w = jnp.stack(w_all, axis=2).reshape(rows, n_classes * n_weak)
    return BoostedClassifier(w=w, alpha=jnp.stack(a_all, axis=1))


def predict(column: SRAMColumn, clf: BoostedClassifier, chip: Chip | None, x_codes: Float[Array, "n f"], *,
            bias_rows: int, bias_code: float, key: PRNGKeyArray | None = None) -> Int[Array, " n"]:
    """Ten-way decisions: ``argmax_c sum_t alpha_ct h_ct(x)`` with the columns read on ``chip``
    (None: ideal model)."""
    codes = _inputs(x_codes, column, bias_rows, bias_code)
    rows = codes.shape[1]
    n_cls, n_weak = clf.alpha.shape
    ncol = n_cls * n_weak
    sub = None if chip is None else Chip(dvt=chip.dvt[:, :rows, :ncol], offset=chip.offset[:ncol])
    h = column_decisions(column, sub, clf.w, codes, key=key)  # (n, C*T)
    score = jnp.einsum("nct,ct->nc", h.reshape(-1, n_cls, n_weak), clf.alpha)
    return jnp.argmax(score, axis=1)
