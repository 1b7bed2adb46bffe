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
from jaxtyping import Array, Float

from ..mapping._partition import blocks, num_blocks, pad_to

__all__ = ["AbstractWires", "IdealWires", "ResistiveCrossbar"]


class AbstractWires(eqx.Module):
    """Wire model of one ``(rows, cols)`` array: conductances → linear transfer matrix."""

    @abc.abstractmethod
    def transfer(self, g: Float[Array, "rows cols"]) -> Float[Array, "rows cols"]:
        """Matrix ``M`` (S) with bit-line currents ``I = v @ M`` for word-line voltages ``v``."""

    def ideal(self) -> "AbstractWires":
        return IdealWires()

    @property
    def is_ideal(self) -> bool:
        return False


class IdealWires(AbstractWires):
    """Zero wire resistance: ``M = g``."""

    def transfer(self, g):
        return g

    @property
    def is_ideal(self) -> bool:
        return True


class ResistiveCrossbar(eqx.Module):
    """A grid of ``rows × cols`` crossbar arrays holding an ``(n_in, n_out)`` matrix.

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
        gb = blocks(g, self.rows, self.cols)  # (rb, cb, rows, cols)
        mb = jax.vmap(jax.vmap(self.wires.transfer))(gb)
        m = jnp.moveaxis(mb, 1, 2).reshape(rb, self.rows, cb * self.cols)[:, :, :n_out]
        if rb == 1:
            m = m[:, :n_in]
        return m

    def currents(self, m: Float[Array, "rb r n_out"], v: Float[Array, " n_in"]) -> Float[Array, "rb n_out"]:
        """Bit-line currents (A) of every array for word-line voltages ``v`` (V):
        one row per row block (the partial sums, added digitally after the ADC)."""
        rb, r = m.shape[0], m.shape[1]
        vb = pad_to(v, 0, rb * r).reshape(rb, r)
        return jnp.einsum("br,brc->bc", vb, m)

    def ideal(self) -> "ResistiveCrossbar":
        return ResistiveCrossbar(rows=self.rows, cols=self.cols, wires=IdealWires())
