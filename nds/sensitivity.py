"""Sensitivity of a network's accuracy to each hardware parameter, by automatic differentiation.

``nds.sensitivity(model, (x, y), params=["cell.g_max", "adc.y_range"], key=k, num_chips=8)``
answers "which card parameter costs my network the most accuracy?" with one backward pass
per chip. The quantity differentiated is a *surrogate* of accuracy:

    L(θ) = (1/N) Σ_c  CE( chip_c(θ)(x), y ),      chip_c(θ) = program(model(θ), key_c)

the softmax cross-entropy on the data, averaged over ``N`` manufactured chips (each chip its
own program-time draw, optionally aged to ``t`` seconds, each read its own read noise). The
random draws are fixed by ``key`` (common random numbers), so ``L`` is a deterministic
function of the card parameters θ and its gradient is exact wherever the model is
differentiable: every noise source enters through a reparameterisation (``σ · z``), drift as
``((t + t0)/t0)^(−ν)``, IR drop through the exact solve. Rounding and clipping (converters,
conductance levels) pass gradients straight through (:mod:`nds._ste`); a converter's range gets
the learned-step-size gradient (:func:`nds._ste.quantize_lsq`). For parameters that reach the
loss only through a quantizer the gradient is therefore that estimator's, not the derivative
of ``L`` (which is piecewise constant there); :func:`sensitivity` does not hide this, see
``docs/sensitivity.md``.

Parameters are named by their attribute path inside a tile (``"cell.g_max"``,
``"adc.y_range"``, ``"out_noise"``, ``"array.wires.r_row"``, ``"column.a_vt"``,
``"array.c_u"``, ``"sensor.full_well"``, ``"snr_db"``), applied to every analog layer whose
tile has it, or to one layer with ``"<layer name>:<path>"``. A parameter shared by several
layers is one card value: its gradient is the sum over the layers (the derivative with
respect to a common change of all of them).

Results, per parameter: the value(s), the gradient ``dL/dθ`` in the parameter's own SI unit
(per S, per V, per F, ...), the change of ``L`` for a +1 % change of the parameter
(``0.01 · Σ_layers θ_i ∂L/∂θ_i``, dimensionless: comparable across parameters), and the
standard error of that change over chips (the chips are independent draws, so a gradient
whose magnitude is below about two standard errors is not resolved by ``num_chips``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from ._cards import AbstractCardModule
from ._keys import streams
from ._program import drift as _drift
from ._program import program as _program
from .nn._analogize import analog_layers

__all__ = ["SensitivityResult", "sensitivity", "hardware_parameters", "surrogate_loss"]


@dataclasses.dataclass(frozen=True)
class ParameterSensitivity:
    """Sensitivity of the surrogate to one named parameter (SI units; see the module doc).

    Attributes:
        name: the name as given (``"cell.g_max"`` or ``"conv1:cell.g_max"``).
        layers: names of the layers that hold it.
        value: its value (a float if every layer holds the same value, else a list).
        grad: ``dL/dθ`` per unit of the parameter (sum over layers).
        per_percent: change of ``L`` for a +1 % change of the parameter in every layer.
        per_percent_se: standard error of ``per_percent`` over chips (0 with one chip).
    """

    name: str
    layers: tuple[str, ...]
    value: float | list[float]
    grad: float
    per_percent: float
    per_percent_se: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return dataclasses.asdict(self) | {"layers": list(self.layers)}


@dataclasses.dataclass(frozen=True)
class SensitivityResult:
    """What :func:`sensitivity` returns.

    Attributes:
        params: one :class:`ParameterSensitivity` per requested name, in request order.
        loss: the surrogate ``L`` (mean cross-entropy over chips and examples), nats.
        loss_se: its standard error over chips.
        accuracy: mean accuracy of the same chips on the same data (argmax of the logits).
        num_chips, n_examples: the sample sizes.
        t_seconds: the age of the chips (None: right after programming).
    """

    params: tuple[ParameterSensitivity, ...]
    loss: float
    loss_se: float
    accuracy: float
    num_chips: int
    n_examples: int
    t_seconds: float | None

    def __getitem__(self, name: str) -> ParameterSensitivity:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no parameter {name!r}; have {[p.name for p in self.params]}")

    def ranked(self) -> list[ParameterSensitivity]:
        """Parameters by decreasing ``|per_percent|`` (the most harmful first)."""
        return sorted(self.params, key=lambda p: -abs(p.per_percent))

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready rows, one per parameter (ranked), each with the surrogate's context."""
        return [p.as_dict() | {"loss": self.loss, "accuracy": self.accuracy, "num_chips": self.num_chips}
                for p in self.ranked()]


