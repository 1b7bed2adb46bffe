"""Dataflows on spatial PE arrays: layer shapes, the analytical mapper (WS, OS, NLR, RS)
and near-memory (3D-stacked DRAM) systems."""

from ._layers import ConvShape as ConvShape
from ._layers import FCShape as FCShape
from ._layers import alexnet as alexnet
from ._layers import lenet5 as lenet5
from ._layers import network as network
from ._layers import vgg16 as vgg16
from ._mapper import DATAFLOWS as DATAFLOWS
from ._mapper import DATATYPES as DATATYPES
from ._mapper import LEVELS as LEVELS
from ._mapper import AccessEnergies as AccessEnergies
from ._mapper import LayerMapping as LayerMapping
from ._mapper import PEArray as PEArray
from ._mapper import TechEnergies as TechEnergies
from ._mapper import best_case_accesses as best_case_accesses
from ._mapper import count_accesses as count_accesses
from ._mapper import map_layer as map_layer
from ._mapper import map_network as map_network
from ._mapper import naive_accesses as naive_accesses
from ._near_memory import LayerRun as LayerRun
from ._near_memory import NearMemorySystem as NearMemorySystem
from ._near_memory import NetworkRun as NetworkRun
from ._near_memory import compare_systems as compare_systems
from ._near_memory import mean_hops as mean_hops
from ._near_memory import run_network as run_network

__all__ = [
    "ConvShape", "FCShape", "alexnet", "lenet5", "network", "vgg16", "DATAFLOWS", "DATATYPES",
    "LEVELS", "AccessEnergies", "LayerMapping", "PEArray", "TechEnergies", "best_case_accesses",
    "count_accesses", "map_layer", "map_network", "naive_accesses", "LayerRun",
    "NearMemorySystem", "NetworkRun", "compare_systems", "mean_hops", "run_network",
]
