"""Card values that used to be accepted although they are wrong (issue 12), and card
parameters that must stay differentiable (issue 11): each error names the file (cards), the
key, the value and what is allowed; every traced construction works.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds._checks import FLOAT32_TINY, MAX_CODE_BITS
from nds.converters import ConverterCosts, UniformADC, UniformDAC

DEVICES = pathlib.Path(__file__).resolve().parent.parent / "devices"


def _card_with(tmp_path, name: str, key: str, value: str) -> pathlib.Path:
    """A copy of a shipped card with ``key``'s value replaced by ``value`` (text)."""
    text = (DEVICES / f"{name}.toml").read_text()
    new, n = re.subn(rf"^{key} = \{{ value = [^,]+,", f"{key} = {{ value = {value},", text, flags=re.M)
    assert n == 1
    p = tmp_path / f"{name}_{key}.toml"
    p.write_text(new)
    return p


def test_non_integer_levels_rejected_naming_file_key_value(tmp_path):
    """levels = 2.5 used to load and map weights to conductances up to 1.33 g_max
    (round(w (levels − 1)) / (levels − 1) with levels − 1 = 1.5)."""
    p = _card_with(tmp_path, "rram_generic", "levels", "2.5")
    with pytest.raises(nds.CardError) as e:
        nds.load_card(p, nds.cells.RRAM)
    msg = str(e.value)
    assert str(p) in msg and "levels" in msg and "2.5" in msg and "integer" in msg
    # an integral float is the count it says
    p4 = _card_with(tmp_path, "rram_generic", "levels", "4.0")
    assert nds.load_card(p4, nds.cells.RRAM).levels == 4
    with pytest.raises(ValueError, match="levels = 1"):
        dataclasses.replace(nds.load_card("rram_generic", nds.cells.RRAM), levels=1)


@pytest.mark.parametrize("bits", [25, 33, 64])
def test_impossible_converter_bits_rejected(bits):
    """33-bit converters crashed with an int32 overflow (2**32 codes); 25..32 bits silently
    quantized on a grid float32 cannot hold. The limit is 24 bits: float32 represents every
    integer up to 2**24 exactly."""
    assert MAX_CODE_BITS == 24 and float(np.float32(2**24 + 1)) == 2**24  # the next integer is lost
    for cls in (UniformADC, UniformDAC):
        with pytest.raises(ValueError) as e:
            cls(bits=bits)
        msg = str(e.value)
        assert f"{cls.__name__}.bits = {bits}" in msg and "[1, 24]" in msg and "float32" in msg
    with pytest.raises(ValueError, match=r"SARADC.bits = .*\[1, 24\]"):
        dataclasses.replace(nds.load_card("sar_adc_zhang2015", nds.converters.SARADC), bits=bits)
    # 24 bits is the largest converter, and it quantizes exactly on its grid
    adc = UniformADC(bits=24, y_range=1.0)
    y = jnp.asarray([0.3, -0.7], jnp.float32)
    lsb = 1.0 / 2**23
    np.testing.assert_array_equal(np.asarray(adc(y)), np.round(np.asarray(y, np.float64) / lsb) * lsb)


@pytest.mark.parametrize("bits", [6.0, 2.5, True])
def test_converter_bits_must_be_integers(bits):
    with pytest.raises(ValueError, match="integer"):
        UniformADC(bits=bits) if bits != 6.0 else nds.tiles.SwitchedCapTile.from_card(a_bits=bits + 0.5)


def test_adc_cost_bounded_outside_the_card_table():
    """The card lists 4–10 bits. A 64-bit ADC used to cost 3.3e5 m² (log-linear
    extrapolation without bound): now refused, naming the card file. 11–16 bits grow 4× per
    bit from the 10-bit figure (thermal-noise limit); 1–3 bits follow the lowest segment."""
    cc = nds.load_card("converters_isaac32nm", ConverterCosts)
    for b in (0, 17, 64):
        with pytest.raises(ValueError) as e:
            cc.adc_area(b)
        assert "converters_isaac32nm.toml" in str(e.value) and "1-16 bits" in str(e.value)
        with pytest.raises(ValueError):
            cc.adc_energy(b)
    assert cc.adc_energy(12) == pytest.approx(2.38e-12 * 16, rel=1e-12)
    assert cc.adc_area(16) == pytest.approx(3002e-12 * 4**6, rel=1e-12)
    assert cc.adc_energy(8) == pytest.approx(1.67e-12, rel=1e-12)  # the table itself
    assert cc.adc_energy(2) == pytest.approx(0.79e-12 * (0.79 / 0.99) ** 2, rel=1e-12)


@pytest.mark.parametrize("value", ["1e-37", "1e-39"])
def test_conductance_whose_float32_arithmetic_underflows_rejected(tmp_path, value):
    """g_max = 1e-37 S was accepted and gave all-zero outputs (g², (v g)² underflow float32);
    1e-39 S (a subnormal float32) gave NaN. g_max must be >= 1 pS; any non-zero card value
    must be a normal float32."""
    p = _card_with(tmp_path, "pcm_joshi2020", "g_max", value)
    with pytest.raises(nds.CardError) as e:
        nds.load_card(p, nds.cells.PCM)
    msg = str(e.value)
    assert str(p) in msg and "g_max" in msg and value.replace("e-", "e-") in msg
    assert "1e-12" in msg or f"{FLOAT32_TINY:.4g}" in msg


