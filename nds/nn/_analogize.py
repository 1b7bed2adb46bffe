"""Convert an Equinox model into its analog twin by tree surgery.

Rules, applied wherever the object sits in the model's pytree (``eqx.nn.Sequential``,
custom modules, the zoo's blocks, attention):

1. Containers that do not hand keys to their layers are replaced by equivalents that do:
   ``eqx.nn.MLP`` → :class:`nds.nn.KeyedMLP`, ``eqx.nn.MultiheadAttention`` →
   :class:`nds.nn.MultiheadAttention` (its ``Q Kᵀ`` and ``A V`` on the ``attention`` tile,
   digital by default). An :class:`nds.nn.MultiheadAttention` already in the model gets the
   ``attention`` tile when one is given.
2. Every ``eqx.nn.Linear`` and ``eqx.nn.Conv2d`` becomes an :class:`AnalogLinear` /
   :class:`AnalogConv2d` on a tile; a layer kept digital sits on a :class:`DigitalTile`, so
   that its cost is still counted.
3. Batch norm in inference mode (``eqx.nn.BatchNorm`` with its ``state``, or
   :class:`nds.nn.FrozenBatchNorm`) directly after a converted layer is folded into that
   layer's digital ``out_scale`` and ``bias`` and replaced by ``eqx.nn.Identity``: inside an
   ``eqx.nn.Sequential`` (adjacent items), and inside any module that names its
   (layer, norm) attribute pairs in a class variable ``fold_pairs`` (the zoo's and
   :func:`nds.nn.from_torch`'s residual blocks do).
4. Digital parts (pooling, activations, LayerNorm, residual adds) stay digital and compute
   the same function. :class:`nds.nn.DigitalOp` nodes (built into the zoo models) are costed
   at ``digital_bits``; with ``wrap_digital=True`` Equinox's ``LayerNorm``, pooling layers and
   ``Lambda`` activations (ReLU, GELU) are wrapped into such nodes too.

Custom modules must pass ``key`` to their sublayers (the Equinox convention) for layers on
noisy tiles to read; the containers above are the ones that do not, in Equinox itself.
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


def _fold_any(layer: AbstractAnalogLayer, bn: Any, state: eqx.nn.State | None, where: str) -> AbstractAnalogLayer:
    from ._digital import FrozenBatchNorm

    if isinstance(bn, FrozenBatchNorm):
        a, b = bn.scale_shift()
        s = layer.out_scale if layer.out_scale is not None else jnp.ones_like(a)
        bias = layer.bias if layer.bias is not None else jnp.zeros_like(a)
        return eqx.tree_at(lambda l: (l.out_scale, l.bias), layer, (s * a, a * bias + b),
                           is_leaf=lambda x: x is None)
    if state is None:
        raise ValueError(f"analogize: batch norm after layer {layer.name!r} ({where}); pass state= "
                         "(the eqx.nn.State with its statistics) to fold it, or freeze it first with "
                         "nds.nn.freeze_batchnorm")
    return fold_batchnorm(layer, bn, state)


def _is_bn(x) -> bool:
    from ._digital import FrozenBatchNorm

    return isinstance(x, (eqx.nn.BatchNorm, FrozenBatchNorm))


def _convert_containers(model: Any, attention: Any) -> Any:
    from ._attention import KeyedMLP, MultiheadAttention

    kinds = (eqx.nn.MLP, eqx.nn.MultiheadAttention, MultiheadAttention)
    is_c = lambda x: isinstance(x, kinds)
    counter = iter(range(1 << 30))

    def conv(x):
        if isinstance(x, eqx.nn.MLP):
            return KeyedMLP.from_eqx(x)
        if isinstance(x, eqx.nn.MultiheadAttention):
            return MultiheadAttention.from_eqx(x, attention, name=f"attention{next(counter)}")
        if isinstance(x, MultiheadAttention) and attention is not None:
            return eqx.tree_at(lambda m: m.attention, x, attention)
        return x

    return jtu.tree_map(conv, model, is_leaf=is_c)


def _wrap_digital(model: Any, bits: int | None) -> Any:
    from ._digital import DigitalOp

    counter = iter(range(1 << 30))
    acts = {jax.nn.relu: "relu", jax.nn.gelu: "gelu"}
    pools = (eqx.nn.MaxPool2d, eqx.nn.AvgPool2d, eqx.nn.AdaptiveAvgPool2d, eqx.nn.AdaptiveMaxPool2d)

    def kind_of(x):
        if isinstance(x, eqx.nn.LayerNorm):
            return "layernorm"
        if isinstance(x, pools):
            return "maxpool" if "Max" in type(x).__name__ else "avgpool"
        if isinstance(x, eqx.nn.Lambda):
            return acts.get(x.fn)
        return None

    is_d = lambda x: kind_of(x) is not None or isinstance(x, DigitalOp)

    def wrap(x):
        if isinstance(x, DigitalOp) or kind_of(x) is None:
            return x
        k = kind_of(x)
        return DigitalOp(x, k, bits, name=f"{k}{next(counter)}")

    return jtu.tree_map(wrap, model, is_leaf=is_d)


def _set_digital_bits(model: Any, bits: int | None) -> Any:
    from ._digital import DigitalOp

    is_d = lambda x: isinstance(x, DigitalOp)
    return jtu.tree_map(lambda x: DigitalOp(x.fn, x.kind, bits, x.name) if is_d(x) else x, model, is_leaf=is_d)


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
    attention: Any = None,
    wrap_digital: bool = False,
    digital_bits: int | None = None,
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
        state: the ``eqx.nn.State`` holding batch-norm statistics; needed to fold an
            ``eqx.nn.BatchNorm`` (a :class:`nds.nn.FrozenBatchNorm` carries its own).
        attention: the attention tile (:class:`nds.tiles.DigitalAttention`,
            :class:`nds.tiles.GainCellAttention`) for every multi-head attention; None keeps
            an :class:`nds.nn.MultiheadAttention`'s tile and puts converted Equinox ones on
            a floating-point :class:`nds.tiles.DigitalAttention`.
        wrap_digital: also wrap Equinox ``LayerNorm``, pooling and ``Lambda(relu/gelu)``
            layers into :class:`nds.nn.DigitalOp` cost nodes.
        digital_bits: bit width of every :class:`nds.nn.DigitalOp` (None: fp32).

    Returns:
        The model with converted layers (unprogrammed: pass it to :func:`nds.program`).

    Raises:
        ValueError: a tile sequence of the wrong length, a ``digital`` index out of range,
            batch norm to fold without ``state``, a scanned ``eqx.nn.MLP``,
            ``digital_bits`` < 2, or (``tile`` a single tile) a layer that is already analog
            on a different tile (it would be kept, the new tile silently ignored).

    Nested conversion: layers that are already analog (a model analogized before, or a
    submodule converted on its own) are kept as they are, converted once, never wrapped
    again; the layers converted now get names that none of them holds.
    """
    model = _convert_containers(model, attention)
    is_conv = lambda x: isinstance(x, _CONVERTIBLE)
    layers = [x for x in jtu.tree_leaves(model, is_leaf=is_conv) if is_conv(x)]
    n = len(layers)
    existing = analog_layers(model)
    if existing and isinstance(tile, AbstractTile):
        _check_already_analog(existing, tile)
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
    new = [_convert(l, c if c is not None else dt, name)
           for l, c, name in zip(layers, choices, _layer_names(model, {l.name for l in existing}))]
    it = iter(new)
    out = jtu.tree_map(lambda x: next(it) if is_conv(x) else x, model, is_leaf=is_conv)
    out = _fold_bn(out, state)
    if wrap_digital:
        out = _wrap_digital(out, digital_bits)
    if digital_bits is not None or wrap_digital:
        out = _set_digital_bits(out, digital_bits)
    return out


