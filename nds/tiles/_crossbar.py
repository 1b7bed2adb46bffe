"""Resistive crossbar tile (statistical level): DAC → crossbar of differential pairs → ADC → digital.

Forward for one input vector ``x`` (shape ``(in,)``), following the structure of IBM's analog
tiles (Rasch et al., Nat. Commun. 14, 5282 (2023)) with the physical quantities made explicit:

1. DAC: ``x`` is divided by its scale (per-vector abs-max, or a fixed range) and quantized to
   ``dac.bits``; the word-line voltage is ``v = level · v_read`` (V).
2. Array: weights are mapped to differential conductance pairs (:mod:`nds.mapping`), programmed
   with the cell's programming error, aged with its drift; the matrix is partitioned onto
   ``rows × cols`` arrays; each array gives bit-line currents ``I = v @ M`` (A), ``M`` being
   the wire model's transfer matrix (``M = g`` for ideal wires).
3. Sense: the differential current of each column is normalized by ``v_read (g_max − g_min)``;
   per read it receives output noise ``out_noise`` (normalized units, per column and array)
   and the cells' cycle-to-cycle read noise (``read_noise_c2c`` relative per device; its sum
   on a column is Gaussian with variance ``Σ_i v_i² (σ g⁺_ij)² + (σ g⁻_ij)²``, sampled at the
   column — equal in distribution, at the cost of one extra MVM).
4. ADC: each column of each array is converted once (``adc.bits`` on ``±adc.y_range``): the
   column sum is quantized, not each product.
5. Digital: partial sums of the row blocks are added, multiplied by the weight scale, the input
   scale and (after drift) the global drift-compensation factor.

Global drift compensation (Joshi et al., Nat. Commun. 11, 2473 (2020); REFERENCES.md): right
after programming the chip reads a known calibration input through its own periphery — the
DAC, the arrays with the wire model in use (IR drop included), the read noise and the ADC of
every array, the digital sum of the partial sums — and records the summed absolute output
``R(0)``; at time ``t`` it reads the same input again, ``R(t)``, and scales every output by
``R(0)/R(t)``. The calibration input (``drift_reference``):

* ``"hadamard"`` (default): per row block of ``r`` word lines, the ``m = 2^ceil(log2 r)``
  rows of the Sylvester Hadamard matrix ``H_m`` restricted to the ``r`` lines, with a fixed
  ±1 sign per word line (``H·diag(s)``, the same constant pattern on every chip), read on the
  arrays of that block. Identity-like: its columns are orthogonal (``(HS)ᵀHS = m I``), so for
  every column ``d`` of the block ``Σ_k |(HS)_k· d| ≥ sqrt(m) ||d||₂``, which vanishes only
  when every weight of the column is 0 — it cannot cancel, whatever the signs of the weights;
  the signs ``s`` keep block-structured weights (e.g. ``[a, −a]``, whose unscrambled Hadamard
  rows read only the drift mismatch of the two halves: 7 % under-compensation measured) from
  aligning with the pattern. Every read drives all word lines at full scale, so column
  outputs are ~``sqrt(r)`` single-device readings and use the ADC's range. Measured on a
  128-input, 64-output Gaussian layer of the PCM card after one year (32 chips,
  tests/test_xbar.py conditions): the factor scatters 0.23 % chip to chip with or without
  the default 8-bit ADC (``"ones"``: 2.4 %), and the compensated outputs sit at 0.983 of
  their t = 0 scale (a single global factor cannot undo state-dependent ν exactly; the
  one-hot readout gives 1.013 without ADC); on a layer whose every column sums to zero,
  0.98-0.99 (``"ones"``: 0.38-0.60).
* ``"identity"``: the ``in`` one-hot vectors (aihwkit's one-hot readout, IBM/aihwkit#407:
  "drift compensation should use one-hot vectors to read out all weights"). ``R`` is
  ``Σ_ij |G⁺_ij − G⁻_ij|/(g_max − g_min)`` up to noise: no cancellation either, 0.2-0.4 %
  scatter, but each read is one device, a small fraction of an ADC range sized for column
  sums: with the default 8-bit ADC on ±12 the rounding of small weights to zero biases the
  factor by +2.4 % over the same readout without ADC in that measurement (Hadamard: 0.1 %).
* ``"ones"``: one all-ones input, ``R = Σ_j |y_j(1)|`` (the first GlobalDriftCompensation
  readout). A column whose weights sum to about zero reads only noise, so the factor
  scatters chip to chip; on a layer whose every column sums to zero ``R`` is noise (or
  exactly 0 without read noise: then no compensation is applied, factor 1, and outputs are
  left at the drifted scale — the failure the other readouts avoid).

All readouts are noisy on purpose (as aihwkit keeps them: IBM/aihwkit#674): the chip has
no noise-free reference. A read needs a key for its noise: ``program``/``drift`` draw it from
the stream ``"calibration"`` of their key (no key: a noise-free calibration read).
A reference below ``1e-12`` of its scale (only possible with the all-ones readout and no
noise) gives factor 1, never a division by zero.

How a read is computed (docs/perf.md). Everything that depends on the chip alone is prepared
once, at program and drift time, in :class:`CrossbarState`: the normalized differential
transfer matrix of each row block ``d_b = (M⁺_b − M⁻_b)/(g_max − g_min)`` (and, with C2C
read noise, ``(M⁺_b² + M⁻_b²)/(g_max − g_min)²``). A read of ``p`` input vectors is then one
plain 2-D matrix product per row block, ``levels[:, rows_b] @ d_b`` (``v_read`` cancels in
the normalization), followed by one fused elementwise pass: read noise (one Gaussian per
column, array and read, from :mod:`nds._rng`), the ADC of each array, the sum of the
partial sums and the digital scales. Under ``jax.vmap`` over examples (the Equinox
convention) the block products become ``(batch·p, r) @ (r, out)`` matrix products, with no
transposes.

Zero in, zero out: the digital output scale is the input's abs-max (dynamic DAC) times the
weight scale ``max |w|``, so an all-zero input vector or an all-zero weight matrix gives
exactly zero output, read noise included (the noise is referred to those scales, as in
aihwkit's noise management). With a fixed-range DAC (``x_range`` set) an all-zero input
still reads the output noise at that fixed scale (the modelled noise floor).
"""
from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._cost_types import Cost
from .._keys import stream, streams
from .._rng import GENERATORS, normals
from ..arrays._crossbar import ResistiveCrossbar
from ..arrays._partition import pad_to
from ..cells._faults import FaultModel
from ..cells._resistive import AbstractResistiveCell
from ..cells._programming import OneShotProgramming, ProgramRecord
from ..cells._write_verify import WriteVerify
from ..converters._uniform import ConverterCosts, UniformADC, UniformDAC
from ..mapping._differential import DifferentialMapping
from ._abstract import AbstractTile

