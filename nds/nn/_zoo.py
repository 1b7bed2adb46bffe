"""A model zoo of modern networks, small enough to train digitally in minutes on 2 cores.

* :func:`vit` — a small Vision Transformer (Dosovitskiy et al., ICLR 2021) on MNIST: 7×7
  patches → 16 tokens plus a class token, pre-norm blocks with GELU MLPs.
* :func:`resnet` — a small ResNet (He et al., CVPR 2016) with batch norm and residual adds,
  torchvision's layout (``conv1``/``bn1``, stages ``layer1..layer4`` of :class:`BasicBlock`
  or :class:`Bottleneck`, ``fc``) so that PyTorch checkpoints of the same shape load by name
  (:func:`nds.nn.load_state_dict`). Returns ``(model, state)``: the batch-norm statistics live
  in an ``eqx.nn.State`` while training (:func:`fit_batchnorm`) and are frozen for inference
  with :func:`nds.nn.freeze_batchnorm`.
* :func:`gpt` — a small character-level GPT (Radford et al. 2018/2019 layout: pre-norm
  blocks, learned positions, causal attention) with a KV cache for generation
  (:meth:`GPT.generate`).

Every block hands a key to every layer (named streams, :mod:`nds._keys`), so the converted
models read noisy tiles everywhere; LayerNorm, GELU/ReLU, residual adds, pooling and
softmax are :class:`nds.nn.DigitalOp` nodes, costed at a stated bit width. Models take one
example (no batch axis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._keys import streams
from ..tiles._attention import AbstractAttentionTile, DigitalAttention, KVEntries
from ._attention import MultiheadAttention, seq_apply, split_or_none
from ._digital import DigitalOp

__all__ = ["Block", "ViT", "GPT", "BasicBlock", "Bottleneck", "ResNet", "TransformerEncoderLayer", "vit", "gpt",
           "resnet", "fit_batchnorm"]


def _ks(key, *names):
    return (None,) * len(names) if key is None else streams(key, *names)


def _ln(d: int, name: str) -> DigitalOp:
    return DigitalOp(eqx.nn.LayerNorm(d), "layernorm", name=name)


def _tokenwise(op, x):
    return jax.vmap(lambda xi: op(xi))(x)


def _global_avg(x):
    return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------- transformer
class Block(eqx.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + fc2(gelu(fc1(ln2(x))))``.
    ``x``: (T, d) → (T, d)."""

    ln1: Any
    attn: MultiheadAttention
    ln2: Any
    fc1: Any
    act: Any
    fc2: Any
    add1: Any
    add2: Any

    def __init__(self, d: int, heads: int, mlp: int, *, causal: bool, attention: AbstractAttentionTile | None = None,
                 name: str = "block", key: PRNGKeyArray):
        kq, kk, kv, ko, k1, k2 = jax.random.split(key, 6)
        self.ln1 = _ln(d, f"{name}.ln1")
        self.attn = MultiheadAttention(eqx.nn.Linear(d, d, key=kq), eqx.nn.Linear(d, d, key=kk),
                                       eqx.nn.Linear(d, d, key=kv), eqx.nn.Linear(d, d, key=ko),
                                       attention if attention is not None else DigitalAttention(), heads, causal,
                                       name=f"{name}.attn")
        self.ln2 = _ln(d, f"{name}.ln2")
        self.fc1 = eqx.nn.Linear(d, mlp, key=k1)
        self.act = DigitalOp(jax.nn.gelu, "gelu", name=f"{name}.gelu")
        self.fc2 = eqx.nn.Linear(mlp, d, key=k2)
        self.add1 = DigitalOp(jnp.add, "add", name=f"{name}.add1")
        self.add2 = DigitalOp(jnp.add, "add", name=f"{name}.add2")

    def _mlp(self, h, k1, k2, seq: bool):
        if seq:
            return seq_apply(self.fc2, self.act(seq_apply(self.fc1, h, k1)), k2)
        return self.fc2(self.act(self.fc1(h, key=k1)), key=k2)

    def __call__(self, x: Float[Array, "t d"], *, key: PRNGKeyArray | None = None) -> Float[Array, "t d"]:
        ka, k1, k2 = _ks(key, "attn", "fc1", "fc2")
        x = self.add1(x, self.attn(_tokenwise(self.ln1, x), key=ka))
        return self.add2(x, self._mlp(_tokenwise(self.ln2, x), k1, k2, True))

    def step(self, x: Float[Array, " d"], pos, cache: KVEntries, *, key: PRNGKeyArray | None = None):
        """One token (d,) at position ``pos`` with the attention's KV cache."""
        ka, k1, k2 = _ks(key, "attn", "fc1", "fc2")
        a, cache = self.attn.step(self.ln1(x), pos, cache, key=ka)
        x = self.add1(x, a)
        return self.add2(x, self._mlp(self.ln2(x), k1, k2, False)), cache


