"""Training, digital or noise-aware, through the same forward path as Monte Carlo.

Noise-aware (hardware-aware) training samples a fresh chip at every step —
``chip = nds.program(model, key=k_step)``, optionally aged with :func:`nds.drift` — and
differentiates the loss of ``chip`` w.r.t. the weights through the physics (straight-through
only for rounding and clipping, :mod:`nds._ste`). What trains is a filter
(:func:`weights_filter`, ``eqx.partition``): the layers' ``weight`` and ``bias`` by default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from ._keys import streams
from ._program import drift as _drift
from ._program import program as _program
from .nn._analogize import is_analog_layer

__all__ = ["weights_filter", "clip_weights", "cross_entropy", "accuracy", "bits_per_char", "predict", "fit",
           "CheckpointError"]

_TRAINABLE = (eqx.nn.Linear, eqx.nn.Conv2d)


def weights_filter(model: Any) -> Any:
    """Boolean pytree marking the ``weight`` and ``bias`` arrays of every Linear/Conv2d and
    analog layer as trainable, and nothing else (tile and card parameters stay fixed)."""
    spec = jtu.tree_map(lambda _: False, model)
    is_layer = lambda x: isinstance(x, _TRAINABLE) or is_analog_layer(x)
    layers = [x for x in jtu.tree_leaves(model, is_leaf=is_layer) if is_layer(x)]
    n = sum(getattr(l, f, None) is not None for l in layers for f in ("weight", "bias"))

    def where(s):
        s_layers = [x for x in jtu.tree_leaves(s, is_leaf=is_layer) if is_layer(x)]
        out = []
        for sl in s_layers:
            for f in ("weight", "bias"):
                v = getattr(sl, f, None)
                if v is not None:
                    out.append(v)
        return out

    return eqx.tree_at(where, spec, [True] * n)


def clip_weights(model: Any, k: float) -> Any:
    """Clip the ``weight`` of every Linear/Conv2d/analog layer to ``± k · std(weight)``."""
    is_layer = lambda x: isinstance(x, _TRAINABLE) or is_analog_layer(x)
    layers = [x for x in jtu.tree_leaves(model, is_leaf=is_layer) if is_layer(x)]
    if not layers:
        return model
    new = [jnp.clip(l.weight, -k * jnp.std(l.weight), k * jnp.std(l.weight)) for l in layers]
    where = lambda m: [x.weight for x in jtu.tree_leaves(m, is_leaf=is_layer) if is_layer(x)]
    return eqx.tree_at(where, model, new)


def predict(model: Any, x: Array, *, key: PRNGKeyArray | None) -> Array:
    """Logits for a batch ``x`` (leading batch axis); each example gets its own read key."""
    if key is None:
        return jax.vmap(lambda xi: model(xi, key=None))(x)
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda xi, k: model(xi, key=k))(x, keys)


def cross_entropy(logits: Array, y: Array) -> Array:
    """Mean softmax cross-entropy; ``logits`` (B, C), integer labels ``y`` (B,)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(model: Any, x: Array, y: Array, *, key: PRNGKeyArray | None, batch: int = 500) -> Array:
    """Fraction of ``x`` classified as ``y``, evaluated in chunks of ``batch`` (``lax.map``).

    Args:
        model: takes one example and a ``key``; returns logits ``(C,)``.
        x: inputs ``(N, *example_shape)``.
        y: integer class labels ``(N,)``.
        key: read randomness (split per chunk, then per example); ``None`` for noiseless reads.
        batch: examples per chunk (bounds memory).

    Returns:
        A scalar in [0, 1] (the count of correct argmax predictions divided by ``N``).

    Raises:
        ValueError: ``y`` is not of shape ``(N,)`` or not of an integer dtype (e.g. labels of
            shape ``(N, 1)``, which would otherwise broadcast against the predictions), or
            ``batch`` < 1.
    """
    from ._evaluate import check_labels

    check_labels(x, y, "accuracy")
    if batch < 1:
        raise ValueError(f"accuracy: batch = {batch}, must be >= 1")
    n = x.shape[0]
    batch = min(batch, n)
    nb = -(-n // batch)
    pad = nb * batch - n
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    yp = jnp.concatenate([y, -jnp.ones((pad,), y.dtype)]) if pad else y
    keys = jax.random.split(key if key is not None else jax.random.key(0), nb)

    def chunk(args):
        i, k = args
        xb = jax.lax.dynamic_slice_in_dim(xp, i * batch, batch)
        yb = jax.lax.dynamic_slice_in_dim(yp, i * batch, batch)
        return jnp.sum(jnp.argmax(predict(model, xb, key=None if key is None else k), -1) == yb)

    return jax.lax.map(chunk, (jnp.arange(nb), keys)).sum() / n


def bits_per_char(model: Any, x: Array, y: Array, *, key: PRNGKeyArray | None, batch: int = 32) -> Array:
    """Mean next-character cross-entropy in bits, ``−log₂ p(y_t | x_≤t)`` averaged over every
    position of every sequence (the language-modelling metric; perplexity per character is
    ``2**bits_per_char``). ``x``, ``y``: (N, T) integer ids; the model maps (T,) → (T, vocab).
    Evaluated in chunks of ``batch`` sequences (``lax.map``), each chunk with its own read key.
    Same signature as :func:`accuracy`, usable as a Monte Carlo metric.

    Raises:
        ValueError: ``x`` and ``y`` of different shapes.
    """
    if x.shape != y.shape:
        raise ValueError(f"bits_per_char: x shape {x.shape} and y shape {y.shape} must be equal (N, T)")
    n = x.shape[0]
    batch = min(batch, n)
    nb = -(-n // batch)
    pad = nb * batch - n
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    yp = jnp.concatenate([y, jnp.zeros((pad,) + y.shape[1:], y.dtype)]) if pad else y
    wp = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))]) if pad else jnp.ones((n,))
    keys = jax.random.split(key if key is not None else jax.random.key(0), nb)

    def chunk(args):
        i, k = args
        xb = jax.lax.dynamic_slice_in_dim(xp, i * batch, batch)
        yb = jax.lax.dynamic_slice_in_dim(yp, i * batch, batch)
        wb = jax.lax.dynamic_slice_in_dim(wp, i * batch, batch)
        logits = predict(model, xb, key=None if key is None else k)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, yb)  # (B, T), nats
        return jnp.sum(nll.mean(axis=-1) * wb)

    return jax.lax.map(chunk, (jnp.arange(nb), keys)).sum() / n / jnp.log(2.0)


