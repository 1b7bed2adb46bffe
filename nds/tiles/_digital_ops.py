"""Energy of the digital parts of a network that are not matrix products: softmax, LayerNorm,
GELU/ReLU, residual adds, pooling.

They stay digital on every design; the cost report states their bit width. Each function of
one element is counted as a number of additions (compares count as additions) and
multiplications, priced with the 45 nm figures of Horowitz (ISSCC 2014; card
``tech_45nm_horowitz``): floating point (``bits=None``, fp32) ``fadd32``/``fmult32``, fixed
point at ``b`` bits ``add8·b/8`` and ``mult8·(b/8)²`` (survey §VII-A scaling). The operation
counts per element are assumptions of this model (a polynomial ``exp`` after range reduction,
a tanh-form GELU), listed in :data:`OP_COUNTS`. Latency: operations at the ``digital_45nm``
card's ``mac_rate``.
"""

from __future__ import annotations

import math

from .._cards import load_card
from .._cost_types import Cost

__all__ = ["OP_COUNTS", "digital_op_cost", "op_energy"]

#: (additions, multiplications) per element of each digital function (assumed counts):
#: ``exp``: range reduction and a degree-6 polynomial; ``softmax``: max-subtract, exp, sum
#: and normalize, per element; ``layernorm``: mean, variance, normalize, affine; ``gelu``:
#: tanh form (cube, polynomial, a tanh as an exp and a divide); ``relu``: one compare;
#: ``add``: one addition (residual); ``maxpool``/``avgpool``: per input element of a window.
OP_COUNTS: dict[str, tuple[float, float]] = {
    "exp": (8.0, 8.0),
    "softmax": (11.0, 9.0),
    "layernorm": (4.0, 3.0),
    "gelu": (10.0, 12.0),
    "relu": (1.0, 0.0),
    "add": (1.0, 0.0),
    "maxpool": (1.0, 0.0),
    "avgpool": (1.0, 0.0),
}

_TECH = None
_MACS = None


def _cards():
    global _TECH, _MACS
    if _TECH is None:
        from ..dataflow._mapper import TechEnergies
        from ._digital import DigitalMACCosts

        _TECH = load_card("tech_45nm_horowitz", TechEnergies)
        _MACS = load_card("digital_45nm", DigitalMACCosts)
    return _TECH, _MACS


def op_energy(n_add: float, n_mult: float, bits: int | None) -> float:
    """Energy (J) of ``n_add`` additions and ``n_mult`` multiplications at ``bits`` (None: fp32).

    Raises:
        ValueError: ``bits`` < 2.
    """
    tech, _ = _cards()
    if bits is None:
        return n_add * float(tech.fadd32) + n_mult * float(tech.fmult32)
    if bits < 2:
        raise ValueError(f"op_energy: bits = {bits}, must be >= 2 or None (fp32)")
    return n_add * float(tech.add8) * bits / 8.0 + n_mult * float(tech.mult8) * (bits / 8.0) ** 2


def digital_op_cost(kind: str, n_elements: float, bits: int | None = None) -> Cost:
    """Cost per inference of ``kind`` (a key of :data:`OP_COUNTS`) applied to ``n_elements``
    elements at ``bits`` (None: fp32): energy in category ``"compute"``, latency at the
    digital datapath's rate, counts ``"<kind>_elements"`` and ``"digital_ops"``.

    Raises:
        ValueError: an unknown ``kind`` (the message lists the known ones).
    """
    if kind not in OP_COUNTS:
        raise ValueError(f"digital_op_cost: kind {kind!r} unknown; known: {sorted(OP_COUNTS)}")
    _, macs = _cards()
    a, m = OP_COUNTS[kind]
    n = float(n_elements)
    tech, _ = _cards()
    return Cost(
        counts={f"{kind}_elements": n, "digital_ops": n * (a + m)},
        energy_j={"compute": op_energy(n * a, n * m, bits)},
        latency_s=n * max(a, m, 1.0) / float(macs.mac_rate),
        bits_activation=bits, hardware="digital", measured=False,
        sources=tuple(s for s in (tech.card.source if tech.card else "",) if s),
    )


def elements(shape) -> int:
    """Number of elements of an array of ``shape``."""
    return int(math.prod(shape))
