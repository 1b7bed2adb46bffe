"""Layers on tiles, analogize (tree surgery, batch-norm folding, per-layer choice) and costs."""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rel_err

import nds
from nds.arrays import ResistiveCrossbar
from nds.nn import AnalogConv2d, AnalogLinear
from nds.tiles import CrossbarTile, DigitalTile


@pytest.fixture(scope="module")
def ideal_tile():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    return CrossbarTile(cell=pcm, array=ResistiveCrossbar(rows=16, cols=8)).ideal()  # partitioned


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((1, 2), ((1, 2), (0, 1)))])
def test_conv_ideal_equals_equinox_conv(ideal_tile, stride, padding):
    """AnalogConv2d (im2col on the tile; 27 inputs on 16-row arrays: two partial sums) in the
    ideal limit equals eqx.nn.Conv2d to 1e-10 (float64)."""
    conv = eqx.nn.Conv2d(3, 5, 3, stride=stride, padding=padding, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 9, 10))
    layer = AnalogConv2d.from_conv(conv, ideal_tile, name="c").program(key=None)
    y = layer(x)
    want = conv(x)
    assert y.shape == want.shape
    assert layer.output_shape(x.shape) == want.shape
    assert rel_err(y, want) < 1e-10


def test_linear_ideal_equals_equinox_linear(ideal_tile):
    lin = eqx.nn.Linear(37, 11, key=jax.random.key(2))
    x = jax.random.normal(jax.random.key(3), (37,))
    layer = AnalogLinear.from_linear(lin, ideal_tile).program(key=None)
    assert rel_err(layer(x), lin(x)) < 1e-10


def test_whole_lenet_ideal_equals_digital(ideal_tile):
    """analogize converts every Conv2d/Linear and leaves pooling and activations: in the ideal
    limit the analog LeNet-5 (on 8×8 inputs) equals the Equinox model to 1e-10."""
    net = nds.nn.lenet5((1, 8, 8), 10, key=jax.random.key(4))
    am = nds.analogize(net, ideal_tile)
    assert len(nds.nn.analog_layers(am)) == 5
    x = jax.random.uniform(jax.random.key(5), (4, 1, 8, 8))
    y = eqx.filter_jit(lambda m, x: jax.vmap(lambda v: nds.program(m, key=None)(v, key=None))(x))(am, x)
    assert rel_err(y, eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(net, x)) < 1e-10


@pytest.mark.parametrize("mode", ["ema", "batch"])
def test_batchnorm_folding_equals_inference_mode(ideal_tile, mode):
    """Sequential[Conv2d, BatchNorm, ReLU, flatten, Linear]: BN statistics set by one
    training-mode pass, γ/β random; the folded ideal analog model equals the original in
    inference mode (BN(z) = γ(z − μ)/sqrt(σ² + ε) + β)."""
    k = jax.random.split(jax.random.key(6), 5)
    seq, state = eqx.nn.make_with_state(eqx.nn.Sequential)([
        eqx.nn.Conv2d(2, 4, 3, padding=1, key=k[0]),
        eqx.nn.BatchNorm(4, axis_name="batch", mode=mode),
        eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Lambda(lambda z: z.reshape(-1)),
        eqx.nn.Linear(4 * 6 * 6, 3, key=k[1]),
    ])
    bn = seq.layers[1]
    seq = eqx.tree_at(lambda s: (s.layers[1].weight, s.layers[1].bias), seq,
                      (1 + jax.random.uniform(k[2], (4,)), jax.random.normal(k[3], (4,))))
    x = 2.0 + 3.0 * jax.random.normal(k[4], (8, 2, 6, 6))  # non-zero mean and non-unit variance
    train_pass = lambda m, x, s: jax.vmap(m, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, s)
    _, state = eqx.filter_jit(train_pass)(seq, x, state)
    # the batch statistics (what the EMA holds after its first pass)
    z = jax.vmap(seq.layers[0])(x)
    mean, var = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))
    assert float(jnp.max(jnp.abs(mean))) > 0.1
    inf = eqx.nn.inference_mode(seq)
    want = eqx.filter_jit(lambda m, s, x: jax.vmap(lambda v: m(v, s)[0])(x))(inf, state, x)
    am = nds.analogize(seq, ideal_tile, state=state)
    assert isinstance(am.layers[1], eqx.nn.Identity)
    conv = am.layers[0]
    if mode == "ema":  # (mode "batch" debiases a running variance initialised at 1)
        a = np.asarray(seq.layers[1].weight) / np.sqrt(np.asarray(var) + bn.eps)
        np.testing.assert_allclose(np.asarray(conv.out_scale), a, rtol=1e-9)
    y = eqx.filter_jit(lambda m, x: jax.vmap(lambda v: nds.program(m, key=None)(v, key=None))(x))(am, x)
    assert rel_err(y, want) < 1e-10


