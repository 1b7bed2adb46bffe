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

How a read is computed (docs/perf.md). At program and drift time the state prepares, per row
block ``b``, the column matrix in digit products of every slice side by side,
``d_b = (M_b − g_min)(2^b − 1)/g_span`` (offset; the ideal reference column folded in) or
``(M⁺_b − M⁻_b)(2^b − 1)/g_span`` (differential: the two arrays of a pair subtracted before the
conversion, as the ADC sees them), shape ``(r_b, S·out)``. A read is one plain matrix product
per row block, ``digits (J·p, r_b) @ d_b``, and one fused pass: C2C read noise (one Gaussian
per converted column, with the variance of the column's summed device noise — for a
differential pair the sum of both arrays'), ADC noise, offset and conversion, and the
shift-and-add reduction over cycles, slices and row blocks.

Zero in, zero out: the digital output scale is the input's abs-max times the weight scale
``max |w|``, so an all-zero input or an all-zero weight matrix gives exactly 0, ADC offset and
noise included (they are referred to those scales).
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._cards import AbstractCardModule
from .._checks import MAX_CODE_BITS, require, require_count
from .._cost_types import Cost
from .._keys import stream
from .._rng import GENERATORS, normals
from .._ste import clip_ste, round_ste, absmax
from ..arrays._crossbar import ResistiveCrossbar
from ..cells._faults import FaultModel
from ..cells._resistive import AbstractResistiveCell
from ..cells._programming import OneShotProgramming, ProgramRecord
from ..cells._write_verify import WriteVerify
from ..converters._uniform import ConverterCosts
from ..mapping._bitslice import BitSliceMapping, InputSlicing, adc_bits_exact
from ..arrays._partition import pad_to
from ._abstract import AbstractTile
from ._crossbar import _block_bounds, _dispatch, _is_negative, _maybe_on, _unstack

__all__ = ["BitSliceDesign", "BitSlicedState", "BitSlicedTile"]


def _safe_sqrt(v):
    """``sqrt(v)`` for ``v >= 0`` with a finite (zero) derivative at ``v = 0``."""
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
        "rows": (1, 1 << 16), "cols": (1, 1 << 16), "bits_per_cell": (1, 16), "weight_bits": (2, MAX_CODE_BITS),
        "input_bits": (1, MAX_CODE_BITS), "dac_bits": (1, 16), "adc_bits": (1, MAX_CODE_BITS), "adc_lsb": (1e-9, 1e12),
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
        d: tuple of ``rb`` arrays ``(r_b, S·out)``: per row block, the column matrix of every
            slice in digit products (module docstring), slices side by side.
        d2: with C2C read noise, tuple of ``rb`` arrays ``(r_b, S·out)``: the per-read
            variance weights ``Σ_e M_e² ((2^b − 1)/g_span)²``; ``None`` without.
        w_step: weight units per integer weight step (``s_w / Q_w``); 0 for all-zero weights.
        t: seconds since programming.
        record: what programming this chip cost (:class:`nds.cells.ProgramRecord`).
    """

    g_prog: Float[Array, "E S n_in n_out"]
    nu: Float[Array, "E S n_in n_out"]
    g: Float[Array, "E S n_in n_out"]
    m: Float[Array, "E S rb r n_out"]
    d: tuple[Float[Array, "r s_out"], ...]
    d2: tuple[Float[Array, "r s_out"], ...] | None
    w_step: Float[Array, ""]
    t: Float[Array, ""]
    record: ProgramRecord | None = None


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
        noise_rng: generator of the per-read Gaussians (static), as
            :attr:`nds.tiles.CrossbarTile.noise_rng`.
        programming: one-shot programming cost card (default ``programming_generic``), as
            :attr:`nds.tiles.CrossbarTile.programming`.

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
    noise_rng: str = eqx.field(static=True, default="threefry-boxmuller")
    programming: OneShotProgramming | None = None

    hardware: ClassVar[str] = "bitsliced"

    def __check_init__(self):
        # concrete values only: adc_offset and adc_noise stay differentiable leaves (nds._checks)
        require(lambda v: np.isfinite(v) & (v > 0), "BitSlicedTile", "adc_lsb", self.adc_lsb,
                "must be finite and > 0 (digit products)")
        require_count("BitSlicedTile", "adc_bits", self.adc_bits, 1, MAX_CODE_BITS, none_ok=True,
                      why=f"None = no conversion error; float32 codes are exact up to 2**{MAX_CODE_BITS}")
        require(lambda v: v >= 0, "BitSlicedTile", "adc_noise", self.adc_noise, "must be >= 0 (LSB rms)")
        require(np.isfinite, "BitSlicedTile", "adc_offset", self.adc_offset, "must be finite (LSB)")
        require_count("BitSlicedTile", "columns_per_adc", self.columns_per_adc, 1)
        require_count("BitSlicedTile", "output_bits", self.output_bits, 1)
        if self.noise_rng not in GENERATORS:
            raise ValueError(f"BitSlicedTile.noise_rng = {self.noise_rng!r}; allowed: {GENERATORS}")

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
        """True when ADC noise or the cell's C2C read noise is on (see AbstractTile.needs_key);
        a traced (differentiable) noise parameter counts as on."""
        return _maybe_on(self.adc_noise) or _maybe_on(self.cell.read_noise_c2c)

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
        an error). The state's ``record`` holds the programming energy and time (write-verify
        loop's record, or the one-shot closed form of :attr:`programming`).

        Raises:
            ValueError: ``key`` is None with ``write_verify`` set or with non-ideal ``faults``.
        """
        c = self.cell
        g_t = self._targets(w)
        if self.write_verify is not None:
            res = self.write_verify_record(w, key=key, _g_target=g_t)
            g_prog = res.g
            nu = c.sample_nu(g_t, key=stream(key, "nu"))  # the stream c.program draws ν from
            record = ProgramRecord.from_write_verify(res)
        else:
            g_prog, nu = c.program(g_t, key=key)
            E, S, n_in, n_out = g_t.shape
            record = ProgramRecord.one_shot(self._programming_card(), E * S * n_in * n_out,
                                            self._rows_per_array(n_in, n_out), g_t.dtype)
        if self.faults is not None and not self.faults.is_ideal:
            if key is None:
                raise ValueError("BitSlicedTile.program: faults are sampled per chip; pass key=...")
            g_prog, nu, _ = self.faults.apply(g_prog, nu, c.g_min, c.g_max, key=stream(key, "faults"))
        # the weight scale max|w| itself (0 for all-zero weights: zero out, whatever the noise)
        return self._finish(g_prog, nu, g_prog, absmax(w) / self.weights.q, 0.0, record=record)

    def _targets(self, w):
        """Target conductances (E, S, in, out) (S) of the digits of ``w`` (out, in)."""
        c = self.cell
        w_int, _ = self.weights.integers(w)
        d = self.weights.digits(w_int)  # (E, S, in, out)
        return c.g_min + (c.g_max - c.g_min) * d / self.weights.digit_max

    def write_verify_record(self, w: Float[Array, "out in"], *, key: PRNGKeyArray, _g_target=None):
        """The full record of the write-verify loop :meth:`program` runs for ``w`` (out, in)
        with ``key`` (:class:`nds.cells.WriteVerifyResult`, per device (E, S, in, out): final
        conductances (S), pulses, convergence; total energy J and time s), the same bits as the
        programmed state (stream ``"write_verify"``); the state keeps the totals.

        Raises:
            ValueError: the tile has no ``write_verify`` card, or ``key`` is None.
        """
        if self.write_verify is None:
            raise ValueError("BitSlicedTile.write_verify_record: this tile programs one-shot (write_verify=None)")
        if key is None:
            raise ValueError("BitSlicedTile.program: write_verify samples pulses; pass key=...")
        c = self.cell
        g_t = _g_target if _g_target is not None else self._targets(w)
        return self.write_verify.program(g_t, c.g_min, c.g_max, key=stream(key, "write_verify"))

    def _programming_card(self) -> OneShotProgramming:
        if self.programming is not None:
            return self.programming
        from .._cards import load_card

        return load_card("programming_generic", OneShotProgramming)

    def _rows_per_array(self, n_in: int, n_out: int) -> list[int]:
        """Used word lines of every array (every plane, slice, row and column block)."""
        rb, cb = self.array.grid(n_in, n_out)
        per_plane = [min(self.array.rows, n_in - b * self.array.rows) for b in range(rb) for _ in range(cb)]
        return per_plane * (self.weights.n_planes * self.weights.n_slices)

    def program_cost(self, w_shape: tuple[int, int], *, state: BitSlicedState | None = None) -> tuple[float, float]:
        """``(energy J, time s)`` to program an (out, in) matrix once on one chip: from
        ``state.record`` when given (mean over chips when batched), else the one-shot closed
        form of :attr:`programming` over ``E·S·in·out`` devices, or for a write-verify tile
        its upper bound (every device ``max_pulses`` pulses)."""
        if state is not None and getattr(state, "record", None) is not None:
            return float(jnp.mean(state.record.energy_j)), float(jnp.mean(state.record.time_s))
        out, n_in = w_shape
        n_dev = self.weights.n_planes * self.weights.n_slices * n_in * out
        if self.write_verify is not None:
            wv = self.write_verify
            n = n_dev * int(wv.max_pulses)
            return n * (float(wv.e_pulse) + float(wv.e_verify)), n * float(wv.t_pulse)
        return self._programming_card().cost(n_dev, self._rows_per_array(n_in, out))

    def _finish(self, g_prog, nu, g, w_step, t, record=None):
        m = jax.vmap(jax.vmap(self.array.effective))(g)
        c = self.cell
        k = self.weights.digit_max / (c.g_max - c.g_min)  # digit products per siemens
        E, S, rb, r, n_out = m.shape
        bounds = _block_bounds(g.shape[2], rb, r)

        def side_by_side(a):  # (S, r_b, out) -> (r_b, S·out)
            return jnp.moveaxis(a, 0, 1).reshape(a.shape[1], S * n_out)

        planes = [_unstack(p, axis=1) for p in _unstack(m)]  # [e][b]: (S, r, out); see _unstack
        if self.weights.encoding == "differential":
            d = tuple(side_by_side((planes[0][b][:, : hi - lo] - planes[1][b][:, : hi - lo]) * k)
                      for b, (lo, hi) in enumerate(bounds))
        else:  # the ideal reference column at g_min, folded in
            d = tuple(side_by_side((planes[0][b][:, : hi - lo] - c.g_min) * k) for b, (lo, hi) in enumerate(bounds))
        d2 = None
        if _maybe_on(c.read_noise_c2c):
            d2 = tuple(side_by_side(sum(pl[b][:, : hi - lo] ** 2 for pl in planes) * k**2)
                       for b, (lo, hi) in enumerate(bounds))
        return BitSlicedState(g_prog=g_prog, nu=nu, g=g, m=m, d=d, d2=d2, w_step=w_step,
                              t=jnp.asarray(t, g.dtype), record=record)

    def drift(self, state: BitSlicedState, t, *, key: PRNGKeyArray | None = None) -> BitSlicedState:
        """State ``t`` s after programming (no drift compensation: the ADC grid is fixed)."""
        g = self.cell.at_time(state.g_prog, state.nu, t, key=key)
        return self._finish(state.g_prog, state.nu, g, state.w_step, t, record=state.record)

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
        x_int, xs = self.inputs.integers(x)
        codes = self._read(state, x_int, key, lambda cols: jnp.stack(
            [jnp.moveaxis(c.reshape(c.shape[:2] + (-1, state.m.shape[-1])), 2, 1) for c in cols], axis=3))
        return codes, x_int, xs

    def _columns(self, state: BitSlicedState, xd):
        """Column values (digit products, before noise and ADC) of every row block for the
        cycle digits ``xd`` (J, p, in): a list of ``rb`` arrays (J, p, S·out)."""
        if self.array.wires.is_linear:
            bounds = _block_bounds(xd.shape[-1], len(state.d), state.m.shape[3])
            return [xd[..., lo:hi] @ d for (lo, hi), d in zip(bounds, state.d)]
        # non-linear cells: one network solve per read, array, slice and cycle (slow)
        c = self.cell
        v_unit = c.v_read / self.inputs.digit_max
        v = xd * v_unit
        E, S, rb, r = state.m.shape[:4]
        J, p = v.shape[0], v.shape[1]
        vb = pad_to(v, 2, rb * r).reshape(J, p, rb, r)
        unit = v_unit * (c.g_max - c.g_min) / self.weights.digit_max  # A per digit product
        rd = lambda g2, vv: self.array.read(g2, vv)  # (p, rb, out)
        i = jax.vmap(lambda vv: jax.vmap(jax.vmap(lambda g2: rd(g2, vv)))(state.g))(v)  # (J, E, S, p, rb, out)
        i_ref = c.g_min * vb.sum(axis=-1)  # (J, p, rb): ideal reference column at g_min
        cn = (i - i_ref[:, None, None, :, :, None]) / unit
        col = cn[:, 0] - cn[:, 1] if self.weights.encoding == "differential" else cn[:, 0]  # (J, S, p, rb, out)
        return [jnp.moveaxis(col[:, :, :, b], 1, 2).reshape(J, p, -1) for b in range(rb)]

    def _read(self, state: BitSlicedState, x_int, key, finish):
        """Columns, read noise and ADC of every row block, then ``finish(codes)`` with
        ``codes`` a list of ``rb`` arrays (J, p, S·out) (inside the fused pass)."""
        c = self.cell
        xd = self.inputs.digits(x_int)  # (J, p, n)
        cols = self._columns(state, xd)
        if self.needs_key and key is None:
            raise ValueError("BitSlicedTile.apply: this tile has read noise; pass key=...")

        def tail(cols, c2c_on: bool, adc_on: bool):
            shape, dtype = cols[0].shape, cols[0].dtype
            if c2c_on:
                # one Gaussian per converted column with the variance of its summed device noise
                if self.array.wires.is_linear:
                    bounds = _block_bounds(xd.shape[-1], len(state.d), state.m.shape[3])
                    d2 = state.d2 if state.d2 is not None else self._d2(state)
                    sds = [_safe_sqrt(xd[..., lo:hi] ** 2 @ w) for (lo, hi), w in zip(bounds, d2)]
                else:
                    sds = self._c2c_sd_nonlinear(state, xd)
                zs = normals(stream(key, "read_noise_c2c"), len(cols), shape, dtype, generator=self.noise_rng)
                cols = [col + c.read_noise_c2c * sd * z for col, sd, z in zip(cols, sds, zs)]
            if adc_on:
                zs = normals(stream(key, "adc_noise"), len(cols), shape, dtype, generator=self.noise_rng)
                cols = [col + self.adc_noise * self.adc_lsb * z for col, z in zip(cols, zs)]
            return finish([self._adc(col) for col in cols])

        return _dispatch(tail, cols, [c.read_noise_c2c, self.adc_noise])

    def _d2(self, state: BitSlicedState):
        """``state.d2`` recomputed from ``state.m`` (a state programmed while C2C noise was off)."""
        c = self.cell
        k = self.weights.digit_max / (c.g_max - c.g_min)
        E, S, rb, r, n_out = state.m.shape
        return tuple(jnp.moveaxis(jnp.sum(state.m[:, :, b, : d.shape[0]] ** 2, axis=0) * k**2, 0, 1
                                  ).reshape(d.shape[0], S * n_out) for b, d in enumerate(state.d))

    def _c2c_sd_nonlinear(self, state: BitSlicedState, xd):
        """Per-read C2C standard deviation (digit products, per unit ``read_noise_c2c``) from
        the small-signal transfer matrices, for non-linear wires: rb arrays (J, p, S·out)."""
        c = self.cell
        E, S, rb, r, n_out = state.m.shape
        J, p = xd.shape[0], xd.shape[1]
        xb = pad_to(xd, 2, rb * r).reshape(J, p, rb, r)
        k = self.weights.digit_max / (c.g_max - c.g_min)
        var = jnp.einsum("jpbr,esbrc->jspbc", xb**2, state.m**2) * k**2
        return [_safe_sqrt(jnp.moveaxis(var[:, :, :, b], 1, 2).reshape(J, p, -1)) for b in range(rb)]

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
        """``p`` MVMs of one example (shared input scale): (p, in) → (p, out). One matrix
        product per row block against the prepared ``state.d`` and one fused pass for noise,
        ADC and shift-and-add (module docstring). An all-zero ``x`` or all-zero weights give
        exactly 0.

        Raises:
            ValueError: ``key`` is None while the tile has read noise (:attr:`needs_key`).
        """
        x_int, xs = self.inputs.integers(x)
        S, n_out = self.weights.n_slices, state.m.shape[-1]
        cw = jnp.asarray(self.inputs.cycle_weights(), x_int.dtype)
        sw = jnp.asarray(self.weights.slice_weights(), x_int.dtype)

        def shift_add(codes):
            y = 0.0
            for cb in codes:  # (J, p, S·out) per row block
                y = y + jnp.einsum("j,k,jpkc->pc", cw, sw, cb.reshape(cb.shape[:2] + (S, n_out)))
            return y

        y = self._read(state, x_int, key, shift_add)
        if self.weights.offset:
            y = y - self.weights.offset * x_int.sum(axis=-1)[:, None]
        # the input scale max|x| itself (0 for an all-zero input: zero out, whatever the noise)
        amax = absmax(x)
        return y * state.w_step * (jnp.where(amax > 0, xs, 0.0) / self.inputs.q)

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
            converter_costs=self.converter_costs, buffer=self.buffer, noise_rng=self.noise_rng,
            programming=self.programming,
        )

    # ------------------------------------------------------------------ cost
    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Float[Array, "out in"] | None = None,
             state: BitSlicedState | None = None) -> Cost:
        """Counts, energy, latency and area of ``n_mvm`` MVMs with an (out, in) matrix.

        Per MVM (J cycles, S slices, E planes, rb × cb arrays per plane and slice):
        DAC one per word line of every array — ``in · J · S · E · cb`` conversions of a
        ``dac_bits``-bit DAC at ``dac_energy(dac_bits) = dac_e1 · 2^(dac_bits−1)`` (ISAAC:
        1-bit DACs, ``128 · 16 · 8`` pulses for a 128 × 128 MVM, one per row of each of the
        8 slice crossbars per cycle); ADC ``J · S · rb · out``
        conversions at ``adc_bits`` (one per column, cycle and slice; a differential pair is
        converted once); cell reads ``J · E · S · in · out`` at ``v_read² ḡ t_read`` (every
        word line driven at full scale: an upper bound); wire I²R (first-order
        uniform-array formula, ``counts["wire_energy_j"]``); shift-and-add one per ADC
        conversion plus one per output for the offset bias; buffer (``buffer`` card) reads of
        ``in · input_bits`` and writes of ``out · output_bits`` bits. Latency
        ``J (t_read + columns_per_adc / f_adc)`` (ISAAC's 100 ns cycle for 128 columns at
        1.2 GS/s). Area: cells, ADCs (one per ``columns_per_adc`` columns), one
        ``dac_bits``-bit DAC per row of every array. Programming (per chip):
        ``program_energy_j``/``program_time_s`` from :meth:`program_cost`.
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
        n_dac = n_in * J * S * E * cb * n_mvm
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
            "conversion": n_dac * cc.dac_energy(self.inputs.dac_bits) + n_adc * cc.adc_energy(adc_bits),
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
                           + self.array.rows * cc.dac_area(self.inputs.dac_bits))
        e_prog, t_prog = self.program_cost(w_shape, state=state)
        return Cost(
            counts=counts, energy_j=energy, latency_s=n_mvm * t_mvm, area_m2=area, macs=float(n_in * out * n_mvm),
            bits_weight=self.weights.weight_bits, bits_activation=self.inputs.input_bits, hardware=self.name,
            measured=False, sources=tuple(s for s in dict.fromkeys(sources) if s),
            program_energy_j=float(e_prog), program_time_s=float(t_prog),
        )
