"""Mapping: weights ↔ cell states (differential pairs, bit slicing, partitioning)."""

from ._differential import DifferentialMapping as DifferentialMapping
from ..arrays._partition import blocks as blocks  # partition geometry lives with the arrays
from ..arrays._partition import num_blocks as num_blocks
from ._bitslice import BitSliceMapping as BitSliceMapping
from ._bitslice import InputSlicing as InputSlicing
from ._bitslice import adc_bits_exact as adc_bits_exact
from ._bitslice import adc_bits_rule as adc_bits_rule
from ._bitslice import slice_digits as slice_digits
from ._bitslice import combine_digits as combine_digits

__all__ = [
    "DifferentialMapping", "num_blocks", "BitSliceMapping", "InputSlicing", "adc_bits_exact",
    "adc_bits_rule", "slice_digits", "combine_digits",
]
