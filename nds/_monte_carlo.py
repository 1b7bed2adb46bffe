"""Monte Carlo over manufactured chips: compiled, reproducible, memory-bounded, multi-process.

``monte_carlo(fn, model, key=k, num_chips=N)`` evaluates ``fn(model, key_i)`` for the ``N``
keys ``jax.random.split(k, N)``. ``fn`` typically programs a chip from ``key_i`` and returns
its accuracy. Each chip's result depends on its own key only.

Chips are streamed in batches: each step evaluates ``batch_size`` chips on every device
(``jax.vmap`` over chips; a process with several devices shards its chips over them with
``jax.sharding.NamedSharding``); only the per-chip results are kept between steps, so
memory does not grow with ``num_chips``. Without ``batch_size`` the batch is chosen from
XLA's own memory estimate of one chip (see :func:`chip_batch_size`).

Under ``jax.distributed`` (JAX's multi-controller runtime: one process per host or per
accelerator, every process running the same script) each step's chips are split over the
processes in order; every process compiles and runs only its own share on its own devices
(no cross-host program), the per-chip results are all-gathered after each step
(``multihost_utils.process_allgather``), and every process returns the same
:class:`MonteCarloResult`. For the same key and ``batch_size`` the per-chip results
are bit-identical whatever the number of devices and processes (each device runs the same
``batch_size``-chip program on the same chips' keys). Process 0 alone writes the checkpoint;
on a rerun it reads it and hands the finished chips to the others.

With ``checkpoint=path`` finished chips are saved after every batch (NumPy ``.npz``) and a
rerun resumes after the last saved chip. Launch and measured figures: ``docs/distributed.md``.
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
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import scipy.stats
import threadpoolctl
from jaxtyping import PRNGKeyArray

from . import _distributed as dist

__all__ = ["DEFAULT_MEMORY_FRACTION", "MonteCarloResult", "chip_batch_size", "monte_carlo", "summarize"]

#: share of one device's memory that a default chip batch's working set may take (see
#: :func:`chip_batch_size`)
DEFAULT_MEMORY_FRACTION = 0.125
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
def _run_batch(fn, model, key_data, impl):
    keys = key_data if impl is None else jax.random.wrap_key_data(key_data, impl=impl)
    return jax.vmap(lambda k: fn(model, k))(keys)


def _device_memory_bytes() -> int | None:
    """Memory of one local device (bytes): the allocator's limit on GPU/TPU; physical RAM
    shared by the local CPU devices on CPU. ``None`` when unknown."""
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception:  # some backends do not implement it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if dev.platform == "cpu":
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
        return int(total) // max(1, jax.local_device_count())
    return None


def chip_batch_size(fn: Callable[[Any, PRNGKeyArray], Any], model: Any, *, key: PRNGKeyArray,
                    memory_limit: int | None = None, max_chips: int | None = None) -> int:
    """Default chips per device per compiled call of :func:`monte_carlo`.

    Compiles one chip per device (XLA backend optimisation off: buffer assignment is the same
    and compiling is several times faster) and reads XLA's memory estimate of that call,
    ``compiled.memory_analysis()``: ``per_chip = temp + output`` bytes per device (an upper
    bound on what each further chip adds, since the temporaries include what all chips share).
    Returns ``max(1, memory_limit // per_chip)``, at most ``max_chips``; with several processes,
    the smallest over processes (all must run the same program).

    Args:
        fn, model: as :func:`monte_carlo`.
        key: any chip key of the run (only its type and shape matter).
        memory_limit: bytes per device that one batch's working set may take (default:
            :data:`DEFAULT_MEMORY_FRACTION` of one device's memory, i.e. the GPU allocator's
            limit or physical RAM / local CPU devices; 1 GiB when unknown).
        max_chips: upper bound (e.g. ``ceil(num_chips / devices)``).

    Raises:
        ValueError: ``memory_limit`` < 1.
    """
    if memory_limit is None:
        mem = _device_memory_bytes()
        memory_limit = int(DEFAULT_MEMORY_FRACTION * mem) if mem else 2**30
    if memory_limit < 1:
        raise ValueError(f"chip_batch_size: memory_limit = {memory_limit} bytes, must be >= 1")
    kd, impl = _split_key_data(key)
    probe = _place(np.repeat(kd[None], jax.local_device_count(), axis=0), _chip_sharding())
    compiled = _run_batch.lower(fn, model, probe, impl).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    try:
        ma = compiled.compiled.memory_analysis()
        per_chip = int(ma.temp_size_in_bytes + ma.output_size_in_bytes)
    except Exception:  # a backend without a memory estimate: one chip at a time
        per_chip = memory_limit
    b = max(1, memory_limit // max(per_chip, 1))
    if max_chips is not None:
        b = min(b, max(1, int(max_chips)))
    return dist.min_over_processes(b)


def _split_key_data(keys):
    """(uint32 NumPy key data, key implementation or None for legacy uint32 keys)."""
    keys = jnp.asarray(keys) if not isinstance(keys, jax.Array) else keys
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(keys)), str(jax.random.key_impl(keys))
    return np.asarray(keys), None


def _chip_sharding():
    """Chip axis over this process's devices (None with one local device). Each process
    compiles and runs only its own share: no cross-process program, no SPMD partitioning
    across hosts; results are exchanged by :func:`_gather`."""
    if jax.local_device_count() == 1:
        return None
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("chips",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chips"))


def _place(a: np.ndarray, sharding):
    """A NumPy array as an array on this process's devices, sharded by ``sharding``."""
    if sharding is None:
        return jnp.asarray(a)
    return jax.device_put(a, sharding)