__all__ = ["CrossbarState", "CrossbarTile", "DRIFT_REFERENCES"]

#: calibration inputs of the global drift compensation (CrossbarTile.drift_reference)
DRIFT_REFERENCES = ("identity", "hadamard", "ones")


def _safe_sqrt(v):
    """``sqrt(v)`` for ``v >= 0`` with a finite (zero) derivative at ``v = 0``."""
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def _maybe_on(v) -> bool:
    """Whether a noise parameter may be non-zero: True for a traced value (its value is not
    known at trace time; it is then drawn and scaled by the traced value), else ``v != 0``."""
    if isinstance(v, jax.core.Tracer):
        return True
    return bool(np.any(np.asarray(v) != 0))


def _is_negative(v) -> bool:
    """Whether a concrete value is negative (False for a tracer, checked at run time)."""
    if isinstance(v, jax.core.Tracer):
        return False
    return bool(np.any(np.asarray(v) < 0))


def _dispatch(fn, ys, params):
    """``fn(ys, *on)`` with ``on[i]`` whether ``params[i]`` is non-zero: static for concrete
    values, ``lax.cond`` on ``params[i] != 0`` for traced ones (the branch not taken costs
    nothing; the whole tail stays one fused pass inside each branch)."""
    flags = []
    traced = []
    for i, v in enumerate(params):
        if isinstance(v, jax.core.Tracer):
            flags.append(None)
            traced.append(i)
        else:
            flags.append(_maybe_on(v))

    def go(k, fl):
        if k == len(traced):
            return fn(ys, *fl)
        i = traced[k]
        on = fl[:i] + [True] + fl[i + 1:]
        off = fl[:i] + [False] + fl[i + 1:]
        return jax.lax.cond(jnp.any(params[i] != 0), lambda: go(k + 1, on), lambda: go(k + 1, off))

    return go(0, flags)


#: fixed ±1 signs applied to the word lines of the Hadamard calibration rows (a constant of
#: the calibration pattern, the same on every chip: a scrambled Hadamard matrix H·diag(s)
#: keeps HᵀH = m I and does not align with block-structured weights such as [a, −a])
_SCRAMBLE = np.where(np.random.default_rng(2020).random(1 << 16) < 0.5, -1.0, 1.0)


def _hadamard_inputs(r: int, dtype) -> Float[Array, "m r"]:
    """The ``m = 2^ceil(log2 r)`` rows of the Sylvester Hadamard matrix ``H_m`` restricted to
    their first ``r`` entries: ±1 inputs whose columns stay orthogonal (``HᵀH = m I``), so
    ``Σ_k |H_k· d|`` is at least ``sqrt(m) ||d||₂`` and vanishes only for ``d = 0``."""
    m = 1
    h = np.ones((1, 1))
    while m < r:
        h = np.block([[h, h], [h, -h]])
        m *= 2
    return jnp.asarray(h[:, :r] * _SCRAMBLE[:r], dtype)


