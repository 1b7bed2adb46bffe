"""Key derivation: one documented scheme for every random quantity in nds.

The rule. A function that receives a ``key`` and draws several random quantities derives
one *named stream* per quantity with :func:`stream` (``stream(key, "faults")``,
``stream(key, "nu")``, ...) and never mixes ``jax.random.split`` and ``jax.random.fold_in``
on the same key. A stream's key is ``jax.random.fold_in(key, tag(name))`` with ``tag`` a
31-bit CRC-32 of the name, forced to be at least ``2**20``.

Why. In JAX 0.10 with partitionable threefry, ``jax.random.fold_in(key, i)`` equals
``jax.random.split(key, n)[i]`` for every ``n > i``: mixing the two on one key hands two
quantities the same random numbers (nds had the stuck-at fault map and the PCM drift
exponents drawn from identical bits, so the stuck devices were exactly those with the lowest
``ν``). Named tags of at least ``2**20`` cannot coincide with any split index a program uses,
two different names give different tags (checked for every name nds uses, see
``tests/test_keys.py``), and adding a new stream leaves the bits of every other stream
unchanged.

Splitting a key into ``n`` *equal-role* keys (one per chip, per example, per layer) stays
``jax.random.split``; use :func:`stream` for *different-role* quantities.
"""

from __future__ import annotations

import zlib

import jax
from jaxtyping import PRNGKeyArray

__all__ = ["stream", "streams", "tag"]

_MIN_TAG = 1 << 20


def tag(name: str) -> int:
    """The 31-bit integer that names stream ``name`` (CRC-32 of its UTF-8 bytes, at least
    ``2**20``).

    Raises:
        ValueError: an empty name.
    """
    if not name:
        raise ValueError("nds._keys.tag: the stream name must be a non-empty string")
    t = zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF
    return t if t >= _MIN_TAG else t + _MIN_TAG


def stream(key: PRNGKeyArray, name: str) -> PRNGKeyArray:
    """The key of the random stream ``name`` derived from ``key``
    (``jax.random.fold_in(key, tag(name))``); a scalar key (``jax.vmap`` it for many)."""
    return jax.random.fold_in(key, tag(name))


def streams(key: PRNGKeyArray, *names: str) -> tuple[PRNGKeyArray, ...]:
    """``tuple(stream(key, n) for n in names)``.

    Raises:
        ValueError: a name repeated (two quantities would share random numbers).
    """
    if len(set(names)) != len(names):
        raise ValueError(f"nds._keys.streams: repeated stream name in {names}")
    return tuple(stream(key, n) for n in names)