def _gather(leaves):
    """Each process's per-chip results concatenated in process order (NumPy arrays, the same
    on every process): an all-gather, i.e. a copy, so floats arrive bit for bit."""
    leaves = [np.asarray(l) for l in leaves]
    if jax.process_count() == 1:
        return leaves
    from jax.experimental import multihost_utils

    return [np.asarray(l) for l in multihost_utils.process_allgather(leaves, tiled=True)]


def _load_checkpoint(path, key_data, fn, model, keys):
    """(n_done, leaves, treedef or None): process 0 reads and checks the file, every process
    gets the same answer (or the same ValueError)."""
    status, n_done, leaves, treedef_repr = 0, 0, None, None
    if dist.is_main() and path.exists():
        with np.load(path, allow_pickle=False) as z:
            saved_keys = z["keys"]
            n_done = int(z["n_done"])
            if saved_keys.shape != key_data.shape or not np.array_equal(saved_keys[:n_done], key_data[:n_done]):
                status = 2
            else:
                status = 1
                leaves = [z[f"leaf{i}"][:n_done] for i in range(int(z["n_leaves"]))]
                treedef_repr = str(z["treedef"])
    status, n_done = (int(v) for v in dist.broadcast_from_main(np.asarray([status, n_done], np.int64)))
    if status == 2:
        raise ValueError(f"monte_carlo: checkpoint {path} was written for other keys or num_chips; "
                         "delete it or use another path")
    if status == 0 or n_done == 0:
        return 0, None, None
    out_shape = jax.eval_shape(lambda k: fn(model, k), keys[0])
    flat, treedef = jtu.tree_flatten(out_shape)
    bad = np.asarray(0, np.int64)
    if dist.is_main():
        ok = str(treedef) == treedef_repr and len(leaves) == len(flat) and all(
            l.shape == (n_done,) + tuple(s.shape) and l.dtype == s.dtype for l, s in zip(leaves, flat))
        bad = np.asarray(0 if ok else 1, np.int64)
    if int(dist.broadcast_from_main(bad)):
        raise ValueError(f"monte_carlo: checkpoint {path} holds a different result structure; "
                         "delete it or use another path")
    if not dist.is_main():
        leaves = [np.zeros((n_done,) + tuple(s.shape), s.dtype) for s in flat]
    return n_done, dist.broadcast_from_main(leaves), treedef


