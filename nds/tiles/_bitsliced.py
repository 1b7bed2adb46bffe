"""Bit-sliced resistive crossbar tile (ISAAC / PRIME style): integer weights over several
cells, bit-serial inputs, one ADC conversion per column per cycle per slice, shift-and-add.

Forward for one example (``x``: (p, in), the p MVMs of one example sharing an input scale):

1. Inputs → integers ``x_int`` (``input_bits``, per-example abs-max scale) → cycles of
   ``dac_bits``-bit digits (:class:`nds.mapping.InputSlicing`); cycle ``j`` drives word line
   ``i`` at ``v = d_ij · v_read / (2^a − 1)`` (a 1-bit DAC: 0 or ``v_read``).
2. Weights → integers ``w_int`` (``weight_bits``) → ``S`` slices of ``bits_per_cell``
   digits on one array per slice (offset encoding) or a positive and a negative array per
   slice (differential) (:class:`nds.mapping.BitSliceMapping`); digit ``d`` is the
   conductance ``g_min + d/(2^b − 1)(g_max − g_min)``, programmed with the cell's error,
   faults and optional write-verify; each array's transfer matrix comes from the wire
   model (``M = g`` for ideal wires, exact IR drop for :class:`nds.arrays.ResistiveWires`).
3. Column currents, minus an ideal reference column at ``g_min`` (cancels the ``g_min``
   offset current; differential pairs subtract their two arrays instead), in units of one
   digit product ``v_read g_span / ((2^a − 1)(2^b − 1))``, plus the cells' C2C read noise.
4. ADC: ``adc_bits`` on ``[0, 2^N − 1]·adc_lsb`` (offset) or ``[−2^(N−1), 2^(N−1) − 1]·adc_lsb``
   (differential), rounding to multiples of ``adc_lsb`` (digit products; 1 = exact integer
   partial sums), with an optional static offset (``adc_offset``, in LSB) and Gaussian
   noise (``adc_noise``, LSB rms).
5. Shift-and-add: ``y_int = Σ_j c_j Σ_k 2^(b k) Σ_blocks code_jk`` (``c_j``: cycle
   weights, negative for the sign cycle), minus the offset-encoding bias
   ``2^(B−1) Σ_i x_int,i`` (computed digitally), times ``s_w/Q_w · s_x/Q_x``.

With ideal cells and wires, no noise and ``adc_bits >= adc_bits_exact`` (LSB 1), the output
equals ``w_int @ x_int`` exactly (integer arithmetic). One LSB of ADC error in every
conversion shifts each output by ``Σ_j c_j · Σ_k 2^(b k) · rb`` integer units (``rb`` row
blocks) for the offset encoding and by 0 for the differential one when the offset is common
to both arrays of a pair (it is applied once to the difference here, so also
``Σ_j c_j Σ_k 2^(b k) rb``); Gaussian ADC noise of σ LSB gives output variance
``σ² rb Σ_j c_j² Σ_k 4^(b k)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._cards import AbstractCardModule
from .._cost_types import Cost
from .._ste import clip_ste, round_ste
from ..arrays._crossbar import ResistiveCrossbar
from ..cells._faults import FaultModel
from ..cells._resistive import AbstractResistiveCell
from ..cells._write_verify import WriteVerify
from ..converters._uniform import ConverterCosts
from ..mapping._bitslice import BitSliceMapping, InputSlicing, adc_bits_exact
from ..arrays._partition import pad_to
from ._abstract import AbstractTile

__all__ = ["BitSliceDesign", "BitSlicedState", "BitSlicedTile"]


def _safe_sqrt(v):
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


class BitSliceDesign(AbstractCardModule):
    """A bit-sliced accelerator design (card kind ``"bitsliced_design"``): array size,
    slicing, converters. All dimensionless integers except ``adc_lsb`` (digit products).

    Fields: ``rows``, ``cols``, ``bits_per_cell``, ``weight_bits``, ``input_bits``,
    ``dac_bits``, ``adc_bits``, ``adc_lsb``, ``columns_per_adc``, ``output_bits`` (buffer
    word per output), ``differential`` (0 offset / 1 differential encoding),
    ``signed_inputs`` (0/1).
    """

    rows: int
    cols: int
    bits_per_cell: int
    weight_bits: int
    input_bits: int
    dac_bits: int
    adc_bits: int
    adc_lsb: float
    columns_per_adc: int
    output_bits: int
    differential: int
    signed_inputs: int

    card_kind: ClassVar[str] = "bitsliced_design"
    card_units: ClassVar[dict[str, str]] = {k: "1" for k in (
        "rows", "cols", "bits_per_cell", "weight_bits", "input_bits", "dac_bits", "adc_bits", "adc_lsb",
        "columns_per_adc", "output_bits", "differential", "signed_inputs")}
    card_ranges: ClassVar[dict] = {
        "rows": (1, 1 << 16), "cols": (1, 1 << 16), "bits_per_cell": (1, 16), "weight_bits": (2, 32),
        "input_bits": (1, 32), "dac_bits": (1, 16), "adc_bits": (1, 32), "adc_lsb": (1e-9, 1e12),
        "columns_per_adc": (1, 1 << 16), "output_bits": (1, 64), "differential": (0, 1), "signed_inputs": (0, 1),
    }


class BitSlicedState(eqx.Module):
    """Programmed state of a :class:`BitSlicedTile` (one chip).

    Attributes:
        g_prog: (E, S, in, out) programmed conductances (S); E planes (1 offset, 2
            differential), S slices.
        nu: (E, S, in, out) drift exponents.
        g: (E, S, in, out) conductances at ``t`` (S).
        m: (E, S, rb, r, out) per-array transfer matrices (S).
        w_step: weight units per integer weight step (``s_w / Q_w``).
        t: seconds since programming.
    """

    g_prog: Float[Array, "E S n_in n_out"]
    nu: Float[Array, "E S n_in n_out"]
    g: Float[Array, "E S n_in n_out"]
    m: Float[Array, "E S rb r n_out"]
    w_step: Float[Array, ""]
    t: Float[Array, ""]


class BitSlicedTile(AbstractTile):
    """Bit-sliced crossbar tile (see the module docstring).

    Attributes:
        cell: the resistive device (its ``levels`` is ignored: a cell holds ``2^b`` levels).
        array: array size and wire model.
        weights: :class:`BitSliceMapping` (weight bits, bits per cell, sign encoding).
        inputs: :class:`InputSlicing` (input bits, bits per cycle, signedness).
        adc_bits: ADC resolution; ``None`` = no conversion error (ideal).
        adc_lsb: ADC step in digit products (1 = exact integer partial sums).
        adc_offset: static ADC offset (LSB) added to every conversion.
        adc_noise: Gaussian ADC noise per conversion (LSB rms, read time).
        columns_per_adc: columns sharing one ADC (latency, ADC area).
        output_bits: bits per output word written to the buffer (cost only).
        converter_costs: ADC/DAC/shift-add card (default ``converters_isaac32nm``).
        buffer: optional on-chip buffer (e.g. ``nds.memory.EDRAM`` from ``mem_edram_isaac``):
            inputs read and outputs written once per MVM (cost only).
        faults, write_verify: as :class:`nds.tiles.CrossbarTile`.

    Raises:
        ValueError: ``adc_lsb <= 0``, negative noise, ``adc_bits < 1``,
            ``columns_per_adc < 1``.
    """

    cell: AbstractResistiveCell
    array: ResistiveCrossbar = ResistiveCrossbar(rows=128, cols=128)
    weights: BitSliceMapping = BitSliceMapping()
    inputs: InputSlicing = InputSlicing()
    adc_bits: int | None = eqx.field(static=True, default=None)
    adc_lsb: float = eqx.field(static=True, default=1.0)
    adc_offset: float = 0.0
    adc_noise: float = 0.0
    columns_per_adc: int = eqx.field(static=True, default=1)
    output_bits: int = eqx.field(static=True, default=16)
    converter_costs: ConverterCosts | None = None
    buffer: Any = None
    faults: FaultModel | None = None
    write_verify: WriteVerify | None = None

    hardware: ClassVar[str] = "bitsliced"

    def __check_init__(self):
        if not self.adc_lsb > 0:
            raise ValueError(f"BitSlicedTile.adc_lsb = {self.adc_lsb}: must be > 0 (digit products)")
        if self.adc_bits is not None and self.adc_bits < 1:
            raise ValueError(f"BitSlicedTile.adc_bits = {self.adc_bits}: must be >= 1 or None")
        if not isinstance(self.adc_noise, jax.core.Tracer) and float(self.adc_noise) < 0:
            raise ValueError(f"BitSlicedTile.adc_noise = {self.adc_noise}: must be >= 0 (LSB rms)")
        if self.columns_per_adc < 1:
            raise ValueError(f"BitSlicedTile.columns_per_adc = {self.columns_per_adc}: must be >= 1")

    @classmethod
    def from_design(cls, design: BitSliceDesign, cell: AbstractResistiveCell, **kw) -> "BitSlicedTile":
        """Build the tile of a design card (:class:`BitSliceDesign`) with ``cell``; ``kw``
        sets or overrides fields (``array`` wires via ``wires=``, ``converter_costs``,
        ``buffer``, ``faults``, noise, ``adc_bits``)."""
        wires = kw.pop("wires", None)
        arr = ResistiveCrossbar(rows=int(design.rows), cols=int(design.cols),
                                **({} if wires is None else {"wires": wires}))
        fields = dict(
            cell=cell, array=arr,
            weights=BitSliceMapping(weight_bits=int(design.weight_bits), bits_per_cell=int(design.bits_per_cell),
                                    encoding="differential" if int(design.differential) else "offset"),
            inputs=InputSlicing(input_bits=int(design.input_bits), dac_bits=int(design.dac_bits),
                                signed=bool(int(design.signed_inputs))),
            adc_bits=int(design.adc_bits), adc_lsb=float(design.adc_lsb),
            columns_per_adc=int(design.columns_per_adc), output_bits=int(design.output_bits),
        )
        fields.update(kw)
        return cls(**fields)

    @property
    def name(self) -> str:
        """Report name, ``"bitsliced-<cell card kind>"`` (e.g. ``"bitsliced-rram"``)."""
        return f"bitsliced-{self.cell.card_kind or type(self.cell).__name__.lower()}"

    @property
    def needs_key(self) -> bool:
        """True when ADC noise or the cell's C2C read noise is on (see AbstractTile.needs_key)."""
        return bool(float(self.adc_noise) > 0 or float(self.cell.read_noise_c2c) > 0)

    @property
    def adc_bits_needed(self) -> int:
        """ADC bits for exact partial sums at LSB 1 (:func:`nds.mapping.adc_bits_exact`)."""
        a = self.inputs.dac_bits if self.inputs.input_bits is not None else 1
        b = self.weights.bits_per_cell if self.weights.weight_bits is not None else 1
        return adc_bits_exact(self.array.rows, a, b, signed=self.weights.encoding == "differential")

    # ------------------------------------------------------------------ program time
    def program(self, w: Float[Array, "out in"], *, key: PRNGKeyArray | None) -> BitSlicedState:
        """Quantize, slice and program ``w`` (out, in). ``key`` draws programming error,
        drift exponents and faults; ``None`` skips the programming-error and drift draws (not
        an error).

        Raises:
            ValueError: ``key`` is None with ``write_verify`` set or with non-ideal ``faults``.
        """
        c = self.cell
        w_int, s = self.weights.integers(w)
        d = self.weights.digits(w_int)  # (E, S, in, out)
        g_t = c.g_min + (c.g_max - c.g_min) * d / self.weights.digit_max
        if self.write_verify is not None:
            if key is None:
                raise ValueError("BitSlicedTile.program: write_verify samples pulses; pass key=...")
            g_prog = self.write_verify.program(g_t, c.g_min, c.g_max, key=jax.random.fold_in(key, 2)).g
            nu = c.sample_nu(g_t, key=jax.random.split(key)[1])
        else:
            g_prog, nu = c.program(g_t, key=key)
        if self.faults is not None and not self.faults.is_ideal:
            if key is None:
                raise ValueError("BitSlicedTile.program: faults are sampled per chip; pass key=...")
            g_prog, nu, _ = self.faults.apply(g_prog, nu, c.g_min, c.g_max, key=jax.random.fold_in(key, 1))
        return self._finish(g_prog, nu, g_prog, s / self.weights.q, 0.0)

    def _finish(self, g_prog, nu, g, w_step, t):
        m = jax.vmap(jax.vmap(self.array.effective))(g)
        return BitSlicedState(g_prog=g_prog, nu=nu, g=g, m=m, w_step=w_step, t=jnp.asarray(t, g.dtype))

    def drift(self, state: BitSlicedState, t, *, key: PRNGKeyArray | None = None) -> BitSlicedState:
        """State ``t`` s after programming (no drift compensation: the ADC grid is fixed)."""
        g = self.cell.at_time(state.g_prog, state.nu, t, key=key)
        return self._finish(state.g_prog, state.nu, g, state.w_step, t)

    # ------------------------------------------------------------------ read time
    def apply(self, state: BitSlicedState, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None
              ) -> Float[Array, " n_out"]:
        """One MVM ``x`` (in,) → ``y ≈ W x`` (out,)."""
        return self.apply_batch(state, x[None], key=key)[0]

    def column_codes(self, state: BitSlicedState, x: Float[Array, "p n_in"], *, key: PRNGKeyArray | None):
        """ADC outputs before shift-and-add: ``(codes, x_int, x_scale)`` with ``codes`` of
        shape (J, S, p, rb, out) in digit products (multiples of ``adc_lsb``).

        Raises:
            ValueError: ``key`` is None while the tile has read noise (:attr:`needs_key`).
        """
        c = self.cell
        x_int, xs = self.inputs.integers(x)
        xd = self.inputs.digits(x_int)  # (J, p, n)
        v_unit = c.v_read / self.inputs.digit_max
        v = xd * v_unit
        E, S, rb, r = state.m.shape[:4]
        J, p = v.shape[0], v.shape[1]
        vb = pad_to(v, 2, rb * r).reshape(J, p, rb, r)
        g_span = c.g_max - c.g_min
        unit = v_unit * g_span / self.weights.digit_max  # A per digit product
        if self.array.wires.is_linear:
            i = jnp.einsum("jpbr,esbrc->jespbc", vb, state.m)
        else:
            rd = lambda g2, vv: self.array.read(g2, vv)  # (p, rb, out)
            i = jax.vmap(lambda vv: jax.vmap(jax.vmap(lambda g2: rd(g2, vv)))(state.g))(v)
        i_ref = c.g_min * vb.sum(axis=-1)  # (J, p, rb): ideal reference column at g_min
        cn = (i - i_ref[:, None, None, :, :, None]) / unit  # (J, E, S, p, rb, out)
        need_key = self.needs_key
        if need_key and key is None:
            raise ValueError("BitSlicedTile.apply: this tile has read noise; pass key=...")
        if need_key:
            k1, k2 = jax.random.split(key)
        if float(c.read_noise_c2c) > 0:
            var = jnp.einsum("jpbr,esbrc->jespbc", vb**2, state.m**2) * (c.read_noise_c2c / unit) ** 2
            cn = cn + _safe_sqrt(var) * jax.random.normal(k1, cn.shape, cn.dtype)
        if self.weights.encoding == "differential":
            col = cn[:, 0] - cn[:, 1]
        else:
            col = cn[:, 0]
        if float(self.adc_noise) > 0:
            col = col + self.adc_noise * self.adc_lsb * jax.random.normal(k2, col.shape, col.dtype)
        return self._adc(col), x_int, xs

    def _adc(self, col):
        col = col + self.adc_offset * self.adc_lsb
        if self.adc_bits is None:
            return col
        n = self.adc_bits
        if self.weights.encoding == "differential":
            lo, hi = -(2 ** (n - 1)), 2 ** (n - 1) - 1
        else:
            lo, hi = 0, 2**n - 1
        return clip_ste(round_ste(col / self.adc_lsb), lo, hi) * self.adc_lsb

    def apply_batch(self, state: BitSlicedState, x: Float[Array, "p n_in"], *, key: PRNGKeyArray | None
                    ) -> Float[Array, "p n_out"]:
        """``p`` MVMs of one example (shared input scale): (p, in) → (p, out)."""
        codes, x_int, xs = self.column_codes(state, x, key=key)
        cw = jnp.asarray(self.inputs.cycle_weights(), codes.dtype)
        sw = jnp.asarray(self.weights.slice_weights(), codes.dtype)
        y = jnp.einsum("j,k,jkpbc->pc", cw, sw, codes)
        if self.weights.offset:
            y = y - self.weights.offset * x_int.sum(axis=-1)[:, None]
        return y * state.w_step * (xs / self.inputs.q)

    # ------------------------------------------------------------------ ideal limit
    def ideal(self) -> "BitSlicedTile":
        """Unbounded weight/input precision (one analog slice and cycle), ideal cell and
        wires, no ADC error: ``apply`` equals ``W @ x``."""
        return BitSlicedTile(
            cell=self.cell.ideal(), array=self.array.ideal(),
            weights=BitSliceMapping(weight_bits=None, bits_per_cell=self.weights.bits_per_cell,
                                    encoding=self.weights.encoding),
            inputs=InputSlicing(input_bits=None, dac_bits=self.inputs.dac_bits, signed=True),
            adc_bits=None, adc_lsb=self.adc_lsb, adc_offset=0.0, adc_noise=0.0,
            columns_per_adc=self.columns_per_adc, output_bits=self.output_bits,
            converter_costs=self.converter_costs, buffer=self.buffer,
        )

    # ------------------------------------------------------------------ cost
    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Float[Array, "out in"] | None = None) -> Cost:
        """Counts, energy, latency and area of ``n_mvm`` MVMs with an (out, in) matrix.

        Per MVM (J cycles, S slices, E planes, rb × cb arrays per plane and slice):
        DAC ``in · J`` conversions of ``dac_bits × E_dac1``; ADC ``J · S · rb · out``
        conversions at ``adc_bits`` (one per column, cycle and slice; a differential pair is
        converted once); cell reads ``J · E · S · in · out`` at ``v_read² ḡ t_read`` (every
        word line driven at full scale: an upper bound); wire I²R (first-order
        uniform-array formula, ``counts["wire_energy_j"]``); shift-and-add one per ADC
        conversion plus one per output for the offset bias; buffer (``buffer`` card) reads of
        ``in · input_bits`` and writes of ``out · output_bits`` bits. Latency
        ``J (t_read + columns_per_adc / f_adc)`` (ISAAC's 100 ns cycle for 128 columns at
        1.2 GS/s). Area: cells, ADCs (one per ``columns_per_adc`` columns), 1-bit DACs.
        """
        out, n_in = w_shape
        cc = self.converter_costs
        if cc is None:
            from .._cards import load_card

            cc = load_card("converters_isaac32nm", ConverterCosts)
        c = self.cell
        J, S, E = self.inputs.n_cycles, self.weights.n_slices, self.weights.n_planes
        rb, cb = self.array.grid(n_in, out)
        adc_bits = self.adc_bits or self.adc_bits_needed
        n_dac = n_in * J * n_mvm
        n_adc = J * S * rb * out * n_mvm
        n_cells = J * E * S * n_in * out * n_mvm
        n_add = n_adc + (out * n_mvm if self.weights.offset else 0)
        if w is not None:
            d = self.weights.digits(self.weights.integers(jnp.asarray(w))[0])
            g_mean = float(c.g_min) + (float(c.g_max) - float(c.g_min)) * float(jnp.mean(d)) / self.weights.digit_max
        else:
            g_mean = 0.5 * (float(c.g_min) + float(c.g_max))
        e_cell = float(c.v_read) ** 2 * g_mean * float(c.t_read)
        from ._crossbar import _wire_power_blocks

        e_wire = J * E * S * n_mvm * float(c.t_read) * _wire_power_blocks(self.array, n_in, out, g_mean,
                                                                            float(c.v_read))
        energy = {
            "conversion": n_dac * self.inputs.dac_bits * cc.dac_e1 + n_adc * cc.adc_energy(adc_bits),
            "array": n_cells * e_cell + e_wire,
            "compute": n_add * cc.shift_add_e,
        }
        counts = {"dac_conversions": n_dac, "adc_conversions": n_adc, "cell_reads": n_cells,
                  "shift_adds": n_add, "arrays": E * S * rb * cb, "wire_energy_j": e_wire,
                  "input_cycles": J, "slices": S}
        sources = [c.card.source if c.card else "", cc.card.source if cc.card else ""]
        if self.buffer is not None:
            in_bits = self.inputs.input_bits or 16
            wb = int(self.buffer.word_bits)
            n_buf = (-(-n_in * in_bits // wb) + -(-out * self.output_bits // wb)) * n_mvm
            energy["onchip_memory"] = n_buf * float(self.buffer.energy_per_access)
            counts["buffer_accesses"] = n_buf
            sources.append(self.buffer.card.source if self.buffer.card else "")
        t_mvm = J * (float(c.t_read) + self.columns_per_adc / cc.adc_rate)
        n_arrays = E * S * rb * cb
        adcs = -(-self.array.cols // self.columns_per_adc)
        area = n_arrays * (self.array.rows * self.array.cols * float(c.cell_area) + adcs * cc.adc_area(adc_bits)
                           + self.array.rows * cc.dac_a1)
        return Cost(
            counts=counts, energy_j=energy, latency_s=n_mvm * t_mvm, area_m2=area, macs=float(n_in * out * n_mvm),
            bits_weight=self.weights.weight_bits, bits_activation=self.inputs.input_bits, hardware=self.name,
            measured=False, sources=tuple(s for s in dict.fromkeys(sources) if s),
        )
