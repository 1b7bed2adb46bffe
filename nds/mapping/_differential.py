"""Weight ↔ conductance mapping on differential pairs (G+ − G−).

A signed weight matrix ``w`` is scaled by a per-layer factor ``w_scale = max |w|`` and placed
on two devices per weight: ``g± = g_min + (g_max − g_min) · q(relu(±w / w_scale))`` where ``q``
rounds to the cell's ``levels`` (straight-through gradient) or is the identity for continuous
cells. The unused device of each pair sits at ``g_min``, so ``g+ − g− ∝ w`` exactly in the
ideal limit (Joshi et al. 2020; Burr et al., IEEE T-ED 2015).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._ste import round_ste, absmax

__all__ = ["DifferentialMapping"]


def _materialized_transpose(pred, a):
    t = lambda c: c.transpose(0, 2, 1)
    return jax.lax.cond(pred, t, t, a)


@jax.custom_jvp
def _to_rows_inputs(g):
    """``g.transpose(0, 2, 1)``: (2, out, in) → (2, in, out), computed (and, through the JVP
    rule, transposed back in the backward pass) inside a ``lax.cond`` whose two branches are
    the same transpose: the conditional makes XLA materialize the cotangent in one plain
    transpose, where fused with the slicing of the two planes around it XLA CPU emits loops
    up to ~20x slower (noise-aware training; docs/perf.md)."""
    return _materialized_transpose(jnp.isfinite(g[0, 0, 0]), g)


@_to_rows_inputs.defjvp
def _to_rows_inputs_jvp(primals, tangents):
    (g,), (dg,) = primals, tangents
    pred = jnp.isfinite(g[0, 0, 0])
    return _materialized_transpose(pred, g), _materialized_transpose(pred, dg)


class DifferentialMapping(eqx.Module):
    """Signed weights on a differential pair with a per-layer scale.

    ``scale_mode="max"`` uses ``max |w|`` of the layer; ``"column"`` uses ``max |w|`` per
    output column (a per-column digital scale, as aihwkit's channel-wise remapping).
    """

    scale_mode: str = eqx.field(static=True, default="max")

    def __check_init__(self):
        if self.scale_mode not in ("max", "column"):
            raise ValueError(f"DifferentialMapping.scale_mode = {self.scale_mode!r}; allowed: 'max', 'column'")

    def scale(self, w: Float[Array, "out in"]) -> Float[Array, " out"]:
        """Per-output weight scale (weight units per unit of normalized conductance), shape
        (out,); 0 for an all-zero matrix (``"max"``) or an all-zero row (``"column"``), so
        that the output of such weights is exactly 0 whatever the read noise."""
        if self.scale_mode == "max":
            return absmax(w) * jnp.ones(w.shape[0], w.dtype)
        return absmax(w, 1)

    def to_conductance(self, w: Float[Array, "out in"], g_min, g_max, levels: int
                       ) -> tuple[Float[Array, "2 in out"], Float[Array, " out"]]:
        """Target conductances ``(g+, g−)`` stacked on axis 0, shape (2, in, out) so that rows
        are word lines (inputs) and columns are bit lines (outputs), and the per-output scale
        (0 where the weights are all zero: every device then sits at ``g_min``). Units: S."""
        s = self.scale(w)
        wn = w / jnp.where(s > 0, s, jnp.ones_like(s))[:, None]  # (out, in), |wn| <= 1
        pos, neg = jnp.maximum(wn, 0.0), jnp.maximum(-wn, 0.0)
        if levels:
            pos = round_ste(pos * (levels - 1)) / (levels - 1)
            neg = round_ste(neg * (levels - 1)) / (levels - 1)
        # computed in the weight's (out, in) layout and transposed once as a stacked array: in
        # noise-aware training XLA CPU then transposes the cotangent in one plain pass, where
        # transposing first gave fused slice-and-transpose loops ~10x slower (docs/perf.md)
        g = _to_rows_inputs(g_min + (g_max - g_min) * jnp.stack([pos, neg]))
        return g, s
