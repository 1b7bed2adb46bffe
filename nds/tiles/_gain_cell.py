"""Analog attention on a gain-cell KV cache (dynamic weights written every token).

After Leroux et al., Nat. Comput. Sci. 5, 813–824 (2025) (arXiv:2409.19315): each new
token's key is written as a column and its value as a row of capacitor gain cells
(:class:`nds.cells.GainCell`: write levels, write noise, kT/C, leakage); queries arrive as
pulse-width-modulated inputs and the products ``Q Kᵀ`` and ``A V`` are summed as charge on
the read lines. One head, per query ``i`` and stored token ``j``:

1. Write (per token): ``k_j`` is divided by its digital scale ``s_kj = max|k_j|`` and written,
   ``k̃_j = write(k_j / s_kj)``; likewise ``ṽ_j`` with ``s_vj = max|v_j|``.
2. Query pulses: ``q̃_i = Q(q_i / s_qi)``, ``s_qi = max|q_i|``, quantized to ``2**q_bits − 1``
   magnitude levels (pulse widths) with a sign (a two-phase read; the paper's inputs are
   non-negative after a learned offset — here signed, an assumption).
3. ``Q Kᵀ``: ``S_ij = Σ_d q̃_id k̃_jd r_ij`` with the retention factor
   ``r_ij = exp(−age_ij/τ)``, ``age_ij = (pos_i − pos_j) t_token + t_hold``.
4. Read-out and softmax: ``z_ij = ADC(S_ij/√d_k)`` (``s_bits`` on ``±s_range``), logits
   ``s_qi s_kj z_ij``, weights ``p_ij = softmax_j`` (digital) — a hybrid of the paper's
   design, which replaces softmax by a charge-to-pulse HardSigmoid without an ADC between
   the two products; with the ADC the tile's ideal limit is exactly softmax attention, so
   softmax-trained networks map onto it.
5. ``A V``: pulses ``u_ij = Q⁺(p_ij s_vj / m_i)``, ``m_i = max_j p_ij s_vj`` (``2**p_bits − 1``
   widths), ``A_ic = Σ_j u_ij ṽ_jc r_ij``; a ratiometric ADC referenced to the total pulse
   charge ``U_i = Σ_j u_ij`` (assumed) gives ``a_ic = Q_out(A_ic / U_i)`` with ``2**out_bits``
   levels on ``[−1, 1]`` (the paper: 32 levels); the output is ``m_i U_i a_ic``.

With ``window`` set, keys older than ``window`` positions are masked (sliding-window
attention; the paper: 1024). The ideal limit (no write noise, no kT/C, no leakage, unbounded
levels) equals softmax attention.

Cost per inference (card ``gain_cell_attention_leroux2025``: the paper's energy per token and
head at window 1024, head dimension 64, scaled per cell and per pulse): the two products per
cell, one pulse per query element and per visible key, the digital control per token and
head; plus ADC conversions (card ``converters_isaac32nm``; the paper has none between the
products), a digital softmax, and writes ``c_store · v_max²`` per written cell (assumed).
Latency: ``t_layer`` per token.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._cards import AbstractCardModule, load_card
from .._cost_types import Cost
from .._keys import streams
from .._ste import clip_ste, round_ste
from ..cells._gain_cell import GainCell, quantize_levels
from ..converters._uniform import ConverterCosts, quantize
from ._attention import AbstractAttentionTile, KVEntries, _check, softmax_weights, window_mask
from ._digital_ops import digital_op_cost

__all__ = ["GainCellAttention", "GainCellAttentionCosts"]


class GainCellAttentionCosts(AbstractCardModule):
    """Energy of the gain-cell attention per token and head at a reference geometry.
    Card kind ``"gain_cell_attention"``.

    Fields: ``e_qk_token_head``, ``e_av_token_head`` (the two analog products),
    ``e_dac_token_head`` (pulse generators), ``e_digital_token_head`` (digital control and
    routing), J per token and head at a window of ``window_ref`` tokens and head dimension
    ``head_dim_ref``.
    """

    e_qk_token_head: float
    e_av_token_head: float
    e_dac_token_head: float
    e_digital_token_head: float
    window_ref: int = eqx.field(static=True)
    head_dim_ref: int = eqx.field(static=True)

    card_kind: ClassVar[str] = "gain_cell_attention"
    card_units: ClassVar[dict[str, str]] = {"e_qk_token_head": "J", "e_av_token_head": "J", "e_dac_token_head": "J",
                                            "e_digital_token_head": "J", "window_ref": "1", "head_dim_ref": "1"}
    card_ranges: ClassVar[dict] = {"window_ref": (1, None), "head_dim_ref": (1, None),
                                   **{k: (0.0, 1e-3) for k in ("e_qk_token_head", "e_av_token_head",
                                                               "e_dac_token_head", "e_digital_token_head")}}

    @property
    def e_qk_cell(self) -> float:
        """Energy of one gain cell's contribution to ``Q Kᵀ`` (J): the per-token figure over
        ``window_ref · head_dim_ref`` cells."""
        return self.e_qk_token_head / (self.window_ref * self.head_dim_ref)

    @property
    def e_av_cell(self) -> float:
        """Energy of one gain cell's contribution to ``A V`` (J)."""
        return self.e_av_token_head / (self.window_ref * self.head_dim_ref)

    @property
    def e_pulse(self) -> float:
        """Energy of one input pulse (J): the DAC figure over ``head_dim_ref + window_ref``
        pulses per token and head (one per query element, one per visible key)."""
        return self.e_dac_token_head / (self.window_ref + self.head_dim_ref)