def test_batchnorm_without_state_raises(ideal_tile):
    seq, _ = eqx.nn.make_with_state(eqx.nn.Sequential)([
        eqx.nn.Linear(3, 3, key=jax.random.key(0)), eqx.nn.BatchNorm(3, axis_name="b", mode="ema")])
    with pytest.raises(ValueError, match="state"):
        nds.analogize(seq, ideal_tile)


def test_analogize_per_layer_choice(ideal_tile):
    """digital=("last",) puts the last Linear on a DigitalTile; the others stay on the crossbar;
    a per-layer sequence with None does the same for the first."""
    net = nds.nn.models.mlp((64, 32, 16, 10), key=jax.random.key(7))
    am = nds.analogize(net, ideal_tile, digital=("last",))
    layers = nds.nn.analog_layers(am)
    assert [type(l.tile) for l in layers] == [CrossbarTile, CrossbarTile, DigitalTile]
    assert [l.name for l in layers] == ["linear0", "linear1", "linear2"]
    am2 = nds.analogize(net, [None, ideal_tile, ideal_tile])
    assert [type(l.tile) for l in nds.nn.analog_layers(am2)] == [DigitalTile, CrossbarTile, CrossbarTile]
    am3 = nds.analogize(net, ideal_tile, digital=(0, "last"))
    assert [type(l.tile) for l in nds.nn.analog_layers(am3)] == [DigitalTile, CrossbarTile, DigitalTile]
    # weights copied unchanged
    np.testing.assert_array_equal(np.asarray(layers[1].weight), np.asarray(net.layers[3].weight))
    with pytest.raises(ValueError, match="digital"):
        nds.analogize(net, ideal_tile, digital=(5,))
    with pytest.raises(ValueError, match="3 convertible"):
        nds.analogize(net, [ideal_tile])


def test_program_same_key_same_chip_and_layers_get_distinct_keys():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile = CrossbarTile(cell=pcm)
    lin = eqx.nn.Linear(20, 20, key=jax.random.key(8))
    net = eqx.nn.Sequential([lin, eqx.nn.Lambda(jax.nn.relu), lin])  # two identical layers
    am = nds.analogize(net, tile)
    a, b = nds.program(am, key=jax.random.key(9)), nds.program(am, key=jax.random.key(9))
    la, lb = nds.nn.analog_layers(a), nds.nn.analog_layers(b)
    assert np.array_equal(np.asarray(la[0].state.g), np.asarray(lb[0].state.g))
    # the same weights on two layers get independent programming error (keys split per layer)
    assert not np.array_equal(np.asarray(la[0].state.g), np.asarray(la[1].state.g))


# ---------------------------------------------------------------------------- costs
@pytest.fixture(scope="module")
def cc():
    return nds.load_card("converters_isaac32nm", nds.converters.ConverterCosts)


