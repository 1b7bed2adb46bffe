"""The tile contract: one composition of hardware that computes ``y ≈ W x`` and knows its cost.

Every tile (digital, resistive crossbar, SRAM bit-cell, switched-capacitor, near-DRAM PE
array) implements the same four methods, so that layers, :func:`nds.program`,
:func:`nds.drift`, :func:`nds.monte_carlo`, noise-aware training and :func:`nds.cost` work
with any of them:

* ``program(w, *, key)`` — program time (once per manufactured chip): maps the weight matrix
  ``w`` of shape ``(out, in)`` to the tile's physical state (conductances, offsets, ...) and
  samples the chip's static variation (D2D, programming error, mismatch, faults). Returns a
  pytree (the *state*). Differentiable in ``w`` (straight-through where rounding is
  involved), so noise-aware training differentiates through it.
* ``drift(state, t, *, key)`` — the state ``t`` seconds after programming.
* ``apply(state, x, *, key)`` — read time: one input vector ``x`` of shape ``(in,)`` → output
  ``(out,)`` in the units of ``W x``. Samples read-time noise (C2C, kT/C, comparator noise)
  from ``key``; raises ``ValueError`` if the tile has read noise and ``key`` is ``None``.
* ``cost(w_shape, n_mvm, *, w=None)`` — :class:`nds.Cost` of ``n_mvm`` matrix-vector products
  per inference with a ``(out, in)`` matrix.

``ideal()`` returns the same tile with every non-ideality off and unbounded precision, whose
``apply`` must equal ``W @ x`` (the conformance suite checks this in float64 to 1e-10).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from .._cost_types import Cost

__all__ = ["AbstractTile"]


class AbstractTile(eqx.Module):
    """Abstract tile. See the module docstring for the contract."""

    #: short hardware name used in reports ("digital", "pcm", "rram", "sram", ...)
    hardware: ClassVar[str] = "abstract"
    #: whether ``apply`` samples randomness (then a ``key`` is required)
    @property
    def needs_key(self) -> bool:
        """Whether ``apply`` samples read-time randomness, so that it needs a ``key``.
        Default: True."""
        return True

    @abc.abstractmethod
    def program(self, w: Float[Array, "out in"], *, key: PRNGKeyArray | None) -> Any:
        """Map weights to physical state and sample program-time variation."""

    def drift(self, state: Any, t: float | Float[Array, ""], *, key: PRNGKeyArray | None = None) -> Any:
        """State ``t`` seconds after programming. Default: no ageing."""
        del t, key
        return state

    @abc.abstractmethod
    def apply(self, state: Any, x: Float[Array, " in"], *, key: PRNGKeyArray | None) -> Float[Array, " out"]:
        """One matrix-vector product on the programmed tile."""

    def apply_batch(self, state: Any, x: Float[Array, "p in"], *, key: PRNGKeyArray | None) -> Float[Array, "p out"]:
        """MVMs of ``p`` input vectors that belong to one example (the patches of a
        convolution). Default: :meth:`apply` on each with its own key. Tiles may override it
        with a faster batched form; converters may then share one input scale per example."""
        if key is None:
            return jax.vmap(lambda v: self.apply(state, v, key=None))(x)
        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(lambda v, k: self.apply(state, v, key=k))(x, keys)

    @abc.abstractmethod
    def cost(self, w_shape: tuple[int, int], n_mvm: int, *, w: Float[Array, "out in"] | None = None) -> Cost:
        """Energy, latency, area and action counts of ``n_mvm`` MVMs per inference."""

    @abc.abstractmethod
    def ideal(self) -> "AbstractTile":
        """This tile with all non-idealities off and unbounded precision."""
