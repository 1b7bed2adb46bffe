"""Bad input: malformed cards, NaN inputs under jit, wrong shapes, unprogrammed layers."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import nds
from nds._cards import card_path
from nds.nn import AnalogConv2d, AnalogLinear


def _pcm_text() -> str:
    return card_path("pcm_joshi2020").read_text()


def _write(tmp_path, text, name="card.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _expect(tmp_path, text, *needles):
    p = _write(tmp_path, text)
    with pytest.raises(nds.CardError) as e:
        nds.load_card(p, nds.cells.PCM)
    msg = str(e.value)
    assert str(p) in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_unknown_key(tmp_path):
    text = _pcm_text().replace("[params]\n", "[params]\ng_maxx = { value = 1.0, unit = \"uS\" }\n")
    msg = _expect(tmp_path, text, "g_maxx", "unknown")
    assert "g_max" in msg  # lists the valid keys


def test_missing_key(tmp_path):
    lines = [l for l in _pcm_text().splitlines() if not l.startswith("drift_t0")]
    msg = _expect(tmp_path, "\n".join(lines) + "\n", "drift_t0", "missing")
    assert "['drift_t0']" in msg and "valid keys" in msg, msg


def test_wrong_unit(tmp_path):
    text = _pcm_text().replace('g_max = { value = 25.0, unit = "uS" }', 'g_max = { value = 25.0, unit = "kOhm" }')
    msg = _expect(tmp_path, text, "g_max", "Ohm")
    assert "expected a unit of 'S'" in msg, msg


def test_unparseable_unit(tmp_path):
    text = _pcm_text().replace('g_max = { value = 25.0, unit = "uS" }', 'g_max = { value = 25.0, unit = "furlong" }')
    msg = _expect(tmp_path, text, "g_max", "furlong")
    assert "[params] g_max" in msg, msg


def test_g_min_not_below_g_max(tmp_path):
    for g_min in ("30.0", "25.0"):  # above, and equal to, g_max = 25 uS
        text = _pcm_text().replace('g_min = { value = 0.0, unit = "uS" }', f'g_min = {{ value = {g_min}, unit = "uS" }}')
        msg = _expect(tmp_path, text, "g_min", "g_max")
        assert "must be < g_max" in msg, msg


def test_out_of_range_and_bad_values(tmp_path):
    cases = [
        ('drift_t0 = { value = -20.0, unit = "s" }', "out of range"),
        ('drift_t0 = { value = "twenty", unit = "s" }', "not a number"),
        ("drift_t0 = 20.0", "{ value = ..., unit"),
    ]
    for line, needle in cases:
        msg = _expect(tmp_path, _pcm_text().replace('drift_t0 = { value = 20.0, unit = "s" }', line), "drift_t0")
        assert needle in msg, msg
    msg = _expect(tmp_path, _pcm_text().replace('levels = { value = 0, unit = "1" }', 'levels = { value = 1, unit = "1" }'),
                  "levels")
    assert "0 (continuous) or >= 2" in msg, msg


def test_meta_problems(tmp_path):
    cases = [
        (_pcm_text().replace('kind = "pcm"', 'kind = "rram"'), "needs kind = 'pcm'"),
        (_pcm_text().replace("[meta]\n", "[meta]\nauthor = \"me\"\n"), "['author']"),
        (_pcm_text().replace("[params]", "[parameters]"), "[params]"),
        ("[meta\n", "not valid TOML"),
    ]
    for text, needle in cases:
        msg = _expect(tmp_path, text)
        assert needle in msg, msg


# ---------------------------------------------------------------------------- layers
@pytest.fixture(scope="module")
def chip_layer():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    tile = nds.tiles.CrossbarTile(cell=pcm, out_noise=0.01)
    lin = eqx.nn.Linear(5, 3, key=jax.random.key(0))
    layer = AnalogLinear.from_linear(lin, tile, name="dense_7")
    return layer, layer.program(key=jax.random.key(1))


def test_nan_input_raises_under_jit_naming_layer(chip_layer):
    _, chip = chip_layer
    f = eqx.filter_jit(lambda m, x, k: m(x, key=k))
    assert f(chip, jnp.ones(5), jax.random.key(2)).shape == (3,)  # fine input passes
    with pytest.raises(Exception) as e:
        f(chip, jnp.asarray([1.0, jnp.nan, 0.0, 0.0, 0.0]), jax.random.key(2)).block_until_ready()
    assert "dense_7" in str(e.value) and "NaN" in str(e.value)
    assert isinstance(e.value, (eqx.EquinoxRuntimeError, RuntimeError))
    with pytest.raises(Exception, match="dense_7"):
        f(chip, jnp.asarray([1.0, jnp.inf, 0.0, 0.0, 0.0]), jax.random.key(2)).block_until_ready()


def test_nan_input_raises_in_a_whole_model_under_jit():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    net = nds.nn.models.mlp((4, 6, 2), key=jax.random.key(0))
    am = nds.analogize(net, nds.tiles.CrossbarTile(cell=pcm))
    x = jnp.asarray([[0.0, 1.0, 2.0, jnp.nan]])
    f = eqx.filter_jit(lambda m, x, k: nds.train.predict(nds.program(m, key=k), x, key=k))
    with pytest.raises(Exception, match="linear0"):
        f(am, x, jax.random.key(1)).block_until_ready()


def test_wrong_shape_names_layer(chip_layer):
    _, chip = chip_layer
    with pytest.raises(ValueError, match=r"dense_7.*\(4,\).*\(5,\)"):
        chip(jnp.ones(4), key=jax.random.key(0))
    with pytest.raises(ValueError, match="dense_7"):
        chip(jnp.ones((2, 5)), key=jax.random.key(0))  # a batch: vmap instead


def test_conv_wrong_shape_names_layer():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    conv = AnalogConv2d.from_conv(eqx.nn.Conv2d(3, 2, 3, key=jax.random.key(0)),
                                  nds.tiles.CrossbarTile(cell=pcm).ideal(), name="conv_a").program(key=None)
    with pytest.raises(ValueError, match=r"conv_a.*3 input channels"):
        conv(jnp.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="conv_a"):
        conv(jnp.ones((3, 8)))


def test_unprogrammed_layer_raises(chip_layer):
    layer, _ = chip_layer
    with pytest.raises(ValueError, match=r"dense_7.*not programmed.*nds.program"):
        layer(jnp.ones(5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="not programmed"):
        nds.drift(eqx.nn.Sequential([layer]), 10.0)


def test_negative_drift_time(chip_layer):
    _, chip = chip_layer
    with pytest.raises(ValueError, match="t = -1"):
        nds.drift(chip, -1.0)


def test_cost_without_analog_layers():
    with pytest.raises(ValueError, match="analogize"):
        nds.cost(eqx.nn.Linear(3, 3, key=jax.random.key(0)), (3,))


def test_tile_and_converter_arguments():
    pcm = nds.load_card("pcm_joshi2020", nds.cells.PCM)
    with pytest.raises(ValueError, match="out_noise"):
        nds.tiles.CrossbarTile(cell=pcm, out_noise=-0.1)
    with pytest.raises(ValueError, match="rows"):
        nds.arrays.ResistiveCrossbar(rows=0)
    with pytest.raises(ValueError, match="bits_weight"):
        nds.tiles.DigitalTile(bits_weight=1)
