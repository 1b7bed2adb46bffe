"""Reference networks as plain Equinox models (convert them with :func:`nds.analogize`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["lenet5", "mlp"]


def _flatten(x):
    return x.reshape(-1)


def lenet5(in_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10, *, key) -> eqx.nn.Sequential:
    """LeNet-5 (LeCun et al., Proc. IEEE 1998): conv 5×5×6 (padding 2) – ReLU – max-pool 2 –
    conv 5×5×16 – ReLU – max-pool 2 – FC 120 – ReLU – FC 84 – ReLU – FC ``n_classes``.

    On 28×28 MNIST: 61.7k weights and 416k MACs (the survey's 60k / 341k count the 32×32,
    unpadded original). Inputs smaller than 16×16 (sklearn's 8×8 digits) use padding 2 in
    both convolutions and 2×2 pooling only after the first.
    """
    c, h, w = in_shape
    k = jax.random.split(key, 5)
    small = min(h, w) < 16
    p2 = 2 if small else 0
    layers = [
        eqx.nn.Conv2d(c, 6, 5, padding=2, key=k[0]), eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2),
        eqx.nn.Conv2d(6, 16, 5, padding=p2, key=k[1]), eqx.nn.Lambda(jax.nn.relu),
    ]
    if not small:
        layers.append(eqx.nn.MaxPool2d(2, 2))
    layers.append(eqx.nn.Lambda(_flatten))
    feat = jax.eval_shape(eqx.nn.Sequential(layers), jax.ShapeDtypeStruct(in_shape, jnp.float32)).shape[0]
    layers += [
        eqx.nn.Linear(feat, 120, key=k[2]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(120, 84, key=k[3]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(84, n_classes, key=k[4]),
    ]
    return eqx.nn.Sequential(layers)


def mlp(sizes: tuple[int, ...], *, key) -> eqx.nn.Sequential:
    """Fully connected ReLU network with layer widths ``sizes`` (input first)."""
    keys = jax.random.split(key, len(sizes) - 1)
    layers: list = [eqx.nn.Lambda(_flatten)]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(eqx.nn.Linear(a, b, key=keys[i]))
        if i < len(sizes) - 2:
            layers.append(eqx.nn.Lambda(jax.nn.relu))
    return eqx.nn.Sequential(layers)
