"""Digital tile: the exact (or fixed-point) reference every analog tile is compared with.

``bits_weight``/``bits_activation = None`` computes in floating point; integers quantize
weights per layer (scale ``max |w|``) and activations per vector (scale ``max |x|``)
symmetrically. Cost: one MAC per weight per MVM at the card's energy per MAC (Horowitz,
ISSCC 2014, 45 nm: 8-bit multiply 0.2 pJ + 8-bit add 0.03 pJ; 32-bit float multiply 3.7 pJ
+ add 0.9 pJ) and the card's MAC rate; weights are read from an on-chip buffer once per MVM
row (``e_weight_read`` per weight word), which is what a near-data design avoids.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._cards import AbstractCardModule, load_card
from .._checks import MAX_CODE_BITS, require_count
from .._cost_types import Cost
from .._ste import clip_ste, round_ste, absmax
from ._abstract import AbstractTile

__all__ = ["DigitalMACCosts", "DigitalTile"]


class DigitalMACCosts(AbstractCardModule):
    """Per-MAC energy of a digital datapath and its throughput. Card kind ``"digital_mac"``.

    Fields: ``e_mac_fp32``, ``e_mac_int8`` (J per MAC), ``e_weight_read_32b`` (J per 32-bit
    buffer read of a weight), ``mac_rate`` (MAC/s of the datapath), ``area_per_mac_unit`` (m²).
    """

    e_mac_fp32: float
    e_mac_int8: float
    e_weight_read_32b: float
    mac_rate: float
    area_per_mac_unit: float
    mac_units: int = eqx.field(static=True)

    card_kind: ClassVar[str] = "digital_mac"
    card_units: ClassVar[dict[str, str]] = {
        "e_mac_fp32": "J", "e_mac_int8": "J", "e_weight_read_32b": "J", "mac_rate": "mac/s",
        "area_per_mac_unit": "m2", "mac_units": "1",
    }
    card_ranges: ClassVar[dict] = {"mac_rate": (1.0, 1e18), "mac_units": (1, 1 << 24)}

    def e_mac(self, bits: int | None) -> float:
        """Energy per MAC (J) at ``bits`` (None: fp32). Fixed point: the int8 MAC energy
        scaled by ``(bits / 8)²`` as a whole (the multiply, which dominates, scales about
        quadratically, survey §VII-A; the add's linear scaling is not separated)."""
        if bits is None:
            return self.e_mac_fp32
        return self.e_mac_int8 * (bits / 8.0) ** 2


def _q(x, bits, scale):
    half = 2 ** (bits - 1) - 1
    return clip_ste(round_ste(x / scale * half), -half, half) * scale / half


class DigitalTile(AbstractTile):
    """Exact or fixed-point digital MVM (see module docstring)."""

    bits_weight: int | None = eqx.field(static=True, default=None)
    bits_activation: int | None = eqx.field(static=True, default=None)
    costs: DigitalMACCosts | None = None

    hardware: ClassVar[str] = "digital"

    def __check_init__(self):
        for n in ("bits_weight", "bits_activation"):
            require_count("DigitalTile", n, getattr(self, n), 2, MAX_CODE_BITS, none_ok=True,
                          why=f"None = floating point; integer codes are exact in float32 up to 2**{MAX_CODE_BITS}")

    @property
    def needs_key(self) -> bool:
        """False: digital arithmetic draws no randomness (see AbstractTile.needs_key)."""
        return False

    def program(self, w, *, key=None):
        """Returns the (quantized) weights (out, in); ``key`` unused."""
        del key
        if self.bits_weight is None:
            return w
        s = absmax(w)
        return _q(w, self.bits_weight, jnp.where(s > 0, s, 1.0))

    def apply(self, state, x, *, key=None):
        """``state @ x`` (out, in) @ (in,) → (out,), ``x`` first quantized per vector to
        ``bits_activation`` when set; ``key`` unused (see AbstractTile.apply)."""
        del key
        if self.bits_activation is not None:
            s = absmax(x)
            x = _q(x, self.bits_activation, jnp.where(s > 0, s, 1.0))
        return state @ x

    def ideal(self) -> "DigitalTile":
        """Floating point (no weight or activation quantization), same cost card."""
        return DigitalTile(costs=self.costs)

    def cost(self, w_shape, n_mvm, *, w=None) -> Cost:
        """One MAC per weight per MVM at the card's ``e_mac(bits_weight)`` (``"compute"``),
        one buffer read per weight per MVM (``bits_weight / 32`` 32-bit words, fp32 if unset;
        ``"onchip_memory"``), latency ``macs / mac_rate``; card ``costs`` or ``digital_45nm``
        (see AbstractTile.cost)."""
        out, n_in = w_shape
        cc = self.costs or load_card("digital_45nm", DigitalMACCosts)
        macs = float(n_in * out * n_mvm)
        bits = self.bits_weight
        # each MAC reads its weight from the local buffer (no reuse across MVMs assumed)
        words = n_in * out * n_mvm * ((bits or 32) / 32.0)
        return Cost(
            counts={"macs": macs, "weight_reads_32b": words},
            energy_j={"compute": macs * cc.e_mac(bits), "onchip_memory": words * cc.e_weight_read_32b},
            latency_s=macs / cc.mac_rate, area_m2=cc.mac_units * cc.area_per_mac_unit, macs=macs,
            bits_weight=bits, bits_activation=self.bits_activation, hardware="digital",
            measured=False, sources=(cc.card.source,) if cc.card else (), mac_units=float(cc.mac_units),
        )
