"""A crossbar that trains in place: forward and backward reads and pulsed updates.

Weights live on differential pairs: ``W_ij = w_max (g⁺_ji − g⁻_ji)/(g_max − g_min)``
(``w_max``: a digital scale, the weight of a full-range difference; rows = inputs = word
lines, columns = outputs = bit lines, conductances of shape ``(2, in, out)``).

* Forward (:meth:`InSituTile.forward`, one example ``x`` of shape ``(in,)``): the DAC
  quantizes ``x/scale`` (``dac``), word lines at ``level · v_read``, bit-line currents
  ``I = v (G⁺ − G⁻)`` per array of ``rows`` word lines, normalized by ``v_read (g_max −
  g_min)``, output noise ``out_noise`` and the cells' C2C read noise (Gaussian with variance
  ``Σ v² σ² (g⁺² + g⁻²)`` per column), ``adc`` per column and array, digital sum over arrays,
  times ``w_max · scale``.
* Backward (:meth:`InSituTile.backward`, ``δ`` of shape ``(out,)``): another analog read
  through the transposed array, with its own converters (``bdac``, ``badc``) and noise
  (``back_noise``): ``δ`` drives the bit lines, the word-line currents ``Σ_i v_i (g⁺ − g⁻)``
  are converted per row and per array of ``cols`` bit lines, summed digitally.
* Update (:meth:`InSituTile.update`): a rule (:mod:`nds.insitu._rules`) turns ``(x, δ)``
  into signed pulse counts per weight; the pair mode maps them onto the two devices:
  ``"both"`` (``G⁺`` potentiated and ``G⁻`` depressed for a positive change, the reverse for a
  negative one), ``"single"`` (only ``G⁺`` is pulsed; ``G⁻`` is a fixed reference at
  mid-range) or ``"potentiate"`` (a positive change SETs ``G⁺``, a negative one SETs ``G⁻``:
  the scheme for PCM, whose RESET is abrupt; the pair is refreshed when a device nears its
  upper bound, :meth:`InSituTile.refresh`). The device response is the cell's
  :meth:`~nds.cells.AbstractResistiveCell.update` with the pulse model ``device``.

Every pulse is counted (:class:`UpdateCost`): device energy ``V² ḡ t_pulse`` per pulse, in a
transistor-free array (``half_select=True``) the half-selected devices on driven lines
``(V/2)² ḡ t_pulse`` each (``ḡ`` the array's mean conductance), line charging
``c_line · cells · (V/2)²`` per line pulse, ``e_rng_bit`` per random bit, and the update time
``slots · t_pulse``.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import require
from .._keys import streams
from ..cells._resistive import AbstractResistiveCell
from ..cells._update import AbstractUpdateModel, PulseDevices, _is_zero
from ..converters._uniform import UniformADC, UniformDAC
from ._rules import AbstractUpdateRule, RuleCounts

__all__ = ["InSituState", "UpdateCost", "InSituTile", "PAIR_MODES"]

PAIR_MODES = ("both", "single", "potentiate")


def _safe_sqrt(v):
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def _pad_to(a, axis, n):
    extra = n - a.shape[axis]
    if extra == 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, extra)
    return jnp.pad(a, pad)


class InSituState(eqx.Module):
    """The physical state of one in-situ-trained crossbar (one chip).

    Attributes:
        g: (2, in, out) conductances (S), axis 0 = (G⁺, G⁻).
        devices: per-device pulse response, fields of shape (2, in, out)
            (:class:`nds.cells.PulseDevices`).
        dw_min: weight change of one coincident pulse at mid-range
            (:attr:`InSituTile.dw_min`, evaluated once at :meth:`InSituTile.init`), the
            granularity the update rules scale their pulse counts by.
    """

    g: Float[Array, "2 n_in n_out"]
    devices: PulseDevices
    dw_min: Float[Array, ""]


class UpdateCost(eqx.Module):
    """Counts and energy (J) / time (s) of in-situ updates (scalars; add them with
    ``jax.tree.map(jnp.add, a, b)``).

    Attributes:
        device_pulses: pulses received by devices (both devices of a pair counted).
        device_j: energy dissipated in the selected devices, ``V² ḡ t_pulse`` per pulse.
        half_select_j: energy in half-selected devices on driven lines, ``(V/2)² ḡ t_pulse``.
        line_j: charging of driven row and column lines.
        rng_j: random-bit generation for stochastic pulse trains.
        time_s: update time, ``slots · t_pulse`` per update (updates in sequence).
        updates: number of updates.
    """

    device_pulses: Float[Array, ""]
    device_j: Float[Array, ""]
    half_select_j: Float[Array, ""]
    line_j: Float[Array, ""]
    rng_j: Float[Array, ""]
    time_s: Float[Array, ""]
    updates: Float[Array, ""]

    @staticmethod
    def zero(dtype=float) -> "UpdateCost":
        """All counts zero."""
        z = jnp.zeros((), dtype)
        return UpdateCost(z, z, z, z, z, z, z)

    @property
    def energy_j(self) -> Float[Array, ""]:
        """Total update energy (J): devices + half-selected + lines + random bits."""
        return self.device_j + self.half_select_j + self.line_j + self.rng_j

    def as_dict(self) -> dict[str, float]:
        """JSON-ready dict of the fields (floats) and ``energy_j``."""
        d = {k: float(getattr(self, k)) for k in ("device_pulses", "device_j", "half_select_j", "line_j", "rng_j",
                                                  "time_s", "updates")}
        d["energy_j"] = float(self.energy_j)
        return d


class InSituTile(eqx.Module):
    """A crossbar tile that trains in place (see the module docstring).

    Attributes:
        cell: the read physics and conductance window (:class:`nds.cells.RRAM`, ``PCM``).
        device: the pulse response (:class:`nds.cells.AbstractUpdateModel` card).
        rows, cols: array size (static): forward partial sums are converted per ``rows``
            word lines, backward ones per ``cols`` bit lines.
        dac, adc: forward converters; bdac, badc: backward converters.
        out_noise, back_noise: per-read output noise σ of the forward and backward reads
            (normalized units, per column/row and array).
        pair: ``"both"``, ``"single"`` or ``"potentiate"`` (static; module docstring).
        w_max: weight of a full-range conductance difference (weight units).
        refresh_threshold: in ``"potentiate"`` mode, refresh a pair when either device is
            above this normalized state (static; :meth:`refresh`).
        half_select: count the energy of half-selected cells (static; default False): True
            for a transistor-free (cross-point) array, where ``V/2`` appears across every
            unselected cell of a driven line; False for 1T1R arrays, whose access transistors
            block it.

    Raises:
        ValueError: unknown ``pair`` mode, ``w_max <= 0``, negative noise, array size < 1.
    """

    cell: AbstractResistiveCell
    device: AbstractUpdateModel
    rows: int = eqx.field(static=True, default=256)
    cols: int = eqx.field(static=True, default=256)
    dac: UniformDAC = UniformDAC(bits=8)
    adc: UniformADC = UniformADC(bits=8, y_range=12.0)
    bdac: UniformDAC = UniformDAC(bits=8)
    badc: UniformADC = UniformADC(bits=8, y_range=12.0)
    out_noise: float = 0.0
    back_noise: float = 0.0
    pair: str = eqx.field(static=True, default="both")
    w_max: float = 1.0
    refresh_threshold: float = eqx.field(static=True, default=0.9)
    half_select: bool = eqx.field(static=True, default=False)

    hardware: ClassVar[str] = "insitu"

    def __check_init__(self):
        if self.pair not in PAIR_MODES:
            raise ValueError(f"InSituTile.pair = {self.pair!r}; allowed: {PAIR_MODES}")
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"InSituTile: rows = {self.rows}, cols = {self.cols} must be >= 1")
        # concrete values only: noise levels and w_max stay differentiable leaves (nds._checks)
        for name in ("out_noise", "back_noise"):
            require(lambda v: v >= 0, "InSituTile", name, getattr(self, name), "must be >= 0")
        require(lambda v: v > 0, "InSituTile", "w_max", self.w_max, "must be > 0")

    # ------------------------------------------------------------------ helpers
    @property
    def g_range(self):
        """Nominal conductance window ``g_max − g_min`` (S)."""
        return self.cell.g_max - self.cell.g_min

    @property
    def dw_min(self) -> Float[Array, ""]:
        """Weight change of one coincident pulse at mid-range (weight units): both devices'
        steps in ``"both"`` mode, the mean of up and down in ``"single"``, the up step in
        ``"potentiate"``."""
        return self._dw_min()

    def _dw_min(self, params=None):
        up, down = self.device.mid_steps(params)
        if self.pair == "both":
            s = up + down
        elif self.pair == "single":
            s = 0.5 * (up + down)
        else:
            s = up
        return self.w_max * s

    def weights(self, state: InSituState) -> Float[Array, "out in"]:
        """The weight matrix the conductances hold, ``(out, in)``."""
        return (self.w_max * (state.g[0] - state.g[1]) / self.g_range).T

    # ------------------------------------------------------------------ program time
    def init(self, w: Float[Array, "out in"] | None, shape: tuple[int, int] | None = None, *,
             key: PRNGKeyArray | None) -> InSituState:
        """Manufacture the chip and set its initial conductances.

        The devices' pulse responses are sampled (D2D; ``key``), then the pairs are set to
        ``w`` (``(out, in)``; ``None``: all weights 0, ``shape = (out, in)`` required) with the
        cell's open-loop programming error: mid-range ± the weight in ``"both"`` and
        ``"single"`` modes, the lower bound plus the weight on one device in
        ``"potentiate"`` mode; clipped to each device's bounds.

        Raises:
            ValueError: neither ``w`` nor ``shape`` given.
        """
        if w is None:
            if shape is None:
                raise ValueError("InSituTile.init: pass the initial weights w (out, in) or shape=(out, in)")
            w = jnp.zeros(shape, jnp.result_type(float))
        out, n_in = w.shape
        c = self.cell
        kd, kp = streams(key, "devices", "program") if key is not None else (None, None)
        params = self.device.params()  # one evaluation (a root solve for NeuroSim cards)
        dev = self.device.sample(c.g_min, c.g_max, (2, n_in, out), key=kd, params=params)
        wn = (w / self.w_max).T  # (in, out), a full-range difference = 1
        r = self.g_range
        if self.pair == "both":
            mid = c.g_min + 0.5 * r
            tgt = jnp.stack([mid + 0.5 * wn * r, mid - 0.5 * wn * r])
        elif self.pair == "single":
            mid = c.g_min + 0.5 * r
            tgt = jnp.stack([mid + wn * r, jnp.full_like(wn, mid)])
        else:
            tgt = jnp.stack([c.g_min + jnp.maximum(wn, 0.0) * r, c.g_min + jnp.maximum(-wn, 0.0) * r])
        g, _ = c.program(tgt, key=kp)
        g = jnp.clip(g, dev.g_lo, dev.g_hi)
        return InSituState(g=g, devices=dev, dw_min=jnp.asarray(self._dw_min(params), g.dtype))

    # ------------------------------------------------------------------ reads
    def _read(self, g_pos, g_neg, v, noise, adc, block: int, key):
        """Currents of ``v`` (p inputs along axis 0 of g) through (g⁺ − g⁻), normalized,
        converted per ``block`` inputs; returns the digital sum over blocks, (q,)."""
        c = self.cell
        p = v.shape[0]
        nb = -(-p // block)
        vb = _pad_to(v, 0, nb * block).reshape(nb, block)
        gp = _pad_to(g_pos, 0, nb * block).reshape(nb, block, -1)
        gn = _pad_to(g_neg, 0, nb * block).reshape(nb, block, -1)
        norm = c.v_read * (c.g_max - c.g_min)
        yn = jnp.einsum("br,brc->bc", vb, gp - gn) / norm
        if key is not None:
            k1, k2 = streams(key, "out_noise", "read_noise")
            if not _is_zero(noise):
                yn = yn + noise * jax.random.normal(k1, yn.shape, yn.dtype)
            if not _is_zero(c.read_noise_c2c):
                var = jnp.einsum("br,brc->bc", vb**2, gp**2 + gn**2)
                yn = yn + c.read_noise_c2c * _safe_sqrt(var) / norm * jax.random.normal(k2, yn.shape, yn.dtype)
        return adc(yn).sum(axis=0)

    @property
    def needs_key(self) -> bool:
        """Whether reads draw noise (output noise or C2C read noise on)."""
        vals = (self.out_noise, self.back_noise, self.cell.read_noise_c2c)
        return any(isinstance(v, jax.core.Tracer) or float(v) > 0 for v in vals)

    def forward(self, state: InSituState, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None
                ) -> Float[Array, " n_out"]:
        """``y ≈ W x`` for one example ``x`` (in,) → (out,) through the forward periphery
        (module docstring). ``key=None``: no read noise."""
        levels, scale = self.dac(x)
        v = levels * self.cell.v_read
        y = self._read(state.g[0], state.g[1], v, self.out_noise, self.adc, self.rows, key)
        return y * self.w_max * scale

    def backward(self, state: InSituState, d: Float[Array, " n_out"], *, key: PRNGKeyArray | None
                 ) -> Float[Array, " n_in"]:
        """``Wᵀ δ`` for one error vector ``δ`` (out,) → (in,): a read through the transposed
        array with the backward converters and noise. ``key=None``: no read noise."""
        levels, scale = self.bdac(d)
        v = levels * self.cell.v_read
        gt = jnp.swapaxes(state.g, 1, 2)  # (2, out, in)
        y = self._read(gt[0], gt[1], v, self.back_noise, self.badc, self.cols, key)
        return y * self.w_max * scale

    # ------------------------------------------------------------------ update
    def _pair_counts(self, n_up, n_down):
        """Per-device ``(u, v)`` (potentiation, depression) counts of ``(G⁺, G⁻)`` for weight
        raising / lowering counts ``n_up``, ``n_down`` (both ``>= 0``)."""
        z = jnp.zeros_like(n_up)
        if self.pair == "both":
            return (n_up, n_down), (n_down, n_up)
        if self.pair == "single":
            return (n_up, n_down), (z, z)
        return (n_up, z), (n_down, z)

    def _cost(self, state, signed, counts, dt) -> UpdateCost:
        """Cost of the pulses ``signed`` (list of (g_before, g_after, signed counts) per
        device plane and direction) plus the rule's peripheral counts."""
        m = self.device
        e_dev = sum(m.pulse_energy(a, b, n) for a, b, n in signed)
        pulses = sum(jnp.sum(jnp.abs(n)) for _, _, n in signed)
        n_in, n_out = state.g.shape[1:]
        cells_row, cells_col = 2 * n_out, n_in  # a row line crosses both devices of every pair
        v = 0.5 * (m.v_up + m.v_down)
        g_mean = jnp.mean(state.g)
        # half-selected: every cell on a driven line, minus the selected ones (counted above)
        half = counts.row_pulses * cells_row + counts.col_pulses * cells_col - 2 * pulses
        e_half = jnp.maximum(half, 0.0) * (v / 2) ** 2 * g_mean * m.t_pulse * float(self.half_select)
        e_line = counts.row_pulses * m.line_energy(cells_row) + counts.col_pulses * m.line_energy(cells_col)
        return UpdateCost(device_pulses=jnp.asarray(pulses, dt), device_j=jnp.asarray(e_dev, dt),
                          half_select_j=jnp.asarray(e_half, dt), line_j=jnp.asarray(e_line, dt),
                          rng_j=jnp.asarray(counts.rng_bits * m.e_rng_bit, dt),
                          time_s=jnp.asarray(counts.slots * m.t_pulse, dt), updates=jnp.ones((), dt))

    def apply_pulses(self, state: InSituState, n: Float[Array, "n_in n_out"], counts: RuleCounts, *,
                     key: PRNGKeyArray | None) -> tuple[InSituState, UpdateCost]:
        """Apply signed pulse counts per weight ``n`` (in, out) (positive raises the weight)
        through the pair mode and the device response; returns the new state and the cost
        of the update (``counts``: the rule's peripheral counts). ``key`` draws C2C noise."""
        (u0, v0), (u1, v1) = self._pair_counts(jnp.maximum(n, 0.0), jnp.maximum(-n, 0.0))
        n0, n1 = u0 - v0, u1 - v1  # one of u, v is zero for every device
        kp, kn = streams(key, "g_pos", "g_neg") if key is not None else (None, None)
        dev = state.devices
        dpos = jax.tree.map(lambda a: a[0], dev)
        dneg = jax.tree.map(lambda a: a[1], dev)
        c, m = self.cell, self.device
        g0, g1 = state.g
        g0n = c.update(g0, n0, model=m, devices=dpos, key=kp)
        g1n = c.update(g1, n1, model=m, devices=dneg, key=kn)
        cost = self._cost(state, [(g0, g0n, n0), (g1, g1n, n1)], counts, state.g.dtype)
        return InSituState(g=jnp.stack([g0n, g1n]), devices=dev, dw_min=state.dw_min), cost

    def apply_updown(self, state: InSituState, n_up: Float[Array, "n_in n_out"], n_down: Float[Array, "n_in n_out"],
                     counts: RuleCounts, *, key: PRNGKeyArray | None) -> tuple[InSituState, UpdateCost]:
        """Apply, per weight, ``n_up`` pulses that raise it and ``n_down`` that lower it (both
        ``>= 0``; a batch of updates): every device first receives all its potentiation
        pulses, then all its depression pulses (the order of the pulses within the batch is
        not kept). Returns the new state and the cost."""
        (u0, v0), (u1, v1) = self._pair_counts(n_up, n_down)
        k = streams(key, "pos_up", "pos_down", "neg_up", "neg_down") if key is not None else (None,) * 4
        dev = state.devices
        dpos = jax.tree.map(lambda a: a[0], dev)
        dneg = jax.tree.map(lambda a: a[1], dev)
        c, m = self.cell, self.device
        g0, g1 = state.g
        g0a = c.update(g0, u0, model=m, devices=dpos, key=k[0])
        g0b = c.update(g0a, -v0, model=m, devices=dpos, key=k[1])
        g1a = c.update(g1, u1, model=m, devices=dneg, key=k[2])
        g1b = c.update(g1a, -v1, model=m, devices=dneg, key=k[3])
        signed = [(g0, g0a, u0), (g0a, g0b, -v0), (g1, g1a, u1), (g1a, g1b, -v1)]
        cost = self._cost(state, signed, counts, state.g.dtype)
        return InSituState(g=jnp.stack([g0b, g1b]), devices=dev, dw_min=state.dw_min), cost

    def update(self, state: InSituState, x: Float[Array, " n_in"], d: Float[Array, " n_out"],
               rule: AbstractUpdateRule, *, key: PRNGKeyArray | None) -> tuple[InSituState, UpdateCost]:
        """One in-situ update toward ``ΔW ∝ d xᵀ`` (pass ``d = −δ`` to descend a loss
        gradient ``δ xᵀ``): the rule's pulse trains, the pair mode, the device response.
        ``key`` draws the pulse trains and the C2C noise. Returns ``(state, cost)``."""
        kr, kd = streams(key, "rule", "device") if key is not None else (None, None)
        n, counts = rule.pulses(x, d, state.dw_min, key=kr)
        return self.apply_pulses(state, n, counts, key=kd)

    def update_batch(self, state: InSituState, x: Float[Array, "B n_in"], d: Float[Array, "B n_out"],
                     rule: AbstractUpdateRule, *, key: PRNGKeyArray | None) -> tuple[InSituState, UpdateCost]:
        """The updates of ``B`` examples at once (:meth:`apply_updown`: per device all
        potentiation pulses, then all depression pulses). Returns ``(state, cost)``; the
        cost's ``updates`` counts the ``B`` examples."""
        kr, kd = streams(key, "rule", "device") if key is not None else (None, None)
        up, down, counts = rule.pulses_batch(x, d, state.dw_min, key=kr)
        state, cost = self.apply_updown(state, up, down, counts, key=kd)
        return state, eqx.tree_at(lambda c: c.updates, cost, jnp.asarray(float(x.shape[0]), cost.updates.dtype))

    def refresh(self, state: InSituState, *, key: PRNGKeyArray | None) -> tuple[InSituState, UpdateCost]:
        """``"potentiate"`` mode: every pair with a device above ``refresh_threshold`` (of its
        range) is read (its weight ``g⁺ − g⁻``), both devices are RESET to their lower bound
        (``n_down`` pulses) and the weight is written again by SET pulses on one device (the
        mean pulse count of the closed form, rounded). Other modes: unchanged, zero cost."""
        if self.pair != "potentiate":
            return state, UpdateCost.zero(state.g.dtype)
        dev, m, c = state.devices, self.device, self.cell
        rng = dev.g_hi - dev.g_lo
        x = (state.g - dev.g_lo) / rng
        hit = jnp.any(x > self.refresh_threshold, axis=0)  # (in, out)
        w = state.g[0] - state.g[1]
        n_reset = jnp.ceil(m.n_down) * hit
        k1, k2 = streams(key, "reset", "set") if key is not None else (None, None)
        g_reset = c.update(state.g, -jnp.stack([n_reset, n_reset]), model=m, devices=dev, key=k1)
        tgt = jnp.stack([jnp.maximum(w, 0.0), jnp.maximum(-w, 0.0)]) / rng
        n_set = jnp.round(m.pulses_from_bound(jnp.clip(tgt, 0.0, 1.0), dev, up=True))
        n_set = jnp.where(jnp.isfinite(n_set), n_set, jnp.ceil(m.n_up)) * hit
        g_new = c.update(g_reset, n_set, model=m, devices=dev, key=k2)
        g_new = jnp.where(hit, g_new, state.g)
        pulses = 2 * jnp.sum(n_reset) + jnp.sum(n_set)
        e = m.pulse_energy(state.g, g_reset, -jnp.stack([n_reset, n_reset])) + m.pulse_energy(g_reset, g_new, n_set)
        dt = state.g.dtype
        cost = UpdateCost(device_pulses=pulses, device_j=e, half_select_j=jnp.zeros((), dt),
                          line_j=jnp.zeros((), dt), rng_j=jnp.zeros((), dt),
                          time_s=(jnp.max(n_set) + jnp.ceil(m.n_down)) * m.t_pulse * jnp.sum(hit),
                          updates=jnp.zeros((), dt))
        return InSituState(g=g_new, devices=dev, dw_min=state.dw_min), cost

    # ------------------------------------------------------------------ comparison and cost
    def as_crossbar(self, converter_costs=None, levels: int | None = None):
        """The inference tile of the same device and periphery (a
        :class:`nds.tiles.CrossbarTile` with this cell, array size, forward converters and
        output noise; ``levels`` replaces the cell's programmable levels): weights trained
        digitally are programmed onto it for the equal-device comparison, and its cost is the
        in-situ tile's per-inference cost."""
        import dataclasses

        from ..arrays._crossbar import ResistiveCrossbar
        from ..tiles._crossbar import CrossbarTile

        cell = self.cell if levels is None else dataclasses.replace(self.cell, levels=int(levels))
        return CrossbarTile(cell=cell, array=ResistiveCrossbar(rows=self.rows, cols=self.cols), dac=self.dac,
                            adc=self.adc, out_noise=self.out_noise, converter_costs=converter_costs,
                            drift_compensation=False)

    def ideal(self) -> "InSituTile":
        """No read noise, unbounded converters, a device without D2D and C2C spread."""
        import dataclasses

        return dataclasses.replace(
            self, cell=self.cell.ideal(), device=self.device.ideal(), dac=UniformDAC(bits=None),
            adc=UniformADC(bits=None, y_range=self.adc.y_range), bdac=UniformDAC(bits=None),
            badc=UniformADC(bits=None, y_range=self.badc.y_range), out_noise=0.0, back_noise=0.0)
