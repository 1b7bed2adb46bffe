"""The digital parts of a converted network and their cost: inference batch norm, LayerNorm,
softmax, GELU/ReLU, residual adds, pooling.

* :class:`FrozenBatchNorm` — batch norm in inference mode as a per-channel affine
  ``y = (x − mean) · weight / sqrt(var + eps) + bias`` with its statistics as leaves (what
  :func:`freeze_batchnorm` makes of an ``eqx.nn.BatchNorm`` and its ``State``, and what
  :func:`nds.nn.from_torch` makes of a PyTorch ``BatchNorm``). :func:`nds.analogize` folds it
  into the preceding converted layer.
* :class:`DigitalOp` — wraps a digital function or module (``eqx.nn.LayerNorm``, an
  activation, a pooling layer, a residual add) so that :func:`nds.cost` counts it at a stated
  bit width (``bits=None``: fp32; an integer: the op's output is quantized per vector to that
  many bits, straight-through). The forward pass is the wrapped one.
* Cost nodes: any module with ``node_cost(in_shape, out_shape) -> Cost`` and a ``name``
  (``DigitalOp``, :class:`nds.nn.MultiheadAttention`) is costed by :func:`node_costs`, which
  traces the model abstractly and records each node's input and output shapes and how many
  times it runs per example (``jax.vmap`` over tokens counts every token).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from .._cost_types import Cost
from .._ste import clip_ste, round_ste
from ..tiles._digital_ops import OP_COUNTS, digital_op_cost

__all__ = ["FrozenBatchNorm", "DigitalOp", "freeze_batchnorm", "is_cost_node", "node_costs", "scale_cost", "vmap_multiplicity"]


def vmap_multiplicity(x: Any) -> int:
    """How many times a function that receives ``x`` runs per call of the traced function:
    the product of the sizes of the ``jax.vmap`` axes ``x`` is batched over (1 outside vmap).
    Reads JAX's batching tracer (``jax._src.interpreters.batching``); 1 if unavailable."""
    try:
        from jax._src.interpreters import batching
    except ImportError:  # pragma: no cover - JAX internals moved
        return 1
    m, t = 1, x
    while isinstance(t, batching.BatchTracer):
        bd = t.batch_dim
        if isinstance(bd, int):
            m *= int(t.val.shape[bd])
        t = t.val
    return m


class FrozenBatchNorm(eqx.Module):
    """Inference-mode batch norm over the channel axis 0 of one example.

    ``x``: (C, ...) → same shape, ``y = (x − running_mean) · weight / sqrt(running_var + eps)
    + bias`` per channel.
    """

    weight: Float[Array, " c"]
    bias: Float[Array, " c"]
    running_mean: Float[Array, " c"]
    running_var: Float[Array, " c"]
    eps: float = eqx.field(static=True, default=1e-5)

    def scale_shift(self) -> tuple[Array, Array]:
        """``(a, b)`` with ``y = a · x + b`` per channel."""
        a = self.weight * jax.lax.rsqrt(self.running_var + self.eps)
        return a, self.bias - a * self.running_mean

    def __call__(self, x, *, key=None):
        """Raises ValueError on a channel count other than the statistics'."""
        del key
        c = self.weight.shape[0]
        if x.shape[0] != c:
            raise ValueError(f"FrozenBatchNorm: input shape {x.shape}, expected {c} channels on axis 0")
        shape = (c,) + (1,) * (x.ndim - 1)
        return (x - self.running_mean.reshape(shape)) * (self.weight * jax.lax.rsqrt(self.running_var + self.eps)
                                                         ).reshape(shape) + self.bias.reshape(shape)


def freeze_batchnorm(model: Any, state: eqx.nn.State) -> Any:
    """``model`` with every ``eqx.nn.BatchNorm`` replaced by a :class:`FrozenBatchNorm`
    holding its inference statistics from ``state`` (weight 1 / bias 0 where the norm has no
    affine parameters)."""
    from ._analogize import _bn_inference_stats

    is_bn = lambda x: isinstance(x, eqx.nn.BatchNorm)

    def conv(bn):
        if not is_bn(bn):
            return bn
        mean, var = _bn_inference_stats(bn, state)
        w = bn.weight if bn.weight is not None else jnp.ones_like(mean)
        b = bn.bias if bn.bias is not None else jnp.zeros_like(mean)
        return FrozenBatchNorm(w, b, mean, var, eps=float(bn.eps))

    return jtu.tree_map(conv, model, is_leaf=is_bn)


def _quantize_out(y, bits):
    if bits is None:
        return y
    half = 2 ** (bits - 1) - 1
    s = jnp.max(jnp.abs(y))
    s = jnp.where(s > 0, s, 1.0)
    return clip_ste(round_ste(y / s * half), -half, half) * s / half


