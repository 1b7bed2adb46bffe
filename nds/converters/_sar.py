"""SAR ADC with a mismatched binary-weighted capacitor DAC, and the matrix-multiplying ADC.

SAR ADC (charge-redistribution, e.g. McCreary & Gray, IEEE JSSC 10(6), 1975): a
differential input ``v`` in ``[-v_ref, v_ref]`` is mapped to ``u = (v + v_ref) / 2`` in
``[0, v_ref]``. The DAC has capacitors ``C_k = 2^k c_u`` (``k = 0 .. bits-1``, each a sum
of ``2^k`` units with Pelgrom mismatch, :class:`nds.cells.UnitCapacitor`) plus a dummy unit;
``C_T`` is their actual sum. Bit ``k`` (MSB first) is kept when
``u + offset + noise_k >= v_ref * sum_{kept and trial} C_k / C_T``. The code ``D``
reconstructs as ``(D + 1/2) LSB - v_ref`` with the nominal ``LSB = 2 v_ref / 2^bits``.
Capacitor mismatch gives DNL/INL (:meth:`SARADC.dnl_inl`); the comparator offset is per
chip, the noise per comparison.

Gradient: the conversion is a straight-through estimator (:mod:`nds._ste`): the forward
value is the hardware's reconstruction, the backward pass that of ``clip_ste(v, -v_ref,
v_ref)``.

Matrix-multiplying ADC (Zhang, Wang & Verma, ISSCC 2015; survey §VI-D): the product of an
analog input ``x`` and a signed digital weight ``w`` (``w_bits`` magnitude bits) is formed
in the SAR's own capacitor array: during sampling, the input charges only the DAC's
``w_bits`` most significant capacitors selected by ``|w|``'s bits (the MSBs of the product
are formed with switched capacitors), the sign by the differential polarity; the SAR then
resolves the product to ``bits`` bits (the rest of the product's bits). The same
mismatched capacitors appear in the sampling and in the conversion, and the sampling adds
kT/C on the selected capacitance. Published: normalized RMS multiplication error 0.018
(REFERENCES.md).

SI units throughout.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._keys import streams
from .._cards import AbstractCardModule
from .._checks import MAX_CODE_BITS, maybe_positive, require, require_count
from .._ste import clip_ste
from ..cells._capacitor import K_BOLTZMANN, UnitCapacitor

__all__ = ["SARADC", "SARState", "MatrixMultiplyingADC"]


class SARState(eqx.Module):
    """One chip's SAR ADC: actual DAC capacitances ``caps`` (F, LSB first, shape
    ``(..., bits)``), dummy ``c_dummy`` (F, ``(...)``) and comparator ``offset`` (V, ``(...)``).
    Leading axes index independent ADCs (e.g. one per column)."""

    caps: Float[Array, "... bits"]
    c_dummy: Float[Array, "..."]
    offset: Float[Array, "..."]


class SARADC(AbstractCardModule):
    """Successive-approximation ADC. Card kind ``"sar_adc"`` (``devices/sar_adc_*.toml``).

    Fields (SI): ``bits`` (static), ``c_u`` (F, DAC unit), ``a_c`` (m), ``c_density`` (F/m²),
    ``temperature`` (K), ``v_ref`` (V, full scale ±v_ref), ``sigma_offset``, ``sigma_noise``
    (V, comparator), ``e_comparator`` (J per comparison), ``e_logic`` (J per conversion),
    ``f_s`` (Hz, conversion rate), ``area`` (m²).
    Static switches: ``mismatch``, ``offset``, ``noise``.

    Energy per conversion (:meth:`energy_per_conversion`): DAC switching ``C_T v_ref^2``
    (the ``~ C_T V^2`` of a conventional switching sequence averaged over codes, Ginsburg &
    Chandrakasan, ISCAS 2005, order of magnitude) + ``bits * e_comparator + e_logic``.

    Raises:
        ValueError: ``bits`` < 1, non-positive ``v_ref``/``c_u``, negative sigmas.
    """

    bits: int = eqx.field(static=True)
    c_u: float
    a_c: float
    c_density: float
    temperature: float
    v_ref: float
    sigma_offset: float
    sigma_noise: float
    e_comparator: float
    e_logic: float
    f_s: float
    area: float
    mismatch: bool = eqx.field(static=True, default=True)
    offset: bool = eqx.field(static=True, default=True)
    noise: bool = eqx.field(static=True, default=True)

    card_kind: ClassVar[str] = "sar_adc"
    card_units: ClassVar[dict[str, str]] = {
        "bits": "1", "c_u": "F", "a_c": "m", "c_density": "F/m2", "temperature": "K", "v_ref": "V",
        "sigma_offset": "V", "sigma_noise": "V", "e_comparator": "J", "e_logic": "J", "f_s": "Hz", "area": "m2",
    }
    card_ranges: ClassVar[dict] = {"bits": (1, 20), "c_u": (0.0, None), "a_c": (0.0, None),
                                   "c_density": (0.0, None), "temperature": (0.0, None), "v_ref": (0.0, None),
                                   "sigma_offset": (0.0, None), "sigma_noise": (0.0, None),
                                   "e_comparator": (0.0, None), "e_logic": (0.0, None), "f_s": (0.0, None),
                                   "area": (0.0, None)}

    def __check_init__(self):
        # concrete values only: every card parameter stays a differentiable leaf (nds._checks)
        require_count("SARADC", "bits", self.bits, 1, MAX_CODE_BITS,
                      why=f"float32 holds integer codes exactly up to 2**{MAX_CODE_BITS}")
        require(lambda v: v > 0, "SARADC", "v_ref", self.v_ref, "must be > 0 V")
        for name in ("sigma_offset", "sigma_noise", "e_comparator", "e_logic"):
            require(lambda v: v >= 0, "SARADC", name, getattr(self, name), "must be >= 0")
        self.capacitor

    @property
    def capacitor(self) -> UnitCapacitor:
        """The DAC's unit capacitor (``c_u``, Pelgrom ``a_c``, ``c_density``, ``temperature``;
        mismatch as ``mismatch``, no kT/C).

        Raises:
            ValueError: an invalid unit capacitor (``c_u``, ``c_density`` or ``temperature``
                <= 0, ``a_c`` < 0).
        """
        return UnitCapacitor(c_u=self.c_u, a_c=self.a_c, c_density=self.c_density, temperature=self.temperature,
                             mismatch=self.mismatch, ktc=False)

    @property
    def lsb(self) -> float:
        """Nominal LSB of the reconstructed differential voltage, V (``2 v_ref / 2^bits``)."""
        return 2 * self.v_ref / 2**self.bits

    def energy_per_conversion(self) -> float:
        """J per conversion (see class doc)."""
        c_t = 2**self.bits * self.c_u
        return c_t * self.v_ref**2 + self.bits * self.e_comparator + self.e_logic

    def program(self, shape: tuple[int, ...] = (), *, key: PRNGKeyArray | None, dtype=None) -> SARState:
        """Sample ``shape`` independent ADCs (DAC mismatch, comparator offset; program time).

        Raises:
            ValueError: mismatch or offset on and ``key`` None.
        """
        dtype = dtype or jnp.result_type(float)
        need = (self.mismatch and maybe_positive(self.a_c)) or (self.offset and maybe_positive(self.sigma_offset))
        if need and key is None:
            raise ValueError("SARADC.program: mismatch/offset is on, so a `key` is required")
        k1, k2, k3 = streams(key, "caps", "c_dummy", "offset") if key is not None else (None, None, None)
        units = jnp.broadcast_to(2.0 ** jnp.arange(self.bits, dtype=dtype), (*shape, self.bits))
        cap = self.capacitor
        caps = cap.sample(units, key=k1)
        c_dummy = cap.sample(jnp.ones(shape, dtype), key=k2)
        if self.offset and maybe_positive(self.sigma_offset):
            off = self.sigma_offset * jax.random.normal(k3, shape, dtype)
        else:
            off = jnp.zeros(shape, dtype)
        return SARState(caps=caps, c_dummy=c_dummy, offset=off)

    def nominal_state(self, shape: tuple[int, ...] = (), dtype=None) -> SARState:
        """An ADC without mismatch or offset."""
        dtype = dtype or jnp.result_type(float)
        units = jnp.broadcast_to(2.0 ** jnp.arange(self.bits, dtype=dtype), (*shape, self.bits))
        return SARState(caps=units * self.c_u, c_dummy=jnp.full(shape, self.c_u, dtype),
                        offset=jnp.zeros(shape, dtype))

    def codes(self, state: SARState, v: Float[Array, "..."], *, key: PRNGKeyArray | None,
              u_scale: Float[Array, "..."] | float = 1.0) -> Float[Array, "..."]:
        """Output codes ``D`` (0 .. 2^bits - 1, float) of inputs ``v`` (V), no gradient.

        ``state`` leading shape must broadcast with ``v``. ``u_scale`` multiplies the DAC
        reference (used by the matrix-multiplying ADC). Raises ValueError if noise is on and
        ``key`` is None.
        """
        if self.noise and maybe_positive(self.sigma_noise):
            if key is None:
                raise ValueError("SARADC: comparator noise is on, so a `key` is required at read time")
            noise = self.sigma_noise * jax.random.normal(key, (self.bits, *jnp.shape(v)), jnp.result_type(v))
        else:
            noise = jnp.zeros((self.bits, *jnp.shape(v)), jnp.result_type(v))
        c_t = jnp.sum(state.caps, axis=-1) + state.c_dummy
        u = (v + self.v_ref) / 2 + state.offset
        acc = jnp.zeros_like(u)
        code = jnp.zeros_like(u)
        for k in range(self.bits - 1, -1, -1):
            trial = acc + state.caps[..., k]
            level = self.v_ref * u_scale * trial / c_t
            keep = (u + noise[k]) >= level
            acc = jnp.where(keep, trial, acc)
            code = code + jnp.where(keep, 2.0**k, 0.0)
        return jax.lax.stop_gradient(code)

    def __call__(self, state: SARState, v: Float[Array, "..."], *, key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Convert ``v`` (V) and reconstruct (V), straight-through gradient (see module doc)."""
        d = self.codes(state, v, key=key)
        v_hat = (d + 0.5) * self.lsb - self.v_ref
        v_lin = clip_ste(v, -self.v_ref, self.v_ref)
        return v_lin + jax.lax.stop_gradient(v_hat - v_lin)

    def transition_levels(self, state: SARState) -> np.ndarray:
        """Input voltages (V, differential) of the code transitions 1 .. 2^bits - 1 of one ADC
        (noise-free; ``state`` without leading axes). The SAR decides against DAC levels, so
        transition ``D`` lies at the DAC voltage of code ``D`` (monotonic DAC assumed)."""
        caps = np.asarray(state.caps, float)
        c_t = caps.sum() + float(state.c_dummy)
        d = np.arange(1, 2**self.bits)
        bits = (d[:, None] >> np.arange(self.bits)[None, :]) & 1
        u = self.v_ref * (bits * caps[None, :]).sum(1) / c_t - float(state.offset)
        return 2 * u - self.v_ref

    def dnl_inl(self, state: SARState) -> tuple[np.ndarray, np.ndarray]:
        """``(DNL, INL)`` in LSB of one ADC: DNL of codes 1 .. 2^bits - 2 (width of each code
        minus 1), INL at transitions 1 .. 2^bits - 1 (deviation from the nominal transition
        ``-v_ref + D LSB``)."""
        t = self.transition_levels(state)
        dnl = np.diff(t) / self.lsb - 1.0
        d = np.arange(1, 2**self.bits)
        inl = (t - (-self.v_ref + d * self.lsb)) / self.lsb
        return dnl, inl

    def ideal(self) -> "SARADC":
        """No mismatch, offset or noise (quantization stays)."""
        import dataclasses
        return dataclasses.replace(self, mismatch=False, offset=False, noise=False)


