"""Modern networks on tiles: conversion everywhere in the tree with keys reaching every layer,
batch-norm folding inside residual blocks, ideal limits of every converted model, costs of
attention and digital parts, the text dataset and bits-per-character metric, generation with
the KV cache, and noise-aware training through attention."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest

import nds
import nds._study_networks
from nds.tiles import CrossbarTile, DigitalTile, GainCellAttention


class _SelfAttn(eqx.Module):
    """A custom module holding an Equinox MultiheadAttention (self-attention on (T, d))."""

    mha: eqx.nn.MultiheadAttention
    out: eqx.nn.Linear

    def __call__(self, x, *, key=None):
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        h = self.mha(x, x, x, key=k1) if not isinstance(self.mha, nds.nn.MultiheadAttention) else self.mha(x, key=k1)
        return jax.vmap(lambda r: self.out(r, key=k2))(h.mean(0, keepdims=True))[0]


def _models():
    """(name, digital model, example input) for every kind of network nds converts."""
    k = jax.random.split(jax.random.key(0), 8)
    mlp = eqx.nn.MLP(6, 3, 8, 2, key=k[0])
    sa = _SelfAttn(eqx.nn.MultiheadAttention(2, 8, key=k[1]), eqx.nn.Linear(8, 3, key=k[2]))
    vit = nds.nn.vit((1, 8, 8), 10, patch=4, d=16, depth=1, heads=2, mlp=32, key=k[3])
    gpt = nds.nn.gpt(11, context=8, d=16, depth=1, heads=2, mlp=32, key=k[4])
    net, state = nds.nn.resnet((1, 8, 8), 10, widths=(4, 8), key=k[5])
    resnet = _random_bn(nds.nn.freeze_batchnorm(net, state))
    x6 = jax.random.normal(k[6], (6,))
    x8 = jax.random.normal(k[6], (5, 8))
    img = jax.random.uniform(k[7], (1, 8, 8))
    toks = jnp.array([1, 4, 2, 9, 0, 3, 3, 7])
    return [("mlp", mlp, x6), ("mha", sa, x8), ("vit", vit, img), ("gpt", gpt, toks), ("resnet", resnet, img)]


def _random_bn(model):
    """Non-trivial inference statistics in every frozen batch norm (seeded)."""
    it = iter(range(1000))

    def f(x):
        if not isinstance(x, nds.nn.FrozenBatchNorm):
            return x
        kk = jax.random.split(jax.random.key(100 + next(it)), 4)
        c = x.weight.shape[0]
        return nds.nn.FrozenBatchNorm(1 + 0.3 * jax.random.uniform(kk[0], (c,)), 0.2 * jax.random.normal(kk[1], (c,)),
                                      0.5 * jax.random.normal(kk[2], (c,)), 0.5 + jax.random.uniform(kk[3], (c,)),
                                      eps=x.eps)

    return jtu.tree_map(f, model, is_leaf=lambda x: isinstance(x, nds.nn.FrozenBatchNorm))


MODELS = _models()


@pytest.mark.parametrize("name,model,x", MODELS, ids=[m[0] for m in MODELS])
def test_ideal_limit_equals_the_digital_twin(name, model, x, pcm):
    """Every Linear/Conv2d converted onto an ideal PCM crossbar and attention onto the ideal
    gain-cell tile: the output equals the digital model's to 1e-6 (float64: ~1e-12)."""
    am = nds.analogize(model, CrossbarTile(cell=pcm).ideal(), attention=GainCellAttention.from_cards().ideal())
    n_conv = sum(isinstance(l, (eqx.nn.Linear, eqx.nn.Conv2d))
                 for l in jtu.tree_leaves(model, is_leaf=lambda l: isinstance(l, (eqx.nn.Linear, eqx.nn.Conv2d))))
    assert len(nds.nn.analog_layers(am)) == n_conv
    assert not any(isinstance(l, (eqx.nn.Linear, eqx.nn.Conv2d))
                   for l in jtu.tree_leaves(am, is_leaf=lambda l: isinstance(l, (eqx.nn.Linear, eqx.nn.Conv2d))))
    y = eqx.filter_jit(lambda m, x: nds.program(m, key=jax.random.key(1))(x, key=None))(am, x)
    ref = eqx.filter_jit(lambda m, x: m(x))(model, x)
    assert float(jnp.max(jnp.abs(y - ref)) / jnp.max(jnp.abs(ref))) < 1e-6


