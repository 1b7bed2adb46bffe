"""Memory levels: where operands live and what moving them costs.

Each level is a card module (see :mod:`nds._cards`) with its capacity (B), bandwidth (B/s),
access energy, latency (s) and, for on-chip levels, area (m²). The figures and their sources
are in the cards ``devices/mem_*.toml`` and ``devices/hmc_*.toml``; this module holds only
functional forms:

* energy of moving ``n`` bytes = ``8 n * energy_per_bit`` (memory energy scales about
  linearly with bits, survey §VII-A);
* time of moving ``n`` bytes = ``latency + n / bandwidth`` (:meth:`transfer_time`), or
  ``n / bandwidth`` for streaming (:meth:`stream_time`, used by the roofline);
* roofline: ``time = max(compute time, bytes / bandwidth)`` (:func:`roofline_time`).

On-chip levels (register file, SRAM buffer, eDRAM) are specified per access of a
``word_bits`` word (``energy_per_access``); DRAM levels per bit (``energy_per_bit``). Both
expose :attr:`energy_per_bit` so callers need not care which.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx

from .._cards import AbstractCardModule
from .._cost_types import Cost

__all__ = [
    "AbstractMemoryLevel", "RegisterFile", "SRAMBuffer", "EDRAM", "DRAM2D", "HMC", "HBM",
    "roofline_time",
]

_POS = (0.0, None)


def _check_nonneg(name: str, v: float) -> None:
    if not v >= 0:
        raise ValueError(f"{name} = {v!r}; must be >= 0 (bytes)")


class AbstractMemoryLevel(AbstractCardModule):
    """A level of the memory hierarchy. Subclasses define the card parameters.

    Every level provides ``capacity`` (B), ``bandwidth`` (B/s), ``latency`` (s), ``area``
    (m², 0 when off-chip or unknown) and :attr:`energy_per_bit` (J/bit). Count parameters
    (``channels``, ``vaults``, ``word_bits``) are integers, written with unit "1" in cards.

    Build levels with :func:`nds.load_card`, which converts units and checks each parameter
    against ``card_ranges`` (:class:`nds.CardError` naming the file and key); constructing
    a level directly skips those checks.
    """

    category: ClassVar[str] = "onchip_memory"  # energy category in a Cost report

    def access_energy(self, nbytes: float) -> float:
        """Energy (J) of reading or writing ``nbytes`` bytes (linear in bits).

        Raises:
            ValueError: ``nbytes`` < 0.
        """
        _check_nonneg("nbytes", nbytes)
        return 8.0 * float(nbytes) * float(self.energy_per_bit)

    def stream_time(self, nbytes: float) -> float:
        """Time (s) to stream ``nbytes`` bytes at full bandwidth (no latency term)."""
        _check_nonneg("nbytes", nbytes)
        return float(nbytes) / float(self.bandwidth)

    def transfer_time(self, nbytes: float) -> float:
        """Time (s) of one transfer of ``nbytes`` bytes: ``latency + nbytes / bandwidth``."""
        return float(self.latency) + self.stream_time(nbytes)

    def cost(self, nbytes: float) -> Cost:
        """:class:`nds.Cost` of moving ``nbytes`` bytes through this level (energy in this
        level's category, streaming time as latency, ``offchip_bytes`` for off-chip levels)."""
        e = self.access_energy(nbytes)
        off = self.category == "offchip"
        return Cost(
            counts={f"{type(self).__name__}_bytes": float(nbytes)},
            energy_j={self.category: e},
            latency_s=self.stream_time(nbytes),
            area_m2=float(getattr(self, "area", 0.0)),
            offchip_bytes=float(nbytes) if off else 0.0,
            hardware=type(self).__name__,
            measured=bool(self.card.measured) if self.card else False,
            sources=(self.card.source,) if self.card else (),
        )


class _OnChipLevel(AbstractMemoryLevel):
    """On-chip level specified per access of one ``word_bits``-bit word."""

    capacity: float
    bandwidth: float
    energy_per_access: float
    word_bits: int = eqx.field(static=True, converter=int)
    latency: float
    area: float

    card_units: ClassVar[dict[str, str]] = {
        "capacity": "B", "bandwidth": "B/s", "energy_per_access": "J", "word_bits": "1",
        "latency": "s", "area": "m2",
    }
    card_ranges: ClassVar[dict] = {
        "capacity": (1.0, None), "bandwidth": (1.0, None), "energy_per_access": _POS,
        "word_bits": (1, 1024), "latency": _POS, "area": _POS,
    }

    @property
    def energy_per_bit(self) -> float:
        """J/bit = ``energy_per_access / word_bits``."""
        return float(self.energy_per_access) / int(self.word_bits)


class RegisterFile(_OnChipLevel):
    """Register file (scratch pad) inside a PE. Card kind ``"mem_rf"``.

    Card parameters: capacity (B, per PE), bandwidth (B/s, per PE), energy_per_access (J per
    ``word_bits`` word), word_bits, latency (s), area (m², per PE).
    """

    card_kind: ClassVar[str] = "mem_rf"


class SRAMBuffer(_OnChipLevel):
    """On-chip SRAM (global buffer, cache). Card kind ``"mem_sram"``; parameters as
    :class:`RegisterFile` but for the whole buffer."""

    card_kind: ClassVar[str] = "mem_sram"


class EDRAM(_OnChipLevel):
    """Embedded DRAM buffer (denser than SRAM, refreshed). Card kind ``"mem_edram"``;
    parameters as :class:`RegisterFile`."""

    card_kind: ClassVar[str] = "mem_edram"


class _OffChipLevel(AbstractMemoryLevel):
    """Off-chip level (DRAM die or stack): its energy counts as ``offchip``, its bytes as
    off-chip traffic, and it adds no area to the accelerator."""

    category: ClassVar[str] = "offchip"

    @property
    def area(self) -> float:
        """0 m²: the DRAM is not part of the accelerator's silicon."""
        return 0.0


class DRAM2D(_OffChipLevel):
    """Conventional off-chip (2D) DRAM: DDR3, LPDDR3. Card kind ``"mem_dram2d"``.

    Card parameters: capacity (B), channels (1), channel_bandwidth (B/s per channel),
    energy_per_bit (J/bit, whole access including I/O), latency (s).
    ``bandwidth = channels * channel_bandwidth``.
    """

    capacity: float
    channels: int = eqx.field(static=True, converter=int)
    channel_bandwidth: float
    energy_per_bit: float
    latency: float

    card_kind: ClassVar[str] = "mem_dram2d"
    card_units: ClassVar[dict[str, str]] = {
        "capacity": "B", "channels": "1", "channel_bandwidth": "B/s", "energy_per_bit": "J/bit",
        "latency": "s",
    }
    card_ranges: ClassVar[dict] = {
        "capacity": (1.0, None), "channels": (1, 1024), "channel_bandwidth": (1.0, None),
        "energy_per_bit": _POS, "latency": _POS,
    }

    @property
    def bandwidth(self) -> float:
        """Total bandwidth, B/s."""
        return int(self.channels) * float(self.channel_bandwidth)


class HMC(_OffChipLevel):
    """Hybrid Memory Cube: DRAM dies stacked on a logic die, split into vertical vaults
    reached through TSVs (survey §VI-A). Card kind ``"hmc"``.

    Card parameters: capacity (B, whole stack), vaults (1), vault_bandwidth (B/s per vault,
    TSV bandwidth seen from the logic die), energy_per_bit (J/bit for an access from the
    logic die: DRAM dies, TSVs and vault controller, no SerDes link), link_energy_per_bit (J/bit extra when the
    data leave the cube over the SerDes links to a host), latency (s),
    logic_area_per_vault (m² of logic-die area under one vault available to a PE array).
    """

    capacity: float
    vaults: int = eqx.field(static=True, converter=int)
    vault_bandwidth: float
    energy_per_bit: float
    link_energy_per_bit: float
    latency: float
    logic_area_per_vault: float

    card_kind: ClassVar[str] = "hmc"
    card_units: ClassVar[dict[str, str]] = {
        "capacity": "B", "vaults": "1", "vault_bandwidth": "B/s", "energy_per_bit": "J/bit",
        "link_energy_per_bit": "J/bit", "latency": "s", "logic_area_per_vault": "m2",
    }
    card_ranges: ClassVar[dict] = {
        "capacity": (1.0, None), "vaults": (1, 4096), "vault_bandwidth": (1.0, None),
        "energy_per_bit": _POS, "link_energy_per_bit": _POS, "latency": _POS,
        "logic_area_per_vault": _POS,
    }

    @property
    def host_energy_per_bit(self) -> float:
        """J/bit for an access from a host over the SerDes links."""
        return float(self.energy_per_bit) + float(self.link_energy_per_bit)

    @property
    def bandwidth(self) -> float:
        """Aggregate vault (TSV) bandwidth, B/s = vaults * vault_bandwidth."""
        return int(self.vaults) * float(self.vault_bandwidth)


class HBM(_OffChipLevel):
    """High Bandwidth Memory stack: channels of ``channel_width_bits`` wide interfaces on a
    silicon interposer (survey §VI-A). Card kind ``"hbm"``.

    Card parameters: capacity (B), channels (1), channel_width_bits (1), channel_bandwidth
    (B/s per channel), energy_per_bit (J/bit), latency (s).
    """

    capacity: float
    channels: int = eqx.field(static=True, converter=int)
    channel_width_bits: int = eqx.field(static=True, converter=int)
    channel_bandwidth: float
    energy_per_bit: float
    latency: float

    card_kind: ClassVar[str] = "hbm"
    card_units: ClassVar[dict[str, str]] = {
        "capacity": "B", "channels": "1", "channel_width_bits": "1", "channel_bandwidth": "B/s",
        "energy_per_bit": "J/bit", "latency": "s",
    }
    card_ranges: ClassVar[dict] = {
        "capacity": (1.0, None), "channels": (1, 1024), "channel_width_bits": (1, 4096),
        "channel_bandwidth": (1.0, None), "energy_per_bit": _POS, "latency": _POS,
    }

    @property
    def bandwidth(self) -> float:
        """Stack bandwidth, B/s = channels * channel_bandwidth."""
        return int(self.channels) * float(self.channel_bandwidth)


def roofline_time(macs: float, peak_macs_per_s: float, nbytes: float, bandwidth: float) -> float:
    """Roofline latency (s): ``max(macs / peak_macs_per_s, nbytes / bandwidth)``.

    Raises:
        ValueError: a negative count or a non-positive rate, naming the argument.
    """
    for n, v in (("macs", macs), ("nbytes", nbytes)):
        if not v >= 0:
            raise ValueError(f"roofline_time: {n} = {v!r}; must be >= 0")
    for n, v in (("peak_macs_per_s", peak_macs_per_s), ("bandwidth", bandwidth)):
        if not v > 0:
            raise ValueError(f"roofline_time: {n} = {v!r}; must be > 0")
    return max(float(macs) / float(peak_macs_per_s), float(nbytes) / float(bandwidth))