def _layer_names(model, taken: set[str]) -> list[str]:
    """Names of the convertible layers of ``model`` in pytree order: ``"<kind><position>"``
    with the position counted over convertible and already analog layers together (so a model
    without analog layers gets ``conv0, conv1, linear2, ...``), skipping names already taken
    by analog layers (a model converted piece by piece never holds two layers of one name)."""
    is_any = lambda x: isinstance(x, _CONVERTIBLE) or is_analog_layer(x)
    names = []
    taken = set(taken)
    for pos, x in enumerate(y for y in jtu.tree_leaves(model, is_leaf=is_any) if is_any(y)):
        if is_analog_layer(x):
            continue
        kind = "conv" if isinstance(x, eqx.nn.Conv2d) else "linear"
        j = pos
        while f"{kind}{j}" in taken:
            j += 1
        names.append(f"{kind}{j}")
        taken.add(names[-1])
    return names


def _check_already_analog(existing: list[AbstractAnalogLayer], tile: AbstractTile) -> None:
    """Refuse to silently keep an analog layer on a tile other than ``tile`` (analogize never
    re-wraps an analog layer, so the given tile would be ignored for it)."""
    for l in existing:
        if l.tile is tile:
            continue
        same = eqx.tree_equal(l.tile, tile)
        if same is not False and not isinstance(same, bool) and isinstance(same, jax.core.Tracer):
            continue  # traced hardware leaves (co-design): not comparable here
        if not (same is True or (same is not False and bool(same))):
            raise ValueError(
                f"analogize: layer {l.name!r} is already analog (on {type(l.tile).__name__}) and the given tile "
                f"({type(tile).__name__}) differs from its tile; analogize converts eqx.nn.Linear/Conv2d only and "
                "never wraps an analog layer again, so the new tile would be silently ignored for it. Analogize "
                "the digital model instead, or change that layer's tile with eqx.tree_at")


def _fold_bn(model, state):
    """Fold batch norm after converted layers: adjacent items of every ``eqx.nn.Sequential``
    and the ``fold_pairs`` of every module that declares them (innermost first)."""

    def fold_seq(seq):
        items = list(seq.layers)
        changed = False
        for i in range(len(items) - 1):
            if _is_bn(items[i + 1]) and is_analog_layer(items[i]):
                items[i] = _fold_any(items[i], items[i + 1], state, "in a Sequential")
                items[i + 1] = eqx.nn.Identity()
                changed = True
        return eqx.nn.Sequential(items) if changed else seq

    def fold_pairs(mod):
        for layer_name, bn_name in type(mod).fold_pairs:
            layer, bn = getattr(mod, layer_name), getattr(mod, bn_name)
            if _is_bn(bn) and is_analog_layer(layer):
                new = _fold_any(layer, bn, state, f"{type(mod).__name__}.{bn_name}")
                mod = eqx.tree_at(lambda m: (getattr(m, layer_name), getattr(m, bn_name)), mod,
                                  (new, eqx.nn.Identity()))
        return mod

    def visit(x):
        if is_analog_layer(x) or not isinstance(x, eqx.Module):
            return x
        # children first
        x = jtu.tree_map(visit, x, is_leaf=lambda y: y is not x and isinstance(y, eqx.Module))
        if isinstance(x, eqx.nn.Sequential):
            x = fold_seq(x)
        if hasattr(type(x), "fold_pairs"):
            x = fold_pairs(x)
        return x

    if isinstance(model, eqx.Module):
        return visit(model)
    return jtu.tree_map(visit, model, is_leaf=lambda y: isinstance(y, eqx.Module))
