"""Bring models and weights from PyTorch.

* :func:`from_torch` converts a ``torch.nn.Module`` built from standard layers into the
  equivalent Equinox model with its weights (float32 kept), ready for :func:`nds.analogize`.
* :func:`load_state_dict` loads a PyTorch ``state_dict`` (a dict, a ``.pt``/``.pth`` file, or
  a ``.safetensors`` file) into a matching nds model (e.g. a zoo model of the same shape),
  by parameter name.

Support matrix of :func:`from_torch` (one example per call, no batch axis):

================================  ===============================================
PyTorch                           nds / Equinox
================================  ===============================================
``Linear``                        ``eqx.nn.Linear``
``Conv2d`` (zero padding)         ``eqx.nn.Conv2d`` (bias (C, 1, 1))
``BatchNorm1d/2d``                :class:`nds.nn.FrozenBatchNorm` (running statistics:
                                  the module's inference mode)
``ReLU``, ``GELU``                :class:`nds.nn.DigitalOp` (``relu``, ``gelu``; tanh form
                                  when ``approximate="tanh"``)
``MaxPool2d``, ``AvgPool2d``      ``DigitalOp`` around ``eqx.nn.MaxPool2d``/``AvgPool2d``
``AdaptiveAvgPool2d(1)``          ``DigitalOp`` global average, output (C, 1, 1)
``Flatten`` (start_dim=1)         ``eqx.nn.Lambda`` (flatten one example)
``LayerNorm``                     ``DigitalOp`` (over the trailing dims)
``Dropout``, ``Identity``         ``eqx.nn.Identity``
``MultiheadAttention``            :class:`nds.nn.MultiheadAttention` (self-attention on
                                  (T, E); ``add_bias_kv``/``add_zero_attn`` unsupported)
``TransformerEncoderLayer``       :class:`nds.nn.TransformerEncoderLayer`
``TransformerEncoder``            ``eqx.nn.Sequential`` of the layers (and the norm)
``Sequential``                    ``eqx.nn.Sequential``
torchvision ``BasicBlock``,       :class:`nds.nn.BasicBlock`, :class:`nds.nn.Bottleneck`
``Bottleneck``, ``ResNet``        :class:`nds.nn.ResNet` (recognized by their attributes)
================================  ===============================================

Anything else raises :class:`UnsupportedModuleError` naming the module's path in the model
and its type. PyTorch is imported lazily: nds works without it; these functions raise
``ImportError`` with the install command when it is missing.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ..tiles._attention import DigitalAttention
from ._attention import MultiheadAttention
from ._digital import DigitalOp, FrozenBatchNorm
from ._zoo import BasicBlock, Bottleneck, ResNet, TransformerEncoderLayer

__all__ = ["from_torch", "load_state_dict", "UnsupportedModuleError"]



def _key():
    """Placeholder initialisation key (every weight is overwritten). Made on use, not at
    import: importing nds must not start the XLA backend (``jax.distributed.initialize``
    has to run first in a multi-process job)."""
    return jax.random.key(0)


class UnsupportedModuleError(ValueError):
    """A PyTorch module :func:`from_torch` cannot convert (names its path and type)."""


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("nds.nn.from_torch / load_state_dict need PyTorch: pip install 'nds[torch]' "
                          "(torch==2.13.0, CPU build)") from None
    return torch


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _set(mod, **arrays):
    names = list(arrays)
    return eqx.tree_at(lambda m: [getattr(m, n) for n in names], mod, [jnp.asarray(arrays[n]) for n in names],
                       is_leaf=lambda x: x is None)


def _linear(m):
    lin = eqx.nn.Linear(m.in_features, m.out_features, use_bias=m.bias is not None, key=_key(), dtype=jnp.float32)
    kw = {"weight": _np(m.weight)}
    if m.bias is not None:
        kw["bias"] = _np(m.bias)
    return _set(lin, **kw)


def _pad2(p):
    return tuple((int(a), int(a)) for a in ((p, p) if isinstance(p, int) else p))


def _conv2d(m, path):
    if m.padding_mode != "zeros":
        raise UnsupportedModuleError(f"from_torch: {path} (torch.nn.Conv2d): padding_mode={m.padding_mode!r}; "
                                     "only 'zeros' is supported")
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = ((0, 0), (0, 0))
        else:  # "same", stride 1
            tot = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            pad = tuple((t // 2, t - t // 2) for t in tot)
    else:
        pad = _pad2(pad)
    conv = eqx.nn.Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), stride=tuple(m.stride), padding=pad,
                         dilation=tuple(m.dilation), groups=m.groups, use_bias=m.bias is not None, key=_key(),
                         dtype=jnp.float32)
    kw = {"weight": _np(m.weight)}
    if m.bias is not None:
        kw["bias"] = _np(m.bias).reshape(-1, 1, 1)
    return _set(conv, **kw)


def _batchnorm(m, path):
    if not m.track_running_stats or m.running_mean is None:
        raise UnsupportedModuleError(f"from_torch: {path} ({type(m).__name__}) has no running statistics "
                                     "(track_running_stats=False); inference needs them")
    c = m.num_features
    w = _np(m.weight) if m.weight is not None else np.ones(c, np.float32)
    b = _np(m.bias) if m.bias is not None else np.zeros(c, np.float32)
    return FrozenBatchNorm(jnp.asarray(w), jnp.asarray(b), jnp.asarray(_np(m.running_mean)),
                           jnp.asarray(_np(m.running_var)), eps=float(m.eps))


class TrailingLayerNorm(eqx.Module):
    """``eqx.nn.LayerNorm`` over the trailing ``len(ln.shape)`` dims of its input, any
    leading dims (PyTorch's ``LayerNorm`` semantics)."""

    ln: eqx.nn.LayerNorm

    def __call__(self, x, *, key=None):
        n = len(self.ln.shape)
        lead = x.shape[: x.ndim - n]
        y = jax.vmap(self.ln)(x.reshape((-1,) + x.shape[x.ndim - n:]))
        return y.reshape(lead + y.shape[1:])


def _layernorm(m, name):
    shape = tuple(m.normalized_shape)
    affine = m.elementwise_affine
    use_bias = affine and m.bias is not None
    ln = eqx.nn.LayerNorm(shape, eps=float(m.eps), use_weight=affine, use_bias=use_bias, dtype=jnp.float32)
    kw = {}
    if affine:
        kw["weight"] = _np(m.weight)
    if use_bias:
        kw["bias"] = _np(m.bias)
    if kw:
        ln = _set(ln, **kw)
    return DigitalOp(TrailingLayerNorm(ln), "layernorm", name=name)


def _flatten_one(x):
    return x.reshape(-1)


def _global_avg_keep(x):
    return jnp.mean(x, axis=(1, 2), keepdims=True)


def _global_avg(x):
    return jnp.mean(x, axis=(1, 2))


def _mha(m, path):
    if m.bias_k is not None or m.add_zero_attn:
        raise UnsupportedModuleError(f"from_torch: {path} (torch.nn.MultiheadAttention): add_bias_kv / add_zero_attn "
                                     "are not supported")
    e = m.embed_dim

    def lin(w, b, n_in):
        lyr = eqx.nn.Linear(n_in, w.shape[0], use_bias=b is not None, key=_key(), dtype=jnp.float32)
        return _set(lyr, **({"weight": w, "bias": b} if b is not None else {"weight": w}))

    b = _np(m.in_proj_bias) if m.in_proj_bias is not None else None
    if m.in_proj_weight is not None:
        w = _np(m.in_proj_weight)
        ws = (w[:e], w[e:2 * e], w[2 * e:])
        ins = (e, e, e)
    else:
        ws = (_np(m.q_proj_weight), _np(m.k_proj_weight), _np(m.v_proj_weight))
        ins = (e, m.kdim, m.vdim)
    bs = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
    q, k, v = (lin(wi, bi, ni) for wi, bi, ni in zip(ws, bs, ins))
    o = _linear(m.out_proj)
    return MultiheadAttention(q, k, v, o, DigitalAttention(), m.num_heads, False, name=path)


def _act(fn_or_mod, path):
    torch = _torch()
    F = torch.nn.functional
    if fn_or_mod is F.relu or isinstance(fn_or_mod, torch.nn.ReLU):
        return DigitalOp(jax.nn.relu, "relu", name=path)
    if fn_or_mod is F.gelu:
        return DigitalOp(functools.partial(jax.nn.gelu, approximate=False), "gelu", name=path)
    if isinstance(fn_or_mod, torch.nn.GELU):
        return DigitalOp(functools.partial(jax.nn.gelu, approximate=fn_or_mod.approximate == "tanh"), "gelu", name=path)
    raise UnsupportedModuleError(f"from_torch: {path}: activation {fn_or_mod!r} is not supported (ReLU, GELU)")


def _encoder_layer(m, path):
    if getattr(m, "activation_relu_or_gelu", 0) == 1:
        act = DigitalOp(jax.nn.relu, "relu", name=f"{path}.activation")
    elif getattr(m, "activation_relu_or_gelu", 0) == 2:
        act = DigitalOp(functools.partial(jax.nn.gelu, approximate=False), "gelu", name=f"{path}.activation")
    else:
        act = _act(m.activation, f"{path}.activation")
    return TransformerEncoderLayer(
        _mha(m.self_attn, f"{path}.self_attn"), _linear(m.linear1), _linear(m.linear2),
        _layernorm(m.norm1, f"{path}.norm1"), _layernorm(m.norm2, f"{path}.norm2"), act,
        DigitalOp(jnp.add, "add", name=f"{path}.add1"), DigitalOp(jnp.add, "add", name=f"{path}.add2"),
        norm_first=bool(m.norm_first))


def _has(m, *names):
    return all(hasattr(m, n) for n in names)


def _downsample(m, path):
    if m.downsample is None:
        return None
    ds = _convert(m.downsample, f"{path}.downsample")
    if not isinstance(ds, eqx.nn.Sequential) or len(ds.layers) != 2:
        raise UnsupportedModuleError(f"from_torch: {path}.downsample: expected Sequential(conv, batch norm)")
    return ds


def _block(m, path):
    relu = lambda i: DigitalOp(jax.nn.relu, "relu", name=f"{path}.relu{i}")
    add = DigitalOp(jnp.add, "add", name=f"{path}.add")
    c = lambda n: _convert(getattr(m, n), f"{path}.{n}")
    if _has(m, "conv3", "bn3"):
        return Bottleneck(c("conv1"), c("bn1"), c("conv2"), c("bn2"), c("conv3"), c("bn3"), _downsample(m, path),
                          relu(1), relu(2), relu(3), add)
    return BasicBlock(c("conv1"), c("bn1"), c("conv2"), c("bn2"), _downsample(m, path), relu(1), relu(2), add)


def _resnet(m, path):
    torch = _torch()
    stages = []
    for i in range(1, 5):
        st = getattr(m, f"layer{i}", None)
        if st is None:
            stages.append(())
        else:
            stages.append(tuple(_block(b, f"{path}.layer{i}.{n}") for n, b in st.named_children()))
    pool = m.avgpool
    if not (isinstance(pool, torch.nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))):
        raise UnsupportedModuleError(f"from_torch: {path}.avgpool ({type(pool).__name__}): only AdaptiveAvgPool2d(1)")
    mp = getattr(m, "maxpool", None)
    maxpool = eqx.nn.Identity() if mp is None or isinstance(mp, torch.nn.Identity) else _convert(mp, f"{path}.maxpool")
    return ResNet(_convert(m.conv1, f"{path}.conv1"), _convert(m.bn1, f"{path}.bn1"),
                  DigitalOp(jax.nn.relu, "relu", name=f"{path}.relu"), maxpool, *stages,
                  DigitalOp(_global_avg, "avgpool", name=f"{path}.avgpool"), _linear(m.fc))