NOISY = [m for m in MODELS if m[0] != "vit"]  # the ViT's blocks are the GPT's


@pytest.mark.parametrize("name,model,x", NOISY, ids=[m[0] for m in NOISY])
def test_noisy_tiles_read_with_keys_everywhere_and_are_reproducible(name, model, x, pcm):
    """With read noise on every crossbar (out_noise; ideal cells keep the chip programs small)
    and noisy gain-cell writes, a layer that got no key would raise; two calls with the same
    keys give the same bits."""
    tile = CrossbarTile(cell=pcm.ideal(), out_noise=0.04)
    am = nds.analogize(model, tile, attention=GainCellAttention.from_cards())
    if name in ("mlp", "mha"):
        with pytest.raises(ValueError, match="pass key"):
            eqx.filter_eval_shape(lambda m, x: nds.program(m, key=jax.random.key(2))(x, key=None), am, x)
    run = eqx.filter_jit(lambda m, x, k: nds.program(m, key=jax.random.key(2))(x, key=k))
    a, b = run(am, x, jax.random.key(3)), run(am, x, jax.random.key(3))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.isfinite(np.asarray(a)))


def test_containers_are_replaced_by_key_passing_equivalents(pcm):
    am = nds.analogize(MODELS[0][1], CrossbarTile(cell=pcm))
    assert isinstance(am, nds.nn.KeyedMLP)
    am = nds.analogize(MODELS[1][1], CrossbarTile(cell=pcm))
    assert isinstance(am.mha, nds.nn.MultiheadAttention) and isinstance(am.mha.attention, nds.tiles.DigitalAttention)
    with pytest.raises(ValueError, match="scan=True"):
        nds.analogize(eqx.nn.MLP(2, 2, 4, 2, scan=True, key=jax.random.key(0)), CrossbarTile(cell=pcm))


def test_batchnorm_folds_inside_residual_blocks(pcm):
    """conv1/bn1, conv2/bn2 of every block, the stem and the downsample Sequential fold: no
    batch norm is left and each folded layer carries scale a = γ/√(σ²+ε), bias β − a μ."""
    resnet = MODELS[4][1]
    am = nds.analogize(resnet, CrossbarTile(cell=pcm).ideal())
    left = [x for x in jtu.tree_leaves(am, is_leaf=lambda x: isinstance(x, nds.nn.FrozenBatchNorm))
            if isinstance(x, nds.nn.FrozenBatchNorm)]
    assert left == []
    blk, bn = am.layer2[0], resnet.layer2[0].bn2
    a = bn.weight / jnp.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(blk.conv2.out_scale, a, rtol=1e-12)
    np.testing.assert_allclose(blk.conv2.bias, bn.bias - a * bn.running_mean, rtol=1e-12, atol=1e-15)
    assert isinstance(blk.downsample.layers[1], eqx.nn.Identity) and blk.downsample.layers[0].out_scale is not None
    with pytest.raises(ValueError, match="pass state="):
        net, _ = nds.nn.resnet((1, 8, 8), widths=(4,), key=jax.random.key(0))
        nds.analogize(net, CrossbarTile(cell=pcm))


