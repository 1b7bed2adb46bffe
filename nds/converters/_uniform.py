"""Uniform DAC and ADC with finite bits, a range, clipping and per-conversion cost.

Both quantize symmetrically (mid-tread) on ``[-range, range]``: a ``b``-bit converter has
codes ``-2^(b-1) .. 2^(b-1) - 1`` and step (LSB) ``range / 2^(b-1)``; values beyond the
range saturate at the end codes. ``bits=None`` is an unbounded converter (the ideal limit:
no rounding, no clipping). Rounding and clipping use straight-through gradients
(:mod:`nds._ste`).

Energy and area per conversion come from a converter card: an ADC card lists energy and area
by resolution (the ISAAC figures of Shafiee et al., ISCA 2016, as transcribed in the
Accelergy component library; secondary), interpolated in bits; a DAC card gives the 1-bit
figure, multiplied by the bits for a bit-serial DAC.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._cards import AbstractCardModule
from .._checks import MAX_CODE_BITS, require, require_count
from .._ste import clip_ste, quantize_lsq, round_ste, sign_ste, absmax

__all__ = ["quantize", "UniformDAC", "UniformADC", "ConverterCosts"]

_BITS_WHY = (f"float32 holds every integer code exactly only up to 2**{MAX_CODE_BITS}, so a wider converter's "
             "codes cannot be represented; use bits=None for an unbounded converter")


def quantize(x: Float[Array, "..."], bits: int | None, full_range: float | Float[Array, ""]) -> Float[Array, "..."]:
    """Symmetric mid-tread quantization of ``x`` on ``[-full_range, full_range]``.

    Returns the reconstructed value (code × LSB), same shape as ``x``. ``bits=None``
    returns ``x`` unchanged. Gradient: straight through w.r.t. ``x``; w.r.t. ``full_range``
    the learned-step-size estimator (:func:`nds._ste.quantize_lsq`: exact where the value
    saturates, straight-through rounding inside).

    Raises:
        ValueError: ``bits`` not an integer in [1, 24] (float32 holds codes exactly up to
            2**24; use ``None`` for an unbounded converter).
    """
    if bits is None:
        return x
    require_count("quantize", "bits", bits, 1, MAX_CODE_BITS, none_ok=True, why=_BITS_WHY)
    half = 2 ** (bits - 1)
    if bits == 1:  # a comparator: {-range, +range}
        return sign_ste(x) * full_range
    lsb = jnp.asarray(full_range, jnp.result_type(x)) / half
    return quantize_lsq(x, lsb, -half, half - 1)


class ConverterCosts(AbstractCardModule):
    """Per-conversion energy (J), area (m²) and sample rate (S/s) of ADCs by resolution,
    and of a 1-bit DAC. Card kind ``"converters"``.

    DACs. ``dac_e1``/``dac_a1`` are the energy per conversion and area of a 1-bit DAC (one per
    word line of every array). ``dac_serial`` (card field, 0 or 1) says how a tile with a
    ``b``-bit input drives it:

    * ``dac_serial = 1`` (bit-serial, ISAAC): the input is fed one bit per cycle through the
      1-bit DAC, ``b`` cycles per MVM; every cycle is a full array read, with its own ADC
      conversion of every column and its own read time, and the digital periphery
      shifts-and-adds the ``b`` partial results (Shafiee et al., ISCA 2016);
    * ``dac_serial = 0`` (multi-bit DAC): one read per MVM at a ``b``-bit word-line level;
      a ``b``-bit DAC costs :meth:`dac_energy` ``= dac_e1 · 2^(b−1)`` per conversion and
      :meth:`dac_area` ``= dac_a1 · 2^(b−1)`` (a binary-weighted DAC switches ``2^b`` unit
      elements; the scaling the Accelergy/hwcomponents library applies to ISAAC's 1-bit DAC
      in resolution; an estimate, not a measured figure).

    (:class:`nds.tiles.BitSlicedTile` takes its cycles and DAC bits per cycle from its design
    card, :class:`nds.mapping.InputSlicing`, and prices a ``dac_bits``-bit DAC with
    :meth:`dac_energy`; ``dac_serial`` is for :class:`nds.tiles.CrossbarTile`.)

    Fields ``adc_e4 .. adc_e10`` and ``adc_a4 .. adc_a10`` are the energy and area of a
    4- to 10-bit ADC (the card's stated range), interpolated log-linearly in bits. Outside
    it the estimate is bounded, not extrapolated freely:

    * 1–3 bits: the log-linear trend of the lowest segment (4 → 5 bits), which falls
      toward a comparator;
    * 11–16 bits: energy and area grow 4× per bit from the 10-bit figure. Past the table a
      converter is limited by thermal noise: one more bit halves the LSB, so the sampling
      capacitor must be 4× larger for the same kT/C noise relative to it, and its energy
      (∝ C V²) and area (∝ C) grow 4× (Murmann's ADC survey; the Schreier figure of merit,
      6 dB per bit). This is a lower bound on the growth, not a fit;
    * beyond 16 bits (and below 1): no estimate: :meth:`adc_energy` and :meth:`adc_area`
      raise. (A 64-bit ADC used to be priced at 3.3e5 m² by unbounded extrapolation.)
    """

    adc_e4: float; adc_e5: float; adc_e6: float; adc_e7: float; adc_e8: float; adc_e9: float; adc_e10: float
    adc_a4: float; adc_a5: float; adc_a6: float; adc_a7: float; adc_a8: float; adc_a9: float; adc_a10: float
    adc_rate: float
    dac_e1: float
    dac_a1: float
    shift_add_e: float
    dac_serial: int = eqx.field(static=True)

    card_kind: ClassVar[str] = "converters"
    card_units: ClassVar[dict[str, str]] = {
        **{f"adc_e{b}": "J" for b in range(4, 11)}, **{f"adc_a{b}": "m2" for b in range(4, 11)},
        "adc_rate": "Hz", "dac_e1": "J", "dac_a1": "m2", "shift_add_e": "J", "dac_serial": "1",
    }
    card_ranges: ClassVar[dict] = {**{f"adc_e{b}": (0.0, 1e-6) for b in range(4, 11)},
                                   "adc_rate": (1.0, 1e12), "dac_serial": (0, 1)}

    #: resolutions with a figure on the card, and the range this class will price
    TABLE_BITS: ClassVar[tuple[int, int]] = (4, 10)
    PRICE_BITS: ClassVar[tuple[int, int]] = (1, 16)
    #: growth per bit past the table (thermal-noise limit, see the class docstring)
    THERMAL_GROWTH: ClassVar[float] = 4.0

    def __check_init__(self):
        for prefix in ("adc_e", "adc_a"):
            for b in range(4, 11):
                require(lambda v: v > 0, "ConverterCosts", f"{prefix}{b}", getattr(self, f"{prefix}{b}"),
                        "must be > 0 (interpolated in log scale)")
        require_count("ConverterCosts", "dac_serial", self.dac_serial, 0, 1,
                      why="1 = bit-serial 1-bit DAC, 0 = multi-bit DAC")

    def _interp(self, prefix: str, bits: int) -> float:
        lo, hi = self.PRICE_BITS
        if isinstance(bits, bool) or not float(bits).is_integer() or not lo <= bits <= hi:
            where = f"{self.card.path}: " if self.card is not None else ""
            raise ValueError(
                f"{where}ConverterCosts cannot price a {bits!r}-bit ADC: allowed {lo}-{hi} bits (the card lists "
                f"{self.TABLE_BITS[0]}-{self.TABLE_BITS[1]} bits; below, the trend of its lowest segment; above, "
                f"{self.THERMAL_GROWTH:g}x per bit, the thermal-noise limit; beyond {hi} bits no estimate)")
        xs = np.arange(4, 11, dtype=float)
        ys = np.log(np.array([float(getattr(self, f"{prefix}{b}")) for b in range(4, 11)], dtype=float))
        b = float(bits)
        if b < 4:
            slope = ys[1] - ys[0]
            return float(np.exp(ys[0] + slope * (b - 4)))
        if b > 10:
            return float(np.exp(ys[-1]) * self.THERMAL_GROWTH ** (b - 10))
        return float(np.exp(np.interp(b, xs, ys)))

    def adc_energy(self, bits: int) -> float:
        """Energy of one ADC conversion at ``bits`` resolution, J (see the class docstring).

        Raises:
            ValueError: ``bits`` outside 1–16 (names the card file).
        """
        return self._interp("adc_e", bits)

    def dac_energy(self, bits: int) -> float:
        """Energy of one conversion of a ``bits``-bit DAC, J: ``dac_e1 · 2^(bits−1)`` (class
        docstring; ``dac_e1`` for the 1-bit DAC of a bit-serial design).

        Raises:
            ValueError: ``bits`` not an integer in 1–16.
        """
        require_count("ConverterCosts", "dac_energy(bits)", bits, 1, 16)
        return float(self.dac_e1) * 2.0 ** (bits - 1)

    def dac_area(self, bits: int) -> float:
        """Area of one ``bits``-bit DAC, m²: ``dac_a1 · 2^(bits−1)`` (class docstring).

        Raises:
            ValueError: ``bits`` not an integer in 1–16.
        """
        require_count("ConverterCosts", "dac_area(bits)", bits, 1, 16)
        return float(self.dac_a1) * 2.0 ** (bits - 1)

    def adc_area(self, bits: int) -> float:
        """Area of one ADC at ``bits`` resolution, m² (see the class docstring).

        Raises:
            ValueError: ``bits`` outside 1–16 (names the card file).
        """
        return self._interp("adc_a", bits)


class UniformDAC(eqx.Module):
    """Input DAC: normalizes an input vector, quantizes it to ``bits`` and drives word lines.

    ``x_range=None`` scales each input vector by its own absolute maximum (a digital max
    computed per vector, as aihwkit's "noise management"); a number fixes the range (input
    units), inputs beyond it clip. Output: normalized levels in [-1, 1] (multiply by the
    read voltage for volts) and the scale used.
    """

    bits: int | None = eqx.field(static=True, default=8)
    x_range: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        require_count("UniformDAC", "bits", self.bits, 1, MAX_CODE_BITS, none_ok=True, why=_BITS_WHY)
        if self.x_range is not None:
            require(lambda v: v > 0, "UniformDAC", "x_range", self.x_range, "must be > 0 or None (dynamic)")

    def __call__(self, x: Float[Array, "..."]) -> tuple[Float[Array, "..."], Float[Array, ""]]:
        """Returns ``(levels, scale)`` with ``x ≈ levels * scale`` and ``|levels| <= 1``; one
        scale for the whole of ``x`` (any shape: one example's input vectors).

        Dynamic range: ``scale = max |x|``, which is 0 for an all-zero ``x`` (levels 0), so
        that anything referred to the input scale downstream (read noise) vanishes with it.
        """
        if self.x_range is None:
            amax = absmax(x)
            scale = amax
            xn = x / jnp.where(amax > 0, amax, jnp.ones_like(amax))
        else:
            scale = jnp.asarray(self.x_range, x.dtype)
            xn = x / scale
        if self.bits is None:
            return (xn if self.x_range is None else clip_ste(xn, -1.0, 1.0)), scale
        half = 2 ** (self.bits - 1)
        if self.bits == 1:
            return sign_ste(xn), scale
        # symmetric DAC: codes -(half-1)..(half-1) so that +1 is representable
        lsb = 1.0 / (half - 1)
        return clip_ste(round_ste(xn / lsb), -(half - 1), half - 1) * lsb, scale

    def ideal(self) -> "UniformDAC":
        """Unbounded DAC (``bits=None``) with the per-vector dynamic range (no rounding, no clipping)."""
        return UniformDAC(bits=None, x_range=None)


class UniformADC(eqx.Module):
    """Column ADC: quantizes the (normalized) column output to ``bits`` on ``[-y_range, y_range]``.

    The input is the column's summed current (the analog MAC result), so the sum — not each
    product — is quantized. ``y_range`` is in normalized units (weight × input, with weights
    scaled to |w| ≤ 1 and inputs to |x| ≤ 1), as aihwkit's ``out_bound`` (default 12 there).
    ``y_range`` is a pytree leaf (differentiable: :func:`quantize`); ``bits`` is static, an
    integer in [1, 24] or None.
    """

    bits: int | None = eqx.field(static=True, default=8)
    y_range: float | Float[Array, ""] = 12.0

    def __check_init__(self):
        # y_range is a differentiable leaf (ADC range in co-design): checked when concrete
        require_count("UniformADC", "bits", self.bits, 1, MAX_CODE_BITS, none_ok=True, why=_BITS_WHY)
        require(lambda v: np.isfinite(v) & (v > 0), "UniformADC", "y_range", self.y_range, "must be finite and > 0")

    @property
    def lsb(self) -> float | Float[Array, ""]:
        """Step size in normalized output units (``None`` bits → 0)."""
        return 0.0 if self.bits is None else self.y_range / 2 ** (self.bits - 1)

    def __call__(self, y: Float[Array, "..."]) -> Float[Array, "..."]:
        """Quantized column outputs (normalized units), same shape as ``y`` (see :func:`quantize`)."""
        return quantize(y, self.bits, self.y_range)

    def ideal(self) -> "UniformADC":
        """Unbounded ADC (``bits=None``: no rounding, no clipping), same ``y_range``."""
        return UniformADC(bits=None, y_range=self.y_range)