# ----------------------------------------------------------------------------- parameters
def _tile_of(layer):
    return layer.tile


def _resolve(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(part)
        obj = getattr(obj, part)
    return obj


def _is_float_leaf(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, (float, int)):
        return isinstance(v, float)
    return isinstance(v, (jax.Array, np.ndarray)) and jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating)


def _locate(model: Any, name: str) -> list[tuple[int, str, str]]:
    """``[(layer index, layer name, path)]`` of every layer holding parameter ``name``.

    Raises:
        ValueError: no analog layer holds it, it is not a float leaf (a static field, an
            integer count, an unset option), or the layer name is unknown.
    """
    layers = analog_layers(model)
    if ":" in name:
        lname, path = name.split(":", 1)
        cands = [(i, l) for i, l in enumerate(layers) if l.name == lname]
        if not cands:
            raise ValueError(f"sensitivity: parameter {name!r}: no analog layer named {lname!r}; "
                             f"layers: {[l.name for l in layers]}")
    else:
        path, cands = name, list(enumerate(layers))
    found, static = [], []
    for i, layer in cands:
        try:
            v = _resolve(_tile_of(layer), path)
        except AttributeError:
            continue
        if not _is_float_leaf(v) or np.ndim(v) != 0:
            static.append(layer.name)
            continue
        if _is_static_field(_tile_of(layer), path):
            static.append(layer.name)
            continue
        found.append((i, layer.name, path))
    if not found:
        why = (f"it is not a differentiable scalar leaf in layer(s) {static} (a static field, an integer count, "
               "an array or an unset option)") if static else "no analog layer's tile has it"
        raise ValueError(f"sensitivity: parameter {name!r}: {why}; differentiable parameters of this model: "
                         f"{hardware_parameters(model)}")
    return found


def _is_static_field(root: Any, path: str) -> bool:
    parts = path.split(".")
    obj = root
    for part in parts[:-1]:
        obj = getattr(obj, part)
    for f in dataclasses.fields(obj):
        if f.name == parts[-1]:
            return bool(f.metadata.get("static", False))
    return True


def hardware_parameters(model: Any) -> list[str]:
    """Names (tile-relative paths) of every differentiable hardware parameter of ``model``'s
    analog layers: the float fields of the tiles and of the modules inside them (cards,
    converters, wires), excluding weights, biases and programmed state. Sorted."""
    names: set[str] = set()

    def walk(obj: Any, prefix: str, depth: int):
        if depth > 6 or not isinstance(obj, eqx.Module):
            return
        for f in dataclasses.fields(obj):
            if f.metadata.get("static", False) or f.name == "card":
                continue
            v = getattr(obj, f.name, None)
            p = f"{prefix}{f.name}"
            if _is_float_leaf(v) and np.ndim(v) == 0 and (
                    not isinstance(obj, AbstractCardModule) or f.name in obj.card_units or not obj.card_units):
                names.add(p)
            elif isinstance(v, eqx.Module):
                walk(v, p + ".", depth + 1)

    for layer in analog_layers(model):
        walk(_tile_of(layer), "", 0)
    return sorted(names)


# ----------------------------------------------------------------------------- surrogate
def _with_scales(model: Any, located: Sequence[Sequence[tuple[int, str, str]]], scales: Array,
                 shifts: Array | None = None) -> Any:
    """``model`` with every located parameter ``θ_i`` replaced by ``θ_i · s + δ``, ``s`` and
    ``δ`` the scale and shift of the name that holds it (1 and 0 leave it unchanged; a leaf
    named twice, e.g. ``"cell.g_max"`` and ``"linear0:cell.g_max"``, gets both)."""
    layers = analog_layers(model)
    shifts = jnp.zeros_like(scales) if shifts is None else shifts
    value: dict[tuple[int, str], Any] = {}
    for k, occ in enumerate(located):
        for i, _, path in occ:
            v = value.get((i, path), jnp.asarray(_resolve(_tile_of(layers[i]), path), scales.dtype))
            value[(i, path)] = v * scales[k] + shifts[k]
    wheres = list(value)

    def where(m):
        ls = analog_layers(m)
        return [_resolve(_tile_of(ls[i]), path) for i, path in wheres]

    return eqx.tree_at(where, model, [value[w] for w in wheres])


