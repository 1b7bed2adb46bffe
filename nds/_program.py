"""Whole-model program-time and ageing operations.

``program(model, key=k)`` manufactures one chip: every analog layer's tile maps its weights to
physical state and samples program-time variation. Keys are split once per layer in pytree
order, so the same key gives the same chip, bit for bit. ``drift(chip, t, key=k)`` ages every
layer to ``t`` seconds after programming.

Checks (concrete values at once, traced values under ``jit`` through ``eqx.error_if``, which
raises when the program runs): weights with NaN or inf refuse to be programmed (naming the
layer); a cell that drifts refuses ``key=None`` (its drift exponents are drawn at program
time; randomness comes only from explicit keys); ``t`` for :func:`drift` must be finite and
>= 0.
"""

from __future__ import annotations

from typing import TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
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


def _concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array when it holds concrete values, ``None`` under tracing."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except (TypeError, jax.errors.TracerArrayConversionError):  # pragma: no cover - defensive
        return None


def _drifting_cells(tile) -> list:
    """The resistive cells in ``tile`` whose drift exponents are random (a drifting cell with a
    non-zero spread or mean of ``ν``; the ideal limit has neither)."""
    from .cells._resistive import AbstractResistiveCell

    is_cell = lambda x: isinstance(x, AbstractResistiveCell)
    out = []
    for c in jtu.tree_leaves(tile, is_leaf=is_cell):
        if not (is_cell(c) and c.has_drift):
            continue
        stats = [getattr(c, n, None) for n in ("nu_mu_min", "nu_mu_max", "nu_sigma_min", "nu_sigma_max")]
        values = [_concrete(v) for v in stats if v is not None]
        if len(values) < len(stats) or any(v is None for v in values) or any(np.any(v != 0) for v in values):
            out.append(c)
    return out


def _check_weight(layer):
    """``layer`` with its weight checked finite (raises naming the layer)."""
    w = layer.weight
    msg = (f"program: layer {layer.name!r}: the weights contain NaN or inf (a diverged training or a damaged "
           "checkpoint?); a chip cannot be programmed with them")
    wc = _concrete(w)
    if wc is not None:
        if not np.all(np.isfinite(wc)):
            bad = int(np.sum(~np.isfinite(wc)))
            raise ValueError(f"{msg} ({bad} of {wc.size} entries)")
        return layer
    return eqx.tree_at(lambda l: l.weight, layer, eqx.error_if(w, ~jnp.all(jnp.isfinite(w)), msg))


def program(model: M, *, key: PRNGKeyArray | None) -> M:
    """One manufactured chip of ``model``: every analog layer programmed.

    Args:
        model: a model from :func:`nds.analogize` (a model without analog layers is returned
            unchanged).
        key: program-time randomness (D2D variation, programming error, drift exponents,
            faults, mismatch); ``None`` programs the tiles without their random draws (an
            ideal programming), which is refused for a cell that drifts.

    Returns:
        The model with each layer's ``state`` set. Differentiable w.r.t. the weights.

    Raises:
        ValueError: ``key`` is None and a layer's cell drifts (its drift exponents ``ν`` are
            drawn here; without a key they would silently all be 0), naming the layer; a
            layer's weights contain NaN or inf (concrete weights), naming the layer.
        EquinoxRuntimeError: the same NaN/inf check on traced weights, when the jitted
            program runs.
    """
    if key is None:
        for layer in analog_layers(model):
            cells = _drifting_cells(layer.tile)
            if cells:
                c = cells[0]
                card = f" (card {c.card.name})" if getattr(c, "card", None) is not None else ""
                raise ValueError(
                    f"program: layer {layer.name!r} has a drifting {type(c).__name__} cell{card}: its drift exponents "
                    "are drawn at program time, so program(model, key=...) needs a key (key=None would give every "
                    "device ν = 0, i.e. no drift)")
    return _map_layers(model, lambda l, k: _check_weight(l).program(key=k), key)


def drift(chip: M, t: float, *, key: PRNGKeyArray | None = None) -> M:
    """``chip`` aged to ``t`` seconds after programming (drift, accumulated read noise,
    drift compensation recomputed).

    Args:
        chip: a programmed model (:func:`program`).
        t: seconds since programming, finite and >= 0: a Python number or a JAX scalar
            (checked at run time under ``jit``).
        key: the accumulated 1/f read noise (None: drift alone).

    Raises:
        ValueError: a layer is not programmed, or a concrete ``t`` is negative, inf or NaN.
        EquinoxRuntimeError: a traced ``t`` that is negative, inf or NaN, when the jitted
            program runs.
    """
    msg = "drift: t must be a finite time in seconds >= 0 since programming"
    tc = _concrete(t)
    if tc is not None:
        if tc.shape != () or not np.isfinite(tc) or tc < 0:
            raise ValueError(f"{msg}; got t = {t!r}")
    else:
        t = eqx.error_if(t, ~(jnp.isfinite(t) & (t >= 0)), msg)
    return _map_layers(chip, lambda l, k: l.drift(t, key=k), key)
