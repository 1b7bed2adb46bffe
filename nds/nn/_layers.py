"""Network layers whose weights live on a tile: ``AnalogLinear`` and ``AnalogConv2d``.

Shapes follow Equinox: a layer takes one example (no batch axis); ``jax.vmap`` it over a
batch. A layer holds its trainable ``weight``/``bias``, a per-output digital scale
``out_scale`` (batch norm folded in, see :func:`nds.nn.fold_batchnorm`), its ``tile`` and,
once programmed, the tile's physical ``state``. Calling a layer that is not programmed raises:
use :func:`nds.program` (one manufactured chip) first.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._cost_types import Cost
from ..tiles._abstract import AbstractTile
from .._ste import absmax

__all__ = ["AbstractAnalogLayer", "AnalogLinear", "AnalogConv2d"]


def _finite_check(x, where: str):
    """A scalar 1 that raises at run time (also under jit) if ``x`` contains NaN or inf;
    multiply it into the layer's output so that the result depends on the check.

    The cheapest correct form: the predicate is ``max |x|`` (NaN and inf propagate through
    it; the dynamic DAC computes the same reduction, which XLA shares), only a scalar per
    example goes through ``eqx.error_if``'s conditional (one conditional per call under
    ``jax.vmap``: the predicate is reduced over the batch), and the multiplication fuses
    into the tile's last elementwise pass. No host round trip unless it fails.
    """
    amax = absmax(x)
    return eqx.error_if(jnp.ones((), x.dtype), ~jnp.isfinite(amax), f"{where}: input contains NaN or inf")


class AbstractAnalogLayer(eqx.Module):
    """A layer whose matrix-vector products run on a tile."""

    weight: eqx.AbstractVar[Array]
    bias: eqx.AbstractVar[Array | None]
    out_scale: eqx.AbstractVar[Array | None]
    tile: eqx.AbstractVar[AbstractTile]
    state: eqx.AbstractVar[Any]
    name: eqx.AbstractVar[str]

    def matrix(self) -> Float[Array, "out in"]:
        """The weight as the (out, in) matrix the tile holds."""
        return self.weight.reshape(self.weight.shape[0], -1)

    def program(self, *, key: PRNGKeyArray | None) -> "AbstractAnalogLayer":
        """This layer with its tile programmed (one chip's program-time randomness)."""
        state = self.tile.program(self.matrix(), key=key)
        return eqx.tree_at(lambda l: l.state, self, state, is_leaf=lambda x: x is None)

    def drift(self, t, *, key: PRNGKeyArray | None = None) -> "AbstractAnalogLayer":
        """This layer ``t`` seconds after programming."""
        self._require_state()
        return eqx.tree_at(lambda l: l.state, self, self.tile.drift(self.state, t, key=key))

    def _require_state(self):
        if self.state is None:
            raise ValueError(
                f"layer {self.name!r} is not programmed: call nds.program(model, key=...) first "
                "(one manufactured chip), then evaluate the returned model"
            )

    def _post(self, y):
        if self.out_scale is not None:
            y = y * self.out_scale
        if self.bias is not None:
            y = y + self.bias
        return y

    def n_mvm(self, input_shape: tuple[int, ...]) -> int:
        """Matrix-vector products per example for an input of ``input_shape``."""
        return 1

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one example's output for an input of ``input_shape``.

        Raises:
            NotImplementedError: always here; subclasses override it.
        """
        raise NotImplementedError

    def cost(self, input_shape: tuple[int, ...]) -> Cost:
        """Cost of this layer for one example of ``input_shape``."""
        return self.tile.cost(self.matrix().shape, self.n_mvm(input_shape), w=self.matrix())


class AnalogLinear(AbstractAnalogLayer):
    """``y = out_scale · (W x) + b`` with ``W x`` on a tile. ``x``: (in,), ``y``: (out,)."""

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    out_scale: Float[Array, " out"] | None
    tile: AbstractTile
    state: Any = None
    name: str = eqx.field(static=True, default="linear")

    @classmethod
    def from_linear(cls, layer: eqx.nn.Linear, tile: AbstractTile, name: str = "linear") -> "AnalogLinear":
        """Analog twin of an ``eqx.nn.Linear`` (weights copied, not yet programmed)."""
        w = layer.weight if layer.in_features != "scalar" else layer.weight.reshape(-1, 1)
        return cls(weight=w, bias=layer.bias, out_scale=None, tile=tile, name=name)

    def __call__(self, x: Float[Array, " in"], *, key: PRNGKeyArray | None = None) -> Float[Array, " out"]:
        """Raises ValueError naming the layer on a wrong input shape or an unprogrammed layer;
        NaN/inf inputs raise at run time (also under jit)."""
        n_in = self.weight.shape[1]
        if x.shape != (n_in,):
            raise ValueError(f"layer {self.name!r} (AnalogLinear {self.weight.shape[1]}→{self.weight.shape[0]}): "
                             f"input shape {x.shape}, expected ({n_in},) (one example; vmap over a batch)")
        self._require_state()
        ok = _finite_check(x, f"layer {self.name!r}")
        return self._post(self.tile.apply(self.state, x, key=key) * ok)

    def output_shape(self, input_shape):
        """``(out,)`` whatever the input shape."""
        return (self.weight.shape[0],)


class AnalogConv2d(AbstractAnalogLayer):
    """2-D convolution unrolled onto the tile, weights stationary (im2col).

    The kernel ``(out_ch, in_ch, kh, kw)`` is the ``(out_ch, in_ch·kh·kw)`` matrix on the tile;
    each output position is one MVM of the patch there. ``x``: (in_ch, H, W) →
    ``(out_ch, H_out, W_out)``. All positions of one example go to the tile's
    ``apply_batch`` (one input scale per example for a dynamic DAC); each position draws its
    own read noise.
    """

    weight: Float[Array, "out_ch in_ch kh kw"]
    bias: Float[Array, " out_ch"] | None
    out_scale: Float[Array, " out_ch"] | None
    tile: AbstractTile
    stride: tuple[int, int] = eqx.field(static=True, default=(1, 1))
    padding: tuple[tuple[int, int], tuple[int, int]] = eqx.field(static=True, default=((0, 0), (0, 0)))
    state: Any = None
    name: str = eqx.field(static=True, default="conv")

    @classmethod
    def from_conv(cls, layer: eqx.nn.Conv2d, tile: AbstractTile, name: str = "conv") -> "AnalogConv2d":
        """Analog twin of an ``eqx.nn.Conv2d`` (dilation 1, groups 1).

        Raises:
            ValueError: dilation other than 1 or groups other than 1; string padding (give
                explicit padding). The message names the layer.
        """
        if tuple(layer.dilation) != (1, 1) or layer.groups != 1:
            raise ValueError(f"layer {name!r}: only dilation 1 and groups 1 are supported, got "
                             f"dilation={layer.dilation}, groups={layer.groups}")
        pad = layer.padding
        if isinstance(pad, str):
            raise ValueError(f"layer {name!r}: string padding {pad!r} unsupported; give explicit padding")
        pad = tuple((int(p[0]), int(p[1])) for p in pad)
        bias = None if layer.bias is None else layer.bias.reshape(-1)
        return cls(weight=layer.weight, bias=bias, out_scale=None, tile=tile, stride=tuple(layer.stride),
                   padding=pad, name=name)

    def _patches(self, x):
        """(Ho, Wo, C·kh·kw) patches of one example, feature order (C, kh, kw) matching
        ``weight.reshape(out, -1)`` (patch-major: no transpose before the tile)."""
        kh, kw = self.weight.shape[2:]
        p = jax.lax.conv_general_dilated_patches(
            x[None], (kh, kw), self.stride, self.padding, dimension_numbers=("NCHW", "OIHW", "NHWC"))
        return p[0]

    def output_shape(self, input_shape):
        """``(out_ch, H_out, W_out)`` for an input ``(in_ch, H, W)``, with
        ``H_out = (H + pad_top + pad_bottom − kh) // stride_h + 1`` (likewise ``W_out``)."""
        c, h, w = input_shape
        kh, kw = self.weight.shape[2:]
        ho = (h + sum(self.padding[0]) - kh) // self.stride[0] + 1
        wo = (w + sum(self.padding[1]) - kw) // self.stride[1] + 1
        return (self.weight.shape[0], ho, wo)

    def n_mvm(self, input_shape):
        """One MVM per output position: ``H_out · W_out`` for an input ``(in_ch, H, W)``."""
        _, ho, wo = self.output_shape(input_shape)
        return ho * wo

    def __call__(self, x: Float[Array, "c h w"], *, key: PRNGKeyArray | None = None) -> Float[Array, "o ho wo"]:
        """Raises ValueError naming the layer on a wrong input shape or an unprogrammed layer."""
        c_in = self.weight.shape[1]
        if x.ndim != 3 or x.shape[0] != c_in:
            raise ValueError(f"layer {self.name!r} (AnalogConv2d, {c_in} input channels): input shape {x.shape}, "
                             f"expected ({c_in}, H, W) (one example; vmap over a batch)")
        _, ho, wo = self.output_shape(x.shape)
        if ho < 1 or wo < 1:
            raise ValueError(f"layer {self.name!r} (AnalogConv2d, kernel {self.weight.shape[2:]}, padding "
                             f"{self.padding}, stride {self.stride}): input {x.shape[1:]} is smaller than the kernel "
                             f"after padding (output would be {ho}×{wo})")
        self._require_state()
        ok = _finite_check(x, f"layer {self.name!r}")
        p = self._patches(x)
        ho, wo, k = p.shape
        cols = p.reshape(ho * wo, k)
        y = self.tile.apply_batch(self.state, cols, key=key) * ok  # (P, out)
        y = jax.vmap(self._post)(y)
        return y.T.reshape(-1, ho, wo)
