"""Saving and loading (issue 12): weights alone keep the target's hardware bit for bit, whole
models and programmed chips round-trip bit for bit through a versioned, pickle-free file, an
architecture mismatch names the first differing layer, and training resumes from a
checkpoint along the same path as an unbroken run."""

from __future__ import annotations

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nds
from nds.nn.models import lenet5, mlp
from nds.tiles import CrossbarTile


def _leaves_equal(a, b) -> bool:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    for x, y in zip(la, lb):
        if eqx.is_array(x):
            if not (np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))):
                return False
        elif not (x is y or x == y or (isinstance(x, float) and np.isnan(x) and np.isnan(y))):
            return False
    return True


@pytest.fixture(scope="module")
def lenet():
    return lenet5((1, 8, 8), key=jax.random.key(2))


def _negated(model):
    return jax.tree_util.tree_map(lambda a: -a if eqx.is_array(a) else a, model)


@pytest.fixture(scope="module")
def pcm5():
    """A noisy 5-bit PCM crossbar tile (32 levels, output noise, 5-bit converters)."""
    cell = nds.load_card("pcm_joshi2020", nds.cells.PCM, levels=32)
    return CrossbarTile(cell=cell, dac=nds.converters.UniformDAC(bits=5), adc=nds.converters.UniformADC(bits=5),
                        out_noise=0.04)


def test_load_weights_keeps_every_hardware_leaf_and_loads_every_weight_bit_for_bit(tmp_path, pcm5, lenet):
    """The issue's replay: weights trained on ideal tiles, loaded with eqx.tree_deserialise_leaves
    into a model built for noisy 5-bit PCM, took the checkpoint's float settings (out_noise 0,
    the card's noise coefficients 0) and kept the new integer ones. load_weights keeps the
    target's tiles whole and changes only the weights."""
    src = nds.analogize(mlp((64, 32, 10), key=jax.random.key(0)), pcm5.ideal())
    nds.save_weights(tmp_path / "w.safetensors", src)
    target = nds.analogize(mlp((64, 32, 10), key=jax.random.key(1)), pcm5)
    got = nds.load_weights(tmp_path / "w.safetensors", target)
    for g, t, s in zip(nds.nn.analog_layers(got), nds.nn.analog_layers(target), nds.nn.analog_layers(src)):
        assert _leaves_equal(g.tile, t.tile)  # hardware: the target's, bit for bit
        assert g.tile.out_noise == 0.04 and g.tile.cell.prog_c0 == t.tile.cell.prog_c0 > 0
        for f in ("weight", "bias"):  # weights: the file's, bit for bit
            assert np.asarray(getattr(g, f)).tobytes() == np.asarray(getattr(s, f)).tobytes()
    # the plain eqx route of the issue does mix the two (what load_weights avoids)
    eqx.tree_serialise_leaves(tmp_path / "all.eqx", src)
    mixed = eqx.tree_deserialise_leaves(tmp_path / "all.eqx", target)
    assert nds.nn.analog_layers(mixed)[0].tile.out_noise == 0.0
    # a digital checkpoint loads into its analog twin and back (same paths; conv bias (c,1,1) ~ (c,))
    net = lenet
    nds.save_weights(tmp_path / "d.safetensors", net)
    twin = nds.load_weights(tmp_path / "d.safetensors", nds.analogize(_negated(net), pcm5))
    assert np.array_equal(np.asarray(nds.nn.analog_layers(twin)[0].weight), np.asarray(net.layers[0].weight))
    assert np.array_equal(np.asarray(nds.nn.analog_layers(twin)[0].bias), np.asarray(net.layers[0].bias).reshape(-1))


def test_architecture_mismatch_names_the_first_differing_layer(tmp_path, pcm5):
    nds.save_weights(tmp_path / "w.safetensors", mlp((64, 32, 10), key=jax.random.key(0)))
    other = nds.analogize(mlp((64, 16, 10), key=jax.random.key(0)), pcm5)
    with pytest.raises(ValueError) as e:
        nds.load_weights(tmp_path / "w.safetensors", other)
    msg = str(e.value)
    assert str(tmp_path / "w.safetensors") in msg and "layers[1]" in msg and "'linear0'" in msg
    assert "(32, 64)" in msg and "(16, 64)" in msg
    deeper = mlp((64, 32, 10, 10), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"layers\[5\].*the file has nothing"):
        nds.load_weights(tmp_path / "w.safetensors", deeper)
    chip = nds.program(nds.analogize(mlp((64, 32, 10), key=jax.random.key(0)), pcm5.ideal()), key=None)
    with pytest.raises(ValueError, match="programmed"):
        nds.load_weights(tmp_path / "w.safetensors", chip)


