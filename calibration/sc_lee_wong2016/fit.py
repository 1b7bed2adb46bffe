"""Fit ``e_switch`` of ``devices/sc_lee_wong2016.toml`` so that the switched-capacitor tile's
TOPS/W at the reference geometry equals the geometric mean of the published 7.7 and 8.7
TOPS/W (closed form: the energy is linear in e_switch). ``check()`` is used by
tests/test_switched_cap.py. Tolerance: 7 % of each published point."""

from __future__ import annotations

import csv
import math
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
SHAPE = (16, 64)  # (out, in)
ROWS = 64


def published() -> list[float]:
    with open(HERE / "efficiency.csv") as f:
        return [float(r["value"]) for r in csv.DictReader(line for line in f if not line.startswith("#"))]


def tile(**over):
    from nds.tiles._switched_cap import SwitchedCapTile
    return SwitchedCapTile.from_card(rows=ROWS, signed_inputs=False, array_overrides=over or None)


def fit() -> dict[str, float]:
    target = math.sqrt(math.prod(published()))  # TOPS/W
    t0 = tile(e_switch=0.0)
    c0 = t0.cost(SHAPE, 1)
    e_target = 2 * c0.macs / (target * 1e12)
    return {"e_switch": (e_target - c0.energy_total_j) / c0.macs}


def check():
    t = tile()
    return {"tops_per_watt": (t.tops_per_watt(SHAPE), published())}


if __name__ == "__main__":
    from nds import load_card
    from nds.arrays._charge_sharing import ChargeSharingArray
    arr = load_card("sc_lee_wong2016", ChargeSharingArray)
    for k, v in fit().items():
        print(f"{k}: fitted {v:.6g} (card {getattr(arr, k):.6g})")
    m, p = check()["tops_per_watt"]
    print(f"TOPS/W: model {m:.3f}, published {p}")
