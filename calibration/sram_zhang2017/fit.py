"""Fit the Zhang 2017 SRAM card to its published points and check it.

Two free card parameters, each fixed by one published number (all else is assumed, see the
card's notes):

* ``v_wl_max``: the nominal single-cell bit-line swing at WLDAC code 31 equals the
  full-scale swing of Fig. 36a (``transfer_fig36a.csv``, about 0.06 V, approximate);
* ``e_wldac``: the energy of one ten-way decision of the reference classifier
  (``energy_per_decision.csv``: 630 pJ, 128 rows x 128 columns) equals the published one.

Run ``python calibration/sram_zhang2017/fit.py`` to print the fitted values next to the
card's; :func:`check` returns (model, published) pairs used by ``tests/test_sram.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

import jax
import jax.numpy as jnp

HERE = pathlib.Path(__file__).resolve().parent
CARD = "sram_6t_130nm_zhang2017"


def _rows(name):
    with open(HERE / name) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _column(**over):
    from nds import load_card
    from nds.arrays._sram_column import SRAMColumn
    return load_card(CARD, SRAMColumn, **over)


def single_cell_swing(col, code: float) -> float:
    """Nominal (no mismatch) bit-line swing (V) of one cell at a WLDAC code."""
    col = dataclasses.replace(col, mismatch=False)
    return float(col.differential(jnp.array([float(code)]), jnp.ones((1, 1)))[0])


def decision_energy(col, rows: int, cols: int) -> float:
    from nds.tiles._sram import SRAMTile
    tile = SRAMTile(column=col, rows=128, cols=128, readout="comparator", signed_inputs=False)
    return tile.cost((cols, rows), 1).energy_total_j


def fit():
    col = _column()
    target = float([r for r in _rows("transfer_fig36a.csv") if int(r["code"]) == 31][0]["dv_bl_v"])
    lo, hi = col.vt + 1e-3, col.vdd
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if single_cell_swing(dataclasses.replace(col, v_wl_max=mid), 31) < target:
            lo = mid
        else:
            hi = mid
    v_wl_max = 0.5 * (lo + hi)
    e = _rows("energy_per_decision.csv")[0]
    e_target = float(e["value"]) * 1e-12
    rows, cols = int(e["rows"]), int(e["cols"])
    e0 = decision_energy(dataclasses.replace(col, e_wldac=0.0), rows, cols)
    e_wldac = (e_target - e0) / rows
    return {"v_wl_max": v_wl_max, "e_wldac": e_wldac}


def check():
    """(model, published) pairs for the card as shipped."""
    col = _column()
    tr = [r for r in _rows("transfer_fig36a.csv") if int(r["code"]) == 31][0]
    e = _rows("energy_per_decision.csv")[0]
    return {
        "swing_code31_v": (single_cell_swing(col, 31), float(tr["dv_bl_v"])),
        "energy_per_decision_j": (decision_energy(col, int(e["rows"]), int(e["cols"])), float(e["value"]) * 1e-12),
    }


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    col = _column()
    for k, v in fit().items():
        print(f"{k}: fitted {v:.6g} (card {getattr(col, k):.6g})")
    for k, (m, p) in check().items():
        print(f"{k}: model {m:.4g}, published {p:.4g}")
