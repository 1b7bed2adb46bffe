"""Arrays: how cells are wired and summed (crossbars, SRAM columns, capacitor banks)."""

from ._crossbar import AbstractWires as AbstractWires
from ._crossbar import IdealWires as IdealWires
from ._crossbar import ResistiveCrossbar as ResistiveCrossbar
