"""Arrays: how cells are wired and summed (crossbars, SRAM columns, capacitor banks)."""

from ._crossbar import AbstractWires as AbstractWires
from ._partition import blocks as blocks
from ._partition import num_blocks as num_blocks
from ._partition import pad_to as pad_to
from ._crossbar import IdealWires as IdealWires
from ._crossbar import ResistiveCrossbar as ResistiveCrossbar
from ._ir_drop import CrossbarNodes as CrossbarNodes
from ._ir_drop import NonlinearInfo as NonlinearInfo
from ._ir_drop import SneakPathResult as SneakPathResult
from ._ir_drop import crossbar_currents as crossbar_currents
from ._ir_drop import crossbar_currents_first_order as crossbar_currents_first_order
from ._ir_drop import crossbar_currents_nonlinear as crossbar_currents_nonlinear
from ._ir_drop import crossbar_node_voltages as crossbar_node_voltages
from ._ir_drop import crossbar_transfer as crossbar_transfer
from ._ir_drop import crossbar_transfer_first_order as crossbar_transfer_first_order
from ._ir_drop import sneak_path_currents as sneak_path_currents
from ._sram_column import SRAMColumn as SRAMColumn
from ._sram_column import bitline_discharge as bitline_discharge
from ._charge_sharing import ChargeSharingArray as ChargeSharingArray
from ._charge_sharing import ChargeSharingState as ChargeSharingState
from ._crossbar import ResistiveWires as ResistiveWires
from ._crossbar import NonlinearWires as NonlinearWires

__all__ = [
    "AbstractWires", "blocks", "num_blocks", "pad_to", "IdealWires", "ResistiveCrossbar",
    "CrossbarNodes", "NonlinearInfo", "SneakPathResult", "crossbar_currents",
    "crossbar_currents_first_order", "crossbar_currents_nonlinear", "crossbar_node_voltages",
    "crossbar_transfer", "crossbar_transfer_first_order", "sneak_path_currents", "SRAMColumn",
    "bitline_discharge", "ChargeSharingArray", "ChargeSharingState", "ResistiveWires",
    "NonlinearWires",
]
