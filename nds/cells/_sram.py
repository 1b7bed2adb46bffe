"""6T SRAM bit-cell in compute mode: word-line voltage → cell current, with V_t mismatch.

In the classify mode of Zhang, Wang & Verma (IEEE JSSC 52(4), 2017, "In-memory computation
of a machine-learning classifier in a standard 6T SRAM array"; survey §VI-B, Fig. 36) a
word-line DAC drives each row's word line to an analog voltage ``V_WL``; the access
transistor on the side of the cell that stores 0 (with the pull-down in series) sinks a
current from that side's bit line. We model the stack as one effective NMOS with the
alpha-power law of Sakurai & Newton (IEEE JSSC 25(2), 1990, eqs. (6)-(8)):

* overdrive ``V_ov = max(V_WL - V_t - dV_t, 0)`` (no sub-threshold conduction);
* saturation current ``I_sat = i_on * (V_ov / (V_DD - V_t))^alpha``;
* saturation voltage ``V_dsat = v_dsat_on * (V_ov / (V_DD - V_t))^(alpha / 2)``;
* drain current at ``V_DS``: ``I_sat (1 + lam V_DS)`` for ``V_DS >= V_dsat`` (saturation,
  with channel-length modulation), ``I_sat (1 + lam V_dsat) (2 - V_DS/V_dsat) V_DS/V_dsat``
  below (triode; Sakurai-Newton's parabola). ``alpha = 2``, ``v_dsat_on = V_DD - V_t``,
  ``i_on = K/2 (V_DD - V_t)^2`` is the SPICE level-1 (Shichman-Hodges) model, which the
  ngspice tests use (with ``lam = 0`` in triode).

Mismatch (program time, once per chip): ``dV_t ~ N(0, sigma_Vt)``,
``sigma_Vt = a_vt / sqrt(w * l)`` (Pelgrom et al., IEEE JSSC 24(5), 1989).

SI units throughout (V, A, m, V·m).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._cards import AbstractCardModule
from .._checks import concrete, is_zero, require

__all__ = ["SRAMCell"]


def _pos_pow(u, p):
    """``u**p`` for ``u >= 0`` with zero value and zero gradient at ``u <= 0``."""
    pos = u > 0
    return jnp.where(pos, jnp.where(pos, u, 1.0) ** p, 0.0)


class SRAMCell(AbstractCardModule):
    """Alpha-power-law model of a 6T bit-cell's read current. Card kind ``"sram_6t"``.

    Fields (SI):
        vdd: supply and bit-line precharge voltage, V.
        vt: threshold voltage of the access/pull-down stack, V (0 < vt < vdd).
        alpha: velocity-saturation index (1 = fully velocity saturated, 2 = square law).
        i_on: saturation current at ``V_WL = vdd``, A (> 0).
        v_dsat_on: saturation drain voltage at ``V_WL = vdd``, V (> 0).
        lam: channel-length modulation, 1/V (>= 0).
        a_vt: Pelgrom coefficient of V_t, V·m (1 mV·µm = 1e-9 V·m), >= 0.
        w, l: access-transistor width and length, m (> 0).
        mismatch: sample V_t mismatch at program time (static switch).

    Raises:
        ValueError: any of the bounds above violated (the message names the field and value).
    """

    vdd: float
    vt: float
    alpha: float
    i_on: float
    v_dsat_on: float
    lam: float
    a_vt: float
    w: float
    l: float
    mismatch: bool = eqx.field(static=True, default=True)

    card_kind: ClassVar[str] = "sram_6t"
    card_units: ClassVar[dict[str, str]] = {
        "vdd": "V", "vt": "V", "alpha": "1", "i_on": "A", "v_dsat_on": "V", "lam": "V-1",
        "a_vt": "V*m", "w": "m", "l": "m",
    }
    card_ranges: ClassVar[dict] = {"vdd": (0.0, 5.0), "alpha": (1.0, 2.0), "i_on": (0.0, None),
                                   "v_dsat_on": (0.0, None), "lam": (0.0, None), "a_vt": (0.0, None),
                                   "w": (0.0, None), "l": (0.0, None)}

    def __check_init__(self):
        # concrete values only: every parameter stays a differentiable leaf (nds._checks)
        vt, vdd = concrete(self.vt), concrete(self.vdd)
        if vt is not None and vdd is not None and not np.all((0 < vt) & (vt < vdd)):
            raise ValueError(f"SRAMCell.vt = {self.vt!r} V: must satisfy 0 < vt < vdd = {self.vdd!r} V")
        require(lambda v: (v >= 1.0) & (v <= 2.0), "SRAMCell", "alpha", self.alpha, "must be in [1, 2] (Sakurai-Newton)")
        for name in ("i_on", "v_dsat_on", "w", "l"):
            require(lambda v: v > 0, "SRAMCell", name, getattr(self, name), "must be > 0")
        for name in ("lam", "a_vt"):
            require(lambda v: v >= 0, "SRAMCell", name, getattr(self, name), "must be >= 0")

    @property
    def sigma_vt(self) -> float:
        """Standard deviation of V_t mismatch, V (``a_vt / sqrt(w l)``); 0 if mismatch is off."""
        if not self.mismatch:
            return 0.0
        return self.a_vt / (self.w * self.l) ** 0.5

    def sample_dvt(self, shape: tuple[int, ...], *, key: PRNGKeyArray | None, dtype=None) -> Float[Array, "..."]:
        """Per-transistor V_t offsets (V) of the given shape (program time).

        Raises:
            ValueError: mismatch is on and ``key`` is None.
        """
        dtype = dtype or jnp.result_type(float)
        if not self.mismatch or is_zero(self.a_vt):
            return jnp.zeros(shape, dtype)
        if key is None:
            raise ValueError("SRAMCell.sample_dvt: V_t mismatch is on, so a `key` is required")
        return self.sigma_vt * jax.random.normal(key, shape, dtype)

    def _u(self, v_wl, dvt):
        return (v_wl - self.vt - dvt) / (self.vdd - self.vt)

    def i_sat(self, v_wl: Float[Array, "..."], dvt: Float[Array, "..."] | float = 0.0) -> Float[Array, "..."]:
        """Saturation current (A) at word-line voltage ``v_wl`` (V) and V_t offset ``dvt`` (V)."""
        return self.i_on * _pos_pow(self._u(v_wl, dvt), self.alpha)

    def v_dsat(self, v_wl: Float[Array, "..."], dvt: Float[Array, "..."] | float = 0.0) -> Float[Array, "..."]:
        """Saturation drain voltage (V)."""
        return self.v_dsat_on * _pos_pow(self._u(v_wl, dvt), self.alpha / 2)

    def i_sat_v_dsat(self, v_wl, dvt=0.0):
        """``I_sat * V_dsat`` (A·V), computed without a 0·inf gradient at cut-off."""
        return self.i_on * self.v_dsat_on * _pos_pow(self._u(v_wl, dvt), 1.5 * self.alpha)

    def current(self, v_wl: Float[Array, "..."], v_ds: Float[Array, "..."], dvt=0.0) -> Float[Array, "..."]:
        """Drain current (A) at ``v_wl`` and drain-source voltage ``v_ds`` (both V; see module doc)."""
        isat = self.i_sat(v_wl, dvt)
        vd = self.v_dsat(v_wl, dvt)
        vd_s = jnp.where(vd > 0, vd, 1.0)
        u = jnp.clip(v_ds / vd_s, 0.0, 1.0)
        tri = isat * (1 + self.lam * vd) * (2 - u) * u
        sat = isat * (1 + self.lam * v_ds)
        return jnp.where(v_ds >= vd, sat, tri)

    def v_wl_for_current(self, i: Float[Array, "..."]) -> Float[Array, "..."]:
        """Inverse of :meth:`i_sat` for the nominal cell (``dvt = 0``): the word-line voltage
        (V) that gives saturation current ``i`` (A, >= 0). Used by a pre-distorted WLDAC."""
        r = jnp.clip(i / self.i_on, 0.0, None)
        return self.vt + (self.vdd - self.vt) * _pos_pow(r, 1.0 / self.alpha)