def fit(
    model: Any,
    x: Array,
    y: Array,
    *,
    key: PRNGKeyArray,
    steps: int,
    batch_size: int = 64,
    optimizer: optax.GradientTransformation | None = None,
    noise_aware: bool = False,
    t_drift: float | None = None,
    filter_spec: Any = None,
    loss_fn: Callable[[Array, Array], Array] = cross_entropy,
    clip_sigma: float | None = None,
    progress: Callable[[int, float], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
) -> tuple[Any, list[float]]:
    """Train ``model`` on ``(x, y)``; returns ``(model, losses)``.

    Args:
        model: an Equinox model (digital, any ``noise_aware``), or an analogized one
            (unprogrammed; then ``noise_aware=True`` is required: train the digital model
            first and ``analogize`` it to fine-tune).
        x, y: training inputs (N, ...) and integer labels (N,).
        key: randomness for batches, chips and reads.
        steps: optimizer steps; batch_size: examples per step.
        optimizer: optax transformation (default Adam, lr 1e-3).
        noise_aware: program a fresh chip (``nds.program`` with a new key) every step and
            evaluate the loss on it, reads noisy; otherwise the model must need no programming
            (a plain Equinox model) and is trained directly.
        t_drift: with ``noise_aware``, also age each sampled chip to ``t_drift`` seconds.
        filter_spec: trainable leaves (default :func:`weights_filter`).
        loss_fn: ``(logits, labels) -> scalar``.
        clip_sigma: after every step clip each layer's weights to ``± clip_sigma · std(w)``
            (the weight clipping of hardware-aware training, Joshi et al. 2020: it keeps
            outliers from setting the conductance scale, so most weights use more of the
            conductance range where relative noise is lower). Also applied before step 1.
        progress: optional callback ``(step, loss)``.
        checkpoint: a file where the training state (trainable leaves, optimizer state,
            step, key and losses so far; Equinox serialisation, written atomically) is saved
            every ``checkpoint_every`` steps and at the end. If the file exists, training
            resumes from it: the result equals that of an unbroken run bit for bit (the same
            batches, chips and updates). The file records a fingerprint of the run (data,
            initial trainable leaves, key, steps, batch size and options): a checkpoint of
            another run is refused. The optimizer must be the same as the one that wrote it
            (only its state's structure can be checked).
        checkpoint_every: steps between checkpoints (>= 1).

    Raises:
        ValueError: ``steps`` < 1, ``batch_size`` larger than the data, an analogized
            model with ``noise_aware=False``, ``checkpoint_every`` < 1, or (with the default
            cross-entropy ``loss_fn``) labels ``y`` that are not integers of shape ``(N,)``.
        CheckpointError: ``checkpoint`` exists but cannot be read back (names the file and
            why: damaged, another run's, another optimizer's).
    """
    if loss_fn is cross_entropy:
        from ._evaluate import check_labels

        check_labels(x, y, "fit")
    elif np.shape(y)[:1] != np.shape(x)[:1]:
        raise ValueError(f"fit: x has {np.shape(x)[:1]} and y {np.shape(y)[:1]} examples; they must match")
    if steps < 1:
        raise ValueError(f"fit: steps = {steps}, must be >= 1")
    n = x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"fit: batch_size = {batch_size}, must be in [1, {n}]")
    from .nn._analogize import analog_layers

    if not noise_aware and analog_layers(model):
        raise ValueError("fit: the model has analog layers, which must be programmed before they compute; "
                         "pass noise_aware=True (a fresh chip every step), or train the digital model and "
                         "analogize it afterwards")
    opt = optimizer or optax.adam(1e-3)
    if clip_sigma is not None:
        if not clip_sigma > 0:
            raise ValueError(f"fit: clip_sigma = {clip_sigma}, must be > 0 or None")
        model = clip_weights(model, clip_sigma)
    spec = filter_spec if filter_spec is not None else weights_filter(model)
    params, static = eqx.partition(model, spec)
    opt_state = opt.init(params)
    start = 0
    losses_arr = np.zeros(steps, np.float64)
    if checkpoint is not None:
        if checkpoint_every < 1:
            raise ValueError(f"fit: checkpoint_every = {checkpoint_every}, must be >= 1")
        fingerprint = _fingerprint(params, x, y, key, steps=steps, batch_size=batch_size,
                                   noise_aware=noise_aware, t_drift=t_drift, clip_sigma=clip_sigma)
        if os.path.exists(checkpoint):
            start, key, params, opt_state, losses_arr = _load_checkpoint(
                checkpoint, fingerprint, (params, opt_state, key, losses_arr))
            if progress is not None and start:
                progress(start, float(losses_arr[start - 1]))

    def loss(p, xb, yb, k):
        m = eqx.combine(p, static)
        kp, kd, kr = streams(k, "program", "drift", "read")
        if noise_aware:
            m = _program(m, key=kp)
            if t_drift is not None:
                m = _drift(m, t_drift, key=kd)
        return loss_fn(predict(m, xb, key=kr if noise_aware else None), yb)

    @eqx.filter_jit
    def step(p, s, xb, yb, k):
        l, g = jax.value_and_grad(loss)(p, xb, yb, k)
        upd, s = opt.update(g, s, p)
        p = optax.apply_updates(p, upd)
        if clip_sigma is not None:
            p = clip_weights(p, clip_sigma)
        return p, s, l

    for i in range(start, steps):
        key, kb, ks = streams(key, "next", "batch", "step")
        idx = jax.random.choice(kb, n, (batch_size,), replace=False)
        params, opt_state, l = step(params, opt_state, x[idx], y[idx], ks)
        lf = float(l)
        if not np.isfinite(lf):
            raise FloatingPointError(f"fit: loss became {lf} at step {i}")
        losses_arr[i] = lf
        if progress is not None:
            progress(i + 1, lf)
        if checkpoint is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == steps):
            _save_checkpoint(checkpoint, fingerprint, i + 1, key, params, opt_state, losses_arr)
    return eqx.combine(params, static), [float(v) for v in losses_arr]


