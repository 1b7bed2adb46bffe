"""The networks a study can run: build, train digitally (or load a PyTorch checkpoint), the
metric, and the energy split of a cost report.

========  ===================  =======================================================
network   dataset              metric (per chip)
========  ===================  =======================================================
lenet5    mnist, digits        accuracy
mlp       mnist, digits        accuracy
vit       mnist                accuracy (:func:`nds.nn.vit`)
resnet    mnist, digits        accuracy (:func:`nds.nn.resnet`, batch norm folded)
gpt       pydoc_topics         bits per character (:func:`nds.nn.gpt`), lower is better
========  ===================  =======================================================

``[network] config`` passes keyword arguments to the zoo builder (e.g. ``d``, ``depth``,
``heads``, ``widths``); ``[network] checkpoint`` names a PyTorch ``state_dict`` (``.pt``) or
``.safetensors`` file that replaces digital training (:func:`nds.nn.load_state_dict`);
``[network] digital_bits`` states the bit width of the digital parts (``"fp32"``, the default, or 2–24).
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from .nn._analogize import analog_layers
from .train import accuracy, bits_per_char, fit

__all__ = ["ZOO", "TEXT_NETWORKS", "build_network", "train_network", "metric_name", "metric_fn", "input_dtype",
           "energy_split", "checkpoint_digest"]

ZOO = ("vit", "resnet", "gpt")
TEXT_NETWORKS = ("gpt",)


def metric_name(network: str) -> str:
    """``"bits_per_char"`` for language models, else ``"accuracy"``."""
    return "bits_per_char" if network in TEXT_NETWORKS else "accuracy"


def metric_fn(network: str):
    """The per-chip metric ``(model, x, y, *, key) -> scalar``."""
    return bits_per_char if network in TEXT_NETWORKS else accuracy


def input_dtype(network: str):
    """Dtype of one example (int32 token ids for language models, else None = float)."""
    return jnp.int32 if network in TEXT_NETWORKS else None


def build_network(network: str, ds: Any, config: dict, key) -> tuple[Any, Any]:
    """``(model, state)`` of a zoo network for dataset ``ds`` (``state`` None except for the
    ResNet's batch norm).

    Raises:
        ValueError: an unknown network, or a config key the builder does not take.
    """
    from .nn import _zoo

    try:
        if network == "vit":
            return _zoo.vit(ds.input_shape, 10, key=key, **config), None
        if network == "resnet":
            cfg = dict(config)
            if "widths" in cfg:
                cfg["widths"] = tuple(cfg["widths"])
            return _zoo.resnet(ds.input_shape, 10, key=key, **cfg)
        if network == "gpt":
            return _zoo.gpt(len(ds.vocab), context=ds.input_shape[0], key=key, **config), None
    except TypeError as e:
        raise ValueError(f"network {network!r}: bad [network] config {config}: {e}") from None
    raise ValueError(f"network {network!r}: not a zoo network {ZOO}")


def digital_like(network: str, model: Any, state: Any) -> Any:
    """The structure of the trained digital model (batch norm frozen for the ResNet)."""
    if state is not None:
        from .nn._digital import freeze_batchnorm

        return freeze_batchnorm(model, state)
    return model


def optimizer(tr: dict):
    """Adam with a linear warm-up over 5% of ``tr["steps"]`` to ``tr["lr"]``, then cosine decay."""
    import optax

    steps = tr["steps"]
    return optax.adam(optax.warmup_cosine_decay_schedule(0.0, tr["lr"], max(1, steps // 20), steps))


def every_array(model: Any) -> Any:
    """Filter marking every inexact array of ``model`` trainable (embeddings, LayerNorm, ...)."""
    return jtu.tree_map(eqx.is_inexact_array, model)


def train_network(network: str, model: Any, state: Any, x, y, tr: dict, *, key, progress=None) -> Any:
    """Digital training of a zoo network (:func:`optimizer`; every inexact array trains); the
    ResNet trains its batch norm on batch statistics and is returned frozen."""
    opt = optimizer(tr)
    steps = tr["steps"]
    if state is not None:
        from .nn._digital import freeze_batchnorm
        from .nn._zoo import fit_batchnorm

        m, st, _ = fit_batchnorm(model, state, x, y, key=key, steps=steps, batch_size=tr["batch_size"],
                                 optimizer=opt, progress=progress)
        return freeze_batchnorm(m, st)
    spec = every_array(model)
    m, _ = fit(model, x, y, key=key, steps=steps, batch_size=tr["batch_size"], optimizer=opt, filter_spec=spec,
               progress=progress)
    return m


def checkpoint_digest(path: str) -> str:
    """SHA-256 (16 hex digits) of a checkpoint file, for resuming.

    Raises:
        FileNotFoundError: no such file.
    """
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()[:16]


def energy_split(model: Any, report: Any) -> dict[str, float]:
    """Energy per inference (J) of a cost report split into ``"mvm"`` (layers on tiles),
    ``"attention"`` (``Q Kᵀ`` and ``A V`` on attention tiles, with their softmax) and
    ``"digital"`` (LayerNorm, activations, residual adds, pooling)."""
    from .nn._attention import MultiheadAttention

    analog = {l.name for l in analog_layers(model)}
    is_m = lambda x: isinstance(x, MultiheadAttention)
    attn = {m.name for m in jtu.tree_leaves(model, is_leaf=is_m) if is_m(m)}
    out = {"mvm": 0.0, "attention": 0.0, "digital": 0.0}
    for name, _, c in report.layers:
        k = "mvm" if name in analog else ("attention" if name in attn else "digital")
        out[k] += float(c.energy_total_j)
    return out
