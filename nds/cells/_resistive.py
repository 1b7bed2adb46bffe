"""Resistive memory cells (PCM, RRAM): statistical models of programming, drift and read noise.

Program time (once per chip): a target conductance ``g_target`` (S) becomes a programmed
conductance ``g_prog = max(g_target + N(0, σ_prog(ĝ)), 0)`` with ``ĝ = g_target / g_max`` and
``σ_prog(ĝ) = max(c2 ĝ² + c1 ĝ + c0, 0)`` (Nandakumar et al., 2019; Joshi et al., Nat. Commun.
11, 2473 (2020), Methods; the form used by aihwkit's ``PCMLikeNoiseModel``). Each device also
draws its drift exponent ``ν`` here (a device property).

Time ``t`` after programming (PCM): ``g_drift(t) = g_prog ((t + t0)/t0)^(−ν)`` with
``ν = |N(μ_ν(ĝ), σ_ν(ĝ))|``, ``μ_ν = clip(a_μ ln ĝ + b_μ, μ_min, μ_max)``,
``σ_ν = clip(a_σ ln ĝ + b_σ, σ_min, σ_max)``; accumulated 1/f read noise
``σ_1/f(t) = g_drift(t) Q_s sqrt(ln((t + t0 + t_r)/(2 t_r)))``, ``Q_s = min(q_a / ĝ^q_e, q_max)``,
sampled once per (chip, t) as in aihwkit (Joshi 2020, Methods). The 1/f noise accumulates from
the start of programming, ``t0`` before the first read (the drift reference time): aihwkit's
``PCMLikeNoiseModel.apply_drift_noise_to_conductance`` evaluates the same expression at its
``t = t_inference + t_0``. So even at ``t = 0`` a read carries 1/f noise: the relative σ at
ĝ = 1 is ``0.0088 sqrt(ln(20 s / 500 ns)) = 3.68 %``.

Read time (every read): cycle-to-cycle noise, Gaussian with standard deviation
``read_noise_c2c · g`` per device and read.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._keys import streams
from .._cards import AbstractCardModule
from .._checks import concrete, is_traced, require, require_count

__all__ = ["AbstractResistiveCell", "PCM", "RRAM"]

_COMMON_UNITS = {
    "g_min": "S", "g_max": "S", "levels": "1",
    "prog_c0": "S", "prog_c1": "S", "prog_c2": "S",
    "read_noise_c2c": "1", "v_read": "V", "t_read": "s", "cell_area": "m2",
}
_MAX_LEVELS = 1 << 20
_G_MAX_MIN = 1e-12  # S; see AbstractResistiveCell.__check_init__
_COMMON_RANGES = {
    "g_min": (0.0, 1.0), "g_max": (_G_MAX_MIN, 1.0), "levels": (0, _MAX_LEVELS), "read_noise_c2c": (0.0, 1.0),
    "v_read": (0.0, 10.0), "t_read": (0.0, 1.0), "cell_area": (0.0, 1e-6),
}


def _as_count(v):
    """An integral float from a card (``4.0``) as the int it is; anything else unchanged (and
    rejected by the check if it is not an integer, e.g. ``2.5``)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class AbstractResistiveCell(AbstractCardModule):
    """A resistive memory device: conductance levels, programming error, read noise.

    Fields (SI): ``g_min``, ``g_max`` (S), ``levels`` (number of programmable levels between
    them; 0 = continuous), programming-noise polynomial ``prog_c0..c2`` (S), relative per-read
    noise ``read_noise_c2c``, read voltage ``v_read`` (V) and integration time ``t_read`` (s)
    (used for read energy ``v_read² g t_read``), ``cell_area`` (m²).
    """

    g_min: eqx.AbstractVar[float]
    g_max: eqx.AbstractVar[float]
    levels: eqx.AbstractVar[int]
    prog_c0: eqx.AbstractVar[float]
    prog_c1: eqx.AbstractVar[float]
    prog_c2: eqx.AbstractVar[float]
    read_noise_c2c: eqx.AbstractVar[float]
    v_read: eqx.AbstractVar[float]
    t_read: eqx.AbstractVar[float]
    cell_area: eqx.AbstractVar[float]

    def __check_init__(self):
        # concrete values only: g_min, g_max stay differentiable leaves (nds._checks)
        owner = type(self).__name__
        require_count(owner, "levels", self.levels, 0, _MAX_LEVELS,
                      why="0 = continuous, else the number of programmable levels, >= 2; at most 2**20 so "
                          "that every level is exact in float32")
        if self.levels == 1:
            raise ValueError(f"{owner}.levels = 1: must be 0 (continuous) or >= 2 (one level stores nothing)")
        require(lambda v: v >= _G_MAX_MIN, owner, "g_max", self.g_max,
                f"must be >= {_G_MAX_MIN:g} S (1 pS): the model forms g² (read-noise variance) and (v g)² "
                "(wire power), which underflow float32 below that")
        require(lambda v: v >= 0, owner, "g_min", self.g_min, "must be >= 0 S")
        gmin, gmax = concrete(self.g_min), concrete(self.g_max)
        if gmin is not None and gmax is not None and not np.all(gmin < gmax):
            raise ValueError(f"{owner}: g_min = {float(np.max(gmin)):g} S must be < g_max = {float(np.min(gmax)):g} S")

    # ------------------------------------------------------------------ program time
    def prog_sigma(self, g_target: Float[Array, "..."]) -> Float[Array, "..."]:
        """Programming-noise standard deviation (S) at ``g_target`` (S); same shape."""
        gh = g_target / self.g_max
        return jnp.maximum(self.prog_c2 * gh**2 + self.prog_c1 * gh + self.prog_c0, 0.0)

    def sample_nu(self, g_target: Float[Array, "..."], *, key: PRNGKeyArray) -> Float[Array, "..."]:
        """Per-device drift exponent (dimensionless); zeros for a cell without drift."""
        del key
        return jnp.zeros_like(g_target)

    def program(self, g_target: Float[Array, "..."], *, key: PRNGKeyArray | None
                ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        """Program devices to ``g_target`` (S). Returns ``(g_prog, nu)``, same shape.

        ``key=None`` skips the random draws: ``g_prog = g_target`` and zero drift exponents,
        whatever the cell's noise (not an error; pass a key for a real chip).
        """
        if key is None:
            return g_target, jnp.zeros_like(g_target)
        k_prog, k_nu = streams(key, "prog_noise", "nu")
        noise = jax.random.normal(k_prog, g_target.shape, g_target.dtype) * self.prog_sigma(g_target)
        g_prog = jnp.maximum(g_target + noise, 0.0)
        return g_prog, self.sample_nu(g_target, key=k_nu)

    # ------------------------------------------------------------------ pulsed update (in-situ training)
    def update(self, g: Float[Array, "..."], pulses: Float[Array, "..."], *, model, devices,
               key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Conductances (S) after ``pulses`` identical programming pulses per device
        (``> 0`` potentiation, ``< 0`` depression; same shape as ``g``), with the pulse
        response ``model`` (:class:`nds.cells.AbstractUpdateModel`) and this chip's
        ``devices`` (``model.sample(self.g_min, self.g_max, shape, key=...)``); ``key``
        draws the cycle-to-cycle noise (``None``: the mean). See :mod:`nds.cells._update`."""
        return model.pulse(g, pulses, devices, key=key)

    # ------------------------------------------------------------------ time after programming
    def at_time(self, g_prog: Float[Array, "..."], nu: Float[Array, "..."], t: Float[Array, ""],
                *, key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Conductance (S) ``t`` seconds after programming. Default: no drift."""
        del nu, t, key
        return g_prog

    # ------------------------------------------------------------------ ideal limit
    def ideal(self) -> "AbstractResistiveCell":
        """Same cell with every noise, drift and level quantization off."""
        return dataclasses.replace(self, prog_c0=0.0, prog_c1=0.0, prog_c2=0.0, read_noise_c2c=0.0, levels=0)

    @property
    def has_drift(self) -> bool:
        """Whether the device's conductance drifts after programming. Default: False."""
        return False

    # ------------------------------------------------------------------ on/off ratio
    @property
    def on_off_ratio(self) -> float | Float[Array, ""]:
        """``g_max / g_min`` (``inf`` when ``g_min = 0``); an array when the conductances are."""
        return jnp.where(jnp.asarray(self.g_min) > 0, self.g_max / jnp.where(jnp.asarray(self.g_min) > 0, self.g_min, 1.0),
                         jnp.inf) if is_traced((self.g_min, self.g_max)) else (
            float("inf") if float(self.g_min) == 0 else float(self.g_max) / float(self.g_min))

    def with_on_off_ratio(self, ratio: float | Float[Array, ""]) -> "AbstractResistiveCell":
        """This cell with ``g_min = g_max / ratio`` (a finite on/off window; ``inf`` gives
        ``g_min = 0``). With the differential mapping the ``g_min`` of both devices cancels
        in the ideal limit; it still draws current (read energy, IR drop) and, with
        conductance-dependent programming noise, adds error. ``ratio`` may be traced (then
        it is not checked).

        Raises:
            ValueError: a concrete ``ratio <= 1`` (``g_min`` must stay below ``g_max``).
        """
        require(lambda v: v > 1, type(self).__name__, "with_on_off_ratio(ratio)", ratio, "must be > 1 (g_max / g_min)")
        if not is_traced(ratio) and float(ratio) == float("inf"):
            return dataclasses.replace(self, g_min=0.0)
        return dataclasses.replace(self, g_min=self.g_max / ratio)


class RRAM(AbstractResistiveCell):
    """Filamentary RRAM (e.g. HfOx/TaOx 1T1R): programming error and C2C read noise, no drift.

    Card kind ``"rram"``; parameters as :class:`AbstractResistiveCell`.
    """

    g_min: float
    g_max: float
    levels: int = eqx.field(static=True, converter=_as_count)
    prog_c0: float
    prog_c1: float
    prog_c2: float
    read_noise_c2c: float
    v_read: float
    t_read: float
    cell_area: float

    card_kind: ClassVar[str] = "rram"
    card_units: ClassVar[dict[str, str]] = dict(_COMMON_UNITS)
    card_ranges: ClassVar[dict] = dict(_COMMON_RANGES)


class PCM(AbstractResistiveCell):
    """Phase-change memory with the statistical model of Joshi et al., Nat. Commun. 2020.

    Card kind ``"pcm"``. Beyond :class:`AbstractResistiveCell`: drift reference time
    ``drift_t0`` (s); drift-exponent statistics ``nu_mu_a, nu_mu_b, nu_mu_min, nu_mu_max``,
    ``nu_sigma_a, nu_sigma_b, nu_sigma_min, nu_sigma_max``; 1/f read noise ``qs_a, qs_exp,
    qs_max`` and ``t_read_noise`` (s). Formulas in the module docstring.
    """

    g_min: float
    g_max: float
    levels: int = eqx.field(static=True, converter=_as_count)
    prog_c0: float
    prog_c1: float
    prog_c2: float
    read_noise_c2c: float
    v_read: float
    t_read: float
    cell_area: float
    drift_t0: float
    nu_mu_a: float
    nu_mu_b: float
    nu_mu_min: float
    nu_mu_max: float
    nu_sigma_a: float
    nu_sigma_b: float
    nu_sigma_min: float
    nu_sigma_max: float
    qs_a: float
    qs_exp: float
    qs_max: float
    t_read_noise: float

    card_kind: ClassVar[str] = "pcm"
    card_units: ClassVar[dict[str, str]] = dict(
        _COMMON_UNITS, drift_t0="s", nu_mu_a="1", nu_mu_b="1", nu_mu_min="1", nu_mu_max="1",
        nu_sigma_a="1", nu_sigma_b="1", nu_sigma_min="1", nu_sigma_max="1",
        qs_a="1", qs_exp="1", qs_max="1", t_read_noise="s",
    )
    card_ranges: ClassVar[dict] = dict(
        _COMMON_RANGES, drift_t0=(1e-9, 1e6), nu_mu_min=(0.0, 1.0), nu_mu_max=(0.0, 1.0),
        nu_sigma_min=(0.0, 1.0), nu_sigma_max=(0.0, 1.0), qs_max=(0.0, 10.0), t_read_noise=(1e-12, 1.0),
    )

    def _ghat(self, g_target):
        return jnp.clip(g_target / self.g_max, 1e-6, 1.0)

    def nu_stats(self, g_target: Float[Array, "..."]) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        """Mean and spread of the drift exponent ν at ``g_target`` (S)."""
        lg = jnp.log(self._ghat(g_target))
        mu = jnp.clip(self.nu_mu_a * lg + self.nu_mu_b, self.nu_mu_min, self.nu_mu_max)
        sd = jnp.clip(self.nu_sigma_a * lg + self.nu_sigma_b, self.nu_sigma_min, self.nu_sigma_max)
        return mu, sd

    def sample_nu(self, g_target, *, key):
        """Per-device drift exponent ``ν = |N(μ_ν(ĝ), σ_ν(ĝ))|`` (dimensionless), shape of
        ``g_target`` (S) (Joshi et al. 2020, Methods; see the module docstring)."""
        mu, sd = self.nu_stats(g_target)
        return jnp.abs(mu + sd * jax.random.normal(key, g_target.shape, g_target.dtype))

    def drift_factor(self, nu: Float[Array, "..."], t: Float[Array, ""]) -> Float[Array, "..."]:
        """``((t + t0)/t0)^(−ν)``."""
        return ((t + self.drift_t0) / self.drift_t0) ** (-nu)

    def read_noise_sigma(self, g_drift: Float[Array, "..."], g_target: Float[Array, "..."],
                         t: Float[Array, ""]) -> Float[Array, "..."]:
        """Accumulated 1/f read-noise standard deviation (S) ``t`` seconds after programming:
        ``g_drift Q_s sqrt(ln((t + t0 + t_r) / (2 t_r)))`` (Joshi et al. 2020, Methods; the
        noise integrates from ``t0`` before the first read, as in aihwkit's
        ``PCMLikeNoiseModel``). Shape of ``g_drift`` (S) and ``g_target`` (S)."""
        qs = jnp.minimum(self.qs_a / self._ghat(g_target) ** self.qs_exp, self.qs_max)
        arg = jnp.log((t + self.drift_t0 + self.t_read_noise) / (2.0 * self.t_read_noise))
        pos = arg > 0  # zero while t + t0 < t_r (only for t0 < t_r); finite derivative there
        return g_drift * qs * jnp.where(pos, jnp.sqrt(jnp.where(pos, arg, 1.0)), 0.0)

    def at_time(self, g_prog, nu, t, *, key):
        """Drifted conductance plus accumulated 1/f read noise (clipped at 0).

        ``g_target`` for ĝ is approximated by ``g_prog`` (the device only knows its state).
        ``key=None`` gives the drift alone.
        """
        t = jnp.asarray(t, g_prog.dtype)
        g_drift = g_prog * self.drift_factor(nu, t)
        if key is None:
            return g_drift
        sig = self.read_noise_sigma(g_drift, g_prog, t)
        return jnp.maximum(g_drift + sig * jax.random.normal(key, g_prog.shape, g_prog.dtype), 0.0)

    def ideal(self):
        """As :meth:`AbstractResistiveCell.ideal`, with drift exponents and 1/f read noise off."""
        zero = ("nu_mu_min", "nu_mu_max", "nu_mu_a", "nu_mu_b", "nu_sigma_min", "nu_sigma_max",
                "nu_sigma_a", "nu_sigma_b", "qs_a", "qs_max")
        return dataclasses.replace(super().ideal(), **{k: 0.0 for k in zero})

    @property
    def has_drift(self) -> bool:
        """True: PCM conductance drifts as ``((t + t0)/t0)^(−ν)``."""
        return True
