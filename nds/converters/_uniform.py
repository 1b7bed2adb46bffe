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
from .._ste import clip_ste, round_ste, sign_ste

__all__ = ["quantize", "UniformDAC", "UniformADC", "ConverterCosts"]


def quantize(x: Float[Array, "..."], bits: int | None, full_range: float | Float[Array, ""]) -> Float[Array, "..."]:
    """Symmetric mid-tread quantization of ``x`` on ``[-full_range, full_range]``.

    Returns the reconstructed value (code × LSB), same shape as ``x``. ``bits=None``
    returns ``x`` unchanged.

    Raises:
        ValueError: ``bits`` < 1.
    """
    if bits is None:
        return x
    if bits < 1:
        raise ValueError(f"bits = {bits}: must be >= 1 or None (unbounded)")
    half = 2 ** (bits - 1)
    lsb = full_range / half
    if bits == 1:  # a comparator: {-range, +range}
        return sign_ste(x) * full_range
    return clip_ste(round_ste(x / lsb), -half, half - 1) * lsb


class ConverterCosts(AbstractCardModule):
    """Per-conversion energy (J), area (m²) and sample rate (S/s) of ADCs by resolution,
    and of a 1-bit DAC. Card kind ``"converters"``.

    Fields ``adc_e4 .. adc_e10`` and ``adc_a4 .. adc_a10`` are the energy and area of a
    4- to 10-bit ADC; bits outside 4..10 extrapolate the end segments log-linearly.
    """

    adc_e4: float; adc_e5: float; adc_e6: float; adc_e7: float; adc_e8: float; adc_e9: float; adc_e10: float
    adc_a4: float; adc_a5: float; adc_a6: float; adc_a7: float; adc_a8: float; adc_a9: float; adc_a10: float
    adc_rate: float
    dac_e1: float
    dac_a1: float
    shift_add_e: float

    card_kind: ClassVar[str] = "converters"
    card_units: ClassVar[dict[str, str]] = {
        **{f"adc_e{b}": "J" for b in range(4, 11)}, **{f"adc_a{b}": "m2" for b in range(4, 11)},
        "adc_rate": "Hz", "dac_e1": "J", "dac_a1": "m2", "shift_add_e": "J",
    }
    card_ranges: ClassVar[dict] = {**{f"adc_e{b}": (0.0, 1e-6) for b in range(4, 11)},
                                   "adc_rate": (1.0, 1e12)}

    def _interp(self, prefix: str, bits: float) -> float:
        xs = np.arange(4, 11, dtype=float)
        ys = np.log(np.array([getattr(self, f"{prefix}{b}") for b in range(4, 11)], dtype=float))
        b = float(bits)
        if b < 4:
            slope = ys[1] - ys[0]
            return float(np.exp(ys[0] + slope * (b - 4)))
        if b > 10:
            slope = ys[-1] - ys[-2]
            return float(np.exp(ys[-1] + slope * (b - 10)))
        return float(np.exp(np.interp(b, xs, ys)))

    def adc_energy(self, bits: int) -> float:
        """Energy of one ADC conversion at ``bits`` resolution, J."""
        return self._interp("adc_e", bits)

    def adc_area(self, bits: int) -> float:
        """Area of one ADC at ``bits`` resolution, m²."""
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
        if self.bits is not None and self.bits < 1:
            raise ValueError(f"UniformDAC.bits = {self.bits}: must be >= 1 or None")
        if self.x_range is not None and not self.x_range > 0:
            raise ValueError(f"UniformDAC.x_range = {self.x_range}: must be > 0 or None (dynamic)")

    def __call__(self, x: Float[Array, "..."]) -> tuple[Float[Array, "..."], Float[Array, ""]]:
        """Returns ``(levels, scale)`` with ``x ≈ levels * scale`` and ``|levels| <= 1``; one
        scale for the whole of ``x`` (any shape: one example's input vectors).

        Dynamic range: ``scale = max |x|``, which is 0 for an all-zero ``x`` (levels 0), so
        that anything referred to the input scale downstream (read noise) vanishes with it.
        """
        if self.x_range is None:
            amax = jnp.max(jnp.abs(x))
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
    """

    bits: int | None = eqx.field(static=True, default=8)
    y_range: float = eqx.field(static=True, default=12.0)

    def __check_init__(self):
        if self.bits is not None and self.bits < 1:
            raise ValueError(f"UniformADC.bits = {self.bits}: must be >= 1 or None")
        if not self.y_range > 0:
            raise ValueError(f"UniformADC.y_range = {self.y_range}: must be > 0")

    @property
    def lsb(self) -> float:
        """Step size in normalized output units (``inf`` bits → 0)."""
        return 0.0 if self.bits is None else self.y_range / 2 ** (self.bits - 1)

    def __call__(self, y: Float[Array, "..."]) -> Float[Array, "..."]:
        """Quantized column outputs (normalized units), same shape as ``y`` (see :func:`quantize`)."""
        return quantize(y, self.bits, self.y_range)

    def ideal(self) -> "UniformADC":
        """Unbounded ADC (``bits=None``: no rounding, no clipping), same ``y_range``."""
        return UniformADC(bits=None, y_range=self.y_range)