def _convert(m, path):
    torch = _torch()
    nn = torch.nn
    if isinstance(m, nn.Sequential):
        return eqx.nn.Sequential([_convert(c, f"{path}.{n}") for n, c in m.named_children()])
    if isinstance(m, nn.Linear):
        return _linear(m)
    if isinstance(m, nn.Conv2d):
        return _conv2d(m, path)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _batchnorm(m, path)
    if isinstance(m, (nn.ReLU, nn.GELU)):
        return _act(m, path)
    if isinstance(m, nn.MaxPool2d):
        if m.dilation not in (1, (1, 1)) or m.ceil_mode:
            raise UnsupportedModuleError(f"from_torch: {path} (MaxPool2d): dilation and ceil_mode are not supported")
        return DigitalOp(eqx.nn.MaxPool2d(m.kernel_size, m.stride, padding=m.padding), "maxpool", name=path)
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or (not m.count_include_pad and m.padding not in (0, (0, 0))) or m.divisor_override:
            raise UnsupportedModuleError(f"from_torch: {path} (AvgPool2d): ceil_mode, count_include_pad=False with "
                                         "padding and divisor_override are not supported")
        return DigitalOp(eqx.nn.AvgPool2d(m.kernel_size, m.stride, padding=m.padding), "avgpool", name=path)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if m.output_size not in (1, (1, 1)):
            raise UnsupportedModuleError(f"from_torch: {path} (AdaptiveAvgPool2d): only output size 1")
        return DigitalOp(_global_avg_keep, "avgpool", name=path)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise UnsupportedModuleError(f"from_torch: {path} (Flatten): only start_dim=1, end_dim=-1")
        return eqx.nn.Lambda(_flatten_one)
    if isinstance(m, nn.LayerNorm):
        return _layernorm(m, path)
    if isinstance(m, (nn.Dropout, nn.Identity)):
        return eqx.nn.Identity()
    if isinstance(m, nn.MultiheadAttention):
        return _mha(m, path)
    if isinstance(m, nn.TransformerEncoderLayer):
        return _encoder_layer(m, path)
    if isinstance(m, nn.TransformerEncoder):
        layers = [_convert(lyr, f"{path}.layers.{i}") for i, lyr in enumerate(m.layers)]
        if m.norm is not None:
            layers.append(_convert(m.norm, f"{path}.norm"))
        return eqx.nn.Sequential(layers)
    if _has(m, "conv1", "bn1", "layer1", "fc", "avgpool"):
        return _resnet(m, path)
    if _has(m, "conv1", "bn1", "conv2", "bn2", "downsample"):
        return _block(m, path)
    raise UnsupportedModuleError(
        f"from_torch: {path} has type {type(m).__module__}.{type(m).__qualname__}, which is not supported. "
        "Supported: Linear, Conv2d, BatchNorm1d/2d, ReLU, GELU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), "
        "Flatten, LayerNorm, Dropout, Identity, MultiheadAttention, TransformerEncoderLayer, TransformerEncoder, "
        "Sequential, torchvision-style BasicBlock/Bottleneck/ResNet")


