"""Layer shape descriptors for the dataflow mapper, and the shape lists of LeNet-5, AlexNet
and VGG-16.

Notation follows the survey (Sze et al., arXiv:1703.09039, §II-B / Table I) and the Eyeriss
dataflow paper (Chen, Emer, Sze, ISCA 2016): batch ``N``, input channels ``C``, input height
``H`` and width ``W``, output channels (filters) ``M``, filter height ``R`` and width ``S``,
stride ``U`` (``stride``), zero padding ``pad``; output height ``E = (H + 2 pad - R)/U + 1``
and width ``F``. A fully connected layer is a CONV layer whose filter covers its whole
input (``R = H``, ``S = W``, ``E = F = 1``). Grouped convolutions (AlexNet CONV2/4/5) are
``groups`` independent convolutions of ``C/groups`` input and ``M/groups`` output channels.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ConvShape", "FCShape", "lenet5", "alexnet", "vgg16", "network"]


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """Shape of one CONV (or FC) layer.

    Attributes:
        name: layer name ("CONV1", "FC6", ...).
        N: batch size (images processed together), >= 1.
        C: input channels (all groups together), >= 1.
        H, W: input height and width (before padding), >= 1.
        M: output channels (all groups together), >= 1.
        R, S: filter height and width, >= 1, at most the padded input.
        stride: stride U, >= 1.
        pad: zero padding on each side, >= 0.
        groups: channel groups (C and M must be divisible by it).
        kind: "conv" or "fc" (reporting only; an FC layer is a conv with R = H, S = W).

    Raises:
        ValueError: a non-positive dimension, a filter larger than the padded input, or
            C / M not divisible by ``groups``; the message names the field.
    """

    name: str
    N: int
    C: int
    H: int
    W: int
    M: int
    R: int
    S: int
    stride: int = 1
    pad: int = 0
    groups: int = 1
    kind: str = "conv"

    def __post_init__(self) -> None:
        for f in ("N", "C", "H", "W", "M", "R", "S", "stride", "groups"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ConvShape {self.name!r}: {f} = {v!r}; must be an integer >= 1")
        if not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"ConvShape {self.name!r}: pad = {self.pad!r}; must be an integer >= 0")
        if self.R > self.H + 2 * self.pad or self.S > self.W + 2 * self.pad:
            raise ValueError(
                f"ConvShape {self.name!r}: filter R x S = {self.R} x {self.S} is larger than the padded "
                f"input {self.H + 2 * self.pad} x {self.W + 2 * self.pad}")
        if self.C % self.groups or self.M % self.groups:
            raise ValueError(
                f"ConvShape {self.name!r}: C = {self.C} and M = {self.M} must be divisible by groups = {self.groups}")
        if self.kind not in ("conv", "fc"):
            raise ValueError(f"ConvShape {self.name!r}: kind = {self.kind!r}; allowed: 'conv', 'fc'")

    # derived sizes ---------------------------------------------------------------------
    @property
    def E(self) -> int:
        """Output height."""
        return (self.H + 2 * self.pad - self.R) // self.stride + 1

    @property
    def F(self) -> int:
        """Output width."""
        return (self.W + 2 * self.pad - self.S) // self.stride + 1

    @property
    def Hp(self) -> int:
        """Padded input height."""
        return self.H + 2 * self.pad

    @property
    def Wp(self) -> int:
        """Padded input width."""
        return self.W + 2 * self.pad

    @property
    def Cg(self) -> int:
        """Input channels per group."""
        return self.C // self.groups

    @property
    def Mg(self) -> int:
        """Output channels per group."""
        return self.M // self.groups

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole batch."""
        return self.N * self.M * self.Cg * self.E * self.F * self.R * self.S

    @property
    def n_weights(self) -> int:
        """Filter weights (biases not counted)."""
        return self.M * self.Cg * self.R * self.S

    @property
    def n_ifmap(self) -> int:
        """Input activations of the whole batch (unpadded; padding is not stored)."""
        return self.N * self.C * self.H * self.W

    @property
    def n_ofmap(self) -> int:
        """Output activations of the whole batch."""
        return self.N * self.M * self.E * self.F

    def with_batch(self, n: int) -> "ConvShape":
        """The same layer at batch size ``n``."""
        return dataclasses.replace(self, N=n)

    def group_shape(self) -> "ConvShape":
        """One group as an ungrouped layer (the mapper maps it and multiplies by ``groups``)."""
        return dataclasses.replace(self, C=self.Cg, M=self.Mg, groups=1)


