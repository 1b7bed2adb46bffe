"""Partition of a large matrix onto fixed-size arrays.

A ``(n_in, n_out)`` conductance matrix (rows = word lines = inputs) is padded with zeros to
multiples of the array size ``(rows, cols)`` and viewed as a grid of
``ceil(n_in/rows) × ceil(n_out/cols)`` arrays. Each array converts each of its columns once
per MVM; partial sums of the row blocks are added digitally.

It lives with the arrays because :class:`~nds.arrays.ResistiveCrossbar` needs it and arrays
sit below mapping (DESIGN.md); :mod:`nds.mapping` re-exports ``blocks`` and ``num_blocks``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["num_blocks", "blocks", "pad_to"]


def num_blocks(n_in: int, n_out: int, rows: int, cols: int) -> tuple[int, int]:
    """Number of row blocks and column blocks of ``(rows, cols)`` arrays needed for an
    ``(n_in, n_out)`` matrix: ``(ceil(n_in / rows), ceil(n_out / cols))``.

    Raises:
        ValueError: ``rows`` or ``cols`` < 1.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"array size rows={rows}, cols={cols}: both must be >= 1")
    return math.ceil(n_in / rows), math.ceil(n_out / cols)


def pad_to(x: Float[Array, "..."], axis: int, size: int) -> Float[Array, "..."]:
    """Zero-pad ``x`` along ``axis`` to length ``size`` (>= its current length); same dtype."""
    n = x.shape[axis]
    if n == size:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - n)
    return jnp.pad(x, widths)


def blocks(g: Float[Array, "... n_in n_out"], rows: int, cols: int) -> Float[Array, "... rb cb rows cols"]:
    """Pad and reshape the last two axes into a grid of ``(rows, cols)`` arrays:
    ``(..., n_in, n_out)`` -> ``(..., rb, cb, rows, cols)`` (:func:`num_blocks`), zeros in the
    padding (a zero conductance carries no current).

    Raises:
        ValueError: ``rows`` or ``cols`` < 1.
    """
    n_in, n_out = g.shape[-2:]
    rb, cb = num_blocks(n_in, n_out, rows, cols)
    g = pad_to(pad_to(g, -2, rb * rows), -1, cb * cols)
    lead = g.shape[:-2]
    g = g.reshape(*lead, rb, rows, cb, cols)
    return jnp.moveaxis(g, -3, -2)
