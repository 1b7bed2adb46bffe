"""nds.sensitivity: the gradient of the chip-averaged cross-entropy w.r.t. hardware
parameters equals central finite differences of the same surrogate (same chips, same read
noise: common random numbers), for one parameter of every tile kind that has a
differentiable hardware parameter; normalization and errors. (Digital and near-DRAM
PE-array tiles have none: exact arithmetic, and retention errors are bit flips.)

Each check uses the tile without quantizers in the path of the parameter (unbounded
converters, no ADC), where the surrogate is smooth and its derivative is exact autodiff; the
finite difference uses a relative step of 1e-5 in float64 (truncation error ~1e-10
relative, rounding ~1e-11 / 1e-5), so a 1e-5 relative agreement tests the derivative, not the
step. The surrogate's values at θ(1 ± 1e-5) come from the same compiled function as the
gradient (its forward output; no recompilation), and its value at θ is checked once against
a direct evaluation through :func:`nds.sensitivity.surrogate_loss`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.converters import UniformADC, UniformDAC
from nds.sensitivity import _per_chip, hardware_parameters, surrogate_loss

N_CHIPS = 3


@pytest.fixture(scope="module")
def data(digits):
    x, y = digits[0][:48].reshape(48, -1), digits[1][:48]
    return jnp.asarray(x), jnp.asarray(y)


@pytest.fixture(scope="module")
def net(data):
    x, y = data
    lin = eqx.nn.Linear(64, 10, key=jax.random.key(0))
    net, _ = nds.train.fit(lin, x, y, key=jax.random.key(1), steps=60, batch_size=16)
    return net


def _tiles():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    rram = nds.load_card("rram_generic", nds.cells.RRAM)
    return {
        # (tile, parameter, age t)
        "crossbar-pcm": (nds.tiles.CrossbarTile(cell=pcm, array=nds.arrays.ResistiveCrossbar(rows=32, cols=16),
                                                dac=UniformDAC(bits=None), adc=UniformADC(bits=None)),
                         "cell.g_max", 3600.0),
        "bitsliced": (nds.tiles.BitSlicedTile(cell=rram, array=nds.arrays.ResistiveCrossbar(rows=32, cols=16),
                                              weights=nds.mapping.BitSliceMapping(weight_bits=6, bits_per_cell=2),
                                              inputs=nds.mapping.InputSlicing(input_bits=None)),
                      "cell.g_max", None),
        "sram": (nds.tiles.SRAMTile.from_card(weight_bits=1, rows=64, readout="analog"), "column.a_vt", None),
        "switched_cap": (nds.tiles.SwitchedCapTile.from_card(adc=None, rows=64), "array.c_u", None),
        "sensor": (nds.tiles.SensorTile(sensor=nds.load_card("sensor_redeye2016", nds.tiles.SensorAnalogCard),
                                        snr_db=20.0, w_bits=None, out_bits=None), "snr_db", None),
    }


@pytest.mark.parametrize("kind", list(_tiles()))
def test_gradient_matches_central_finite_difference(kind, net, data):
    tile, name, t = _tiles()[kind]
    x, y = data
    key = jax.random.key(7)
    if kind == "crossbar-pcm":  # two layers: one card value shared by both, and each alone
        model = nds.analogize(nds.nn.models.mlp((64, 12, 10), key=jax.random.key(3)), tile)
        extra = ["cell.g_min", "linear0:cell.g_max", "linear1:cell.g_max"]
    else:
        model, extra = nds.analogize(net, tile), []
    r = nds.sensitivity(model, (x, y), params=[name] + extra, key=key, num_chips=N_CHIPS, t=t)
    p = r[name]
    theta = float(p.value)
    chip_keys = jax.random.split(key, N_CHIPS)
    if kind == "crossbar-pcm":
        # direct evaluation of the surrogate (the scaled model at scale 1 is the model), and
        # the zero-valued g_min: derivative w.r.t. an additive shift, no per-% change
        @eqx.filter_jit
        def direct(g_min):
            m = eqx.tree_at(lambda m: [l.tile.cell.g_min for l in nds.nn.analog_layers(m)], model, [g_min, g_min])
            return jnp.mean(jax.vmap(lambda k: surrogate_loss(m, x, y, key=k, t=t)[0])(chip_keys))

        assert float(direct(jnp.asarray(0.0))) == pytest.approx(r.loss, rel=1e-12)
        h = 1e-8 * theta  # the unused device of each pair sits at g_min = 0, where max(g, 0) clips
        # programmed conductances: a larger step lets ~1 device cross that kink
        fd0 = (float(direct(jnp.asarray(h))) - float(direct(jnp.asarray(-h)))) / (2 * h)
        assert r["cell.g_min"].grad == pytest.approx(fd0, rel=1e-5) and fd0 != 0.0
        assert r["cell.g_min"].per_percent == 0.0 and r["cell.g_min"].value == 0.0
        # a parameter held by two layers is one card value: the sum of the per-layer derivatives
        assert p.layers == ("linear0", "linear1")
        assert p.grad == pytest.approx(r["linear0:cell.g_max"].grad + r["linear1:cell.g_max"].grad, rel=1e-9)
        ranked = r.ranked()
        assert [abs(q.per_percent) for q in ranked] == sorted((abs(q.per_percent) for q in ranked), reverse=True)
        assert "cell.g_max" in hardware_parameters(model) and "adc.y_range" in hardware_parameters(model)
    located = (tuple((i, l, name) for i, l in enumerate(p.layers)),)

    def loss_at(scale):
        ce, _, _ = _per_chip(model, located, jnp.asarray([scale]), x, y, chip_keys, t)
        return float(np.mean(np.asarray(ce)))

    eps = 1e-5
    fd = (loss_at(1 + eps) - loss_at(1 - eps)) / (2 * eps * theta)
    assert fd != 0.0
    assert p.grad == pytest.approx(fd, rel=1e-5), (kind, p.grad, fd)
    # normalized: change of L for +1 % of the parameter = 0.01 θ dL/dθ
    assert p.per_percent == pytest.approx(0.01 * theta * p.grad, rel=1e-9)


def test_errors_name_the_parameter(net, data):
    model = nds.analogize(net, nds.tiles.CrossbarTile(cell=nds.load_card("rram_generic", nds.cells.RRAM)))
    with pytest.raises(ValueError, match=r"'cell\.levels'.*static|'cell\.levels'.*integer"):
        nds.sensitivity(model, data, params=["cell.levels"], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"'column\.a_vt'.*no analog layer"):
        nds.sensitivity(model, data, params=["column.a_vt"], key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"no analog layer named 'conv9'"):
        nds.sensitivity(model, data, params=["conv9:cell.g_max"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_chips"):
        nds.sensitivity(model, data, params=["cell.g_max"], key=jax.random.key(0), num_chips=0)
