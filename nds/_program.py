"""Whole-model program-time and ageing operations.

``program(model, key=k)`` manufactures one chip: every analog layer's tile maps its weights to
physical state and samples program-time variation. Keys are split once per layer in pytree
order, so the same key gives the same chip, bit for bit. ``drift(chip, t, key=k)`` ages every
layer to ``t`` seconds after programming.
"""

from __future__ import annotations

from typing import TypeVar

import jax
import jax.tree_util as jtu
from jaxtyping import PRNGKeyArray

from .nn._analogize import analog_layers, is_analog_layer

__all__ = ["program", "drift"]

M = TypeVar("M")


def _map_layers(model, fn, key):
    layers = analog_layers(model)
    if not layers:
        return model
    keys = list(jax.random.split(key, len(layers))) if key is not None else [None] * len(layers)
    it = iter(keys)
    return jtu.tree_map(lambda x: fn(x, next(it)) if is_analog_layer(x) else x, model, is_leaf=is_analog_layer)


def program(model: M, *, key: PRNGKeyArray | None) -> M:
    """One manufactured chip of ``model``: every analog layer programmed.

    Args:
        model: a model from :func:`nds.analogize` (a model without analog layers is returned
            unchanged).
        key: program-time randomness (D2D variation, programming error, faults, mismatch);
            ``None`` only if no tile draws any.

    Returns:
        The model with each layer's ``state`` set. Differentiable w.r.t. the weights.
    """
    return _map_layers(model, lambda l, k: l.program(key=k), key)


def drift(chip: M, t: float, *, key: PRNGKeyArray | None = None) -> M:
    """``chip`` aged to ``t`` seconds after programming (drift, accumulated read noise,
    drift compensation recomputed).

    Raises:
        ValueError: a layer is not programmed, or ``t`` < 0.
    """
    if isinstance(t, (int, float)) and t < 0:
        raise ValueError(f"drift: t = {t} s must be >= 0")
    return _map_layers(chip, lambda l, k: l.drift(t, key=k), key)
