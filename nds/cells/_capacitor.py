"""Unit capacitor: Pelgrom mismatch (per chip) and kT/C sampling noise (per read).

Physics:

* Mismatch (Pelgrom, Duinmaijer & Welbers, IEEE JSSC 24(5), 1989; for capacitors the same
  area law, e.g. Tripathi & Murmann, IEEE TCAS-I 61(5), 2014): the relative error of one
  unit capacitor of area ``A = c_u / c_density`` is Gaussian with
  ``sigma_C / C = a_c / sqrt(A) = a_c * sqrt(c_density) / sqrt(c_u)`` — the
  ``A_C / sqrt(C_u)`` form with ``A_C = a_c * sqrt(c_density)``. A capacitor built of ``n``
  independent units has ``C = n c_u (1 + e)``, ``std(e) = sigma_u / sqrt(n)``.
* kT/C: opening a switch that connected a capacitor ``C`` to a source freezes a noise
  voltage of variance ``k_B T / C`` (V²) on it (e.g. Johns & Martin, Analog Integrated
  Circuit Design, 1997, §1.6; survey REFERENCES "Switched-capacitor and in-sensor compute").

All quantities in SI (F, m, F/m², K, V).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._cards import AbstractCardModule
from .._checks import is_zero, require

__all__ = ["K_BOLTZMANN", "UnitCapacitor", "safe_sqrt"]

#: Boltzmann constant, J/K (exact, SI 2019).
K_BOLTZMANN = 1.380649e-23
#: smallest unit capacitance accepted, F (1 aF): C² of a smaller one underflows float32.
C_U_MIN = 1e-18


def safe_sqrt(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """``sqrt(max(x, 0))`` with a finite (zero) gradient at 0."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


class UnitCapacitor(AbstractCardModule):
    """A unit capacitor ``c_u`` with Pelgrom mismatch and kT/C noise. Card kind ``"capacitor"``.

    Fields (SI):
        c_u: unit capacitance, F (> 0).
        a_c: Pelgrom area coefficient of the relative mismatch, m (``sigma_C/C = a_c/sqrt(area)``;
            1 %·µm = 1e-8 m), >= 0.
        c_density: capacitance per area, F/m² (> 0), which sets the area of a unit.
        temperature: K (> 0).
        mismatch: sample program-time mismatch (static switch).
        ktc: sample read-time kT/C noise (static switch).

    Raises:
        ValueError: a non-positive ``c_u``, ``c_density`` or ``temperature``, or negative ``a_c``.
    """

    c_u: float
    a_c: float
    c_density: float
    temperature: float = 300.0
    mismatch: bool = eqx.field(static=True, default=True)
    ktc: bool = eqx.field(static=True, default=True)

    card_kind: ClassVar[str] = "capacitor"
    card_units: ClassVar[dict[str, str]] = {"c_u": "F", "a_c": "m", "c_density": "F/m2", "temperature": "K"}
    card_ranges: ClassVar[dict] = {"c_u": (C_U_MIN, None), "a_c": (0.0, None), "c_density": (0.0, None),
                                   "temperature": (0.0, None)}

    def __check_init__(self):
        # concrete values only: every parameter stays a differentiable leaf (nds._checks)
        require(lambda v: v >= C_U_MIN, "UnitCapacitor", "c_u", self.c_u,
                f"capacitance must be >= {C_U_MIN:g} F (1 aF; the model forms C² in kT/C variances, "
                "which underflow float32 below that)")
        require(lambda v: v >= 0, "UnitCapacitor", "a_c", self.a_c, "Pelgrom coefficient must be >= 0 m")
        require(lambda v: v > 0, "UnitCapacitor", "c_density", self.c_density, "must be > 0 F/m2")
        require(lambda v: v > 0, "UnitCapacitor", "temperature", self.temperature, "must be > 0 K")

    @property
    def area(self) -> float:
        """Area of one unit, m²."""
        return self.c_u / self.c_density

    @property
    def sigma_rel(self) -> float:
        """Relative standard deviation of one unit (``a_c / sqrt(area)``); 0 if mismatch is off."""
        if not self.mismatch:
            return 0.0
        return self.a_c / (self.area ** 0.5)

    def sample(self, n_units: Float[Array, "..."], *, key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Capacitance (F) of capacitors made of ``n_units`` units each (any shape, >= 0).

        ``n c_u + c_u * sigma_rel * sqrt(n) * z``, ``z ~ N(0, 1)`` per element (program time).
        Differentiable in ``n_units``.

        Raises:
            ValueError: mismatch is on and ``key`` is None.
        """
        n = jnp.asarray(n_units)
        if not self.mismatch or is_zero(self.a_c):
            return n * self.c_u
        if key is None:
            raise ValueError("UnitCapacitor.sample: capacitor mismatch is on, so a `key` is required")
        z = jax.random.normal(key, n.shape, dtype=n.dtype if jnp.issubdtype(n.dtype, jnp.floating) else None)
        return self.c_u * (n + self.sigma_rel * safe_sqrt(n) * z)

    def ktc_variance(self, c: Float[Array, "..."]) -> Float[Array, "..."]:
        """kT/C noise variance (V²) of a sampling onto capacitance ``c`` (F)."""
        return K_BOLTZMANN * self.temperature / c

    def sample_ktc(self, c: Float[Array, "..."], *, key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """One kT/C noise voltage (V) per element of ``c`` (F); zeros if ``ktc`` is off.

        Raises:
            ValueError: kT/C noise is on and ``key`` is None.
        """
        c = jnp.asarray(c)
        if not self.ktc:
            return jnp.zeros_like(c)
        if key is None:
            raise ValueError("UnitCapacitor.sample_ktc: kT/C noise is on, so a `key` is required")
        return jnp.sqrt(self.ktc_variance(c)) * jax.random.normal(key, c.shape, dtype=c.dtype)
