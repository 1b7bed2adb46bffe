"""Checks on hardware parameters that keep them differentiable.

Card parameters (conductances, capacitances, noise coefficients, converter ranges, ...) are
pytree leaves: :func:`nds.sensitivity` and gradient-based co-design replace them by JAX
tracers. A check that calls ``float()`` or ``bool()`` on such a leaf would fail under
tracing, so every range check in nds goes through this module:

* :func:`require` checks a *concrete* value (a Python number or a concrete array) and raises
  ``ValueError`` naming the owner, the field, the value and what is allowed; on a traced
  value it does nothing (the value was checked where it was concrete, or it is an
  optimizer's iterate, whose range the caller keeps, e.g. with a projection).
* :func:`is_zero` / :func:`maybe_positive` answer "is this noise switched off?" for Python
  control flow: a traced value is treated as possibly non-zero (the noisy branch is taken,
  which is exact when the value turns out to be zero).
* :func:`require_count` checks the integer counts that set program structure (bits, levels),
  which are static fields and never traced.

Float32 limits. nds computes in float32 unless ``jax_enable_x64`` is set. A non-zero card
value must be a *normal* float32 (magnitude between ``FLOAT32_TINY = 1.18e-38`` and
``FLOAT32_MAX = 3.4e38``; a subnormal is flushed to zero on CPU and GPU and turns ratios into
NaN), and an integer code of a converter must be exactly representable (at most
``2**24``: float32 has a 24-bit significand), so converters and integer mappings accept at
most :data:`MAX_CODE_BITS` bits.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.tree_util as jtu
import numpy as np

__all__ = ["FLOAT32_TINY", "FLOAT32_MAX", "MAX_CODE_BITS", "is_traced", "concrete", "require",
           "require_count", "require_float32", "is_zero", "maybe_positive"]

#: smallest positive normal float32 (1.1754944e-38)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
#: largest finite float32 (3.4028235e38)
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: most bits a converter or integer mapping may have: float32 holds every integer up to 2**24
#: exactly, so the codes of a wider converter cannot be represented in the datapath.
MAX_CODE_BITS = 24


def is_traced(x: Any) -> bool:
    """Whether any leaf of ``x`` is a JAX tracer (inside ``jit``/``grad``/``vmap``)."""
    return any(isinstance(l, jax.core.Tracer) for l in jtu.tree_leaves(x))


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a float64 NumPy array, or ``None`` when it is traced (no value to check)."""
    if is_traced(x):
        return None
    return np.asarray(x, dtype=np.float64)


def _fmt(value: Any) -> str:
    v = np.asarray(value)
    if v.ndim == 0:
        return f"{v.item()!r}"
    return f"array of shape {v.shape} (min {v.min():g}, max {v.max():g})"


def require(ok: Callable[[np.ndarray], Any], owner: str, name: str, value: Any, allowed: str) -> None:
    """Raise ``ValueError("<owner>.<name> = <value>: <allowed>")`` when ``value`` is concrete
    and ``ok(value)`` (evaluated on a float64 array) is not true everywhere. No-op on tracers.

    Raises:
        ValueError: the concrete value fails ``ok`` (NaN fails every comparison).
    """
    v = concrete(value)
    if v is None:
        return
    with np.errstate(invalid="ignore"):
        good = bool(np.all(ok(v)))
    if not good:
        raise ValueError(f"{owner}.{name} = {_fmt(value)}: {allowed}")


def require_float32(owner: str, name: str, value: Any, unit: str = "") -> None:
    """A finite value whose non-zero entries are normal float32 numbers (see the module
    docstring). No-op on tracers.

    Raises:
        ValueError: NaN/inf, or a non-zero magnitude outside ``[FLOAT32_TINY, FLOAT32_MAX]``.
    """
    u = f" {unit}" if unit and unit != "1" else ""
    require(lambda v: np.isfinite(v) & ((v == 0) | ((np.abs(v) >= FLOAT32_TINY) & (np.abs(v) <= FLOAT32_MAX))),
            owner, name, value,
            f"must be finite and, if non-zero, of magnitude between {FLOAT32_TINY:.4g}{u} and {FLOAT32_MAX:.4g}{u} "
            "(a normal float32; smaller values are flushed to zero and give NaN ratios, larger ones overflow)")


def require_count(owner: str, name: str, value: Any, lo: int, hi: int | None = None, *, none_ok: bool = False,
                  why: str = "") -> None:
    """An integer count (bits, levels, sizes) in ``[lo, hi]`` (``None`` allowed when
    ``none_ok``). Booleans and non-integral numbers are rejected.

    Raises:
        ValueError: not an integer, or out of range; the message gives the range and ``why``.
    """
    if value is None and none_ok:
        return
    rng = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    allowed = rng + (" or None" if none_ok else "") + (f" ({why})" if why else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()):
            raise ValueError(f"{owner}.{name} = {value!r}: must be {allowed}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{owner}.{name} = {value!r}: must be {allowed}")


def is_zero(x: Any) -> bool:
    """True only when ``x`` is concrete and zero everywhere (a switched-off effect)."""
    v = concrete(x)
    return v is not None and bool(np.all(v == 0))


def maybe_positive(x: Any) -> bool:
    """True when ``x`` is traced or concretely > 0 somewhere (an effect that may be on)."""
    v = concrete(x)
    return v is None or bool(np.any(v > 0))
