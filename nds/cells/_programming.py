"""Programming cost of a resistive chip: energy and time to write every device once.

Two ways a tile programs its devices, each with a closed form the cost report uses:

* **One-shot** (:class:`OneShotProgramming`, card kind ``"programming"``): every device of
  the used region of every array (both devices of a differential pair, every slice of a
  bit-sliced weight) receives ``pulses`` programming pulses of energy ``e_pulse`` and
  duration ``t_pulse``. Energy per chip ``E = N_dev · pulses · e_pulse``. Time: with
  ``row_parallel = 1`` the used devices of one word line of an array are written together
  (one pulse drives a whole row: the usual row-by-row write of 1T1R arrays), arrays one after
  another, ``T = Σ_arrays rows_used · pulses · t_pulse``; with ``row_parallel = 0`` devices are
  written one at a time, ``T = N_dev · pulses · t_pulse``.
* **Write-verify** (:class:`nds.cells.WriteVerify`): the loop's own record — total pulses ×
  (``e_pulse`` + ``e_verify``) and total pulses × ``t_pulse`` (devices one at a time) —
  measured on the programmed chip (:class:`ProgramRecord` in the tile's state).

Programming is paid once per chip, not per inference: :class:`nds.CostReport` reports it on
its own line (``CostReport.programming``) beside the per-inference energy.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._cards import AbstractCardModule
from .._checks import require, require_count

__all__ = ["OneShotProgramming", "ProgramRecord"]


class OneShotProgramming(AbstractCardModule):
    """One-shot programming cost card (kind ``"programming"``; module docstring).

    Attributes (SI):
        e_pulse: energy of one programming pulse on one device (J).
        t_pulse: duration of one programming step, pulse and overhead (s).
        pulses: programming pulses per device (>= 1).
        row_parallel: 1 = the used devices of a word line are written in one step; 0 = one
            device at a time.

    Raises:
        ValueError: a negative energy or time, ``pulses`` < 1, ``row_parallel`` not 0 or 1.
    """

    e_pulse: float
    t_pulse: float
    pulses: int = eqx.field(static=True)
    row_parallel: int = eqx.field(static=True)

    card_kind: ClassVar[str] = "programming"
    card_units: ClassVar[dict[str, str]] = {"e_pulse": "J", "t_pulse": "s", "pulses": "1", "row_parallel": "1"}
    card_ranges: ClassVar[dict] = {"e_pulse": (0.0, 1e-6), "t_pulse": (0.0, 1.0), "pulses": (1, 100000),
                                   "row_parallel": (0, 1)}

    def __check_init__(self):
        require(lambda v: v >= 0, "OneShotProgramming", "e_pulse", self.e_pulse, "must be >= 0 J")
        require(lambda v: v >= 0, "OneShotProgramming", "t_pulse", self.t_pulse, "must be >= 0 s")
        require_count("OneShotProgramming", "pulses", self.pulses, 1, 100000)
        require_count("OneShotProgramming", "row_parallel", self.row_parallel, 0, 1, why="0 or 1")

    def cost(self, n_devices: int, rows_per_array: list[int]) -> tuple[float, float]:
        """``(energy J, time s)`` to program ``n_devices`` devices on arrays whose used word
        lines are ``rows_per_array`` (one entry per array written)."""
        e = n_devices * self.pulses * self.e_pulse
        steps = sum(rows_per_array) if self.row_parallel else n_devices
        return e, steps * self.pulses * self.t_pulse


class ProgramRecord(eqx.Module):
    """What programming one chip's tile cost (kept in the tile's state).

    Attributes:
        energy_j: programming energy (J), scalar.
        time_s: programming time (s), scalar.
        pulses: total programming pulses over every device, scalar (int).
        unconverged: devices whose write-verify loop ended outside its tolerance (0 for
            one-shot programming), scalar (int).
    """

    energy_j: Float[Array, ""]
    time_s: Float[Array, ""]
    pulses: Int[Array, ""]
    unconverged: Int[Array, ""]

    @classmethod
    def one_shot(cls, card: OneShotProgramming, n_devices: int, rows_per_array: list[int], dtype) -> "ProgramRecord":
        """The closed form of :meth:`OneShotProgramming.cost`."""
        e, t = card.cost(n_devices, rows_per_array)
        return cls(energy_j=jnp.asarray(e, dtype), time_s=jnp.asarray(t, dtype),
                   pulses=jnp.asarray(n_devices * card.pulses, jnp.int32), unconverged=jnp.zeros((), jnp.int32))

    @classmethod
    def from_write_verify(cls, res) -> "ProgramRecord":
        """From a :class:`nds.cells.WriteVerifyResult`."""
        return cls(energy_j=res.energy_j, time_s=res.time_s, pulses=jnp.sum(res.pulses).astype(jnp.int32),
                   unconverged=jnp.sum(~res.converged).astype(jnp.int32))