def FCShape(name: str, N: int, C: int, M: int, H: int = 1, W: int = 1) -> ConvShape:
    """A fully connected layer ``C*H*W -> M`` as a :class:`ConvShape` with ``R = H, S = W``."""
    return ConvShape(name, N=N, C=C, H=H, W=W, M=M, R=H, S=W, kind="fc")


def lenet5(batch: int = 1) -> list[ConvShape]:
    """LeNet-5 (LeCun et al., Proc. IEEE 1998) with fully connected C3 and F5 as a 5x5 conv.

    2 CONV (5x5) + 3 FC; 61.7k weights, 416.5k MACs. The survey's Table IV quotes 60k weights
    and 341k MACs for its version (C3 partially connected); the difference is C3's
    connection table, which this shape list does not model.
    """
    return [
        ConvShape("CONV1", batch, 1, 32, 32, 6, 5, 5),
        ConvShape("CONV2", batch, 6, 14, 14, 16, 5, 5),
        FCShape("FC3", batch, 16, 120, 5, 5),
        FCShape("FC4", batch, 120, 84),
        FCShape("FC5", batch, 84, 10),
    ]


def alexnet(batch: int = 1) -> list[ConvShape]:
    """AlexNet (Krizhevsky et al., NIPS 2012), as in the survey's Table IV and Eyeriss.

    227x227x3 input; CONV2, CONV4 and CONV5 in two groups. 5 CONV + 3 FC, 60.97M weights,
    724.4M MACs per image (survey: 61M, 724M).
    """
    return [
        ConvShape("CONV1", batch, 3, 227, 227, 96, 11, 11, stride=4),
        ConvShape("CONV2", batch, 96, 27, 27, 256, 5, 5, pad=2, groups=2),
        ConvShape("CONV3", batch, 256, 13, 13, 384, 3, 3, pad=1),
        ConvShape("CONV4", batch, 384, 13, 13, 384, 3, 3, pad=1, groups=2),
        ConvShape("CONV5", batch, 384, 13, 13, 256, 3, 3, pad=1, groups=2),
        FCShape("FC6", batch, 256, 4096, 6, 6),
        FCShape("FC7", batch, 4096, 4096),
        FCShape("FC8", batch, 4096, 1000),
    ]


def vgg16(batch: int = 1) -> list[ConvShape]:
    """VGG-16 (Simonyan & Zisserman, ICLR 2015): 13 CONV (3x3, pad 1) + 3 FC on 224x224x3;
    138.3M weights, 15.47G MACs per image (survey: 138M, 15.5G)."""
    cfg = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
           (256, 256, 56), (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28),
           (512, 512, 14), (512, 512, 14), (512, 512, 14)]
    names = ["CONV1_1", "CONV1_2", "CONV2_1", "CONV2_2", "CONV3_1", "CONV3_2", "CONV3_3",
             "CONV4_1", "CONV4_2", "CONV4_3", "CONV5_1", "CONV5_2", "CONV5_3"]
    layers = [ConvShape(n, batch, c, h, h, m, 3, 3, pad=1) for n, (c, m, h) in zip(names, cfg)]
    layers += [FCShape("FC6", batch, 512, 4096, 7, 7), FCShape("FC7", batch, 4096, 4096),
               FCShape("FC8", batch, 4096, 1000)]
    return layers


_NETWORKS = {"lenet5": lenet5, "alexnet": alexnet, "vgg16": vgg16}


def network(name: str, batch: int = 1) -> list[ConvShape]:
    """Shape list of a named network.

    Raises:
        ValueError: ``name`` is not one of "lenet5", "alexnet", "vgg16".
    """
    if name not in _NETWORKS:
        raise ValueError(f"network: name = {name!r}; allowed: {sorted(_NETWORKS)}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"network: batch = {batch!r}; must be an integer >= 1")
    return _NETWORKS[name](batch)
