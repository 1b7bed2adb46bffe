"""Error-adaptive classifier boosting (EACB) with the SRAM chip in the loop.

Wang, Zhang & Verma (ICASSP 2014) and Zhang, Wang & Verma (IEEE JSSC 52(4), 2017): each
column of the 6T SRAM array in classify mode is a weak linear classifier with ±1 weights
(the comparator's sign of the bit-line difference, :class:`nds.arrays.SRAMColumn`);
AdaBoost combines ``n_weak`` columns per class into a strong one-vs-all classifier and a
ten-way decision takes the class with the largest boosted score. In EACB the sample
re-weighting and the vote weights ``alpha_t`` use the errors of the *programmed chip's*
columns (hardware in the loop), so later weak classifiers learn to correct the faults and
variation of earlier ones; conventional training computes them with the ideal model and
programs the result onto every chip.

Weak learner (per class, per round, trained in software on the current sample weights
``D``): ``s = sign(sum_n D_n y_n (x_n - mean_D x))`` over the feature rows; a per-column
threshold is realised with ``bias_rows`` rows driven at the constant code ``bias_code``,
``k`` of which store ``+1`` (bias ``(2k - bias_rows) * bias_code``), ``k`` chosen to minimise
the weighted error of the ideal column.

Randomness: ``key`` arguments only (chip = program-time key, reads = read-time key).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .arrays._sram_column import SRAMColumn

__all__ = ["Chip", "BoostedClassifier", "program_chip", "column_decisions", "train_eacb", "predict"]


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
    k1, k2 = jax.random.split(key)
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


def train_eacb(column: SRAMColumn, x_codes: Float[Array, "n f"], labels: Int[Array, " n"], *, n_classes: int,
               n_weak: int, chip: Chip | None, bias_rows: int, bias_code: float,
               key: PRNGKeyArray | None = None) -> BoostedClassifier:
    """Train a boosted ten-way (``n_classes``) classifier, ``n_weak`` columns per class.

    Args:
        column: the array's card (:class:`nds.arrays.SRAMColumn`).
        x_codes: WLDAC codes of the training features, (n, f), ``f + bias_rows`` rows used.
        labels: integer class labels (n,).
        chip: the programmed chip (hardware in the loop, EACB) or None (conventional:
            the ideal model's outputs drive the boosting).
        bias_rows, bias_code: rows used for the column thresholds and their input code.
        key: comparator noise during the in-the-loop reads (None: noise-free reads).

    Returns:
        :class:`BoostedClassifier`. The chip's column for (class c, round t) is
        ``c * n_weak + t``; columns beyond ``n_classes * n_weak`` are unused.

    Raises:
        ValueError: more columns or rows than the chip has.
    """
    n, f = x_codes.shape
    rows = f + bias_rows
    cols_needed = n_classes * n_weak
    if chip is not None and (chip.dvt.shape[1] < rows or chip.dvt.shape[2] < cols_needed):
        raise ValueError(f"train_eacb: need rows={rows}, cols={cols_needed}; chip has {chip.dvt.shape[1:]}")
    y = jnp.where(labels[None, :] == jnp.arange(n_classes)[:, None], 1.0, -1.0)  # (C, n)
    codes = _inputs(x_codes, column, bias_rows, bias_code)
    d = jnp.full((n_classes, n), 1.0 / n, x_codes.dtype)
    ks = jnp.arange(bias_rows + 1, dtype=x_codes.dtype)
    bias_vals = (2 * ks - bias_rows) * bias_code  # (K,)
    w_all, a_all = [], []
    keys = jax.random.split(key, n_weak) if key is not None else [None] * n_weak
    for t in range(n_weak):
        mu = d @ x_codes  # (C, f), d sums to 1
        dirn = jnp.einsum("cn,cn,nf->cf", d, y, x_codes) - jnp.sum(d * y, axis=1, keepdims=True) * mu
        s = jnp.where(dirn >= 0, 1.0, -1.0)  # (C, f)
        score = s @ x_codes.T  # (C, n)
        pred = jnp.where(score[:, None, :] + bias_vals[None, :, None] >= 0, 1.0, -1.0)  # (C, K, n)
        err = jnp.sum(d[:, None, :] * (pred != y[:, None, :]), axis=2)  # (C, K)
        k = jnp.argmin(err, axis=1)  # (C,)
        brow = jnp.where(jnp.arange(bias_rows)[None, :] < k[:, None], 1.0, -1.0)  # (C, bias_rows)
        wcol = jnp.concatenate([s, brow], axis=1).T  # (rows, C)
        if chip is None:
            h = column_decisions(column, None, wcol, codes, key=None).T  # (C, n)
        else:
            idx = jnp.arange(n_classes) * n_weak + t
            sub = Chip(dvt=chip.dvt[:, :rows, idx], offset=chip.offset[idx])
            h = column_decisions(column, sub, wcol, codes, key=keys[t]).T
        eps = jnp.clip(jnp.sum(d * (h != y), axis=1), 1e-6, 1 - 1e-6)
        alpha = 0.5 * jnp.log((1 - eps) / eps)
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
