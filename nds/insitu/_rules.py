"""Update rules a crossbar executes in parallel: how ``(x, δ)`` becomes pulses per device.

An in-situ update of a layer ``y = W x`` wants ``ΔW_ij = η δ_i x_j`` (``δ`` the error the
backward pass delivered, sign included). A crossbar cannot add an arbitrary matrix; it applies
voltage pulses on its rows (inputs ``x``) and columns (errors ``δ``), and a device changes
where a row pulse and a column pulse coincide. Each rule returns the signed number of
coincident pulses per device, ``n`` of shape ``(in, out)`` (rows, columns; positive raises the
weight), and what it cost to make them (:class:`RuleCounts`).

* :class:`ManhattanRule` — one pulse per device in the direction ``sign(δ_i x_j)`` (the
  Manhattan rule of Zamanidoost et al., IEEE WISP 2015; the coarse delta rule of Prezioso
  et al., Nature 521, 61 (2015)). Per example (a rank-1 sign pattern: 4 phases of the V/2
  scheme, one for each sign combination of row and column) or per batch
  (:meth:`ManhattanRule.from_gradient`: ``sign`` of the accumulated ``Σ δ xᵀ``, a full-rank
  pattern applied row by row, 2 phases per row).
* :class:`StochasticPulseRule` — stochastic pulse trains with coincidence (Gokmen & Vlasov,
  Front. Neurosci. 10, 333 (2016)): row ``j`` fires each of ``BL`` slots with probability
  ``p_j = min(C_x |x_j|, 1)``, column ``i`` with ``q_i = min(C_δ |δ_i|, 1)``, independently;
  the device ``(j, i)`` receives ``n_ji = Σ_t a_tj b_ti`` pulses of sign ``sign(x_j δ_i)``.
  For one device the slots are independent, so ``n_ji ~ Binomial(BL, p_j q_i)``:
  ``E[n] = BL p q`` and ``Var[n] = BL p q (1 − p q)``. With ``C_x C_δ = η/(BL Δw_min)``
  (``Δw_min`` the weight change of one pulse) the expected update is ``η δ x`` exactly while no
  probability clips at 1 (aihwkit's pulsed update). Update management balances the two
  probabilities: ``C_x = sqrt(K m_δ/m_x)``, ``C_δ = sqrt(K m_x/m_δ)``, ``K = η/(BL Δw_min)``,
  ``m`` the largest ``|x|`` and ``|δ|`` of the update (aihwkit's ``update_management``).
  4 phases of ``BL`` slots.
* :class:`AnalogRule` — the update as if pulses could be any real number:
  ``n = η δ x / Δw_min`` (an ideal pulse-width-modulated write). With a linear, symmetric,
  noise-free, unbounded device it makes in-situ training identical to SGD (checked in the
  tests); it is the reference, not a circuit.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import require
from .._keys import streams

__all__ = ["RuleCounts", "AbstractUpdateRule", "ManhattanRule", "StochasticPulseRule", "AnalogRule"]


class RuleCounts(eqx.Module):
    """What one update's pulse trains cost at the periphery (scalars).

    Attributes:
        row_pulses: row-line pulses (a row driven in one slot of one phase counts once).
        col_pulses: column-line pulses.
        rng_bits: random bits generated (stochastic pulse trains).
        slots: pulse slots in sequence (phases × slots per phase): the update time is
            ``slots · t_pulse``.
    """

    row_pulses: Float[Array, ""]
    col_pulses: Float[Array, ""]
    rng_bits: Float[Array, ""]
    slots: Float[Array, ""]


def _sign(v):
    return jnp.sign(v)


def _split(v):
    """Indicator (or magnitude) parts of ``v``: ``(v > 0, v < 0)`` as floats."""
    return (v > 0).astype(v.dtype), (v < 0).astype(v.dtype)


def _updown(pos_x, neg_x, pos_d, neg_d):
    """``(Σ over positive-sign coincidences, Σ over negative-sign ones)``: for stacked
    ``(K, in)`` and ``(K, out)`` parts, ``(P_xᵀP_d + M_xᵀM_d, P_xᵀM_d + M_xᵀP_d)``."""
    up = pos_x.T @ pos_d + neg_x.T @ neg_d
    down = pos_x.T @ neg_d + neg_x.T @ pos_d
    return up, down


class AbstractUpdateRule(eqx.Module):
    """A crossbar update rule (see the module docstring)."""

    def pulses_batch(self, x: Float[Array, "B n_in"], d: Float[Array, "B n_out"], dw_min: Float[Array, ""], *,
                     key: PRNGKeyArray | None
                     ) -> tuple[Float[Array, "n_in n_out"], Float[Array, "n_in n_out"], RuleCounts]:
        """The updates of ``B`` examples (each ``ΔW ∝ d_b x_bᵀ``, one rank-1 pulse pattern
        per example): per device the total number of pulses that raise the weight and the
        total that lower it, ``(n_up, n_down)``, both ``>= 0`` and of shape ``(in, out)``, and
        the peripheral counts summed over the batch (``dw_min``: weight change of one pulse at
        mid-range)."""
        raise NotImplementedError

    def pulses(self, x: Float[Array, " n_in"], d: Float[Array, " n_out"], dw_min: Float[Array, ""], *,
               key: PRNGKeyArray | None) -> tuple[Float[Array, "n_in n_out"], RuleCounts]:
        """Signed pulse counts per device ``(in, out)`` for one update ``ΔW ∝ d xᵀ`` (a rank-1
        pattern gives each device pulses of one sign) and their peripheral counts."""
        up, down, counts = self.pulses_batch(x[None], d[None], dw_min, key=key)
        return up - down, counts


class ManhattanRule(AbstractUpdateRule):
    """One pulse per device, ``sign(δ_i x_j)``; devices with ``x_j = 0`` or ``δ_i = 0`` are
    not pulsed. ``pulses_per_update`` (static) pulses per selected device (default 1)."""

    pulses_per_update: int = eqx.field(static=True, default=1)

    def pulses_batch(self, x, d, dw_min, *, key=None):
        """Per example the rank-1 sign pattern ``k sign(x_b) sign(d_b)ᵀ``; 4 phases (V/2
        scheme, one per sign combination of row and column) of ``k`` slots per example; each
        driven row and column pulses in 2 of them."""
        del dw_min, key
        k = float(self.pulses_per_update)
        px, mx = _split(x)
        pd, md = _split(d)
        up, down = _updown(px, mx, pd, md)
        dt = up.dtype
        counts = RuleCounts(row_pulses=2 * k * jnp.sum(px + mx), col_pulses=2 * k * jnp.sum(pd + md),
                            rng_bits=jnp.zeros((), dt), slots=jnp.asarray(4 * k * x.shape[0], dt))
        return k * up, k * down, counts

    def from_gradient(self, grad: Float[Array, "n_in n_out"]) -> tuple[Float[Array, "n_in n_out"], RuleCounts]:
        """Batch Manhattan rule: ``n = k sign(grad)`` for an accumulated (digital) update
        direction ``grad`` (``Σ_n x δᵀ``, shape ``(in, out)``). A full-rank sign pattern is
        written row by row: 2 phases (potentiate, depress) per row with any pulse."""
        k = float(self.pulses_per_update)
        s = _sign(grad)
        n = k * s
        dt = n.dtype
        rows_active = jnp.sum(jnp.any(s != 0, axis=1)).astype(dt)
        counts = RuleCounts(row_pulses=2 * k * rows_active, col_pulses=k * jnp.sum(jnp.abs(s)).astype(dt),
                            rng_bits=jnp.zeros((), dt), slots=2 * k * rows_active)
        return n, counts


class StochasticPulseRule(AbstractUpdateRule):
    """Stochastic pulse trains with coincidence (module docstring).

    Attributes:
        lr: learning rate ``η`` (weight units per unit of ``δ x``).
        bl: bit length ``BL`` (slots per phase; static).
        update_management: balance the row and column probabilities (static; default True).
    """

    lr: float
    bl: int = eqx.field(static=True, default=10)
    update_management: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.bl < 1:
            raise ValueError(f"StochasticPulseRule.bl = {self.bl}: must be >= 1")
        # concrete values only: lr stays a differentiable leaf (nds._checks)
        require(lambda v: v > 0, "StochasticPulseRule", "lr", self.lr, "must be > 0")

    def probabilities(self, x, d, dw_min) -> tuple[Float[Array, " n_in"], Float[Array, " n_out"]]:
        """Row and column firing probabilities ``(p, q)``, clipped to ``[0, 1]``."""
        k = self.lr / (self.bl * dw_min)
        if self.update_management:
            mx, md = jnp.max(jnp.abs(x)), jnp.max(jnp.abs(d))
            ok = (mx > 0) & (md > 0)
            ratio = jnp.where(ok, md / jnp.where(ok, mx, 1.0), 1.0)
            cx, cd = jnp.sqrt(k * ratio), jnp.sqrt(k / ratio)
        else:
            cx = cd = jnp.sqrt(k)
        return jnp.clip(cx * jnp.abs(x), 0.0, 1.0), jnp.clip(cd * jnp.abs(d), 0.0, 1.0)

    def pulses_batch(self, x, d, dw_min, *, key):
        """Per example ``b``: ``a_b ~ Bernoulli(p_b)`` of shape ``(BL, in)``, ``c_b ~
        Bernoulli(q_b)`` of shape ``(BL, out)``; device ``(j, i)`` receives ``Σ_t a_btj c_bti``
        pulses of sign ``sign(x_bj d_bi)``. 4 phases of ``BL`` slots per example, each fired
        row and column bit driving its line in 2 of them.

        Raises:
            ValueError: ``key`` is None (the pulse trains are random).
        """
        if key is None:
            raise ValueError("StochasticPulseRule.pulses: the pulse trains are random; pass key=...")
        nb = x.shape[0]
        p, q = jax.vmap(lambda xi, di: self.probabilities(xi, di, dw_min))(x, d)
        kx, kd = streams(key, "rows", "cols")
        dt = jnp.result_type(x, d, float)
        a = jax.random.bernoulli(kx, p[:, None, :], (nb, self.bl, x.shape[1])).astype(dt)
        c = jax.random.bernoulli(kd, q[:, None, :], (nb, self.bl, d.shape[1])).astype(dt)
        px, mx = _split(x)
        pd, md = _split(d)
        flat = lambda t: t.reshape(nb * self.bl, -1)
        up, down = _updown(flat(a * px[:, None, :]), flat(a * mx[:, None, :]), flat(c * pd[:, None, :]),
                           flat(c * md[:, None, :]))
        counts = RuleCounts(row_pulses=2 * jnp.sum(a), col_pulses=2 * jnp.sum(c),
                            rng_bits=jnp.asarray(nb * self.bl * (x.shape[1] + d.shape[1]), dt),
                            slots=jnp.asarray(4 * self.bl * nb, dt))
        return up, down, counts


class AnalogRule(AbstractUpdateRule):
    """Real-valued pulse counts ``n = η x δᵀ / Δw_min``: the exact update (the reference for
    the ideal-device test; not a circuit). Counted as one slot of 4 phases."""

    lr: float

    def pulses_batch(self, x, d, dw_min, *, key=None):
        """``n_up = (lr/dw_min)(X₊ᵀD₊ + X₋ᵀD₋)``, ``n_down = (lr/dw_min)(X₊ᵀD₋ + X₋ᵀD₊)``
        (``X₊ = max(X, 0)``, ``X₋ = max(−X, 0)``): the positive and negative parts of
        ``Σ_b lr x_b d_bᵀ / dw_min`` per example, summed."""
        del key
        f = self.lr / dw_min
        up, down = _updown(jnp.maximum(x, 0.0), jnp.maximum(-x, 0.0), jnp.maximum(d, 0.0), jnp.maximum(-d, 0.0))
        dt = up.dtype
        counts = RuleCounts(row_pulses=2 * jnp.sum(x != 0).astype(dt), col_pulses=2 * jnp.sum(d != 0).astype(dt),
                            rng_bits=jnp.zeros((), dt), slots=jnp.asarray(4.0 * x.shape[0], dt))
        return f * up, f * down, counts
