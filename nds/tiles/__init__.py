"""Tiles: compositions of DAC, array, ADC and digital logic computing ``y ≈ W x`` with a cost."""

from ._abstract import AbstractTile as AbstractTile
from ._crossbar import CrossbarState as CrossbarState
from ._crossbar import CrossbarTile as CrossbarTile
from ._digital import DigitalMACCosts as DigitalMACCosts
from ._digital import DigitalTile as DigitalTile
from ._pe_array import PEArrayTile as PEArrayTile
from ._sram import SRAMTile as SRAMTile
from ._sram import SRAMState as SRAMState
from ._sram import weight_planes as weight_planes
from ._switched_cap import SwitchedCapTile as SwitchedCapTile
from ._switched_cap import SwitchedCapState as SwitchedCapState
from ._switched_cap import adc_conversion_reduction as adc_conversion_reduction
from ._sensor import SensorTile as SensorTile
from ._sensor import AnalogSensorFrontEnd as AnalogSensorFrontEnd
from ._sensor import SensorAnalogCard as SensorAnalogCard
from ._sensor import ASPFilterBank as ASPFilterBank
from ._sensor import ASPCard as ASPCard
from ._sensor import asp_kernels as asp_kernels
from ._bitsliced import BitSlicedTile as BitSlicedTile
from ._bitsliced import BitSlicedState as BitSlicedState
from ._bitsliced import BitSliceDesign as BitSliceDesign
from ._attention import AbstractAttentionTile as AbstractAttentionTile
from ._attention import DigitalAttention as DigitalAttention
from ._attention import KVEntries as KVEntries
from ._gain_cell import GainCellAttention as GainCellAttention
from ._gain_cell import GainCellAttentionCosts as GainCellAttentionCosts

__all__ = [
    "AbstractTile", "CrossbarState", "CrossbarTile", "DigitalMACCosts", "DigitalTile",
    "PEArrayTile", "SRAMTile", "SRAMState", "weight_planes", "SwitchedCapTile",
    "SwitchedCapState", "adc_conversion_reduction", "SensorTile", "AnalogSensorFrontEnd",
    "SensorAnalogCard", "ASPFilterBank", "ASPCard", "asp_kernels", "BitSlicedTile",
    "BitSlicedState", "BitSliceDesign", "AbstractAttentionTile", "DigitalAttention", "KVEntries",
    "GainCellAttention", "GainCellAttentionCosts",
]
