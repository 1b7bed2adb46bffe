"""Convert an Equinox model into its analog twin by tree surgery (``eqx.tree_at``).

Every ``eqx.nn.Linear`` and ``eqx.nn.Conv2d`` becomes an :class:`AnalogLinear` /
:class:`AnalogConv2d` on a tile; a layer kept digital sits on a :class:`DigitalTile`, so that
its cost is still counted. Pooling and activations stay digital and unchanged. A
``eqx.nn.BatchNorm`` directly after a converted layer inside an ``eqx.nn.Sequential`` is folded
into that layer's digital ``out_scale`` and ``bias`` (inference statistics from ``state``) and
replaced by ``eqx.nn.Identity``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ..tiles._abstract import AbstractTile
from ..tiles._digital import DigitalTile
from ._layers import AbstractAnalogLayer, AnalogConv2d, AnalogLinear

__all__ = ["analogize", "analog_layers", "fold_batchnorm", "is_analog_layer"]

TileChoice = AbstractTile | None
_CONVERTIBLE = (eqx.nn.Linear, eqx.nn.Conv2d)


def is_analog_layer(x: Any) -> bool:
    """Whether ``x`` is an analog layer (:class:`AbstractAnalogLayer`); an ``is_leaf`` for
    pytree traversals."""
    return isinstance(x, AbstractAnalogLayer)


def analog_layers(model: Any) -> list[AbstractAnalogLayer]:
    """The analog layers of ``model`` in pytree order."""
    return [x for x in jtu.tree_leaves(model, is_leaf=is_analog_layer) if is_analog_layer(x)]


def _bn_inference_stats(bn: eqx.nn.BatchNorm, state: eqx.nn.State):
    """The (mean, var) an ``eqx.nn.BatchNorm`` uses in inference mode: the EMA statistics
    (``mode="ema"``, the default), or the zero-debiased hidden statistics (``mode="batch"``),
    exactly as ``BatchNorm.__call__`` computes them."""
    if getattr(bn, "ema_state_index", None) is not None:
        return state.get(bn.ema_state_index)
    if getattr(bn, "batch_state_index", None) is not None:
        counter = state.get(bn.batch_counter)
        hidden_mean, hidden_var = state.get(bn.batch_state_index)
        scale = jnp.where(counter == 0, 1, 1 - bn.momentum**counter)
        return hidden_mean / scale, hidden_var / scale
    return state.get(bn.state_index)  # equinox < 0.12


def fold_batchnorm(layer: AbstractAnalogLayer, bn: eqx.nn.BatchNorm, state: eqx.nn.State) -> AbstractAnalogLayer:
    """Fold inference-mode batch norm into the layer's digital scale and bias.

    ``BN(z) = γ (z − μ)/sqrt(σ² + ε) + β`` with ``z = s·Wx + b`` gives ``out_scale' = s·a`` and
    ``bias' = a (b − μ) + β`` with ``a = γ / sqrt(σ² + ε)`` (per output channel).
    """
    mean, var = _bn_inference_stats(bn, state)
    a = jax.lax.rsqrt(var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    s = layer.out_scale if layer.out_scale is not None else jnp.ones_like(a)
    b = layer.bias if layer.bias is not None else jnp.zeros_like(a)
    beta = bn.bias if bn.bias is not None else jnp.zeros_like(a)
    return eqx.tree_at(lambda l: (l.out_scale, l.bias), layer, (s * a, a * (b - mean) + beta),
                       is_leaf=lambda x: x is None)


def _convert(layer, tile: AbstractTile, name: str) -> AbstractAnalogLayer:
    if isinstance(layer, eqx.nn.Linear):
        return AnalogLinear.from_linear(layer, tile, name)
    return AnalogConv2d.from_conv(layer, tile, name)


def analogize(
    model: Any,
    tile: AbstractTile | Sequence[TileChoice] | Callable[[int, Any], TileChoice],
    *,
    digital: Sequence[int | str] = (),
    digital_tile: AbstractTile | None = None,
    state: eqx.nn.State | None = None,
) -> Any:
    """Return the analog twin of an Equinox ``model``.

    Args:
        model: any pytree containing ``eqx.nn.Linear`` / ``eqx.nn.Conv2d`` layers.
        tile: the tile for every convertible layer; or a sequence with one entry per
            convertible layer in pytree order (``None`` keeps that layer digital); or a
            function ``(index, layer) -> tile | None``.
        digital: indices of convertible layers to keep digital; ``"first"`` and ``"last"``
            are accepted.
        digital_tile: the tile for digital layers (default: floating-point ``DigitalTile``).
        state: the ``eqx.nn.State`` holding batch-norm statistics; needed to fold batch norm.

    Returns:
        The model with converted layers (unprogrammed: pass it to :func:`nds.program`).

    Raises:
        ValueError: a tile sequence of the wrong length, a ``digital`` index out of range,
            or batch norm to fold without ``state``.
    """
    is_conv = lambda x: isinstance(x, _CONVERTIBLE)
    layers = [x for x in jtu.tree_leaves(model, is_leaf=is_conv) if is_conv(x)]
    n = len(layers)
    if isinstance(tile, AbstractTile):
        choices: list[TileChoice] = [tile] * n
    elif callable(tile):
        choices = [tile(i, l) for i, l in enumerate(layers)]
    else:
        choices = list(tile)
        if len(choices) != n:
            raise ValueError(f"analogize: tile sequence has {len(choices)} entries, the model has {n} "
                             "convertible layers (Linear/Conv2d)")
    for d in digital:
        idx = {"first": 0, "last": n - 1}.get(d, d) if isinstance(d, str) else d
        if not isinstance(idx, int) or not -n <= idx < n:
            raise ValueError(f"analogize: digital entry {d!r} is not 'first', 'last' or an index in [0, {n})")
        choices[idx] = None
    dt = digital_tile or DigitalTile()
    new = []
    for i, (l, c) in enumerate(zip(layers, choices)):
        kind = "conv" if isinstance(l, eqx.nn.Conv2d) else "linear"
        new.append(_convert(l, c if c is not None else dt, f"{kind}{i}"))
    it = iter(new)
    out = jtu.tree_map(lambda x: next(it) if is_conv(x) else x, model, is_leaf=is_conv)
    return _fold_sequential_bn(out, state)


def _fold_sequential_bn(model, state):
    is_seq = lambda x: isinstance(x, eqx.nn.Sequential)

    def fold(seq):
        if not is_seq(seq):
            return seq
        items = list(seq.layers)
        changed = False
        for i in range(len(items) - 1):
            if isinstance(items[i + 1], eqx.nn.BatchNorm) and is_analog_layer(items[i]):
                if state is None:
                    raise ValueError(f"analogize: batch norm after layer {items[i].name!r}; pass state= "
                                     "(the eqx.nn.State with its statistics) to fold it")
                items[i] = fold_batchnorm(items[i], items[i + 1], state)
                items[i + 1] = eqx.nn.Identity()
                changed = True
        return eqx.nn.Sequential(items) if changed else seq

    return jtu.tree_map(fold, model, is_leaf=is_seq)
