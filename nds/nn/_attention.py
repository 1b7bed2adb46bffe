"""Containers that hand a read key to every layer: multi-head attention on an attention tile,
and an MLP.

Equinox's ``eqx.nn.MultiheadAttention`` and ``eqx.nn.MLP`` call their ``Linear`` layers
without a key, so once those layers sit on noisy tiles they cannot read.
:func:`nds.analogize` replaces them by the equivalents here, which compute the same function
and pass keys: one named stream per role (:func:`nds._keys.stream`: ``"query"``, ``"key"``,
``"value"``, ``"output"``, ``"attention"``; one per layer in an MLP), split once more into one
key per token where a layer runs over a sequence.

:class:`MultiheadAttention` runs ``Q Kᵀ`` and ``A V`` on an attention tile
(:class:`nds.tiles.DigitalAttention` by default, or :class:`nds.tiles.GainCellAttention`),
supports causal masking with token positions (for the retention of an analog KV cache), and
generation one token at a time with a KV cache (:meth:`MultiheadAttention.step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._cost_types import Cost
from .._keys import streams
from ..tiles._attention import AbstractAttentionTile, DigitalAttention, KVEntries

__all__ = ["MultiheadAttention", "KeyedMLP", "seq_apply", "split_or_none"]


def split_or_none(key: PRNGKeyArray | None, n: int) -> list:
    """``n`` equal-role keys (``jax.random.split``), or ``n`` Nones."""
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


def seq_apply(layer: Callable, x: Array, key: PRNGKeyArray | None) -> Array:
    """``layer`` applied to each row of ``x`` (T, ...) with its own key (split ``key`` into T)."""
    if key is None:
        return jax.vmap(lambda xi: layer(xi, key=None))(x)
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda xi, k: layer(xi, key=k))(x, keys)


def _out_features(layer) -> int:
    w = layer.weight
    return int(w.shape[0])


class MultiheadAttention(eqx.Module):
    """Multi-head attention whose projections take keys and whose ``Q Kᵀ`` / ``A V`` run on
    an attention tile. Same function as ``eqx.nn.MultiheadAttention`` (2-D masks; no dropout
    at inference) when the tile is ideal.

    Attributes:
        query_proj, key_proj, value_proj, output_proj: ``eqx.nn.Linear`` or analog layers.
        attention: the attention tile.
        num_heads: heads (static).
        causal: apply a causal mask and token positions ``0..T−1`` (static).
        name: report name (static).
    """

    query_proj: Any
    key_proj: Any
    value_proj: Any
    output_proj: Any
    attention: AbstractAttentionTile
    num_heads: int = eqx.field(static=True)
    causal: bool = eqx.field(static=True, default=False)
    name: str = eqx.field(static=True, default="attention")

    @classmethod
    def from_eqx(cls, mha: eqx.nn.MultiheadAttention, attention: AbstractAttentionTile | None = None, *,
                 causal: bool = False, name: str = "attention") -> "MultiheadAttention":
        """The equivalent of an ``eqx.nn.MultiheadAttention`` (its projection layers kept as
        they are), on ``attention`` (default :class:`nds.tiles.DigitalAttention`)."""
        return cls(mha.query_proj, mha.key_proj, mha.value_proj, mha.output_proj,
                   attention if attention is not None else DigitalAttention(), mha.num_heads, causal, name)

    @property
    def head_dims(self) -> tuple[int, int]:
        """``(d_k, d_v)`` per head."""
        return _out_features(self.query_proj) // self.num_heads, _out_features(self.value_proj) // self.num_heads

    def _keys(self, key):
        if key is None:
            return (None,) * 5
        return streams(key, "query", "key", "value", "output", "attention")

    def __call__(self, query: Float[Array, "tq dq"], key_: Float[Array, "tk dk"] | None = None,
                 value: Float[Array, "tk dv"] | None = None, mask: Bool[Array, "tq tk"] | None = None, *,
                 key: PRNGKeyArray | None = None, positions: Int[Array, " tq"] | None = None,
                 kv_positions: Int[Array, " tk"] | None = None) -> Float[Array, "tq do"]:
        """Attention of ``query`` over ``key_``/``value`` (default: self-attention on
        ``query``). ``mask`` (T_q, T_k) bool, True = attend; with ``causal`` a causal mask is
        added and positions default to ``0..T−1``. Returns (T_q, output size).

        Raises:
            ValueError: key and value sequences of different length, or a mask of the
                wrong shape (names the layer).
        """
        key_ = query if key_ is None else key_
        value = key_ if value is None else value
        if key_.shape[0] != value.shape[0]:
            raise ValueError(f"{self.name}: key and value sequences have lengths {key_.shape[0]} and "
                             f"{value.shape[0]}; they must be equal")
        tq, tk = query.shape[0], key_.shape[0]
        if mask is not None and mask.shape != (tq, tk):
            raise ValueError(f"{self.name}: mask shape {mask.shape}, expected (T_q, T_k) = ({tq}, {tk}) "
                             "(per-head masks are not supported)")
        kq, kk, kvv, ko, ka = self._keys(key)
        h = self.num_heads
        qh = seq_apply(self.query_proj, query, kq).reshape(tq, h, -1)
        kh = seq_apply(self.key_proj, key_, kk).reshape(tk, h, -1)
        vh = seq_apply(self.value_proj, value, kvv).reshape(tk, h, -1)
        if self.causal:
            positions = jnp.arange(tq) if positions is None else positions
            kv_positions = jnp.arange(tk) if kv_positions is None else kv_positions
            cm = positions[:, None] >= kv_positions[None, :]
            mask = cm if mask is None else (mask & cm)
        out = self.attention.attend(qh, kh, vh, mask, positions, kv_positions, key=ka)
        return seq_apply(self.output_proj, out.reshape(tq, -1), ko)

    def empty_cache(self, length: int, dtype=None) -> KVEntries:
        """A KV cache of ``length`` token slots for :meth:`step`."""
        dk, dv = self.head_dims
        return KVEntries.zeros(length, self.num_heads, dk, dv, dtype)

    def step(self, x: Float[Array, " d"], pos: Int[Array, ""], cache: KVEntries, *,
             key: PRNGKeyArray | None = None) -> tuple[Float[Array, " do"], KVEntries]:
        """One token of causal self-attention with a KV cache: writes this token's key and
        value at slot ``pos`` and attends over slots ``0..pos`` (the tile's sliding window
        applies). Returns ``(output, new cache)``."""
        kq, kk, kvv, ko, ka = self._keys(key)
        kw, kr = (None, None) if ka is None else streams(ka, "write", "read")
        h = self.num_heads
        q = self.query_proj(x, key=kq).reshape(1, h, -1)
        k = self.key_proj(x, key=kk).reshape(1, h, -1)
        v = self.value_proj(x, key=kvv).reshape(1, h, -1)
        cache = cache.set(pos, self.attention.write(k, v, key=kw))
        k_pos = jnp.arange(cache.k.shape[0])
        mask = (k_pos <= pos)[None, :]
        out = self.attention.read(q, cache, mask, jnp.reshape(pos, (1,)), k_pos, key=kr)
        return self.output_proj(out.reshape(-1), key=ko), cache

    def node_cost(self, in_shape, out_shape) -> Cost:
        """Cost of ``Q Kᵀ`` and ``A V`` on the tile for a self-attention over ``in_shape[0]``
        tokens (causal: ``T(T+1)/2`` pairs per head, limited by the tile's window; else
        ``T²``: an upper bound when a mask is passed)."""
        t = int(in_shape[0])
        win = getattr(self.attention, "window", None)
        if self.causal:
            pairs = sum(min(i + 1, win) if win else i + 1 for i in range(t))
        else:
            pairs = t * t
        dk, dv = self.head_dims
        return self.attention.cost(t, pairs, self.num_heads, dk, dv)


class KeyedMLP(eqx.Module):
    """``eqx.nn.MLP`` that passes one key per layer (same function, same fields)."""

    layers: tuple
    activation: Callable
    final_activation: Callable
    in_size: Any = eqx.field(static=True)
    out_size: Any = eqx.field(static=True)

    @classmethod
    def from_eqx(cls, mlp: eqx.nn.MLP) -> "KeyedMLP":
        """Raises ValueError for a scanned MLP (``scan=True``: stacked hidden layers)."""
        if getattr(mlp, "scan", False):
            raise ValueError("analogize: eqx.nn.MLP with scan=True (stacked hidden layers) is not supported; "
                             "build it with scan=False")
        return cls(tuple(mlp.layers), mlp.activation, mlp.final_activation, mlp.in_size, mlp.out_size)

    def __call__(self, x, *, key: PRNGKeyArray | None = None):
        keys = split_or_none(key, len(self.layers))

        def act(i):
            return jtu.tree_map(lambda a: a[i] if eqx.is_array(a) else a, self.activation)

        for i, layer in enumerate(self.layers[:-1]):
            x = layer(x, key=keys[i])
            x = eqx.filter_vmap(lambda a, b: a(b))(act(i), x)
        x = self.layers[-1](x, key=keys[-1])
        if self.out_size == "scalar":
            return self.final_activation(x)
        return eqx.filter_vmap(lambda a, b: a(b))(self.final_activation, x)