class DigitalOp(eqx.Module):
    """A digital function of the network (see the module docstring).

    Attributes:
        fn: the wrapped module or function, called as ``fn(*args)`` (modules with
            ``key=key`` as well).
        kind: a key of :data:`nds.tiles._digital_ops.OP_COUNTS` (``"layernorm"``,
            ``"gelu"``, ``"relu"``, ``"add"``, ``"maxpool"``, ``"avgpool"``, ``"softmax"``).
        bits: bit width of the op's arithmetic and output (None: fp32).
        name: report name.

    Raises:
        ValueError: an unknown ``kind`` or ``bits`` < 2.
    """

    fn: Any
    kind: str = eqx.field(static=True)
    bits: int | None = eqx.field(static=True, default=None)
    name: str = eqx.field(static=True, default="digital")

    def __check_init__(self):
        if self.kind not in OP_COUNTS:
            raise ValueError(f"DigitalOp {self.name!r}: kind {self.kind!r} unknown; known: {sorted(OP_COUNTS)}")
        if self.bits is not None and self.bits < 2:
            raise ValueError(f"DigitalOp {self.name!r}: bits = {self.bits}, must be >= 2 or None (fp32)")

    def __call__(self, *args, key=None):
        if isinstance(self.fn, eqx.Module) and not isinstance(self.fn, eqx.nn.Lambda):
            y = self.fn(*args, key=key)
        else:
            y = self.fn(*args)
        return _quantize_out(y, self.bits)

    def node_cost(self, in_shape, out_shape) -> Cost:
        """``OP_COUNTS[kind]`` per input element at ``bits``."""
        n = 1
        for s in in_shape:
            n *= int(s)
        return digital_op_cost(self.kind, n, self.bits)


def scale_cost(c: Cost, f: float) -> Cost:
    """``c`` repeated ``f`` times: counts, energies, latency, off-chip bytes and MACs times
    ``f`` (area unchanged)."""
    return dataclasses.replace(
        c, counts={k: v * f for k, v in c.counts.items()}, energy_j={k: v * f for k, v in c.energy_j.items()},
        latency_s=c.latency_s * f, offchip_bytes=c.offchip_bytes * f, macs=c.macs * f)


def trace_safe(model: Any) -> Any:
    """``model`` with every attention tile replaced by its ideal twin, so that it can be
    traced with ``key=None`` for shapes (costs never depend on the tiles' noise)."""
    from ..tiles._attention import AbstractAttentionTile

    is_t = lambda x: isinstance(x, AbstractAttentionTile)
    return jtu.tree_map(lambda x: x.ideal() if is_t(x) else x, model, is_leaf=is_t)


def is_cost_node(x: Any) -> bool:
    """Whether ``x`` is costed by :func:`node_costs` (has ``node_cost`` and is a module)."""
    return isinstance(x, eqx.Module) and hasattr(type(x), "node_cost")


class _NodeProbe(eqx.Module):
    inner: Any
    idx: int = eqx.field(static=True)
    record: Callable = eqx.field(static=True)

    def __call__(self, *args, **kwargs):
        y = self.inner(*args, **kwargs)
        x = args[0]
        self.record(self.idx, tuple(x.shape), tuple(jnp.shape(y)), vmap_multiplicity(x))
        return y


def node_costs(model: Any, input_shape: tuple[int, ...], input_dtype: Any = None) -> list[tuple[str, tuple, Cost]]:
    """Cost of every cost node of ``model`` for one example of ``input_shape``: a list of
    ``(name, input_shape, Cost)`` in call order; a node run ``m`` times per example (under
    ``jax.vmap``) is counted ``m`` times. The model is traced abstractly (``jax.eval_shape``)
    with ``input_dtype`` (default float32; integer token ids for language models).

    Raises:
        ValueError: a cost node that is never called.
    """
    from ._analogize import is_analog_layer

    nodes = [x for x in jtu.tree_leaves(model, is_leaf=is_cost_node) if is_cost_node(x)]
    if not nodes:
        return []
    seen: dict[int, tuple] = {}
    order: list[int] = []

    def record(i, s_in, s_out, mult):
        if i not in seen:
            order.append(i)
        seen[i] = (s_in, s_out, mult)

    it = iter(range(len(nodes)))
    probed = jtu.tree_map(lambda x: _NodeProbe(x, next(it), record) if is_cost_node(x) else x, model,
                          is_leaf=is_cost_node)
    # analog layers inside nodes must not run their tiles: replace them with shape stubs
    probed = jtu.tree_map(lambda x: _ShapeStub(x) if is_analog_layer(x) else x, trace_safe(probed),
                          is_leaf=is_analog_layer)
    dtype = jnp.float32 if input_dtype is None else input_dtype
    jax.eval_shape(lambda x: probed(x, key=None), jax.ShapeDtypeStruct(tuple(input_shape), dtype))
    out = []
    for i in order:
        s_in, s_out, mult = seen[i]
        c = nodes[i].node_cost(s_in, s_out)
        if mult != 1:
            c = scale_cost(c, float(mult))
        out.append((nodes[i].name, s_in, c))
    missing = [nodes[i].name for i in range(len(nodes)) if i not in seen]
    if missing:
        raise ValueError(f"node_costs: cost node(s) {missing} were not reached when tracing the model")
    return out


class _ShapeStub(eqx.Module):
    inner: Any

    def __call__(self, x, *, key=None):
        return jnp.zeros(self.inner.output_shape(tuple(x.shape)), x.dtype)
