"""Tiles: compositions of DAC, array, ADC and digital logic computing ``y ≈ W x`` with a cost."""

from ._abstract import AbstractTile as AbstractTile
from ._crossbar import CrossbarState as CrossbarState
from ._crossbar import CrossbarTile as CrossbarTile
from ._digital import DigitalMACCosts as DigitalMACCosts
from ._digital import DigitalTile as DigitalTile
from ._pe_array import PEArrayTile as PEArrayTile
