"""ISAAC and PRIME design cards in the bit-sliced tile: structure and energy from the
published component figures (REFERENCES.md), exactness with enough ADC bits."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.memory import EDRAM
from nds.tiles._bitsliced import BitSliceDesign, BitSlicedTile

PJ = 1e-12


def _isaac(**kw):
    return BitSlicedTile.from_design(nds.load_card("isaac", BitSliceDesign),
                                     nds.load_card("rram_generic", nds.cells.RRAM).ideal(),
                                     buffer=nds.load_card("mem_edram_isaac", EDRAM), **kw)


def test_isaac_structure():
    t = _isaac()
    assert (t.array.rows, t.array.cols) == (128, 128)
    assert t.weights.n_slices == 8 and t.weights.bits_per_cell == 2 and t.weights.encoding == "offset"
    assert t.inputs.n_cycles == 16 and t.inputs.dac_bits == 1
    assert t.adc_bits == 8 and t.adc_bits_needed == 9 and t.columns_per_adc == 128


def test_prime_structure():
    t = BitSlicedTile.from_design(nds.load_card("prime", BitSliceDesign), nds.load_card("rram_generic", nds.cells.RRAM))
    assert (t.array.rows, t.array.cols) == (256, 256)
    assert t.weights.bits_per_cell == 4 and t.weights.n_slices == 2 and t.weights.encoding == "differential"
    assert t.adc_bits_needed == 16 and t.inputs.n_cycles == 2


def test_isaac_energy_per_mvm_from_component_figures():
    """One 128 x 128 MVM: 16 cycles x 8 slices x 128 columns ADC conversions at 1.67 pJ,
    128 x 16 x 8 one-bit DAC pulses at 0.417 pJ (a DAC on every row of each of the 8 slice
    crossbars, ISAAC's 8 x 128 DACs per IMA; before issue 11 nds charged 128 x 16, 8x too
    few), one shift-and-add per conversion plus one per output at 0.021 pJ, 16 eDRAM accesses
    (2048 input bits + 2048 output bits) at 20.45 pJ."""
    t = _isaac()
    c = t.cost((128, 128), 1)
    n_adc = 16 * 8 * 128
    assert c.counts["adc_conversions"] == n_adc
    assert c.counts["dac_conversions"] == 128 * 16 * 8
    assert c.energy_j["conversion"] == pytest.approx(n_adc * 1.67 * PJ + 128 * 16 * 8 * 0.417 * PJ, rel=1e-9)
    assert c.energy_j["compute"] == pytest.approx((n_adc + 128) * 0.021 * PJ, rel=1e-9)
    assert c.energy_j["onchip_memory"] == pytest.approx(16 * 20.45 * PJ, rel=1e-9)
    assert c.latency_s == pytest.approx(16 * (100e-9 + 128 / 1.2e9), rel=1e-9)


def test_isaac_exact_with_nine_bits_and_clips_with_eight():
    w = jax.random.normal(jax.random.key(0), (16, 128))
    x = jnp.abs(jax.random.normal(jax.random.key(1), (4, 128)))
    t9 = _isaac(adc_bits=9)
    t8 = _isaac()

    @eqx.filter_jit
    def run(t):
        st = t.program(w, key=None)
        codes, x_int, _ = t.column_codes(st, x, key=None)
        y = t.apply_batch(st, x, key=None)
        w_int, _ = t.weights.integers(w)
        x_int, xs = t.inputs.integers(x)
        return y / (st.w_step * xs / t.inputs.q), x_int @ w_int.T, codes

    y9, ref, codes9 = run(t9)
    np.testing.assert_allclose(y9, ref, rtol=0, atol=1e-6 * float(jnp.max(jnp.abs(ref))))
    y8, _, _ = run(t8)
    clipped = bool(jnp.any(codes9 > 255))
    assert clipped == bool(jnp.max(jnp.abs(y8 - ref)) > 0.5)


def test_isaac_dac_count_restates_the_ima_totals():
    """ISAAC Table 6 (as the Accelergy/hwcomponents library derives its per-DAC figures from
    it): an IMA's 8 x 128 one-bit DACs take 4 mW at one pulse per 128/1.2 GHz cycle and
    170 µm² in all. The tile's count of DACs per cycle of a 128 x 128 MVM (one per row of each
    of the 8 slice crossbars) times the card's 0.417 pJ and 0.166 µm² restates both totals
    (restated input: the card's figures are those totals divided by 1024)."""
    t = _isaac()
    c = t.cost((128, 128), 1)
    per_cycle = c.counts["dac_conversions"] / t.inputs.n_cycles
    assert per_cycle == 8 * 128
    assert per_cycle * 0.417 * PJ / (128 / 1.2e9) == pytest.approx(4e-3, rel=2e-3)
    cc = nds.load_card("converters_isaac32nm", nds.converters.ConverterCosts)
    assert c.counts["arrays"] * t.array.rows * cc.dac_area(1) == pytest.approx(170e-12, rel=3e-3)