def test_cost_linear_counts_and_energy(pcm, cc):
    """AnalogLinear 1000→600 on 256×256 arrays, 8-bit DAC and ADC: 4 row blocks × 3 column
    blocks. The ISAAC card's DAC is bit-serial (Shafiee et al. 2016): 8 cycles per MVM, each a
    full read: per inference 8·4·600 ADC conversions, 8·1000·3 one-bit DAC pulses (a DAC on
    every row of each of the 3 column-block arrays), 8·2·600 000 cell reads; energy DAC
    0.417 pJ per pulse, ADC 1.67 pJ per 8-bit conversion, shift-add 0.021 pJ per converted
    partial sum; latency 8 read cycles. (Before issue 11: 4·600 conversions, 1000 DAC
    conversions of 8 × 0.417 pJ, one read.)"""
    w = jax.random.normal(jax.random.key(10), (600, 1000))
    tile = CrossbarTile(cell=pcm, converter_costs=cc)
    layer = AnalogLinear(weight=w, bias=None, out_scale=None, tile=tile, name="fc")
    rep = nds.cost(eqx.nn.Sequential([layer]), (1000,))
    assert len(rep.layers) == 1
    name, shape, c_model = rep.layers[0]
    assert name == "fc" and shape == (1000,)
    c = layer.cost((1000,))  # the tile's own cost (nds.cost may add memory traffic to it)
    for cost_ in (c, c_model):
        assert cost_.counts["adc_conversions"] == 8 * 4 * 600
        assert cost_.counts["dac_conversions"] == 8 * 1000 * 3
        assert cost_.counts["cell_reads"] == 8 * 2 * 600_000
        assert cost_.counts["digital_adds"] == 8 * 4 * 600
        assert cost_.counts["arrays"] == 12
        assert cost_.macs == 600_000
        assert cost_.energy_j["conversion"] == pytest.approx(24000 * 0.417e-12 + 19200 * 1.67e-12, rel=1e-9)
        assert cost_.energy_j["compute"] == pytest.approx(19200 * 0.021e-12, rel=1e-9)
    # cell reads: v_read² ḡ t_read per device, ḡ the mean target conductance (g_min = 0 for
    # this card, so ḡ = g_max · mean(|w|/max|w|) / 2 over both devices of each pair)
    wn = np.abs(np.asarray(w)) / np.abs(np.asarray(w)).max()
    g_mean = 25e-6 * wn.mean() / 2
    assert c.counts.get("wire_energy_j", 0.0) == 0.0  # ideal wires
    assert c.energy_j["array"] == pytest.approx(8 * 1.2e6 * 0.2**2 * g_mean * 100e-9, rel=1e-9)
    # latency: one MVM = 8 cycles of t_read + columns_per_adc / adc_rate; the model's layer is never faster
    assert c.latency_s == pytest.approx(8 * (100e-9 + 1 / 1.2e9), rel=1e-12)
    assert c_model.latency_s >= c.latency_s * (1 - 1e-12)
    for cost_ in (c, c_model):
        assert cost_.energy_total_j == pytest.approx(sum(cost_.energy_j.values()), rel=1e-15)


def test_cost_model_totals_and_conv_counts(pcm, cc):
    """LeNet-5 on 8×8 digits: conv0 (1→6, 5×5, pad 2) has 8·8 = 64 output positions (MVMs),
    conv1 (6→16, 5×5, pad 2) on the pooled 4×4 map has 16; totals are the sums of the layers."""
    net = nds.nn.lenet5((1, 8, 8), 10, key=jax.random.key(11))
    tile = CrossbarTile(cell=pcm, converter_costs=cc)
    am = nds.analogize(net, tile, digital=("last",))
    rep = nds.cost(am, (1, 8, 8))
    names = [n for n, _, _ in rep.layers]
    assert names == ["conv0", "conv1", "linear2", "linear3", "linear4"]
    shapes = {n: s for n, s, _ in rep.layers}
    assert shapes["conv0"] == (1, 8, 8) and shapes["conv1"] == (6, 4, 4) and shapes["linear2"] == (256,)
    c0, c1 = rep.layers[0][2], rep.layers[1][2]
    # the ISAAC card's DAC is bit-serial: 8 cycles (8-bit DAC) per MVM, one array per layer
    assert c0.counts["dac_conversions"] == 8 * 25 * 64      # 25 inputs per patch, 64 patches
    assert c0.counts["adc_conversions"] == 8 * 6 * 64       # one array row block
    assert c0.counts["cell_reads"] == 8 * 2 * 25 * 6 * 64
    assert c1.counts["dac_conversions"] == 8 * 150 * 16
    assert c1.counts["adc_conversions"] == 8 * 16 * 16
    assert c1.macs == 150 * 16 * 16
    last = rep.layers[4][2]
    assert last.hardware == "digital" and last.macs == 84 * 10
    tot = rep.total
    for key in ("conversion", "array", "compute"):
        assert tot.energy_j.get(key, 0.0) == pytest.approx(sum(c.energy_j.get(key, 0.0) for _, _, c in rep.layers),
                                                           rel=1e-12)
    assert tot.macs == sum(c.macs for _, _, c in rep.layers)
    assert tot.macs == 25 * 6 * 64 + 150 * 16 * 16 + 256 * 120 + 120 * 84 + 84 * 10
    assert tot.latency_s == pytest.approx(sum(c.latency_s for _, _, c in rep.layers), rel=1e-12)
    assert rep.energy_j == pytest.approx(sum(c.energy_total_j for _, _, c in rep.layers), rel=1e-12)
    rows = rep.rows()
    assert [r["layer"] for r in rows] == names + ["total"]
    assert rows[-1]["energy_total_j"] == pytest.approx(rep.energy_j, rel=1e-12)
