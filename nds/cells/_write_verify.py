"""Write-verify programming: program-and-verify pulses until the conductance is within a
tolerance of its target, or a pulse limit is reached.

Model (per device, all devices in parallel). The first pulse lands at
``g_1 = clip(g_target + σ_1 ξ_0, g_min, g_max)``. After every pulse the device is read
(verify); if ``|g_k − g_target| < tol`` programming stops, otherwise another pulse moves
it part of the way back to the target with cycle-to-cycle randomness:

    g_{k+1} = clip(g_k + γ (1 + σ_γ ξ_k) (g_target − g_k) + σ_step ξ'_k, g_min, g_max)

(``γ``: mean fraction of the error corrected per pulse; ``σ_γ``: relative spread of the
step; ``σ_step``: additive per-pulse noise, S; ``ξ`` standard normal). This is the
incremental-step programming loop used on RRAM compute-in-memory chips (e.g. NeuRRAM, Wan
et al., Nature 608, 504 (2022), Methods: iterative SET/RESET pulses with verify until the
conductance falls in an acceptance window). With ``σ_γ = σ_step = 0`` the error shrinks
geometrically, ``e_k = (1 − γ)^(k−1) e_1``, so a device starting at ``|e_1| >= tol`` needs
``1 + ceil(ln(tol/|e_1|) / ln(1 − γ))`` pulses (the closed form the tests use).

The loop is a fixed-length ``lax.scan`` over ``max_pulses − 1`` steps with a per-device
"done" mask: no Python loop at run time, jit- and vmap-friendly. Write energy: every pulse
costs ``e_pulse`` and every verify read ``e_verify`` (J), from the card.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._keys import streams
from .._cards import AbstractCardModule
from .._checks import require, require_count

__all__ = ["WriteVerify", "WriteVerifyResult"]


class WriteVerifyResult(NamedTuple):
    """Outcome of :meth:`WriteVerify.program` (shapes as ``g_target``; SI units)."""

    g: Float[Array, "..."]  # final conductance, S
    pulses: Int[Array, "..."]  # program pulses applied (1 .. max_pulses)
    converged: Bool[Array, "..."]  # |g - g_target| < tol at the end
    energy_j: Float[Array, ""]  # total write energy (pulses and verify reads), J
    time_s: Float[Array, ""]  # programming time if devices are written one at a time, s


class WriteVerify(AbstractCardModule):
    """Write-verify programming loop (see the module docstring). Card kind ``"write_verify"``.

    Attributes (SI):
        tol: acceptance half-window (S): stop when ``|g − g_target| < tol``.
        max_pulses: pulse limit (>= 1; static).
        gain: mean fraction ``γ`` of the error corrected by one pulse, in (0, 1].
        gain_c2c: relative cycle-to-cycle spread ``σ_γ`` of that fraction.
        step_noise: additive per-pulse noise ``σ_step`` (S).
        first_sigma: spread ``σ_1`` of the first pulse around the target (S).
        e_pulse: energy of one program pulse (J).
        e_verify: energy of one verify read (J).
        t_pulse: duration of one pulse plus its verify read (s).
    """

    tol: float
    max_pulses: int = eqx.field(static=True)
    gain: float
    gain_c2c: float
    step_noise: float
    first_sigma: float
    e_pulse: float
    e_verify: float
    t_pulse: float

    card_kind: ClassVar[str] = "write_verify"
    card_units: ClassVar[dict[str, str]] = {
        "tol": "S", "max_pulses": "1", "gain": "1", "gain_c2c": "1", "step_noise": "S",
        "first_sigma": "S", "e_pulse": "J", "e_verify": "J", "t_pulse": "s",
    }
    card_ranges: ClassVar[dict] = {
        "tol": (0.0, 1.0), "max_pulses": (1, 100000), "gain": (0.0, 1.0), "gain_c2c": (0.0, 10.0),
        "step_noise": (0.0, 1.0), "first_sigma": (0.0, 1.0), "e_pulse": (0.0, 1e-6),
        "e_verify": (0.0, 1e-6), "t_pulse": (0.0, 1.0),
    }

    def __check_init__(self):
        # concrete values only: gain, tol and the noise scales stay differentiable leaves
        require_count("WriteVerify", "max_pulses", self.max_pulses, 1, 100000)
        require(lambda v: (v > 0) & (v <= 1), "WriteVerify", "gain", self.gain, "must be in (0, 1]")
        require(lambda v: v > 0, "WriteVerify", "tol", self.tol, "must be > 0 S")

    def program(self, g_target: Float[Array, "..."], g_min, g_max, *, key: PRNGKeyArray) -> WriteVerifyResult:
        """Program every device of ``g_target`` (S, any shape) with write-verify.

        ``g_min``/``g_max`` (S) bound the conductance. Returns :class:`WriteVerifyResult`.
        Differentiable w.r.t. ``g_target`` (the final error is a smooth function of it
        through the scan; the pulse count is an integer and has no gradient).
        """
        dt = jnp.result_type(g_target, float)
        g_t = jnp.asarray(g_target, dt)
        k0, kloop = streams(key, "first_pulse", "pulses")
        lo, hi = jnp.asarray(g_min, dt), jnp.asarray(g_max, dt)
        g = jnp.clip(g_t + self.first_sigma * jax.random.normal(k0, g_t.shape, dt), lo, hi)
        n = jnp.ones(g_t.shape, jnp.int32)

        def step(carry, k):
            g, n = carry
            done = jnp.abs(g - g_t) < self.tol
            ka, kb = streams(jax.random.fold_in(kloop, k), "gain", "step_noise")
            frac = self.gain * (1.0 + self.gain_c2c * jax.random.normal(ka, g_t.shape, dt))
            g_new = jnp.clip(g + frac * (g_t - g) + self.step_noise * jax.random.normal(kb, g_t.shape, dt), lo, hi)
            return (jnp.where(done, g, g_new), jnp.where(done, n, n + 1)), None

        (g, n), _ = jax.lax.scan(step, (g, n), jnp.arange(int(self.max_pulses) - 1))
        total = jnp.sum(n).astype(dt)
        return WriteVerifyResult(
            g=g, pulses=n, converged=jnp.abs(g - g_t) < self.tol,
            energy_j=total * (self.e_pulse + self.e_verify), time_s=total * self.t_pulse,
        )

    @staticmethod
    def pulse_histogram(pulses, max_pulses: int) -> np.ndarray:
        """Counts of devices that took 1, 2, ..., ``max_pulses`` pulses: (max_pulses,) ints."""
        p = np.asarray(pulses).ravel()
        return np.bincount(p, minlength=max_pulses + 1)[1:max_pulses + 1]
