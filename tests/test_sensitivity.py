"""nds.sensitivity: the gradient of the chip-averaged cross-entropy w.r.t. hardware
parameters equals central finite differences of the same surrogate (same chips, same read
noise: common random numbers), for one parameter of every tile kind that has a
differentiable hardware parameter; normalization and errors. (Digital and near-DRAM
PE-array tiles have none: exact arithmetic, and retention errors are bit flips.)

One heterogeneous network carries every tile kind, one per layer (sensor → PCM crossbar →
bit-sliced RRAM → SRAM → switched capacitor → PCM crossbar), so that one compiled gradient
serves every check. No tile quantizes anything that depends on a hardware parameter
(unbounded converters, continuous DACs, no ADC, fixed input ranges: a rounding or a
stop-gradient input scale anywhere between a parameter and the loss would make the gradient
the straight-through estimator's), so the surrogate is smooth and its derivative is exact
autodiff. The finite differences use a relative step of 1e-5 in float64 (truncation error
~1e-10 relative, rounding ~1e-11 / 1e-5), so a 1e-5 relative agreement tests the
derivative, not the step; the surrogate's values at θ(1 ± 1e-5) come from the same compiled
function as the gradient (its forward output), and its value at θ is checked against a
direct evaluation through :func:`nds.sensitivity.surrogate_loss`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.converters import UniformADC, UniformDAC
from nds.sensitivity import _locate, _per_chip, hardware_parameters, surrogate_loss

N_CHIPS = 3
T_AGE = 3600.0  # drift and 1/f noise of the PCM layers take part


@pytest.fixture(scope="module")
def setup(digits):
    x, y = jnp.asarray(digits[0][:32].reshape(32, -1)), jnp.asarray(digits[1][:32])
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    rram = nds.load_card("rram_generic", nds.cells.RRAM)
    unbounded = dict(dac=UniformDAC(bits=None), adc=UniformADC(bits=None))
    tiles = [
        nds.tiles.SensorTile(sensor=nds.load_card("sensor_redeye2016", nds.tiles.SensorAnalogCard), snr_db=20.0,
                             w_bits=None, out_bits=None),
        nds.tiles.CrossbarTile(cell=pcm, array=nds.arrays.ResistiveCrossbar(rows=8, cols=8), **unbounded),
        nds.tiles.BitSlicedTile(cell=rram, array=nds.arrays.ResistiveCrossbar(rows=16, cols=16),
                                weights=nds.mapping.BitSliceMapping(weight_bits=6, bits_per_cell=2),
                                inputs=nds.mapping.InputSlicing(input_bits=None)),
        nds.tiles.SRAMTile.from_card(weight_bits=1, rows=16, readout="analog", x_range=4.0,
                                     column_overrides=dict(dac_bits=None)),
        nds.tiles.SwitchedCapTile.from_card(adc=None, rows=16, a_bits=None, x_range=4.0),
        nds.tiles.CrossbarTile(cell=pcm, **unbounded),
    ]
    net = nds.nn.models.mlp((64, 16, 16, 16, 16, 16, 10), key=jax.random.key(0))
    model = nds.analogize(net, tiles)
    params = {
        "sensor": "linear0:snr_db",
        "crossbar": "cell.qs_a",  # PCM 1/f noise: one card value held by linear1 and linear5
        "bitsliced": "linear2:cell.g_max",
        "sram": "column.a_vt",
        "switched_cap": "array.c_u",
    }
    names = list(params.values()) + ["linear1:cell.qs_a", "linear5:cell.qs_a", "cell.g_min"]
    key = jax.random.key(7)
    r = nds.sensitivity(model, (x, y), params=names, key=key, num_chips=N_CHIPS, t=T_AGE)
    return dict(x=x, y=y, model=model, params=params, names=names, r=r, chip_keys=jax.random.split(key, N_CHIPS))


def test_surrogate_value_is_the_direct_evaluation(setup):
    s = setup
    f = eqx.filter_jit(jax.vmap(lambda k: surrogate_loss(s["model"], s["x"], s["y"], key=k, t=T_AGE)[0]))
    assert float(np.mean(np.asarray(f(s["chip_keys"])))) == pytest.approx(s["r"].loss, rel=1e-12)
    assert 0.0 <= s["r"].accuracy <= 1.0 and s["r"].num_chips == N_CHIPS


@pytest.mark.parametrize("kind", ["sensor", "crossbar", "bitsliced", "sram", "switched_cap"])
def test_gradient_matches_central_finite_difference(kind, setup):
    s = setup
    name = s["params"][kind]
    k = s["names"].index(name)
    located = tuple(tuple(_locate(s["model"], n)) for n in s["names"])
    p = s["r"][name]
    theta = float(p.value)

    eps = 1e-5
    fd = (_loss_at(s, located, k, scale=1 + eps) - _loss_at(s, located, k, scale=1 - eps)) / (2 * eps * theta)
    assert fd != 0.0
    # the SRAM bit-line discharge switches from its saturation to its triode expression at
    # V_dsat (continuous value, slope change): a step that moves a cell across it costs ~1e-5
    assert p.grad == pytest.approx(fd, rel=1e-4 if kind == "sram" else 1e-5), (kind, p.grad, fd)
    # normalized: change of L for +1 % of the parameter = 0.01 θ dL/dθ
    assert p.per_percent == pytest.approx(0.01 * theta * p.grad, rel=1e-9)


def _loss_at(s, located, k, scale=1.0, shift=0.0):
    """The surrogate with name ``k`` scaled and shifted, from the same compiled function as
    the gradient (its forward output)."""
    n = len(s["names"])
    ce = _per_chip(s["model"], located, jnp.ones(n).at[k].set(scale), s["x"], s["y"], s["chip_keys"], T_AGE,
                   jnp.zeros(n).at[k].set(shift))[0]
    return float(np.mean(np.asarray(ce)))


def test_shared_zero_valued_and_ranked(setup):
    """A parameter held by two layers is one card value: its gradient is the sum of the
    per-layer derivatives (each layer named alone in the same call). g_min, 0 on the PCM
    layers and 1 µS on the RRAM one, gets the derivative w.r.t. a common additive shift
    (checked by finite differences of that shift)."""
    s = setup
    r = s["r"]
    p = r["cell.qs_a"]
    assert p.layers == ("linear1", "linear5")
    assert p.grad == pytest.approx(r["linear1:cell.qs_a"].grad + r["linear5:cell.qs_a"].grad, rel=1e-9)
    q = r["cell.g_min"]
    assert q.value == [0.0, 1e-6, 0.0] and q.layers == ("linear1", "linear2", "linear5")
    # step 1e-8 of g_max: the unused device of each PCM pair sits at g_min = 0, where
    # max(g, 0) clips programmed conductances; a larger step lets ~1 device cross that kink
    located = tuple(tuple(_locate(s["model"], n)) for n in s["names"])
    k = s["names"].index("cell.g_min")
    h = 1e-8 * 25e-6
    fd = (_loss_at(s, located, k, shift=h) - _loss_at(s, located, k, shift=-h)) / (2 * h)
    assert q.grad == pytest.approx(fd, rel=1e-5) and fd != 0.0
    ranked = r.ranked()
    assert [abs(t.per_percent) for t in ranked] == sorted((abs(t.per_percent) for t in ranked), reverse=True)
    names = hardware_parameters(s["model"])
    assert {"cell.g_max", "adc.y_range", "snr_db", "column.a_vt", "array.c_u"} <= set(names)


def test_errors_name_the_parameter(setup):
    s = setup
    data = (s["x"], s["y"])
    with pytest.raises(ValueError, match=r"'cell\.levels'.*not a differentiable scalar leaf"):
        nds.sensitivity(s["model"], data, params=["cell.levels"], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"'cell\.nope'.*no analog layer's tile has it"):
        nds.sensitivity(s["model"], data, params=["cell.nope"], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"no analog layer named 'conv9'"):
        nds.sensitivity(s["model"], data, params=["conv9:cell.g_max"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_chips"):
        nds.sensitivity(s["model"], data, params=["cell.g_max"], key=jax.random.key(0), num_chips=0)
