"""One call for the core question: what does this model score on this hardware, over chips
and over time after programming?

``nds.evaluate(model, x, y, key=k, num_chips=50, t=86400.0)`` programs ``num_chips``
manufactured chips of ``model`` (``nds.program``), ages each to every time ``t`` after
programming (``nds.drift``; the same programmed chip is aged to every time), reads the test
set ``(x, y)`` on it (the metric, accuracy by default) and returns the distribution over
chips with the test-set sampling error beside it. It runs on :func:`nds.monte_carlo` (chips
batched under one compiled function; sharded over devices; checkpointed with
``checkpoint=``). The data are arguments of the compiled function, not constants baked into
it.

Keys. Chip ``i`` gets ``k_i = jax.random.split(key, num_chips)[i]`` (as in
:func:`nds.monte_carlo`) and derives three named streams (:mod:`nds._keys`):
``stream(k_i, "program")`` programs the chip, ``stream(k_i, "drift")`` ages it (the same key
at every time: one chip's devices follow one trajectory), ``stream(k_i, "read")`` reads the
test set (the same read key at every time: common random numbers, so differences between
times are the ageing, not read-noise resampling). The result equals, bit for bit, this
hand-written Monte Carlo (one time ``t``)::

    def one_chip(model, k):
        kp, kd, kr = nds._keys.streams(k, "program", "drift", "read")
        chip = nds.drift(nds.program(model, key=kp), t, key=kd)      # no drift when t is None
        return nds.train.accuracy(chip, x, y, key=kr)
    nds.monte_carlo(one_chip, model, key=key, num_chips=num_chips)

Test-set sampling error. An accuracy ``p`` measured on ``n`` test examples carries the
binomial standard error ``sqrt(p (1 − p) / n)`` from the choice of test examples (it does
not shrink with more chips: every chip reads the same examples); :class:`Evaluation` reports
it at ``p`` = the mean over chips as ``test_se``, beside ``std``, the spread over chips. A
custom metric that returns one value per example (shape ``(n,)``) gets the mean as its value
and ``std(ddof=1)/sqrt(n)`` as its ``test_se``; a custom metric that returns a scalar has no
``test_se`` (``None``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._keys import streams
from ._monte_carlo import monte_carlo, summarize
from ._program import drift, program

__all__ = ["Evaluation", "evaluate", "check_labels", "check_example"]


class _Accuracy(eqx.Module):
    """The default metric: :func:`nds.train.accuracy` evaluated in chunks of ``batch``."""

    batch: int = eqx.field(static=True)

    @property
    def __name__(self) -> str:  # noqa: D401 - read by Evaluation.metric
        return "accuracy"

    def __call__(self, model, x, y, *, key):
        from .train import accuracy

        return accuracy(model, x, y, key=key, batch=self.batch)


def check_labels(x: Any, y: Any, where: str) -> None:
    """Check that ``y`` holds one integer class label per example of ``x``.

    Static checks only (shapes and dtypes), valid under tracing.

    Raises:
        ValueError: ``x`` has no batch axis, ``y`` is not of shape ``(N,)`` with
            ``N = x.shape[0]``, or ``y`` is not of an integer dtype; the message starts with
            ``where`` and says what is expected.
    """
    xs, ys = tuple(np.shape(x)), tuple(np.shape(y))
    if len(xs) < 1:
        raise ValueError(f"{where}: x has shape {xs}; expected a batch of examples, shape (N, ...)")
    if ys != (xs[0],):
        hint = " (drop the trailing axis: y[:, 0] or y.reshape(-1))" if ys == (xs[0], 1) else ""
        raise ValueError(f"{where}: y has shape {ys}; expected integer class labels of shape (N,) = "
                         f"({xs[0]},), one per example of x{hint}")
    dt = jnp.result_type(y)
    if not jnp.issubdtype(dt, jnp.integer):
        raise ValueError(f"{where}: y has dtype {dt}; expected integer class labels (e.g. int32), "
                         "not one-hot or float values")


def check_example(model: Any, x: Any, where: str, *, key: PRNGKeyArray | None = None) -> jax.ShapeDtypeStruct:
    """Trace ``model`` (programmed abstractly) on one example ``x[0]``; returns the output's
    shape and dtype. Nothing is computed (``jax.eval_shape``).

    Raises:
        ValueError: the model does not accept one example of shape ``x.shape[1:]``; the
            message gives the shape, says that layers take one example without a batch axis,
            and quotes the model's own error.
    """
    xs = tuple(np.shape(x))
    k = jax.random.key(0) if key is None else key
    ex = jax.ShapeDtypeStruct(xs[1:], jnp.result_type(x))

    def one(m, xi):
        return program(m, key=k)(xi, key=k)

    try:
        return eqx.filter_eval_shape(one, model, ex)
    except Exception as err:  # the model's own message is kept below
        raise ValueError(f"{where}: the model does not accept one example of shape {xs[1:]} (x has shape "
                         f"{xs}: N = {xs[0]} examples of shape {xs[1:]}). Layers take one example without a "
                         f"batch axis, e.g. (1, 28, 28) for LeNet-5 on MNIST; x must be (N, *example_shape). "
                         f"The model raised: {type(err).__name__}: {err}") from err


def _as_times(t: Any) -> tuple[tuple[float, ...] | None, bool]:
    """``(times, scalar)``: ``None`` (no ageing), or a tuple of seconds; ``scalar`` when ``t``
    was a single number (or None)."""
    if t is None:
        return None, True
    if isinstance(t, (int, float, np.number)) or (hasattr(t, "ndim") and np.ndim(t) == 0):
        ts, scalar = (t,), True
    elif isinstance(t, (Sequence, np.ndarray)) and not isinstance(t, (str, bytes)):
        ts, scalar = tuple(t), False
    else:
        raise ValueError(f"evaluate: t = {t!r}; expected None, seconds after programming (a number >= 0) "
                         "or a sequence of them")
    if not ts:
        raise ValueError("evaluate: t is an empty sequence; give at least one time, or t=None for no ageing")
    out = []
    for v in ts:
        if v is None or isinstance(v, bool):
            raise ValueError(f"evaluate: t = {t!r} holds {v!r}; every time must be a number of seconds >= 0")
        try:
            f = float(v)
        except (TypeError, jax.errors.ConcretizationTypeError):
            raise ValueError(f"evaluate: t = {t!r}: times must be concrete numbers of seconds") from None
        if not (f >= 0 and math.isfinite(f)):
            raise ValueError(f"evaluate: t = {t!r} holds {v!r}; every time must be a finite number of seconds >= 0")
        out.append(f)
    return tuple(out), scalar


def _one_chip(metric: Callable, aged: bool, args: Any, k: PRNGKeyArray) -> Any:
    """Program one chip from ``k``, age it to every time (``lax.map``), read the test set."""
    model, x, y, ts = args
    kp, kd, kr = streams(k, "program", "drift", "read")
    chip = program(model, key=kp)
    if not aged:
        return metric(chip, x, y, key=kr)
    return jax.lax.map(lambda tt: metric(drift(chip, tt, key=kd), x, y, key=kr), ts)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes:
        metric: the metric's name (``"accuracy"`` by default).
        times: seconds after programming, one per evaluated time, or ``None`` (no ageing).
        samples: the metric of every chip: shape ``(num_chips,)`` when ``t`` was a single time
            or ``None``, ``(num_chips, len(times))`` when ``t`` was a sequence.
        test_se: test-set standard error of the mean over chips, per time (float or array
            like ``mean``), ``None`` for a scalar custom metric (module docstring).
        n_test: number of test examples.
        keys: raw key data of the chips (``jax.random.key_data``), shape ``(num_chips, ...)``.
        confidence: level of the confidence interval ``ci`` of the mean over chips.
    """

    metric: str
    times: tuple[float, ...] | None
    samples: np.ndarray
    test_se: Any
    n_test: int
    keys: np.ndarray
    confidence: float = 0.95

    @property
    def num_chips(self) -> int:
        """Number of chips."""
        return int(self.samples.shape[0])

    @property
    def _per_time(self) -> bool:
        return self.samples.ndim == 2

    @property
    def stats(self) -> Any:
        """:func:`nds.summarize` over chips (``n``, ``mean``, ``std`` (ddof 1), ``p5``, ``p50``,
        ``p95``, ``ci``, ``confidence``) plus ``test_se`` and ``n_test``: a dict, or a list of
        dicts (one per time) when ``t`` was a sequence."""
        def one(s, se):
            return dict(summarize(s, self.confidence), test_se=se, n_test=self.n_test)

        if not self._per_time:
            return one(self.samples, self.test_se)
        ses = [None] * self.samples.shape[1] if self.test_se is None else list(np.asarray(self.test_se).tolist())
        return [one(self.samples[:, i], ses[i]) for i in range(self.samples.shape[1])]

    def _field(self, name: str) -> Any:
        st = self.stats
        return st[name] if isinstance(st, dict) else np.array([s[name] for s in st])

    @property
    def mean(self) -> Any:
        """Mean over chips (float, or array of one per time)."""
        return self._field("mean")

    @property
    def std(self) -> Any:
        """Standard deviation over chips, ddof 1 (float, or array of one per time)."""
        return self._field("std")

    @property
    def p5(self) -> Any:
        """5th percentile over chips (float, or array of one per time)."""
        return self._field("p5")

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per time: ``t_seconds`` (None without ageing), the
        :attr:`stats` keys, and ``samples`` (one value per chip)."""
        st = self.stats if self._per_time else [self.stats]
        times = self.times if self.times is not None else (None,)
        cols = self.samples if self._per_time else self.samples[:, None]
        return [dict(t_seconds=t, **s, samples=[float(v) for v in cols[:, i]])
                for i, (t, s) in enumerate(zip(times, st))]

    def __str__(self) -> str:
        from .console import fmt_duration

        pct = self.metric == "accuracy"
        f = (lambda v: f"{100 * v:.2f}%") if pct else (lambda v: f"{v:.4g}")
        d = (lambda v: f"{100 * v:.2f}") if pct else (lambda v: f"{v:.3g}")
        lines = [f"{self.metric} over {self.num_chips} chip{'s' * (self.num_chips > 1)}, {self.n_test} test examples"
                 + (" (spreads in percentage points)" if pct else "")]
        for r in self.rows():
            when = "not aged" if r["t_seconds"] is None else f"t = {fmt_duration(r['t_seconds'])}"
            se = "n/a" if r["test_se"] is None else d(r["test_se"])
            lines.append(f"  {when}: mean {f(r['mean'])}, std over chips {d(r['std'])}, "
                         f"test-set SE {se}, p5 {f(r['p5'])}")
        return "\n".join(lines)


def evaluate(
    model: Any,
    x: Array,
    y: Array,
    *,
    key: PRNGKeyArray,
    num_chips: int = 1,
    t: float | Sequence[float] | None = None,
    batch_size: int | None = None,
    metric: Callable[..., Array] | None = None,
    eval_batch: int = 500,
    checkpoint: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    confidence: float = 0.95,
) -> Evaluation:
    """Program ``num_chips`` chips of ``model``, age them to ``t``, read ``(x, y)``.

    Args:
        model: a model from :func:`nds.analogize` (not programmed), or any Equinox model
            (then every "chip" is the model itself; with noisy reads the chips differ only
            in their read keys). It takes one example (no batch axis) and a ``key``.
        x: test inputs, shape ``(N, *example_shape)`` (e.g. ``(1000, 1, 28, 28)``).
        y: labels: for the default metric integer class labels of shape ``(N,)``; for a
            custom metric anything with leading axis ``N``.
        key: chip ``i`` uses ``jax.random.split(key, num_chips)[i]`` (module docstring).
        num_chips: number of manufactured chips (>= 1).
        t: seconds after programming: ``None`` (no ageing: ``nds.drift`` is not called), one
            number, or a sequence (each chip is programmed once and aged to every time).
        batch_size: chips per compiled batch (default all; lower it to bound memory).
        metric: ``metric(chip, x, y, *, key) -> scalar`` or per-example values ``(N,)``;
            default :func:`nds.train.accuracy` (a fraction in [0, 1]).
        eval_batch: test examples per chunk of the default metric.
        checkpoint: ``.npz`` path: finished chips are saved and a rerun resumes
            (:func:`nds.monte_carlo`).
        progress: callback ``(chips_done, num_chips)`` after every batch of chips.
        confidence: level of the interval ``ci`` of the mean over chips.

    Returns:
        :class:`Evaluation` (``mean``, ``std``, ``p5``, ``test_se``, ``stats``, ``rows()``).

    Raises:
        ValueError: ``y`` not integer labels of shape ``(N,)`` (default metric) or of another
            length than ``x``; the model does not accept one example ``x[0]``; labels outside
            ``[0, C)`` for a model with ``C`` outputs; a time that is negative, not finite or
            not a number; ``num_chips`` or ``batch_size`` < 1; a custom metric whose output
            is neither a scalar nor one value per example.
    """
    times, scalar = _as_times(t)
    if isinstance(num_chips, bool) or not isinstance(num_chips, (int, np.integer)) or num_chips < 1:
        raise ValueError(f"evaluate: num_chips = {num_chips!r}; expected an integer >= 1")
    if metric is None:
        check_labels(x, y, "evaluate")
        met: Callable = _Accuracy(int(eval_batch))
        name = "accuracy"
    else:
        xs, ys = np.shape(x), np.shape(y)
        if len(xs) < 1 or len(ys) < 1 or ys[0] != xs[0]:
            raise ValueError(f"evaluate: x has shape {tuple(xs)} and y {tuple(ys)}; both need the same "
                             "leading (example) axis N")
        met, name = metric, getattr(metric, "__name__", type(metric).__name__)
    n = int(np.shape(x)[0])
    out = check_example(model, x, "evaluate")
    if metric is None:
        if len(out.shape) != 1:
            raise ValueError(f"evaluate: the model maps one example to shape {out.shape}; the default metric "
                             "(accuracy) needs one logit per class, shape (C,); pass metric= for other outputs")
        if not isinstance(y, jax.core.Tracer):
            yn = np.asarray(y)
            if yn.size and (yn.min() < 0 or yn.max() >= out.shape[0]):
                raise ValueError(f"evaluate: labels y span [{yn.min()}, {yn.max()}]; the model has "
                                 f"{out.shape[0]} outputs, so labels must lie in [0, {out.shape[0] - 1}]")
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    ts = None if times is None else jnp.asarray(times, dtype=jnp.result_type(float))
    fn = jax.tree_util.Partial(_one_chip, met, times is not None)
    mc = monte_carlo(fn, (model, xj, yj, ts), key=key, num_chips=num_chips, batch_size=batch_size,
                     checkpoint=checkpoint, progress=progress)
    raw = np.asarray(mc.samples)
    per_example = raw.ndim == (1 if times is None else 2) + 1
    if raw.ndim > (1 if times is None else 2) + 1 or (per_example and raw.shape[-1] != n):
        raise ValueError(f"evaluate: the metric {name} returned shape {raw.shape[1 + (times is not None):]} per "
                         f"chip{' and time' if times is not None else ''}; expected a scalar or one value per "
                         f"example ({n},)")
    if per_example:
        vals = raw.mean(axis=-1)
        se_chip = raw.std(axis=-1, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(vals)
        test_se = se_chip.mean(axis=0)
    elif metric is None:
        vals = raw
        p = vals.mean(axis=0)
        test_se = np.sqrt(p * (1 - p) / n)
    else:
        vals, test_se = raw, None
    if scalar and times is not None:
        vals = vals[:, 0]
        test_se = None if test_se is None else test_se[0]
    if test_se is not None:
        test_se = float(test_se) if np.ndim(test_se) == 0 else np.asarray(test_se, np.float64)
    return Evaluation(metric=name, times=times,
                      samples=np.asarray(vals, np.float64), test_se=test_se, n_test=n, keys=mc.keys,
                      confidence=confidence)
