"""Mapping: weights ↔ cell states (differential pairs, bit slicing, partitioning)."""

from ._differential import DifferentialMapping as DifferentialMapping
from ._partition import blocks as blocks
from ._partition import num_blocks as num_blocks
