"""Saving and loading: trained weights alone, whole models and programmed chips, safe writes.

Two kinds of file, both `safetensors <https://github.com/huggingface/safetensors>`_ files
(arrays bit for bit, with their dtypes) whose header metadata holds one JSON document under
the key ``"nds"``. Nothing is pickled: loading reads arrays and JSON, imports the modules
named in the description (nds, equinox, jax and those of custom layer classes) and sets
dataclass fields; it calls no constructor and runs no code from the file.

* **weights** (:func:`save_weights` / :func:`load_weights`): the network's trained arrays —
  every array leaf of the model except the hardware, i.e. except what sits under an analog
  layer's ``tile`` (cards, converters, wires) and ``state`` (a programmed chip). For the
  shipped networks that is each layer's ``weight`` and ``bias`` (and an analog layer's
  ``out_scale`` where batch norm was folded). A digital model's weights load into its
  analogized twin and back (same pytree paths). Loading keeps every hardware leaf of the
  target model bit for bit and puts every stored weight in bit for bit (cast to the target
  leaf's dtype when the two differ, e.g. a float64 file into a float32 session).
* **model** (:func:`save` / :func:`load`): a whole model or programmed chip: its structure
  (classes, static fields, the functions of ``eqx.nn.Lambda`` and pooling layers, by
  importable name), every card by content (the parameter values, with the card's provenance
  ``CardInfo``) and every array (weights, conductances, offsets, ...). ``load`` needs nothing
  but the file: reads of a loaded chip equal those of the saved one, bit for bit, for the
  same key.

The JSON document (``format_version`` 1)::

    {"format": "nds.model" | "nds.weights", "format_version": 1, "nds_version": "0.1.0",
     "jax_version": "...", "equinox_version": "...", "x64": true,
     "tree": NODE,                                       # nds.model only
     "params": [[path, layer, shape, dtype], ...]}       # nds.weights only

A NODE is JSON ``null``/``true``/``false``/number/string, a JSON list (a Python list), or an
object with one ``$`` key: ``{"$array": name}`` (the safetensors tensor ``name``, which is
the leaf's pytree path), ``{"$float": "inf" | "-inf" | "nan"}``, ``{"$tuple": [NODE, ...]}``,
``{"$dict": {str: NODE}}``, ``{"$function": "module:qualname"}``, ``{"$key": name, "impl":
impl}`` (a JAX PRNG key array, its ``key_data`` stored under ``name``), or
``{"$module": "module:qualname", "fields": {field: NODE}}`` (an Equinox module or another
dataclass; every dataclass field, static or not). A reader of version ``n`` reads every
version ``<= n``; a file of a newer version is refused with a message saying so.

Writes are atomic (:func:`atomic_write`): the bytes go to a uniquely named temporary file in
the target's folder, are flushed to disk and renamed over the target, so a reader sees the
old file or the new one, never a torn one, and concurrent writers never share a temporary
file.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import pathlib
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._atomic import atomic_path as atomic_path
from ._atomic import atomic_write as atomic_write

__all__ = ["FORMAT_VERSION", "atomic_write", "atomic_path", "save", "load", "save_weights", "load_weights"]

#: the version of the file format written by this nds; readers accept any version <= theirs
FORMAT_VERSION = 1
_META_KEY = "nds"


# ---------------------------------------------------------------------------- tree walking
def _is_analog_layer(x: Any) -> bool:
    from .nn._analogize import is_analog_layer

    return is_analog_layer(x)


_HARDWARE_FIELDS = ("tile", "state")


def _fields(obj: Any) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(obj):
        try:
            out.append((f.name, getattr(obj, f.name)))
        except AttributeError:  # an unset wrapper field of an equinox module
            continue
    return out


def _network_arrays(model: Any) -> list[tuple[str, str, Any, tuple]]:
    """``(path, layer, leaf, steps)`` of every array leaf of ``model`` that is not hardware
    (not under an analog layer's ``tile`` or ``state``), in pytree order. ``layer``
    describes the module holding the leaf (path, class and, for analog layers, its name);
    ``steps`` locates the leaf (see :func:`_get`)."""
    out: list[tuple[str, str, Any, tuple]] = []

    def label(path: str, obj: Any) -> str:
        name = getattr(obj, "name", None) if _is_analog_layer(obj) else None
        where = path or "<model>"
        return f"{where} ({type(obj).__name__}{f' {name!r}' if name else ''})"

    def attr(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    def walk(x: Any, path: str, owner: str, steps: tuple) -> None:
        if eqx.is_array(x):
            out.append((path, owner, x, steps))
        elif isinstance(x, eqx.Module):
            lab = label(path, x)
            skip = _HARDWARE_FIELDS if _is_analog_layer(x) else ()
            # the pytree's own order: dynamic fields in declaration order
            for f in dataclasses.fields(x):
                if f.metadata.get("static", False) or f.name in skip:
                    continue
                walk(getattr(x, f.name), attr(path, f.name), lab, steps + (("attr", f.name),))
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]", owner, steps + (("item", i),))
        elif isinstance(x, dict):
            for k in sorted(x):
                walk(x[k], f"{path}[{k!r}]", owner, steps + (("item", k),))

    walk(model, "", "<model>", ())
    return out


def _get(tree: Any, steps: tuple) -> Any:
    for kind, k in steps:
        tree = getattr(tree, k) if kind == "attr" else tree[k]
    return tree


# ---------------------------------------------------------------------------- weights
def _header(fmt: str, **extra: Any) -> dict:
    from . import __version__

    return {"format": fmt, "format_version": FORMAT_VERSION, "nds_version": __version__,
            "jax_version": jax.__version__, "equinox_version": getattr(eqx, "__version__", "?"),
            "x64": bool(jax.config.jax_enable_x64), **extra}


def _to_numpy(x: Any) -> np.ndarray:
    a = np.asarray(x)
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def save_weights(path: str | os.PathLike, model: Any) -> None:
    """Store the trained arrays of ``model`` (weights and biases; see the module docstring:
    every array that is not hardware) in a safetensors file at ``path`` (written atomically).

    Args:
        path: the file to write (conventionally ``*.safetensors``).
        model: an Equinox model, digital or analogized, programmed or not (the chip's state
            is hardware and is not stored).

    Raises:
        OSError: ``path`` cannot be written.
    """
    import safetensors.numpy

    params = _network_arrays(model)
    tensors = {p: _to_numpy(v) for p, _, v, _ in params}
    head = _header("nds.weights", params=[[p, lab, list(np.shape(v)), str(np.asarray(v).dtype)]
                                          for p, lab, v, _ in params])
    data = safetensors.numpy.save(tensors, metadata={_META_KEY: json.dumps(head)})
    atomic_write(path, data)


class _Tensors(dict):
    """The arrays of a file by name; a missing one is a malformed file (names it)."""

    def __init__(self, where: str, arrays: dict):
        super().__init__(arrays)
        self.where = where

    def get_tensor(self, name: str) -> np.ndarray:
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"{self.where}: the description names an array {name!r} that the file lacks") from None


def _read(path: str | os.PathLike, fmt: str) -> tuple[dict, _Tensors]:
    """The header and the arrays (read into memory; the file is closed) of an nds file."""
    import safetensors

    where = str(path)
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"{where}: no such file")
    try:
        with safetensors.safe_open(where, "numpy") as f:
            meta = f.metadata() or {}
            tensors = _Tensors(where, {k: f.get_tensor(k) for k in f.keys()})
    except Exception as e:  # SafetensorError (truncated, garbage), OSError
        raise ValueError(f"{where}: not an nds {fmt} file (safetensors could not read it: {e})") from None
    try:
        head = json.loads(meta[_META_KEY])
    except (KeyError, ValueError):
        raise ValueError(f"{where}: a safetensors file without nds metadata; not written by "
                         f"nds.save/nds.save_weights") from None
    if not isinstance(head, dict) or head.get("format") not in ("nds.model", "nds.weights"):
        raise ValueError(f"{where}: unknown format {head.get('format') if isinstance(head, dict) else head!r}")
    if head["format"] != fmt:
        other = {"nds.model": "nds.load", "nds.weights": "nds.load_weights"}[head["format"]]
        raise ValueError(f"{where}: holds format {head['format']!r}, not {fmt!r}; read it with {other}")
    v = head.get("format_version")
    if not isinstance(v, int) or v < 1:
        raise ValueError(f"{where}: format_version = {v!r} is not a positive integer")
    if v > FORMAT_VERSION:
        raise ValueError(f"{where}: written by nds {head.get('nds_version')} in format version {v}; this nds "
                         f"reads versions up to {FORMAT_VERSION}: upgrade nds")
    return head, tensors


def _same_shape(a, b) -> bool:
    """Equal shapes, or equal but for unit axes (a Conv2d bias ``(c, 1, 1)`` is an analog
    layer's ``(c,)``)."""
    a, b = tuple(a), tuple(b)
    return a == b or tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1)


def load_weights(path: str | os.PathLike, model: Any) -> Any:
    """``model`` with the weights stored at ``path`` (by :func:`save_weights`) put in.

    Every hardware leaf of ``model`` (tiles, cards, converters, wires) is kept bit for bit;
    every stored array is put in bit for bit (cast to the target leaf's dtype when they
    differ). The file's layer list must equal the model's: the same pytree paths, in order,
    with the same shapes.

    Args:
        path: a file written by :func:`save_weights`.
        model: the model to receive them (digital or analogized, not programmed).

    Returns:
        A new model (``model`` itself is not modified).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a weights file (the message names the file), a newer format version,
            an architecture mismatch (the message names the first differing layer, with the
            file's and the model's entries), or a programmed ``model`` (load the weights into
            the unprogrammed model, then program it: a chip's conductances were programmed
            from its old weights).
    """
    from .nn._analogize import analog_layers

    where = str(path)
    for l in analog_layers(model):
        if l.state is not None:
            raise ValueError(f"load_weights: layer {l.name!r} of the model is programmed (a chip); load the weights "
                             "into the unprogrammed model and call nds.program again")
    head, f = _read(path, "nds.weights")
    stored = head.get("params", [])
    mine = _network_arrays(model)
    for i in range(max(len(stored), len(mine))):
        s = stored[i] if i < len(stored) else None
        m = mine[i] if i < len(mine) else None
        if s is None or m is None or s[0] != m[0] or not _same_shape(s[2], np.shape(m[2])):
            fs = "nothing" if s is None else f"{s[0]} of shape {tuple(s[2])} in {s[1]}"
            ms = "nothing" if m is None else f"{m[0]} of shape {tuple(np.shape(m[2]))} in {m[1]}"
            layer = (m or s)[1]
            raise ValueError(f"{where}: the architecture differs from the model's at layer {layer}: "
                             f"the file has {fs}, the model has {ms} (entry {i} of {len(stored)} stored arrays)")
    new = []
    for (p, _, leaf, _) in mine:
        arr = f.get_tensor(p).reshape(np.shape(leaf))
        dt = leaf.dtype
        new.append(jnp.asarray(arr, dtype=dt) if isinstance(leaf, jax.Array) else np.asarray(arr, dtype=dt))
    if not mine:
        return model
    steps = [st for *_, st in mine]
    return eqx.tree_at(lambda m: [_get(m, st) for st in steps], model, new)


# ---------------------------------------------------------------------------- whole models
_FUNCTION_HOMES = ("jax.nn", "jax.numpy", "jax.lax", "jax.numpy.linalg", "jax.scipy.special", "jax.random",
                   "jax", "math", "operator", "numpy")


def _resolve(name: str) -> Any:
    mod, _, qual = name.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _function_name(fn: Any, where: str) -> str:
    """A public ``module:qualname`` under which ``fn`` is importable (the same object)."""
    own_mod = getattr(fn, "__module__", None)
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    candidates = []
    for mod in _FUNCTION_HOMES:
        try:
            m = importlib.import_module(mod)
        except ImportError:  # pragma: no cover - all ship with jax
            continue
        for attr in ([qual.rsplit(".", 1)[-1]] if qual else []):
            if getattr(m, attr, None) is fn:
                candidates.append(f"{mod}:{attr}")
    if own_mod and qual and "<" not in qual:
        candidates.append(f"{own_mod}:{qual}")
    for c in candidates:
        try:
            if _resolve(c) is fn:
                return c
        except (ImportError, AttributeError):
            continue
    raise TypeError(f"nds.save: {where} holds the function {fn!r}, which is not importable by name "
                    "(a lambda or a closure); use a module-level function (e.g. jax.nn.relu) so that the "
                    "model can be saved without pickle")


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(x: Any, path: str, tensors: dict[str, np.ndarray]) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"$float": repr(x)}
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        name = path or "<root>"
        tensors[name] = _to_numpy(jax.random.key_data(x))
        return {"$key": name, "impl": str(jax.random.key_impl(x))}
    if eqx.is_array(x) or isinstance(x, np.generic):
        name = path or "<root>"
        tensors[name] = _to_numpy(x)
        return {"$array": name, "numpy": not isinstance(x, jax.Array)}
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return {"$tuple": [_encode(v, f"{path}[{i}]", tensors) for i, v in enumerate(x)]}
    if isinstance(x, list):
        return [_encode(v, f"{path}[{i}]", tensors) for i, v in enumerate(x)]
    if isinstance(x, dict):
        if not all(isinstance(k, str) for k in x):
            raise TypeError(f"nds.save: {path or '<model>'} is a dict with non-string keys")
        return {"$dict": {k: _encode(v, f"{path}[{k!r}]", tensors) for k, v in x.items()}}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {"$module": _class_name(type(x)),
                "fields": {n: _encode(v, f"{path}.{n}" if path else n, tensors) for n, v in _fields(x)}}
    if callable(x):
        return {"$function": _function_name(x, path or "<model>")}
    raise TypeError(f"nds.save: {path or '<model>'} holds a {type(x).__name__} ({x!r}), which the nds model "
                    "format cannot store (arrays, numbers, strings, tuples, lists, dicts, dataclasses, Equinox "
                    "modules and importable functions)")