class CheckpointError(ValueError):
    """A training checkpoint that cannot be resumed from: the message names the file and why."""


def _fingerprint(params, x, y, key, **options) -> np.ndarray:
    """SHA-256 (32 bytes) of what a training run depends on: the data, the initial trainable
    leaves (shapes, dtypes and values), the key and the options."""
    import hashlib
    import json

    h = hashlib.sha256()
    for a in (x, y, *jtu.tree_leaves(params)):
        a = np.asarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(np.asarray(_key_data(key)).tobytes())
    h.update(json.dumps(options, sort_keys=True, default=repr).encode())
    return np.frombuffer(h.digest(), np.uint8).copy()


def _save_checkpoint(path, fingerprint, step, key, params, opt_state, losses) -> None:
    import io

    from ._io import atomic_write

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, (fingerprint, np.asarray(step, np.int64), _key_data(key),
                                    losses, params, opt_state))
    atomic_write(path, buf.getvalue())


def _load_checkpoint(path, fingerprint, like):
    params, opt_state, key, losses = like
    template = (np.zeros(32, np.uint8), np.asarray(0, np.int64), _key_data(key), losses, params,
                opt_state)
    try:
        fp, step, kd, losses, params, opt_state = eqx.tree_deserialise_leaves(path, template)
    except Exception as e:  # noqa: BLE001 - truncated, garbage, another structure
        raise CheckpointError(f"fit: checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is damaged "
                              "or was written by another model or optimizer") from None
    if not np.array_equal(np.asarray(fp), fingerprint):
        raise CheckpointError(f"fit: checkpoint {path} belongs to another training run (different data, initial "
                              "weights, key, steps, batch size or options); delete it or give another path")
    step = int(step)
    if not 0 <= step <= len(losses):
        raise CheckpointError(f"fit: checkpoint {path} records step {step}, outside [0, {len(losses)}]")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(kd), impl=jax.random.key_impl(key))
    else:  # a raw uint32 key (jax.random.PRNGKey)
        key = jnp.asarray(kd, key.dtype)
    return step, key, params, opt_state, np.asarray(losses, np.float64).copy()


def _key_data(key):
    return jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
