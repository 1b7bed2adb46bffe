"""Bit slicing: integer weights spread over several cells, inputs fed bit-serially.

Weights (ISAAC, Shafiee et al., ISCA 2016; PRIME, Chi et al., ISCA 2016). A real weight
matrix is scaled by ``s = max|w|`` and rounded to signed integers
``w_int = round(w / s · Q_w)``, ``Q_w = 2^(B−1) − 1`` for ``B = weight_bits``. Signs:

* ``"offset"`` (ISAAC's biased encoding): ``w_u = w_int + 2^(B−1)`` in ``[1, 2^B − 1]`` on
  one array; the bias ``2^(B−1) Σ_i x_i`` is subtracted digitally after shift-and-add.
  ``S = ceil(B / b)`` slices.
* ``"differential"`` (PRIME's positive/negative arrays): ``|w_int|`` on a positive or a
  negative array (``B − 1`` magnitude bits, ``S = ceil((B − 1)/b)`` slices); each column
  pair is subtracted in the analog domain before the ADC (one signed conversion).

Each unsigned value ``u`` is cut into ``b``-bit digits ``d_k = floor(u / 2^(b k)) mod 2^b``,
``u = Σ_k 2^(b k) d_k`` (slice ``k`` has weight ``2^(b k)``); digit ``d`` is stored as the
conductance ``g_min + d/(2^b − 1)·(g_max − g_min)``.

Inputs. ``x`` is scaled per example by its abs-max and rounded to ``I = input_bits``-bit
integers (two's complement when signed, ``Q_x = 2^(I−1) − 1``; unsigned ``Q_x = 2^I − 1``)
and fed ``a = dac_bits`` bits per cycle: ``J = ceil(I / a)`` cycles of unsigned digits with
weight ``2^(a j)``. Signed inputs: with ``a = 1`` the last cycle (the sign bit) has weight
``−2^(I−1)`` (two's complement, no extra cycle); with ``a > 1`` an extra 1-bit cycle carries
the sign bit with weight ``−2^I``.

ADC resolution. A column of ``R`` rows sums digit products ``x_d · w_d`` with
``x_d ≤ 2^a − 1`` and ``w_d ≤ 2^b − 1``: at most ``R (2^a − 1)(2^b − 1)``. An ADC with an
LSB of one digit product reproduces every partial sum exactly iff it has
``N = ceil(log2(R (2^a − 1)(2^b − 1) + 1))`` bits (:func:`adc_bits_exact`; one more for a
differential, signed conversion). The rule of thumb ``log2 R + a + b − [a = 1 or b = 1]``
(:func:`adc_bits_rule`, REFERENCES.md) equals it for every power-of-two ``R`` (checked
exhaustively in ``tests/test_bitslice.py`` for ``R ≤ 2^12``, ``a, b ≤ 8``) and overestimates
by up to one bit otherwise. ISAAC (R = 128, a = 1, b = 2) needs 9 bits; its 8-bit ADC relies
on a data-encoding trick (storing a column's weights inverted when that keeps its sums
below 2^8), not modelled here: an 8-bit ADC with LSB 1 clips sums above 255.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import MAX_CODE_BITS, require_count
from .._ste import clip_ste, replace_ste, round_ste, absmax

__all__ = ["BitSliceMapping", "InputSlicing", "adc_bits_exact", "adc_bits_rule", "slice_digits",
           "combine_digits"]

_ENCODINGS = ("offset", "differential")


def adc_bits_exact(rows: int, input_bits_per_cycle: int, bits_per_cell: int, *, signed: bool = False) -> int:
    """Fewest ADC bits (LSB = one digit product) that convert every column partial sum of a
    ``rows``-row array exactly: ``ceil(log2(rows (2^a − 1)(2^b − 1) + 1))``, plus one sign bit
    when ``signed`` (differential columns).

    Raises:
        ValueError: a non-positive argument.
    """
    for name, v in (("rows", rows), ("input_bits_per_cycle", input_bits_per_cycle), ("bits_per_cell", bits_per_cell)):
        if int(v) < 1:
            raise ValueError(f"adc_bits_exact: {name} = {v!r} must be >= 1")
    top = rows * (2**input_bits_per_cycle - 1) * (2**bits_per_cell - 1)
    return int(top).bit_length() + int(signed)  # bit_length(n) = ceil(log2(n + 1))


def adc_bits_rule(rows: int, input_bits_per_cycle: int, bits_per_cell: int) -> int:
    """The rule of thumb ``ceil(log2 rows) + a + b − 1`` when ``a = 1`` or ``b = 1``, else
    ``ceil(log2 rows) + a + b`` (exact for power-of-two ``rows``; see the module docstring).

    Raises:
        ValueError: ``rows``, ``input_bits_per_cycle`` or ``bits_per_cell`` < 1.
    """
    a, b = int(input_bits_per_cycle), int(bits_per_cell)
    if min(rows, a, b) < 1:
        raise ValueError(f"adc_bits_rule: rows={rows}, a={a}, b={b} must all be >= 1")
    return math.ceil(math.log2(rows)) + a + b - (1 if (a == 1 or b == 1) else 0)


def slice_digits(u: Float[Array, "..."], bits: int, n: int) -> Float[Array, "n ..."]:
    """Unsigned integer-valued ``u`` (float) → ``n`` digits of ``bits`` bits, least
    significant first, stacked on a new leading axis. Exact for ``u < 2^53``.

    Gradient: slice ``k`` passes ``1/(n 2^(bits k))`` of ``u``'s cotangent, so that
    :func:`combine_digits` of the digits has derivative 1 w.r.t. ``u`` (straight-through,
    via :func:`nds._ste.replace_ste`)."""
    base = 2.0**bits
    u0 = jax.lax.stop_gradient(u)
    out = []
    for k in range(n):
        w = base**k
        d = jnp.floor(u0 / w) - base * jnp.floor(u0 / (w * base))
        out.append(replace_ste(u / (n * w), d))
    return jnp.stack(out)


def combine_digits(d: Float[Array, "n ..."], bits: int) -> Float[Array, "..."]:
    """Shift-and-add: ``Σ_k 2^(bits k) d_k`` over the leading axis."""
    w = (2.0**bits) ** jnp.arange(d.shape[0], dtype=d.dtype)
    return jnp.tensordot(w, d, axes=1)


class BitSliceMapping(eqx.Module):
    """Signed weights → per-slice digit planes (see the module docstring).

    Attributes:
        weight_bits: ``B`` (sign included), >= 2; ``None`` = no quantization (the ideal
            limit: one "slice" holding the real value).
        bits_per_cell: ``b``, >= 1.
        encoding: ``"offset"`` or ``"differential"``.
    """

    weight_bits: int | None = eqx.field(static=True, default=8)
    bits_per_cell: int = eqx.field(static=True, default=2)
    encoding: str = eqx.field(static=True, default="offset")

    def __check_init__(self):
        require_count("BitSliceMapping", "weight_bits", self.weight_bits, 2, MAX_CODE_BITS, none_ok=True,
                      why=f"sign included, None = unquantized; integer weights are held in floats, exact in "
                          f"float32 up to 2**{MAX_CODE_BITS}")
        require_count("BitSliceMapping", "bits_per_cell", self.bits_per_cell, 1, 16,
                      why="2**bits_per_cell conductance levels per cell")
        if self.encoding not in _ENCODINGS:
            raise ValueError(f"BitSliceMapping.encoding = {self.encoding!r}; allowed: {_ENCODINGS}")

    @property
    def n_planes(self) -> int:
        """Arrays per slice: 1 (offset) or 2 (differential)."""
        return 1 if self.encoding == "offset" else 2

    @property
    def n_slices(self) -> int:
        """Slices ``S`` per weight: ``ceil(B / b)`` (offset), ``ceil((B − 1) / b)``
        (differential), 1 when unquantized."""
        if self.weight_bits is None:
            return 1
        mag = self.weight_bits if self.encoding == "offset" else self.weight_bits - 1
        return -(-mag // self.bits_per_cell)

    @property
    def q(self) -> float:
        """Integer full scale ``Q_w = 2^(B−1) − 1`` (1 when unquantized)."""
        return 1.0 if self.weight_bits is None else float(2 ** (self.weight_bits - 1) - 1)

    @property
    def offset(self) -> float:
        """Bias added to ``w_int`` by the offset encoding (0 for differential)."""
        if self.encoding == "differential":
            return 0.0
        return 1.0 if self.weight_bits is None else float(2 ** (self.weight_bits - 1))

    @property
    def digit_max(self) -> float:
        """Largest digit value (``2^b − 1``; for unquantized weights the value range)."""
        if self.weight_bits is None:
            return 2.0 if self.encoding == "offset" else 1.0
        return float(2**self.bits_per_cell - 1)

    def slice_weights(self) -> np.ndarray:
        """(S,) slice weights ``2^(b k)``."""
        return (2.0**self.bits_per_cell) ** np.arange(self.n_slices)

    def integers(self, w: Float[Array, "out in"]) -> tuple[Float[Array, "out in"], Float[Array, ""]]:
        """``(w_int, s)``: integer weights (float dtype) and the scale, ``w ≈ w_int · s / Q_w``."""
        s = absmax(w)
        s = jnp.where(s > 0, s, jnp.ones_like(s))
        wn = w / s
        if self.weight_bits is None:
            return wn, s
        return clip_ste(round_ste(wn * self.q), -self.q, self.q), s

    def digits(self, w_int: Float[Array, "out in"]) -> Float[Array, "E S in out"]:
        """Digit planes ``(E, S, in, out)`` (rows = inputs), E = :attr:`n_planes`."""
        wt = w_int.T
        if self.encoding == "offset":
            planes = [wt + self.offset]
        else:
            planes = [jnp.maximum(wt, 0.0), jnp.maximum(-wt, 0.0)]
        if self.weight_bits is None:
            return jnp.stack(planes)[:, None]
        return jnp.stack([slice_digits(p, self.bits_per_cell, self.n_slices) for p in planes])


class InputSlicing(eqx.Module):
    """Inputs → bit-serial cycles of ``dac_bits``-bit digits (see the module docstring).

    Attributes:
        input_bits: ``I`` (sign included when ``signed``); ``None`` = one analog cycle with
            the real value (the ideal limit).
        dac_bits: ``a``, input bits per cycle (1 = ISAAC's 1-bit DAC).
        signed: two's-complement inputs (else negative inputs clip to 0).
    """

    input_bits: int | None = eqx.field(static=True, default=8)
    dac_bits: int = eqx.field(static=True, default=1)
    signed: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        require_count("InputSlicing", "input_bits", self.input_bits, 2 if self.signed else 1, MAX_CODE_BITS,
                      none_ok=True, why=f"None = one analog cycle; integer inputs are exact in float32 up to "
                                        f"2**{MAX_CODE_BITS}")
        require_count("InputSlicing", "dac_bits", self.dac_bits, 1, 16, why="input bits per cycle")

    @property
    def q(self) -> float:
        """Integer full scale ``Q_x``: ``2^(I−1) − 1`` (signed), ``2^I − 1`` (unsigned), 1 when
        unquantized."""
        if self.input_bits is None:
            return 1.0
        return float(2 ** (self.input_bits - 1) - 1) if self.signed else float(2**self.input_bits - 1)

    @property
    def n_unsigned(self) -> int:
        """Cycles of unsigned ``a``-bit digits, ``ceil(I / a)`` (1 when unquantized); the
        extra sign cycle of signed inputs with ``a > 1`` is not included."""
        return 1 if self.input_bits is None else -(-self.input_bits // self.dac_bits)

    def cycle_weights(self) -> np.ndarray:
        """(J,) weight of each cycle in the shift-and-add (may be negative: the sign cycle)."""
        if self.input_bits is None:
            return np.ones(1)
        cw = (2.0**self.dac_bits) ** np.arange(self.n_unsigned)
        if not self.signed:
            return cw
        if self.dac_bits == 1:
            cw[-1] = -cw[-1]
            return cw
        return np.concatenate([cw, [-(2.0**self.input_bits)]])

    @property
    def n_cycles(self) -> int:
        """Cycles ``J`` per input, sign cycle included (length of :meth:`cycle_weights`)."""
        return len(self.cycle_weights())

    @property
    def digit_max(self) -> float:
        """Largest digit value fed in one cycle (``2^a − 1``; 1 when unquantized)."""
        return 1.0 if self.input_bits is None else float(2**self.dac_bits - 1)

    def integers(self, x: Float[Array, "p n"]) -> tuple[Float[Array, "p n"], Float[Array, ""]]:
        """``(x_int, scale)`` with ``x ≈ x_int · scale / Q_x``; one scale per call (example)."""
        amax = absmax(x)
        scale = jnp.where(amax > 0, amax, jnp.ones_like(amax))
        xn = x / scale
        if not self.signed:
            xn = clip_ste(xn, 0.0, 1.0)
        if self.input_bits is None:
            return xn, scale
        return round_ste(xn * self.q), scale

    def digits(self, x_int: Float[Array, "p n"]) -> Float[Array, "J p n"]:
        """Cycle digits ``(J, p, n)`` with ``x_int = Σ_j cycle_weights[j] · digits[j]``."""
        if self.input_bits is None:
            return x_int[None]
        if not self.signed:
            return slice_digits(x_int, self.dac_bits, self.n_unsigned)
        two = 2.0**self.input_bits
        neg = jax.lax.stop_gradient(x_int < 0)
        u = x_int + two * neg  # two's complement as unsigned
        d = slice_digits(u, self.dac_bits, self.n_unsigned)
        if self.dac_bits == 1:
            # u = Σ_{j<I−1} 2^j d_j + 2^(I−1) d_{I−1}, d_{I−1} = sign bit; x = u − 2^I d_{I−1}
            # ⇒ x = Σ_{j<I−1} 2^j d_j − 2^(I−1) d_{I−1}: the last digit keeps its value, its
            # cycle weight turns negative (cycle_weights). Gradient: redistribute.
            d = d.at[-1].set(replace_ste(-x_int / self.n_unsigned / 2.0 ** (self.input_bits - 1),
                                         jax.lax.stop_gradient(d[-1])))
            return d
        sign = replace_ste(jnp.zeros_like(x_int), neg.astype(x_int.dtype))
        return jnp.concatenate([d, sign[None]])
