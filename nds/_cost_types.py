"""The cost record every tile, memory and layer reports (energy, latency, area, counts).

Kept at the bottom of the dependency graph so that cells, converters, memories and tiles can
all return it. :func:`nds.cost` sums them per layer and per inference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["ENERGY_CATEGORIES", "Cost"]

#: Energy categories of the survey's section VIII report, plus ``static``: leakage and clock
#: energy over the run time (given by the cards that state a static power, e.g. PE arrays).
ENERGY_CATEGORIES = ("compute", "conversion", "array", "onchip_memory", "offchip", "static")


def _merge_bits(a: "Cost", b: "Cost", field: str) -> int | None:
    """Precision of a sum: the common value; a side that does no MACs does not count."""
    x, y = getattr(a, field), getattr(b, field)
    if a.macs == 0:
        return y
    if b.macs == 0:
        return x
    return x if x == y else None


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cost of one action group (a layer on a tile, a memory's traffic, ...), per inference.

    Attributes:
        counts: action name -> number of actions per inference (e.g. ``"adc_conversions"``,
            ``"dac_conversions"``, ``"cell_reads"``, ``"digital_adds"``, ``"macs"``,
            ``"dram_bytes"``).
        energy_j: category (one of :data:`ENERGY_CATEGORIES`) -> energy per inference, J.
        latency_s: latency of one inference through this group, s.
        area_m2: silicon area of the hardware this group occupies, m².
        offchip_bytes: bytes moved to or from off-chip memory per inference.
        macs: multiply-accumulates per inference.
        bits_weight, bits_activation: operand precisions (``None`` = floating point).
        hardware: short name ("digital", "rram", "pcm", "sram", ...).
        measured: whether the per-action figures come from silicon measurements (True) or
            from simulation / secondary sources (False).
        sources: card sources the figures come from.
        mac_units: multiply-accumulate units the hardware has (weights held by crossbar
            cells, MAC units of a digital array), for area per MAC unit.
        update_energy_j: energy of the in-situ weight updates per training example, J
            (pulses, half-selected cells, line charging, random bits; :mod:`nds.insitu`);
            0 for hardware that is only programmed. Not part of the per-inference energy.
        update_latency_s: time of the in-situ weight updates per training example, s.
        program_energy_j: energy to program this hardware's weights once, per chip, J
            (one-shot pulses or the write-verify record; :mod:`nds.cells._programming`). Not
            part of the per-inference energy.
        program_time_s: time to program them once, per chip, s (layers one after another).
    """

    counts: dict[str, float] = dataclasses.field(default_factory=dict)
    energy_j: dict[str, float] = dataclasses.field(default_factory=dict)
    latency_s: float = 0.0
    area_m2: float = 0.0
    offchip_bytes: float = 0.0
    macs: float = 0.0
    bits_weight: int | None = None
    bits_activation: int | None = None
    hardware: str = ""
    measured: bool = False
    sources: tuple[str, ...] = ()
    mac_units: float = 0.0
    update_energy_j: float = 0.0
    update_latency_s: float = 0.0
    program_energy_j: float = 0.0
    program_time_s: float = 0.0

    def __post_init__(self) -> None:
        bad = set(self.energy_j) - set(ENERGY_CATEGORIES)
        if bad:
            raise ValueError(f"Cost.energy_j: unknown categories {sorted(bad)}; allowed {ENERGY_CATEGORIES}")

    @property
    def energy_total_j(self) -> float:
        """Sum of ``energy_j`` over all categories, J per inference."""
        return float(sum(self.energy_j.values()))

    def __add__(self, other: "Cost") -> "Cost":
        def merge(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0.0) + v
            return out

        hw = self.hardware if self.hardware == other.hardware or not other.hardware else (
            other.hardware if not self.hardware else f"{self.hardware}+{other.hardware}")
        return Cost(
            counts=merge(self.counts, other.counts),
            energy_j=merge(self.energy_j, other.energy_j),
            latency_s=self.latency_s + other.latency_s,
            area_m2=self.area_m2 + other.area_m2,
            offchip_bytes=self.offchip_bytes + other.offchip_bytes,
            macs=self.macs + other.macs,
            bits_weight=_merge_bits(self, other, "bits_weight"),
            bits_activation=_merge_bits(self, other, "bits_activation"),
            hardware=hw,
            measured=self.measured and other.measured,
            sources=tuple(dict.fromkeys(self.sources + other.sources)),
            mac_units=self.mac_units + other.mac_units,
            update_energy_j=self.update_energy_j + other.update_energy_j,
            update_latency_s=self.update_latency_s + other.update_latency_s,
            program_energy_j=self.program_energy_j + other.program_energy_j,
            program_time_s=self.program_time_s + other.program_time_s,
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, plus ``energy_total_j`` (J) and
        ``area_per_mac_unit_m2`` (m², ``None`` when ``mac_units`` is 0)."""
        d = dataclasses.asdict(self)
        d["energy_total_j"] = self.energy_total_j
        d["sources"] = list(self.sources)
        d["area_per_mac_unit_m2"] = self.area_m2 / self.mac_units if self.mac_units else None
        return d