def from_torch(module: Any, *, name: str = "model") -> Any:
    """The Equinox equivalent of a PyTorch module, with its weights (see the module docstring
    for what is supported). Batch norm uses its running statistics (inference mode) and
    dropout is dropped. The result takes one example (no batch axis): ``jax.vmap`` it.

    Args:
        module: a ``torch.nn.Module``.
        name: the root's name in error messages and report names.

    Raises:
        ImportError: PyTorch is not installed.
        UnsupportedModuleError: a module of an unsupported type or configuration; the message
            names its path (``model.layer1.0.conv1``) and type.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    return _convert(module, name)


# ----------------------------------------------------------------------------- state dicts
def _read_source(source) -> dict[str, np.ndarray]:
    if isinstance(source, (str, pathlib.Path)):
        p = pathlib.Path(source)
        if not p.exists():
            raise FileNotFoundError(f"load_state_dict: no such file {p}")
        if p.suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(p)))
        torch = _torch()
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
        if not isinstance(sd, dict):
            raise ValueError(f"load_state_dict: {p} holds a {type(sd).__name__}, not a state_dict")
        source = sd
    out = {}
    for k, v in source.items():
        out[k] = _np(v) if hasattr(v, "detach") else np.asarray(v)
    return out


def _named(model) -> list[tuple[tuple, str, Any]]:
    """(jax key path, torch name, transform(full torch array) -> leaf array) for every array
    leaf the torch naming covers."""
    out: list[tuple[tuple, str, Any]] = []
    GA, SK = jtu.GetAttrKey, jtu.SequenceKey

    def walk(obj, path: tuple, prefix: str):
        if isinstance(obj, (FrozenBatchNorm, eqx.nn.Linear, eqx.nn.Conv2d, eqx.nn.LayerNorm, eqx.nn.Embedding)):
            fields = {FrozenBatchNorm: ("weight", "bias", "running_mean", "running_var")}.get(type(obj),
                                                                                               ("weight", "bias"))
            for f in fields:
                if getattr(obj, f, None) is not None:
                    out.append((path + (GA(f),), prefix + f, None))
            return
        if isinstance(obj, eqx.nn.BatchNorm):
            raise ValueError(f"load_state_dict: {prefix or 'model'} is an eqx.nn.BatchNorm with state; freeze it with "
                             "nds.nn.freeze_batchnorm(model, state) (or load into a frozen model)")
        if isinstance(obj, MultiheadAttention):
            d = obj.query_proj.weight.shape[0]
            for i, f in enumerate(("query_proj", "key_proj", "value_proj")):
                sl = slice(i * d, (i + 1) * d)
                out.append((path + (GA(f), GA("weight")), prefix + "in_proj_weight", (lambda s: lambda a: a[s])(sl)))
                if getattr(obj, f).bias is not None:
                    out.append((path + (GA(f), GA("bias")), prefix + "in_proj_bias", (lambda s: lambda a: a[s])(sl)))
            walk(obj.output_proj, path + (GA("output_proj"),), prefix + "out_proj.")
            return
        if isinstance(obj, eqx.nn.Sequential):
            for i, lyr in enumerate(obj.layers):
                walk(lyr, path + (GA("layers"), SK(i)), f"{prefix}{i}.")
            return
        if isinstance(obj, DigitalOp):
            walk(obj.fn, path + (GA("fn"),), prefix)
            return
        if isinstance(obj, TrailingLayerNorm):
            walk(obj.ln, path + (GA("ln"),), prefix)
            return
        if isinstance(obj, (list, tuple)):
            for i, x in enumerate(obj):
                walk(x, path + (SK(i),), f"{prefix}{i}.")
            return
        if isinstance(obj, eqx.Module):
            for f in obj.__dataclass_fields__:
                fld = obj.__dataclass_fields__[f]
                if fld.metadata.get("static", False):
                    continue
                v = getattr(obj, f, None)
                if eqx.is_inexact_array(v):
                    out.append((path + (GA(f),), prefix + f, None))
                elif v is not None:
                    walk(v, path + (GA(f),), f"{prefix}{f}.")

    walk(model, (), "")
    return out


def load_state_dict(model: Any, source: Any, *, strict: bool = True) -> Any:
    """``model`` with its weights replaced by those of a PyTorch ``state_dict``.

    Names follow PyTorch's module paths: attribute names joined by ``.``, indices of
    sequences (``layer1.0.conv1.weight``), ``eqx.nn.Sequential`` items by index,
    :class:`nds.nn.DigitalOp` wrappers transparent, batch norm ``weight``/``bias``/
    ``running_mean``/``running_var``, attention ``in_proj_weight``/``in_proj_bias`` (split into
    the query, key and value projections) and ``out_proj``. A convolution bias (C,) loads into
    Equinox's (C, 1, 1). ``num_batches_tracked`` is ignored. Loading weights never changes
    hardware: load into the digital model, then :func:`nds.analogize`.

    Args:
        model: an nds/Equinox model (batch norm frozen).
        source: a dict of tensors or arrays, or a path to a ``.safetensors`` or ``.pt``/``.pth``
            file (``torch.load(weights_only=True)``).
        strict: unexpected or missing names are errors (default); False ignores them.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing or unexpected names (listed), a shape that does not match (names
            the parameter and both shapes), or an unfrozen ``eqx.nn.BatchNorm``.
        ImportError: a ``.pt`` file without PyTorch installed.
    """
    sd = _read_source(source)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    named = _named(model)
    wanted = {n for _, n, _ in named}
    missing = sorted(wanted - set(sd))
    unexpected = sorted(set(sd) - wanted)
    if strict and (missing or unexpected):
        raise ValueError(f"load_state_dict: missing {missing[:20]}{' ...' if len(missing) > 20 else ''}; "
                         f"unexpected {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
    leaves = dict(jtu.tree_flatten_with_path(model)[0])
    new: dict[tuple, Any] = {}
    for path, name, tf in named:
        if name not in sd:
            continue
        a = sd[name] if tf is None else tf(sd[name])
        old = leaves[path]
        if a.shape != old.shape:
            if a.size != old.size:
                raise ValueError(f"load_state_dict: {name}: shape {a.shape} in the state dict, {old.shape} in the model")
            a = a.reshape(old.shape)
        new[path] = jnp.asarray(a, dtype=old.dtype)
    return jtu.tree_map_with_path(lambda p, x: new.get(p, x), model)
