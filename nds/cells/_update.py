"""Pulsed conductance updates: how one programming pulse changes a device's conductance.

In-situ training changes conductances with identical programming pulses; the change of one
pulse depends on the present state. All models here share one form. With the device's
normalized state ``x = (g − g_lo)/(g_hi − g_lo)`` in ``[0, 1]`` (``g_lo``, ``g_hi``: this
device's bounds), one potentiation (SET, "up") pulse moves

    x → min(1, x + δ_up (1 − β_up x))

and one depression (RESET, "down") pulse moves the mirrored state ``1 − x`` the same way with
``(δ_down, β_down)``. ``δ`` is the step at the far bound (fraction of the range) and ``β``
how strongly the step shrinks as the device approaches the bound it moves to:

* :class:`LinearStep`: ``β = 0``, constant step ``δ = 1/n`` (``n`` pulses cross the range;
  aihwkit's ``ConstantStepDevice``, NeuroSim with ``nonlinearWrite = false``).
* :class:`SoftBounds`: ``β = 1``, the step shrinks linearly to zero at the bound,
  ``Δx_up = δ_up (1 − x)``, ``Δx_down = −δ_down x`` (aihwkit's ``SoftBoundsDevice``; Fusi &
  Abbott, Nat. Neurosci. 8, 485 (2005)).
* :class:`ExpStep`: NeuroSim's exponential weight-update non-linearity (Chen, Peng & Yu,
  IEEE TCAD 37, 3067 (2018); MLP+NeuroSim ``Cell.cpp``): after ``P`` pulses from ``g_min``,
  ``G(P) = B (1 − exp(−P/A)) + g_min`` with ``B = (g_max − g_min)/(1 − exp(−N/A))`` (``N``
  pulses cross the range). One pulse is then the affine map above with
  ``β = 1 − exp(−N/A)`` and ``δ = (1 − exp(−1/A))/β``. ``A = a(NL)·N``, where the
  non-linearity factor ``NL`` is NeuroSim's label: nds defines ``a(NL)`` by
  ``max_p (y_a(p) − p) = 0.07·√2·NL`` for the normalized curve ``y_a(p) = (1 − e^{−p/a})/(1 −
  e^{−1/a})``, which reproduces every entry of NeuroSim's normalized-A table
  (``documents/Nonlinearity-NormA.htm``) to its printed digits (checked in the tests). The
  largest deviation has the closed form ``1/(1 − e^{−1/a}) − a + a ln(a (1 − e^{−1/a}))``;
  ``a`` is its root (``optimistix`` bisection on ``ln a``). Sign: nds writes a positive
  ``NL`` for a curve that saturates in the direction of motion in both directions; NeuroSim
  writes its depression (LTD) factor negative for the same shape (``NL_LTD = −4.88`` in
  NeuroSim is ``nl_down = 4.88`` here). A negative ``nl`` gives steps that grow toward the
  bound.

``n`` identical pulses in one direction have the closed form (mean, before clipping)

    x_n = x + (1 − β x) (1 − q^n)/β,     q = 1 − δβ     (x + nδ when β = 0),

so the ``n`` pulses that one update applies to a device are evaluated at once (exact mean; a
device that reaches its bound stays there, since further pulses in the same direction would
push it beyond and be clipped).

Cycle-to-cycle (C2C) noise, per pulse: the step is multiplied by ``(1 + σ ξ)``
(``step_c2c = σ``, aihwkit's ``dw_min_std``) and an additive ``σ_a ξ'`` (``range_c2c = σ_a``,
fraction of the range; NeuroSim's ``sigmaCtoC``) is added, ξ, ξ' standard normal, independent
per pulse. The variance after ``n`` pulses follows exactly from the recursion
``V_{k+1} = s V_k + δ²σ²(1 − βm_k)² + σ_a² `` with ``s = q² + δ²σ²β²``:

    V_n = (1 − βx)² (s^n − q^{2n})/β² + σ_a² (1 − s^n)/(1 − s)

(limits ``nδ²σ²`` and ``nσ_a²`` for ``β → 0``, ``s → 1``). nds draws the state after ``n``
pulses as Gaussian with this exact mean and variance (one draw per device and update instead
of ``n``), then clips to ``[0, 1]``.

Device-to-device (D2D) variation, sampled once per chip (:meth:`AbstractUpdateModel.sample`):
``δ_up = δ̄_up max(1 + σ_s ξ_1 + σ_a ξ_2, 0)``, ``δ_down = δ̄_down max(1 + σ_s ξ_1 − σ_a ξ_2, 0)``
(``step_d2d = σ_s`` common to both directions, ``asym_d2d = σ_a`` opposite: the per-device
up/down imbalance, as aihwkit's ``dw_min_dtod`` and ``up_down_dtod``), and bounds
``g_lo = g_min + σ_b R ξ_3``, ``g_hi = g_max + σ_b R ξ_4`` (``bounds_d2d = σ_b``, ``R =
g_max − g_min``; aihwkit's ``w_min_dtod``/``w_max_dtod``, NeuroSim's conductance range
variation), with ``g_lo ≥ 0`` and ``g_hi ≥ g_lo + R/20``.

Asymmetry between potentiation and depression is ``n_up ≠ n_down`` (and for
:class:`ExpStep` ``nl_up ≠ nl_down``). The number of distinguishable states per direction is
``n`` (NeuroSim's ``maxNumLevelLTP/LTD``); :attr:`AbstractUpdateModel.step_mid` is the mean
step of one pulse at mid-range, the minimum weight change an update can make.

Pulse energy: a pulse of amplitude ``V`` and width ``t_pulse`` on a device of conductance
``g`` dissipates ``V² g t_pulse`` (``g`` the mean of before and after; NeuroSim's formula for a
selected 1T1R cell). The peripheral cost of a pulse train is per line and per slot: charging
a row or column line of ``c_line`` farad per cell to the half-select voltage ``V/2``
(``c_line · cells · (V/2)²``), and ``e_rng_bit`` per random bit of a stochastic pulse train.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, PRNGKeyArray

from .._cards import AbstractCardModule
from .._keys import streams

__all__ = ["PulseDevices", "AbstractUpdateModel", "LinearStep", "SoftBounds", "ExpStep",
           "neurosim_a", "neurosim_deviation", "NEUROSIM_NL_SLOPE"]

#: max_p (y_a(p) − p) per unit of NeuroSim's non-linearity label (0.07·√2; see module docstring)
NEUROSIM_NL_SLOPE = 0.07 * 2.0**0.5

_COMMON_UNITS = {
    "n_up": "1", "n_down": "1", "step_d2d": "1", "asym_d2d": "1", "bounds_d2d": "1",
    "step_c2c": "1", "range_c2c": "1", "v_up": "V", "v_down": "V", "t_pulse": "s",
    "c_line": "F", "e_rng_bit": "J",
}
_COMMON_RANGES = {
    "n_up": (1.0, 1e9), "n_down": (1.0, 1e9), "step_d2d": (0.0, 10.0), "asym_d2d": (0.0, 10.0),
    "bounds_d2d": (0.0, 1.0), "step_c2c": (0.0, 100.0), "range_c2c": (0.0, 1.0), "v_up": (0.0, 100.0),
    "v_down": (0.0, 100.0), "t_pulse": (0.0, 1.0), "c_line": (0.0, 1e-12), "e_rng_bit": (0.0, 1e-9),
}


def _is_zero(v) -> bool:
    """True for a concrete zero (a Python number or a concrete array); False for anything
    traced (then the noise is drawn and may be zero)."""
    if isinstance(v, jax.core.Tracer):
        return False
    return bool(float(v) == 0.0)


class PulseDevices(eqx.Module):
    """Per-device pulse-response parameters of one chip (sampled at program time).

    Every field has the shape of the device array. ``g_lo``, ``g_hi``: the device's bounds (S);
    ``d_up``, ``b_up``, ``d_down``, ``b_down``: ``δ`` and ``β`` of an up and a down pulse
    (normalized to the device's range; see the module docstring).
    """

    g_lo: Float[Array, "..."]
    g_hi: Float[Array, "..."]
    d_up: Float[Array, "..."]
    b_up: Float[Array, "..."]
    d_down: Float[Array, "..."]
    b_down: Float[Array, "..."]


def _n_pulses(x, n, d, b, sig_m, sig_a, want_var: bool):
    """Mean (and variance, if ``want_var``) of the normalized state after ``n >= 0`` pulses of
    ``(δ, β)`` from ``x``, before clipping (module docstring). Shares the powers
    ``q^n = exp(n ln q)`` and ``(1 + r)^n`` between mean and variance; handles ``β → 0``
    (linear), ``q → 0`` (a pulse reaches the bound) and ``s → 1`` by their limits."""
    db = d * b
    small = jnp.abs(b) < 1e-9
    b_s = jnp.where(small, 1.0, b)
    q_pos = db < 1.0 - 1e-6
    lq = jnp.log1p(-jnp.where(q_pos, db, 0.5))  # ln q (safe where unused)
    frac = jnp.where(q_pos, -jnp.expm1(n * lq) / b_s, jnp.where(n > 0, 1.0 / b_s, 0.0))  # (1 − q^n)/β
    frac = jnp.where(small, n * d, frac)
    mean = x + (1.0 - b * x) * frac
    if not want_var:
        return mean, None
    # multiplicative: (1 − βx)² (s^n − q^{2n})/β², s = q²(1 + r), r = (δσβ/q)²
    #   = (1 − βx)² q^{2n} expm1(n ln(1 + r))/β²  (q > 0); s^n/β² when q = 0
    q = 1.0 - db
    q_s = jnp.where(q_pos, q, 1.0)
    l1r = jnp.log1p((d * sig_m * b / q_s) ** 2)
    q2n = jnp.exp(2.0 * n * lq)
    mult = jnp.where(q_pos, q2n * jnp.expm1(n * l1r) / b_s**2,
                     jnp.where(n > 0, (d * sig_m) ** (2.0 * n) * jnp.abs(b_s) ** (2.0 * n - 2.0), 0.0))
    mult = jnp.where(small, n * (d * sig_m) ** 2, mult)
    # additive: σ_a² (1 − s^n)/(1 − s), ln s = 2 ln q + ln(1 + r); s → 1 gives n σ_a²
    ls = 2.0 * lq + l1r
    one_minus_s = -jnp.expm1(ls)
    near1 = jnp.abs(ls) < 1e-12
    geo = jnp.where(near1, n, -jnp.expm1(n * ls) / jnp.where(near1, 1.0, one_minus_s))
    # q ≈ 0 (each pulse lands on the bound 1/β): the last pulse's additive noise stays (the
    # earlier ones are multiplied by s ≈ (δσβ)², dropped)
    geo = jnp.where(q_pos | small, geo, jnp.where(n > 0, 1.0, 0.0))
    var = (1.0 - b * x) ** 2 * mult + sig_a**2 * geo
    return mean, var


def _n_pulses_mean(x, n, d, b):
    """Mean normalized state after ``n >= 0`` pulses of ``(δ, β)`` from ``x`` (no clipping)."""
    return _n_pulses(x, n, d, b, 0.0, 0.0, False)[0]


def _n_pulses_var(x, n, d, b, sig_m, sig_a):
    """Variance of the normalized state after ``n >= 0`` noisy pulses (module docstring)."""
    return _n_pulses(x, n, d, b, sig_m, sig_a, True)[1]


class AbstractUpdateModel(AbstractCardModule):
    """Pulse response of a resistive device (see the module docstring for the model).

    Card fields (SI): ``n_up``, ``n_down`` (pulses that cross the range in each direction,
    the number of distinguishable states); ``step_d2d``, ``asym_d2d``, ``bounds_d2d``
    (relative D2D spreads); ``step_c2c`` (relative C2C spread of a step), ``range_c2c``
    (additive C2C noise per pulse, fraction of the range); ``v_up``, ``v_down`` (V) and
    ``t_pulse`` (s) of the programming pulses; ``c_line`` (F per cell along a row or column
    line) and ``e_rng_bit`` (J per random bit) for the peripheral cost of pulse trains.
    """

    n_up: eqx.AbstractVar[float]
    n_down: eqx.AbstractVar[float]
    step_d2d: eqx.AbstractVar[float]
    asym_d2d: eqx.AbstractVar[float]
    bounds_d2d: eqx.AbstractVar[float]
    step_c2c: eqx.AbstractVar[float]
    range_c2c: eqx.AbstractVar[float]
    v_up: eqx.AbstractVar[float]
    v_down: eqx.AbstractVar[float]
    t_pulse: eqx.AbstractVar[float]
    c_line: eqx.AbstractVar[float]
    e_rng_bit: eqx.AbstractVar[float]

    def __check_init__(self):
        for name in ("n_up", "n_down"):
            v = getattr(self, name)
            if not isinstance(v, jax.core.Tracer) and not float(v) >= 1.0:
                raise ValueError(f"{type(self).__name__}.{name} = {v!r}: must be >= 1 (pulses across the range)")

    # ------------------------------------------------------------------ the model
    @abc.abstractmethod
    def betas(self) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """``(β_up, β_down)``: how much the step shrinks toward the bound (0: linear)."""

    def deltas(self) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """``(δ_up, δ_down)``: step of one pulse at the far bound, fraction of the range."""
        return 1.0 / jnp.asarray(self.n_up, float), 1.0 / jnp.asarray(self.n_down, float)

    def params(self):
        """``((δ_up, δ_down), (β_up, β_down))`` (one evaluation of each)."""
        return self.deltas(), self.betas()

    def mid_steps(self, params=None) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """Mean step of one potentiation and of one depression pulse at mid-range
        (``x = 1/2``), fractions of the range: ``δ (1 − β/2)``. ``params``: :meth:`params`
        if already evaluated."""
        (du, dd), (bu, bd) = self.params() if params is None else params
        return du * (1 - 0.5 * bu), dd * (1 - 0.5 * bd)

    @property
    def step_mid(self) -> Float[Array, ""]:
        """Mean step of one pulse at mid-range, averaged over up and down, as a fraction of
        the range: the smallest weight change one update makes (aihwkit's ``dw_min``);
        ``1/step_mid`` is the number of states an update resolves."""
        up, down = self.mid_steps()
        return 0.5 * (up + down)

    @property
    def step_up_mid(self) -> Float[Array, ""]:
        """Mean step of one potentiation pulse at mid-range, fraction of the range."""
        return self.mid_steps()[0]

    @property
    def step_down_mid(self) -> Float[Array, ""]:
        """Mean step of one depression pulse at mid-range, fraction of the range."""
        return self.mid_steps()[1]

    def pulses_from_bound(self, x_target: Float[Array, "..."], dev: PulseDevices, *, up: bool = True
                          ) -> Float[Array, "..."]:
        """Mean number of pulses (real) that move a device from its lower bound (``up``) or
        its upper bound (``up=False``) to the normalized state ``x_target`` (the inverse of
        the closed form: ``n = ln(1 − β x)/ln(1 − δβ)``, ``x/δ`` when ``β = 0``); ``inf`` if the
        mean curve never reaches it."""
        d, b = (dev.d_up, dev.b_up) if up else (dev.d_down, dev.b_down)
        xt = x_target if up else 1.0 - x_target
        small = jnp.abs(b) < 1e-9
        b_s = jnp.where(small, 1.0, b)
        arg = 1.0 - b_s * xt
        ok = (arg > 0) & (d * b_s < 1.0)
        n = jnp.log(jnp.where(ok, arg, 1.0)) / jnp.log1p(-jnp.where(ok, d * b_s, 0.5))
        n = jnp.where(ok, n, jnp.where(d * b_s >= 1.0, jnp.where(xt > 0, 1.0, 0.0), jnp.inf))
        return jnp.where(small, xt / d, n)

    def ideal(self) -> "AbstractUpdateModel":
        """The same pulse response with every D2D and C2C spread off."""
        import dataclasses

        return dataclasses.replace(self, step_d2d=0.0, asym_d2d=0.0, bounds_d2d=0.0, step_c2c=0.0, range_c2c=0.0)

    # ------------------------------------------------------------------ program time
    def nominal(self, g_min, g_max, shape: tuple[int, ...], *, params=None) -> PulseDevices:
        """Devices of ``shape`` with the card's mean parameters and bounds ``g_min``, ``g_max``
        (S): no D2D variation. ``params``: :meth:`params` if already evaluated."""
        (du, dd), (bu, bd) = self.params() if params is None else params
        dt = jnp.result_type(float)
        full = lambda v: jnp.full(shape, v, dt)
        return PulseDevices(g_lo=full(g_min), g_hi=full(g_max), d_up=full(du), b_up=full(bu), d_down=full(dd),
                            b_down=full(bd))

    def sample(self, g_min, g_max, shape: tuple[int, ...], *, key: PRNGKeyArray | None, params=None) -> PulseDevices:
        """Devices of ``shape`` of one chip: D2D spread of step size, up/down imbalance and
        bounds around the card's values (module docstring); ``g_min``/``g_max`` (S) are the
        nominal bounds (the read cell's). ``key=None`` gives :meth:`nominal`. ``params``:
        :meth:`params` if already evaluated."""
        dev = self.nominal(g_min, g_max, shape, params=params)
        if key is None:
            return dev
        ks, ka, kl, kh = streams(key, "step_d2d", "asym_d2d", "g_lo_d2d", "g_hi_d2d")
        dt = dev.d_up.dtype
        zs = jax.random.normal(ks, shape, dt) * self.step_d2d
        za = jax.random.normal(ka, shape, dt) * self.asym_d2d
        cap = lambda d, b: jnp.where(b > 0, jnp.minimum(d, 1.0 / jnp.where(b > 0, b, 1.0)), d)
        d_up = cap(dev.d_up * jnp.maximum(1.0 + zs + za, 0.0), dev.b_up)
        d_down = cap(dev.d_down * jnp.maximum(1.0 + zs - za, 0.0), dev.b_down)
        r = jnp.asarray(g_max, dt) - jnp.asarray(g_min, dt)
        g_lo = jnp.maximum(dev.g_lo + self.bounds_d2d * r * jax.random.normal(kl, shape, dt), 0.0)
        g_hi = jnp.maximum(dev.g_hi + self.bounds_d2d * r * jax.random.normal(kh, shape, dt), g_lo + r / 20)
        return PulseDevices(g_lo=g_lo, g_hi=g_hi, d_up=d_up, b_up=dev.b_up, d_down=d_down, b_down=dev.b_down)

    # ------------------------------------------------------------------ pulses
    def _dir_params(self, n, dev: PulseDevices):
        up = n > 0
        return up, jnp.where(up, dev.d_up, dev.d_down), jnp.where(up, dev.b_up, dev.b_down)

    def mean_after(self, g: Float[Array, "..."], n: Float[Array, "..."], dev: PulseDevices) -> Float[Array, "..."]:
        """Mean conductance (S) after ``n`` pulses (``n > 0`` potentiation, ``< 0``
        depression; same shape as ``g``), clipped to the device's bounds."""
        up, d, b = self._dir_params(n, dev)
        rng = dev.g_hi - dev.g_lo
        x = jnp.clip((g - dev.g_lo) / rng, 0.0, 1.0)
        xd = jnp.where(up, x, 1.0 - x)
        m = _n_pulses_mean(xd, jnp.abs(n), d, b)
        m = jnp.where(up, m, 1.0 - m)
        return dev.g_lo + rng * jnp.clip(m, 0.0, 1.0)

    def std_after(self, g: Float[Array, "..."], n: Float[Array, "..."], dev: PulseDevices) -> Float[Array, "..."]:
        """Standard deviation (S) of the conductance after ``n`` noisy pulses, before clipping
        (module docstring)."""
        up, d, b = self._dir_params(n, dev)
        rng = dev.g_hi - dev.g_lo
        x = jnp.clip((g - dev.g_lo) / rng, 0.0, 1.0)
        xd = jnp.where(up, x, 1.0 - x)
        v = _n_pulses_var(xd, jnp.abs(n), d, b, self.step_c2c, self.range_c2c)
        pos = v > 0
        return rng * jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)

    def pulse(self, g: Float[Array, "..."], n: Float[Array, "..."], dev: PulseDevices, *,
              key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Conductance (S) after applying ``n`` identical pulses to each device (``n`` signed,
        same shape as ``g``; ``> 0`` potentiation, ``< 0`` depression, 0 leaves the device
        alone). C2C noise is drawn from ``key`` (``None``: the mean, no noise). Result
        clipped to ``[g_lo, g_hi]``."""
        up, d, b = self._dir_params(n, dev)
        rng = dev.g_hi - dev.g_lo
        x = jnp.clip((g - dev.g_lo) / rng, 0.0, 1.0)
        xd = jnp.where(up, x, 1.0 - x)
        na = jnp.abs(n)
        noisy = key is not None and not (_is_zero(self.step_c2c) and _is_zero(self.range_c2c))
        m, v = _n_pulses(xd, na, d, b, self.step_c2c, self.range_c2c, noisy)
        if noisy:
            pos = v > 0
            m = m + jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0) * jax.random.normal(key, g.shape, g.dtype)
        m = jnp.where(up, m, 1.0 - m)
        g_new = dev.g_lo + rng * jnp.clip(m, 0.0, 1.0)
        return jnp.where(na > 0, g_new, g)

    def pulse_energy(self, g_before: Float[Array, "..."], g_after: Float[Array, "..."],
                     n: Float[Array, "..."]) -> Float[Array, ""]:
        """Energy (J) dissipated in the devices by ``|n|`` pulses each: ``V² ḡ t_pulse |n|``
        summed, ``ḡ`` the mean of the conductances before and after, ``V`` the up or down
        amplitude."""
        v = jnp.where(n > 0, self.v_up, self.v_down)
        return jnp.sum(v**2 * 0.5 * (g_before + g_after) * self.t_pulse * jnp.abs(n))

    def line_energy(self, cells_per_line: int) -> Float[Array, ""]:
        """Energy (J) of one pulse slot on one row or column line of ``cells_per_line`` cells:
        ``c_line · cells · (V/2)²`` with ``V`` the mean of the up and down amplitudes."""
        v = 0.5 * (self.v_up + self.v_down)
        return self.c_line * cells_per_line * (v / 2) ** 2


class LinearStep(AbstractUpdateModel):
    """Constant step per pulse: ``Δx = ±1/n`` until the bound (``β = 0``). Card kind
    ``"update_linear"``; fields as :class:`AbstractUpdateModel`."""

    n_up: float
    n_down: float
    step_d2d: float
    asym_d2d: float
    bounds_d2d: float
    step_c2c: float
    range_c2c: float
    v_up: float
    v_down: float
    t_pulse: float
    c_line: float
    e_rng_bit: float

    card_kind: ClassVar[str] = "update_linear"
    card_units: ClassVar[dict[str, str]] = dict(_COMMON_UNITS)
    card_ranges: ClassVar[dict] = dict(_COMMON_RANGES)

    def betas(self):
        """``(0, 0)``: the step does not depend on the state."""
        z = jnp.zeros((), float)
        return z, z


class SoftBounds(AbstractUpdateModel):
    """Soft bounds: ``Δx_up = (1 − x)/n_up``, ``Δx_down = −x/n_down`` (``β = 1``). Alternating
    up and down pulses settle at the symmetry point ``x* = δ_up/(δ_up + δ_down)``. Card kind
    ``"update_softbounds"``; fields as :class:`AbstractUpdateModel`."""

    n_up: float
    n_down: float
    step_d2d: float
    asym_d2d: float
    bounds_d2d: float
    step_c2c: float
    range_c2c: float
    v_up: float
    v_down: float
    t_pulse: float
    c_line: float
    e_rng_bit: float

    card_kind: ClassVar[str] = "update_softbounds"
    card_units: ClassVar[dict[str, str]] = dict(_COMMON_UNITS)
    card_ranges: ClassVar[dict] = dict(_COMMON_RANGES)

    def betas(self):
        """``(1, 1)``: the step vanishes at the bound the pulse moves toward."""
        o = jnp.ones((), float)
        return o, o


def neurosim_deviation(a: Float[Array, "..."]) -> Float[Array, "..."]:
    """Largest deviation ``max_p (y_a(p) − p)`` of NeuroSim's normalized update curve
    ``y_a(p) = (1 − e^{−p/a})/(1 − e^{−1/a})``, ``p ∈ [0, 1]``, from the straight line:
    ``1/(1 − e^{−1/a}) − a + a ln(a (1 − e^{−1/a}))`` (``1/(8a)`` for ``a > 10³``, where the
    exact form loses digits). Positive ``a``; dimensionless."""
    big = a > 1e3
    a_s = jnp.where(big, 1.0, a)
    e = -jnp.expm1(-1.0 / a_s)
    exact = 1.0 / e - a_s + a_s * jnp.log(a_s * e)
    return jnp.where(big, 1.0 / (8.0 * jnp.where(big, a, 1.0)), exact)


@jax.jit
def _neurosim_a_abs(target: Float[Array, ""]) -> Float[Array, ""]:
    """Root ``a > 0`` of ``neurosim_deviation(a) = target`` (bisection on ``ln a``)."""
    fn = lambda u, t: neurosim_deviation(jnp.exp(u)) - t
    tol = 64 * float(jnp.finfo(target.dtype).eps)  # 1.4e-14 in float64, 7.6e-6 in float32
    sol = optx.root_find(fn, optx.Bisection(rtol=tol, atol=tol), jnp.zeros((), target.dtype), args=target,
                         options={"lower": -12.0, "upper": 16.0}, max_steps=256, throw=True)
    return jnp.exp(sol.value)


def neurosim_a(nl: Float[Array, "..."] | float) -> Float[Array, "..."]:
    """NeuroSim's normalized ``A`` (``A/N``) for non-linearity factors ``nl`` (signed, any
    shape; see the module docstring): the root of ``neurosim_deviation(a) = 0.07·√2·|nl|``
    (bisection on ``ln a`` in ``[−12, 16]``), with the sign of ``nl``; ``inf`` for
    ``|nl| < 1e-6`` (linear).

    Raises (at run time, ``eqx.error_if``): ``|nl| >= 10`` (NeuroSim's labels stop at 9;
    the deviation cannot exceed 1).
    """
    nl = jnp.asarray(nl, jnp.result_type(float))
    mag = jnp.abs(nl)
    mag = eqx.error_if(mag, mag >= 10.0, "neurosim_a: |nl| must be < 10 (NeuroSim's labels run to 9)")
    lin = mag < 1e-6
    target = NEUROSIM_NL_SLOPE * jnp.where(lin, 1.0, mag)
    a = jax.vmap(_neurosim_a_abs)(target.reshape(-1)).reshape(target.shape)
    return jnp.where(lin, jnp.inf, jnp.sign(nl) * a)


class ExpStep(AbstractUpdateModel):
    """NeuroSim's exponential update (module docstring): ``n_up``/``n_down`` pulses cross the
    range, ``nl_up``/``nl_down`` are the non-linearity factors (0 = linear; positive =
    saturating toward the bound the pulses move to). Card kind ``"update_exp"``."""

    n_up: float
    n_down: float
    nl_up: float
    nl_down: float
    step_d2d: float
    asym_d2d: float
    bounds_d2d: float
    step_c2c: float
    range_c2c: float
    v_up: float
    v_down: float
    t_pulse: float
    c_line: float
    e_rng_bit: float

    card_kind: ClassVar[str] = "update_exp"
    card_units: ClassVar[dict[str, str]] = dict(_COMMON_UNITS, nl_up="1", nl_down="1")
    card_ranges: ClassVar[dict] = dict(_COMMON_RANGES, nl_up=(-9.99, 9.99), nl_down=(-9.99, 9.99))

    def _params(self):
        """``((δ_up, δ_down), (β_up, β_down))`` from ``n`` pulses across the range and the
        factors ``nl`` (one root solve for both directions)."""
        n = jnp.stack([jnp.asarray(self.n_up, float), jnp.asarray(self.n_down, float)])
        a = neurosim_a(jnp.stack([jnp.asarray(self.nl_up, float), jnp.asarray(self.nl_down, float)]))
        fin = jnp.isfinite(a)
        big_a = jnp.where(fin, a, 1.0) * n  # A in pulses
        beta = -jnp.expm1(-n / big_a)  # 1 − e^{−N/A}
        delta = -jnp.expm1(-1.0 / big_a) / jnp.where(fin, beta, 1.0)
        delta, beta = jnp.where(fin, delta, 1.0 / n), jnp.where(fin, beta, 0.0)
        return (delta[0], delta[1]), (beta[0], beta[1])

    def params(self):
        """``((δ_up, δ_down), (β_up, β_down))`` from one root solve for both directions."""
        return self._params()

    def deltas(self):
        """``δ = (1 − e^{−1/A})/(1 − e^{−N/A})`` per direction (``1/N`` when linear)."""
        return self._params()[0]

    def betas(self):
        """``β = 1 − e^{−N/A}`` per direction (0 when linear)."""
        return self._params()[1]