def test_cost_counts_tokens_attention_and_digital_parts(pcm):
    """GPT, T = 8 tokens, d = 16, 2 heads, MLP 32, vocabulary 11: every projection runs once per
    token (T·in·out MACs), attention over T(T+1)/2 causal pairs per head, LayerNorm over T·d
    elements, GELU over T·32, stated at the digital bit width."""
    gpt = MODELS[3][1]
    am = nds.analogize(gpt, CrossbarTile(cell=pcm), attention=GainCellAttention.from_cards(), digital_bits=8)
    rep = nds.cost(am, (8,), input_dtype=jnp.int32)
    rows = {n: c for n, _, c in rep.layers}
    t, d = 8, 16
    macs = [c.macs for n, c in rows.items() if n.startswith("linear")]
    assert sorted(macs) == sorted([t * d * d] * 4 + [t * d * 32] * 2 + [t * d * 11])
    attn = rows["blocks.0.attn"]
    assert attn.hardware == "gain_cell" and attn.macs == (t * (t + 1) // 2) * 2 * (8 + 8)
    assert rows["blocks.0.ln1"].counts["layernorm_elements"] == t * d
    assert rows["blocks.0.gelu"].counts["gelu_elements"] == t * 32 and rows["blocks.0.gelu"].bits_activation == 8
    assert rep.energy_j == pytest.approx(sum(c.energy_total_j for c in rows.values()), rel=1e-12)
    split = nds._study_networks.energy_split(am, rep)
    assert split["attention"] == pytest.approx(attn.energy_total_j, rel=1e-12)
    assert sum(split.values()) == pytest.approx(rep.energy_j, rel=1e-12)


def test_generation_with_the_kv_cache_equals_the_full_forward():
    """Step-by-step logits through the KV cache equal the full causal forward (digital), and
    greedy generation returns the prompt followed by the argmax continuation."""
    gpt = MODELS[3][1]
    toks = MODELS[3][2]
    full = gpt(toks)

    def run(g, toks):
        def body(cache, i):
            lg, cache = g.step(toks[i], i, cache)
            return cache, lg
        return jax.lax.scan(body, g.init_cache(), jnp.arange(len(toks)))[1]

    np.testing.assert_allclose(eqx.filter_jit(run)(gpt, toks), full, rtol=1e-10, atol=1e-12)
    out = eqx.filter_jit(lambda g, p: g.generate(p, 4, key=jax.random.key(0), temperature=0.0))(gpt, toks[:3])
    assert out[:3].tolist() == toks[:3].tolist()
    nxt = int(jnp.argmax(gpt(out[:3])[-1]))
    assert int(out[3]) == nxt
    with pytest.raises(ValueError, match="context"):
        gpt.generate(toks, 4, key=jax.random.key(0))


def test_text_dataset_is_split_by_topic():
    from pydoc_data import topics

    ds = nds.datasets.load_dataset("pydoc_topics", n_train=50, n_test=20, context=32, seed=3)
    assert ds.x_train.shape == (50, 32) and ds.y_test.shape == (20, 32)
    np.testing.assert_array_equal(ds.x_train[:, 1:], ds.y_train[:, :-1])
    assert list(ds.vocab) == sorted(set(ds.vocab))
    names = sorted(topics.topics)
    order = [names[i] for i in np.random.default_rng(3).permutation(len(names))]
    test_text = "\n\n".join(topics.topics[t] for t in order[-8:])
    train_topics = [topics.topics[t] for t in order[:-8]]
    assert len(order) == 79 and math.ceil(0.1 * 79) == 8
    for w in (ds.x_test[0], ds.x_test[-1]):
        assert "".join(ds.vocab[i] for i in w) in test_text
    # the first and last training windows start/end inside the training text, not the test text
    train_text = "\n\n".join(train_topics)
    assert "".join(ds.vocab[i] for i in ds.x_train[0]) == train_text[:32]
    assert "".join(ds.vocab[i] for i in ds.y_train[-1]) == train_text[-32:]


def test_bits_per_char_closed_forms():
    """Uniform logits: log2(V) bits; logit a on the target: −log2(e^a/(e^a + V − 1))."""
    v, a = 7, 2.5
    x = jax.random.randint(jax.random.key(0), (10, 5), 0, v)
    uniform = lambda t, key=None: jnp.zeros((t.shape[0], v))
    assert float(nds.train.bits_per_char(uniform, x, x, key=None, batch=4)) == pytest.approx(math.log2(v), rel=1e-12)
    onehot = lambda t, key=None: a * jax.nn.one_hot(t, v)
    want = -math.log2(math.exp(a) / (math.exp(a) + v - 1))
    assert float(nds.train.bits_per_char(onehot, x, x, key=None, batch=3)) == pytest.approx(want, rel=1e-12)


def test_noise_aware_training_through_attention_raises_the_5th_percentile(digits):
    """A small ViT on the 8×8 digits, its MVMs digital and its attention on gain cells with a
    strong write error (σ = 0.2 V, i.e. 44% of the half range): noise-aware training (a fresh
    write noise every step, gradients through the attention tile) raises the 5th percentile of
    the accuracy over 16 reads by more than 3·√2 binomial standard errors of the test set.
    float32 (a training test; the conftest fixture restores float64 for the next test)."""
    jax.config.update("jax_enable_x64", False)
    xtr, ytr, xte, yte = (jnp.asarray(np.asarray(a), jnp.float32 if i % 2 == 0 else jnp.int32)
                          for i, a in enumerate(digits))
    net = nds.nn.vit((1, 8, 8), 10, patch=4, d=16, depth=1, heads=2, mlp=32, key=jax.random.key(0))
    spec = jtu.tree_map(eqx.is_inexact_array, net)
    net, _ = nds.train.fit(net, xtr, ytr, key=jax.random.key(1), steps=200, batch_size=32,
                           optimizer=optax.adam(3e-3), filter_spec=spec)
    cell = nds.load_card("gain_cell_leroux2025", nds.cells.GainCell, sigma_write=0.2)
    am = nds.analogize(net, DigitalTile(), attention=GainCellAttention(cell=cell))
    acc = eqx.filter_jit(lambda m, k: nds.train.accuracy(nds.program(m, key=None), xte, yte, key=k))

    def p5(m):
        return float(np.percentile([float(acc(m, k)) for k in jax.random.split(jax.random.key(5), 16)], 5))

    before = p5(am)
    na, _ = nds.train.fit(am, xtr, ytr, key=jax.random.key(2), steps=100, batch_size=32, optimizer=optax.adam(1e-3),
                          noise_aware=True)
    after = p5(na)
    n = xte.shape[0]
    se = math.sqrt(before * (1 - before) / n)
    assert after - before > 3 * math.sqrt(2) * se, (before, after)


@pytest.mark.parametrize("text,msg", [
    ('[network]\nname = "gpt"\n', "do not fit"),
    ('[network]\nname = "vit"\n[dataset]\nname = "pydoc_topics"\n', "do not fit"),
    ('[network]\nname = ["gpt", "vit"]\n[network.overrides.resnet]\ntraining = { steps = 3 }\n',
     "network.overrides.resnet"),
    ('[network]\nname = "lenet5"\ncheckpoint = "x.pt"\n', "network.checkpoint needs a zoo network"),
    ('[[hardware]]\nname = "pcm"\ncard = "pcm_joshi2020"\nattention = "sram"\n', "hardware[0].attention"),
    ('[[hardware]]\nname = "pcm"\ncard = "pcm_joshi2020"\nattention = "gain_cell"\nattention_card = "nope"\n',
     "hardware[0].attention_card"),
])
def test_study_network_keys_are_checked(tmp_path, text, msg):
    from nds.study import StudyError, load_study

    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(StudyError) as e:
        load_study(p)
    assert str(p) in str(e.value) and msg in str(e.value), str(e.value)


def test_multi_network_study_validates_each_network(tmp_path):
    """A list of networks: each gets its overrides; a bad override names the network."""
    from nds.study import StudyError, load_study, validate_study, _merge

    p = tmp_path / "s.toml"
    p.write_text('[network]\nname = ["gpt", "vit"]\n[network.overrides.gpt]\n'
                 'dataset = { name = "pydoc_topics", context = 16 }\n')
    cfg = load_study(p)
    assert cfg["network"]["name"] == ["gpt", "vit"]
    sub = _merge(cfg, {"dataset": {"name": "pydoc_topics", "context": 16}})
    sub["network"] = {"name": "gpt", "digital_layers": []}
    assert validate_study(sub)["dataset"]["context"] == 16
    with pytest.raises(StudyError, match="network.overrides.vit"):
        validate_study(dict(sub, network={"name": "vit", "digital_layers": []}), "network.overrides.vit")