def test_programmed_chip_round_trips_bit_for_bit(tmp_path, pcm5, lenet):
    """A programmed, aged chip saved and loaded: every leaf and the structure equal, and reads
    with the same key equal bit for bit. LeNet-5 (eqx.nn.Lambda(jax.nn.relu), max pooling,
    flattening) round-trips too, digital and analogized."""
    am = nds.analogize(mlp((64, 8, 10), key=jax.random.key(0)), pcm5)
    chip = nds.drift(nds.program(am, key=jax.random.key(1)), 3600.0, key=jax.random.key(2))
    nds.save(tmp_path / "chip.nds", chip)
    back = nds.load(tmp_path / "chip.nds")
    assert _leaves_equal(back, chip)
    x = jax.random.uniform(jax.random.key(3), (1, 8, 8))
    assert np.asarray(back(x, key=jax.random.key(4))).tobytes() == np.asarray(chip(x, key=jax.random.key(4))).tobytes()
    # cards are stored by content: a changed card value travels with the file
    assert nds.nn.analog_layers(back)[0].tile.cell.levels == 32
    assert nds.nn.analog_layers(back)[0].tile.cell.card.name == "pcm_joshi2020"
    # LeNet-5, digital and analogized (unprogrammed stays unprogrammed)
    net = lenet
    nds.save(tmp_path / "net.nds", net)
    assert _leaves_equal(nds.load(tmp_path / "net.nds"), net)
    alenet = nds.analogize(net, pcm5)
    nds.save(tmp_path / "am.nds", alenet)
    back = nds.load(tmp_path / "am.nds")
    assert _leaves_equal(back, alenet) and nds.nn.analog_layers(back)[0].state is None


def test_model_file_format_is_versioned_and_refuses_what_it_cannot_read(tmp_path):
    import safetensors

    net = mlp((4, 3, 2), key=jax.random.key(0))
    p = tmp_path / "m.nds"
    nds.save(p, net)
    with safetensors.safe_open(str(p), "numpy") as f:
        head = json.loads(f.metadata()["nds"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert head["format"] == "nds.model" and head["format_version"] == 1 == nds._io.FORMAT_VERSION
    assert head["tree"]["$module"] == "equinox.nn._sequential:Sequential"
    assert {"$function": "jax.nn:relu"} in head["tree"]["fields"]["layers"]["$tuple"][2]["fields"].values()
    assert sorted(tensors) == ["layers[1].bias", "layers[1].weight", "layers[3].bias", "layers[3].weight"]
    import safetensors.numpy

    newer = dict(head, format_version=2)
    (tmp_path / "new.nds").write_bytes(safetensors.numpy.save(tensors, metadata={"nds": json.dumps(newer)}))
    with pytest.raises(ValueError, match="format version 2; this nds reads versions up to 1"):
        nds.load(tmp_path / "new.nds")
    (tmp_path / "junk.nds").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="junk.nds: not an nds nds.model file"):
        nds.load(tmp_path / "junk.nds")
    (tmp_path / "trunc.nds").write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ValueError, match="trunc.nds"):
        nds.load(tmp_path / "trunc.nds")
    nds.save_weights(tmp_path / "w.st", net)
    with pytest.raises(ValueError, match="read it with nds.load_weights"):
        nds.load(tmp_path / "w.st")
    with pytest.raises(TypeError, match=r"layers\[0\]\.fn .*not importable by name"):
        nds.save(tmp_path / "x.nds", eqx.nn.Sequential([eqx.nn.Lambda(lambda x: 2 * x)]))


def test_noise_aware_training_resumes_from_a_checkpoint_bit_for_bit(tmp_path, digits, rram):
    """Training interrupted after 2 of 4 steps and resumed from its checkpoint (optimizer state,
    step, key, losses) gives the same model and losses, bit for bit, as an unbroken run
    (noise-aware: a fresh chip with programming error and output noise every step, a
    cosine schedule); a checkpoint of another run or a damaged one is refused, naming the
    file."""
    x, y = digits[0][:128], digits[1][:128]
    tile = CrossbarTile(cell=rram, dac=nds.converters.UniformDAC(bits=None), adc=nds.converters.UniformADC(bits=None),
                        out_noise=0.04)
    am = nds.analogize(mlp((64, 10), key=jax.random.key(0)), tile)
    kw = dict(key=jax.random.key(1), steps=4, batch_size=16, noise_aware=True, clip_sigma=2.5,
              optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, 4)))
    ck = tmp_path / "run.ckpt"

    def snapshot_at_2(i, _):  # what a run stopped after step 2 would have left on disk
        if i == 3:
            (tmp_path / "at2.ckpt").write_bytes(ck.read_bytes())

    full, l_full = nds.train.fit(am, x, y, checkpoint=ck, checkpoint_every=1, progress=snapshot_at_2, **kw)
    ck.write_bytes((tmp_path / "at2.ckpt").read_bytes())
    resumed, l_res = nds.train.fit(am, x, y, checkpoint=ck, checkpoint_every=1, **kw)
    assert l_res == l_full
    assert _leaves_equal(eqx.filter(resumed, eqx.is_array), eqx.filter(full, eqx.is_array))
    with pytest.raises(nds.train.CheckpointError, match="run.ckpt belongs to another training run"):
        nds.train.fit(am, x, y, checkpoint=ck, **dict(kw, key=jax.random.key(9)))
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(nds.train.CheckpointError, match="run.ckpt cannot be read"):
        nds.train.fit(am, x, y, checkpoint=ck, **kw)
