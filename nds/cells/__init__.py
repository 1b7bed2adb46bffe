"""Cells: the physics of one storage element (resistive device, SRAM bit-cell, capacitor)."""

from ._resistive import PCM as PCM
from ._resistive import RRAM as RRAM
from ._resistive import AbstractResistiveCell as AbstractResistiveCell
from ._sram import SRAMCell as SRAMCell
from ._capacitor import UnitCapacitor as UnitCapacitor
from ._capacitor import K_BOLTZMANN as K_BOLTZMANN
from ._faults import FaultModel as FaultModel
from ._write_verify import WriteVerify as WriteVerify
from ._write_verify import WriteVerifyResult as WriteVerifyResult
from ._programming import OneShotProgramming as OneShotProgramming
from ._programming import ProgramRecord as ProgramRecord
from ._update import AbstractUpdateModel as AbstractUpdateModel
from ._update import ExpStep as ExpStep
from ._update import LinearStep as LinearStep
from ._update import PulseDevices as PulseDevices
from ._update import SoftBounds as SoftBounds
from ._gain_cell import GainCell as GainCell

__all__ = [
    "PCM", "RRAM", "AbstractResistiveCell", "SRAMCell", "UnitCapacitor", "K_BOLTZMANN",
    "FaultModel", "WriteVerify", "WriteVerifyResult", "OneShotProgramming", "ProgramRecord", "GainCell",
    "AbstractUpdateModel", "ExpStep", "LinearStep", "PulseDevices", "SoftBounds",
]