def _signed_levels(x, bits):
    """Sign and magnitude quantized to ``2**bits − 1`` levels on [0, 1] (x in [−1, 1])."""
    if bits is None:
        return x
    n = 2**bits - 1
    return clip_ste(round_ste(x * n), -n, n) / n


class GainCellAttention(AbstractAttentionTile):
    """Attention on a gain-cell KV cache (see the module docstring).

    Attributes:
        cell: the gain cell (card ``gain_cell_leroux2025``).
        costs: energy card (default ``gain_cell_attention_leroux2025``).
        converter_costs: ADC energies (default ``converters_isaac32nm``).
        q_bits: query pulse-width levels ``2**q_bits − 1`` per sign (paper: 16 levels, 4).
        p_bits: attention-weight pulse-width levels ``2**p_bits − 1`` (4, as the queries).
        s_bits: ADC bits of ``Q Kᵀ`` (8, assumed); s_range: its full scale in units of
            ``√d_k`` (3.0, assumed).
        out_bits: output ADC, ``2**out_bits`` levels on [−1, 1] (paper: 32 levels, 5).
        window: sliding window in positions (None: all keys; paper: 1024).
        t_token: time between two tokens' writes, s (default: the card's ``t_layer``, one
            layer; a network of ``L`` layers writes every ``L · t_layer``).
        t_hold: extra time between every write and the reads, s (default 0).

    Raises:
        ValueError: a bit count < 1, ``s_range`` <= 0, ``window`` < 1, negative times.
    """

    cell: GainCell
    costs: GainCellAttentionCosts | None = None
    converter_costs: ConverterCosts | None = None
    q_bits: int | None = eqx.field(static=True, default=4)
    p_bits: int | None = eqx.field(static=True, default=4)
    s_bits: int | None = eqx.field(static=True, default=8)
    s_range: float = eqx.field(static=True, default=3.0)
    out_bits: int | None = eqx.field(static=True, default=5)
    window: int | None = eqx.field(static=True, default=None)
    t_token: float | None = None
    t_hold: float = 0.0

    hardware: ClassVar[str] = "gain_cell"

    def __check_init__(self):
        for n in ("q_bits", "p_bits", "s_bits", "out_bits"):
            b = getattr(self, n)
            if b is not None and b < 1:
                raise ValueError(f"GainCellAttention.{n} = {b}: must be >= 1 or None (unbounded)")
        if not self.s_range > 0:
            raise ValueError(f"GainCellAttention.s_range = {self.s_range}: must be > 0")
        if self.window is not None and self.window < 1:
            raise ValueError(f"GainCellAttention.window = {self.window}: must be >= 1 or None")
        for n in ("t_token", "t_hold"):
            v = getattr(self, n)
            if isinstance(v, (int, float)) and v < 0:
                raise ValueError(f"GainCellAttention.{n} = {v} s: must be >= 0")

    @classmethod
    def from_cards(cls, cell: str = "gain_cell_leroux2025", costs: str = "gain_cell_attention_leroux2025",
                   **kwargs) -> "GainCellAttention":
        """The tile built from a cell card and a cost card (names or paths)."""
        return cls(cell=load_card(cell, GainCell), costs=load_card(costs, GainCellAttentionCosts), **kwargs)

    @property
    def needs_key(self) -> bool:
        """True when the cell's writes are noisy."""
        return self.cell.is_noisy

    @property
    def token_time(self):
        """``t_token``, or the cell's ``t_layer`` when unset (s)."""
        return self.cell.t_layer if self.t_token is None else self.t_token

    def write(self, k, v, *, key=None) -> KVEntries:
        """Write keys (T, H, d_k) and values (T, H, d_v): per-vector digital scales and the
        cell's write (levels, write noise, kT/C). Raises ValueError without ``key`` when the
        writes are noisy."""
        def scale(x):
            s = jnp.max(jnp.abs(x), axis=-1)
            return jnp.where(s > 0, s, 1.0)

        sk, sv = scale(k), scale(v)
        if self.cell.is_noisy:
            if key is None:
                raise ValueError("GainCellAttention.write: the gain cells' writes are noisy; pass key=...")
            kk, kv_ = streams(key, "keys", "values")
        else:
            kk = kv_ = None
        kt = self.cell.write(k / sk[..., None], key=kk)
        vt = self.cell.write(v / sv[..., None], key=kv_)
        return KVEntries(kt, vt, sk, sv)

    def retention(self, q_pos, k_pos):
        """Retention factor (T_q, T_k) of key ``j`` read by query ``i`` (1 without positions
        and hold time)."""
        if q_pos is None or k_pos is None:
            return self.cell.decay(jnp.asarray(self.t_hold))
        age = jnp.maximum(q_pos[:, None] - k_pos[None, :], 0) * self.token_time + self.t_hold
        return self.cell.decay(age)

    def read(self, q, kv, mask=None, q_pos=None, k_pos=None, *, key=None):
        """Attention of ``q`` (T_q, H, d_k) over the stored entries → (T_q, H, d_v).
        ``q_pos``/``k_pos``: integer token positions (T_q,), (T_k,) for the retention decay
        and the sliding window (None: all written just before the reads)."""
        del key
        _check(q, kv, mask)
        d = q.shape[-1]
        mask = window_mask(mask, q_pos, k_pos, self.window)
        r = self.retention(q_pos, k_pos)
        r = jnp.broadcast_to(r, (q.shape[0], kv.k.shape[0]))
        sq = jnp.max(jnp.abs(q), axis=-1)
        sq = jnp.where(sq > 0, sq, 1.0)                                   # (Tq, H)
        qn = _signed_levels(q / sq[..., None], self.q_bits)
        s = jnp.einsum("shd,Shd->hsS", qn, kv.k) * r[None]                # (H, Tq, Tk)
        z = s / math.sqrt(d)
        z = quantize(z, self.s_bits, self.s_range)
        logits = z * sq.T[:, :, None] * kv.k_scale.T[:, None, :]
        p = jax.vmap(lambda lg: softmax_weights(lg, mask))(logits)        # (H, Tq, Tk)
        u = p * kv.v_scale.T[:, None, :]
        m = jnp.max(u, axis=-1, keepdims=True)
        m = jnp.where(m > 0, m, 1.0)
        un = u / m
        if self.p_bits is not None:
            n = 2**self.p_bits - 1
            un = clip_ste(round_ste(un * n), 0, n) / n
        tot = jnp.sum(un, axis=-1, keepdims=True)
        tot = jnp.where(tot > 0, tot, 1.0)                                # (H, Tq, 1)
        a = jnp.einsum("hsS,Shd->hsd", un * r[None], kv.v) / tot
        if self.out_bits is not None:
            a = quantize_levels(a, 2**self.out_bits)
        out = a * tot * m                                                 # (H, Tq, dv)
        return jnp.transpose(out, (1, 0, 2))

    def attend(self, q, k, v, mask=None, q_pos=None, k_pos=None, *, key=None):
        """``read(q, write(k, v), mask, q_pos, k_pos)``; named key streams ``"write"``,
        ``"read"``."""
        kw, kr = (None, None) if key is None else streams(key, "write", "read")
        return self.read(q, self.write(k, v, key=kw), mask, q_pos, k_pos, key=kr)

    def ideal(self) -> "GainCellAttention":
        """Ideal cell, unbounded pulse widths and ADCs, same window and cost cards."""
        return GainCellAttention(cell=self.cell.ideal(), costs=self.costs, converter_costs=self.converter_costs,
                                 q_bits=None, p_bits=None, s_bits=None, s_range=self.s_range, out_bits=None,
                                 window=self.window, t_token=self.t_token, t_hold=self.t_hold)

    def cost(self, n_queries, n_pairs, n_heads, d_k, d_v) -> Cost:
        """Energy per inference (see the module docstring): ``"array"`` the writes and the two
        products, ``"conversion"`` the pulses and ADCs, ``"compute"`` the digital control and
        the softmax. Latency ``n_queries · t_layer``."""
        cc = self.costs or load_card("gain_cell_attention_leroux2025", GainCellAttentionCosts)
        conv = self.converter_costs or load_card("converters_isaac32nm", ConverterCosts)
        c = self.cell
        h = n_heads
        writes = float(n_queries * h * (d_k + d_v))
        qk_cells = float(n_pairs * h * d_k)
        av_cells = float(n_pairs * h * d_v)
        pulses = float(h * (n_queries * d_k + n_pairs))
        adc_s = float(n_pairs * h) if self.s_bits is not None else 0.0
        adc_o = float(n_queries * h * d_v)
        e_write = float(c.c_store) * float(c.v_max) ** 2
        energy = {
            "array": writes * e_write + qk_cells * cc.e_qk_cell + av_cells * cc.e_av_cell,
            "conversion": pulses * cc.e_pulse + adc_s * conv.adc_energy(self.s_bits or 8)
            + adc_o * conv.adc_energy(self.out_bits or 8),
            "compute": float(n_queries * h) * cc.e_digital_token_head,
        }
        sources = tuple(s for s in ((c.card.source if c.card else ""), (cc.card.source if cc.card else "")) if s)
        base = Cost(counts={"kv_writes": writes, "qk_cell_macs": qk_cells, "av_cell_macs": av_cells,
                            "pulses": pulses, "adc_conversions": adc_s + adc_o},
                    energy_j=energy, latency_s=float(n_queries) * float(c.t_layer),
                    macs=qk_cells + av_cells, bits_weight=c.kv_bits, bits_activation=self.q_bits,
                    hardware="gain_cell", sources=sources)
        return dataclasses.replace(base + digital_op_cost("softmax", n_pairs * h, None), hardware="gain_cell")
