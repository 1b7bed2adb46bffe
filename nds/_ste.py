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

__all__ = ["round_ste", "clip_ste", "floor_ste", "sign_ste", "replace_ste", "quantize_lsq", "absmax"]


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


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def absmax(x: jax.Array, axis: int | None = None) -> jax.Array:
    """``max |x|`` (over all of ``x``, or along ``axis``) whose derivative is that of the one
    element that attains it (the first, ``argmax``): ``sign(x_i*) dx_i*``.

    ``jnp.max``'s own derivative divides among the elements equal to the maximum, found by
    comparing ``|x|`` with the result; when XLA fuses and recomputes ``|x|`` in the backward
    pass (CPU, under ``jit``), the recomputed values can differ from the stored maximum in the
    last bit, no element compares equal and the derivative becomes ``g / 0 = inf`` (seen in
    ``nds.sensitivity``). The derivative here is a valid subgradient chosen without a
    comparison. Zero for an all-zero ``x`` (``sign(0) = 0``).
    """
    return jnp.max(jnp.abs(x), axis=axis)


@absmax.defjvp
def _absmax_jvp(axis, primals, tangents):
    (x,), (t,) = primals, tangents
    a = jnp.abs(x)
    if axis is None:
        i = jnp.argmax(a.ravel())
        xi, ti = x.ravel()[i], t.ravel()[i]
    else:
        i = jnp.expand_dims(jnp.argmax(a, axis=axis), axis)
        xi = jnp.squeeze(jnp.take_along_axis(x, i, axis), axis)
        ti = jnp.squeeze(jnp.take_along_axis(t, i, axis), axis)
    return jnp.max(a, axis=axis), jnp.sign(xi) * ti
