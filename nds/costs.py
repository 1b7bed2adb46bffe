"""Per-layer and per-inference cost of a model: energy, latency, area, action counts.

:func:`cost` walks the model's analog layers (in pytree order, i.e. execution order for
``eqx.nn.Sequential``), propagates the input shape through the model with
``jax.eval_shape`` to learn each layer's input shape, and asks each layer's tile for its
:class:`nds.Cost`. Digital pooling and activations are not counted (negligible next to the
MVMs; the near-memory issue adds memory traffic).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._cost_types import ENERGY_CATEGORIES, Cost
from .nn._analogize import analog_layers, is_analog_layer

__all__ = ["CostReport", "cost"]


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Per-layer costs (``layers``: list of ``(name, input_shape, Cost)``) and their sum."""

    layers: list[tuple[str, tuple[int, ...], Cost]]
    total: Cost
    batch_size: int = 1

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer plus a ``"total"`` row (JSON-ready)."""
        out = []
        for name, shape, c in self.layers + [("total", (), self.total)]:
            d = c.as_dict()
            d["layer"] = name
            d["input_shape"] = list(shape)
            out.append(d)
        return out

    @property
    def energy_j(self) -> float:
        return self.total.energy_total_j

    @property
    def latency_s(self) -> float:
        return self.total.latency_s

    def throughput(self) -> float:
        """Inferences per second at ``batch_size`` with layers executed one after another."""
        return self.batch_size / (self.total.latency_s * self.batch_size) if self.total.latency_s > 0 else float("inf")


def _layer_input_shapes(model, input_shape) -> dict[int, tuple[int, ...]]:
    """Record the input shape each analog layer sees, by tracing the model abstractly."""
    shapes: dict[int, tuple[int, ...]] = {}
    layers = analog_layers(model)
    ids = {id(l): i for i, l in enumerate(layers)}

    class _Probe(eqx.Module):
        inner: Any
        idx: int = eqx.field(static=True)

        def __call__(self, x, *, key=None):
            shapes[self.idx] = tuple(x.shape)
            y_shape = self.inner.output_shape(tuple(x.shape))
            return jnp.zeros(y_shape, x.dtype)

    probed = jtu.tree_map(lambda l: _Probe(l, ids[id(l)]) if is_analog_layer(l) else l, model,
                          is_leaf=is_analog_layer)
    jax.eval_shape(lambda x: probed(x, key=None), jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))
    return shapes


def cost(model: Any, input_shape: tuple[int, ...], *, batch_size: int = 1) -> CostReport:
    """Cost of one inference of ``model`` on an input of ``input_shape`` (no batch axis).

    Args:
        model: an analogized model (programmed or not); called as ``model(x, key=...)``.
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
        batch_size: stated batch size for throughput (latency is per inference).

    Returns:
        :class:`CostReport` with per-layer :class:`nds.Cost` and the total.

    Raises:
        ValueError: the model has no analog layers.
    """
    layers = analog_layers(model)
    if not layers:
        raise ValueError("cost: the model has no analog layers; run nds.analogize first (digital layers "
                         "are costed on a DigitalTile)")
    shapes = _layer_input_shapes(model, input_shape)
    rows = []
    total = Cost()
    for i, l in enumerate(layers):
        if i not in shapes:
            raise ValueError(f"cost: layer {l.name!r} was not reached when tracing the model")
        c = l.cost(shapes[i])
        rows.append((l.name, shapes[i], c))
        total = total + c
    return CostReport(layers=rows, total=total, batch_size=batch_size)
