"""Networks trained on the array: fully connected layers on :class:`InSituTile` crossbars.

A layer computes ``z = W [x; 1]`` on its tile (the bias is one more crossbar row driven by a
constant input 1, as in Prezioso et al. 2015) and ``a = f(z)`` digitally. Training on the chip,
per example:

1. forward: every layer's MVM is an analog read (:meth:`InSituTile.forward`);
2. the output error ``δ_L = ∂L/∂z_L`` is computed digitally (softmax cross-entropy:
   ``softmax(z) − onehot``; ``"mse"``: ``½ Σ (t − a)²`` with targets ±1 on a ``tanh`` output,
   ``δ = −(t − a)(1 − a²)``);
3. backward: ``δ_l = f'(z_l) ⊙ (W_{l+1}ᵀ δ_{l+1})`` where the product is an analog read through
   the transposed array (:meth:`InSituTile.backward`) and the bias row is dropped;
4. update: every layer's tile applies the rule to ``(x_l, −δ_l)`` with pulses
   (:meth:`InSituTile.update`).

:func:`train_epoch` runs steps 1–4 example by example over a shuffled epoch in one compiled
``lax.scan`` (stochastic gradient descent with batch 1, the way a crossbar updates);
:func:`train_batch_manhattan` accumulates ``Σ δ xᵀ`` digitally over the whole set and applies
one Manhattan pulse per device per epoch (Prezioso et al.'s batch training). No autodiff is
involved: the backward pass is physics, not a derivative of the forward model.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._keys import stream, streams
from ._rules import AbstractUpdateRule, ManhattanRule
from ._tile import InSituState, InSituTile, UpdateCost

__all__ = ["ACTIVATIONS", "InSituLayer", "InSituNetwork", "train_epoch", "train_batch_manhattan", "accuracy"]


def _relu(z):
    return jnp.maximum(z, 0.0), (z > 0).astype(z.dtype)


def _tanh(z):
    a = jnp.tanh(z)
    return a, 1.0 - a**2


def _sigmoid(z):
    a = jax.nn.sigmoid(z)
    return a, a * (1.0 - a)


def _identity(z):
    return z, jnp.ones_like(z)


#: activation name -> function returning (a, f'(z))
ACTIVATIONS = {"relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid, "identity": _identity}
LOSSES = ("ce", "mse")


class InSituLayer(eqx.Module):
    """A fully connected layer on an :class:`InSituTile` (``n_in`` inputs + a bias row when
    ``bias``, ``n_out`` outputs), with a digital ``activation``.

    Raises:
        ValueError: unknown activation or sizes < 1.
    """

    tile: InSituTile
    n_in: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)
    activation: str = eqx.field(static=True, default="relu")
    bias: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"InSituLayer.activation = {self.activation!r}; allowed: {sorted(ACTIVATIONS)}")
        if self.n_in < 1 or self.n_out < 1:
            raise ValueError(f"InSituLayer: n_in = {self.n_in}, n_out = {self.n_out} must be >= 1")

    @property
    def rows(self) -> int:
        """Crossbar rows used: inputs plus the bias row."""
        return self.n_in + int(self.bias)

    def augment(self, x: Float[Array, " n_in"]) -> Float[Array, " rows"]:
        """``[x; 1]`` (or ``x`` without bias)."""
        return jnp.concatenate([x, jnp.ones((1,), x.dtype)]) if self.bias else x


class InSituNetwork(eqx.Module):
    """A stack of :class:`InSituLayer` trained on the array (module docstring).

    Attributes:
        layers: the layers, input first.
        loss: ``"ce"`` (softmax cross-entropy on the last layer's ``z``) or ``"mse"``
            (targets ±1 on the last layer's activation), static.

    Raises:
        ValueError: unknown loss, empty ``layers`` or layer sizes that do not chain.
    """

    layers: tuple[InSituLayer, ...]
    loss: str = eqx.field(static=True, default="ce")

    def __check_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"InSituNetwork.loss = {self.loss!r}; allowed: {LOSSES}")
        if not self.layers:
            raise ValueError("InSituNetwork: needs at least one layer")
        for a, b in zip(self.layers[:-1], self.layers[1:]):
            if a.n_out != b.n_in:
                raise ValueError(f"InSituNetwork: a layer with {a.n_out} outputs feeds one with {b.n_in} inputs")

    @staticmethod
    def mlp(sizes: Sequence[int], tile: InSituTile, *, activation: str = "relu", out_activation: str = "identity",
            loss: str = "ce", bias: bool = True) -> "InSituNetwork":
        """An MLP with layer widths ``sizes`` (input first), every layer on ``tile``."""
        n = len(sizes) - 1
        layers = tuple(InSituLayer(tile, sizes[i], sizes[i + 1], activation if i < n - 1 else out_activation, bias)
                       for i in range(n))
        return InSituNetwork(layers, loss)

    # ------------------------------------------------------------------ chip
    def init(self, *, key: PRNGKeyArray, weights: Sequence[Array] | None = None,
             scale: float = 1.0) -> tuple[InSituState, ...]:
        """One chip with its initial weights: ``weights`` (one ``(n_out, rows)`` array per
        layer, bias in the last column) or, when ``None``, Glorot-uniform weights
        ``U(±scale·sqrt(6/(n_in + n_out)))`` drawn from ``key``, clipped to ``±w_max``.

        Raises:
            ValueError: ``weights`` of the wrong number or shape.
        """
        if weights is not None and len(weights) != len(self.layers):
            raise ValueError(f"InSituNetwork.init: {len(weights)} weight arrays for {len(self.layers)} layers")
        if weights is not None:
            for i, (l, w) in enumerate(zip(self.layers, weights)):
                if jnp.shape(w) != (l.n_out, l.rows):
                    raise ValueError(f"InSituNetwork.init: layer {i} needs weights of shape {(l.n_out, l.rows)}, "
                                     f"got {jnp.shape(w)}")
        return _init(self, key, None if weights is None else tuple(jnp.asarray(w) for w in weights), scale)

    def _init_impl(self, key, weights, scale):
        kw, kc = streams(key, "weights", "chip")
        kws = jax.random.split(kw, len(self.layers))
        kcs = jax.random.split(kc, len(self.layers))
        states = []
        for i, l in enumerate(self.layers):
            if weights is None:
                s = scale * (6.0 / (l.n_in + l.n_out)) ** 0.5
                w = jax.random.uniform(kws[i], (l.n_out, l.rows), jnp.result_type(float), -s, s)
                w = jnp.clip(w, -l.tile.w_max, l.tile.w_max)
            else:
                w = weights[i]
            states.append(l.tile.init(w, key=kcs[i]))
        return tuple(states)

    def weights(self, states: Sequence[InSituState]) -> list[Float[Array, "out rows"]]:
        """The weight matrices the chip holds, ``(n_out, rows)`` per layer."""
        return [l.tile.weights(s) for l, s in zip(self.layers, states)]

    # ------------------------------------------------------------------ passes
    def forward(self, states, x: Float[Array, " n_in"], *, key: PRNGKeyArray | None):
        """Forward pass of one example (flattened). Returns ``(a_L, cache)`` with ``cache =
        (inputs, zs, fprimes)`` per layer (inputs with the bias appended)."""
        keys = jax.random.split(key, len(self.layers)) if key is not None else [None] * len(self.layers)
        inputs, zs, fps = [], [], []
        a = x.reshape(-1)
        for l, s, k in zip(self.layers, states, keys):
            xi = l.augment(a)
            z = l.tile.forward(s, xi, key=k)
            a, fp = ACTIVATIONS[l.activation](z)
            inputs.append(xi)
            zs.append(z)
            fps.append(fp)
        return a, (inputs, zs, fps)

    def output_error(self, a_out, z_out, fp_out, y: Int[Array, ""]) -> Float[Array, " n_out"]:
        """``δ_L = ∂L/∂z_L`` for label ``y`` (module docstring) and the loss value."""
        n = z_out.shape[0]
        onehot = jax.nn.one_hot(y, n, dtype=z_out.dtype)
        if self.loss == "ce":
            logp = jax.nn.log_softmax(z_out)
            return jnp.exp(logp) - onehot, -jnp.sum(onehot * logp)
        t = 2.0 * onehot - 1.0
        return -(t - a_out) * fp_out, 0.5 * jnp.sum((t - a_out) ** 2)

    def backward(self, states, cache, delta_out, *, key: PRNGKeyArray | None) -> list[Float[Array, " n"]]:
        """``δ_l`` of every layer from ``δ_L`` (analog reads through the transposed arrays)."""
        _, _, fps = cache
        n = len(self.layers)
        keys = jax.random.split(key, n) if key is not None else [None] * n
        deltas = [None] * n
        deltas[-1] = delta_out
        for i in range(n - 1, 0, -1):
            l = self.layers[i]
            back = l.tile.backward(states[i], deltas[i], key=keys[i])
            deltas[i - 1] = back[: l.n_in] * fps[i - 1]
        return deltas

    def predict(self, states, x: Float[Array, "..."], *, key: PRNGKeyArray | None) -> Int[Array, ""]:
        """Class of one example: argmax of the last layer's output."""
        a, (_, zs, _) = self.forward(states, x, key=key)
        return jnp.argmax(zs[-1] if self.loss == "ce" else a)

    def step(self, states, x, y, rule: AbstractUpdateRule, *, key: PRNGKeyArray):
        """One in-situ SGD step on one example: forward, output error, backward, update of
        every layer. Returns ``(states, UpdateCost, loss)``."""
        kf, kb, ku = streams(key, "forward", "backward", "update")
        a, cache = self.forward(states, x, key=kf)
        inputs, zs, fps = cache
        d_out, loss = self.output_error(a, zs[-1], fps[-1], y)
        deltas = self.backward(states, cache, d_out, key=kb)
        kus = jax.random.split(ku, len(self.layers))
        new, cost = [], UpdateCost.zero(a.dtype)
        for l, s, xi, d, k in zip(self.layers, states, inputs, deltas, kus):
            s2, c = l.tile.update(s, xi, -d, rule, key=k)
            new.append(s2)
            cost = jax.tree.map(jnp.add, cost, c)
        return tuple(new), cost, loss


@eqx.filter_jit
def _init(net: InSituNetwork, key, weights, scale):
    return net._init_impl(key, weights, scale)


def _loss_and_updates(net, states, x, y, key):
    """Forward, output error and backward of one example: ``(inputs, −deltas, loss)``."""
    kf, kb = streams(key, "forward", "backward")
    a, cache = net.forward(states, x, key=kf)
    inputs, zs, fps = cache
    d_out, loss = net.output_error(a, zs[-1], fps[-1], y)
    deltas = net.backward(states, cache, d_out, key=kb)
    return inputs, [-d for d in deltas], loss


@eqx.filter_jit
def accuracy(net: InSituNetwork, states, x: Float[Array, "N ..."], y: Int[Array, " N"], *,
             key: PRNGKeyArray | None) -> Float[Array, ""]:
    """Fraction of ``x`` the chip classifies as ``y`` (each example its own read key)."""
    keys = jax.random.split(key, x.shape[0]) if key is not None else None
    if keys is None:
        pred = jax.vmap(lambda xi: net.predict(states, xi, key=None))(x)
    else:
        pred = jax.vmap(lambda xi, k: net.predict(states, xi, key=k))(x, keys)
    return jnp.mean(pred == y)


@eqx.filter_jit
def train_epoch(net: InSituNetwork, states, x: Float[Array, "N ..."], y: Int[Array, " N"],
                rule: AbstractUpdateRule, *, key: PRNGKeyArray, batch_size: int = 1, refresh_every: int = 0):
    """One epoch of in-situ training over ``(x, y)`` in a random order drawn from ``key``.

    ``batch_size = 1`` (default): every example is read forward and backward and updates
    the arrays before the next one (:meth:`InSituNetwork.step`; SGD with batch 1, exact pulse
    semantics). ``batch_size = B > 1``: the ``B`` examples of a batch are read on the same
    weights and their pulse trains applied together (:meth:`InSituTile.update_batch`: per
    device all potentiation pulses, then all depression pulses); the ``N mod B`` examples
    left over are skipped. ``refresh_every`` (> 0): refresh every ``"potentiate"``-mode tile
    after that many steps (:meth:`InSituTile.refresh`). Returns ``(states, UpdateCost, mean
    loss)``.

    Raises:
        ValueError: ``batch_size`` < 1 or larger than the data.
    """
    n = x.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"train_epoch: batch_size = {batch_size} must be in [1, {n}]")
    kperm, ksteps = streams(key, "order", "steps")
    nb = n // batch_size
    perm = jax.random.permutation(kperm, n)[: nb * batch_size].reshape(nb, batch_size)
    keys = jax.random.split(ksteps, nb)
    dt = jnp.result_type(float)
    refresh = refresh_every > 0 and any(l.tile.pair == "potentiate" for l in net.layers)

    def batch_step(states, idx, k):
        if batch_size == 1:
            return net.step(states, x[idx[0]], y[idx[0]], rule, key=k)
        kex, kup = streams(k, "examples", "update")
        ins, ds, losses = jax.vmap(lambda i, kk: _loss_and_updates(net, states, x[i], y[i], kk))(
            idx, jax.random.split(kex, batch_size))
        kus = jax.random.split(kup, len(net.layers))
        new, cost = [], UpdateCost.zero(losses.dtype)
        for l, s, xi, d, kk in zip(net.layers, states, ins, ds, kus):
            s2, c = l.tile.update_batch(s, xi, d, rule, key=kk)
            new.append(s2)
            cost = jax.tree.map(jnp.add, cost, c)
        return tuple(new), cost, jnp.sum(losses)

    def body(carry, inp):
        states, cost, loss_sum = carry
        i, idx, k = inp
        states, c, loss = batch_step(states, idx, k)
        cost = jax.tree.map(jnp.add, cost, c)
        if refresh:
            def do_refresh(args):
                st, cst = args
                kr = jax.random.split(stream(k, "refresh"), len(net.layers))
                out = []
                for l, s, kk in zip(net.layers, st, kr):
                    s2, c2 = l.tile.refresh(s, key=kk)
                    out.append(s2)
                    cst = jax.tree.map(jnp.add, cst, c2)
                return tuple(out), cst

            states, cost = jax.lax.cond((i + 1) % refresh_every == 0, do_refresh, lambda a: a, (states, cost))
        return (states, cost, loss_sum + loss), None

    init = (tuple(states), UpdateCost.zero(dt), jnp.zeros((), dt))
    (states, cost, loss_sum), _ = jax.lax.scan(body, init, (jnp.arange(nb), perm, keys))
    return states, cost, loss_sum / (nb * batch_size)


@eqx.filter_jit
def train_batch_manhattan(net: InSituNetwork, states, x: Float[Array, "N ..."], y: Int[Array, " N"],
                          rule: ManhattanRule, *, key: PRNGKeyArray):
    """One epoch of batch Manhattan training: forward and backward reads of every example
    (each with its own read keys), ``G_l = Σ_n x_l (−δ_l)ᵀ`` accumulated digitally, then one
    pulse per device of ``sign(G_l)`` (:meth:`ManhattanRule.from_gradient`). Returns
    ``(states, UpdateCost, mean loss)``."""
    kex, kupd = streams(key, "examples", "update")
    keys = jax.random.split(kex, x.shape[0])

    def per_example(xi, yi, k):
        inputs, ds, loss = _loss_and_updates(net, states, xi, yi, k)
        return [a[:, None] * d[None, :] for a, d in zip(inputs, ds)], loss

    grads, losses = jax.vmap(per_example)(x, y, keys)
    kus = jax.random.split(kupd, len(net.layers))
    new, cost = [], UpdateCost.zero(losses.dtype)
    for l, s, g, k in zip(net.layers, states, grads, kus):
        n, counts = rule.from_gradient(g.sum(axis=0))
        s2, c = l.tile.apply_pulses(s, n, counts, key=k)
        new.append(s2)
        cost = jax.tree.map(jnp.add, cost, c)
    return tuple(new), cost, jnp.mean(losses)