def _unstack(a, axis: int = 0) -> list:
    """``[a[i] for i along axis]`` through ``lax.split``, whose transpose is a concatenation:
    indexing a leading axis transposes to a zero pad per piece, which XLA CPU fuses into
    slow loops in the backward pass of noise-aware training."""
    return [jnp.squeeze(p, axis) for p in jax.lax.split(a, (1,) * a.shape[axis], axis=axis)]


def _block_bounds(n_in: int, rb: int, r: int) -> list[tuple[int, int]]:
    """Word-line ranges ``[lo, hi)`` of the ``rb`` row blocks of ``r`` rows (the last may be
    partial)."""
    return [(b * r, min((b + 1) * r, n_in)) for b in range(rb)]


def _wire_power_blocks(array: ResistiveCrossbar, n_in: int, n_out: int, g: float, v: float) -> float:
    """Wire power (W) of one device plane of an ``(n_in, n_out)`` matrix partitioned on
    ``array``: the sum over its arrays of the uniform-array formula with the used size."""
    rb, cb = array.grid(n_in, n_out)
    total = 0.0
    for b in range(rb):
        ru = min(array.rows, n_in - b * array.rows)
        for k in range(cb):
            cu = min(array.cols, n_out - k * array.cols)
            total += array.wires.wire_power_uniform(g, v, array.rows, array.cols, ru, cu)
    return total


class CrossbarState(eqx.Module):
    """Programmed physical state of a crossbar tile (one chip).

    Attributes:
        g_prog: (2, in, out) programmed conductances (S), axis 0 = (G+, G−).
        nu: (2, in, out) per-device drift exponents.
        g: (2, in, out) conductances at time ``t`` after programming (S).
        m: (2, rb, r, out) per-array transfer matrices (S) of ``g`` through the wires.
        d: tuple of ``rb`` arrays ``(r_b, out)``: the normalized differential transfer matrix
            of row block ``b``, ``(m[0, b] − m[1, b]) / (g_max − g_min)`` over its ``r_b``
            used rows (dimensionless; what a read multiplies the DAC levels with).
        d2: with C2C read noise, tuple of ``rb`` arrays ``(r_b, out)``:
            ``(m[0, b]² + m[1, b]²) / (g_max − g_min)²`` (the per-read variance weights);
            ``None`` when the cell has no C2C read noise.
        w_scale: (out,) weight scale (weight units per normalized conductance); 0 for an
            all-zero weight matrix (or an all-zero row with ``scale_mode="column"``).
        ref0: calibration readout ``R(0)`` right after programming: the summed absolute
            output of the calibration reads (normalized units; module docstring).
        comp: drift-compensation factor at ``t`` (1 when off).
        t: seconds since programming.
        record: what programming this chip cost (:class:`nds.cells.ProgramRecord`: energy,
            time, pulses, unconverged write-verify devices).
    """

    g_prog: Float[Array, "2 n_in n_out"]
    nu: Float[Array, "2 n_in n_out"]
    g: Float[Array, "2 n_in n_out"]
    m: Float[Array, "2 rb r n_out"]
    d: tuple[Float[Array, "r n_out"], ...]
    d2: tuple[Float[Array, "r n_out"], ...] | None
    w_scale: Float[Array, " n_out"]
    ref0: Float[Array, ""]
    comp: Float[Array, ""]
    t: Float[Array, ""]
    record: ProgramRecord | None = None


