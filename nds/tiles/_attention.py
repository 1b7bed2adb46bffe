"""Attention tiles: hardware for the activation–activation products ``Q Kᵀ`` and ``A V``.

Unlike a weight matrix, the "weights" of these products (the keys and values) change with
every token: a tile **writes** each new token's key and value into its memory (the KV cache)
and **reads** them with every query. The contract, for one sequence (no batch axis):

* ``write(k, v, *, key) -> KVEntries`` — store ``k`` (T, H, d_k) and ``v`` (T, H, d_v); the
  entries are what the hardware holds (quantized, noisy values and their digital scales).
* ``read(q, kv, mask, q_pos, k_pos, *, key) -> (T_q, H, d_v)`` — attention of queries ``q``
  (T_q, H, d_k) over the stored entries; ``mask`` (T_q, T_k) bool (True = attend);
  ``q_pos``/``k_pos`` integer token positions (T_q,), (T_k,) (the time between a key's write
  and its read, for retention, and the sliding window; None: written just before the reads).
* ``attend(q, k, v, mask, q_pos, k_pos, *, key)`` = ``read(q, write(k, v), ...)``.
* ``cost(n_queries, n_pairs, n_heads, d_k, d_v)`` — :class:`nds.Cost` per inference, with
  ``n_pairs`` the number of (query, key) pairs a head attends over (causal: ``T(T+1)/2``).
* ``ideal()`` — the tile whose ``attend`` equals softmax attention
  ``softmax(q kᵀ/√d_k + mask) v`` exactly (``eqx.nn.MultiheadAttention``'s arithmetic).

:class:`DigitalAttention` is the default: exact (or fixed-point) softmax attention with the
energy of its MACs, KV-cache reads and softmax. The analog dynamic-weight tile is
:class:`nds.tiles.GainCellAttention`.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._cost_types import Cost
from .._keys import streams
from .._ste import clip_ste, round_ste
from ._digital import DigitalMACCosts
from ._digital_ops import digital_op_cost

__all__ = ["KVEntries", "AbstractAttentionTile", "DigitalAttention", "softmax_weights", "window_mask"]


class KVEntries(eqx.Module):
    """What an attention tile holds for ``T`` tokens.

    Attributes:
        k: (T, H, d_k) stored keys (tile units: raw for a floating-point digital tile,
            normalized signed values for an analog tile).
        v: (T, H, d_v) stored values.
        k_scale, v_scale: (T, H) digital scale of each stored token vector (1 when unused).
    """

    k: Float[Array, "t h dk"]
    v: Float[Array, "t h dv"]
    k_scale: Float[Array, "t h"]
    v_scale: Float[Array, "t h"]

    @staticmethod
    def zeros(t: int, h: int, dk: int, dv: int, dtype=None) -> "KVEntries":
        """An empty cache of ``t`` slots (for generation with a KV cache)."""
        dtype = dtype or jnp.result_type(float)
        return KVEntries(jnp.zeros((t, h, dk), dtype), jnp.zeros((t, h, dv), dtype), jnp.ones((t, h), dtype),
                         jnp.ones((t, h), dtype))

    def set(self, index, other: "KVEntries") -> "KVEntries":
        """These entries with ``other`` (leading axis ``n``) written at slots ``index .. index+n-1``."""
        return jax.tree_util.tree_map(lambda a, b: jax.lax.dynamic_update_slice_in_dim(a, b.astype(a.dtype), index, 0),
                                      self, other)


def softmax_weights(logits: Float[Array, "q k"], mask: Bool[Array, "q k"] | None) -> Float[Array, "q k"]:
    """Softmax over keys with masked logits set to the dtype's minimum (as
    ``equinox.nn.MultiheadAttention``), computed in at least float32."""
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    with jax.numpy_dtype_promotion("standard"):
        dtype = jnp.result_type(logits.dtype, jnp.float32)
    return jax.nn.softmax(logits.astype(dtype), axis=-1).astype(logits.dtype)


def window_mask(mask, q_pos, k_pos, window):
    """``mask`` and-ed with the sliding window ``0 <= q_pos − k_pos < window`` (unchanged
    when ``window`` or a position is None)."""
    if window is None or q_pos is None or k_pos is None:
        return mask
    win = (q_pos[:, None] - k_pos[None, :]) < window
    return win if mask is None else (mask & win)


def _check(q, kv: KVEntries, mask):
    if q.ndim != 3 or kv.k.ndim != 3 or q.shape[1:] != kv.k.shape[1:]:
        raise ValueError(f"attention read: q shape {q.shape} and stored keys {kv.k.shape} must be (T, heads, d_k) "
                         "with equal heads and d_k")
    if mask is not None and mask.shape != (q.shape[0], kv.k.shape[0]):
        raise ValueError(f"attention read: mask shape {mask.shape}, expected (T_q, T_k) = "
                         f"({q.shape[0]}, {kv.k.shape[0]})")


class AbstractAttentionTile(eqx.Module):
    """Hardware for ``softmax(Q Kᵀ/√d) V`` with a KV cache (see the module docstring)."""

    hardware: ClassVar[str] = "abstract"

    @property
    def needs_key(self) -> bool:
        """Whether ``write`` or ``read`` draws randomness."""
        return True

    @abc.abstractmethod
    def write(self, k: Float[Array, "t h dk"], v: Float[Array, "t h dv"], *, key: PRNGKeyArray | None
              ) -> KVEntries:
        """Store keys and values (one sequence)."""

    @abc.abstractmethod
    def read(self, q: Float[Array, "tq h dk"], kv: KVEntries, mask: Bool[Array, "tq tk"] | None = None,
             q_pos: Int[Array, " tq"] | None = None, k_pos: Int[Array, " tk"] | None = None, *,
             key: PRNGKeyArray | None) -> Float[Array, "tq h dv"]:
        """Attention of ``q`` over the stored entries."""

    def attend(self, q, k, v, mask=None, q_pos=None, k_pos=None, *, key: PRNGKeyArray | None = None):
        """``read(q, write(k, v), mask, q_pos, k_pos)``; ``key`` split into named streams
        ``"write"`` and ``"read"``. Shapes: q (T_q, H, d_k), k (T_k, H, d_k), v (T_k, H, d_v)
        → (T_q, H, d_v)."""
        kw, kr = (None, None) if key is None else streams(key, "write", "read")
        return self.read(q, self.write(k, v, key=kw), mask, q_pos, k_pos, key=kr)

    @abc.abstractmethod
    def cost(self, n_queries: int, n_pairs: int, n_heads: int, d_k: int, d_v: int) -> Cost:
        """Cost per inference of ``n_queries`` queries (and as many written tokens) attending
        over ``n_pairs`` (query, key) pairs per head."""

    @abc.abstractmethod
    def ideal(self) -> "AbstractAttentionTile":
        """The tile with every non-ideality off: ``attend`` equals softmax attention."""


def _quantize_vec(x, bits, axis=-1):
    """Symmetric per-vector quantization to ``bits`` (scale: abs-max along ``axis``)."""
    if bits is None:
        return x
    half = 2 ** (bits - 1) - 1
    s = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    s = jnp.where(s > 0, s, 1.0)
    return clip_ste(round_ste(x / s * half), -half, half) * s / half


class DigitalAttention(AbstractAttentionTile):
    """Softmax attention on a digital datapath: exact (``bits=None``, floating point), or with
    ``q``, ``k``, ``v`` and the attention weights quantized per vector to ``bits``.

    Cost per query and head over ``n`` visible keys: ``n (d_k + d_v)`` MACs at the card's
    ``e_mac(bits)`` (``"compute"``), the same number of KV-cache words read from the on-chip
    buffer at ``e_weight_read_32b · bits/32`` (``"onchip_memory"``), and a softmax over ``n``
    elements (:func:`nds.tiles._digital_ops.digital_op_cost`), at ``softmax_bits``
    (None: fp32). ``window``: sliding window in positions (None: all keys).
    """

    bits: int | None = eqx.field(static=True, default=None)
    softmax_bits: int | None = eqx.field(static=True, default=None)
    window: int | None = eqx.field(static=True, default=None)
    costs: DigitalMACCosts | None = None

    hardware: ClassVar[str] = "digital"

    def __check_init__(self):
        for n in ("bits", "softmax_bits"):
            b = getattr(self, n)
            if b is not None and b < 2:
                raise ValueError(f"DigitalAttention.{n} = {b}: must be >= 2 or None (floating point)")

    @property
    def needs_key(self) -> bool:
        """False: digital arithmetic draws nothing."""
        return False

    def write(self, k, v, *, key=None) -> KVEntries:
        """The keys and values, quantized per (token, head) vector when ``bits`` is set."""
        del key
        ones = jnp.ones(k.shape[:2], k.dtype)
        return KVEntries(_quantize_vec(k, self.bits), _quantize_vec(v, self.bits), ones, ones)

    def read(self, q, kv, mask=None, q_pos=None, k_pos=None, *, key=None):
        """``softmax(q kᵀ/√d_k) v`` per head; positions only set the sliding window (digital
        memory does not leak)."""
        del key
        _check(q, kv, mask)
        mask = window_mask(mask, q_pos, k_pos, self.window)
        q = _quantize_vec(q, self.bits)
        qs = q / math.sqrt(q.shape[-1])
        logits = jnp.einsum("shd,Shd->hsS", qs, kv.k)
        w = jax.vmap(lambda lg: softmax_weights(lg, mask))(logits)
        w = _quantize_vec(w, self.bits)
        return jnp.einsum("hsS,Shd->shd", w, kv.v)

    def ideal(self) -> "DigitalAttention":
        """Floating point, same cost card."""
        return DigitalAttention(window=self.window, costs=self.costs)

    def cost(self, n_queries, n_pairs, n_heads, d_k, d_v) -> Cost:
        """See the class docstring."""
        from .._cards import load_card

        cc = self.costs or load_card("digital_45nm", DigitalMACCosts)
        macs = float(n_pairs * n_heads * (d_k + d_v))
        words = macs * ((self.bits or 32) / 32.0)
        c = Cost(counts={"macs": macs, "kv_reads_32b": words},
                 energy_j={"compute": macs * cc.e_mac(self.bits), "onchip_memory": words * cc.e_weight_read_32b},
                 latency_s=macs / cc.mac_rate, macs=macs, bits_weight=self.bits, bits_activation=self.bits,
                 hardware="digital", sources=(cc.card.source,) if cc.card else ())
        return c + digital_op_cost("softmax", n_pairs * n_heads, self.softmax_bits)