class ViT(eqx.Module):
    """Vision Transformer for (C, H, W) images → class logits (see :func:`vit`)."""

    patch_embed: Any
    cls_token: Float[Array, " d"]
    pos_embedding: Float[Array, "n d"]
    blocks: tuple
    ln_f: Any
    head: Any
    patch: int = eqx.field(static=True)

    def _patches(self, x):
        c, h, w = x.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"ViT: image {h}×{w} is not a multiple of the patch size {p}")
        x = x.reshape(c, h // p, p, w // p, p).transpose(1, 3, 0, 2, 4)
        return x.reshape((h // p) * (w // p), c * p * p)

    def __call__(self, x: Float[Array, "c h w"], *, key: PRNGKeyArray | None = None) -> Float[Array, " k"]:
        """Raises ValueError when the image is not a multiple of the patch size or has
        another number of patches than the positional table."""
        kp, kb, kh = _ks(key, "patch_embed", "blocks", "head")
        tok = seq_apply(self.patch_embed, self._patches(x), kp)
        tok = jnp.concatenate([self.cls_token[None], tok], axis=0)
        if tok.shape[0] != self.pos_embedding.shape[0]:
            raise ValueError(f"ViT: {tok.shape[0] - 1} patches, the model has positions for "
                             f"{self.pos_embedding.shape[0] - 1}")
        h = tok + self.pos_embedding
        for b, k in zip(self.blocks, split_or_none(kb, len(self.blocks))):
            h = b(h, key=k)
        return self.head(self.ln_f(h[0]), key=kh)


def vit(in_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10, *, patch: int = 7, d: int = 64,
        depth: int = 2, heads: int = 4, mlp: int = 128, key: PRNGKeyArray) -> ViT:
    """A small ViT: ``patch``×``patch`` patches embedded by a Linear to ``d``, a class token
    and learned positions, ``depth`` pre-norm blocks (``heads`` heads, MLP width ``mlp``,
    GELU), LayerNorm and a Linear head on the class token. Defaults on 28×28 MNIST: 16
    patches, 72k weights."""
    c, h, w = in_shape
    n = (h // patch) * (w // patch)
    kp, kc, kpos, kb, kh = jax.random.split(key, 5)
    blocks = tuple(Block(d, heads, mlp, causal=False, name=f"blocks.{i}", key=k)
                   for i, k in enumerate(jax.random.split(kb, depth)))
    dt = jnp.result_type(float)
    return ViT(eqx.nn.Linear(c * patch * patch, d, key=kp), 0.02 * jax.random.normal(kc, (d,), dt),
               0.02 * jax.random.normal(kpos, (n + 1, d), dt), blocks, _ln(d, "ln_f"),
               eqx.nn.Linear(d, n_classes, key=kh), patch)


class GPT(eqx.Module):
    """Character-level causal language model: tokens (T,) int → logits (T, vocab)."""

    embedding: eqx.nn.Embedding
    pos_embedding: Float[Array, "c d"]
    blocks: tuple
    ln_f: Any
    head: Any

    @property
    def context(self) -> int:
        """Longest sequence (positions in the table)."""
        return int(self.pos_embedding.shape[0])

    def __call__(self, tokens: Int[Array, " t"], *, key: PRNGKeyArray | None = None) -> Float[Array, "t v"]:
        """Raises ValueError on a sequence longer than the context or not 1-D."""
        if tokens.ndim != 1 or tokens.shape[0] > self.context:
            raise ValueError(f"GPT: tokens shape {tokens.shape}; expected (T,) with T <= context {self.context} "
                             "(one sequence; vmap over a batch)")
        kb, kh = _ks(key, "blocks", "head")
        t = tokens.shape[0]
        h = jax.vmap(self.embedding)(tokens) + self.pos_embedding[:t]
        for b, k in zip(self.blocks, split_or_none(kb, len(self.blocks))):
            h = b(h, key=k)
        return seq_apply(self.head, _tokenwise(self.ln_f, h), kh)

    def init_cache(self, length: int | None = None) -> tuple[KVEntries, ...]:
        """Empty KV caches (one per block) of ``length`` slots (default: the context)."""
        n = self.context if length is None else length
        return tuple(b.attn.empty_cache(n, self.pos_embedding.dtype) for b in self.blocks)

    def step(self, token: Int[Array, ""], pos: Int[Array, ""], cache: tuple, *, key: PRNGKeyArray | None = None):
        """Logits (vocab,) of the next token after ``token`` at position ``pos``, and the
        updated caches."""
        kb, kh = _ks(key, "blocks", "head")
        h = self.embedding(token) + self.pos_embedding[pos]
        new = []
        for b, c, k in zip(self.blocks, cache, split_or_none(kb, len(self.blocks))):
            h, c = b.step(h, pos, c, key=k)
            new.append(c)
        return self.head(self.ln_f(h), key=kh), tuple(new)

    def generate(self, prompt: Int[Array, " p"], n_new: int, *, key: PRNGKeyArray,
                 temperature: float = 1.0) -> Int[Array, " n"]:
        """``prompt`` followed by ``n_new`` sampled tokens (``temperature`` 0: greedy), one
        token per step with the KV cache (``jax.lax.scan``). Read noise uses the step keys.

        Raises:
            ValueError: ``len(prompt) + n_new`` beyond the context, or an empty prompt.
        """
        p = int(prompt.shape[0])
        total = p + int(n_new)
        if p < 1 or total > self.context:
            raise ValueError(f"GPT.generate: prompt length {p} + n_new {n_new} must be in [1, context = "
                             f"{self.context}]")
        buf = jnp.zeros((total,), jnp.int32).at[:p].set(prompt.astype(jnp.int32))
        keys = jax.random.split(key, total - 1)

        def body(carry, i):
            buf, cache = carry
            kr, ks = streams(keys[i], "read", "sample")
            logits, cache = self.step(buf[i], i, cache, key=kr)
            if temperature == 0:
                nxt = jnp.argmax(logits)
            else:
                nxt = jax.random.categorical(ks, logits / temperature)
            nxt = jnp.where(i + 1 < p, buf[i + 1], nxt).astype(jnp.int32)
            return (buf.at[i + 1].set(nxt), cache), None

        (buf, _), _ = jax.lax.scan(body, (buf, self.init_cache(total)), jnp.arange(total - 1))
        return buf


def gpt(vocab: int, *, context: int = 128, d: int = 96, depth: int = 2, heads: int = 4, mlp: int = 256,
        key: PRNGKeyArray) -> GPT:
    """A small character-level GPT: embedding ``vocab``×``d``, learned positions for
    ``context`` tokens, ``depth`` causal pre-norm blocks (``heads`` heads, MLP ``mlp``,
    GELU), final LayerNorm and a Linear head. Defaults: 2 blocks, d = 96, 206k weights with a
    100-character vocabulary."""
    ke, kp, kb, kh = jax.random.split(key, 4)
    dt = jnp.result_type(float)
    blocks = tuple(Block(d, heads, mlp, causal=True, name=f"blocks.{i}", key=k)
                   for i, k in enumerate(jax.random.split(kb, depth)))
    emb = eqx.nn.Embedding(vocab, d, key=ke)
    emb = eqx.tree_at(lambda e: e.weight, emb, 0.02 * jax.random.normal(ke, (vocab, d), dt))
    return GPT(emb, 0.02 * jax.random.normal(kp, (context, d), dt), blocks, _ln(d, "ln_f"),
               eqx.nn.Linear(d, vocab, key=kh))


class TransformerEncoderLayer(eqx.Module):
    """PyTorch's ``nn.TransformerEncoderLayer`` (inference): self-attention and a
    feed-forward block with residual adds, post-norm (``norm_first=False``) or pre-norm.
    ``x``: (T, d) → (T, d); used by :func:`nds.nn.from_torch`."""

    self_attn: MultiheadAttention
    linear1: Any
    linear2: Any
    norm1: Any
    norm2: Any
    activation: Any
    add1: Any
    add2: Any
    norm_first: bool = eqx.field(static=True, default=False)

    def __call__(self, x, mask=None, *, key=None):
        ka, k1, k2 = _ks(key, "self_attn", "linear1", "linear2")

        def ff(h):
            return seq_apply(self.linear2, self.activation(seq_apply(self.linear1, h, k1)), k2)

        if self.norm_first:
            x = self.add1(x, self.self_attn(_tokenwise(self.norm1, x), mask=mask, key=ka))
            return self.add2(x, ff(_tokenwise(self.norm2, x)))
        x = _tokenwise(self.norm1, self.add1(x, self.self_attn(x, mask=mask, key=ka)))
        return _tokenwise(self.norm2, self.add2(x, ff(x)))


# ----------------------------------------------------------------------------- ResNet
def _norm(bn, h, state):
    if isinstance(bn, eqx.nn.BatchNorm):
        if state is None:
            raise ValueError("ResNet: batch norm with batch statistics needs state= (training); for inference "
                             "freeze it with nds.nn.freeze_batchnorm(model, state)")
        return bn(h, state)
    return bn(h), state


def _ret(y, state, given):
    return (y, state) if given else y


class BasicBlock(eqx.Module):
    """torchvision's ``BasicBlock``: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))``,
    shortcut ``downsample`` (1×1 conv + batch norm) when the shape changes. ``x``: (C, H, W)."""

    conv1: Any
    bn1: Any
    conv2: Any
    bn2: Any
    downsample: Any
    relu1: Any
    relu2: Any
    add: Any

    fold_pairs: ClassVar[tuple[tuple[str, str], ...]] = (("conv1", "bn1"), ("conv2", "bn2"))

    def __call__(self, x, state=None, *, key=None):
        given = state is not None
        k1, k2, k3 = _ks(key, "conv1", "conv2", "downsample")
        h, state = _norm(self.bn1, self.conv1(x, key=k1), state)
        h = self.relu1(h)
        h, state = _norm(self.bn2, self.conv2(h, key=k2), state)
        if self.downsample is None:
            sc = x
        else:
            conv, bn = self.downsample.layers
            sc, state = _norm(bn, conv(x, key=k3), state)
        return _ret(self.relu2(self.add(h, sc)), state, given)


class Bottleneck(eqx.Module):
    """torchvision's ``Bottleneck``: 1×1 → 3×3 (stride) → 1×1 convolutions with batch norm,
    ReLU, and the residual add."""

    conv1: Any
    bn1: Any
    conv2: Any
    bn2: Any
    conv3: Any
    bn3: Any
    downsample: Any
    relu1: Any
    relu2: Any
    relu3: Any
    add: Any

    fold_pairs: ClassVar[tuple[tuple[str, str], ...]] = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __call__(self, x, state=None, *, key=None):
        given = state is not None
        k1, k2, k3, k4 = _ks(key, "conv1", "conv2", "conv3", "downsample")
        h, state = _norm(self.bn1, self.conv1(x, key=k1), state)
        h, state = _norm(self.bn2, self.conv2(self.relu1(h), key=k2), state)
        h, state = _norm(self.bn3, self.conv3(self.relu2(h), key=k3), state)
        if self.downsample is None:
            sc = x
        else:
            conv, bn = self.downsample.layers
            sc, state = _norm(bn, conv(x, key=k4), state)
        return _ret(self.relu3(self.add(h, sc)), state, given)


class ResNet(eqx.Module):
    """torchvision's ResNet layout: ``conv1``, ``bn1``, ReLU, ``maxpool``, stages
    ``layer1..layer4`` (tuples of blocks; empty when unused), global average pool, ``fc``.
    ``__call__(x, state=None, *, key=None)``: (C, H, W) → logits; returns
    ``(logits, state)`` when ``state`` is given (training with batch statistics)."""

    conv1: Any
    bn1: Any
    relu: Any
    maxpool: Any
    layer1: tuple
    layer2: tuple
    layer3: tuple
    layer4: tuple
    avgpool: Any
    fc: Any

    fold_pairs: ClassVar[tuple[tuple[str, str], ...]] = (("conv1", "bn1"),)

    def __call__(self, x, state=None, *, key=None):
        given = state is not None
        k0, kl, kf = _ks(key, "conv1", "layers", "fc")
        h, state = _norm(self.bn1, self.conv1(x, key=k0), state)
        h = self.maxpool(self.relu(h))
        blocks = self.layer1 + self.layer2 + self.layer3 + self.layer4
        for b, k in zip(blocks, split_or_none(kl, len(blocks))):
            if given:
                h, state = b(h, state, key=k)
            else:
                h = b(h, key=k)
        return _ret(self.fc(self.avgpool(h), key=kf), state, given)


def _block(cin, cout, stride, key, name):
    k1, k2, k3 = jax.random.split(key, 3)
    down = None
    if stride != 1 or cin != cout:
        down = eqx.nn.Sequential([eqx.nn.Conv2d(cin, cout, 1, stride=stride, use_bias=False, key=k3),
                                  eqx.nn.BatchNorm(cout, "batch", mode="batch")])
    return BasicBlock(eqx.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, use_bias=False, key=k1),
                      eqx.nn.BatchNorm(cout, "batch", mode="batch"),
                      eqx.nn.Conv2d(cout, cout, 3, padding=1, use_bias=False, key=k2),
                      eqx.nn.BatchNorm(cout, "batch", mode="batch"), down,
                      DigitalOp(jax.nn.relu, "relu", name=f"{name}.relu1"),
                      DigitalOp(jax.nn.relu, "relu", name=f"{name}.relu2"),
                      DigitalOp(jnp.add, "add", name=f"{name}.add"))


def resnet(in_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10, *, widths: tuple[int, ...] = (16, 32, 64),
           blocks: int = 1, key: PRNGKeyArray) -> tuple[ResNet, eqx.nn.State]:
    """A small ResNet with torchvision's layout for small images: a 3×3 stem (``widths[0]``
    channels, batch norm, ReLU, no max-pool), one stage per width (``blocks`` BasicBlocks
    each, stride 2 from the second stage on), global average pool and ``fc``. Defaults on
    MNIST: 3 stages (16, 32, 64), 78k weights.

    Returns:
        ``(model, state)`` (``eqx.nn.make_with_state``): train with :func:`fit_batchnorm`,
        then :func:`nds.nn.freeze_batchnorm` for inference and conversion.

    Raises:
        ValueError: more than 4 stages.
    """
    if not 1 <= len(widths) <= 4:
        raise ValueError(f"resnet: widths = {widths}: 1 to 4 stages")
    c = in_shape[0]
    ks = jax.random.split(key, 2 + len(widths))

    def build():
        stages: list[tuple] = []
        cin = widths[0]
        for s, w in enumerate(widths):
            sk = jax.random.split(ks[2 + s], blocks)
            stages.append(tuple(_block(cin if b == 0 else w, w, 2 if (s > 0 and b == 0) else 1, sk[b],
                                       f"layer{s + 1}.{b}") for b in range(blocks)))
            cin = w
        stages += [()] * (4 - len(stages))
        return ResNet(eqx.nn.Conv2d(c, widths[0], 3, padding=1, use_bias=False, key=ks[0]),
                      eqx.nn.BatchNorm(widths[0], "batch", mode="batch"), DigitalOp(jax.nn.relu, "relu", name="relu"),
                      eqx.nn.Identity(), *stages, DigitalOp(_global_avg, "avgpool", name="avgpool"),
                      eqx.nn.Linear(widths[-1], n_classes, key=ks[1]))

    return eqx.nn.make_with_state(build)()


def fit_batchnorm(model: Any, state: eqx.nn.State, x: Array, y: Array, *, key: PRNGKeyArray, steps: int,
                  batch_size: int = 64, optimizer: Any = None, progress: Callable[[int, float], None] | None = None
                  ) -> tuple[Any, eqx.nn.State, list[float]]:
    """Digital training of a model with batch norm in batch-statistics mode: the model is
    vmapped over the batch with ``axis_name="batch"`` and called as ``model(x, state)``;
    softmax cross-entropy on integer labels, every inexact array trains (Adam, lr 1e-3 by
    default). Returns ``(model, state, losses)``; freeze with
    :func:`nds.nn.freeze_batchnorm` afterwards.

    Raises:
        ValueError: ``steps`` < 1 or ``batch_size`` not in [1, N].
        FloatingPointError: a non-finite loss.
    """
    import optax

    n = x.shape[0]
    if steps < 1 or not 1 <= batch_size <= n:
        raise ValueError(f"fit_batchnorm: steps = {steps} (>= 1), batch_size = {batch_size} (in [1, {n}])")
    opt = optimizer or optax.adam(1e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)

    def loss(p, st, xb, yb):
        m = eqx.combine(p, static)
        logits, st = jax.vmap(m, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(xb, st)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), st

    @eqx.filter_jit
    def step(p, s, st, xb, yb):
        (l, st), g = jax.value_and_grad(loss, has_aux=True)(p, st, xb, yb)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, st, l

    losses = []
    for i in range(steps):
        key, kb = jax.random.split(key)
        idx = jax.random.choice(kb, n, (batch_size,), replace=False)
        params, opt_state, state, l = step(params, opt_state, state, x[idx], y[idx])
        lf = float(l)
        if not np.isfinite(lf):
            raise FloatingPointError(f"fit_batchnorm: loss became {lf} at step {i}")
        losses.append(lf)
        if progress is not None:
            progress(i + 1, lf)
    return eqx.combine(params, static), state, losses
