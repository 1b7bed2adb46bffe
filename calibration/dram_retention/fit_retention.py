"""Fit the log-normal tail (mu_ln, sigma_ln) of devices/dram_retention_raidr.toml to the
published points in raidr_points.csv and compare with the card. Run from the repository root:
``python calibration/dram_retention/fit_retention.py``."""

import csv
import math
import pathlib

from scipy.stats import norm

import nds
from nds.memory import DRAMRetention

here = pathlib.Path(__file__).parent
rows = [r for r in csv.DictReader(l for l in open(here / "raidr_points.csv") if not l.startswith("#"))]
(t1, f1), (t2, f2) = [(float(r["retention_s"]), int(r["cells_below"]) / int(r["total_bits"])) for r in rows]
z1, z2 = norm.ppf(f1), norm.ppf(f2)
sigma = (math.log(t2) - math.log(t1)) / (z2 - z1)
mu = math.log(t1) - z1 * sigma
card = nds.load_card("dram_retention_raidr", DRAMRetention)
print(f"fit:  mu_ln = {mu:.4f}, sigma_ln = {sigma:.5f}")
print(f"card: mu_ln = {card.mu_ln:.4f}, sigma_ln = {card.sigma_ln:.5f}")
for t, f in ((t1, f1), (t2, f2)):
    print(f"t = {t} s: published F = {f:.3e}, card F = {float(card.retention_cdf(t, 358.15)):.3e}")
assert abs(mu - card.mu_ln) < 1e-3 and abs(sigma - card.sigma_ln) < 1e-4