def _decode(node: Any, f: Any, where: str) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, f, where) for v in node]
    if not isinstance(node, dict) or len([k for k in node if k.startswith("$")]) != 1:
        raise ValueError(f"{where}: malformed node {str(node)[:80]!r} in the model description")
    if "$float" in node:
        return float(node["$float"])
    if "$array" in node:
        arr = f.get_tensor(node["$array"])
        return arr if node.get("numpy") else jnp.asarray(arr)
    if "$key" in node:
        return jax.random.wrap_key_data(jnp.asarray(f.get_tensor(node["$key"])), impl=node["impl"])
    if "$tuple" in node:
        return tuple(_decode(v, f, where) for v in node["$tuple"])
    if "$dict" in node:
        return {k: _decode(v, f, where) for k, v in node["$dict"].items()}
    if "$function" in node:
        try:
            fn = _resolve(node["$function"])
        except (ImportError, AttributeError) as e:
            raise ValueError(f"{where}: function {node['$function']!r} cannot be imported: {e}") from None
        if not callable(fn):
            raise ValueError(f"{where}: {node['$function']!r} is not a function")
        return fn
    if "$module" in node:
        try:
            cls = _resolve(node["$module"])
        except (ImportError, AttributeError) as e:
            raise ValueError(f"{where}: class {node['$module']!r} cannot be imported: {e}") from None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ValueError(f"{where}: {node['$module']!r} is not a dataclass or Equinox module")
        names = {fl.name for fl in dataclasses.fields(cls)}
        fields = node.get("fields", {})
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ValueError(f"{where}: class {node['$module']} has no field(s) {unknown} (written by another "
                             "version of that class)")
        obj = object.__new__(cls)
        for n, v in fields.items():
            object.__setattr__(obj, n, _decode(v, f, where))
        missing = sorted(n for n in names - set(fields) if not n.startswith("__"))
        if missing:
            raise ValueError(f"{where}: class {node['$module']} needs field(s) {missing} that the file lacks")
        return obj
    raise ValueError(f"{where}: unknown node {next(iter(node))!r} in the model description")


