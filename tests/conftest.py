"""Shared configuration and helpers of the test suite.

* XLA CPU backend optimization off (compilation dominates; see below).
* float64 everywhere (tests compare against float64 references) and
  ``jax_numpy_rank_promotion="raise"`` (DESIGN.md: the library must not rely on implicit rank
  promotion).
* Closed forms used by several statistical tests (clipped and folded normal moments, the
  standard error of a sample standard deviation).
* Fixtures: the two shipped resistive cells, sklearn's 8x8 digits (float64), and an autouse
  fixture that re-asserts x64 and strict rank promotion before every test.
"""

from __future__ import annotations

import math
import os

# XLA's CPU backend spends most of a small test's time optimizing LLVM code; the tests
# compile many small programs and run each briefly, so skip those passes (numerics unchanged:
# fast-math stays off). Must be set before the backend starts, i.e. before any computation.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.stats  # noqa: E402

import nds  # noqa: E402
import nds.datasets  # noqa: E402


# ---------------------------------------------------------------------------- closed forms
def clipped_normal_moments(mu, sigma):
    """Mean and standard deviation of ``max(mu + sigma Z, 0)``, Z standard normal (float64).

    E[X] = mu Φ(a) + sigma φ(a), E[X²] = (mu² + sigma²) Φ(a) + mu sigma φ(a), a = mu / sigma.
    """
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    a = mu / sigma
    cdf, pdf = scipy.stats.norm.cdf(a), scipy.stats.norm.pdf(a)
    m1 = mu * cdf + sigma * pdf
    m2 = (mu**2 + sigma**2) * cdf + mu * sigma * pdf
    return m1, np.sqrt(np.maximum(m2 - m1**2, 0.0))


def folded_normal_moments(mu, sigma):
    """Mean and standard deviation of ``|mu + sigma Z|`` (float64).

    E|X| = sigma sqrt(2/π) exp(−mu²/2sigma²) + mu (1 − 2Φ(−mu/sigma)), E[X²] = mu² + sigma².
    """
    mu, sigma = float(mu), float(sigma)
    m1 = sigma * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * sigma**2)) + mu * (1 - 2 * scipy.stats.norm.cdf(-mu / sigma))
    return m1, math.sqrt(mu**2 + sigma**2 - m1**2)


def std_standard_error(samples) -> float:
    """Standard error of the sample standard deviation of ``samples`` (flattened):
    SE(s) ≈ s sqrt((κ − 1) / (4 n)) with κ the sample kurtosis (κ = 3 for a normal, giving the
    familiar s / sqrt(2n)); delta method on the variance estimate."""
    x = np.asarray(samples, np.float64).ravel()
    n = x.size
    d = x - x.mean()
    s2 = np.mean(d**2)
    kappa = np.mean(d**4) / s2**2
    return float(np.sqrt(s2) * math.sqrt((kappa - 1) / (4 * n)))


def mean_standard_error(samples) -> float:
    x = np.asarray(samples, np.float64).ravel()
    return float(x.std(ddof=1) / math.sqrt(x.size))


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _float64_and_strict_ranks():
    """Re-assert the global configuration before every test: a test elsewhere that switches
    x64 off (e.g. to check float32) must not turn later float64 comparisons into float32 ones."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    yield


@pytest.fixture(scope="session")
def pcm():
    return nds.load_card("pcm_joshi2020", nds.cells.PCM)


@pytest.fixture(scope="session")
def rram():
    return nds.load_card("rram_generic", nds.cells.RRAM)


@pytest.fixture(scope="session")
def digits():
    """sklearn 8x8 digits, 600 train / 300 test, float64 (fixed shuffle)."""
    ds = nds.datasets.load_dataset("digits", n_train=600, n_test=300, seed=0)
    return (jnp.asarray(ds.x_train, jnp.float64), jnp.asarray(ds.y_train),
            jnp.asarray(ds.x_test, jnp.float64), jnp.asarray(ds.y_test))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
