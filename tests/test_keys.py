"""The key-derivation scheme (nds._keys): named streams never coincide with split indices or
with each other."""

from __future__ import annotations

import pathlib
import re

import jax
import numpy as np
import pytest

from nds import _keys

PKG = pathlib.Path(__file__).resolve().parent.parent / "nds"


def _names_used() -> set[str]:
    """Every literal stream name passed to stream()/streams() in the package."""
    names = set()
    for p in PKG.rglob("*.py"):
        src = p.read_text()
        for call in re.finditer(r"streams?\(([^)]*)\)", src):
            names.update(re.findall(r"\"([^\"]+)\"", call.group(1)))
    return names


def test_fold_in_equals_split_in_this_jax():
    """The hazard the scheme exists for: fold_in(key, i) == split(key, n)[i]."""
    key = jax.random.key(3)
    a = jax.random.key_data(jax.random.fold_in(key, 1))
    b = jax.random.key_data(jax.random.split(key, 4)[1])
    np.testing.assert_array_equal(a, b)


def test_tags_are_distinct_and_above_split_indices():
    names = _names_used() | {"faults", "nu", "prog", "read"}
    tags = {n: _keys.tag(n) for n in names}
    assert len(set(tags.values())) == len(tags), tags
    assert min(tags.values()) >= 1 << 20


def test_stream_differs_from_every_small_split_index():
    key = jax.random.key(0)
    s = np.asarray(jax.random.key_data(_keys.stream(key, "faults")))
    split = np.asarray(jax.random.key_data(jax.random.split(key, 4096)))
    assert not (split == s).all(axis=1).any()


def test_repeated_names_refused():
    with pytest.raises(ValueError, match="repeated"):
        _keys.streams(jax.random.key(0), "a", "a")
    with pytest.raises(ValueError, match="non-empty"):
        _keys.tag("")