def monte_carlo(
    fn: Callable[[Any, PRNGKeyArray], Any],
    model: Any,
    *,
    key: PRNGKeyArray,
    num_chips: int,
    batch_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    memory_limit: int | None = None,
) -> MonteCarloResult:
    """Evaluate ``fn(model, key_i)`` for ``num_chips`` chip keys.

    Args:
        fn: ``(model, key) -> pytree of arrays`` (e.g. a scalar accuracy); jit-compatible.
        model: passed unchanged to ``fn`` (its arrays are traced, not baked in).
        key: the study's key; chip ``i`` gets ``jax.random.split(key, num_chips)[i]``.
        num_chips: number of chips (>= 1).
        batch_size: chips per device per step (each step evaluates
            ``batch_size × jax.device_count()`` chips, all devices of all processes; the last
            step is padded with repeats of the last chip, dropped). Default: :func:`chip_batch_size` — the largest batch
            whose XLA-estimated working set fits ``memory_limit``, at most
            ``ceil(num_chips / devices)``; this costs one extra compilation (backend
            optimisation off). Per-chip results are bit-identical for equal ``batch_size``
            whatever the device and process count; different batch sizes may differ in the
            last bits (XLA vectorises a different chip count).
        checkpoint: ``.npz`` file to save finished chips to after every batch and resume
            from (written and read by process 0 only).
        progress: optional callback ``(done, total)`` at the start and after each batch
            (called in every process).
        memory_limit: bytes per device for the default batch (see :func:`chip_batch_size`).

    While the batches run, the BLAS/LAPACK library that JAX's CPU linear algebra calls
    (OpenBLAS) is held to one thread with ``threadpoolctl``: its own spinning worker threads
    otherwise compete with XLA's thread pool, and on shared cores a run slows down 10-50×
    (measured: ``docs/distributed.md``).

    Returns:
        :class:`MonteCarloResult` (NumPy arrays; the same in every process).

    Raises:
        ValueError: ``num_chips`` < 1 or ``batch_size`` < 1; a checkpoint written for other
            keys or for a different result structure.
    """
    if num_chips < 1:
        raise ValueError(f"monte_carlo: num_chips = {num_chips}, must be >= 1")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"monte_carlo: batch_size = {batch_size}, must be >= 1")
    ndev = jax.device_count()
    keys = jax.random.split(key, num_chips)
    key_data, impl = _split_key_data(keys)
    path = pathlib.Path(checkpoint) if checkpoint is not None else None
    start, done_leaves, treedef = 0, None, None
    if path is not None:
        start, done_leaves, treedef = _load_checkpoint(path, key_data, fn, model, keys)
    chunks: list[list[np.ndarray]] = [done_leaves] if done_leaves is not None else []
    if progress is not None:
        progress(start, num_chips)
    sharding = _chip_sharding()
    nloc, pid = jax.local_device_count(), jax.process_index()
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        if start < num_chips:
            # an explicit batch is clipped to num_chips, not to num_chips / devices: the
            # per-device program must not depend on the device count (bit-identical results)
            per_dev = min(int(batch_size), num_chips) if batch_size is not None else chip_batch_size(
                fn, model, key=keys[0], memory_limit=memory_limit, max_chips=math.ceil(num_chips / ndev))
            bs = per_dev * ndev
        pos = start
        while pos < num_chips:
            idx = np.minimum(np.arange(pos, pos + bs), num_chips - 1)  # pad with repeats, dropped below
            mine = idx[pid * per_dev * nloc:(pid + 1) * per_dev * nloc]  # this process's devices' share
            out = _run_batch(fn, model, _place(key_data[mine], sharding), impl)
            leaves, treedef = jtu.tree_flatten(out)
            take = min(bs, num_chips - pos)
            chunks.append([l[:take] for l in _gather(leaves)])
            del out, leaves
            pos += take
            if path is not None and dist.is_main():
                cat = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, keys=key_data, n_done=pos, n_leaves=len(cat), treedef=str(treedef),
                         **{f"leaf{i}": a for i, a in enumerate(cat)})
                os.replace(tmp, path)
            if progress is not None:
                progress(pos, num_chips)
    cat = [np.concatenate([c[i] for c in chunks]) for i in range(treedef.num_leaves)]
    samples = jtu.tree_unflatten(treedef, cat)
    stats = jtu.tree_map(summarize, samples)
    return MonteCarloResult(samples=samples, stats=stats, keys=key_data)
