"""SRAM column in compute mode: word-line DAC, bit-line discharge, comparator.

Model of the classify mode of Zhang, Wang & Verma (IEEE JSSC 52(4), 2017; survey §VI-B,
Fig. 36). Each row ``i`` has a word-line DAC turning a code ``x_i`` (0 .. 2^bits - 1) into a
word-line voltage ``V_WL,i``; each cell stores ``+1`` or ``-1``; a ``+1`` cell sinks its
current from the bit line BL, a ``-1`` cell from BLB. Both lines start precharged to
``V_DD`` and discharge into their capacitance ``c_bl`` for ``t_int``; a comparator decides
``sign(V_BLB - V_BL - offset - noise)``.

Word-line DAC (``wldac``):
    ``"linear"``: ``V_WL = v_wl_min + (v_wl_max - v_wl_min) * code / code_max``; the cell's
    alpha-power law makes the current non-linear in the code.
    ``"predistorted"``: the DAC is shaped so that the *nominal* cell current is linear in
    the code, ``I_sat(V_WL(code)) = I_fs * code / code_max`` with ``I_fs = I_sat(v_wl_max)``
    (the chip does this with a replica bit-cell in a current mirror; survey: "the DAC is
    shaped to counter" the non-linear discharge).

Bit-line discharge (derivation; ``saturation=True``). Cell ``i`` on a line carries the
alpha-power current of :class:`nds.cells.SRAMCell` with ``V_DS = V_BL``. Summing the cells,
``C dV/dt = -sum_i I_sat,i g(V; V_dsat,i)``. We replace the per-cell ``V_dsat,i`` by the
current-weighted mean ``V_d = sum_i I_sat,i V_dsat,i / sum_i I_sat,i`` (exact for a single
cell, or equal word-line voltages and no mismatch; error checked against ngspice with cells
at different voltages), so that with ``I_s = sum_i I_sat,i`` the line obeys one scalar ODE:

* saturation, ``V >= V_d``: ``C dV/dt = -I_s (1 + lam V)`` →
  ``V(t) = V_0 - (1 + lam V_0) (I_s t / C) phi(lam I_s t / C)``, ``phi(z) = (1 - e^-z)/z``;
  it reaches ``V_d`` at ``t_1 = C (V_0 - V_d) / (I_s (1 + lam V_d)) * log1p(u)/u``,
  ``u = lam (V_0 - V_d) / (1 + lam V_d)``;
* triode, ``V < V_d``: ``C dV/dt = -I_s (1 + lam V_d) (2 - V/V_d) V/V_d``, a logistic
  equation with solution ``V = 2 V_d r / (1 + r)``,
  ``r = r_1 exp(-2 I_s (1 + lam V_d) (t - t_1) / (C V_d))``, ``r_1 = V_1 / (2 V_d - V_1)``.

This closed form is differentiable everywhere (``jnp.where`` with safe branches).
``saturation=False`` is the linear (ideal) discharge at the initial current,
``V = V_0 - I_s (1 + lam V_0) t / C``, unbounded.

Comparator: offset ``N(0, sigma_offset)`` per column (program time), noise
``N(0, sigma_noise)`` per decision (read time).

SI units throughout.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._cards import AbstractCardModule
from .._checks import concrete, is_zero, require, require_count
from ..cells._sram import SRAMCell

__all__ = ["SRAMColumn", "bitline_discharge"]

_TINY = 1e-30
_MAX_WLDAC_BITS = 10


def _phi(z):
    """``(1 - exp(-z)) / z`` for ``z >= 0``, = 1 at 0, smooth."""
    small = z < 1e-6
    zs = jnp.where(small, 1.0, z)
    return jnp.where(small, 1.0 - z / 2 + z * z / 6, -jnp.expm1(-zs) / zs)


def _log1p_over(u):
    """``log1p(u) / u`` for ``u >= 0``, = 1 at 0."""
    small = u < 1e-6
    us = jnp.where(small, 1.0, u)
    return jnp.where(small, 1.0 - u / 2 + u * u / 3, jnp.log1p(us) / us)


def bitline_discharge(
    i_s: Float[Array, "..."], v_d: Float[Array, "..."], *, v0: float, c: float, t: float, lam: float,
    saturation: bool = True,
) -> Float[Array, "..."]:
    """Bit-line voltage (V) after discharging for ``t`` (s) from ``v0`` (V) into ``c`` (F).

    Args:
        i_s: total saturation current of the cells on the line, A (>= 0).
        v_d: their (current-weighted) saturation voltage, V (>= 0).
        v0, c, t, lam: precharge voltage (V), line capacitance (F), integration time (s),
            channel-length modulation (1/V).
        saturation: closed-form non-linear discharge (see module doc); False: the linear
            ``v0 - i_s (1 + lam v0) t / c``.

    Returns:
        ``V_BL(t)``, same shape as ``i_s``.
    """
    if not saturation:
        return v0 - i_s * (1 + lam * v0) * t / c
    i_s = jnp.asarray(i_s)
    v_d = jnp.clip(v_d, 1e-9, None)
    on = i_s > _TINY
    i_safe = jnp.where(on, i_s, 1.0)
    # saturation phase
    z = lam * i_safe * t / c
    v_sat = v0 - (1 + lam * v0) * (i_safe * t / c) * _phi(z)
    above = v0 > v_d
    dv_to_d = jnp.where(above, v0 - v_d, 0.0)
    u = lam * dv_to_d / (1 + lam * v_d)
    t1 = c * dv_to_d / (i_safe * (1 + lam * v_d)) * _log1p_over(u)
    in_sat = above & (t <= t1)
    # triode phase from V_1 = min(v0, v_d) at t_1
    v1 = jnp.minimum(v0, v_d)
    r1 = v1 / (2 * v_d - v1)
    tau = jnp.clip(t - jnp.where(above, t1, 0.0), 0.0, None)
    k = 2 * i_safe * (1 + lam * v_d) / (c * v_d)
    r = r1 * jnp.exp(-k * tau)
    v_tri = 2 * v_d * r / (1 + r)
    v = jnp.where(in_sat, v_sat, v_tri)
    return jnp.where(on, v, v0)


class SRAMColumn(AbstractCardModule):
    """A 6T SRAM array's compute path: WLDAC, cells, bit lines, comparators.

    Card kind ``"sram_cim"`` (e.g. ``devices/sram_6t_130nm_zhang2017.toml``).

    Cell fields (see :class:`nds.cells.SRAMCell`): ``vdd, vt, alpha, i_on, v_dsat_on, lam,
    a_vt, w, l``.
    Column fields: ``c_bl`` (F), ``t_int`` (s), ``v_wl_min``, ``v_wl_max`` (V, WLDAC range),
    ``sigma_offset``, ``sigma_noise`` (V, comparator).
    Cost fields: ``e_wldac`` (J per row conversion), ``e_comparator`` (J per decision),
    ``e_vote`` (J per weak-classifier vote added digitally), ``dv_bl_mean`` (V, mean swing
    per line per cycle, for the precharge energy ``c_bl vdd dv``), ``f_classify`` (Hz),
    ``a_cell`` (m², bit-cell area).
    Static switches: ``wldac`` ("linear" | "predistorted"), ``dac_bits`` (None: continuous),
    ``mismatch`` (V_t), ``offset``, ``noise`` (comparator), ``saturation`` (non-linear
    discharge).

    Raises:
        ValueError: non-positive capacitance/time, WLDAC range not inside (vt, vdd], negative
            sigmas, unknown ``wldac``; messages name the field and value.
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
    c_bl: float
    t_int: float
    v_wl_min: float
    v_wl_max: float
    sigma_offset: float
    sigma_noise: float
    e_wldac: float
    e_comparator: float
    e_vote: float
    dv_bl_mean: float
    f_classify: float
    a_cell: float
    wldac: Literal["linear", "predistorted"] = eqx.field(static=True, default="predistorted")
    dac_bits: int | None = eqx.field(static=True, default=5)
    mismatch: bool = eqx.field(static=True, default=True)
    offset: bool = eqx.field(static=True, default=True)
    noise: bool = eqx.field(static=True, default=True)
    saturation: bool = eqx.field(static=True, default=True)

    card_kind: ClassVar[str] = "sram_cim"
    card_units: ClassVar[dict[str, str]] = {
        **SRAMCell.card_units,
        "c_bl": "F", "t_int": "s", "v_wl_min": "V", "v_wl_max": "V", "sigma_offset": "V",
        "sigma_noise": "V", "e_wldac": "J", "e_comparator": "J", "e_vote": "J", "dv_bl_mean": "V",
        "f_classify": "Hz", "a_cell": "m2",
    }
    card_ranges: ClassVar[dict] = {
        **SRAMCell.card_ranges, "c_bl": (0.0, None), "t_int": (0.0, None), "sigma_offset": (0.0, None),
        "sigma_noise": (0.0, None), "e_wldac": (0.0, None), "e_comparator": (0.0, None),
        "e_vote": (0.0, None), "dv_bl_mean": (0.0, None), "f_classify": (0.0, None), "a_cell": (0.0, None),
    }

    def __check_init__(self):
        # concrete values only: every card parameter stays a differentiable leaf (nds._checks)
        self.cell  # runs SRAMCell's checks
        for name in ("c_bl", "t_int", "f_classify"):
            require(lambda v: v > 0, "SRAMColumn", name, getattr(self, name), "must be > 0")
        for name in ("sigma_offset", "sigma_noise", "e_wldac", "e_comparator", "e_vote", "dv_bl_mean", "a_cell"):
            require(lambda v: v >= 0, "SRAMColumn", name, getattr(self, name), "must be >= 0")
        lo, hi, vdd, vt = (concrete(x) for x in (self.v_wl_min, self.v_wl_max, self.vdd, self.vt))
        if lo is not None and hi is not None and vdd is not None and not np.all((lo < hi) & (hi <= vdd)):
            raise ValueError(f"SRAMColumn WLDAC range [{self.v_wl_min!r}, {self.v_wl_max!r}] V: need "
                             f"v_wl_min < v_wl_max <= vdd = {self.vdd!r} V")
        if hi is not None and vt is not None and not np.all(hi > vt):
            raise ValueError(f"SRAMColumn.v_wl_max = {self.v_wl_max!r} V: must exceed vt = {self.vt!r} V")
        if self.wldac not in ("linear", "predistorted"):
            raise ValueError(f"SRAMColumn.wldac = {self.wldac!r}: allowed 'linear' or 'predistorted'")
        require_count("SRAMColumn", "dac_bits", self.dac_bits, 1, _MAX_WLDAC_BITS, none_ok=True,
                      why=f"the batched read keeps a lookup table of 2**dac_bits word-line currents per cell; "
                          f"at most {_MAX_WLDAC_BITS} bits")

    # ------------------------------------------------------------------ pieces
    @property
    def cell(self) -> SRAMCell:
        """The bit-cell model built from this card's cell fields."""
        return SRAMCell(vdd=self.vdd, vt=self.vt, alpha=self.alpha, i_on=self.i_on, v_dsat_on=self.v_dsat_on,
                        lam=self.lam, a_vt=self.a_vt, w=self.w, l=self.l, mismatch=self.mismatch)

    @property
    def code_max(self) -> float:
        """Largest WLDAC code (``2^dac_bits - 1``; 31 for 5 bits; 1 for a continuous DAC)."""
        return float(2**self.dac_bits - 1) if self.dac_bits is not None else 1.0

    @property
    def i_fs(self) -> float:
        """Nominal full-scale cell current ``I_sat(v_wl_max)``, A."""
        return self.i_on * ((self.v_wl_max - self.vt) / (self.vdd - self.vt)) ** self.alpha

    @property
    def dv_lsb(self) -> float:
        """Ideal bit-line swing per WLDAC code step of one cell, V
        (``i_fs (1 + lam vdd) t_int / (c_bl code_max)``: the initial discharge rate)."""
        return self.i_fs * (1 + self.lam * self.vdd) * self.t_int / (self.c_bl * self.code_max)

    def wl_voltage(self, code: Float[Array, "..."]) -> Float[Array, "..."]:
        """Word-line voltage (V) of a WLDAC code (0 .. code_max; non-integers allowed)."""
        frac = code / self.code_max
        if self.wldac == "linear":
            return self.v_wl_min + (self.v_wl_max - self.v_wl_min) * frac
        return self.cell.v_wl_for_current(self.i_fs * frac)

    def sample_dvt(self, shape, *, key, dtype=None):
        """V_t offsets (V) of the conducting transistor of each cell, for BL and BLB sides:
        array of shape ``(2, *shape)`` (program time)."""
        return self.cell.sample_dvt((2, *shape), key=key, dtype=dtype)

    def sample_offsets(self, n: int, *, key, dtype=None) -> Float[Array, " n"]:
        """Comparator offsets (V), one per column (program time).

        Raises:
            ValueError: offsets on and ``key`` None.
        """
        dtype = dtype or jnp.result_type(float)
        if not self.offset or is_zero(self.sigma_offset):
            return jnp.zeros((n,), dtype)
        if key is None:
            raise ValueError("SRAMColumn.sample_offsets: comparator offset is on, so a `key` is required")
        return self.sigma_offset * jax.random.normal(key, (n,), dtype)

    # ------------------------------------------------------------------ physics
    def line_currents(self, v_wl: Float[Array, " rows"], m: Float[Array, "rows cols"],
                      dvt: Float[Array, "rows cols"] | None) -> tuple[Float[Array, " cols"], Float[Array, " cols"]]:
        """``(I_s, V_d)`` of each column's line: total saturation current (A) of the cells on it,
        weighted by ``m >= 0`` (1 for a cell on this line, 0 otherwise; a real value scales the
        cell, used by the ideal limit), and their current-weighted mean ``V_dsat`` (V)."""
        cell = self.cell
        if dvt is None:
            isat = cell.i_sat(v_wl)
            iv = cell.i_sat_v_dsat(v_wl)
            i_s = isat @ m
            q = iv @ m
        else:
            isat = cell.i_sat(v_wl[:, None], dvt)
            iv = cell.i_sat_v_dsat(v_wl[:, None], dvt)
            i_s = jnp.sum(isat * m, axis=0)
            q = jnp.sum(iv * m, axis=0)
        v_d = q / jnp.where(i_s > _TINY, i_s, 1.0)
        return i_s, v_d

    def bitline(self, i_s, v_d):
        """Bit-line voltage (V) after ``t_int`` for line currents from :meth:`line_currents`."""
        return bitline_discharge(i_s, v_d, v0=self.vdd, c=self.c_bl, t=self.t_int, lam=self.lam,
                                 saturation=self.saturation)

    def differential(self, codes: Float[Array, " rows"], w: Float[Array, "rows cols"],
                     dvt: Float[Array, "2 rows cols"] | None = None) -> Float[Array, " cols"]:
        """``V_BLB - V_BL`` (V) for input codes and cell weights ``w`` (``+1``/``-1``; real values
        allowed: ``relu(w)`` on BL, ``relu(-w)`` on BLB). ``dvt``: per-cell V_t offsets from
        :meth:`sample_dvt` (index 0: the BL-side transistor, 1: the BLB side) or None."""
        v_wl = self.wl_voltage(codes)
        wp, wn = jnp.maximum(w, 0.0), jnp.maximum(-w, 0.0)
        if dvt is None or not self.mismatch:
            ib, vb = self.line_currents(v_wl, wp, None)
            ibb, vbb = self.line_currents(v_wl, wn, None)
        else:
            # only the transistor on the side that stores 0 conducts: one evaluation per cell
            cell = self.cell
            d = jnp.where(w >= 0, dvt[0], dvt[1])
            isat = cell.i_sat(v_wl[:, None], d)
            iv = cell.i_sat_v_dsat(v_wl[:, None], d)
            ib, ibb = jnp.sum(isat * wp, axis=0), jnp.sum(isat * wn, axis=0)
            qb, qbb = jnp.sum(iv * wp, axis=0), jnp.sum(iv * wn, axis=0)
            vb = qb / jnp.where(ib > _TINY, ib, 1.0)
            vbb = qbb / jnp.where(ibb > _TINY, ibb, 1.0)
        return self.bitline(ibb, vbb) - self.bitline(ib, vb)

    def differential_batch(self, codes: Float[Array, "n rows"], w: Float[Array, "rows cols"],
                           dvt: Float[Array, "2 rows cols"] | None = None) -> Float[Array, "n cols"]:
        """:meth:`differential` for a batch of *integer* codes (a finite WLDAC), computed with a
        per-cell lookup table of the ``2^dac_bits`` code currents and a one-hot matrix product
        (the same numbers, far fewer power evaluations; no gradient w.r.t. ``codes``).

        Raises:
            ValueError: a continuous DAC (``dac_bits=None``).
        """
        if self.dac_bits is None:
            raise ValueError("SRAMColumn.differential_batch needs a finite WLDAC (dac_bits is None)")
        nc = 2**self.dac_bits
        levels = jnp.arange(nc, dtype=w.dtype)
        v_wl = self.wl_voltage(levels)[:, None, None]  # (nc, 1, 1)
        cell = self.cell
        if dvt is None or not self.mismatch:
            d = jnp.zeros_like(w)
        else:
            d = jnp.where(w >= 0, dvt[0], dvt[1])
        isat = cell.i_sat(v_wl, d[None])  # (nc, rows, cols)
        iv = cell.i_sat_v_dsat(v_wl, d[None])
        wp, wn = jnp.maximum(w, 0.0), jnp.maximum(-w, 0.0)
        onehot = jax.nn.one_hot(codes.astype(jnp.int32), nc, dtype=w.dtype)  # (n, rows, nc)
        oh = onehot.reshape(codes.shape[0], -1)  # (n, rows*nc)

        def lines(m):
            t_i = (isat * m[None]).transpose(1, 0, 2).reshape(-1, w.shape[1])  # (rows*nc, cols)
            t_q = (iv * m[None]).transpose(1, 0, 2).reshape(-1, w.shape[1])
            i_s = oh @ t_i
            q = oh @ t_q
            return i_s, q / jnp.where(i_s > _TINY, i_s, 1.0)

        ib, vb = lines(wp)
        ibb, vbb = lines(wn)
        return self.bitline(ibb, vbb) - self.bitline(ib, vb)

    def comparator_noise(self, shape, *, key, dtype=None):
        """Read-time comparator noise (V) of the given shape.

        Raises:
            ValueError: noise on and ``key`` None.
        """
        dtype = dtype or jnp.result_type(float)
        if not self.noise or is_zero(self.sigma_noise):
            return jnp.zeros(shape, dtype)
        if key is None:
            raise ValueError("SRAMColumn: comparator noise is on, so a `key` is required at read time")
        return self.sigma_noise * jax.random.normal(key, shape, dtype)

    def ideal(self) -> "SRAMColumn":
        """Same card with mismatch, offset, noise and saturation off and a continuous
        pre-distorted DAC (swing exactly linear in code and weight)."""
        import dataclasses
        return dataclasses.replace(self, wldac="predistorted", dac_bits=None, mismatch=False, offset=False,
                                   noise=False, saturation=False)