class MatrixMultiplyingADC(eqx.Module):
    """Matrix-multiplying ADC (Zhang, Wang & Verma, ISSCC 2015): ``x * w`` formed in a SAR's
    capacitor DAC (see module doc).

    Fields: ``adc`` (:class:`SARADC`, ``bits`` >= ``w_bits``), ``w_bits`` (static, weight
    magnitude bits), ``ktc`` (static, kT/C on the sampling).

    Raises:
        ValueError: ``w_bits`` < 1 or > ``adc.bits``.
    """

    adc: SARADC
    w_bits: int = eqx.field(static=True, default=5)
    ktc: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not 1 <= self.w_bits <= self.adc.bits:
            raise ValueError(f"MatrixMultiplyingADC.w_bits = {self.w_bits!r}: must be in [1, adc.bits = {self.adc.bits}]")

    @property
    def w_max(self) -> int:
        """Largest weight magnitude, ``2^w_bits - 1``."""
        return 2**self.w_bits - 1

    def multiply(self, state: SARState, x: Float[Array, "..."], w: Float[Array, "..."], *,
                 key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Products ``x * w / 2^w_bits`` (V) as the ADC reconstructs them.

        Args:
            state: one ADC's :class:`SARState` (from ``adc.program``), broadcast over inputs.
            x: input voltages, V, in ``[-v_ref, v_ref]``.
            w: integer weights, ``|w| <= 2^w_bits - 1``.
            key: read-time noise (kT/C, comparator).

        Returns:
            The reconstructed product voltage; the exact one is ``x * w / 2^w_bits``.

        Raises:
            ValueError: ``key`` is None while kT/C (``ktc``) or the SAR's comparator noise
                is on.
        """
        adc = self.adc
        b0 = adc.bits - self.w_bits
        mag = jnp.abs(w).astype(jnp.int32)
        shifts = jnp.arange(self.w_bits).reshape((1,) * mag.ndim + (self.w_bits,))
        sel = ((mag[..., None] >> shifts) & 1).astype(jnp.result_type(x))
        msb_caps = state.caps[..., b0:]
        c_t = jnp.sum(state.caps, axis=-1) + state.c_dummy
        c_sel = sel @ msb_caps if msb_caps.ndim == 1 else jnp.sum(sel * msb_caps, axis=-1)
        k1, k2 = streams(key, "ktc", "adc") if key is not None else (None, None)
        # sampled charge x*C_sel, shared on the whole array: effective input x*C_sel/C_T
        v_eff = jnp.sign(w) * x * c_sel / c_t
        if self.ktc:
            if key is None:
                raise ValueError("MatrixMultiplyingADC: kT/C noise is on, so a `key` is required")
            var = K_BOLTZMANN * adc.temperature * c_sel / c_t**2
            v_eff = v_eff + jnp.sqrt(var) * jax.random.normal(k1, jnp.shape(v_eff), jnp.result_type(x))
        # the SAR resolves v_eff to adc.bits bits
        return adc(state, v_eff, key=k2)

    def normalized_rms_error(self, state: SARState, *, key: PRNGKeyArray, n: int = 20000) -> Float[Array, ""]:
        """RMS of (reconstructed - exact product) over ``n`` uniform random ``x`` in
        ``[-v_ref, v_ref]`` and uniform random weights, divided by the full-scale product
        ``v_ref (2^w_bits - 1) / 2^w_bits`` (dimensionless)."""
        kx, kw, kn = streams(key, "x", "w", "read")
        v = self.adc.v_ref
        x = jax.random.uniform(kx, (n,), minval=-v, maxval=v)
        w = jax.random.randint(kw, (n,), -self.w_max, self.w_max + 1)
        y = self.multiply(state, x, w, key=kn)
        exact = x * w / 2**self.w_bits
        fs = v * self.w_max / 2**self.w_bits
        return jnp.sqrt(jnp.mean((y - exact) ** 2)) / fs
