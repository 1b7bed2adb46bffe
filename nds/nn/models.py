"""Reference networks as plain Equinox models (convert them with :func:`nds.analogize`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["lenet5", "mlp", "alexnet", "vgg16"]


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
    # default float dtype (float64 under jax_enable_x64, matching the layers' weights)
    feat = jax.eval_shape(eqx.nn.Sequential(layers), jax.ShapeDtypeStruct(in_shape, jnp.result_type(float))).shape[0]
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


def alexnet(n_classes: int = 1000, *, key) -> eqx.nn.Sequential:
    """AlexNet (Krizhevsky et al., NIPS 2012) as in the survey's Table IV: 5 CONV + 3 FC,
    input (3, 227, 227), 61M weights, 724M MACs (grouped convolutions of the original are
    written ungrouped here, as the survey's MAC count of 724M assumes groups in CONV2/4/5:
    this model counts 1.08G MACs; use :mod:`nds.dataflow` shapes for the grouped counts).
    Build it abstractly for cost studies: ``eqx.filter_eval_shape(alexnet, key=k)``."""
    k = jax.random.split(key, 8)
    R = eqx.nn.Lambda(jax.nn.relu)
    return eqx.nn.Sequential([
        eqx.nn.Conv2d(3, 96, 11, stride=4, key=k[0]), R, eqx.nn.MaxPool2d(3, 2),
        eqx.nn.Conv2d(96, 256, 5, padding=2, key=k[1]), R, eqx.nn.MaxPool2d(3, 2),
        eqx.nn.Conv2d(256, 384, 3, padding=1, key=k[2]), R,
        eqx.nn.Conv2d(384, 384, 3, padding=1, key=k[3]), R,
        eqx.nn.Conv2d(384, 256, 3, padding=1, key=k[4]), R, eqx.nn.MaxPool2d(3, 2),
        eqx.nn.Lambda(_flatten),
        eqx.nn.Linear(9216, 4096, key=k[5]), R, eqx.nn.Linear(4096, 4096, key=k[6]), R,
        eqx.nn.Linear(4096, n_classes, key=k[7]),
    ])


def vgg16(n_classes: int = 1000, *, key) -> eqx.nn.Sequential:
    """VGG-16 (Simonyan & Zisserman, ICLR 2015): 13 CONV (3×3) + 3 FC, input (3, 224, 224),
    138M weights, 15.5G MACs (survey Table IV). Build it abstractly for cost studies."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    keys = iter(jax.random.split(key, 16))
    R = eqx.nn.Lambda(jax.nn.relu)
    layers: list = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(eqx.nn.MaxPool2d(2, 2))
        else:
            layers += [eqx.nn.Conv2d(c, v, 3, padding=1, key=next(keys)), R]
            c = v
    layers += [eqx.nn.Lambda(_flatten), eqx.nn.Linear(25088, 4096, key=next(keys)), R,
               eqx.nn.Linear(4096, 4096, key=next(keys)), R, eqx.nn.Linear(4096, n_classes, key=next(keys))]
    return eqx.nn.Sequential(layers)
