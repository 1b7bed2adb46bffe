"""Near-memory PE arrays (Neurocube, TETRIS) against a 2D-DRAM baseline.

A system is ``engines`` identical PE arrays (:class:`~nds.dataflow.PEArray`) sharing one
memory (:mod:`nds.memory`): for a 3D stack one engine sits on the logic die under each vault
(Neurocube, Kim et al. ISCA 2016; TETRIS, Gao et al. ASPLOS 2017) and reaches its vault
through TSVs; for the 2D baseline the engines sit on a separate die beside LPDDR/DDR
channels. A layer is partitioned over the engines either by batch (each engine reads all
weights; only when the batch has at least as many images as engines) or by output channels
(each engine reads all ifmaps); both are mapped by :func:`~nds.dataflow.map_layer` and the
one with less energy is kept (a simple form of TETRIS's hybrid partitioning).

Per layer (roofline, survey §VI-A / TETRIS §3):
``time = max(compute time of one engine, DRAM bytes of all engines / memory bandwidth)``;
energy by category:

* ``compute``: MACs x ``e_alu`` x ``unit_energy``;
* ``onchip_memory``: buffer, array and RF accesses x their energies (PE card);
* ``offchip``: DRAM bits x the memory card's ``energy_per_bit``;
* ``noc``: words that cross the network between engines x mean hops x the PE card's
  ``noc_hop_energy``. Data are stored where they are produced (an engine's ofmaps in its
  own vault); data every engine reads (the weights under batch partitioning, the ifmaps
  under output-channel partitioning) are spread evenly over the engines' memories, so a
  fraction ``(k - 1) / k`` of them is remote, at the mean Manhattan distance between two
  distinct engines of a near-square mesh (:func:`mean_hops`). TETRIS's data layout and
  in-memory accumulation are not modelled; the PE card's ``e_noc_hop`` of a 2D design
  without a NoC is 0;
* ``static``: leakage and clock, ``static_energy_per_cycle x clock x time`` per engine, for
  the whole layer time including memory stalls (nn_dataflow's ``unit_static``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from ..memory._levels import AbstractMemoryLevel
from ._layers import ConvShape
from ._mapper import PEArray, LayerMapping, map_layer, DATAFLOWS

__all__ = ["NearMemorySystem", "LayerRun", "NetworkRun", "run_network", "compare_systems", "mean_hops"]


def mean_hops(engines: int) -> float:
    """Mean Manhattan distance (hops) between two distinct engines on a near-square mesh.

    The mesh is ``r x c`` with ``r`` the largest divisor of ``engines`` not above its square
    root (16 -> 4 x 4: 8/3 hops; 4 -> 2 x 2: 4/3; 1 -> 0).

    Raises:
        ValueError: ``engines`` < 1.
    """
    if not isinstance(engines, int) or engines < 1:
        raise ValueError(f"mean_hops: engines = {engines!r}; must be an integer >= 1")
    if engines == 1:
        return 0.0
    r = max(d for d in range(1, int(math.isqrt(engines)) + 1) if engines % d == 0)
    c = engines // r
    ys, xs = np.divmod(np.arange(engines), c)
    d = np.abs(ys[:, None] - ys[None, :]) + np.abs(xs[:, None] - xs[None, :])
    return float(d.sum() / (engines * (engines - 1)))


@dataclasses.dataclass(frozen=True)
class NearMemorySystem:
    """``engines`` PE arrays ``pe`` sharing ``memory``.

    Raises:
        ValueError: ``engines`` < 1, naming the argument.
    """

    name: str
    pe: PEArray
    memory: AbstractMemoryLevel
    engines: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.engines, int) or self.engines < 1:
            raise ValueError(f"NearMemorySystem: engines = {self.engines!r}; must be an integer >= 1")

    @property
    def n_pe(self) -> int:
        """PEs of all engines, ``engines * pe.n_pe``."""
        return self.engines * self.pe.n_pe

    @property
    def peak_macs_per_s(self) -> float:
        """Peak throughput, MAC/s = ``n_pe * pe.clock`` (one MAC per PE per cycle)."""
        return self.n_pe * self.pe.clock


@dataclasses.dataclass(frozen=True)
class LayerRun:
    """One layer on a system (whole batch): the mapping of one engine's part, the time (s),
    the energy (J) by category ("compute", "onchip_memory", "offchip", "noc", "static"; see
    the module docstring), DRAM bytes and words moved between engines (``noc_words``)."""

    layer: ConvShape
    mapping: LayerMapping
    partition: str
    time_s: float
    compute_time_s: float
    memory_time_s: float
    energy_j: dict[str, float]
    dram_bytes: float
    noc_words: float = 0.0

    @property
    def energy_total_j(self) -> float:
        """Sum of ``energy_j`` over categories, J (whole batch)."""
        return float(sum(self.energy_j.values()))


@dataclasses.dataclass(frozen=True)
class NetworkRun:
    """A network on a system (:func:`run_network`): the system and one :class:`LayerRun`
    per layer, in order (whole batch)."""

    system: NearMemorySystem
    layers: list[LayerRun]

    @property
    def time_s(self) -> float:
        """Total time of the layers run one after another, s (whole batch)."""
        return float(sum(l.time_s for l in self.layers))

    @property
    def energy_j(self) -> float:
        """Total energy over layers and categories, J (whole batch)."""
        return float(sum(l.energy_total_j for l in self.layers))

    @property
    def dram_bytes(self) -> float:
        """Bytes moved to or from DRAM by all engines over all layers, B (whole batch)."""
        return float(sum(l.dram_bytes for l in self.layers))

    def energy_by_category(self) -> dict[str, float]:
        """Energy (J) of the whole network by category (module docstring)."""
        out: dict[str, float] = {}
        for l in self.layers:
            for k, v in l.energy_j.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def throughput(self, batch: int) -> float:
        """Images per second at the batch the layers were built with."""
        return batch / self.time_s


def _parts(layer: ConvShape, engines: int) -> list[tuple[ConvShape, str]]:
    if engines == 1:
        return [(layer, "none")]
    out = []
    if layer.N >= engines:
        out.append((dataclasses.replace(layer, N=math.ceil(layer.N / engines)), "batch"))
    g = layer.groups
    m = max(g, math.ceil(layer.M / engines / g) * g)
    out.append((dataclasses.replace(layer, M=m), "output_channels"))
    return out


def run_network(layers: Sequence[ConvShape], system: NearMemorySystem, dataflow: str = "RS") -> NetworkRun:
    """Map and cost every layer on ``system`` (cost model in the module docstring).

    Args:
        layers: the layers of one batch (:func:`~nds.dataflow.alexnet`, ``vgg16``, ...).
        system: the engines and their memory.
        dataflow: one of ``DATAFLOWS`` ("WS", "OS", "NLR", "RS"), used by every engine.

    Returns:
        :class:`NetworkRun`: per layer the chosen partition and mapping, time (s), energy by
        category (J) and DRAM bytes, all for the whole batch.

    Raises:
        ValueError: unknown ``dataflow``; a layer that fits no mapping on the PE array
            (from :func:`~nds.dataflow.map_layer`).
    """
    if dataflow not in DATAFLOWS:
        raise ValueError(f"run_network: dataflow = {dataflow!r}; allowed: {DATAFLOWS}")
    pe, mem, k = system.pe, system.memory, system.engines
    e_abs = pe.absolute_energies(dram_energy_per_bit=float(mem.energy_per_bit))
    hops = mean_hops(k)
    remote = (k - 1) / k
    shared_type = {"none": None, "batch": "weight", "output_channels": "ifmap"}
    runs = []
    for L in layers:
        cands = []
        for part, how in _parts(L, k):
            m = map_layer(part, dataflow, pe, energies=e_abs)
            dt = shared_type[how]
            noc_words = 0.0 if dt is None else k * m.counts[("dram", dt)] * remote * hops
            cands.append((m.energy + noc_words * pe.noc_hop_energy, m, how, noc_words))
        _, m, how, noc_words = min(cands, key=lambda c: c[0])
        by = m.energy_by_level()
        dram_bytes = k * m.dram_bytes
        t_c = m.compute_time_s
        t_m = mem.stream_time(dram_bytes)
        t = max(t_c, t_m)
        energy = {"compute": k * by["alu"], "onchip_memory": k * (by["buffer"] + by["array"] + by["rf"]),
                  "offchip": k * by["dram"], "noc": noc_words * pe.noc_hop_energy,
                  "static": k * pe.static_power * t}
        runs.append(LayerRun(L, m, how, t, t_c, t_m, energy, dram_bytes, noc_words))
    return NetworkRun(system, runs)


def compare_systems(layers: Sequence[ConvShape], baseline: NearMemorySystem, other: NearMemorySystem,
                    dataflow: str = "RS") -> dict[str, float]:
    """Throughput and energy ratios ``other`` vs ``baseline`` (>1 = ``other`` better), with
    both systems' times (s), energies (J) and energies by category."""
    b = run_network(layers, baseline, dataflow)
    o = run_network(layers, other, dataflow)
    return {"throughput_ratio": b.time_s / o.time_s, "energy_ratio": b.energy_j / o.energy_j,
            "baseline_time_s": b.time_s, "other_time_s": o.time_s,
            "baseline_energy_j": b.energy_j, "other_energy_j": o.energy_j,
            "baseline_energy_by_category_j": b.energy_by_category(),
            "other_energy_by_category_j": o.energy_by_category()}
