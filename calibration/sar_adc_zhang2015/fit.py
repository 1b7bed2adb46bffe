"""Fit the comparator noise of ``devices/sar_adc_zhang2015.toml`` to the published 0.018
normalized RMS multiplication error of the matrix-multiplying ADC (bisection; all other card
values assumed). ``check()`` returns (model, published) for tests/test_sar.py."""

from __future__ import annotations

import csv
import dataclasses
import pathlib

import jax
import jax.numpy as jnp

HERE = pathlib.Path(__file__).resolve().parent
N_CHIPS, N_SAMPLES = 20, 4000


def published() -> float:
    with open(HERE / "rms_error.csv") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return float(rows[0]["value"])


def model_error(adc) -> float:
    from nds.converters._sar import MatrixMultiplyingADC
    m = MatrixMultiplyingADC(adc=adc, w_bits=5)

    def one(k):
        k1, k2 = jax.random.split(k)
        return m.normalized_rms_error(adc.program(key=k1), key=k2, n=N_SAMPLES)

    return float(jnp.mean(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), N_CHIPS))))


def card():
    from nds import load_card
    from nds.converters._sar import SARADC
    return load_card("sar_adc_zhang2015", SARADC)


def fit() -> dict[str, float]:
    adc = card()
    target = published()
    lo, hi = 0.0, 0.05
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if model_error(dataclasses.replace(adc, sigma_noise=mid)) < target:
            lo = mid
        else:
            hi = mid
    return {"sigma_noise": 0.5 * (lo + hi)}


def check():
    return {"normalized_rms_error": (model_error(card()), published())}


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    a = card()
    for k, v in fit().items():
        print(f"{k}: fitted {v:.6g} (card {getattr(a, k):.6g})")
    for k, (m, p) in check().items():
        print(f"{k}: model {m:.4g}, published {p:.4g}")
