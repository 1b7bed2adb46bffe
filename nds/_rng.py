"""Gaussian read noise from a counter-based generator, cheap enough to draw on every read.

Read noise (per-read output noise of a crossbar column, C2C read noise, ADC noise) is drawn
once per column, per array and per read, i.e. as many Gaussians as the layer has outputs
(times the number of row blocks): as much elementwise work as the matrix-vector product
itself. ``jax.random.normal`` spends one full Threefry-2x32 hash (20 rounds) per 32-bit word
and an inverse error function per Gaussian; this module spends one hash per *two* Gaussians
and a Box–Muller transform, computed inside the same fused loop that adds the noise and runs
the ADC (no extra pass over memory).

Generators (``generator=`` of :func:`normals`; a tile's ``noise_rng`` field):

* ``"threefry-boxmuller"`` (default): the Threefry-2x32 block function with 20 rounds
  (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
  same function as JAX's own ``threefry2x32``, checked bit for bit in the tests) keyed by the
  two words of the key, on the counter ``(flat index, pair index)``; its two output words
  ``(w0, w1)`` give one Box–Muller pair (Box & Muller, Ann. Math. Statist. 29, 610 (1958)):
  ``r = sqrt(−2 ln u1)``, ``u1 = (⌊w0 / 2^8⌋ + 1) 2^-24 ∈ (0, 1]``; angle ``θ = q π/2 + φ``
  with the quadrant ``q`` from the top 2 bits of ``w1`` and ``φ ∈ [−π/4, π/4)`` from its next
  24 bits; ``z0 = r cos θ``, ``z1 = r sin θ`` are independent standard normals. Arrays
  ``2j`` and ``2j + 1`` of a call share hashes (cos and sin); an odd last array uses the
  cosines. In float32 ``cos φ``, ``sin φ`` are the minimax polynomials of Cephes
  ``sinf``/``cosf`` on ``[−π/4, π/4]`` (error ≈ 1 ulp); in float64 the uniforms have 32
  bits (``u1 = (w0 + 1) 2^-32``, ``θ = 2π (w1 + ½) 2^-32``) and ``jnp.cos``/``jnp.sin``.
  Exactly Gaussian up to the float resolution of the uniforms: the largest |z| is
  ``sqrt(48 ln 2) = 5.77`` in float32 (the tail beyond has probability 8e-9; JAX's float32
  normal stops at +5.29 and −5.42, probability 7e-8) and ``sqrt(64 ln 2) = 6.66`` in
  float64.
* ``"jax"``: ``jax.random.normal(key, (count, *shape))`` (JAX's own generator, whatever the
  key's implementation); about 2-4x the cost of the default on CPU.

Same key ⇒ same bits (counter-based: no state), whatever the batch: under ``jax.vmap`` over
per-example keys every example draws exactly what it draws alone.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["GENERATORS", "normals", "threefry2x32"]

GENERATORS = ("threefry-boxmuller", "jax")

_U32 = np.uint32
_ROT = (13, 15, 26, 6, 17, 29, 16, 24)
_PARITY = _U32(0x1BD11BDA)
# Cephes sinf / cosf on [-pi/4, pi/4]
_SIN = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)


def _rotl(x, d: int):
    return lax.shift_left(x, _U32(d)) | lax.shift_right_logical(x, _U32(32 - d))


def threefry2x32(k0, k1, x0, x1, rounds: int = 20):
    """Threefry-2x32 block function (Salmon et al., SC'11), ``rounds`` rounds (default 20).

    All arguments uint32 arrays broadcastable to one shape: key words ``k0, k1`` and counter
    words ``x0, x1``. Returns the two uint32 output words. Equals JAX's ``threefry2x32``
    primitive for 20 rounds.
    """
    k2 = k0 ^ k1 ^ _PARITY
    ks = (k0, k1, k2)
    x0 = x0 + k0
    x1 = x1 + k1
    for r in range(rounds):
        x0 = x0 + x1
        x1 = _rotl(x1, _ROT[r % 8]) ^ x0
        if r % 4 == 3:
            i = r // 4 + 1
            x0 = x0 + ks[i % 3]
            x1 = x1 + ks[(i + 1) % 3] + _U32(i)
    return x0, x1


def _key_words(key):
    """The two uint32 key words of ``key`` (a typed key or a raw uint32 key of shape (2,));
    keys of other implementations are hashed to two words with their own generator."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(key)
        if data.shape == (2,) and data.dtype == jnp.uint32:
            return data[0], data[1]
        w = jax.random.bits(key, (2,), jnp.uint32)
        return w[0], w[1]
    if key.shape == (2,) and key.dtype == jnp.uint32:
        return key[0], key[1]
    raise TypeError(f"nds noise: expected a JAX PRNG key, got an array of shape {key.shape} and dtype {key.dtype}")


def _box_muller_f32(w0, w1):
    """(z0, z1) float32 standard normals from two uint32 words (see the module docstring)."""
    k = lax.shift_right_logical(w0, _U32(8)).astype(jnp.int32)
    u1 = (k + 1).astype(jnp.float32) * np.float32(2.0**-24)  # (0, 1], exact
    r = jnp.sqrt(np.float32(-2.0) * jnp.log(u1))
    q = lax.shift_right_logical(w1, _U32(30))
    f = (lax.shift_right_logical(w1, _U32(6)) & _U32(0xFFFFFF)).astype(jnp.int32).astype(jnp.float32)
    phi = (f * np.float32(2.0**-24) - np.float32(0.5)) * np.float32(math.pi / 2)
    z = phi * phi
    s = phi + phi * z * ((np.float32(_SIN[0]) * z + np.float32(_SIN[1])) * z + np.float32(_SIN[2]))
    c = np.float32(1.0) - np.float32(0.5) * z + z * z * (
        (np.float32(_COS[0]) * z + np.float32(_COS[1])) * z + np.float32(_COS[2]))
    odd = (q & _U32(1)) == _U32(1)
    cq = jnp.where(odd, s, c)
    sq = jnp.where(odd, c, s)
    # quadrant q: (cos, sin)(q π/2 + φ) = (c, s), (−s, c), (−c, −s), (s, −c)
    cq = jnp.where((q == _U32(1)) | (q == _U32(2)), -cq, cq)
    sq = jnp.where(q >= _U32(2), -sq, sq)
    return r * cq, r * sq


def _box_muller_f64(w0, w1):
    """(z0, z1) float64 standard normals from two uint32 words, 32-bit uniforms."""
    u1 = (w0.astype(jnp.float64) + 1.0) * 2.0**-32
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    th = (w1.astype(jnp.float64) + 0.5) * (2.0 * math.pi * 2.0**-32)
    return r * jnp.cos(th), r * jnp.sin(th)


def normals(key: PRNGKeyArray, count: int, shape: tuple[int, ...], dtype=jnp.float32, *,
            generator: str = "threefry-boxmuller") -> tuple[Float[Array, "..."], ...]:
    """``count`` independent arrays of i.i.d. standard normals, each of shape ``shape``.

    Args:
        key: a JAX PRNG key (one example's read key under ``jax.vmap``).
        count: number of arrays (e.g. one per row block of a partitioned matrix).
        shape: shape of each array; at most ``2**32`` elements.
        dtype: float dtype of the result (float32 and float64 computed natively, others in
            float32 and cast).
        generator: ``"threefry-boxmuller"`` (default) or ``"jax"`` (module docstring).

    Returns:
        A tuple of ``count`` arrays of ``shape`` and ``dtype``.

    Raises:
        ValueError: an unknown ``generator``, ``count < 1``, or more than ``2**32`` elements
            per array.
    """
    if generator not in GENERATORS:
        raise ValueError(f"noise generator {generator!r}; allowed: {GENERATORS}")
    if count < 1:
        raise ValueError(f"normals: count = {count}, must be >= 1")
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"normals: {size} elements per array; at most 2**32 - 1")
    if generator == "jax":
        z = jax.random.normal(key, (count, *shape), dtype)
        return tuple(z[i] for i in range(count))
    k0, k1 = _key_words(key)
    idx = lax.iota(jnp.uint32, size).reshape(shape)
    bm = _box_muller_f64 if jnp.dtype(dtype) == jnp.float64 else _box_muller_f32
    out = []
    for j in range((count + 1) // 2):
        w0, w1 = threefry2x32(k0, k1, idx, _U32(j))
        z0, z1 = bm(w0, w1)
        out += [z0.astype(dtype), z1.astype(dtype)]
    return tuple(out[:count])