class CrossbarTile(AbstractTile):
    """Resistive crossbar tile (see module docstring).

    Attributes:
        cell: the device (:class:`nds.cells.PCM`, :class:`nds.cells.RRAM`, ...).
        array: array size and wire model (default 256 × 256, ideal wires).
        dac, adc: converters (default 8-bit dynamic-range DAC, 8-bit ADC on ±12).
        mapping: weight → conductance mapping (default differential, per-layer scale).
        out_noise: per-read output noise σ (normalized units) per column and array.
        drift_compensation: apply global drift compensation (default True).
        drift_reference: calibration input of the drift compensation (static):
            ``"hadamard"`` (default: ±1 Hadamard rows per row block), ``"identity"``
            (one-hot reads of every word line) or ``"ones"`` (one all-ones read); see the
            module docstring.
        converter_costs: per-conversion energy/area card (default: ISAAC 32 nm figures).
        columns_per_adc: columns sharing one ADC (ISAAC: 128), sets latency and ADC area.
        faults: stuck-at faults sampled per chip at program time (default none).
        write_verify: program with the write-verify loop of this card instead of the cell's
            one-shot programming error (default none).
        noise_rng: generator of the per-read Gaussians (static): ``"threefry-boxmuller"``
            (default; exact Gaussian, one hash per two draws) or ``"jax"``
            (``jax.random.normal``); see :mod:`nds._rng`.
        programming: one-shot programming cost card (:class:`nds.cells.OneShotProgramming`;
            default ``programming_generic``); a write-verify tile reports its loop's record.

    Wire models: ``array=ResistiveCrossbar(rows, cols, wires=ResistiveWires(...))`` gives
    exact IR drop (per-array transfer matrices computed once per programmed state, G+ and
    G− on separate arrays); ``wires=NonlinearWires(...)`` solves every read with non-linear
    cells (slow: small layers only).
    """

    cell: AbstractResistiveCell
    array: ResistiveCrossbar = ResistiveCrossbar()
    dac: UniformDAC = UniformDAC()
    adc: UniformADC = UniformADC()
    mapping: DifferentialMapping = DifferentialMapping()
    out_noise: float = 0.0
    drift_compensation: bool = eqx.field(static=True, default=True)
    drift_reference: str = eqx.field(static=True, default="hadamard")
    converter_costs: ConverterCosts | None = None
    columns_per_adc: int = eqx.field(static=True, default=1)
    faults: FaultModel | None = None
    write_verify: WriteVerify | None = None
    noise_rng: str = eqx.field(static=True, default="threefry-boxmuller")
    programming: OneShotProgramming | None = None

    hardware: ClassVar[str] = "crossbar"

    def __check_init__(self):
        if _is_negative(self.out_noise):
            raise ValueError(f"CrossbarTile.out_noise = {self.out_noise}: must be >= 0")
        if self.noise_rng not in GENERATORS:
            raise ValueError(f"CrossbarTile.noise_rng = {self.noise_rng!r}; allowed: {GENERATORS}")
        if self.drift_reference not in DRIFT_REFERENCES:
            raise ValueError(f"CrossbarTile.drift_reference = {self.drift_reference!r}; allowed: {DRIFT_REFERENCES}")
        if self.columns_per_adc < 1:
            raise ValueError(f"CrossbarTile.columns_per_adc = {self.columns_per_adc}: must be >= 1")

    @property
    def name(self) -> str:
        """Report name: the cell's card kind (``"pcm"``, ``"rram"``) or its class name, lower case."""
        return self.cell.card_kind or type(self.cell).__name__.lower()

    @property
    def needs_key(self) -> bool:
        """True when ``out_noise`` or the cell's C2C read noise is on (see
        AbstractTile.needs_key); a traced (differentiable) noise parameter counts as on."""
        return _maybe_on(self.out_noise) or _maybe_on(self.cell.read_noise_c2c)

    # ------------------------------------------------------------------ program time
    def _finish(self, g_prog, nu, g, w_scale, ref0, t, key=None, record=None) -> CrossbarState:
        m = jax.vmap(self.array.effective)(g)
        c = self.cell
        dg = c.g_max - c.g_min
        bounds = _block_bounds(g.shape[1], m.shape[1], m.shape[2])
        mp, mn = (_unstack(a) for a in _unstack(m))  # per device, per row block: (r, out)
        d = tuple((mp[b][: hi - lo] - mn[b][: hi - lo]) / dg for b, (lo, hi) in enumerate(bounds))
        d2 = None
        if _maybe_on(c.read_noise_c2c):
            d2 = tuple((mp[b][: hi - lo] ** 2 + mn[b][: hi - lo] ** 2) / dg**2 for b, (lo, hi) in enumerate(bounds))
        w_scale = jnp.asarray(w_scale)
        tmp = CrossbarState(g_prog=g_prog, nu=nu, g=g, m=m, d=d, d2=d2, w_scale=jnp.ones_like(w_scale),
                            ref0=jnp.ones((), g.dtype), comp=jnp.ones((), g.dtype), t=jnp.asarray(t, g.dtype))
        ref = self.calibration_readout(tmp, key=key) if self.drift_compensation else jnp.ones((), g.dtype)
        if ref0 is None:
            # program time: the reference is recorded and the compensation is ref/ref = 1 (the
            # same value, without a dependence on the reference: noise-aware training without
            # ageing then never differentiates through it)
            ref0 = ref
            comp = jnp.ones_like(ref)
        else:
            # no reference signal (possible with the all-ones readout on a layer whose every
            # column sums to zero, without read noise): no compensation, never a division by 0
            tiny = 1e-12 * jnp.maximum(jnp.abs(ref0), jnp.abs(ref))
            ok = (ref > tiny) & (ref0 > tiny)
            comp = (jnp.where(ok, ref0 / jnp.where(ok, ref, 1.0), 1.0) if self.drift_compensation
                    else jnp.ones_like(ref))
        return CrossbarState(g_prog=g_prog, nu=nu, g=g, m=m, d=d, d2=d2, w_scale=w_scale, ref0=ref0,
                             comp=comp, t=jnp.asarray(t, g.dtype), record=record)

    def calibration_readout(self, state: CrossbarState, *, key: PRNGKeyArray | None) -> Float[Array, ""]:
        """Summed absolute output ``R`` (normalized units, ``v_read (g_max − g_min)`` = 1) of
        the drift-compensation calibration reads of ``state`` (module docstring): the
        ``drift_reference`` inputs (``"hadamard"``: Hadamard rows per row block;
        ``"identity"``: the ``in`` one-hot vectors; ``"ones"``: one all-ones vector) read
        through the DAC, the arrays (``state.d``, wires included), read noise (drawn from
        ``key``; ``None``: noise-free) and the ADC of every array, with the weight and input
        scales left out. Scalar.

        The Hadamard and identity readouts read one row block at a time, on the arrays of that
        block only (the other arrays are not driven); the all-ones readout reads every block
        and adds the converted partial sums, as an inference read does.
        """
        quiet = key is None
        if self.drift_reference in ("identity", "hadamard"):
            total = jnp.zeros((), state.d[0].dtype)
            keys = jax.random.split(key, len(state.d)) if not quiet else [None] * len(state.d)
            for b, (db, kb) in enumerate(zip(state.d, keys)):
                inputs = (jnp.eye(db.shape[0], dtype=db.dtype) if self.drift_reference == "identity"
                          else _hadamard_inputs(db.shape[0], db.dtype))
                levels, _ = self.dac(inputs)  # (p, r_b)
                y = levels @ db
                if not quiet:
                    y = self._calibration_noise(y, levels, state, b, kb)
                total = total + jnp.sum(jnp.abs(self.adc(y)))
            return total
        levels, _ = self.dac(jnp.ones((1, state.g.shape[1]), state.d[0].dtype))
        bounds = _block_bounds(state.g.shape[1], len(state.d), state.m.shape[2])
        keys = jax.random.split(key, len(state.d)) if not quiet else [None] * len(state.d)
        y = 0.0
        for b, ((lo, hi), db, kb) in enumerate(zip(bounds, state.d, keys)):
            lv = levels[:, lo:hi]
            yb = lv @ db
            if not quiet:
                yb = self._calibration_noise(yb, lv, state, b, kb)
            y = y + self.adc(yb)
        return jnp.sum(jnp.abs(y))

    def _calibration_noise(self, y, levels, state: CrossbarState, b: int, key):
        """``y`` (p, out) of row block ``b`` plus the read noise of a read with DAC ``levels``
        (p, r_b): output noise and C2C read noise, as :meth:`_read` draws them."""
        c = self.cell
        k_out, k_c2c = streams(key, "out_noise", "read_noise_c2c")
        if _maybe_on(self.out_noise):
            y = y + self.out_noise * jax.random.normal(k_out, y.shape, y.dtype)
        if _maybe_on(c.read_noise_c2c):
            d2 = state.d2 if state.d2 is not None else self._d2(state)
            sd = _safe_sqrt(levels**2 @ d2[b])
            y = y + c.read_noise_c2c * sd * jax.random.normal(k_c2c, y.shape, y.dtype)
        return y

    def program(self, w: Float[Array, "out in"], *, key: PRNGKeyArray | None) -> CrossbarState:
        """Program ``w`` (out, in) onto the chip; ``key`` draws programming error and drift
        exponents; ``None`` skips those draws (an ideal programming, not an error). Returns
        :class:`CrossbarState`, whose ``record`` holds the programming energy and time (the
        write-verify loop's record, or the one-shot closed form of :attr:`programming`).

        Raises:
            ValueError: ``key`` is None with ``write_verify`` set or with non-ideal ``faults``.
        """
        c = self.cell
        g_target, w_scale = self.mapping.to_conductance(w, c.g_min, c.g_max, c.levels)
        if self.write_verify is not None:
            res = self.write_verify_record(w, key=key, _g_target=g_target)
            g_prog = res.g
            nu = c.sample_nu(g_target, key=stream(key, "nu"))  # the stream c.program draws ν from
            record = ProgramRecord.from_write_verify(res)
        else:
            g_prog, nu = c.program(g_target, key=key)
            n_in, n_out = g_target.shape[1:]
            record = ProgramRecord.one_shot(self._programming_card(), 2 * n_in * n_out,
                                            self._rows_per_array(n_in, n_out), g_target.dtype)
        if self.faults is not None and not self.faults.is_ideal:
            if key is None:
                raise ValueError("CrossbarTile.program: faults are sampled per chip; pass key=...")
            g_prog, nu, _ = self.faults.apply(g_prog, nu, c.g_min, c.g_max, key=stream(key, "faults"))
        return self._finish(g_prog, nu, g_prog, w_scale, None, 0.0,
                            key=None if key is None else stream(key, "calibration"), record=record)

    def write_verify_record(self, w: Float[Array, "out in"], *, key: PRNGKeyArray, _g_target=None):
        """The full record of the write-verify loop :meth:`program` runs for ``w`` (out, in)
        with ``key``: a :class:`nds.cells.WriteVerifyResult` with per-device final
        conductances (2, in, out) (S), pulse counts and convergence flags, and the total energy
        (J) and time (s) — the same bits as the programmed state (stream ``"write_verify"``).
        The state itself keeps the totals (``state.record``).

        Raises:
            ValueError: the tile has no ``write_verify`` card, or ``key`` is None.
        """
        if self.write_verify is None:
            raise ValueError("CrossbarTile.write_verify_record: this tile programs one-shot (write_verify=None)")
        if key is None:
            raise ValueError("CrossbarTile.program: write_verify samples pulses; pass key=...")
        c = self.cell
        g_target = _g_target if _g_target is not None else self.mapping.to_conductance(w, c.g_min, c.g_max, c.levels)[0]
        return self.write_verify.program(g_target, c.g_min, c.g_max, key=stream(key, "write_verify"))

    def _programming_card(self) -> OneShotProgramming:
        if self.programming is not None:
            return self.programming
        from .._cards import load_card

        return load_card("programming_generic", OneShotProgramming)

    def _rows_per_array(self, n_in: int, n_out: int) -> list[int]:
        """Used word lines of every array of an (out, in) matrix (a differential pair shares its
        word line; one entry per array)."""
        rb, cb = self.array.grid(n_in, n_out)
        return [min(self.array.rows, n_in - b * self.array.rows) for b in range(rb) for _ in range(cb)]

    def program_cost(self, w_shape: tuple[int, int], *, state: CrossbarState | None = None) -> tuple[float, float]:
        """``(energy J, time s)`` to program an (out, in) matrix once on one chip.

        From ``state.record`` when a programmed state is given (its mean over chips when the
        state is batched); otherwise the one-shot closed form of :attr:`programming`
        (:class:`nds.cells.OneShotProgramming`: ``2·in·out`` devices), or for a write-verify
        tile its upper bound, every device taking ``max_pulses`` pulses.
        """
        if state is not None and getattr(state, "record", None) is not None:
            return float(jnp.mean(state.record.energy_j)), float(jnp.mean(state.record.time_s))
        out, n_in = w_shape
        n_dev = 2 * n_in * out
        if self.write_verify is not None:
            wv = self.write_verify
            n = n_dev * int(wv.max_pulses)
            return n * (float(wv.e_pulse) + float(wv.e_verify)), n * float(wv.t_pulse)
        return self._programming_card().cost(n_dev, self._rows_per_array(n_in, out))

    def drift(self, state: CrossbarState, t, *, key: PRNGKeyArray | None = None) -> CrossbarState:
        """State ``t`` s after programming: drift and accumulated read noise (PCM), with
        global drift compensation recomputed from a calibration read at ``t`` (module
        docstring). ``key`` draws the 1/f noise (stream ``"read_noise_1f"``) and the
        calibration read noise (stream ``"calibration"``); None: neither."""
        k_1f, k_cal = streams(key, "read_noise_1f", "calibration") if key is not None else (None, None)
        g = self.cell.at_time(state.g_prog, state.nu, t, key=k_1f)
        return self._finish(state.g_prog, state.nu, g, state.w_scale, state.ref0, t, key=k_cal, record=state.record)

    # ------------------------------------------------------------------ read time
    def apply(self, state: CrossbarState, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None
              ) -> Float[Array, " n_out"]:
        """One MVM: ``x`` (in,) → ``y ≈ W x`` (out,); as :meth:`apply_batch` with ``p = 1``
        (the same bits). Raises ValueError if the tile has read noise and ``key`` is None."""
        if not self.array.wires.is_linear:
            return self.apply_batch(state, x[None], key=key)[0]
        return self._read(state, x, key)

    def apply_batch(self, state: CrossbarState, x: Float[Array, "p n_in"], *, key: PRNGKeyArray | None
                    ) -> Float[Array, "p n_out"]:
        """``p`` MVMs of one example (e.g. the patches of a convolution): the DAC scale is
        shared (abs-max over the whole example when dynamic); each MVM draws its own read
        noise. Shapes (p, in) → (p, out). One matrix product per row block against the
        prepared ``state.d`` and one fused pass for noise, ADC and scales (module docstring);
        ``jax.vmap`` it over examples.

        Zero in, zero out: an all-zero ``x`` (dynamic DAC) or an all-zero weight matrix
        gives exactly 0, read noise included.

        Raises:
            ValueError: ``key`` is None while the tile has read noise (:attr:`needs_key`).
        """
        return self._read(state, x, key)

    def _read(self, state: CrossbarState, x, key):
        """The read of ``x`` of shape (in,) or (p, in) → (out,) or (p, out)."""
        c = self.cell
        levels, x_scale = self.dac(x)
        if self.array.wires.is_linear:
            bounds = _block_bounds(x.shape[-1], len(state.d), state.m.shape[2])
            blocks_in = [levels[..., lo:hi] for lo, hi in bounds]
            # column outputs of every array, normalized: I / (v_read (g_max − g_min))
            ys = [lv @ d for lv, d in zip(blocks_in, state.d)]
        else:  # non-linear cells: one network solve per read, array and device (slow)
            v = levels * c.v_read
            i = self.array.read(state.g[0], v) - self.array.read(state.g[1], v)  # (p, rb, out)
            norm = c.v_read * (c.g_max - c.g_min)
            ys = [i[:, b] / norm for b in range(i.shape[1])]
        if self.needs_key and key is None:
            raise ValueError("CrossbarTile.apply: this tile has read noise; pass key=...")

        def tail(ys, out_on: bool, c2c_on: bool):
            # read noise, ADC of every array, sum of the partial sums, digital scales: one
            # fused elementwise pass over the block products
            shape, dtype = ys[0].shape, ys[0].dtype
            if out_on:
                sigma = self._checked_nonnegative(self.out_noise, "out_noise")
                zs = normals(stream(key, "out_noise"), len(ys), shape, dtype, generator=self.noise_rng)
                ys = [y + sigma * z for y, z in zip(ys, zs)]
            if c2c_on:
                # the column sum of per-device Gaussians: one Gaussian per column with variance
                # Σ_i v_i² (σ g⁺_ij)² + (σ g⁻_ij)² (normalized)
                sds = self._c2c_sd(state, levels)
                zs = normals(stream(key, "read_noise_c2c"), len(ys), shape, dtype, generator=self.noise_rng)
                ys = [y + c.read_noise_c2c * sd * z for y, sd, z in zip(ys, sds, zs)]
            yq = self.adc(ys[0])
            for y in ys[1:]:
                yq = yq + self.adc(y)
            w_scale = state.w_scale if yq.ndim == 1 else state.w_scale[None, :]
            return yq * w_scale * x_scale * state.comp

        # a noise parameter known at trace time decides statically; a traced one (a
        # differentiable card leaf) at run time, with lax.cond: no draws when it is 0
        return _dispatch(tail, ys, [self.out_noise, c.read_noise_c2c])

    def _c2c_sd(self, state: CrossbarState, levels) -> list:
        """Per-read standard deviation (normalized, per unit ``read_noise_c2c``) of each
        block's column sums: ``sqrt(levels_b² @ d2_b)``; (p, out) per block."""
        if self.array.wires.is_linear:
            bounds = _block_bounds(levels.shape[-1], len(state.d), state.m.shape[2])
            d2 = state.d2 if state.d2 is not None else self._d2(state)
            return [_safe_sqrt(levels[..., lo:hi] ** 2 @ w) for (lo, hi), w in zip(bounds, d2)]
        rb, r = state.m.shape[1], state.m.shape[2]
        vb = pad_to(levels, 1, rb * r).reshape(levels.shape[0], rb, r)  # (p, in): non-linear path
        var = jnp.einsum("pbr,brc->pbc", vb**2, state.m[0] ** 2 + state.m[1] ** 2)
        return [_safe_sqrt(var[:, b]) / (self.cell.g_max - self.cell.g_min) for b in range(rb)]

    def _d2(self, state: CrossbarState):
        """``state.d2`` recomputed from ``state.m`` (a state programmed while C2C noise was off)."""
        dg = self.cell.g_max - self.cell.g_min
        return tuple((state.m[0, b, : d.shape[0]] ** 2 + state.m[1, b, : d.shape[0]] ** 2) / dg**2
                     for b, d in enumerate(state.d))

    @staticmethod
    def _checked_nonnegative(v, name: str):
        """``v``; under tracing a negative value raises at run time (``eqx.error_if``)."""
        if isinstance(v, jax.core.Tracer):
            return eqx.error_if(v, jnp.any(v < 0), f"CrossbarTile.{name} must be >= 0")
        return v

    # ------------------------------------------------------------------ ideal limit
    def ideal(self) -> "CrossbarTile":
        """No noise, no drift, no level quantization, unbounded converters, ideal wires."""
        return CrossbarTile(
            cell=self.cell.ideal(), array=self.array.ideal(), dac=self.dac.ideal(), adc=self.adc.ideal(),
            mapping=self.mapping, out_noise=0.0, drift_compensation=self.drift_compensation,
            drift_reference=self.drift_reference,
            converter_costs=self.converter_costs, columns_per_adc=self.columns_per_adc,
            faults=None, write_verify=None, noise_rng=self.noise_rng, programming=self.programming,
        )

    # ------------------------------------------------------------------ cost
    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Float[Array, "out in"] | None = None,
             state: CrossbarState | None = None) -> Cost:
        """Action counts, energy, latency and area of ``n_mvm`` MVMs with an (out, in) matrix
        on ``rb × cb`` arrays (``rb`` row blocks, ``cb`` column blocks), ``b = dac.bits``
        (16 when unbounded).

        DAC: one per word line of every array — a row of the matrix driven on ``cb`` column
        blocks drives ``cb`` DACs. The converter card's ``dac_serial`` decides how
        (:class:`nds.converters.ConverterCosts`):

        * bit-serial (``dac_serial = 1``, the ISAAC card): ``J = b`` cycles per MVM, each a
          full read: ``in · cb · J`` one-bit DAC pulses at ``dac_e1``; ``J · rb · out``
          ADC conversions; ``J · 2 · in · out`` cell reads; ``J`` read times;
        * multi-bit (``dac_serial = 0``): ``J = 1``; ``in · cb`` conversions at
          ``dac_energy(b) = dac_e1 · 2^(b−1)``.

        ADC ``E_adc(adc.bits)`` per column per row block per cycle (a differential pair is
        converted once); cell reads ``v_read² · ḡ · t_read`` per device per cycle with ``ḡ``
        the mean target conductance of ``w`` (every word line at full scale: an upper bound);
        wire I²R dissipation (category ``"array"``, also ``counts["wire_energy_j"]``, J per
        inference) from the wire model's first-order uniform-array formula
        (:meth:`nds.arrays.ResistiveWires.wire_power_uniform`, 0 for ideal wires) per cycle;
        digital shift-and-adds of the partial sums, one per ADC conversion, at ``shift_add_e``.
        Latency per MVM: ``J (t_read + columns_per_adc / adc_rate)`` (arrays in parallel).
        Area: devices (2 per weight) + ADCs (one per ``columns_per_adc`` columns) + one DAC
        per row, per array (``dac_area(1)`` bit-serial, ``dac_area(b)`` multi-bit).

        Programming (per chip, not per inference): ``program_energy_j``/``program_time_s``
        from :meth:`program_cost` (``state``'s record when given).
        """
        out, n_in = w_shape
        cc = self.converter_costs
        if cc is None:
            from .._cards import load_card

            cc = load_card("converters_isaac32nm", ConverterCosts)
        c = self.cell
        rb, cb = self.array.grid(n_in, out)
        adc_bits = self.adc.bits or 16
        dac_bits = self.dac.bits or 16
        serial = bool(cc.dac_serial)
        J = dac_bits if serial else 1  # array reads per MVM
        n_dac = n_in * cb * J * n_mvm
        e_dac = cc.dac_energy(1 if serial else dac_bits)
        n_adc = J * rb * out * n_mvm
        n_cells = J * 2 * n_in * out * n_mvm
        n_add = n_adc  # shift-and-add of every converted partial sum
        if w is not None:
            # one compiled program per weight shape, not one per eager operation
            g_t, _ = eqx.filter_jit(self.mapping.to_conductance)(jnp.asarray(w), c.g_min, c.g_max, c.levels)
            g_mean = float(np.mean(np.asarray(g_t)))
        else:
            g_mean = 0.5 * (float(c.g_min) + float(c.g_max))
        e_cell = float(c.v_read) ** 2 * g_mean * float(c.t_read)
        e_wire = 2 * J * n_mvm * float(c.t_read) * _wire_power_blocks(self.array, n_in, out, g_mean, float(c.v_read))
        energy = {
            "conversion": n_dac * e_dac + n_adc * cc.adc_energy(adc_bits),
            "array": n_cells * e_cell + e_wire,
            "compute": n_add * cc.shift_add_e,
        }
        t_mvm = J * (float(c.t_read) + self.columns_per_adc / cc.adc_rate)
        n_arrays = rb * cb
        adcs_per_array = -(-self.array.cols // self.columns_per_adc)
        area = n_arrays * (2 * self.array.rows * self.array.cols * float(c.cell_area)
                           + adcs_per_array * cc.adc_area(adc_bits)
                           + self.array.rows * cc.dac_area(1 if serial else dac_bits))
        sources = tuple(s for s in ((c.card.source if c.card else ""), (cc.card.source if cc.card else "")) if s)
        e_prog, t_prog = self.program_cost(w_shape, state=state)
        return Cost(
            counts={"dac_conversions": n_dac, "adc_conversions": n_adc, "cell_reads": n_cells,
                    "digital_adds": n_add, "arrays": n_arrays, "wire_energy_j": e_wire, "input_cycles": J},
            energy_j=energy, latency_s=n_mvm * t_mvm, area_m2=area, macs=float(n_in * out * n_mvm),
            bits_weight=(int(np.log2(c.levels)) + 1) if c.levels else None, bits_activation=self.dac.bits,
            hardware=self.name, measured=False, sources=sources,
            mac_units=float(n_arrays * self.array.rows * self.array.cols),
            program_energy_j=float(e_prog), program_time_s=float(t_prog),
        )
