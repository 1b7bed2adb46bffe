"""Straight-through estimators: the one place where gradients are faked.

Rounding (quantization to DAC/ADC codes or conductance levels) and clipping (converter
ranges, conductance bounds) have zero or undefined derivatives; noise-aware training needs a
useful gradient through them. Following Bengio, Léonard & Courville (arXiv:1308.3432, 2013)
the forward pass is exact and the backward pass is the identity (``round_ste``) or the
identity inside the range (``clip_ste`` passes gradients everywhere, the "straight-through"
clip, so that saturated outputs can still learn to come back into range). Every other
non-ideality in nds is differentiated honestly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["round_ste", "clip_ste", "floor_ste", "sign_ste", "replace_ste", "quantize_lsq"]


@jax.custom_jvp
def round_ste(x):
    """``jnp.round(x)`` forward; identity derivative backward. Any shape and float dtype."""
    return jnp.round(x)


@round_ste.defjvp
def _round_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.round(x), dx


@jax.custom_jvp
def floor_ste(x):
    """``jnp.floor(x)`` forward; identity derivative backward."""
    return jnp.floor(x)


@floor_ste.defjvp
def _floor_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.floor(x), dx


@jax.custom_jvp
def clip_ste(x, lo, hi):
    """``jnp.clip(x, lo, hi)`` forward; derivative 1 w.r.t. ``x`` backward (none to bounds)."""
    return jnp.clip(x, lo, hi)


@clip_ste.defjvp
def _clip_jvp(primals, tangents):
    x, lo, hi = primals
    dx, _, _ = tangents
    return jnp.clip(x, lo, hi), dx


@jax.custom_jvp
def sign_ste(x):
    """``+1`` where ``x >= 0`` else ``-1`` forward (a comparator); identity derivative backward."""
    return jnp.where(x >= 0, 1.0, -1.0).astype(jnp.result_type(x))


@sign_ste.defjvp
def _sign_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return sign_ste(x), dx


def replace_ste(x, y):
    """``y`` forward, identity derivative w.r.t. ``x`` backward (none w.r.t. ``y``): for a
    non-differentiable transform of ``x`` (e.g. bit flips of its stored integer codes)."""
    return x + jax.lax.stop_gradient(y - x)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def quantize_lsq(x, step, lo, hi):
    """Uniform quantizer ``clip(round(x / step), lo, hi) · step`` (``lo``, ``hi``: integer codes).

    Backward: w.r.t. ``x`` the identity (straight through rounding and clipping, as
    :func:`round_ste` and :func:`clip_ste`); w.r.t. the step size the learned-step-size
    estimator of Esser et al., "Learned Step Size Quantization", ICLR 2020 (eq. 3):
    ``round(x/step) − x/step`` inside the range and ``lo`` or ``hi`` where the value is
    clipped. The clipped branch is the exact derivative (a saturated output is ``hi · step``);
    inside, rounding is treated as straight-through. So a converter's range (``step`` times
    its code count) gets a gradient that sees both saturation and resolution, which a clip
    without gradient to its bounds does not.
    """
    return jnp.clip(jnp.round(x / step), lo, hi) * step


@quantize_lsq.defjvp
def _quantize_lsq_jvp(lo, hi, primals, tangents):
    x, step = primals
    dx, dstep = tangents
    u = x / step
    code = jnp.clip(jnp.round(u), lo, hi)
    inside = (u >= lo) & (u <= hi)
    d_step = jnp.where(inside, code - u, code)
    return code * step, dx + d_step * dstep
