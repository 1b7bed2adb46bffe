"""Stuck-at faults of resistive cells and on/off-ratio limits, sampled per chip.

A manufactured array has a fraction of cells that no longer switch: stuck at a low
conductance (``SA0``: a broken filament or an open; ``g_min``, or 0 S for an open cell) or
at a high conductance (``SA1``: a formed filament that cannot be reset; ``g_max``). Rates of
order 1e-3 to a few 1e-2 are reported for RRAM arrays (e.g. Chen et al., DATE 2015, "RRAM
defect modeling and failure analysis based on march test": ~1.75 % SA0, ~9 % SA1 in a 4 Mb
HfOx array (unverified; secondary)); MemTorch and NeuroSim expose the same two rates.

Each cell draws ``u ~ U(0, 1)`` once per chip (program time): ``u < p_sa0`` → stuck low,
``p_sa0 <= u < p_sa0 + p_sa1`` → stuck high, otherwise healthy. A stuck cell's conductance
ignores its target (no gradient flows to it: that is the physics, not an estimator) and it
does not drift.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import concrete, is_zero, require

__all__ = ["FaultModel", "STUCK_LOW", "STUCK_HIGH", "HEALTHY"]

HEALTHY, STUCK_LOW, STUCK_HIGH = 0, 1, 2


class FaultModel(eqx.Module):
    """Stuck-at-low / stuck-at-high cells at given rates, sampled once per chip.

    Attributes:
        p_sa0: probability that a cell is stuck at low conductance, in [0, 1].
        p_sa1: probability that a cell is stuck at high conductance (``g_max``), in [0, 1];
            ``p_sa0 + p_sa1 <= 1``.
        sa0_value: ``"g_min"`` (stuck at the low-conductance, high-resistance end of the window, default)
            or ``"zero"`` (an open cell, 0 S).

    Raises:
        ValueError: a rate outside [0, 1], their sum above 1, or an unknown ``sa0_value``.
    """

    p_sa0: float = 0.0
    p_sa1: float = 0.0
    sa0_value: str = eqx.field(static=True, default="g_min")

    def __check_init__(self):
        # concrete rates only: the rates stay differentiable leaves (nds._checks)
        for name in ("p_sa0", "p_sa1"):
            require(lambda v: (v >= 0) & (v <= 1), "FaultModel", name, getattr(self, name),
                    "must be a probability in [0, 1]")
        total = concrete(self.p_sa0), concrete(self.p_sa1)
        if total[0] is not None and total[1] is not None and np.any(total[0] + total[1] > 1.0):
            raise ValueError(f"FaultModel: p_sa0 + p_sa1 = {float(np.max(total[0] + total[1]))!r} must be <= 1")
        if self.sa0_value not in ("g_min", "zero"):
            raise ValueError(f"FaultModel.sa0_value = {self.sa0_value!r}; allowed: 'g_min', 'zero'")

    def sample(self, shape: tuple[int, ...], *, key: PRNGKeyArray) -> Int[Array, "..."]:
        """Fault map of ``shape``: 0 healthy, 1 stuck low, 2 stuck high (int32)."""
        u = jax.random.uniform(key, shape)
        return jnp.where(u < self.p_sa0, STUCK_LOW, jnp.where(u < self.p_sa0 + self.p_sa1, STUCK_HIGH, HEALTHY))

    def apply(self, g: Float[Array, "..."], nu: Float[Array, "..."], g_min, g_max, *, key: PRNGKeyArray
              ) -> tuple[Float[Array, "..."], Float[Array, "..."], Int[Array, "..."]]:
        """Stick cells of the programmed conductances ``g`` (S) and zero their drift
        exponents ``nu``. Returns ``(g, nu, fault_map)``, shapes as ``g``."""
        fmap = self.sample(g.shape, key=key)
        low = jnp.asarray(0.0 if self.sa0_value == "zero" else g_min, g.dtype)
        g = jnp.where(fmap == STUCK_LOW, low, jnp.where(fmap == STUCK_HIGH, jnp.asarray(g_max, g.dtype), g))
        nu = jnp.where(fmap == HEALTHY, nu, 0.0)
        return g, nu, fmap

    @property
    def is_ideal(self) -> bool:
        """Whether both fault rates are concretely 0 (no cell is stuck); False for traced rates."""
        return is_zero(self.p_sa0) and is_zero(self.p_sa1)
