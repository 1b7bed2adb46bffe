"""Resistive crossbar array: how cells are wired and their currents summed.

Cells sit between word line ``i`` (input voltage ``v_i``) and bit line ``j``; with ideal wires
the bit-line current is ``I_j = Σ_i v_i g_ij`` (Ohm's and Kirchhoff's laws). The wire model is
the seam for circuit-level effects: :class:`IdealWires` returns ``g`` itself as the transfer
matrix; a wire model with resistance returns the exact linear transfer matrix ``M`` of the
resistive network (``I = v @ M``), computed once per programmed state (see
:mod:`nds.arrays._ir_drop`).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._partition import blocks, num_blocks, pad_to
from ._ir_drop import (
    crossbar_currents_nonlinear,
    crossbar_node_voltages,
    crossbar_transfer,
    crossbar_transfer_first_order,
)

__all__ = ["AbstractWires", "IdealWires", "NonlinearWires", "ResistiveCrossbar", "ResistiveWires", "FIRST_ORDER_WARN"]


class AbstractWires(eqx.Module):
    """Wire model of one ``(rows, cols)`` array: conductances → linear transfer matrix."""

    @abc.abstractmethod
    def transfer(self, g: Float[Array, "rows cols"]) -> Float[Array, "rows cols"]:
        """Matrix ``M`` (S) with bit-line currents ``I = v @ M`` for word-line voltages ``v``."""

    def ideal(self) -> "AbstractWires":
        """The zero-resistance wire model (:class:`IdealWires`)."""
        return IdealWires()

    @property
    def is_ideal(self) -> bool:
        """Whether ``transfer(g)`` is ``g`` itself (no wire resistance). Default: False."""
        return False

    @property
    def is_linear(self) -> bool:
        """Whether the array is linear in its inputs (then ``I = v @ transfer(g)`` exactly)."""
        return True

    def currents(self, g: Float[Array, "rows cols"], v: Float[Array, "... rows"]) -> Float[Array, "... cols"]:
        """Bit-line currents (A) for word-line voltages ``v`` (V). Default: ``v @ transfer(g)``."""
        return v @ self.transfer(g)

    def wire_power_uniform(self, g: float, v: float, rows: int, cols: int,
                           rows_used: int | None = None, cols_used: int | None = None) -> float:
        """Power (W) dissipated in the wires of a uniformly programmed, uniformly driven
        array (see :meth:`ResistiveWires.wire_power_uniform`). Default (no resistance): 0."""
        return 0.0

    def transfer_block(self, g: Float[Array, "ru cu"], rows: int, cols: int) -> Float[Array, "ru cu"]:
        """Transfer matrix of the used ``ru × cu`` corner (rows 0.., columns 0..) of a
        ``rows × cols`` array whose other cells are empty (0 S). Default: pad and solve."""
        ru, cu = g.shape
        if (ru, cu) == (rows, cols):
            return self.transfer(g)
        return self.transfer(pad_to(pad_to(g, 0, rows), 1, cols))[:ru, :cu]


class IdealWires(AbstractWires):
    """Zero wire resistance: ``M = g``."""

    def transfer(self, g):
        """``M = g`` (S), shape ``(rows, cols)`` (see :meth:`AbstractWires.transfer`)."""
        return g

    @property
    def is_ideal(self) -> bool:
        """True: no wire resistance."""
        return True


_FIDELITIES = ("exact", "first_order")


def _sum_sq_min(n_used: int, n_seg: int) -> float:
    """``Σ_{k=1}^{n_seg} min(k, n_used)²``: bit-line segment currents (in units of one
    cell's current) below rows 0..n_seg-1 when rows 0..n_used-1 carry current."""
    k = np.arange(1, n_seg + 1, dtype=np.float64)
    return float(np.sum(np.minimum(k, n_used) ** 2))


#: largest first-order relative IR drop without a warning (output error about 2 %)
FIRST_ORDER_WARN = 0.25


def _warn_first_order(t_max) -> None:
    import warnings

    t = float(np.max(np.asarray(t_max)))
    if FIRST_ORDER_WARN < t < 1.0:  # from 1 on, the transfer is refused (eqx.error_if)
        warnings.warn(f"ResistiveWires(fidelity='first_order'): the largest first-order IR drop is {t:.3g} of a "
                      f"cell's current (> {FIRST_ORDER_WARN}): the first-order transfer errs by more than about "
                      "2 % here (g·r·n² too large); use fidelity='exact'", RuntimeWarning, stacklevel=2)


def _check_first_order(g, m):
    """``m`` (the first-order transfer of ``g``) after the validity checks: a warning when the
    largest relative drop ``T = 1 − m/g`` exceeds :data:`FIRST_ORDER_WARN`, an error when it
    reaches 1 (wrong-sign transfer)."""
    on = g > 0
    t_max = jnp.max(jnp.where(on, 1.0 - m / jnp.where(on, g, 1.0), 0.0))
    t_max = jax.lax.stop_gradient(t_max)
    jax.debug.callback(_warn_first_order, t_max)
    return eqx.error_if(m, t_max >= 1.0,
                        "ResistiveWires(fidelity='first_order') outside its validity: the first-order IR drop "
                        "reaches 100 % of a cell's current (g·r·n² too large), which gives wrong-sign, saturated "
                        "outputs; use fidelity='exact' (or smaller arrays or wire resistance)")


class ResistiveWires(AbstractWires):
    """Wires with resistance: the exact IR-drop transfer matrix of each array.

    Model and conventions as :func:`nds.arrays.crossbar_transfer` (word line ``i`` driven at
    its column-0 end through ``r_in``; bit line ``j`` sensed at its last-row end through
    ``r_out`` into a virtual ground; ``r_row``/``r_col`` the wire segment between
    neighbouring cells). Each array (and each device of a differential pair, which sits on
    its own array) is solved separately, once per programmed state; reads then cost one
    matmul.

    Attributes:
        r_row: word-line segment resistance between neighbouring cells (Ω), >= 0.
        r_col: bit-line segment resistance between neighbouring cells (Ω), >= 0.
        r_in: word-line driver resistance (Ω), >= 0, default 0.
        r_out: bit-line sense resistance (Ω), >= 0, default 0.
        fidelity: ``"exact"`` (direct solve, O(rows·cols³) per array) or ``"first_order"``
            (``g ⊙ (1 − T(g))``, O(rows·cols); error table in
            :func:`nds.arrays.crossbar_transfer_first_order`: useful while
            ``g·r·n² ≲ 0.05``). Its validity is checked on every transfer through the
            largest first-order relative drop ``T_max = max_ij T_ij`` (about
            ``0.6 g_max·r·n²`` for uniform conductances): ``T_max >`` :data:`FIRST_ORDER_WARN`
            (0.25) warns (the output error is then above ≈ 2 %: measured on a 64 × 64
            array, g uniform in [1, 100] µS, r_row = r_col: T_max = 0.07 → 0.2 %, 0.24 →
            2.1 %, 0.48 → 8 %, 0.97 → 32 % against the exact solve), and ``T_max >= 1``
            raises (``eqx.error_if``, also under ``jit``): some cells' first-order transfer is
            then <= 0, i.e. wrong-sign, saturated outputs.

    All four resistances are array leaves: gradients w.r.t. them (and w.r.t. ``g``) flow
    through the solve (IR-drop-aware training, sensitivity to wire resistance). With every
    resistance 0, ``transfer(g) == g`` exactly (the ideal limit).

    Raises:
        ValueError: a negative, NaN or infinite (concrete) resistance, or an unknown
            ``fidelity``. An infinite resistance (an open wire) is not modelled: it would
            disconnect cells, and the network solve is singular; traced resistances are
            checked in :meth:`transfer` (``eqx.error_if``).
        EquinoxRuntimeError: from :meth:`transfer`: first order outside its validity
            (``T_max >= 1``), or a traced resistance that is negative or not finite.
    """

    r_row: float | Array
    r_col: float | Array
    r_in: float | Array = 0.0
    r_out: float | Array = 0.0
    fidelity: str = eqx.field(static=True, default="exact")

    def __check_init__(self):
        if self.fidelity not in _FIDELITIES:
            raise ValueError(f"ResistiveWires.fidelity = {self.fidelity!r}; allowed: {_FIDELITIES}")
        for name in ("r_row", "r_col", "r_in", "r_out"):
            r = getattr(self, name)
            if not isinstance(r, jax.core.Tracer):
                rn = np.asarray(r, dtype=np.float64)
                if rn.size and (np.isnan(rn).any() or rn.min() < 0):
                    raise ValueError(f"ResistiveWires.{name} = {r!r} Ω: must be >= 0 (0 = shorted)")
                if rn.size and np.isinf(rn).any():
                    raise ValueError(f"ResistiveWires.{name} = {r!r} Ω: must be finite (an open wire is not "
                                     "modelled; leave the cells it would disconnect out of the array)")

    def _solve(self, g, r_out):
        rs = [jnp.asarray(r) for r in (self.r_row, self.r_col, self.r_in, r_out)]
        if any(isinstance(r, jax.core.Tracer) for r in rs):
            bad = jnp.zeros((), bool)
            for r in rs:
                bad = bad | ~jnp.all(jnp.isfinite(r) & (r >= 0))
            g = eqx.error_if(g, bad, "ResistiveWires: wire resistances must be finite and >= 0 Ω")
        if self.fidelity == "exact":
            return crossbar_transfer(g, r_row=self.r_row, r_col=self.r_col, r_in=self.r_in, r_out=r_out)
        m = crossbar_transfer_first_order(g, r_row=self.r_row, r_col=self.r_col, r_in=self.r_in, r_out=r_out)
        return _check_first_order(g, m)

    def transfer(self, g):
        """IR-drop transfer matrix (S) of one ``(rows, cols)`` array of conductances ``g``
        (S): exact solve or first order, per ``fidelity`` (see :meth:`AbstractWires.transfer`;
        the first order's validity check in the class docstring)."""
        return self._solve(g, self.r_out)

    def transfer_block(self, g, rows, cols):
        """As :meth:`AbstractWires.transfer_block`, reduced exactly when every resistance is
        a scalar: empty columns beyond the used ones carry no current (dropped), and the
        bit-line segments below the last used row carry the whole column current, i.e. a
        series resistance ``(rows − ru)·r_col`` added to ``r_out``. The cost is that of the
        used ``ru × cu`` corner, not of the physical array."""
        scalar = all(jnp.ndim(getattr(self, n)) == 0 for n in ("r_row", "r_col", "r_in", "r_out"))
        ru, cu = g.shape
        if not scalar or (ru, cu) == (rows, cols):
            return super().transfer_block(g, rows, cols)
        return self._solve(g, self.r_out + (rows - ru) * self.r_col)

    def wire_power(self, g: Float[Array, "rows cols"], v: Float[Array, "... rows"]) -> Float[Array, "..."]:
        """Power (W) dissipated in the word- and bit-line segments (``r_row``, ``r_col``;
        not the driver ``r_in`` nor the sense ``r_out``) for word-line voltages ``v``, from
        the exact node solution (:func:`nds.arrays.crossbar_node_voltages`). Shape ``v.shape[:-1]``."""
        nodes = crossbar_node_voltages(g, v, r_row=self.r_row, r_col=self.r_col, r_in=self.r_in,
                                       r_out=self.r_out)
        c = nodes.cell_currents  # (..., rows, cols)
        rows, cols = g.shape
        wl = jnp.flip(jnp.cumsum(jnp.flip(c, -1), -1), -1)[..., 1:]  # segment feeding node j >= 1
        bl = jnp.cumsum(c, axis=-2)[..., :-1, :]  # segment below row i < rows-1
        r_row = jnp.broadcast_to(jnp.asarray(self.r_row, c.dtype), (rows, cols - 1))
        r_col = jnp.broadcast_to(jnp.asarray(self.r_col, c.dtype), (rows - 1, cols))
        return jnp.sum(r_row * wl**2, axis=(-2, -1)) + jnp.sum(r_col * bl**2, axis=(-2, -1))

    def wire_power_uniform(self, g: float, v: float, rows: int, cols: int,
                           rows_used: int | None = None, cols_used: int | None = None) -> float:
        """Wire power (W), first order, for a ``rows × cols`` array whose first
        ``rows_used × cols_used`` cells all have conductance ``g`` (S) and whose used word
        lines are all at ``v`` (V) (the rest: no current).

        Each cell carries its ideal current ``g v``; the word-line segment feeding column
        ``j`` carries ``(cols_used − j) g v`` and the bit-line segment below row ``i``
        carries ``min(i+1, rows_used) g v``, so
        ``P = (g v)² [rows_used · r_row · Σ_{k<cols_used} k² + cols_used · r_col · Σ_{k=1}^{rows−1} min(k, rows_used)²]``
        (scalar resistances; per-segment arrays use their mean). Relative error against
        the exact solve is first order in ``g·r·n²`` (IR drop lowers the currents, so this
        is an upper bound). With ``rows_used = rows``, ``cols_used = cols``:
        ``P ≈ (g v)² n⁴ (r_row + r_col)/3`` for an ``n × n`` array, against ``n² g v²`` in
        the cells: the wire share grows as ``g·r·n²``.
        """
        ru = rows if rows_used is None else rows_used
        cu = cols if cols_used is None else cols_used
        r_row = float(np.mean(np.asarray(self.r_row)))
        r_col = float(np.mean(np.asarray(self.r_col)))
        s_wl = float(np.sum(np.arange(1, cu, dtype=np.float64) ** 2))
        s_bl = _sum_sq_min(ru, rows - 1)
        return float((g * v) ** 2 * (ru * r_row * s_wl + cu * r_col * s_bl))


class NonlinearWires(AbstractWires):
    """Wire resistance with non-linear cells, solved at every read (Newton; slow).

    The cell I-V is ``I = g·v0·sinh(V/v0)`` (``iv="sinh"``) or linear, through
    :func:`nds.arrays.crossbar_currents_nonlinear`. Because the array is no longer linear
    in its inputs there is no transfer matrix: :meth:`currents` solves each read (each
    input vector, each array, each device of a pair) with Newton's method — seconds for a
    small layer, so use it for small arrays (≲ 64 × 64) and few inputs.
    :meth:`transfer` returns the small-signal (``V → 0``) linear transfer matrix, used for
    references (drift compensation) and read-noise variance.

    Attributes:
        r_row, r_col, r_in, r_out: as :class:`ResistiveWires` (Ω).
        iv: ``"sinh"`` or ``"linear"``.
        v0: the sinh law's voltage scale (V), > 0; smaller = more non-linear.
        max_steps: Newton step limit (non-convergence raises under jit).
    """

    r_row: float | Array
    r_col: float | Array
    r_in: float | Array = 0.0
    r_out: float | Array = 0.0
    iv: str = eqx.field(static=True, default="sinh")
    v0: float | Array = 0.25
    max_steps: int = eqx.field(static=True, default=64)

    def __check_init__(self):
        if self.iv not in ("sinh", "linear"):
            raise ValueError(f"NonlinearWires.iv = {self.iv!r}; allowed: 'sinh', 'linear'")
        if not isinstance(self.v0, jax.core.Tracer) and not float(np.asarray(self.v0)) > 0:
            raise ValueError(f"NonlinearWires.v0 = {self.v0!r} V: must be > 0")

    @property
    def is_linear(self) -> bool:
        """False: the cells' I-V makes the array non-linear in its inputs."""
        return False

    def transfer(self, g):
        """Small-signal (``V → 0``) linear transfer matrix (S) of one ``(rows, cols)`` array,
        exact solve (see :meth:`AbstractWires.transfer`); reads use :meth:`currents`."""
        return crossbar_transfer(g, r_row=self.r_row, r_col=self.r_col, r_in=self.r_in, r_out=self.r_out)

    def currents(self, g: Float[Array, "rows cols"], v: Float[Array, "... rows"]) -> Float[Array, "... cols"]:
        """Bit-line currents (A) for word-line voltages ``v`` (V), non-linear solve."""
        return crossbar_currents_nonlinear(g, v, r_row=self.r_row, r_col=self.r_col, r_in=self.r_in,
                                           r_out=self.r_out, iv=self.iv, v0=self.v0,
                                           max_steps=self.max_steps)


class ResistiveCrossbar(eqx.Module):
    """A grid of ``rows × cols`` crossbar arrays holding an ``(n_in, n_out)`` matrix.

    Cells are 1T1R (an access transistor per cell, the default and the only topology used
    for MVMs here): during an MVM every word line is driven, so there are no half-selected
    cells and the wire model alone sets the currents. Passive (1R / 1S1R) arrays, where
    unselected cells open sneak paths during a single-cell read, are modelled by
    :func:`nds.arrays.sneak_path_currents` (floating, V/2 and V/3 biasing, linear or sinh
    selector law).

    Attributes:
        rows, cols: array size (word lines × bit lines), default 256 × 256.
        wires: wire model (default ideal).
    """

    rows: int = eqx.field(static=True, default=256)
    cols: int = eqx.field(static=True, default=256)
    wires: AbstractWires = IdealWires()

    def __check_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"ResistiveCrossbar rows={self.rows}, cols={self.cols}: both must be >= 1")

    def grid(self, n_in: int, n_out: int) -> tuple[int, int]:
        """(row blocks, column blocks) for an ``(n_in, n_out)`` matrix."""
        return num_blocks(n_in, n_out, self.rows, self.cols)

    def effective(self, g: Float[Array, "n_in n_out"]) -> Float[Array, "rb r n_out"]:
        """Per-array transfer matrices, laid out as ``(rb, r, n_out)`` (S): row block ``b``
        holds word lines ``b·rows .. b·rows + r``; ``r = rows``, or ``n_in`` when one block
        suffices (no padding). Unused (padded) cells are zero conductance."""
        n_in, n_out = g.shape
        rb, cb = self.grid(n_in, n_out)
        if self.wires.is_ideal:
            r = self.rows if rb > 1 else n_in
            return pad_to(g, 0, rb * r).reshape(rb, r, n_out)
        R, C = self.rows, self.cols
        ru, cu = n_in - (rb - 1) * R, n_out - (cb - 1) * C  # used size of the last blocks
        # blocks of equal shape are solved together: full ones, the last row block, the
        # last column block and the corner (partial blocks solve only their used cells)
        groups = []
        for r0, nr, nrb in ((0, R, rb - 1), ((rb - 1) * R, ru, 1)):
            if nrb == 0:
                continue
            parts = []
            for c0, nc, ncb in ((0, C, cb - 1), ((cb - 1) * C, cu, 1)):
                if ncb == 0:
                    continue
                sub = g[r0:r0 + nrb * nr, c0:c0 + ncb * nc].reshape(nrb, nr, ncb, nc).transpose(0, 2, 1, 3)
                mb = jax.vmap(jax.vmap(lambda gg: self.wires.transfer_block(gg, R, C)))(sub)
                parts.append(mb.transpose(0, 2, 1, 3).reshape(nrb, nr, ncb * nc))
            groups.append(jnp.concatenate(parts, axis=2))
        if rb == 1:
            return groups[0]
        groups[-1] = pad_to(groups[-1], 1, R)
        return jnp.concatenate(groups, axis=0)

    def currents(self, m: Float[Array, "rb r n_out"], v: Float[Array, " n_in"]) -> Float[Array, "rb n_out"]:
        """Bit-line currents (A) of every array for word-line voltages ``v`` (V):
        one row per row block (the partial sums, added digitally after the ADC)."""
        rb, r = m.shape[0], m.shape[1]
        vb = pad_to(v, 0, rb * r).reshape(rb, r)
        return jnp.einsum("br,brc->bc", vb, m)

    def read(self, g: Float[Array, "n_in n_out"], v: Float[Array, "p n_in"]) -> Float[Array, "p rb n_out"]:
        """Bit-line currents (A) of every array, solved per read by the wire model's
        :meth:`AbstractWires.currents` (for non-linear wires; linear ones should use
        :meth:`effective` once and :meth:`currents`). ``g`` (n_in, n_out) in S, ``v``
        (p, n_in) in V; returns (p, rb, n_out), one row per row block."""
        n_in, n_out = g.shape
        rb, cb = self.grid(n_in, n_out)
        gb = blocks(g, self.rows, self.cols)  # (rb, cb, rows, cols)
        vb = pad_to(v, 1, rb * self.rows).reshape(v.shape[0], rb, self.rows)

        def one_block(gbc, vbb):  # (rows, cols), (p, rows) -> (p, cols)
            return self.wires.currents(gbc, vbb)

        # over row blocks (g, v) and column blocks (g only)
        out = jax.vmap(lambda grow, vr: jax.vmap(lambda gg: one_block(gg, vr))(grow),
                       in_axes=(0, 1))(gb, vb)  # (rb, cb, p, cols)
        out = jnp.moveaxis(out, 2, 0).reshape(v.shape[0], rb, cb * self.cols)[:, :, :n_out]
        return out

    def ideal(self) -> "ResistiveCrossbar":
        """Same array size with :class:`IdealWires`."""
        return ResistiveCrossbar(rows=self.rows, cols=self.cols, wires=IdealWires())
