"""Layers on tiles, conversion of Equinox and PyTorch models, and a model zoo."""

from ._analogize import analog_layers as analog_layers
from ._analogize import analogize as analogize
from ._analogize import fold_batchnorm as fold_batchnorm
from ._analogize import is_analog_layer as is_analog_layer
from ._attention import KeyedMLP as KeyedMLP
from ._attention import MultiheadAttention as MultiheadAttention
from ._digital import DigitalOp as DigitalOp
from ._digital import FrozenBatchNorm as FrozenBatchNorm
from ._digital import freeze_batchnorm as freeze_batchnorm
from ._digital import node_costs as node_costs
from ._layers import AbstractAnalogLayer as AbstractAnalogLayer
from ._layers import AnalogConv2d as AnalogConv2d
from ._layers import AnalogLinear as AnalogLinear
from ._torch import UnsupportedModuleError as UnsupportedModuleError
from ._torch import from_torch as from_torch
from ._torch import load_state_dict as load_state_dict
from ._zoo import GPT as GPT
from ._zoo import BasicBlock as BasicBlock
from ._zoo import Block as Block
from ._zoo import Bottleneck as Bottleneck
from ._zoo import ResNet as ResNet
from ._zoo import TransformerEncoderLayer as TransformerEncoderLayer
from ._zoo import ViT as ViT
from ._zoo import fit_batchnorm as fit_batchnorm
from ._zoo import gpt as gpt
from ._zoo import resnet as resnet
from ._zoo import vit as vit
from .models import lenet5 as lenet5

__all__ = [
    "analog_layers", "analogize", "fold_batchnorm", "is_analog_layer", "AbstractAnalogLayer",
    "AnalogConv2d", "AnalogLinear", "lenet5",
]
