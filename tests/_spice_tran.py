"""Run an ngspice transient simulation in batch mode and read node voltages at given times.

Small helper for the SRAM and switched-capacitor tests (Debian package ``ngspice``): the
netlist is written to a temporary directory, ``ngspice -b`` runs it with a ``.control``
block that ``wrdata``s the requested vectors, and the table is parsed back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

NGSPICE = shutil.which("ngspice")


def run_tran(netlist: str, *, step: float, stop: float, vectors: list[str],
             options: str = "reltol=1e-6 abstol=1e-15 vntol=1e-9") -> dict[str, np.ndarray]:
    """Transient analysis from 0 to ``stop`` (s) with max step ``step``.

    Returns ``{"time": t, vec: values, ...}`` (arrays). Raises RuntimeError if ngspice is
    missing or fails (its output is in the message).
    """
    if NGSPICE is None:
        raise RuntimeError("ngspice not found on PATH (Debian package `ngspice`)")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.txt")
        deck = "\n".join([
            "* nds transient test", netlist.strip(), f".options {options}",
            ".control", f"tran {step!r} {stop!r} 0 {step!r} uic", f"wrdata {out} " + " ".join(vectors),
            "quit", ".endc", ".end", ""])
        path = os.path.join(d, "deck.cir")
        with open(path, "w") as f:
            f.write(deck)
        p = subprocess.run([NGSPICE, "-n", "-b", path], capture_output=True, text=True, timeout=60, cwd=d)
        if p.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"ngspice failed (rc={p.returncode}):\n{p.stdout}\n{p.stderr}")
        data = np.loadtxt(out)
    data = np.atleast_2d(data)
    res = {"time": data[:, 0]}
    for i, v in enumerate(vectors):
        res[v] = data[:, 2 * i + 1]
    return res


def value_at(res: dict[str, np.ndarray], vec: str, t: float) -> float:
    """Linear interpolation of a vector at time ``t``."""
    return float(np.interp(t, res["time"], res[vec]))
