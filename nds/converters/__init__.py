"""Converters: DACs, ADCs and their per-conversion costs."""

from ._uniform import ConverterCosts as ConverterCosts
from ._uniform import UniformADC as UniformADC
from ._uniform import UniformDAC as UniformDAC
from ._uniform import quantize as quantize
from ._sar import SARADC as SARADC
from ._sar import SARState as SARState
from ._sar import MatrixMultiplyingADC as MatrixMultiplyingADC

__all__ = [
    "ConverterCosts", "UniformADC", "UniformDAC", "quantize", "SARADC", "SARState",
    "MatrixMultiplyingADC",
]
