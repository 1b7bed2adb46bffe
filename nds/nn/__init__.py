"""Layers on tiles and conversion of Equinox models."""

from ._analogize import analog_layers as analog_layers
from ._analogize import analogize as analogize
from ._analogize import fold_batchnorm as fold_batchnorm
from ._analogize import is_analog_layer as is_analog_layer
from ._layers import AbstractAnalogLayer as AbstractAnalogLayer
from ._layers import AnalogConv2d as AnalogConv2d
from ._layers import AnalogLinear as AnalogLinear
from .models import lenet5 as lenet5

__all__ = [
    "analog_layers", "analogize", "fold_batchnorm", "is_analog_layer", "AbstractAnalogLayer",
    "AnalogConv2d", "AnalogLinear", "lenet5",
]
