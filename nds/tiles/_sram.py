"""SRAM bit-cell compute tile: 6T array in classify mode (Zhang, Wang & Verma, JSSC 2017).

``y ≈ W x`` on a 6T SRAM array (survey §VI-B, Fig. 36):

* inputs: ``x`` scaled by ``x_range`` (or per vector by ``max |x|``) to WLDAC codes
  (``2^dac_bits - 1`` = 31 for the 5-bit WLDAC); signed inputs in two passes
  (positive and negative parts), ``signed_inputs=False`` for non-negative features;
* weights: scaled by ``max |W|``, quantized to ``weight_bits`` bit planes of ±1 cells:
  ``w_q = sum_b 2^b s_b``, ``s_b in {-1, +1}`` (odd levels ``-(2^B - 1) .. 2^B - 1``), one
  column per plane; plane outputs are combined digitally with weights ``2^b``;
* array: ``mode="current"``: bit-line discharge with the alpha-power cell, V_t mismatch
  and the closed-form non-linear discharge (:class:`nds.arrays.SRAMColumn`);
  ``mode="charge"``: the charge-domain variant of later SRAM CIM designs (each cell's
  ±input on a local capacitor, charge shared along the column,
  :class:`nds.arrays.ChargeSharingArray` with one unit per cell);
* readout: ``"analog"`` (the bit-line difference read exactly), ``"adc"`` (a
  :class:`nds.converters.SARADC` per column), ``"comparator"`` (a sign decision with
  per-chip offset and per-read noise: the chip's weak classifier; output ``±1`` per
  column, *not* in units of ``W x``; needs ``weight_bits = 1`` and ``in <= rows``);
* inputs longer than ``rows`` are split over row blocks (arrays), each read separately and
  added digitally.

Cost (card ``devices/sram_6t_130nm_zhang2017.toml``): per cycle, ``e_wldac`` per word-line
conversion, precharge ``2 c_bl vdd dv_bl_mean`` per column, ``e_comparator`` per decision
(or the ADC's energy per conversion), ``e_vote`` per digital accumulation; ``e_wldac`` is
calibrated so that the MNIST classifier of the paper (81 feature rows + 47 bias rows,
128 columns) costs 630 pJ per ten-way decision (calibration/sram_zhang2017/).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._keys import streams
from .._cards import load_card
from .._checks import MAX_CODE_BITS, maybe_positive, require, require_count
from .._cost_types import Cost
from .._ste import clip_ste, round_ste, sign_ste, absmax
from ..arrays._charge_sharing import ChargeSharingArray, ChargeSharingState
from ..arrays._sram_column import SRAMColumn
from ..converters._sar import SARADC, SARState
from ._abstract import AbstractTile

__all__ = ["SRAMTile", "SRAMState", "weight_planes"]


def weight_planes(w_n: Float[Array, "..."], bits: int) -> Float[Array, "bits ..."]:
    """Bit planes ``s_b in {-1, +1}`` (shape ``(bits, *w_n.shape)``) of normalized weights
    ``w_n`` in [-1, 1]: ``sum_b 2^b s_b`` is the nearest odd level of ``w_n (2^bits - 1)``.

    Straight-through gradient: ``d(sum_b 2^b s_b) / d w_n = 2^bits - 1`` (rounding via
    :func:`nds._ste.round_ste`, spread evenly over the planes).
    """
    top = 2**bits - 1
    k = clip_ste(round_ste((w_n * top + top) / 2), 0.0, float(top))  # 0 .. top, q = 2k - top
    kk = jax.lax.stop_gradient(k).astype(jnp.int32)
    planes = []
    for b in range(bits):
        s = 2.0 * ((kk >> b) & 1).astype(w_n.dtype) - 1.0
        planes.append(s + 2.0 * (k - jax.lax.stop_gradient(k)) / top)
    return jnp.stack(planes)


class SRAMState(eqx.Module):
    """One programmed chip of an :class:`SRAMTile`.

    Attributes:
        w_cells: cell weights, ``(planes, row_blocks, rows, out)`` (±1; real in the ideal).
        dvt: V_t offsets of the BL/BLB-side transistors, ``(planes, row_blocks, 2, rows, out)``
            (V) or None.
        offset: comparator offsets, ``(planes, row_blocks, out)`` (V).
        adc: SAR ADC states, leading shape ``(planes, row_blocks, out)``, or None.
        charge: charge-domain capacitor banks (``mode="charge"``) or None.
        w_scale: ``max |W|`` (weight units).
    """

    w_cells: Float[Array, "p nb rows out"]
    dvt: Float[Array, "p nb 2 rows out"] | None
    offset: Float[Array, "p nb out"]
    adc: SARState | None
    charge: ChargeSharingState | None
    w_scale: Float[Array, ""]


class SRAMTile(AbstractTile):
    """6T SRAM compute tile (see module docstring).

    Fields:
        column: :class:`nds.arrays.SRAMColumn` (the card: cell, bit line, WLDAC, comparator).
        rows, cols: array size (static; 128 × 128 in the paper).
        weight_bits: bit planes per weight (static; 1 = binary ±1 cells; None = unbounded,
            the ideal limit: real-valued cells).
        readout: "analog" | "adc" | "comparator" (static).
        adc: :class:`nds.converters.SARADC` for ``readout="adc"``.
        mode: "current" (bit-line discharge) | "charge" (charge-domain variant) (static).
        charge: :class:`nds.arrays.ChargeSharingArray` for ``mode="charge"`` (its ``w_bits``
            must be 1: one unit capacitor per cell).
        signed_inputs: run negative inputs in a second pass (static).
        x_range: input full scale (static; None = ``max |x|`` per vector).

    Raises:
        ValueError: inconsistent options (message names the option and what is allowed).
    """

    column: SRAMColumn
    rows: int = eqx.field(static=True, default=128)
    cols: int = eqx.field(static=True, default=128)
    weight_bits: int | None = eqx.field(static=True, default=1)
    readout: Literal["analog", "adc", "comparator"] = eqx.field(static=True, default="analog")
    adc: SARADC | None = None
    mode: Literal["current", "charge"] = eqx.field(static=True, default="current")
    charge: ChargeSharingArray | None = None
    signed_inputs: bool = eqx.field(static=True, default=True)
    x_range: float | None = eqx.field(static=True, default=None)

    hardware: ClassVar[str] = "sram"

    def __check_init__(self):
        require_count("SRAMTile", "rows", self.rows, 1)
        require_count("SRAMTile", "cols", self.cols, 1)
        require_count("SRAMTile", "weight_bits", self.weight_bits, 1, MAX_CODE_BITS, none_ok=True,
                      why="bit planes per weight, None = real-valued cells (ideal); float32 holds the "
                          f"combined levels exactly only up to 2**{MAX_CODE_BITS}")
        if self.readout not in ("analog", "adc", "comparator"):
            raise ValueError(f"SRAMTile.readout = {self.readout!r}: allowed 'analog', 'adc', 'comparator'")
        if self.readout == "adc" and self.adc is None:
            raise ValueError("SRAMTile.readout = 'adc' needs an `adc` (nds.converters.SARADC)")
        if self.readout == "comparator" and self.weight_bits != 1:
            raise ValueError(f"SRAMTile.readout = 'comparator' needs weight_bits = 1, got {self.weight_bits}")
        if self.mode not in ("current", "charge"):
            raise ValueError(f"SRAMTile.mode = {self.mode!r}: allowed 'current' or 'charge'")
        if self.mode == "charge":
            if self.charge is None:
                raise ValueError("SRAMTile.mode = 'charge' needs `charge` (nds.arrays.ChargeSharingArray)")
            if self.charge.w_bits not in (1, None):
                raise ValueError(f"SRAMTile charge.w_bits = {self.charge.w_bits}: must be 1 (one unit per cell)")
        if self.x_range is not None:
            require(lambda v: v > 0, "SRAMTile", "x_range", self.x_range, "must be > 0 or None")

    @classmethod
    def from_card(cls, name: str = "sram_6t_130nm_zhang2017", *, column_overrides: dict | None = None,
                  **kwargs: Any) -> "SRAMTile":
        """Build from a ``sram_cim`` card (default: Zhang 2017, 130 nm)."""
        col = load_card(name, SRAMColumn, **(column_overrides or {}))
        return cls(column=col, **kwargs)

    # ------------------------------------------------------------------ helpers
    @property
    def needs_key(self) -> bool:
        """True when read-time noise is on: kT/C (``mode="charge"``), comparator noise
        (``readout="comparator"``) or ADC comparator noise (``readout="adc"``) (see
        AbstractTile.needs_key)."""
        c = self.column
        if self.mode == "charge":
            return bool(self.charge.ktc) or (self.readout == "comparator" and c.noise) or (
                self.readout == "adc" and self.adc.noise)
        if self.readout == "comparator":
            return bool(c.noise) and maybe_positive(c.sigma_noise)
        if self.readout == "adc":
            return bool(self.adc.noise) and maybe_positive(self.adc.sigma_noise)
        return False

    def _n_planes(self) -> int:
        return 1 if self.weight_bits is None else self.weight_bits

    def _code_max(self) -> float:
        return self.column.code_max

    def _charge_array(self) -> ChargeSharingArray:
        ch = self.charge
        return ch if ch.w_bits == 1 or ch.w_bits is None else dataclasses.replace(ch, w_bits=1)

    # ------------------------------------------------------------------ contract
    def program(self, w: Float[Array, "out in"], *, key: PRNGKeyArray | None) -> SRAMState:
        """Map ``w`` (out, in) to cells and sample V_t mismatch, comparator offsets, ADC and
        capacitor mismatch (program time).

        Raises:
            ValueError: ``w`` not 2-D; ``readout = "comparator"`` with more inputs than
                ``rows``; a random effect on and ``key`` None.
        """
        if w.ndim != 2:
            raise ValueError(f"SRAMTile.program: w must be (out, in), got shape {w.shape}")
        out, n_in = w.shape
        if self.readout == "comparator" and n_in > self.rows:
            raise ValueError(f"SRAMTile.readout = 'comparator': in = {n_in} must be <= rows = {self.rows}")
        nb = -(-n_in // self.rows)
        pad = nb * self.rows - n_in
        amax = absmax(w)
        w_scale = amax  # all-zero weights: scale 0, so every output is exactly 0 (see apply)
        w_n = jnp.pad(w / jnp.where(amax > 0, amax, jnp.ones_like(amax)), ((0, 0), (0, pad)))
        if self.weight_bits is None:
            planes = w_n[None]
        else:
            planes = weight_planes(w_n, self.weight_bits)  # (P, out, nb*rows)
        p = planes.shape[0]
        w_cells = planes.reshape(p, out, nb, self.rows).transpose(0, 2, 3, 1)  # (P, nb, rows, out)
        keys = streams(key, "dvt", "offsets", "adc", "charge") if key is not None else [None] * 4
        col = self.column
        dvt = None
        if self.mode == "current" and col.mismatch and maybe_positive(col.a_vt):
            dvt = col.sample_dvt((p, nb, self.rows, out), key=keys[0], dtype=w.dtype)  # (2, P, nb, rows, out)
            dvt = jnp.moveaxis(dvt, 0, 2)
        offset = col.sample_offsets(p * nb * out, key=keys[1], dtype=w.dtype).reshape(p, nb, out) \
            if self.readout == "comparator" else jnp.zeros((p, nb, out), w.dtype)
        adc_state = self.adc.program((p, nb, out), key=keys[2], dtype=w.dtype) if self.readout == "adc" else None
        charge_state = None
        if self.mode == "charge":
            ch = self._charge_array()
            cells = w_cells.transpose(0, 1, 3, 2)  # (P, nb, out, rows)
            charge_state = ch.program(cells, key=keys[3])
        return SRAMState(w_cells=w_cells, dvt=dvt, offset=offset, adc=adc_state, charge=charge_state,
                         w_scale=w_scale)

    def _codes(self, xn: Float[Array, " n"]) -> Float[Array, " n"]:
        cm = self._code_max()
        if self.column.dac_bits is None:
            return jnp.clip(xn, 0.0, None) * cm
        return clip_ste(round_ste(xn * cm), 0.0, cm)

    def swing(self, state: SRAMState, codes: Float[Array, "nb rows"]) -> Float[Array, "p nb out"]:
        """Bit-line difference ``V_BLB - V_BL`` (V) of every plane, row block and column for
        WLDAC codes ``codes`` (noise-free; ``mode="current"`` only).

        Raises:
            ValueError: ``mode="charge"``.
        """
        col = self.column
        if self.mode == "charge":
            raise ValueError("SRAMTile.swing: only for mode='current'")

        def one(wc, d, c):
            return col.differential(c, wc, d)

        if state.dvt is None:
            f = jax.vmap(jax.vmap(lambda wc, c: col.differential(c, wc, None), in_axes=(0, 0)), in_axes=(0, None))
            return f(state.w_cells, codes)
        f = jax.vmap(jax.vmap(one, in_axes=(0, 0, 0)), in_axes=(0, 0, None))
        return f(state.w_cells, state.dvt, codes)

    def _gain(self) -> float:
        """Nominal volts per (cell weight × code) of the analog output."""
        if self.mode == "charge":
            ch = self._charge_array()
            c_tot = ch.c_total(self.rows)
            return ch.c_u * ch.v_ref / (c_tot * self._code_max()) * ch.settling_gain
        return self.column.dv_lsb

    def _pass(self, state: SRAMState, codes: Float[Array, "nb rows"], key) -> Float[Array, "p out"]:
        k1, k2 = streams(key, "array", "readout") if key is not None else (None, None)
        if self.mode == "charge":
            ch = self._charge_array()
            v = codes / self._code_max() * ch.v_ref
            p, nb = state.w_cells.shape[:2]
            keys = jax.random.split(k1, p * nb).reshape(p, nb, -1) if (key is not None and ch.ktc) else None
            if keys is None:
                f = jax.vmap(jax.vmap(lambda s, vv: ch.mac(s, vv, key=None), in_axes=(0, 0)), in_axes=(0, None))
                dv = f(state.charge, v)
            else:
                f = jax.vmap(jax.vmap(lambda s, vv, kk: ch.mac(s, vv, key=kk), in_axes=(0, 0, 0)),
                             in_axes=(0, None, 0))
                dv = f(state.charge, v, keys)
        else:
            dv = self.swing(state, codes)
        if self.readout == "comparator":
            noise = self.column.comparator_noise(dv.shape, key=k2, dtype=dv.dtype)
            return sign_ste(dv - state.offset - noise)[:, 0, :]
        if self.readout == "adc":
            dv = self.adc(state.adc, dv, key=k2)
        return jnp.sum(dv, axis=1) / self._gain()

    def apply(self, state: SRAMState, x: Float[Array, " in"], *, key: PRNGKeyArray | None) -> Float[Array, " out"]:
        """One MVM. Returns ``W x`` (weight × input units), or ``±1`` decisions per column with
        ``readout="comparator"``.

        Zero in, zero out (``readout`` "analog" or "adc"): the result is the combined
        bit-plane code times the weight scale ``max |W|`` times the input scale, so all-zero
        weights, or an all-zero input with the per-vector scale (``x_range=None``), give
        exactly 0. With a fixed ``x_range`` an all-zero input drives no word line: the
        bit lines do not discharge and the analog readout gives exactly 0; an ADC readout
        gives its modelled comparator offset and noise, and ``mode="charge"`` its kT/C
        noise, referred to the output. The comparator readout decides ``±1`` even for a zero
        swing (sign of offset plus noise), as the chip does.

        Raises:
            ValueError: ``x`` not 1-D; read noise on and ``key`` None.
        """
        if x.ndim != 1:
            raise ValueError(f"SRAMTile.apply: x must be 1-D (in,), got shape {x.shape}")
        if self.needs_key and key is None:
            raise ValueError("SRAMTile.apply: this tile has read-time noise, so a `key` is required")
        p, nb, rows, out = state.w_cells.shape
        n_in = x.shape[0]
        if self.x_range is None:
            # per-vector scale; an all-zero input has scale 0 and gives exactly 0 out
            x_scale = jax.lax.stop_gradient(absmax(x))
        else:
            x_scale = jnp.asarray(self.x_range, x.dtype)
        safe = jnp.where(x_scale > 0, x_scale, jnp.ones_like(x_scale))
        xn = jnp.pad(x / safe, (0, nb * rows - n_in)).reshape(nb, rows)
        parts = [(1.0, xn)] + ([(-1.0, -xn)] if self.signed_inputs else [])
        keys = jax.random.split(key, len(parts)) if key is not None else [None] * len(parts)
        y = 0.0
        for (sgn, xp), k in zip(parts, keys):
            y = y + sgn * self._pass(state, self._codes(xp), k)
        if self.readout == "comparator":
            return y
        bits = self._n_planes()
        pw = (2.0 ** jnp.arange(bits, dtype=y.dtype))[:, None]
        levels = 1.0 if self.weight_bits is None else float(2**self.weight_bits - 1)
        return jnp.sum(pw * y, axis=0) * state.w_scale / levels * x_scale / self._code_max()

    def ideal(self) -> "SRAMTile":
        """Unbounded weights and inputs, linear discharge, no mismatch/offset/noise, analog readout."""
        ch = self.charge.ideal() if self.charge is not None else None
        return dataclasses.replace(self, column=self.column.ideal(), weight_bits=None, readout="analog", adc=None,
                                   charge=ch)

    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Float[Array, "out in"] | None = None) -> Cost:
        """Energy, latency, area and counts of ``n_mvm`` MVMs with a ``(out, in)`` matrix (see
        module doc). ``w`` unused (the swing is the card's mean ``dv_bl_mean``)."""
        del w
        out, n_in = w_shape
        c = self.column
        p = self._n_planes()
        passes = 2 if self.signed_inputs else 1
        nb = -(-n_in // self.rows)
        ncb = -(-(out * p) // self.cols)
        wl_conv = float(passes * n_in * ncb * n_mvm)
        decisions = float(passes * out * p * nb * n_mvm)
        e_pre = decisions * 2 * c.c_bl * c.vdd * c.dv_bl_mean
        if self.readout == "adc":
            e_conv = decisions * self.adc.energy_per_conversion()
        elif self.readout == "comparator":
            e_conv = decisions * c.e_comparator
        else:
            e_conv = 0.0
        counts = {"dac_conversions": wl_conv, "macs": float(out * n_in * n_mvm), "cell_reads": float(
            out * p * nb * self.rows * passes * n_mvm), "digital_adds": decisions}
        if self.readout == "adc":
            counts["adc_conversions"] = decisions
        else:
            counts["comparator_decisions"] = decisions
        srcs = tuple(s for s in ((c.card.source if c.card else None),
                                 (self.adc.card.source if self.adc is not None and self.adc.card else None)) if s)
        return Cost(
            counts=counts,
            energy_j={"conversion": wl_conv * c.e_wldac + e_conv, "array": e_pre, "compute": decisions * c.e_vote},
            latency_s=passes * n_mvm / c.f_classify,
            area_m2=nb * ncb * self.rows * self.cols * c.a_cell,
            macs=float(out * n_in * n_mvm), bits_weight=self.weight_bits, bits_activation=c.dac_bits,
            hardware="sram", measured=bool(c.card.measured) if c.card else False, sources=srcs,
        )