def test_every_card_value_must_be_a_normal_float32(tmp_path):
    p = _card_with(tmp_path, "sar_adc_zhang2015", "e_logic", "1e-40")
    with pytest.raises(nds.CardError, match=r"e_logic = 1e-40 .*normal float32"):
        nds.load_card(p, nds.converters.SARADC)
    p = _card_with(tmp_path, "sc_lee_wong2016", "c_u", "1e-6")  # 1e-6 aF = 1e-24 F: C² underflows
    with pytest.raises(nds.CardError, match=r"c_u"):
        nds.load_card(p, nds.arrays.ChargeSharingArray)


def test_smallest_allowed_conductance_computes_in_float32():
    """At the limit g_max = 1 pS the ideal crossbar in float32 gives the same normalized
    outputs as at 25 µS (the arithmetic does not underflow), and W x to float32 precision."""
    w = jax.random.normal(jax.random.key(0), (8, 16), jnp.float32)
    x = jax.random.normal(jax.random.key(1), (16,), jnp.float32)
    out = []
    for g_max in (25e-6, 1e-12):
        cell = dataclasses.replace(nds.load_card("rram_generic", nds.cells.RRAM).ideal(), g_max=g_max, g_min=0.0)
        tile = nds.tiles.CrossbarTile(cell=cell, dac=UniformDAC(bits=None), adc=UniformADC(bits=None))
        with jax.enable_x64(False):
            out.append(np.asarray(tile.apply(tile.program(w, key=None), x, key=None)))
    ref = np.asarray(w, np.float64) @ np.asarray(x, np.float64)
    for y in out:
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


# --------------------------------------------------------------------------- differentiable cards
def _traced_builds():
    """(name, function of a scalar p that builds a module with a card parameter set to p
    through its constructor and returns a scalar computed from it)."""
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    col = nds.load_card("sram_6t_130nm_zhang2017", nds.arrays.SRAMColumn)
    arr = nds.load_card("sc_lee_wong2016", nds.arrays.ChargeSharingArray)
    sar = nds.load_card("sar_adc_zhang2015", nds.converters.SARADC)
    sens = nds.load_card("sensor_redeye2016", nds.tiles.SensorAnalogCard)
    g = jnp.asarray(12e-6)
    return {
        "PCM.g_max": (25e-6, lambda p: dataclasses.replace(pcm, g_max=p).prog_sigma(g)),
        "PCM.g_min": (1e-7, lambda p: dataclasses.replace(pcm, g_min=p).with_on_off_ratio(50.0).g_min
                      + dataclasses.replace(pcm, g_min=p).g_min),
        "SRAMColumn.v_wl_max": (0.64, lambda p: dataclasses.replace(col, v_wl_max=p).i_fs),
        "SRAMColumn.a_vt": (5e-9, lambda p: dataclasses.replace(col, a_vt=p).cell.sigma_vt),
        "ChargeSharingArray.r_on": (5e3, lambda p: dataclasses.replace(arr, r_on=p, f_clk=1e12).settling_gain),
        "ChargeSharingArray.c_u": (3e-16, lambda p: dataclasses.replace(arr, c_u=p).c_total(8)),
        "SARADC.v_ref": (1.0, lambda p: dataclasses.replace(sar, v_ref=p).energy_per_conversion()),
        "SensorAnalogCard.v_sig": (0.1, lambda p: dataclasses.replace(sens, v_sig=p).energy_per_sample(30.0)),
        "UniformADC.y_range": (2.0, lambda p: jnp.sum(UniformADC(bits=4, y_range=p)(jnp.asarray([5.0, -6.0])))),
    }


@pytest.mark.parametrize("name", list(_traced_builds()))
def test_card_parameter_is_a_differentiable_leaf(name):
    """``dataclasses.replace(module, param=tracer)`` used to fail (``float()`` on a tracer in
    ``__check_init__``). Now it builds under ``jax.jit(jax.grad(...))`` and the derivative
    matches a central finite difference."""
    p0, f = _traced_builds()[name]
    g = float(jax.jit(jax.grad(lambda p: jnp.asarray(f(p), jnp.float64)))(jnp.asarray(p0, jnp.float64)))
    h = 1e-4 * p0
    fd = (float(f(p0 + h)) - float(f(p0 - h))) / (2 * h)
    assert g == pytest.approx(fd, rel=1e-5, abs=1e-12 * abs(fd) + 1e-300)
    # and the concrete range check still fires
    with pytest.raises(ValueError):
        f(-abs(p0))


def test_adc_range_gradient_sees_saturation():
    """Learned-step-size gradient of the ADC range (Esser et al. 2020): a saturated output
    hi · lsb has derivative hi / half w.r.t. the range (exact); an in-range one the
    straight-through quantization error round(u) − u (per LSB)."""
    adc = lambda r, y: UniformADC(bits=4, y_range=r)(y)
    r = 2.0
    half = 8
    g_sat = float(jax.grad(lambda r: adc(r, jnp.asarray(5.0)))(r))
    assert g_sat == pytest.approx((half - 1) / half, rel=1e-12)
    g_low = float(jax.grad(lambda r: adc(r, jnp.asarray(-5.0)))(r))
    assert g_low == pytest.approx(-1.0, rel=1e-12)
    u = 0.3 / (r / half)
    g_in = float(jax.grad(lambda r: adc(r, jnp.asarray(0.3)))(r))
    assert g_in == pytest.approx((round(u) - u) / half, rel=1e-12)
    # w.r.t. the input: straight through everywhere, as before
    assert float(jax.grad(lambda y: adc(r, y))(jnp.asarray(5.0))) == 1.0