def save(path: str | os.PathLike, model: Any) -> None:
    """Store a whole model or a programmed chip — structure, hardware (cards by content) and
    every array — in one safetensors file at ``path`` (written atomically; format in the
    module docstring).

    Args:
        path: the file to write (conventionally ``*.nds.safetensors``).
        model: any pytree of Equinox modules, dataclasses, arrays, numbers, strings,
            tuples/lists/dicts and importable functions (``eqx.nn.Lambda(jax.nn.relu)``
            is fine; a lambda or closure is not).

    Raises:
        TypeError: something the format cannot store (the message names its path).
        OSError: ``path`` cannot be written.
    """
    import safetensors.numpy

    from .nn._analogize import analog_layers

    tensors: dict[str, np.ndarray] = {}
    tree = _encode(model, "", tensors)
    layers = analog_layers(model)
    kind = "chip" if layers and all(l.state is not None for l in layers) else "model"
    head = _header("nds.model", kind=kind, tree=tree)
    atomic_write(path, safetensors.numpy.save(tensors, metadata={_META_KEY: json.dumps(head)}))


def load(path: str | os.PathLike) -> Any:
    """The model or chip stored at ``path`` by :func:`save`.

    Arrays come back as JAX arrays of the stored dtype (a float64 file in a session without
    ``jax_enable_x64`` is converted to float32 by JAX, with its warning).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an nds model file (names the file: truncated, garbage, a weights
            file), a newer format version, or a class/function of the description that
            cannot be imported or whose fields changed.
    """
    head, f = _read(path, "nds.model")
    return _decode(head["tree"], f, str(path))
