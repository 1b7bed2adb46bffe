"""Monte Carlo over manufactured chips: one compiled, reproducible, sharded run.

``monte_carlo(fn, model, key=k, num_chips=N)`` evaluates ``fn(model, key_i)`` for the ``N``
keys ``jax.random.split(k, N)``. ``fn`` typically programs a chip from ``key_i`` and returns
its accuracy. Chips are processed in batches of ``batch_size`` with ``jax.vmap`` under one
compiled function; each chip's result depends on its own key only, so results do not depend
on the batch size. With several devices the chip axis of each batch is sharded over them
(``jax.sharding.NamedSharding``). With ``checkpoint=path`` finished chips are saved after every
batch (NumPy ``.npz``) and a rerun resumes after the last saved chip.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
import scipy.stats
from jaxtyping import PRNGKeyArray

__all__ = ["MonteCarloResult", "monte_carlo", "summarize"]


def summarize(samples: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Summary statistics over chips (axis 0).

    Returns ``mean``, ``std`` (ddof = 1), ``p5``, ``p50``, ``p95`` (linear-interpolated
    quantiles) and ``ci`` = the two-sided ``confidence`` interval of the mean from Student's t
    (``mean ± t_{(1+c)/2, n−1} · std/√n``), each as a float (scalar samples) or a list.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1) if n > 1 else np.zeros_like(mean)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    q = np.quantile(x, [0.05, 0.5, 0.95], axis=0)
    conv = (lambda a: float(a)) if x.ndim == 1 else (lambda a: np.asarray(a).tolist())
    return {"n": n, "mean": conv(mean), "std": conv(std), "p5": conv(q[0]), "p50": conv(q[1]),
            "p95": conv(q[2]), "ci": [conv(mean - half), conv(mean + half)], "confidence": confidence}


_SUMMARY_KEYS = frozenset({"n", "mean", "std", "p5", "p50", "p95", "ci", "confidence"})


def _is_summary(x) -> bool:
    """A :func:`summarize` dict (not a dict of results that ``fn`` returned)."""
    return isinstance(x, dict) and set(x) == _SUMMARY_KEYS


@dataclasses.dataclass(frozen=True)
class MonteCarloResult:
    """Per-chip results (``samples``: pytree of arrays with leading axis ``num_chips``) and
    their summaries (``stats``: same pytree structure, each leaf a :func:`summarize` dict)."""

    samples: Any
    stats: Any
    keys: np.ndarray

    @property
    def mean(self):
        """Mean over chips of each result leaf (same pytree structure as ``samples``)."""
        return jtu.tree_map(lambda s: s["mean"], self.stats, is_leaf=_is_summary)

    @property
    def std(self):
        """Standard deviation (ddof = 1) over chips of each result leaf (same pytree
        structure as ``samples``)."""
        return jtu.tree_map(lambda s: s["std"], self.stats, is_leaf=_is_summary)


@eqx.filter_jit
def _run_batch(fn, model, keys):
    return jax.vmap(lambda k: fn(model, k))(keys)


def monte_carlo(
    fn: Callable[[Any, PRNGKeyArray], Any],
    model: Any,
    *,
    key: PRNGKeyArray,
    num_chips: int,
    batch_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MonteCarloResult:
    """Evaluate ``fn(model, key_i)`` for ``num_chips`` chip keys.

    Args:
        fn: ``(model, key) -> pytree of arrays`` (e.g. a scalar accuracy); jit-compatible.
        model: passed unchanged to ``fn`` (its arrays are traced, not baked in).
        key: the study's key; chip ``i`` gets ``jax.random.split(key, num_chips)[i]``.
        num_chips: number of chips (>= 1).
        batch_size: chips per compiled call (default: all); rounded up to a multiple of the
            device count when several devices are present.
        checkpoint: ``.npz`` file to save finished chips to and resume from.
        progress: optional callback ``(done, total)`` after each batch.

    Returns:
        :class:`MonteCarloResult`.

    Raises:
        ValueError: ``num_chips`` < 1 or ``batch_size`` < 1; a checkpoint written for other
            keys.
    """
    if num_chips < 1:
        raise ValueError(f"monte_carlo: num_chips = {num_chips}, must be >= 1")
    bs = num_chips if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"monte_carlo: batch_size = {batch_size}, must be >= 1")
    ndev = jax.device_count()
    bs = min(bs, num_chips)
    if ndev > 1:
        bs = int(math.ceil(bs / ndev) * ndev)
    keys = jax.random.split(key, num_chips)
    key_data = np.asarray(jax.random.key_data(keys))
    start = 0
    path = pathlib.Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            saved_keys = z["keys"]
            n_done = int(z["n_done"])
            if saved_keys.shape != key_data.shape or not np.array_equal(saved_keys[:n_done], key_data[:n_done]):
                raise ValueError(f"monte_carlo: checkpoint {path} was written for other keys or num_chips; "
                                 "delete it or use another path")
            leaves = [z[f"leaf{i}"][:n_done] for i in range(int(z["n_leaves"]))]
            treedef_repr = str(z["treedef"])
        start = n_done
        done_leaves = leaves
    else:
        done_leaves = None
        treedef_repr = None
    sharding = None
    if ndev > 1:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("chips",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chips"))
    treedef = None
    chunks: list[list[np.ndarray]] = []
    if done_leaves is not None and start > 0:
        chunks.append(done_leaves)
    if progress is not None:
        progress(start, num_chips)
    pos = start
    while pos < num_chips:
        idx = np.arange(pos, pos + bs)
        idx = np.minimum(idx, num_chips - 1)  # pad the last batch with repeats, dropped below
        kb = keys[idx]
        if sharding is not None:
            kb = jax.device_put(kb, sharding)
        out = _run_batch(fn, model, kb)
        leaves, treedef = jtu.tree_flatten(out)
        take = min(bs, num_chips - pos)
        chunks.append([np.asarray(l)[:take] for l in leaves])
        pos += take
        if path is not None:
            cat = [np.concatenate([c[i] for c in chunks]) for i in range(len(leaves))]
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=key_data, n_done=pos, n_leaves=len(leaves), treedef=str(treedef),
                     **{f"leaf{i}": a for i, a in enumerate(cat)})
            os.replace(tmp, path)
        if progress is not None:
            progress(pos, num_chips)
    if treedef is None:
        # everything came from the checkpoint: rebuild the structure from one cheap trace
        out_shape = jax.eval_shape(lambda k: fn(model, k), keys[0])
        treedef = jtu.tree_structure(out_shape)
        if treedef_repr is not None and str(treedef) != treedef_repr:
            raise ValueError(f"monte_carlo: checkpoint {path} holds a different result structure")
    cat = [np.concatenate([c[i] for c in chunks]) for i in range(treedef.num_leaves)]
    samples = jtu.tree_unflatten(treedef, cat)
    stats = jtu.tree_map(summarize, samples)
    return MonteCarloResult(samples=samples, stats=stats, keys=key_data)
