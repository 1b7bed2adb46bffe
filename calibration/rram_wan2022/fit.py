"""Fit the rram_wan2022 card's programming-noise polynomial to the published points.

Data (``prog_sigma.csv``): programming error σ_G (µS) against target conductance G (µS) of
NeuRRAM's HfOx 1T1R cells 1 s after write-verify programming, Wan et al., Nature 608, 504
(2022), Extended Data Fig. 3, sampled from the cubic fit to that figure published in
Sandia CrossSim (``RRAMWan`` device: σ_G = 1.536e-4 G³ − 1.167e-2 G² + 0.2374 G + 1.053,
G <= 39.26 µS) — secondary: the figure itself was not re-digitized here.

nds's cell model is quadratic in ĝ = G / g_max: σ = c2 ĝ² + c1 ĝ + c0. Least squares over
the points; prints the coefficients (µS) and the worst deviation. Run:
``python calibration/rram_wan2022/fit.py``.
"""

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).parent
G_MAX = 39.26  # µS, the card's g_max (the top of the data range)


def load():
    d = np.loadtxt(HERE / "prog_sigma.csv", delimiter=",", comments="#", skiprows=2)
    return d[:, 0], d[:, 1]


def fit():
    g, s = load()
    c2, c1, c0 = np.polyfit(g / G_MAX, s, 2)
    return c0, c1, c2


if __name__ == "__main__":
    c0, c1, c2 = fit()
    g, s = load()
    gh = g / G_MAX
    err = np.max(np.abs(c2 * gh**2 + c1 * gh + c0 - s))
    print(f"prog_c0 = {c0:.4f} uS, prog_c1 = {c1:.4f} uS, prog_c2 = {c2:.4f} uS; max |error| = {err:.3f} uS")
