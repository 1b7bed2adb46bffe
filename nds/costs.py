"""Per-layer and per-inference cost of a model: the survey's section VIII report.

:func:`cost` walks the model's analog layers (pytree order = execution order for
``eqx.nn.Sequential``), learns each layer's input shape by tracing the model abstractly
(``jax.eval_shape``), and sums for each layer:

* the tile's own cost (:meth:`AbstractTile.cost`): compute, conversions, array reads, and for
  tiles that model their own memory hierarchy (near-DRAM PE arrays) buffer and DRAM traffic;
* activation traffic through the on-chip buffer (``buffer`` card): the layer's input is read
  once and its output written once, at the tile's activation precision (32 bits when
  floating point) — every design pays this;
* programming (per chip, once, not per inference): crossbar and bit-sliced tiles add the
  energy and time to write their devices (one-shot closed form, or a programmed model's
  write-verify records), reported on its own line, :attr:`CostReport.programming`;
* off-chip traffic (``dram`` card): the network input is read from DRAM; weights of digital
  tiles that do not fit in the buffer are read from DRAM once per batch (``batch_size``).
  Crossbar, SRAM and switched-capacitor tiles hold their weights in the array (weight
  stationary): no weight traffic per inference.

Latency per layer is the roofline ``max(compute latency, DRAM bytes / DRAM bandwidth)``;
layers run one after another, so the inference latency is their sum, and the pipelined
throughput is ``1 / max(layer latency)``. A layer that runs several times per example (under
``jax.vmap`` over the tokens of a sequence, or called more than once in the forward pass:
weight sharing) is counted that many times, its area once. Cost nodes
(:class:`nds.nn.DigitalOp`: LayerNorm, softmax, GELU/ReLU, residual adds, pooling at a stated
bit width; :class:`nds.nn.MultiheadAttention`: ``Q Kᵀ`` and ``A V`` on its attention tile)
add one row each (:func:`nds.nn.node_costs`); activations and pooling of plain Equinox layers
are not counted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._cards import load_card
from ._cost_types import ENERGY_CATEGORIES, Cost
from .nn._analogize import analog_layers, is_analog_layer

__all__ = ["CostReport", "ProgrammingCost", "cost", "default_memories", "plot_energy_breakdown"]


def default_memories() -> tuple[Any, Any]:
    """The default on-chip buffer (Eyeriss global buffer card) and DRAM (LPDDR3 card)."""
    from .memory import DRAM2D, SRAMBuffer

    return load_card("mem_glb_eyeriss", SRAMBuffer), load_card("mem_lpddr3", DRAM2D)


@dataclasses.dataclass(frozen=True)
class ProgrammingCost:
    """Programming one chip's weights once (all layers, one after another).

    Attributes:
        energy_j: J per chip.
        time_s: s per chip.
    """

    energy_j: float
    time_s: float


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Per-layer costs and their total, per inference.

    Attributes:
        layers: list of ``(name, input_shape, Cost)``.
        total: the sum.
        batch_size: the stated batch size (amortizes weight traffic from DRAM).
    """

    layers: list[tuple[str, tuple[int, ...], Cost]]
    total: Cost
    batch_size: int = 1

    @property
    def energy_j(self) -> float:
        """Energy per inference, J."""
        return self.total.energy_total_j

    @property
    def latency_s(self) -> float:
        """Latency of one inference (layers in sequence), s."""
        return self.total.latency_s

    @property
    def throughput(self) -> float:
        """Inferences per second with layers pipelined: ``1 / max(layer latency)``."""
        m = max((c.latency_s for _, _, c in self.layers), default=0.0)
        return 1.0 / m if m > 0 else float("inf")

    @property
    def programming(self) -> ProgrammingCost:
        """Energy and time to program the chip's weights once (per chip, not per inference):
        the sum over layers of each tile's one-shot closed form or, for a programmed model, of
        its states' records (write-verify loops included; :mod:`nds.cells._programming`).
        Tiles that are not programmed (digital, SRAM loaded by ordinary writes) add 0."""
        return ProgrammingCost(self.total.program_energy_j, self.total.program_time_s)

    @property
    def update_energy_j(self) -> float:
        """In-situ update energy per training example, J (0 for programmed-only hardware)."""
        return self.total.update_energy_j

    def with_update(self, energy_j: float, latency_s: float) -> "CostReport":
        """This report with the in-situ update energy (J) and time (s) per training example
        set on its total (measured by :mod:`nds.insitu`; the per-layer rows are unchanged)."""
        return dataclasses.replace(self, total=dataclasses.replace(self.total, update_energy_j=float(energy_j),
                                                                   update_latency_s=float(latency_s)))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per layer plus a ``"total"`` row (JSON-ready), with every energy category."""
        out = []
        for name, shape, c in self.layers + [("total", (), self.total)]:
            d = c.as_dict()
            d["energy_j"] = {k: float(c.energy_j.get(k, 0.0)) for k in ENERGY_CATEGORIES}
            d["layer"] = name
            d["input_shape"] = list(shape)
            out.append(d)
        out[-1]["batch_size"] = self.batch_size
        out[-1]["throughput_inf_per_s"] = self.throughput
        out[-1]["layer_hardware"] = {name: c.hardware for name, _, c in self.layers}
        return out


def _layer_shapes(model, input_shape, input_dtype=None
                  ) -> dict[int, list[tuple[tuple[int, ...], tuple[int, ...], int]]]:
    """For each analog layer, the ``(input shape, output shape, runs per example)`` of its
    calls, by tracing the model abstractly: the runs add up over the ``jax.vmap`` multiplicity
    and over every call of the layer (a layer applied twice in the forward pass, weight
    sharing, runs twice); calls with different shapes are listed apart."""
    from .nn._digital import trace_safe, vmap_multiplicity

    shapes: dict[int, list[tuple[tuple[int, ...], tuple[int, ...], int]]] = {}
    layers = analog_layers(model)
    ids = {id(l): i for i, l in enumerate(layers)}

    class _Probe(eqx.Module):
        inner: Any
        idx: int = eqx.field(static=True)

        def __call__(self, x, *, key=None):
            y_shape = self.inner.output_shape(tuple(x.shape))
            calls = shapes.setdefault(self.idx, [])
            s_in, s_out, mult = tuple(x.shape), tuple(y_shape), vmap_multiplicity(x)
            for j, (a, b, m) in enumerate(calls):
                if (a, b) == (s_in, s_out):
                    calls[j] = (a, b, m + mult)
                    break
            else:
                calls.append((s_in, s_out, mult))
            return jnp.zeros(y_shape, x.dtype)

    probed = trace_safe(jtu.tree_map(lambda l: _Probe(l, ids[id(l)]) if is_analog_layer(l) else l, model,
                                     is_leaf=is_analog_layer))
    jax.eval_shape(lambda x: probed(x, key=None),
                   jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32 if input_dtype is None else input_dtype))
    return shapes


def _scaled(c: Cost, f: float) -> Cost:
    return dataclasses.replace(
        c, counts={k: v * f for k, v in c.counts.items()}, energy_j={k: v * f for k, v in c.energy_j.items()},
        latency_s=c.latency_s * f, offchip_bytes=c.offchip_bytes * f, macs=c.macs * f)


def _tile_cost(layer, in_shape, batch_size) -> Cost:
    tile = layer.tile
    if hasattr(tile, "cost_layer"):  # tiles with their own dataflow model take the layer shape
        from .dataflow import ConvShape, FCShape
        from .nn._layers import AnalogConv2d

        if isinstance(layer, AnalogConv2d):
            o, c, r, s = layer.weight.shape
            (pt, pb), (pl, pr) = layer.padding
            if pt != pb or pl != pr or pt != pl or layer.stride[0] != layer.stride[1]:
                raise ValueError(f"cost: layer {layer.name!r}: the dataflow model needs equal padding and stride")
            shape = ConvShape(layer.name, batch_size, c, in_shape[1], in_shape[2], o, r, s,
                              stride=layer.stride[0], pad=pt)
        else:
            o, i = _matrix_shape(layer)
            shape = FCShape(layer.name, batch_size, i, o)
        return _scaled(tile.cost_layer(shape), 1.0 / batch_size)
    concrete = isinstance(layer.weight, jax.Array)
    c = tile.cost(_matrix_shape(layer), layer.n_mvm(in_shape), w=layer.matrix() if concrete else None)
    state = getattr(layer, "state", None)
    if hasattr(tile, "program_cost") and state is not None:  # a programmed chip: its own record
        e, t = tile.program_cost(_matrix_shape(layer), state=state)
        c = dataclasses.replace(c, program_energy_j=e, program_time_s=t)
    return c


def _matrix_shape(layer) -> tuple[int, int]:
    s = layer.weight.shape
    return int(s[0]), int(math.prod(s[1:]))


def cost(model: Any, input_shape: tuple[int, ...], *, batch_size: int = 1, buffer: Any = None,
         dram: Any = None, input_dtype: Any = None) -> CostReport:
    """Cost of one inference of ``model`` on an input of ``input_shape`` (no batch axis).

    Args:
        model: an analogized model (programmed or not; weights may be abstract
            ``jax.ShapeDtypeStruct`` leaves, e.g. from ``eqx.filter_eval_shape``, for cost-only
            studies of large networks).
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
        batch_size: stated batch size: weight traffic from DRAM is amortized over it.
        buffer: on-chip memory level for activations (default: :func:`default_memories`).
        dram: off-chip memory level (default: :func:`default_memories`).
        input_dtype: dtype of the traced input (default float32; ``jnp.int32`` for token ids).

    Returns:
        :class:`CostReport`.

    Raises:
        ValueError: the model has no analog layers, ``batch_size`` < 1, or the model does not
            accept one example of ``input_shape`` (e.g. a shape with a batch axis,
            ``(8, 1, 28, 28)`` for LeNet-5; the message quotes the model's own error).
    """
    if batch_size < 1:
        raise ValueError(f"cost: batch_size = {batch_size}, must be >= 1")
    layers = analog_layers(model)
    if not layers:
        raise ValueError("cost: the model has no analog layers; run nds.analogize first (digital layers "
                         "are costed on a DigitalTile)")
    if buffer is None or dram is None:
        b0, d0 = default_memories()
        buffer = buffer or b0
        dram = dram or d0
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise ValueError(f"cost: input_shape = {input_shape!r}; expected a tuple of ints, the shape of one "
                         "example, e.g. (1, 28, 28)") from None
    try:
        shapes = _layer_shapes(model, input_shape, input_dtype)
    except Exception as err:  # the model's own message is kept below
        raise ValueError(f"cost: the model does not accept one example of input_shape = {input_shape}. "
                         "input_shape is the shape of ONE example without a batch axis (e.g. (1, 28, 28) for "
                         "LeNet-5 on MNIST, not (8, 1, 28, 28)); batch_size= states the batch. The model raised: "
                         f"{type(err).__name__}: {err}") from err
    rows = []
    total = Cost()
    digital_weight_bytes = 0.0
    for i, l in enumerate(layers):
        if i not in shapes:
            raise ValueError(f"cost: layer {l.name!r} was not reached when tracing the model")
        row = None
        for s_in, s_out, mult in shapes[i]:
            c, digital_weight_bytes = _layer_cost(l, s_in, s_out, mult, i == 0, i == len(layers) - 1, batch_size,
                                                  buffer, dram, digital_weight_bytes, row is None)
            # a layer called again (weight sharing) runs again on the same arrays: energy and
            # latency per call, area and programming once
            row = c if row is None else dataclasses.replace(row + c, area_m2=row.area_m2,
                                                            program_energy_j=row.program_energy_j,
                                                            program_time_s=row.program_time_s)
        rows.append((l.name, shapes[i][0][0], row))
        total = total + row
    from .nn._digital import node_costs

    for name, s_in, c in node_costs(model, input_shape, input_dtype):
        rows.append((name, s_in, c))
        total = total + c
    total = dataclasses.replace(total, area_m2=total.area_m2 + float(getattr(buffer, "area", 0.0)))
    return CostReport(layers=rows, total=total, batch_size=batch_size)


def _layer_cost(l, s_in, s_out, mult, first, last, batch_size, buffer, dram, digital_weight_bytes, count_weights):
    """Cost of ``mult`` runs of layer ``l`` on inputs of ``s_in`` (see :func:`cost`) and the
    running total of digital weight bytes (``count_weights`` False: the layer's weights were
    counted at an earlier call of the same layer). The network input and output are read
    from and written to DRAM once per run of the first and last layer."""
    c = _tile_cost(l, s_in, batch_size)
    if mult != 1:
        c = _scaled(c, float(mult))
    if hasattr(l.tile, "cost_layer"):
        return c, digital_weight_bytes
    bits_a = c.bits_activation or 32
    act_bytes = mult * (math.prod(s_in) + math.prod(s_out)) * bits_a / 8.0
    mem = buffer.cost(act_bytes)
    off = 0.0
    if first:
        off += mult * math.prod(s_in) * bits_a / 8.0
    if last:
        off += mult * math.prod(s_out) * bits_a / 8.0
    if l.tile.hardware == "digital" and count_weights:
        wb = math.prod(_matrix_shape(l)) * (c.bits_weight or 32) / 8.0
        digital_weight_bytes += wb
        if digital_weight_bytes > float(buffer.capacity):
            off += wb / batch_size
    dc = dram.cost(off) if off > 0 else Cost()
    lat = max(c.latency_s, dc.latency_s)
    c = dataclasses.replace(
        c + dataclasses.replace(mem, latency_s=0.0, area_m2=0.0, hardware="")
        + dataclasses.replace(dc, latency_s=0.0, area_m2=0.0, hardware=""),
        latency_s=lat, hardware=c.hardware, bits_weight=c.bits_weight, bits_activation=c.bits_activation,
        measured=c.measured)
    return c, digital_weight_bytes


def plot_energy_breakdown(reports: dict[str, CostReport], path: Any, *, title: str = "") -> None:
    """Stacked bars of energy per inference (nJ) by category, per layer, one panel per report;
    one legend for all panels at the right, outside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(reports)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 2.1, 3.8), squeeze=False, sharey=False)
    colors = dict(zip(ENERGY_CATEGORIES, ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860")))
    for ax, (name, rep) in zip(axes[0], reports.items()):
        names = [nm for nm, _, _ in rep.layers]
        bottom = [0.0] * len(names)
        for cat in ENERGY_CATEGORIES:
            vals = [c.energy_j.get(cat, 0.0) * 1e9 for _, _, c in rep.layers]
            ax.bar(names, vals, bottom=bottom, color=colors[cat], label=cat)
            bottom = [a + b for a, b in zip(bottom, vals)]
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.set_ylabel("energy per inference (nJ)")
        ax.margins(y=0.15)  # head room so the tallest bar and the legend do not touch the frame
    handles, labels = axes[0][0].get_legend_handles_labels()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / (3.2 * n + 1), 1))
    # one legend for all panels, outside the axes: bars never hide it
    fig.legend(handles, labels, fontsize=7, loc="center right", frameon=False)
    fig.savefig(path, dpi=120)
    plt.close(fig)
