"""Fit NeuroSim's exponential update (nds.cells.ExpStep) to aihwkit's PCM preset.

Source of the target curve (secondary): IBM aihwkit, ``PCMPresetDevice``
(src/aihwkit/simulator/presets/devices.py), a fit of the exponential-step device model to the
Ge2Sb2Te5 PCM of Nandakumar et al., Front. Neurosci. 14, 406 (2020). Its mean potentiation
step in weight units ``w ∈ [0, 2]`` is

    Δw(w) = dw_min (1 − A_up exp(γ_up z)),  z = a · 2w/(w_max − w_min) + b,

with ``dw_min = 0.01``, ``A_up = −27.235``, ``γ_up = 2.5``, ``a = −1``, ``b = 0``. Iterating
it from ``w = 0`` until ``w_max = 2`` gives the mean conductance after each SET pulse (the
curve this script writes to ``preset_curve.csv``); nds takes ``n_up`` = the preset's pulse count to ``w_max``
(72) and fits ``nl_up`` (NeuroSim's non-linearity factor) by least squares on the normalized
curve. The NeuroSim form (step linear in the state) cannot follow the preset's very large
first SET steps from the fully reset state (14% of the range on pulse 1): the fit's largest
error is at pulse 1; the script prints the maximum and rms errors. Run from the repository root::

    python calibration/update_pcm_nandakumar2020/fit.py

and copy the printed values into devices/update_pcm_nandakumar2020.toml.
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy.optimize import minimize_scalar

DW_MIN, A_UP, GAMMA_UP, A, B, W_MAX = 0.01, -27.235, 2.5, -1.0, 0.0, 2.0


def preset_curve() -> np.ndarray:
    """Mean weight after 0, 1, 2, ... SET pulses from w = 0, until w_max (inclusive)."""
    w = [0.0]
    while w[-1] < W_MAX:
        z = A * 2 * w[-1] / W_MAX + B
        w.append(min(w[-1] + DW_MIN * (1 - A_UP * np.exp(GAMMA_UP * z)), W_MAX))
    return np.asarray(w)


def model_curve(n: float, nl: float, pulses: np.ndarray) -> np.ndarray:
    """NeuroSim's normalized curve after ``pulses`` SET pulses from g_min, clipped at 1."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from nds.cells._update import neurosim_a

    a = float(neurosim_a(nl)) * n
    return np.minimum((1 - np.exp(-pulses / a)) / (1 - np.exp(-n / a)), 1.0)


def fit(curve: np.ndarray) -> tuple[float, float, float, float]:
    """``(n_up, nl_up, max_err, rms_err)``: ``n_up`` is the preset's pulse count to ``w_max``
    (the curve's number of states); ``nl_up`` minimizes the squared error of the normalized
    curve; errors are fractions of the range."""
    y = curve / W_MAX
    p = np.arange(len(y), dtype=float)
    n = float(len(y) - 1)
    r = minimize_scalar(lambda nl: np.sum((model_curve(n, nl, p) - y) ** 2), bounds=(0.01, 9.9), method="bounded")
    err = model_curve(n, r.x, p) - y
    return n, float(r.x), float(np.abs(err).max()), float(np.sqrt(np.mean(err**2)))


if __name__ == "__main__":
    c = preset_curve()
    here = pathlib.Path(__file__).parent
    np.savetxt(here / "preset_curve.csv", np.c_[np.arange(len(c)), c / W_MAX], delimiter=",",
               header="pulse,x  (normalized conductance after each SET pulse; generated from aihwkit "
                      "PCMPresetDevice parameters, Nandakumar et al. Front. Neurosci. 2020; secondary)",
               fmt=("%d", "%.8f"))
    n, nl, emax, erms = fit(c)
    print(f"n_up = {n:g} (preset pulses to w_max), fitted nl_up = {nl:.4f}; error max {emax:.4f}, "
          f"rms {erms:.4f} (fraction of the range)")
