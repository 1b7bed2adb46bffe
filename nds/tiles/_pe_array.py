"""A digital near-memory PE-array tile: exact (or fixed-point) ``W x`` with the cost of a
spatial PE array (Eyeriss / TETRIS-like) next to a DRAM.

* ``program(w, *, key)``: the stored weights: ``w`` itself, or, with ``bits_weight``, ``w``
  quantized symmetric per tensor to ``bits_weight``-bit integers (scale
  ``max|w| / (2^(b-1) - 1)``, straight-through gradient) and dequantized. With retention
  errors on (``retention`` card and ``refresh_interval_s``, ``temperature_k``), the integer
  codes are stored in DRAM and each bit flips with the card's bit-error probability
  (:mod:`nds.memory._retention`), drawn from ``key``.
* ``apply(state, x, *, key)``: ``state @ x``; with ``bits_activation``, ``x`` is first
  quantized the same way (per vector). No read noise: ``key`` is unused.
* ``cost(w_shape, n_mvm)``: the ``(out, in)`` matrix applied to ``n_mvm`` vectors is mapped
  as an FC layer of batch ``n_mvm`` (:func:`nds.dataflow.map_layer`, dataflow ``dataflow``
  or the cheapest of all); energy = on-chip accesses x normalized energies x ``unit_energy``
  (compute = ALU, onchip_memory = RF + array + buffer) + DRAM bits x the memory card's
  ``energy_per_bit`` (offchip) + the card's static power x latency (static: leakage and
  clock, paid also while waiting for DRAM); latency by roofline ``max(MACs / (active PEs x clock),
  DRAM bytes / bandwidth)``; area = PEs x ``area_per_pe``. For a CONV layer use
  :meth:`cost_layer` with its :class:`~nds.dataflow.ConvShape` (keeps the convolutional reuse).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._cost_types import Cost
from ..dataflow._layers import ConvShape, FCShape
from ..dataflow._mapper import DATAFLOWS, PEArray, map_layer
from ..memory._levels import AbstractMemoryLevel
from ..memory._retention import DRAMRetention, retention_flip
from .._ste import clip_ste, replace_ste, round_ste, absmax
from ._abstract import AbstractTile

__all__ = ["PEArrayTile"]


def _qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def _quantize_codes(v, bits: int):
    """Symmetric per-tensor quantization: (integer codes as float, scale)."""
    amax = absmax(v)
    scale = jax.lax.stop_gradient(jnp.where(amax > 0, amax, 1.0) / _qmax(bits))  # all-zero v: codes 0
    q = jnp.clip(jnp.round(v / scale), -_qmax(bits), _qmax(bits))
    return q, scale


def _ste_quantize(v, bits: int):
    amax = absmax(v)
    scale = jax.lax.stop_gradient(jnp.where(amax > 0, amax, 1.0) / _qmax(bits))  # all-zero v: exact 0
    return clip_ste(round_ste(v / scale), -_qmax(bits), _qmax(bits)) * scale


class PEArrayTile(AbstractTile):
    """Digital PE-array tile near a DRAM (see module docstring).

    Attributes:
        pe: the PE array (card kind "pe_array", e.g. ``pe_eyeriss``).
        memory: the DRAM it reads (e.g. ``mem_lpddr3``, ``hmc_gen1``).
        dataflow: "WS", "OS", "NLR", "RS" or "best" (cheapest per layer).
        bits_weight, bits_activation: fixed-point precision (2..16) or ``None`` (exact).
        retention: DRAM retention card or ``None`` (no retention errors).
        refresh_interval_s, temperature_k: refresh interval and temperature for retention
            errors (needed when ``retention`` is set; retention errors need ``bits_weight``).

    Raises:
        ValueError: bad ``dataflow``, bits outside 2..16, retention without bits or without
            interval / temperature; the message names the field.
    """

    pe: PEArray
    memory: AbstractMemoryLevel
    dataflow: str = eqx.field(static=True, default="RS")
    bits_weight: int | None = eqx.field(static=True, default=None)
    bits_activation: int | None = eqx.field(static=True, default=None)
    retention: DRAMRetention | None = None
    refresh_interval_s: float | None = eqx.field(static=True, default=None)
    temperature_k: float | None = eqx.field(static=True, default=None)

    hardware: ClassVar[str] = "digital_pe_array"

    def __check_init__(self) -> None:
        if self.dataflow not in DATAFLOWS + ("best",):
            raise ValueError(f"PEArrayTile: dataflow = {self.dataflow!r}; allowed: {DATAFLOWS + ('best',)}")
        for name in ("bits_weight", "bits_activation"):
            b = getattr(self, name)
            if b is not None and (not isinstance(b, int) or not 2 <= b <= 16):
                raise ValueError(f"PEArrayTile: {name} = {b!r}; allowed: None or an integer in 2..16")
        if self.retention is not None:
            if self.bits_weight is None:
                raise ValueError("PEArrayTile: retention errors need bits_weight (integer codes in DRAM); "
                                 "got bits_weight = None")
            for name in ("refresh_interval_s", "temperature_k"):
                v = getattr(self, name)
                if v is None or not v > 0:
                    raise ValueError(f"PEArrayTile: {name} = {v!r}; must be > 0 when retention is set")

    @property
    def needs_key(self) -> bool:
        """False: no read noise; retention errors are drawn at program time (see
        AbstractTile.needs_key)."""
        return False

    def program(self, w: Float[Array, "out in"], *, key: PRNGKeyArray | None = None) -> Float[Array, "out in"]:
        """Stored weights, shape ``(out, in)`` (module docstring).

        Raises:
            ValueError: retention errors are on and ``key`` is ``None``; ``w`` not 2-D.
        """
        w = jnp.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"PEArrayTile.program: w has shape {w.shape}; expected (out, in)")
        if self.bits_weight is None:
            return w
        if self.retention is None:
            return _ste_quantize(w, self.bits_weight)
        if key is None:
            raise ValueError("PEArrayTile.program: key is None but retention errors are on; pass key=")
        q, scale = _quantize_codes(w, self.bits_weight)
        dtype = jnp.int8 if self.bits_weight <= 8 else jnp.int16
        codes = q.astype(dtype)
        ber = self.retention.ber(self.refresh_interval_s, self.temperature_k)
        flipped = retention_flip(codes, float(ber), key=key).astype(w.dtype)
        # straight-through in w: value = flipped codes x scale, gradient of w
        return replace_ste(w, flipped * scale)

    def apply(self, state: Float[Array, "out in"], x: Float[Array, " in"], *,
              key: PRNGKeyArray | None = None) -> Float[Array, " out"]:
        """``state @ x`` (``x`` quantized with ``bits_activation``). Shape ``(in,) -> (out,)``.

        Raises:
            ValueError: ``x`` shape does not match ``state``.
        """
        del key
        x = jnp.asarray(x)
        if x.shape != (state.shape[1],):
            raise ValueError(f"PEArrayTile.apply: x has shape {x.shape}; expected ({state.shape[1]},)")
        if self.bits_activation is not None:
            x = _ste_quantize(x, self.bits_activation)
        return state @ x

    def ideal(self) -> "PEArrayTile":
        """Exact arithmetic, no retention errors."""
        return PEArrayTile(pe=self.pe, memory=self.memory, dataflow=self.dataflow)

    def _word_bits(self) -> int:
        bits = [b for b in (self.bits_weight, self.bits_activation) if b is not None]
        return max(bits) if len(bits) == 2 else self.pe.word_bits

    def cost_layer(self, layer: ConvShape) -> Cost:
        """:class:`nds.Cost` of one layer (whole batch ``layer.N``) on this tile."""
        import dataclasses

        pe = dataclasses.replace(self.pe, word_bits=self._word_bits())
        e = pe.absolute_energies(dram_energy_per_bit=float(self.memory.energy_per_bit))
        dfs = DATAFLOWS if self.dataflow == "best" else (self.dataflow,)
        m = min((map_layer(layer, df, pe, energies=e) for df in dfs), key=lambda mm: mm.energy)
        by = m.energy_by_level()
        dram_bytes = m.dram_bytes
        t = max(m.compute_time_s, self.memory.stream_time(dram_bytes))
        counts = {f"{lv}_accesses": m.level_accesses(lv) for lv in ("dram", "buffer", "array", "rf")}
        counts["macs"] = float(layer.macs)
        counts["dram_bytes"] = dram_bytes
        counts["active_pes"] = float(m.active_pes)
        srcs = tuple(c.source for c in (self.pe.card, self.memory.card) if c is not None)
        meas = all(c.measured for c in (self.pe.card, self.memory.card) if c is not None) and bool(srcs)
        return Cost(
            counts=counts,
            energy_j={"compute": by["alu"], "onchip_memory": by["buffer"] + by["array"] + by["rf"],
                      "offchip": by["dram"], "static": pe.static_power * t},
            latency_s=t, area_m2=pe.area, offchip_bytes=dram_bytes, macs=float(layer.macs),
            bits_weight=self.bits_weight, bits_activation=self.bits_activation,
            hardware=f"{self.hardware}:{m.dataflow}", measured=meas, sources=srcs,
        )

    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Any = None) -> Cost:
        """Cost of ``n_mvm`` products with an ``(out, in)`` matrix, mapped as an FC layer of
        batch ``n_mvm`` (module docstring).

        Raises:
            ValueError: ``w_shape`` not two positive integers or ``n_mvm`` < 1.
        """
        del w
        if len(w_shape) != 2 or min(w_shape) < 1:
            raise ValueError(f"PEArrayTile.cost: w_shape = {w_shape!r}; expected (out, in) with out, in >= 1")
        if not isinstance(n_mvm, int) or n_mvm < 1:
            raise ValueError(f"PEArrayTile.cost: n_mvm = {n_mvm!r}; must be an integer >= 1")
        out, inp = int(w_shape[0]), int(w_shape[1])
        return self.cost_layer(FCShape("fc", n_mvm, inp, out))
