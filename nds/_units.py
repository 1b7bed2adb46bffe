"""Unit strings of device cards, converted to SI once where a card is read.

A unit string is a product/quotient of prefixed base units, e.g. ``"uS"``, ``"kOhm"``,
``"um2"``, ``"pJ/bit"``, ``"GB/s"``, ``"fF/um2"``. ``"1"`` (or ``""``) is dimensionless.
Each unit converts to a canonical SI unit string of the same form (``"uS" -> "S"``,
``"um2" -> "m2"``, ``"GB/s" -> "B/s"``); a card parameter whose canonical unit differs from
the one the class declares is a wrong unit.
"""

from __future__ import annotations

import re

__all__ = ["to_si", "canonical"]

_PREFIX_EXP = {
    "a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "µ": -6, "m": -3,
    "c": -2, "k": 3, "M": 6, "G": 9, "T": 12,
}
_PREFIX = {k: 10.0**e for k, e in _PREFIX_EXP.items()}
# base units (SI or counting units); "Ohm" before "O" etc.  Order matters for matching.
_BASE = ["Ohm", "Hz", "bit", "op", "mac", "S", "V", "A", "F", "s", "J", "W", "m", "K", "B"]
_ALIASES = {"ohm": "Ohm", "Ω": "Ohm", "b": "bit", "sec": "s", "h": "h", "min": "min",
            "day": "day", "year": "year"}
# non-SI time units that convert to seconds
_TIME = {"min": 60.0, "h": 3600.0, "day": 86400.0, "year": 365.25 * 86400.0}

_FACTOR_RE = re.compile(r"^(?P<body>[^\d\-]+)(?P<pow>-?\d+)?$")


def _parse_factor(tok: str) -> tuple[float, str, int]:
    """'um2' -> (1e-12 ** (1/1)... ) returns (scale, base, power)."""
    m = _FACTOR_RE.match(tok)
    if not m:
        raise ValueError(f"cannot parse unit factor {tok!r}")
    body, p = m.group("body"), int(m.group("pow") or 1)
    body = _ALIASES.get(body, body)
    if body in _TIME:
        return _TIME[body] ** p, "s", p
    if body in _BASE:
        return 1.0, body, p
    if body[0] in _PREFIX and body[1:] in _BASE:
        return _PREFIX[body[0]] ** p, body[1:], p
    rest = _ALIASES.get(body[1:], body[1:])
    if body[0] in _PREFIX and rest in _BASE:
        return _PREFIX[body[0]] ** p, rest, p
    raise ValueError(f"unknown unit {tok!r}")


def to_si(value: float, unit: str) -> tuple[float, str]:
    """Convert ``value`` in ``unit`` to SI.

    Returns ``(value_si, canonical_unit)``, e.g. ``to_si(25.0, "uS") == (2.5e-5, "S")``.

    Raises:
        ValueError: the unit string cannot be parsed.
    """
    unit = unit.strip()
    if unit in ("", "1", "-"):
        return float(value), "1"
    num, _, den = unit.partition("/")
    scale = 1.0  # product of factors; exponents of ten tracked separately for exactness
    parts_num, parts_den = [], []
    for tok in num.split("*"):
        s, b, p = _parse_factor(tok.strip())
        scale *= s
        parts_num.append(b + (str(p) if p != 1 else ""))
    if den:
        for tok in den.split("*"):
            s, b, p = _parse_factor(tok.strip())
            scale /= s
            parts_den.append(b + (str(p) if p != 1 else ""))
    canon = "*".join(parts_num) + ("/" + "*".join(parts_den) if parts_den else "")
    # divide by the reciprocal for small scales: 25 / 1e6 is the double nearest 2.5e-5
    if scale < 1.0:
        return float(value) / round(1.0 / scale, 6), canon
    return float(value) * scale, canon


def canonical(unit: str) -> str:
    """Canonical SI form of a unit string (``"kOhm" -> "Ohm"``)."""
    return to_si(1.0, unit)[1]
