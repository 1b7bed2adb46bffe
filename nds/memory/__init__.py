"""Memory: where operands live and what moving them costs (register file, SRAM buffer,
eDRAM, 2D DRAM, HMC, HBM), and DRAM retention errors versus refresh."""

from ._levels import DRAM2D as DRAM2D
from ._levels import EDRAM as EDRAM
from ._levels import HBM as HBM
from ._levels import HMC as HMC
from ._levels import AbstractMemoryLevel as AbstractMemoryLevel
from ._levels import RegisterFile as RegisterFile
from ._levels import SRAMBuffer as SRAMBuffer
from ._levels import roofline_time as roofline_time
from ._retention import DRAMRetention as DRAMRetention
from ._retention import retention_flip as retention_flip

__all__ = [
    "DRAM2D", "EDRAM", "HBM", "HMC", "AbstractMemoryLevel", "RegisterFile", "SRAMBuffer",
    "roofline_time", "DRAMRetention", "retention_flip",
]
