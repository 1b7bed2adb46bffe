"""Charge-domain MAC: weights as capacitor ratios, inputs as voltages, charge sharing.

Passive switched-capacitor multiply-accumulate in the style of Lee & Wong (IEEE JSSC 52(1),
2017, "Analysis and design of a passive switched-capacitor matrix multiplier for
approximate computing"; ISSCC 2016; survey §VI-D). For an output ``j`` and inputs
``i = 1..R`` (one *accumulation* of ``R`` rows):

* Each input ``i`` owns, per output, two banks (P and N side) of ``N = 2^w_bits - 1`` unit
  capacitors ``c_u``. A signed integer weight ``n_ij`` (``|n| <= N``) selects ``|n|`` units of
  the P bank if ``n > 0`` (N bank if ``n < 0``); those are sampled to the input voltage
  ``V_i`` (0 .. ``v_ref``), every other unit to 0 V. The total capacitance of each node is
  therefore independent of the weights, ``C_tot = R N c_u + c_par``.
* Sampling settles through a switch of resistance ``r_on`` (per unit, switches scale with
  the capacitor) for half a clock period ``T = 1 / (2 f_clk)``: a capacitor reset to 0
  reaches ``V (1 - exp(-T / (r_on c_u)))``; the charge-sharing phase settles with the same
  time constant, so the shared voltage carries the gain ``g = (1 - exp(-T/(r_on c_u)))^2``
  (incomplete settling; ``settling`` switch).
* Opening the sampling switches leaves a kT/C charge on every capacitor; summed over the
  capacitors of a node this is a voltage of variance exactly ``k T / C_tot`` on that node
  after sharing (``sum_i k T C_i / C_tot^2``), sampled once per node per MAC (``ktc``).
  The sharing itself conserves charge and adds no further sample.
* Capacitor mismatch (Pelgrom, per unit, :class:`nds.cells.UnitCapacitor`): the ``|n|``
  selected units and the ``N - |n|`` others of each bank are independent sums of units.
* Output: ``V_P - V_N = g * sum_i (C_P,ij - C_N,ij) V_i / C_tot`` (+ noise), ideally
  ``c_u sum_i n_ij V_i / C_tot``.

SI units throughout.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._keys import streams
from .._cards import AbstractCardModule
from .._checks import MAX_CODE_BITS, is_zero, maybe_positive, require, require_count
from ..cells._capacitor import UnitCapacitor

__all__ = ["ChargeSharingArray", "ChargeSharingState"]


class ChargeSharingState(eqx.Module):
    """Sampled capacitances (F) of one chip's capacitor banks for a weight block
    ``(out, rows)``: selected (weight) units and the complement, P and N side."""

    c_wp: Float[Array, "out rows"]
    c_wn: Float[Array, "out rows"]
    c_tot_p: Float[Array, " out"]
    c_tot_n: Float[Array, " out"]


class ChargeSharingArray(AbstractCardModule):
    """Switched-capacitor charge-sharing MAC array. Card kind ``"charge_sharing"``
    (e.g. ``devices/sc_lee_wong2016.toml``).

    Fields (SI): ``c_u`` (F), ``a_c`` (m, Pelgrom coefficient of the relative mismatch per
    sqrt(area)), ``c_density`` (F/m²), ``temperature`` (K), ``c_par`` (F, parasitic on each
    summing node), ``r_on`` (Ω, unit switch), ``f_clk`` (Hz), ``v_ref`` (V, input full
    scale), ``e_switch`` (J per MAC: local weight memory, clocking, control — a
    calibrated lump, independent of the clock), ``a_unit`` (m² per unit capacitor incl. its
    switch), ``tau_switch`` (s: the technology's ``R_on · C_gate`` product of a switch, which
    sets the gate capacitance ``tau_switch / r_on`` of a switch of resistance ``r_on``).

    Clock dependence (:meth:`at_clock`, :attr:`e_drive`): the switches are sized for the
    card's clock ``f_clk``; at another clock ``f`` they are resized to settle equally well
    (the same number of time constants ``r_on c_u`` in the half period ``1/(2f)``), i.e.
    ``r_on ∝ 1/f``, so their gate capacitance, and the energy to drive it (``C_gate v_ref²``
    per unit switch and cycle, two banks of ``N`` units per MAC), grow ∝ ``f``. Everything
    else per MAC (sampling ``C V²``, ``e_switch``, the ADC) does not depend on the clock at
    a fixed supply. Supply-voltage scaling with the clock is not modelled.
    Static: ``w_bits`` (weight magnitude bits, ``N = 2^w_bits - 1`` units per bank; None =
    continuous), switches ``mismatch``, ``ktc``, ``settling``.

    Raises:
        ValueError: negative capacitance or non-positive ``c_u``, ``r_on`` < 0, ``f_clk`` <= 0,
            ``v_ref`` <= 0, ``w_bits`` < 1 (message names the field and value).
    """

    c_u: float
    a_c: float
    c_density: float
    temperature: float
    c_par: float
    r_on: float
    f_clk: float
    v_ref: float
    e_switch: float
    a_unit: float
    tau_switch: float = 0.0
    w_bits: int | None = eqx.field(static=True, default=3)
    mismatch: bool = eqx.field(static=True, default=True)
    ktc: bool = eqx.field(static=True, default=True)
    settling: bool = eqx.field(static=True, default=True)

    card_kind: ClassVar[str] = "charge_sharing"
    card_units: ClassVar[dict[str, str]] = {
        "c_u": "F", "a_c": "m", "c_density": "F/m2", "temperature": "K", "c_par": "F", "r_on": "Ohm",
        "f_clk": "Hz", "v_ref": "V", "e_switch": "J", "a_unit": "m2", "w_bits": "1", "tau_switch": "s",
    }
    card_ranges: ClassVar[dict] = {"c_u": (0.0, None), "a_c": (0.0, None), "c_density": (0.0, None),
                                   "temperature": (0.0, None), "c_par": (0.0, None), "r_on": (0.0, None),
                                   "f_clk": (0.0, None), "v_ref": (0.0, None), "e_switch": (0.0, None),
                                   "a_unit": (0.0, None), "w_bits": (1, 16), "tau_switch": (0.0, 1e-9)}

    def __check_init__(self):
        # concrete values only: every card parameter stays a differentiable leaf (nds._checks)
        self.capacitor  # UnitCapacitor's checks (c_u > 0, ...)
        require(lambda v: v >= 0, "ChargeSharingArray", "c_par", self.c_par, "capacitance must be >= 0 F")
        require(lambda v: v >= 0, "ChargeSharingArray", "r_on", self.r_on, "must be >= 0 Ohm")
        require(lambda v: v > 0, "ChargeSharingArray", "f_clk", self.f_clk, "must be > 0 Hz")
        require(lambda v: v > 0, "ChargeSharingArray", "v_ref", self.v_ref, "must be > 0 V")
        require_count("ChargeSharingArray", "w_bits", self.w_bits, 1, MAX_CODE_BITS, none_ok=True,
                      why="None = continuous weights; 2**w_bits - 1 unit capacitors per bank, counted exactly in float32")

    @property
    def capacitor(self) -> UnitCapacitor:
        """The unit capacitor (mismatch and kT/C model)."""
        return UnitCapacitor(c_u=self.c_u, a_c=self.a_c, c_density=self.c_density, temperature=self.temperature,
                             mismatch=self.mismatch, ktc=self.ktc)

    @property
    def n_units(self) -> float:
        """Units per bank ``N = 2^w_bits - 1`` (1 for continuous weights)."""
        return float(2**self.w_bits - 1) if self.w_bits is not None else 1.0

    @property
    def settling_gain(self) -> float | Float[Array, ""]:
        """``(1 - exp(-T / (r_on c_u)))^2`` with ``T = 1/(2 f_clk)``; 1 if settling is off or
        ``r_on = 0``. Differentiable in ``r_on``, ``c_u`` and ``f_clk``."""
        if not self.settling or is_zero(self.r_on):
            return 1.0
        tau = 2 * self.f_clk * self.r_on * self.c_u  # (T / (r_on c_u))^-1
        return (-jnp.expm1(-1.0 / tau)) ** 2

    @property
    def e_drive(self) -> float | Float[Array, ""]:
        """Energy (J) per MAC to drive the unit switches' gates at the card's clock:
        ``2 N (tau_switch / r_on) v_ref²`` (``N`` units per bank, P and N banks; 0 when
        ``r_on = 0``, an ideal switch)."""
        if is_zero(self.r_on):
            return 0.0
        return 2 * self.n_units * self.tau_switch / self.r_on * self.v_ref**2

    def at_clock(self, f_clk: float) -> "ChargeSharingArray":
        """This array run at clock ``f_clk`` (Hz) with its switches resized to settle as well
        as at the card's clock: ``r_on · f_card / f_clk`` (see the class docstring). The
        settling gain is unchanged; :attr:`e_drive` scales ∝ ``f_clk``.

        Raises:
            ValueError: a concrete ``f_clk`` <= 0.
        """
        import dataclasses

        require(lambda v: v > 0, "ChargeSharingArray", "at_clock(f_clk)", f_clk, "must be > 0 Hz")
        return dataclasses.replace(self, f_clk=f_clk, r_on=self.r_on * self.f_clk / f_clk)

    def c_total(self, rows: int) -> float:
        """Nominal capacitance of a summing node, F (``rows N c_u + c_par``)."""
        return rows * self.n_units * self.c_u + self.c_par

    def program(self, n: Float[Array, "out rows"], *, key: PRNGKeyArray | None) -> ChargeSharingState:
        """Capacitor banks for integer (or, continuous mode, real) weights ``n``
        (``|n| <= N``), with mismatch sampled from ``key`` (program time).

        Raises:
            ValueError: mismatch on and ``key`` None.
        """
        cap = self.capacitor
        big = self.n_units
        npos, nneg = jnp.maximum(n, 0.0), jnp.maximum(-n, 0.0)
        if self.mismatch and maybe_positive(self.a_c):
            if key is None:
                raise ValueError("ChargeSharingArray.program: capacitor mismatch is on, so a `key` is required")
            k = streams(key, "c_weight_pos", "c_weight_neg", "c_comp_pos", "c_comp_neg")
        else:
            k = [None] * 4
        c_wp = cap.sample(npos, key=k[0])
        c_wn = cap.sample(nneg, key=k[1])
        c_cp = cap.sample(big - npos, key=k[2])
        c_cn = cap.sample(big - nneg, key=k[3])
        c_tot_p = jnp.sum(c_wp + c_cp, axis=-1) + self.c_par
        c_tot_n = jnp.sum(c_wn + c_cn, axis=-1) + self.c_par
        return ChargeSharingState(c_wp=c_wp, c_wn=c_wn, c_tot_p=c_tot_p, c_tot_n=c_tot_n)

    def nodes(self, state: ChargeSharingState, v: Float[Array, " rows"], *, key: PRNGKeyArray | None
              ) -> tuple[Float[Array, " out"], Float[Array, " out"]]:
        """Summing-node voltages ``(V_P, V_N)`` (V) after sampling inputs ``v`` (V, in
        [0, v_ref]) and sharing, with kT/C noise from ``key`` (read time).

        Raises:
            ValueError: kT/C on and ``key`` None.
        """
        g = self.settling_gain
        vp = g * (state.c_wp @ v) / state.c_tot_p
        vn = g * (state.c_wn @ v) / state.c_tot_n
        if self.ktc:
            if key is None:
                raise ValueError("ChargeSharingArray: kT/C noise is on, so a `key` is required at read time")
            kp, kn = streams(key, "ktc_pos", "ktc_neg")
            vp = vp + self.capacitor.sample_ktc(state.c_tot_p, key=kp)
            vn = vn + self.capacitor.sample_ktc(state.c_tot_n, key=kn)
        return vp, vn

    def mac(self, state: ChargeSharingState, v: Float[Array, " rows"], *, key: PRNGKeyArray | None
            ) -> Float[Array, " out"]:
        """Differential output ``V_P - V_N`` (V); ideally ``c_u sum_i n_i v_i / C_tot``."""
        vp, vn = self.nodes(state, v, key=key)
        return vp - vn

    def sampling_energy(self, n_abs_mean: float, v_ms: float, macs: float) -> float:
        """Energy (J) drawn from the input drivers: ``C V^2`` per charging event, i.e.
        ``macs * n_abs_mean * c_u * v_ms`` (``v_ms`` = mean square input voltage, V²)."""
        return macs * n_abs_mean * self.c_u * v_ms

    def ideal(self) -> "ChargeSharingArray":
        """No mismatch, no kT/C, complete settling, continuous weights."""
        import dataclasses
        return dataclasses.replace(self, w_bits=None, mismatch=False, ktc=False, settling=False)
