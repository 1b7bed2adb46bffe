"""Capacitor gain cell: an analog voltage written every token, leaking away between writes.

The storage element of the gain-cell KV cache of Leroux et al., "Analog in-memory computing
attention mechanism for fast and energy-efficient large language models", Nat. Comput. Sci.
5, 813–824 (2025) (arXiv:2409.19315): a key or value element is stored as the voltage of a
storage capacitor and multiplies the read input through the read transistor's current.

Physics (per stored element, voltages in V, signed values normalized to [−1, 1]):

* Representation: the stored voltage ``V = v_offset + x · (v_max − v_offset)`` represents
  the signed value ``x``; the paper stores K and V on ``[0, v_max] = [0, 0.9] V`` with
  ``v_offset = 0.45 V`` (``V_DD/2``) as zero.
* Write DAC: ``x`` is quantized to ``2**kv_bits`` levels uniformly spaced on ``[−1, 1]``
  (the paper: 8 levels between 0 and 0.9 V; with an even number of levels ``x = 0`` is not
  representable, as in the paper's quantizer).
* Write noise: each write adds ``N(0, sigma_write²)`` (V) (charge injection and threshold
  variation of the write transistor; the value is an assumption of the card, see its notes)
  and the thermal noise sampled when the write transistor opens, ``N(0, k_B T / c_store)``
  (kT/C; e.g. Johns & Martin, Analog Integrated Circuit Design, 1997, §1.6).
* Retention: the capacitor leaks; the signed stored value decays as
  ``x(Δt) = x(0) · exp(−Δt / tau_retention)`` with ``Δt`` the time since the write (the
  paper's decay model: the signed value, ``V − v_offset``, is multiplied by an exponential
  decay factor per elapsed token).

All quantities in SI.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import maybe_positive
from .._cards import AbstractCardModule
from .._keys import streams
from .._ste import clip_ste, round_ste
from ._capacitor import K_BOLTZMANN

__all__ = ["GainCell", "quantize_levels"]


def quantize_levels(x: Float[Array, "..."], n_levels: int | None) -> Float[Array, "..."]:
    """``x`` clipped to ``[−1, 1]`` and rounded to ``n_levels`` levels uniformly spaced on
    ``[−1, 1]`` (straight-through gradients); ``None`` returns ``x`` unchanged.

    Raises:
        ValueError: ``n_levels`` < 2.
    """
    if n_levels is None:
        return x
    if n_levels < 2:
        raise ValueError(f"quantize_levels: n_levels = {n_levels}, must be >= 2 or None")
    step = 2.0 / (n_levels - 1)
    return round_ste((clip_ste(x, -1.0, 1.0) + 1.0) / step) * step - 1.0


class GainCell(AbstractCardModule):
    """A capacitor gain cell holding one K or V element. Card kind ``"gain_cell"``.

    Fields (SI):
        v_max: top of the storage voltage range, V (stored voltages lie in ``[0, v_max]``).
        v_offset: the voltage that represents zero, V (``0 < v_offset < v_max``).
        c_store: storage-node capacitance, F (sets the kT/C noise and the write energy).
        sigma_write: standard deviation of the write error, V.
        temperature: K.
        tau_retention: time constant of the exponential decay of the stored signed value, s.
        t_layer: attention latency per token of one layer (all heads in parallel), s.
        kv_bits: write resolution, ``2**kv_bits`` levels (static).
        write_noise, ktc: sample the write error / the kT/C noise (static switches).

    Raises:
        ValueError: a non-positive ``c_store``, ``temperature``, ``tau_retention`` or
            ``t_layer``, a negative ``sigma_write``, ``v_offset`` outside ``(0, v_max)`` or
            ``kv_bits`` < 1 (concrete values only).
    """

    v_max: float
    v_offset: float
    c_store: float
    sigma_write: float
    temperature: float
    tau_retention: float
    t_layer: float
    kv_bits: int | None = eqx.field(static=True, default=3)
    write_noise: bool = eqx.field(static=True, default=True)
    ktc: bool = eqx.field(static=True, default=True)
    retention: bool = eqx.field(static=True, default=True)

    card_kind: ClassVar[str] = "gain_cell"
    card_units: ClassVar[dict[str, str]] = {
        "v_max": "V", "v_offset": "V", "c_store": "F", "sigma_write": "V", "temperature": "K",
        "tau_retention": "s", "t_layer": "s", "kv_bits": "1",
    }
    card_ranges: ClassVar[dict] = {"v_max": (0.0, 10.0), "c_store": (0.0, 1e-9), "sigma_write": (0.0, 1.0),
                                   "temperature": (0.0, 1000.0), "tau_retention": (0.0, None),
                                   "t_layer": (0.0, 1.0), "kv_bits": (1, 16)}

    def __check_init__(self):
        for n in ("c_store", "temperature", "tau_retention", "t_layer"):
            v = getattr(self, n)
            if isinstance(v, (int, float)) and not v > 0:
                raise ValueError(f"GainCell.{n} = {v!r}: must be > 0")
        if isinstance(self.sigma_write, (int, float)) and self.sigma_write < 0:
            raise ValueError(f"GainCell.sigma_write = {self.sigma_write!r} V: must be >= 0")
        if isinstance(self.v_offset, (int, float)) and isinstance(self.v_max, (int, float)) and not (
                0 < self.v_offset < self.v_max):
            raise ValueError(f"GainCell.v_offset = {self.v_offset!r} V: must lie in (0, v_max = {self.v_max!r} V)")
        if self.kv_bits is not None and self.kv_bits < 1:
            raise ValueError(f"GainCell.kv_bits = {self.kv_bits!r}: must be >= 1 or None")

    @property
    def v_half(self) -> float:
        """Voltage span of one unit of the signed normalized value, ``v_max − v_offset``, V."""
        return self.v_max - self.v_offset

    @property
    def is_noisy(self) -> bool:
        """Whether a write draws randomness (write error or kT/C on)."""
        return bool(self.write_noise and maybe_positive(self.sigma_write)) or bool(self.ktc)

    def ktc_variance(self) -> Float[Array, ""]:
        """kT/C noise variance of one write, V² (``k_B T / c_store``)."""
        return K_BOLTZMANN * self.temperature / self.c_store

    def write_sigma_normalized(self) -> Float[Array, ""]:
        """Standard deviation of the total write noise in normalized units:
        ``sqrt(sigma_write² + k_B T / c_store) / v_half`` (only the switched-on terms)."""
        var = jnp.zeros(())
        if self.write_noise:
            var = var + jnp.asarray(self.sigma_write) ** 2
        if self.ktc:
            var = var + self.ktc_variance()
        return jnp.sqrt(var) / self.v_half

    def write(self, x: Float[Array, "..."], *, key: PRNGKeyArray | None) -> Float[Array, "..."]:
        """Write signed normalized values ``x`` (any shape, nominally in ``[−1, 1]``): quantize
        to ``2**kv_bits`` levels, add the write error and the kT/C noise (normalized units).

        Raises:
            ValueError: a noise term is on and ``key`` is None.
        """
        xq = quantize_levels(x, None if self.kv_bits is None else 2**self.kv_bits)
        if not self.is_noisy:
            return xq
        if key is None:
            raise ValueError("GainCell.write: write noise / kT/C is on; pass key=...")
        k_w, k_t = streams(key, "write_noise", "ktc")
        out = xq
        if self.write_noise and maybe_positive(self.sigma_write):  # a traced sigma draws (scaled by it)
            out = out + (self.sigma_write / self.v_half) * jax.random.normal(k_w, x.shape, x.dtype)
        if self.ktc:
            out = out + (jnp.sqrt(self.ktc_variance()) / self.v_half) * jax.random.normal(k_t, x.shape, x.dtype)
        return out

    def decay(self, dt: Float[Array, "..."]) -> Float[Array, "..."]:
        """Retention factor of a stored signed value ``dt`` seconds after its write:
        ``exp(−dt / tau_retention)`` (1 when retention is switched off)."""
        dt = jnp.asarray(dt)
        if not self.retention:
            return jnp.ones_like(dt)
        return jnp.exp(-dt / self.tau_retention)

    def voltage(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """Storage-node voltage (V) of the signed normalized value ``x``."""
        return self.v_offset + x * self.v_half

    def ideal(self) -> "GainCell":
        """No write noise, no kT/C, no leakage, unbounded write resolution."""
        return dataclasses.replace(self, kv_bits=None, write_noise=False, ktc=False, retention=False)
