"""Switched-capacitor tile: passive charge-domain MAC digitized by a SAR ADC.

Lee & Wong (ISSCC 2016; IEEE JSSC 52(1), 2017; survey §VI-D): weights are capacitor ratios
(``w_bits``-bit magnitudes as numbers of 300 aF unit capacitors, sign by the differential
side), inputs are voltages (``a_bits``-bit magnitudes; signed inputs in a second pass),
charge sharing accumulates up to ``rows`` products on a summing node
(:class:`nds.arrays.ChargeSharingArray`: mismatch, kT/C, incomplete settling), and a
``bits``-bit SAR ADC (:class:`nds.converters.SARADC`: DAC mismatch, comparator offset and
noise) digitizes each accumulation. Longer inputs are split over ``rows``-long blocks whose
digital results are added.

Energy (:meth:`SwitchedCapTile.cost`): ``C V^2`` per capacitor charging event (the mean
selected capacitance times the mean square input voltage per MAC), ``e_switch`` per MAC
(card lump, calibrated), the switch gate drive ``e_drive`` per MAC (∝ clock, see
:class:`nds.arrays.ChargeSharingArray`), and the ADC's energy per conversion times the
counted conversions. ``tops_per_watt`` = 2 MACs / energy. The card
``devices/sc_lee_wong2016.toml`` is calibrated (``calibration/sc_lee_wong2016/fit.py``) on
the published 8.7 TOPS/W at 1 GHz; its 7.7 TOPS/W at 2.5 GHz is the independent check (the
model predicts 8.45: switch sizing at a fixed supply explains a quarter of the published
drop; see calibration/README.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._keys import streams
from .._cards import load_card
from .._checks import MAX_CODE_BITS, maybe_positive, require, require_count
from .._cost_types import Cost
from .._ste import clip_ste, round_ste, absmax
from ..arrays._charge_sharing import ChargeSharingArray, ChargeSharingState
from ..converters._sar import SARADC, SARState
from ._abstract import AbstractTile

__all__ = ["SwitchedCapTile", "SwitchedCapState", "adc_conversion_reduction"]


def adc_conversion_reduction(n_in: int, n_out: int, rows: int, *, baseline: str = "inputs") -> float:
    """Reduction in A/D conversions from analog accumulation for one ``(n_out, n_in)`` MVM.

    ``baseline="inputs"``: a front end that digitizes every input (a sensor digitizing each
    pixel, ``n_in`` conversions) against digitizing each accumulated output
    (``n_out * ceil(n_in / rows)``). ``baseline="products"``: digitizing every product
    (``n_out * n_in``) against the same. E.g. 256 pixels → 12 features with ``rows >= 256``:
    ``256 / 12 = 21.3`` (the survey's 21×).

    Raises:
        ValueError: non-positive sizes or unknown baseline.
    """
    if min(n_in, n_out, rows) < 1:
        raise ValueError(f"adc_conversion_reduction: n_in={n_in}, n_out={n_out}, rows={rows} must be >= 1")
    acc = n_out * -(-n_in // rows)
    if baseline == "inputs":
        return n_in / acc
    if baseline == "products":
        return n_in * n_out / acc
    raise ValueError(f"adc_conversion_reduction: baseline = {baseline!r}; allowed 'inputs', 'products'")


class SwitchedCapState(eqx.Module):
    """One programmed chip: capacitor banks ``(blocks, out, rows)``, ADC states ``(blocks, out)``
    (or None for an ideal readout) and the weight scale ``max |W|``."""

    banks: ChargeSharingState
    adc: SARState | None
    w_scale: Float[Array, ""]


class SwitchedCapTile(AbstractTile):
    """Charge-domain MAC + SAR ADC tile (see module docstring).

    Fields:
        array: :class:`nds.arrays.ChargeSharingArray` (its ``w_bits``: weight magnitude bits).
        adc: :class:`nds.converters.SARADC` or None (analog readout, the ideal).
        rows: products accumulated per conversion (static).
        a_bits: input magnitude bits (static; None = continuous).
        signed_inputs: negative inputs in a second pass (static).
        x_range: input full scale (static; None = ``max |x|`` per vector).

    Raises:
        ValueError: ``rows`` < 1, ``a_bits`` < 1, ``x_range`` <= 0.
    """

    array: ChargeSharingArray
    adc: SARADC | None
    rows: int = eqx.field(static=True, default=64)
    a_bits: int | None = eqx.field(static=True, default=6)
    signed_inputs: bool = eqx.field(static=True, default=True)
    x_range: float | None = eqx.field(static=True, default=None)

    hardware: ClassVar[str] = "switched_cap"

    def __check_init__(self):
        require_count("SwitchedCapTile", "rows", self.rows, 1)
        require_count("SwitchedCapTile", "a_bits", self.a_bits, 1, MAX_CODE_BITS, none_ok=True,
                      why=f"input magnitude bits, None = continuous; float32 codes are exact up to 2**{MAX_CODE_BITS}")
        if self.x_range is not None:
            require(lambda v: v > 0, "SwitchedCapTile", "x_range", self.x_range, "must be > 0 or None")

    @classmethod
    def from_card(cls, name: str = "sc_lee_wong2016", adc: str | None = "sar_adc_lee_wong2016", *,
                  array_overrides: dict | None = None, adc_overrides: dict | None = None, **kw: Any
                  ) -> "SwitchedCapTile":
        """Build from a ``charge_sharing`` card and a ``sar_adc`` card (defaults: Lee & Wong)."""
        arr = load_card(name, ChargeSharingArray, **(array_overrides or {}))
        a = load_card(adc, SARADC, **(adc_overrides or {})) if adc is not None else None
        return cls(array=arr, adc=a, **kw)

    @property
    def needs_key(self) -> bool:
        """True when kT/C sampling noise or the ADC's comparator noise is on (see
        AbstractTile.needs_key)."""
        return bool(self.array.ktc) or (self.adc is not None and bool(self.adc.noise)
                                        and maybe_positive(self.adc.sigma_noise))

    @property
    def _levels(self) -> float:
        return float(2**self.a_bits - 1) if self.a_bits is not None else 1.0

    def program(self, w: Float[Array, "out in"], *, key: PRNGKeyArray | None) -> SwitchedCapState:
        """Quantize ``w`` to capacitor counts, sample capacitor and ADC mismatch (program time).

        Raises:
            ValueError: ``w`` not 2-D; mismatch on and ``key`` None.
        """
        if w.ndim != 2:
            raise ValueError(f"SwitchedCapTile.program: w must be (out, in), got shape {w.shape}")
        out, n_in = w.shape
        nb = -(-n_in // self.rows)
        amax = absmax(w)
        w_scale = amax  # all-zero weights: scale 0, so every output is exactly 0 (see apply)
        big = self.array.n_units
        n = w / jnp.where(amax > 0, amax, jnp.ones_like(amax)) * big
        if self.array.w_bits is not None:
            n = clip_ste(round_ste(n), -big, big)
        n = jnp.pad(n, ((0, 0), (0, nb * self.rows - n_in))).reshape(out, nb, self.rows).transpose(1, 0, 2)
        k1, k2 = streams(key, "banks", "adc") if key is not None else (None, None)
        banks = self.array.program(n, key=k1)
        adc_state = self.adc.program((nb, out), key=k2, dtype=w.dtype) if self.adc is not None else None
        return SwitchedCapState(banks=banks, adc=adc_state, w_scale=w_scale)

    def _pass(self, state: SwitchedCapState, xn: Float[Array, "nb rows"], key) -> Float[Array, " out"]:
        arr = self.array
        lv = self._levels
        q = jnp.clip(xn, 0.0, None) * lv
        if self.a_bits is not None:
            q = clip_ste(round_ste(q), 0.0, lv)
        v = q / lv * arr.v_ref
        nb = xn.shape[0]
        k1, k2 = streams(key, "ktc", "adc") if key is not None else (None, None)
        if arr.ktc:
            ks = jax.random.split(k1, nb)
            dv = jax.vmap(lambda s, vv, kk: arr.mac(s, vv, key=kk))(state.banks, v, ks)
        else:
            dv = jax.vmap(lambda s, vv: arr.mac(s, vv, key=None))(state.banks, v)
        if self.adc is not None:
            dv = self.adc(state.adc, dv, key=k2)
        gain = arr.c_u * arr.v_ref / (arr.c_total(self.rows) * lv) * arr.settling_gain
        return jnp.sum(dv, axis=0) / gain

    def apply(self, state: SwitchedCapState, x: Float[Array, " in"], *, key: PRNGKeyArray | None) -> Float[Array, " out"]:
        """One MVM, returns ``W x`` (weight × input units).

        Zero in, zero out: the result is the digital code times the weight scale ``max |W|``
        times the input scale, so all-zero weights, or an all-zero input with the per-vector
        scale (``x_range=None``), give exactly 0 whatever the noise. With a fixed
        ``x_range`` an all-zero input gives the modelled offsets: the SAR ADC's comparator
        offset and noise and the kT/C noise of the summing nodes, referred to the output
        (``x_range · max|W| / (gain · N · levels)`` per volt), i.e. zero mean only when the
        offsets are off.

        Raises:
            ValueError: ``x`` not 1-D; noise on and ``key`` None.
        """
        if x.ndim != 1:
            raise ValueError(f"SwitchedCapTile.apply: x must be 1-D (in,), got shape {x.shape}")
        if self.needs_key and key is None:
            raise ValueError("SwitchedCapTile.apply: kT/C or comparator noise is on, so a `key` is required")
        nb, out = state.banks.c_tot_p.shape
        if self.x_range is None:
            # per-vector scale; an all-zero input has scale 0 and gives exactly 0 out
            x_scale = jax.lax.stop_gradient(absmax(x))
        else:
            x_scale = jnp.asarray(self.x_range, x.dtype)
        safe = jnp.where(x_scale > 0, x_scale, jnp.ones_like(x_scale))
        xn = jnp.pad(x / safe, (0, nb * self.rows - x.shape[0])).reshape(nb, self.rows)
        parts = [(1.0, xn)] + ([(-1.0, -xn)] if self.signed_inputs else [])
        keys = jax.random.split(key, len(parts)) if key is not None else [None] * len(parts)
        y = 0.0
        for (sgn, xp), k in zip(parts, keys):
            y = y + sgn * self._pass(state, xp, k)
        return y * state.w_scale / self.array.n_units * x_scale / self._levels

    def ideal(self) -> "SwitchedCapTile":
        """Continuous weights and inputs, no mismatch, kT/C or settling error, no ADC."""
        return dataclasses.replace(self, array=self.array.ideal(), adc=None, a_bits=None)

    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Float[Array, "out in"] | None = None,
             x_mean_square: float = 1.0 / 3.0) -> Cost:
        """Cost of ``n_mvm`` MVMs. ``w`` (optional) sets the mean capacitor count per weight
        (else half the bank); ``x_mean_square``: mean of ``(V_in / v_ref)^2`` (1/3: uniform)."""
        out, n_in = w_shape
        arr = self.array
        passes = 2 if self.signed_inputs else 1
        nb = -(-n_in // self.rows)
        macs = float(out * n_in * n_mvm)
        if w is not None:
            amax = float(jnp.max(jnp.abs(w))) or 1.0
            n_mean = float(jnp.mean(jnp.round(jnp.abs(w) / amax * arr.n_units)))
        else:
            n_mean = arr.n_units / 2
        conv = float(passes * out * nb * n_mvm)
        e_sample = passes * arr.sampling_energy(n_mean, x_mean_square * arr.v_ref**2, macs)
        e_adc = conv * self.adc.energy_per_conversion() if self.adc is not None else 0.0
        srcs = tuple(s for s in ((arr.card.source if arr.card else None),
                                 (self.adc.card.source if self.adc is not None and self.adc.card else None)) if s)
        area = nb * -(-out // 1) * self.rows * 2 * arr.n_units * arr.a_unit + (
            nb * out * self.adc.area if self.adc is not None else 0.0)
        return Cost(
            counts={"macs": macs, "adc_conversions": conv, "capacitor_charges": passes * macs * n_mean},
            energy_j={"array": e_sample, "compute": passes * macs * (arr.e_switch + arr.e_drive), "conversion": e_adc},
            latency_s=passes * n_mvm / arr.f_clk, area_m2=area, macs=macs, bits_weight=arr.w_bits,
            bits_activation=self.a_bits, hardware="switched_cap",
            measured=bool(arr.card.measured) if arr.card else False, sources=srcs,
        )

    def tops_per_watt(self, w_shape: tuple[int, int], *, f_clk: float | None = None, **kw: Any) -> float:
        """Energy efficiency (2 ops per MAC) of one MVM of this shape, TOPS/W; at clock
        ``f_clk`` (Hz; default the card's) with the switches resized for it
        (:meth:`nds.arrays.ChargeSharingArray.at_clock`)."""
        tile = self if f_clk is None else dataclasses.replace(self, array=self.array.at_clock(f_clk))
        c = tile.cost(w_shape, 1, **kw)
        return 2 * c.macs / c.energy_total_j / 1e12

    def adc_conversion_reduction(self, w_shape: tuple[int, int], *, baseline: str = "inputs") -> float:
        """See :func:`adc_conversion_reduction`."""
        out, n_in = w_shape
        return adc_conversion_reduction(n_in, out, self.rows, baseline=baseline)
