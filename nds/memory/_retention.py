"""DRAM retention errors and refresh energy.

A DRAM cell holds its bit as charge that leaks; a cell whose retention time is shorter than
the refresh interval loses its bit. Model (card kind ``"dram_retention"``):

* retention time of a cell at the reference temperature ``T0`` is log-normal (the leaky-cell
  tail of Hamamoto et al., IEEE TED 1998): ``P(t_ret < t) = Phi((ln(t / 1 s) - mu_ln) /
  sigma_ln)``; the card fits ``mu_ln, sigma_ln`` to a published retention-time distribution
  (see the card's ``source`` and ``calibration/dram_retention/``);
* temperature (Arrhenius, activation energy ``Ea``): retention at ``T`` is shorter by
  ``A(T) = exp(Ea / k_B (1/T0 - 1/T))``, i.e. an interval ``t`` at ``T`` acts as ``t A(T)``
  at ``T0``;
* manufacturers repair every cell that fails the nominal refresh interval at the nominal
  (maximum normal) temperature (JEDEC: 64 ms at 85 °C), so the bit-error probability is
  ``BER(t, T) = max(F(t A(T)) - F_s, 0) / (1 - F_s)`` with ``F_s = F(t_nom A(T_nom))``: exactly
  zero at or below the nominal interval and temperature;
* a failing cell flips its bit (both directions equally: true and anti cells; the
  data-pattern dependence is not modelled);
* refresh energy = ``refresh_energy_per_bit`` x bits x refreshes (= duration / interval).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Int, PRNGKeyArray

from .._keys import streams
from .._cards import AbstractCardModule

__all__ = ["DRAMRetention", "retention_flip"]

_KB = 1.380649e-23  # J/K


class DRAMRetention(AbstractCardModule):
    """Retention-time distribution, temperature dependence and refresh energy of a DRAM.

    Card parameters: ``mu_ln`` and ``sigma_ln`` (log-normal of ``ln(t_ret / 1 s)`` at
    ``reference_temperature``, dimensionless), ``reference_temperature`` (K),
    ``activation_energy`` (J), ``nominal_refresh`` (s), ``nominal_temperature`` (K),
    ``refresh_energy_per_bit`` (J per bit per refresh).
    """

    mu_ln: float
    sigma_ln: float
    reference_temperature: float
    activation_energy: float
    nominal_refresh: float
    nominal_temperature: float
    refresh_energy_per_bit: float

    card_kind: ClassVar[str] = "dram_retention"
    card_units: ClassVar[dict[str, str]] = {
        "mu_ln": "1", "sigma_ln": "1", "reference_temperature": "K", "activation_energy": "J",
        "nominal_refresh": "s", "nominal_temperature": "K", "refresh_energy_per_bit": "J/bit",
    }
    card_ranges: ClassVar[dict] = {
        "sigma_ln": (1e-6, None), "reference_temperature": (1.0, None), "activation_energy": (0.0, None),
        "nominal_refresh": (1e-9, None), "nominal_temperature": (1.0, None),
        "refresh_energy_per_bit": (0.0, None),
    }

    def acceleration(self, temperature_k):
        """``A(T)``: factor by which retention shortens at ``temperature_k`` vs the card's
        reference temperature (> 1 when hotter)."""
        return jnp.exp(self.activation_energy / _KB * (1.0 / self.reference_temperature - 1.0 / temperature_k))

    def retention_cdf(self, t_s, temperature_k):
        """Fraction of cells (before repair) with retention time below ``t_s`` seconds at
        ``temperature_k``."""
        te = jnp.asarray(t_s) * self.acceleration(temperature_k)
        return ndtr((jnp.log(te) - self.mu_ln) / self.sigma_ln)

    def ber(self, refresh_interval_s, temperature_k):
        """Bit-error probability of a stored bit refreshed every ``refresh_interval_s`` at
        ``temperature_k`` (after repair of cells failing the nominal refresh; module doc).

        Raises:
            ValueError: a non-positive interval or temperature (when concrete).
        """
        _check_pos("refresh_interval_s", refresh_interval_s)
        _check_pos("temperature_k", temperature_k)
        fs = self.retention_cdf(self.nominal_refresh, self.nominal_temperature)
        f = self.retention_cdf(refresh_interval_s, temperature_k)
        return jnp.maximum(f - fs, 0.0) / (1.0 - fs)

    def refresh_power(self, capacity_bytes: float, refresh_interval_s: float) -> float:
        """Average refresh power (W) of ``capacity_bytes`` refreshed every ``refresh_interval_s``."""
        _check_pos("capacity_bytes", capacity_bytes)
        _check_pos("refresh_interval_s", refresh_interval_s)
        return 8.0 * capacity_bytes * float(self.refresh_energy_per_bit) / float(refresh_interval_s)

    def refresh_energy(self, capacity_bytes: float, duration_s: float, refresh_interval_s: float) -> float:
        """Refresh energy (J) of ``capacity_bytes`` over ``duration_s`` seconds.

        Raises:
            ValueError: ``duration_s`` < 0 (or NaN); ``capacity_bytes`` or
                ``refresh_interval_s`` <= 0 (when a concrete number; see :meth:`refresh_power`).
        """
        if not duration_s >= 0:
            raise ValueError(f"duration_s = {duration_s!r}; must be >= 0")
        return self.refresh_power(capacity_bytes, refresh_interval_s) * float(duration_s)

    def flip(self, x_int, refresh_interval_s, temperature_k, *, key: PRNGKeyArray):
        """:func:`retention_flip` of ``x_int`` at this card's BER for the interval and
        temperature."""
        return retention_flip(x_int, self.ber(refresh_interval_s, temperature_k), key=key)


def _check_pos(name, v) -> None:
    if isinstance(v, (int, float, np.floating, np.integer)) and not v > 0:
        raise ValueError(f"{name} = {v!r}; must be > 0")


_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def retention_flip(x_int: Int[Array, "..."], ber, *, key: PRNGKeyArray) -> Int[Array, "..."]:
    """Flip each bit of the stored integers ``x_int`` independently with probability ``ber``.

    Args:
        x_int: integer array (int8, int16, int32 or unsigned), e.g. int-quantized weights or
            activations as stored in DRAM; any shape.
        ber: bit-error probability in [0, 1] (Python float or a scalar array). A concrete
            float is compared exactly to 64-bit random integers, so probabilities down to
            2^-64 are honoured; a traced value uses a float32 uniform (resolution ~1e-7).
        key: PRNG key; the same key gives the same flips.

    Returns:
        An array of the same shape and dtype with the flipped bits (two's complement).

    Raises:
        TypeError: ``x_int`` is not an integer array of 1, 2 or 4 bytes.
        ValueError: a concrete ``ber`` outside [0, 1].
    """
    x = jnp.asarray(x_int)
    if not jnp.issubdtype(x.dtype, jnp.integer) or x.dtype.itemsize not in _UINT:
        raise TypeError(f"retention_flip: x_int has dtype {x.dtype}; allowed: int8/16/32, uint8/16/32")
    nbits = 8 * x.dtype.itemsize
    ut = _UINT[x.dtype.itemsize]
    shape = x.shape + (nbits,)
    concrete = None
    try:
        concrete = float(ber)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        concrete = None
    if concrete is not None:
        if not 0.0 <= concrete <= 1.0:
            raise ValueError(f"retention_flip: ber = {concrete!r}; must be in [0, 1]")
        th = min(int(concrete * 2.0**64), 2**64 - 1) if concrete < 1.0 else None
        if th is None:
            flips = jnp.ones(shape, bool)
        else:
            k1, k2 = streams(key, "bits_hi", "bits_lo")
            hi = jax.random.bits(k1, shape, jnp.uint32)
            lo = jax.random.bits(k2, shape, jnp.uint32)
            th_hi, th_lo = np.uint32(th >> 32), np.uint32(th & 0xFFFFFFFF)
            flips = (hi < th_hi) | ((hi == th_hi) & (lo < th_lo))
    else:
        flips = jax.random.uniform(key, shape) < ber
    weights = (jnp.ones((), ut) << jnp.arange(nbits, dtype=ut))
    mask = jnp.sum(jnp.where(flips, weights, jnp.zeros((), ut)), axis=-1, dtype=ut)
    ux = jax.lax.bitcast_convert_type(x, ut)
    return jax.lax.bitcast_convert_type(ux ^ mask, x.dtype)
