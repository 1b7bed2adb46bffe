"""Array-size × wire-resistance sweeps: accuracy (Monte Carlo over chips) and the wire share
of the energy, with exact IR drop.

The survey's claim for resistive crossbars — IR drop degrades accuracy and wire energy
dominates in large arrays (e.g. 1k × 1k) — made measurable: for every array size ``n``
(``n × n`` arrays) and wire segment resistance ``r`` (Ω, both word and bit lines) the
digital model is placed on :class:`nds.tiles.CrossbarTile` s with
:class:`nds.arrays.ResistiveWires`, ``num_chips`` chips are programmed and evaluated, and
:func:`nds.cost` gives the energy per inference and its wire part
(``counts["wire_energy_j"]``).

Cost of the exact solve: a layer partitioned on ``n × n`` arrays solves each array's used
corner only (empty rows/columns reduce exactly to a series resistance, see
:meth:`nds.arrays.ResistiveWires.transfer_block`), O(ru · cu³) per array and chip, so a
sweep to ``n = 1024`` costs no more than the largest layer — LeNet-5's 400 × 120 — per chip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._keys import streams
from ._monte_carlo import monte_carlo
from ._program import program
from .arrays._crossbar import ResistiveCrossbar, ResistiveWires
from .cells._resistive import AbstractResistiveCell
from .costs import cost
from .nn._analogize import analogize
from .tiles._crossbar import CrossbarTile
from .train import accuracy

__all__ = ["sweep_array", "plot_sweep"]


def sweep_array(
    model_digital: Any,
    data: tuple[Any, Any],
    *,
    card: AbstractResistiveCell,
    key: jax.Array,
    array_sizes: Sequence[int] = (64, 128, 256, 512, 1024),
    r_wire: Sequence[float] = (0.0, 1.0, 2.5, 5.0),
    num_chips: int = 8,
    input_shape: tuple[int, ...] | None = None,
    fidelity: str = "exact",
    r_in: float = 0.0,
    r_out: float = 0.0,
    tile_kwargs: dict[str, Any] | None = None,
    analogize_kwargs: dict[str, Any] | None = None,
    batch_size: int | None = None,
    eval_batch: int = 250,
    out: str | os.PathLike | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Accuracy and energy of ``model_digital`` on crossbars of every size and wire resistance.

    Args:
        model_digital: a trained Equinox model (converted with :func:`nds.analogize`).
        data: ``(x_test, y_test)``: inputs (N, ...) and integer labels (N,).
        card: the resistive cell (e.g. ``nds.load_card("rram_wan2022", nds.cells.RRAM)``).
        key: chips of every configuration use the same chip keys (common random numbers:
            differences between configurations are not sampling noise of the chips).
        array_sizes: array sizes ``n`` (``n × n``), each >= 1.
        r_wire: wire segment resistances (Ω) for word and bit lines, each >= 0.
        num_chips: Monte Carlo chips per configuration.
        input_shape: one example's shape for the cost (default ``x_test.shape[1:]``).
        fidelity: ``"exact"`` or ``"first_order"`` (see :class:`ResistiveWires`).
        r_in, r_out: driver and sense resistances (Ω).
        tile_kwargs: extra :class:`CrossbarTile` fields (dac, adc, out_noise, ...).
        analogize_kwargs: extra :func:`nds.analogize` arguments (``digital=...``).
        batch_size: chips per compiled call (default all).
        eval_batch: test examples per chunk.
        out: optional JSON path, rewritten after every configuration.
        progress: optional callback ``(row_dict)`` after every configuration.

    Returns:
        One dict per (size, r): ``rows`` (= cols = n), ``r_wire`` (Ω), ``accuracy``
        (:func:`nds.summarize` dict over chips: mean, std, p5, p50, p95, ci),
        ``accuracy_samples`` (list), ``energy_j`` (per inference), ``wire_energy_j``,
        ``wire_energy_share`` (wire / total), ``energy_by_category``, ``latency_s``,
        ``area_m2``.

    Raises:
        ValueError: an array size < 1, a negative resistance, ``num_chips`` < 1.
    """
    if num_chips < 1:
        raise ValueError(f"sweep_array: num_chips = {num_chips}, must be >= 1")
    for n in array_sizes:
        if int(n) < 1:
            raise ValueError(f"sweep_array: array size {n!r} must be >= 1")
    for r in r_wire:
        if not float(r) >= 0:
            raise ValueError(f"sweep_array: r_wire value {r!r} Ω must be >= 0")
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    shape = tuple(input_shape) if input_shape is not None else tuple(x.shape[1:])
    tk = dict(tile_kwargs or {})
    ak = dict(analogize_kwargs or {})
    rows_out: list[dict[str, Any]] = []
    k_chips, k_read = streams(key, "chips", "read")
    needs_key = CrossbarTile(cell=card, **tk).needs_key

    def fn(m, k):  # one function object for every configuration: jit caches per shape
        chip = program(m, key=k)
        return accuracy(chip, x, y, key=k_read if needs_key else None, batch=eval_batch)

    for n in array_sizes:
        for r in r_wire:
            # array leaves (not Python floats): configurations of one size share one compile
            ra = jnp.asarray(float(r))
            wires = ResistiveWires(r_row=ra, r_col=ra, r_in=jnp.asarray(float(r_in)), r_out=jnp.asarray(float(r_out)),
                                   fidelity=fidelity)
            tile = CrossbarTile(cell=card, array=ResistiveCrossbar(rows=int(n), cols=int(n), wires=wires), **tk)
            model = analogize(model_digital, tile, **ak)
            mc = monte_carlo(fn, model, key=k_chips, num_chips=num_chips, batch_size=batch_size)
            rep = cost(model, input_shape=shape)
            tot = rep.total
            e = tot.energy_total_j
            ew = float(tot.counts.get("wire_energy_j", 0.0))
            row = {
                "rows": int(n), "cols": int(n), "r_wire": float(r), "fidelity": fidelity,
                "accuracy": mc.stats, "accuracy_samples": np.asarray(mc.samples).tolist(),
                "energy_j": e, "wire_energy_j": ew, "wire_energy_share": ew / e if e > 0 else 0.0,
                "energy_by_category": dict(tot.energy_j), "latency_s": tot.latency_s, "area_m2": tot.area_m2,
            }
            rows_out.append(row)
            if progress is not None:
                progress(row)
            if out is not None:
                pathlib_out = os.fspath(out)
                tmp = pathlib_out + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(rows_out, f, indent=1)
                os.replace(tmp, pathlib_out)
    return rows_out


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> None:
    """Two panels: mean accuracy in % (error bars: std over chips) and wire-energy share in %
    (linear axis from 0) against array size, one line per wire resistance. Writes ``path``
    (PNG/PDF by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = sorted({r["r_wire"] for r in rows})
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for rv in rs:
        sel = sorted((r for r in rows if r["r_wire"] == rv), key=lambda r: r["rows"])
        n = [r["rows"] for r in sel]
        ax[0].errorbar(n, [100 * r["accuracy"]["mean"] for r in sel], yerr=[100 * r["accuracy"]["std"] for r in sel],
                       marker="o", capsize=3, label=f"r = {rv:g} Ω")
        ax[1].plot(n, [100 * r["wire_energy_share"] for r in sel], marker="o", label=f"r = {rv:g} Ω")
    for a in ax:
        a.set_xscale("log", base=2)
        a.set_xlabel("array size n (n × n)")
        a.legend()
        a.grid(alpha=0.3)
    ax[0].set_ylabel("test accuracy (%)")
    ax[0].set_title("accuracy over chips (± std)", fontsize=9)
    ax[1].set_ylabel("wire share of the energy (%)")
    ax[1].set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