def surrogate_loss(model: Any, x: Array, y: Array, *, key: PRNGKeyArray, t: float | None = None
                   ) -> tuple[Array, Array]:
    """Cross-entropy and accuracy of ONE chip of ``model`` on ``(x, y)``: the chip is
    programmed from ``key`` (stream ``"program"``), aged to ``t`` s when given (stream
    ``"drift"``), and read with stream ``"read"`` (one key per example). Returns
    ``(mean cross-entropy (nats), accuracy)``, both scalars. ``x``: (n, ...), ``y``: (n,) ints."""
    from .train import cross_entropy, predict

    kp, kd, kr = streams(key, "program", "drift", "read")
    chip = _program(model, key=kp)
    if t is not None:
        chip = _drift(chip, t, key=kd)
    logits = predict(chip, x, key=kr)
    return cross_entropy(logits, y), jnp.mean(jnp.argmax(logits, -1) == y)


def sensitivity(model: Any, data: tuple[Array, Array], *, params: Sequence[str] | None = None,
                key: PRNGKeyArray, num_chips: int = 8, t: float | None = None) -> SensitivityResult:
    """Gradient of the chip-averaged cross-entropy w.r.t. named hardware parameters.

    Args:
        model: an analogized, unprogrammed model (:func:`nds.analogize`).
        data: ``(x, y)``: inputs ``(n, ...)`` (one example per row, as the model takes
            them) and integer labels ``(n,)``.
        params: parameter names (module docstring); ``None``: every differentiable hardware
            parameter (:func:`hardware_parameters`).
        key: randomness of the chips (split into ``num_chips`` chip keys).
        num_chips: chips averaged in the surrogate (>= 1).
        t: seconds after programming (drift, accumulated read noise) or None.

    Returns:
        :class:`SensitivityResult`.

    Raises:
        ValueError: ``num_chips`` < 1, mismatched ``x``/``y``, an unknown or non-differentiable
            parameter name (the message lists the model's differentiable parameters), a
            negative ``t``.
    """
    x, y = data
    x, y = jnp.asarray(x), jnp.asarray(y)
    if isinstance(num_chips, bool) or not isinstance(num_chips, int) or num_chips < 1:
        raise ValueError(f"sensitivity: num_chips = {num_chips!r}, must be an integer >= 1")
    if x.shape[0] != y.shape[0] or y.ndim != 1:
        raise ValueError(f"sensitivity: data x of shape {x.shape} and y of shape {y.shape}: need (n, ...) and (n,)")
    if t is not None and not (math.isfinite(float(t)) and float(t) >= 0):
        raise ValueError(f"sensitivity: t = {t!r} s, must be finite and >= 0 (or None)")
    names = list(hardware_parameters(model) if params is None else params)
    if not names:
        raise ValueError("sensitivity: no hardware parameters to differentiate (no analog layers?)")
    located = [_locate(model, n) for n in names]
    layers = analog_layers(model)
    values = [[float(np.asarray(_resolve(_tile_of(layers[i]), p))) for i, _, p in occ] for occ in located]
    dtype = jnp.result_type(float)

    located_t = tuple(tuple(occ) for occ in located)
    ones = jnp.ones((len(names),), dtype)
    ce, acc, gs, gd = _per_chip(model, located_t, ones, x, y, jax.random.split(key, num_chips), t, jnp.zeros_like(ones))
    ce, acc = np.asarray(ce, np.float64), np.asarray(acc, np.float64)
    gs, gd = np.asarray(gs, np.float64), np.asarray(gd, np.float64)
    se = lambda a: float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
    out = []
    for k, name in enumerate(names):
        vals = values[k]
        same = all(v == vals[0] for v in vals)
        out.append(ParameterSensitivity(
            name=name, layers=tuple(l for _, l, _ in located[k]), value=vals[0] if same else vals,
            grad=float(gd[:, k].mean()), per_percent=0.01 * float(gs[:, k].mean()), per_percent_se=0.01 * se(gs[:, k])))
    return SensitivityResult(params=tuple(out), loss=float(ce.mean()), loss_se=se(ce), accuracy=float(acc.mean()),
                             num_chips=num_chips, n_examples=int(x.shape[0]), t_seconds=t)


@eqx.filter_jit
def _per_chip(model, located, scales, x, y, keys, t, shifts=None):
    """Per chip: (cross-entropy, accuracy, dL/d scales, dL/d shifts), stacked over ``keys``.
    ``dL/ds_k = Σ_i θ_i ∂L/∂θ_i`` and ``dL/dδ_k = Σ_i ∂L/∂θ_i`` over the layers holding
    name ``k`` (one backward pass gives both)."""
    shifts = jnp.zeros_like(scales) if shifts is None else shifts

    def one(k):
        def f(sd):
            return surrogate_loss(_with_scales(model, located, sd[0], sd[1]), x, y, key=k, t=t)

        (ce, acc), (gs, gd) = jax.value_and_grad(f, has_aux=True)((scales, shifts))
        return ce, acc, gs, gd

    return jax.lax.map(one, keys)
