"""Analytical dataflow mapper for a spatial PE array (Eyeriss-like).

Hardware (survey §V-B, Fig. 22; Chen, Emer, Sze, ISCA 2016): a 2D array of PEs, each with an
ALU and a register file (RF), an on-chip global buffer, an array network (NoC / neighbour PE
links) and off-chip DRAM. Energy per access relative to one ALU op (16-bit MAC): DRAM 200,
buffer 6, array 2, RF 1, ALU 1 (the card ``devices/pe_*.toml``).

Counting model (Chen et al. ISCA 2016, §VI-A "Framework for energy efficiency analysis"):
a value of data type X (weight, ifmap, psum) with ``n`` distinct elements, each used ``U``
times (weight: ``N E F``; ifmap: ``MACs / n_ifmap``; psum: ``C R S`` accumulations), is
split into reuse at each level, ``U = a b c d``: fetched ``a`` times from DRAM, each copy read
``b`` times from the buffer, each read delivered to ``c`` PEs over the array, each delivery
used ``d`` times from the RF. Accesses per element:

* inputs (weights, ifmaps): DRAM ``a``, buffer ``a b``, array ``a b c``, RF ``a b c d``;
* psums: DRAM ``2a - 1``, buffer ``2a (b - 1)``, array ``a b (c - 1)``, RF ``2 a b c (d - 1)``.

A dataflow fixes how ``c`` and ``d`` follow from the spatial mapping and RF tiling, and
which factor is left to the buffer: the *stationary* data type of WS (weights) and OS
(psums) stays in its PE for the whole buffer tile (``b = c = 1``, ``d = U / a``); the other
types take the remainder at the buffer (``b = U / (a c d)``, at least 1). Data types that a
dataflow keeps out of the RF (WS: ifmaps, psums; OS: weights, ifmaps; NLR: everything) have
no RF accesses. ``a`` follows from the DRAM-level loop blocking: the layer is cut into
buffer tiles along N, M, C and E (the tiles must fit in the buffer), the tile loops are run
in one of 24 orders, and a tile is refetched once per iteration of every irrelevant loop
outside its innermost relevant loop; ifmap tiles carry a halo of ``R - U`` rows.

Dataflows (survey Fig. 25):

* **WS** (weight stationary; nn-X, NeuFlow): PE grid = reduction (C R S) x output channels;
  one weight per PE RF; ifmaps broadcast along output channels; psums accumulate spatially.
* **OS** (output stationary; ShiDianNao): PE grid = output pixels (ph x pw) x channels; one
  psum per PE; weights broadcast over pixels, ifmaps over channels and overlapping windows.
* **NLR** (no local reuse; DianNao): no RF; weights unicast from the buffer, ifmaps
  multicast, psums accumulated across PEs.
* **RS** (row stationary; Eyeriss): logical PE set of R x E PEs (filter row x output row);
  a PE holds ``p`` filters x ``q`` channels of a filter row, ``n`` ifmap windows and ``n p``
  psums in its RF; filter rows multicast horizontally, ifmap rows diagonally, psums
  accumulate vertically. The set is *folded* (E cut into strips of at most the array width,
  R into at most the array height) and *replicated* (``r`` sets over channels stacked
  vertically, ``t`` sets over filters side by side) onto the fixed array.

The mapper searches the RF tiling / spatial mapping and the DRAM-level blocking and order,
and keeps the cheapest (:func:`map_layer`). Latency: ``MACs / (active PEs x clock)``; the
roofline against a memory's bandwidth is in :mod:`nds.dataflow._near_memory`.

Equal area (Chen ISCA 2016): the baseline storage area for ``P`` PEs is
``P x Area(512 B RF) + Area(P x 512 B buffer)``; each dataflow gets the same total storage
area, split differently: RS keeps 512 B RF per PE; WS and OS keep one word of RF per PE and
NLR none, and the RF area they save goes to a larger buffer at ``rf_area_ratio`` buffer
bytes per RF byte (:meth:`PEArray.equal_area`). ``rf_area_ratio`` is an assumption of the
card (the paper's per-byte areas are not reproduced here).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import ClassVar, Iterable, Sequence

import equinox as eqx
import numpy as np

from .._cards import AbstractCardModule
from ._layers import ConvShape

__all__ = [
    "DATAFLOWS", "LEVELS", "DATATYPES", "PEArray", "TechEnergies", "AccessEnergies",
    "LayerMapping", "map_layer", "map_network", "count_accesses", "naive_accesses",
    "best_case_accesses",
]

DATAFLOWS = ("WS", "OS", "NLR", "RS")
#: levels of the hierarchy in the order of the survey's Fig. 22 (ALU counts MACs)
LEVELS = ("dram", "buffer", "array", "rf", "alu")
DATATYPES = ("weight", "ifmap", "psum")
_MIN_RF_WORDS = {"WS": 1, "OS": 1, "NLR": 0}


# ----------------------------------------------------------------------------- hardware


class PEArray(AbstractCardModule):
    """A spatial PE array with RF per PE, a global buffer and normalized access energies.

    Card kind ``"pe_array"``; parameters (SI): ``rows``, ``cols`` (PEs), ``rf_bytes`` (B per
    PE), ``buffer_bytes`` (B), ``word_bits`` (bits of one data word), ``clock`` (Hz),
    ``e_dram``, ``e_buffer``, ``e_array``, ``e_rf``, ``e_alu`` (energy of one word access /
    one MAC relative to one ALU op, dimensionless), ``unit_energy`` (J of one normalized
    unit), ``area_per_pe`` (m² per PE, including its share of buffer and control),
    ``rf_area_ratio`` (area of one RF byte in buffer bytes; for :meth:`equal_area`),
    ``e_noc_hop`` (energy of moving one word one hop on the network between engines of a
    multi-engine system, normalized like the others), ``static_energy_per_cycle`` (J of
    leakage and clock energy of the whole engine per clock cycle, paid for the whole run
    time, also while the engine waits for memory; nn_dataflow's ``unit_static``).
    """

    rows: int = eqx.field(static=True, converter=int)
    cols: int = eqx.field(static=True, converter=int)
    rf_bytes: float = eqx.field(static=True, converter=float)
    buffer_bytes: float = eqx.field(static=True, converter=float)
    word_bits: int = eqx.field(static=True, converter=int)
    clock: float = eqx.field(static=True, converter=float)
    e_dram: float = eqx.field(static=True, converter=float)
    e_buffer: float = eqx.field(static=True, converter=float)
    e_array: float = eqx.field(static=True, converter=float)
    e_rf: float = eqx.field(static=True, converter=float)
    e_alu: float = eqx.field(static=True, converter=float)
    unit_energy: float = eqx.field(static=True, converter=float)
    area_per_pe: float = eqx.field(static=True, converter=float)
    rf_area_ratio: float = eqx.field(static=True, converter=float)
    e_noc_hop: float = eqx.field(static=True, converter=float)
    static_energy_per_cycle: float = eqx.field(static=True, converter=float)

    card_kind: ClassVar[str] = "pe_array"
    card_units: ClassVar[dict[str, str]] = {
        "rows": "1", "cols": "1", "rf_bytes": "B", "buffer_bytes": "B", "word_bits": "1",
        "clock": "Hz", "e_dram": "1", "e_buffer": "1", "e_array": "1", "e_rf": "1", "e_alu": "1",
        "unit_energy": "J", "area_per_pe": "m2", "rf_area_ratio": "1", "e_noc_hop": "1",
        "static_energy_per_cycle": "J",
    }
    card_ranges: ClassVar[dict] = {
        "rows": (1, 4096), "cols": (1, 4096), "rf_bytes": (0.0, None), "buffer_bytes": (1.0, None),
        "word_bits": (1, 64), "clock": (1.0, None), "e_dram": (0.0, None), "e_buffer": (0.0, None),
        "e_array": (0.0, None), "e_rf": (0.0, None), "e_alu": (0.0, None),
        "unit_energy": (0.0, None), "area_per_pe": (0.0, None), "rf_area_ratio": (0.0, None),
        "e_noc_hop": (0.0, None), "static_energy_per_cycle": (0.0, None),
    }

    @property
    def n_pe(self) -> int:
        """Number of PEs."""
        return self.rows * self.cols

    @property
    def word_bytes(self) -> float:
        """Bytes of one data word, B = ``word_bits / 8``."""
        return self.word_bits / 8.0

    @property
    def area(self) -> float:
        """Array area, m² = ``n_pe * area_per_pe``."""
        return self.n_pe * self.area_per_pe

    def equal_area(self, dataflow: str) -> "PEArray":
        """This array re-split for ``dataflow`` at the same storage area (module docstring).

        RS keeps the card's RF; WS and OS keep one word of RF per PE and NLR none; the RF
        area freed becomes buffer at ``rf_area_ratio`` buffer bytes per RF byte.

        Raises:
            ValueError: unknown ``dataflow``.
        """
        _check_dataflow(dataflow)
        if dataflow == "RS":
            return self
        rf_new = _MIN_RF_WORDS[dataflow] * self.word_bytes
        freed = max(self.rf_bytes - rf_new, 0.0) * self.n_pe * self.rf_area_ratio
        return dataclasses.replace(self, rf_bytes=rf_new, buffer_bytes=self.buffer_bytes + freed)

    @property
    def static_power(self) -> float:
        """Leakage and clock power of the engine, W = ``static_energy_per_cycle * clock``."""
        return self.static_energy_per_cycle * self.clock

    @property
    def noc_hop_energy(self) -> float:
        """J per word per hop between engines = ``e_noc_hop * unit_energy``."""
        return self.e_noc_hop * self.unit_energy

    def normalized_energies(self) -> "AccessEnergies":
        """Per-access energies in normalized units (1 = one ALU op)."""
        return AccessEnergies(self.e_dram, self.e_buffer, self.e_array, self.e_rf, self.e_alu, unit="1")

    def absolute_energies(self, dram_energy_per_bit: float | None = None) -> "AccessEnergies":
        """Per-access energies in J: normalized x ``unit_energy``; DRAM from a memory card's
        ``energy_per_bit`` (J/bit) x ``word_bits`` when given."""
        u = self.unit_energy
        dram = self.e_dram * u if dram_energy_per_bit is None else dram_energy_per_bit * self.word_bits
        return AccessEnergies(dram, self.e_buffer * u, self.e_array * u, self.e_rf * u, self.e_alu * u, unit="J")


class TechEnergies(AbstractCardModule):
    """Energy (and area) of arithmetic and memory operations in one technology node.

    Card kind ``"tech_energy"`` (e.g. ``tech_45nm_horowitz``: Horowitz, ISSCC 2014, as quoted
    in the survey Fig. 26). Parameters in J: ``add8``, ``add32``, ``mult8``, ``mult32``,
    ``fadd32``, ``fmult32``, ``sram_read32_8kB`` (32-bit read of an 8 kB SRAM),
    ``dram_read32`` (32-bit DRAM read); areas in m²: ``add8_area``, ``add32_area``,
    ``mult8_area``, ``mult32_area``, ``fadd32_area``, ``fmult32_area``.
    """

    add8: float
    add32: float
    mult8: float
    mult32: float
    fadd32: float
    fmult32: float
    sram_read32_8kB: float
    dram_read32: float
    add8_area: float
    add32_area: float
    mult8_area: float
    mult32_area: float
    fadd32_area: float
    fmult32_area: float

    card_kind: ClassVar[str] = "tech_energy"
    card_units: ClassVar[dict[str, str]] = {
        **{k: "J" for k in ("add8", "add32", "mult8", "mult32", "fadd32", "fmult32",
                            "sram_read32_8kB", "dram_read32")},
        **{k: "m2" for k in ("add8_area", "add32_area", "mult8_area", "mult32_area",
                             "fadd32_area", "fmult32_area")},
    }
    card_ranges: ClassVar[dict] = {k: (0.0, None) for k in card_units}

    def mac_energy(self, bits: int) -> float:
        """Energy (J) of a ``bits``-bit fixed-point MAC scaled from the 8-bit figures:
        multiply quadratically, add linearly in bits (survey §VII-A).

        Raises:
            ValueError: ``bits`` is not an ``int`` or is < 1.
        """
        if not isinstance(bits, int) or bits < 1:
            raise ValueError(f"mac_energy: bits = {bits!r}; must be an integer >= 1")
        return float(self.mult8) * (bits / 8) ** 2 + float(self.add8) * (bits / 8)


@dataclasses.dataclass(frozen=True)
class AccessEnergies:
    """Energy of one word access at each level and of one MAC (``alu``), in ``unit``
    ("1" = normalized to one ALU op, "J" = joules)."""

    dram: float
    buffer: float
    array: float
    rf: float
    alu: float
    unit: str = "1"

    def as_dict(self) -> dict[str, float]:
        """Level (one of ``LEVELS``) -> energy per access, in ``unit``."""
        return {lv: float(getattr(self, lv)) for lv in LEVELS}


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class LayerMapping:
    """The chosen mapping of one layer and its counts.

    Attributes:
        layer: the layer shape.
        dataflow: "WS", "OS", "NLR" or "RS".
        counts: ``(level, datatype) -> accesses`` (words) per batch; level in ``LEVELS[:-1]``,
            datatype in ``DATATYPES``; plus ``("alu", "mac")``.
        energies: the per-access energies used.
        params: mapping parameters (spatial mapping, RF tiling, buffer tiling, loop order,
            reuse factors ``a, b, c, d`` per data type).
        active_pes: PEs doing useful work.
        hw: the PE array (after any equal-area re-split).
    """

    layer: ConvShape
    dataflow: str
    counts: dict[tuple[str, str], float]
    energies: AccessEnergies
    params: dict
    active_pes: int
    hw: PEArray

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole batch (``layer.macs``)."""
        return self.layer.macs

    def level_accesses(self, level: str) -> float:
        """Accesses (words) at ``level`` summed over data types (MACs for "alu")."""
        return float(sum(v for (lv, _), v in self.counts.items() if lv == level))

    def energy_by_level(self) -> dict[str, float]:
        """Energy per level = accesses x per-access energy (in ``energies.unit``)."""
        e = self.energies.as_dict()
        return {lv: self.level_accesses(lv) * e[lv] for lv in LEVELS}

    def energy_by_datatype(self) -> dict[str, float]:
        """Energy per data type (memory levels only; ALU reported as "alu")."""
        e = self.energies.as_dict()
        out = {dt: 0.0 for dt in DATATYPES}
        for (lv, dt), v in self.counts.items():
            if lv == "alu":
                continue
            out[dt] += v * e[lv]
        out["alu"] = self.level_accesses("alu") * e["alu"]
        return out

    @property
    def energy(self) -> float:
        """Total energy of the batch (in ``energies.unit``)."""
        return float(sum(self.energy_by_level().values()))

    @property
    def dram_bytes(self) -> float:
        """Bytes moved to or from DRAM for the batch, B = DRAM word accesses x ``hw.word_bytes``."""
        return self.level_accesses("dram") * self.hw.word_bytes

    @property
    def compute_time_s(self) -> float:
        """MACs / (active PEs x clock), s."""
        return self.macs / (self.active_pes * self.hw.clock)


# ----------------------------------------------------------------------------- counting


def _check_dataflow(dataflow: str) -> None:
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow = {dataflow!r}; allowed: {DATAFLOWS}")


def _uses(L: ConvShape) -> dict[str, tuple[float, float]]:
    """(n distinct elements, uses per element) per data type for one group."""
    macs = L.N * L.M * L.C * L.E * L.F * L.R * L.S
    n_w, n_i, n_o = L.M * L.C * L.R * L.S, L.N * L.C * L.H * L.W, L.N * L.M * L.E * L.F
    return {"weight": (n_w, L.N * L.E * L.F), "ifmap": (n_i, macs / n_i), "psum": (n_o, L.C * L.R * L.S)}


def _type_counts(kind: str, n: float, U: float, a, c: float, d: float, stationary: bool, rf_bypass: bool):
    """Accesses per level of one data type (Chen ISCA 2016 formulas), vectorized in ``a``."""
    a = np.asarray(a, dtype=float)
    if stationary:
        if kind == "psum":
            return {"dram": (2 * a - 1) * n, "buffer": 0 * a, "array": 0 * a, "rf": 2 * (U - a) * n}
        return {"dram": a * n, "buffer": a * n, "array": a * n, "rf": (0 * a if rf_bypass else 0 * a + U * n)}
    ab = np.maximum(U / (c * d), a)  # b = U / (a c d), at least 1
    if kind == "psum":
        return {"dram": (2 * a - 1) * n, "buffer": 2 * (ab - a) * n, "array": ab * (c - 1) * n,
                "rf": 0 * a if rf_bypass else 2 * ab * c * (d - 1) * n}
    return {"dram": a * n, "buffer": ab * n, "array": ab * c * n,
            "rf": 0 * a if rf_bypass else ab * c * d * n}


def _pow2_upto(x: int) -> list[int]:
    out, v = [], 1
    while v <= x:
        out.append(v)
        v *= 2
    if x >= 1 and out[-1] != x:
        out.append(x)
    return out


def _inner_candidates(df: str, L: ConvShape, hw: PEArray) -> Iterable[dict]:
    """Spatial mappings / RF tilings of one dataflow on one group-shaped layer."""
    P, rows, cols = hw.n_pe, hw.rows, hw.cols
    rf_words = int(hw.rf_bytes * 8 // hw.word_bits)
    R, S, U = L.R, L.S, L.stride
    if df == "RS":
        h = min(R, rows)
        e_opts = sorted({min(L.E, cols), math.ceil(L.E / math.ceil(L.E / cols))})
        for e_sp in e_opts:
            for r in _pow2_upto(min(rows // h, L.C)):
                for t in _pow2_upto(min(cols // e_sp, L.M)):
                    diag = h * e_sp / ((e_sp - 1) * U + h) if L.E > 1 else 1.0
                    for p in _pow2_upto(max(L.M // t, 1)):
                        for q in _pow2_upto(max(L.C // r, 1)):
                            for n in _pow2_upto(L.N):
                                if p * q * S + n * q * S + n * p > rf_words:
                                    continue
                                yield dict(
                                    c=dict(weight=e_sp, ifmap=t * diag, psum=h * r),
                                    d=dict(weight=n * L.F, ifmap=p * S * L.F / L.Wp, psum=q * S),
                                    stationary=dict(weight=False, ifmap=False, psum=False),
                                    bypass=dict(weight=False, ifmap=False, psum=False),
                                    active=h * r * e_sp * t,
                                    mins=(n, p * t, q * r, e_sp),
                                    desc=dict(h=h, e_sp=e_sp, r=r, t=t, p=p, q=q, n=n),
                                )
    elif df in ("WS", "NLR"):
        if df == "WS" and rf_words < 1:
            return
        K = L.C * R * S
        for k in _pow2_upto(min(K, P)):
            m = min(L.M, P // k)
            yield dict(
                c=dict(weight=1, ifmap=m, psum=k),
                d=dict(weight=1, ifmap=1, psum=1),
                stationary=dict(weight=df == "WS", ifmap=False, psum=False),
                bypass=dict(weight=df == "NLR", ifmap=True, psum=True),
                active=k * m,
                mins=(1, m, math.ceil(k / (R * S)), 1),
                desc=dict(k_sp=k, m_sp=m),
            )
    elif df == "OS":
        if rf_words < 1:
            return
        for ph in _pow2_upto(min(L.E, P)):
            for pw in _pow2_upto(min(L.F, P // ph)):
                m = min(L.M, P // (ph * pw))
                ov = ph * pw * R * S / (((ph - 1) * U + R) * ((pw - 1) * U + S))
                yield dict(
                    c=dict(weight=ph * pw, ifmap=m * ov, psum=1),
                    d=dict(weight=1, ifmap=1, psum=1),
                    stationary=dict(weight=False, ifmap=False, psum=True),
                    bypass=dict(weight=True, ifmap=True, psum=False),
                    active=ph * pw * m,
                    mins=(1, m, 1, ph),
                    desc=dict(ph=ph, pw=pw, m_sp=m),
                )


_DIMS = ("N", "M", "C", "E")
_REL = {"weight": {1, 2}, "ifmap": {0, 2, 3}, "psum": {0, 1, 3}}
_ORDERS = list(itertools.permutations(range(4)))


def _dram_tilings(L: ConvShape, buffer_words: float, max_tiles: int | None = None):
    """All buffer tilings that fit, with DRAM fetch multipliers ``a`` per data type and order.

    Returns a dict of flat arrays: tile sizes ``nb, mb, cb, eb``, and ``a_weight``,
    ``a_ifmap``, ``a_psum`` of shape (orders, tilings); ``order`` indices into ``_ORDERS``.
    """
    sizes = (L.N, L.M, L.C, L.E)
    cands = []
    for s in sizes:
        tiles = sorted({math.ceil(s / T) for T in _pow2_upto(s)})
        cands.append(np.array(tiles, dtype=float))
    grids = np.meshgrid(*cands, indexing="ij")
    nb, mb, cb, eb = (g.ravel() for g in grids)
    rows_in = np.minimum((eb - 1) * L.stride + L.R, L.Hp)
    usage = mb * cb * L.R * L.S + nb * cb * rows_in * L.Wp + nb * mb * eb * L.F
    ok = usage <= buffer_words
    if not ok.any():
        raise ValueError(
            f"map_layer: layer {L.name!r} does not fit the buffer ({buffer_words:g} words) even at the "
            f"smallest tiling ({usage.min():g} words needed); increase buffer_bytes")
    nb, mb, cb, eb, rows_in = nb[ok], mb[ok], cb[ok], eb[ok], rows_in[ok]
    T = [np.ceil(L.N / nb), np.ceil(L.M / mb), np.ceil(L.C / cb), np.ceil(L.E / eb)]
    halo = np.maximum(T[3] * rows_in / L.Hp, 1.0)
    out = {"nb": nb, "mb": mb, "cb": cb, "eb": eb}
    for dt, rel in _REL.items():
        arr = np.ones((len(_ORDERS), nb.size))
        for oi, order in enumerate(_ORDERS):
            pos = {d: i for i, d in enumerate(order)}
            inner = np.full(nb.size, -1)
            for d in rel:
                inner = np.where(T[d] > 1, np.maximum(inner, pos[d]), inner)
            f = np.ones(nb.size)
            for d in set(range(4)) - rel:
                f = f * np.where((T[d] > 1) & (pos[d] < inner), T[d], 1.0)
            arr[oi] = f
        if dt == "ifmap":
            arr = arr * halo
        out[f"a_{dt}"] = arr
    return out


def _evaluate(L: ConvShape, cand: dict, tilings: dict, e: AccessEnergies):
    """Energy of one inner candidate over all tilings/orders; returns (best energy, index)."""
    uses = _uses(L)
    nmin, mmin, cmin, emin = cand["mins"]
    mask = ((tilings["nb"] >= nmin) & (tilings["mb"] >= min(mmin, L.M))
            & (tilings["cb"] >= min(cmin, L.C)) & (tilings["eb"] >= min(emin, L.E)))
    if not mask.any():
        return math.inf, None
    ed = e.as_dict()
    total = 0.0
    for dt in DATATYPES:
        n, U = uses[dt]
        cnt = _type_counts(dt, n, U, tilings[f"a_{dt}"][:, mask], cand["c"][dt], cand["d"][dt],
                           cand["stationary"][dt], cand["bypass"][dt])
        total = total + sum(cnt[lv] * ed[lv] for lv in ("dram", "buffer", "array", "rf"))
    flat = int(np.argmin(total))
    oi, ti = np.unravel_index(flat, total.shape)
    idx = np.flatnonzero(mask)[ti]
    return float(total[oi, ti]), (int(oi), int(idx))


def count_accesses(layer: ConvShape, dataflow: str, hw: PEArray, desc: dict | None = None,
                   *, a: dict[str, float] | None = None,
                   energies: AccessEnergies | None = None) -> LayerMapping:
    """Access counts of ``layer`` under ``dataflow`` for one explicit mapping (no search).

    Args:
        layer: the layer (grouped layers are mapped per group and the counts multiplied).
        dataflow: one of ``DATAFLOWS``.
        hw: the PE array.
        desc: the spatial / RF mapping parameters, as in ``LayerMapping.params["desc"]``
            (RS: h, e_sp, r, t, p, q, n; WS/NLR: k_sp, m_sp; OS: ph, pw, m_sp). ``None``
            picks the first candidate the mapper would try.
        a: DRAM fetch multipliers per data type (default 1 = each element fetched once,
            i.e. the layer's working set is reused fully on chip).
        energies: per-access energies (default: the card's normalized ones).

    Raises:
        ValueError: unknown dataflow, or ``desc`` not a valid mapping on ``hw``.
    """
    _check_dataflow(dataflow)
    e = energies or hw.normalized_energies()
    G = layer.group_shape()
    cands = list(_inner_candidates(dataflow, G, hw))
    if not cands:
        raise ValueError(f"count_accesses: no {dataflow} mapping of {layer.name!r} fits hw "
                         f"(rf_bytes = {hw.rf_bytes})")
    if desc is None:
        cand = cands[0]
    else:
        match = [c for c in cands if c["desc"] == desc]
        if not match:
            raise ValueError(f"count_accesses: desc = {desc!r} is not a valid {dataflow} mapping of "
                             f"{layer.name!r} on this hw; e.g. {cands[0]['desc']!r}")
        cand = match[0]
    a = {dt: 1.0 for dt in DATATYPES} | dict(a or {})
    return _build(layer, G, dataflow, cand, a, e, hw, extra={})


def _build(layer, G, df, cand, a, e, hw, extra) -> LayerMapping:
    uses = _uses(G)
    counts: dict[tuple[str, str], float] = {}
    reuse = {}
    for dt in DATATYPES:
        n, U = uses[dt]
        cnt = _type_counts(dt, n, U, a[dt], cand["c"][dt], cand["d"][dt], cand["stationary"][dt],
                           cand["bypass"][dt])
        for lv, v in cnt.items():
            counts[(lv, dt)] = float(v) * layer.groups
        c, d = cand["c"][dt], cand["d"][dt]
        if cand["stationary"][dt]:
            reuse[dt] = dict(a=a[dt], b=1.0, c=1.0, d=U / a[dt])
        else:
            b = max(U / (a[dt] * c * d), 1.0)
            reuse[dt] = dict(a=a[dt], b=b, c=c, d=d)
    counts[("alu", "mac")] = float(layer.macs)
    params = dict(desc=cand["desc"], reuse=reuse, **extra)
    return LayerMapping(layer, df, counts, e, params, int(cand["active"]), hw)


def map_layer(layer: ConvShape, dataflow: str, hw: PEArray, *,
              energies: AccessEnergies | None = None, equal_area: bool = False) -> LayerMapping:
    """The cheapest mapping of ``layer`` under ``dataflow`` on ``hw``.

    Searches every spatial mapping / RF tiling of the dataflow (replication and folding of
    the logical PE set onto the fixed array) and every buffer tiling and loop order at the
    DRAM level, minimizing energy with ``energies`` (default: normalized card energies).

    Args:
        equal_area: re-split RF and buffer for the dataflow at equal storage area
            (:meth:`PEArray.equal_area`) before mapping.

    Raises:
        ValueError: unknown ``dataflow``; the layer does not fit the buffer; no mapping of
            the dataflow fits the RF.
    """
    _check_dataflow(dataflow)
    if equal_area:
        hw = hw.equal_area(dataflow)
    e = energies or hw.normalized_energies()
    G = layer.group_shape()
    tilings = _dram_tilings(G, hw.buffer_bytes / hw.word_bytes)
    best, best_key = math.inf, None
    for cand in _inner_candidates(dataflow, G, hw):
        en, key = _evaluate(G, cand, tilings, e)
        # tie-break on utilization (fewer cycles)
        if key is not None and (en < best * (1 - 1e-12) or (en <= best * (1 + 1e-12) and best_key
                                and cand["active"] > best_key[0]["active"])):
            best, best_key = en, (cand, key)
    if best_key is None:
        raise ValueError(f"map_layer: no {dataflow} mapping of {layer.name!r} fits hw "
                         f"(rf_bytes = {hw.rf_bytes}, buffer_bytes = {hw.buffer_bytes})")
    cand, (oi, ti) = best_key
    a = {dt: float(tilings[f"a_{dt}"][oi, ti]) for dt in DATATYPES}
    extra = dict(buffer_tile=dict(N=int(tilings["nb"][ti]), M=int(tilings["mb"][ti]),
                                  C=int(tilings["cb"][ti]), E=int(tilings["eb"][ti])),
                 loop_order=[_DIMS[d] for d in _ORDERS[oi]])
    return _build(layer, G, dataflow, cand, a, e, hw, extra)


def map_network(layers: Sequence[ConvShape], hw: PEArray, dataflow: str = "best", *,
                energies: AccessEnergies | None = None, equal_area: bool = False) -> list[LayerMapping]:
    """Map every layer; ``dataflow="best"`` picks the cheapest dataflow per layer.

    Raises:
        ValueError: ``dataflow`` not one of ``DATAFLOWS`` or "best".
    """
    if dataflow != "best":
        _check_dataflow(dataflow)
        return [map_layer(L, dataflow, hw, energies=energies, equal_area=equal_area) for L in layers]
    out = []
    for L in layers:
        ms = [map_layer(L, df, hw, energies=energies, equal_area=equal_area) for df in DATAFLOWS]
        out.append(min(ms, key=lambda m: m.energy))
    return out


def naive_accesses(layers: Iterable[ConvShape]) -> float:
    """Memory accesses with no reuse at all: 3 reads (weight, ifmap, psum) and 1 write
    (psum) per MAC (survey §V-B: AlexNet's 724M MACs -> nearly 3000M DRAM accesses)."""
    return float(sum(4 * L.macs for L in layers))


def best_case_accesses(layers: Iterable[ConvShape]) -> float:
    """Accesses with full on-chip reuse: each weight, ifmap and ofmap element moved once."""
    return float(sum(L.n_weights + L.n_ifmap + L.n_ofmap for L in layers))
