"""In-sensor first layers: a RedEye-style analog convolution front end and an
angle-sensitive-pixel (ASP) fixed optical filter bank.

RedEye (LiKamWa et al., ISCA 2016; survey §VI-D): the first convolution, max pooling and
quantization run in the analog domain inside the image sensor; the circuit noise is a
programmable knob that trades energy for accuracy. Model:

* pixels: a normalized intensity ``x`` in [0, 1] collects ``N = x * full_well`` electrons
  with photon shot noise (Poisson, variance ``N``; Gaussian approximation with the
  reparameterisation ``N + sqrt(N) z`` so that gradients flow) and read noise
  ``read_noise_e`` electrons rms;
* analog MAC: weights quantized to ``w_bits`` (capacitor ratios); every analog stage adds
  thermal noise whose variance is set by the SNR knob ``snr_db``: a stage sampling on
  ``C`` has noise ``kT/C`` (V²), so for a signal of rms ``v_sig`` an SNR of ``s`` needs
  ``C = s kT / v_sig^2`` and costs ``C v_dd^2 = s kT (v_dd / v_sig)^2`` per sample (energy
  ∝ SNR, the RedEye trade-off). Noise is added to each output with std
  ``rms(output) / sqrt(SNR)`` (a fixed full-scale reference rms, ``out_rms``);
* max pooling (analog, winner-take-all: noise-free) and ``out_bits`` quantization (one
  conversion per pooled output — the ADC reduction of in-sensor computing).

ASP (Wang, Molnar et al., CICC 2012; ASP Vision, Chen et al., CVPR 2016): pixels whose
angular response is a Gabor-like function; optically they compute a fixed bank of
oriented, phased filters (no energy per MAC, a fixed first layer: non-trainable).

Cards: ``devices/sensor_redeye2016.toml`` (kind ``"sensor_analog"``) and
``devices/sensor_asp2012.toml`` (kind ``"sensor_asp"``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._keys import streams
from .._cards import AbstractCardModule
from .._cost_types import Cost
from .._checks import MAX_CODE_BITS, require, require_count
from .._ste import clip_ste, quantize_lsq, round_ste, absmax
from ..cells._capacitor import K_BOLTZMANN
from ._abstract import AbstractTile

__all__ = ["SensorAnalogCard", "SensorTile", "AnalogSensorFrontEnd", "ASPCard", "ASPFilterBank"]


class SensorAnalogCard(AbstractCardModule):
    """Sensor and analog front-end constants. Card kind ``"sensor_analog"``.

    Fields (SI): ``full_well`` (electrons at full scale, "1"), ``read_noise_e`` (electrons
    rms), ``temperature`` (K), ``v_dd`` (V), ``v_sig`` (V, rms signal swing of an analog
    stage), ``e_pixel`` (J per pixel readout, analog), ``e_adc`` (J per conversion),
    ``e_overhead_mac`` (J per analog MAC besides the kT/C-limited sampling), ``f_frame`` (Hz).

    Raises:
        ValueError: non-positive full well, temperature, v_dd or v_sig.
    """

    full_well: float
    read_noise_e: float
    temperature: float
    v_dd: float
    v_sig: float
    e_pixel: float
    e_adc: float
    e_overhead_mac: float
    f_frame: float

    card_kind: ClassVar[str] = "sensor_analog"
    card_units: ClassVar[dict[str, str]] = {
        "full_well": "1", "read_noise_e": "1", "temperature": "K", "v_dd": "V", "v_sig": "V", "e_pixel": "J",
        "e_adc": "J", "e_overhead_mac": "J", "f_frame": "Hz"}
    card_ranges: ClassVar[dict] = {"full_well": (1.0, None), "read_noise_e": (0.0, None),
                                   "temperature": (0.0, None), "v_dd": (0.0, None), "v_sig": (0.0, None)}

    def __check_init__(self):
        # concrete values only: every card parameter stays a differentiable leaf (nds._checks)
        for n in ("full_well", "temperature", "v_dd", "v_sig"):
            require(lambda v: v > 0, "SensorAnalogCard", n, getattr(self, n), "must be > 0")
        require(lambda v: v >= 0, "SensorAnalogCard", "read_noise_e", self.read_noise_e, "must be >= 0")

    def energy_per_sample(self, snr_db: float) -> float:
        """kT/C-limited energy of one analog sample at SNR ``snr_db``, J (``s kT (v_dd/v_sig)^2``)."""
        s = 10.0 ** (snr_db / 10.0)
        return s * K_BOLTZMANN * self.temperature * (self.v_dd / self.v_sig) ** 2


def _shot(x, card: SensorAnalogCard, key, shot: bool):
    if not shot:
        return x
    if key is None:
        raise ValueError("sensor: photon shot / read noise is on, so a `key` is required")
    n = jnp.clip(x, 0.0, None) * card.full_well
    var = n + card.read_noise_e**2
    return (n + jnp.sqrt(var) * jax.random.normal(key, x.shape, x.dtype)) / card.full_well


class SensorTile(AbstractTile):
    """A matrix-vector product computed in the sensor (the first layer, im2col form).

    ``apply(state, x)``: ``x`` are pixel intensities in [0, 1] (shape ``(in,)``); photon shot
    noise, analog MAC with noise at ``snr_db``, quantization to ``out_bits`` on
    ``[-out_range, out_range]`` (None: no quantization).

    Fields: ``sensor`` (:class:`SensorAnalogCard`), ``snr_db`` (dB, a differentiable leaf),
    ``w_bits`` (static, None: continuous), ``out_bits`` (static), ``out_range`` (output
    units, a differentiable leaf: the learned-step-size gradient of
    :func:`nds._ste.quantize_lsq`), ``shot_noise``, ``analog_noise`` (static switches).
    """

    sensor: SensorAnalogCard
    snr_db: float | Float[Array, ""] = 30.0
    w_bits: int | None = eqx.field(static=True, default=4)
    out_bits: int | None = eqx.field(static=True, default=6)
    out_range: float | Float[Array, ""] = 4.0
    shot_noise: bool = eqx.field(static=True, default=True)
    analog_noise: bool = eqx.field(static=True, default=True)

    hardware: ClassVar[str] = "sensor"

    def __check_init__(self):
        require_count("SensorTile", "w_bits", self.w_bits, 2, MAX_CODE_BITS, none_ok=True,
                      why=f"None = continuous; float32 codes are exact up to 2**{MAX_CODE_BITS}")
        require_count("SensorTile", "out_bits", self.out_bits, 1, MAX_CODE_BITS, none_ok=True,
                      why=f"None = no quantization; float32 codes are exact up to 2**{MAX_CODE_BITS}")
        require(lambda v: np.isfinite(v) & (v > 0), "SensorTile", "out_range", self.out_range, "must be finite and > 0")
        require(np.isfinite, "SensorTile", "snr_db", self.snr_db, "must be finite (dB)")

    @property
    def needs_key(self) -> bool:
        """True when shot noise or analog noise is on (see AbstractTile.needs_key)."""
        return self.shot_noise or self.analog_noise

    def program(self, w, *, key=None):
        """Weights ``(out, in)`` quantized symmetrically to ``w_bits`` (capacitor ratios);
        ``key`` unused.

        Raises:
            ValueError: ``w`` is not 2-D.
        """
        del key
        if w.ndim != 2:
            raise ValueError(f"SensorTile.program: w must be (out, in), got shape {w.shape}")
        if self.w_bits is None:
            return w
        amax = absmax(w)
        s = jnp.where(amax > 0, amax, 1.0)
        half = 2 ** (self.w_bits - 1) - 1
        return clip_ste(round_ste(w / s * half), -half, half) * s / half

    def mac(self, state, x, *, key):
        """Analog MAC without output quantization (for pooling before the conversion):
        ``state`` (out, in) @ ``x`` (in,) → (out,) with shot and analog noise as configured.

        Raises:
            ValueError: ``key`` is None while shot noise or analog noise is on.
        """
        k1, k2 = streams(key, "shot", "analog") if key is not None else (None, None)
        xs = _shot(x, self.sensor, k1, self.shot_noise)
        y = state @ xs
        if self.analog_noise:
            if k2 is None:
                raise ValueError("SensorTile: analog noise is on, so a `key` is required")
            ref = jnp.sqrt(jnp.sum(state**2, axis=1) / 3.0)  # rms output for uniform inputs
            y = y + ref * 10.0 ** (-self.snr_db / 20.0) * jax.random.normal(k2, y.shape, y.dtype)
        return y

    def quantize(self, y):
        """``y`` quantized to ``out_bits`` (mid-tread, clipped to ``[-out_range, out_range)``);
        unchanged when ``out_bits`` is None. Same shape."""
        if self.out_bits is None:
            return y
        half = 2 ** (self.out_bits - 1)
        lsb = jnp.asarray(self.out_range, jnp.result_type(y)) / half
        return quantize_lsq(y, lsb, -half, half - 1)

    def apply(self, state, x, *, key):
        """:meth:`mac` then :meth:`quantize`, ``(in,)`` → ``(out,)`` (see AbstractTile.apply).

        Raises:
            ValueError: ``x`` is not 1-D; ``key`` is None while shot or analog noise is on.
        """
        if x.ndim != 1:
            raise ValueError(f"SensorTile.apply: x must be 1-D, got shape {x.shape}")
        if self.needs_key and key is None:
            raise ValueError("SensorTile.apply: shot/analog noise is on, so a `key` is required")
        return self.quantize(self.mac(state, x, key=key))

    def ideal(self):
        """Continuous weights, no output quantization, no shot or analog noise (see
        AbstractTile.ideal)."""
        import dataclasses
        return dataclasses.replace(self, w_bits=None, out_bits=None, shot_noise=False, analog_noise=False)

    def cost(self, w_shape, n_mvm, *, w=None, conversions: float | None = None) -> Cost:
        """Energy: pixel readout (``in`` per MVM), analog MACs at the SNR-dependent sampling
        energy plus overhead, and ``conversions`` ADC conversions (default: one per output)."""
        del w
        out, n_in = w_shape
        c = self.sensor
        macs = float(out * n_in * n_mvm)
        conv = float(out * n_mvm) if conversions is None else float(conversions)
        return Cost(
            counts={"macs": macs, "adc_conversions": conv, "pixel_reads": float(n_in * n_mvm)},
            energy_j={"array": n_in * n_mvm * c.e_pixel,
                      "compute": macs * (c.energy_per_sample(self.snr_db) + c.e_overhead_mac),
                      "conversion": conv * c.e_adc},
            latency_s=1.0 / c.f_frame, macs=macs, bits_weight=self.w_bits, bits_activation=self.out_bits,
            hardware="sensor", measured=False, sources=(c.card.source,) if c.card else (),
        )


class AnalogSensorFrontEnd(eqx.Module):
    """RedEye-style first layer on an image: conv (valid, stride 1) → ReLU → max pool →
    quantize, all in the sensor (see module doc).

    ``__call__(kernels (F, k, k), image (H, W), *, key) -> (F, H', W')``; trainable kernels.
    """

    tile: SensorTile
    pool: int = eqx.field(static=True, default=2)

    def __call__(self, kernels: Float[Array, "f k k"], image: Float[Array, "h w"], *, key) -> Float[Array, "f hp wp"]:
        """One frame. Each pixel is exposed once (one shot-noise sample per pixel, shared by
        every patch that reads it, as on the sensor); analog noise at ``snr_db`` is drawn
        independently for every output of the convolution.

        Raises:
            ValueError: ``key`` is None while the tile's shot or analog noise is on.
        """
        f, k, _ = kernels.shape
        tile = self.tile
        if tile.needs_key and key is None:
            raise ValueError("AnalogSensorFrontEnd: shot/analog noise is on, so a `key` is required")
        k1, k2 = streams(key, "shot", "analog") if key is not None else (None, None)
        x = _shot(image, tile.sensor, k1, tile.shot_noise)
        wmat = tile.program(kernels.reshape(f, k * k))
        patches = jax.lax.conv_general_dilated_patches(x[None, None], (k, k), (1, 1), "VALID")[0]  # (k*k, H', W')
        ho, wo = patches.shape[1:]
        y = wmat @ patches.reshape(k * k, ho * wo)  # (F, P): one analog MAC per output
        if tile.analog_noise:
            ref = jnp.sqrt(jnp.sum(wmat**2, axis=1) / 3.0)[:, None]  # as SensorTile.mac
            y = y + ref * 10.0 ** (-tile.snr_db / 20.0) * jax.random.normal(k2, y.shape, y.dtype)
        y = jax.nn.relu(y.reshape(f, ho, wo))
        p = self.pool
        hp, wp = ho // p, wo // p
        y = y[:, : hp * p, : wp * p].reshape(f, hp, p, wp, p).max(axis=(2, 4))
        return tile.quantize(y)

    def cost(self, kernel_shape: tuple[int, int, int], image_shape: tuple[int, int]) -> Cost:
        """Cost of one frame with kernels ``(F, k, k)`` on an ``(H, W)`` image:
        :meth:`SensorTile.cost` of ``(H−k+1)(W−k+1)`` MVMs with an ``(F, k·k)`` matrix, one
        conversion per pooled output, and each pixel read once per frame (``H·W·e_pixel``, J)."""
        f, k, _ = kernel_shape
        h, w = image_shape
        ho, wo = h - k + 1, w - k + 1
        conv = f * (ho // self.pool) * (wo // self.pool)
        c = self.tile.cost((f, k * k), ho * wo, conversions=conv)
        # pixels are read once per frame, not once per patch
        e = dict(c.energy_j)
        e["array"] = h * w * self.tile.sensor.e_pixel
        counts = dict(c.counts)
        counts["pixel_reads"] = float(h * w)
        import dataclasses
        return dataclasses.replace(c, energy_j=e, counts=counts)


class ASPCard(AbstractCardModule):
    """Angle-sensitive pixel sensor. Card kind ``"sensor_asp"``.

    Fields: ``full_well`` (electrons, "1"), ``read_noise_e`` (electrons rms), ``p_sensor`` (W at
    ``f_frame``), ``f_frame`` (Hz), ``n_pixels`` ("1"), ``modulation`` (ASP modulation depth
    m in [0, 1], "1"), ``e_adc`` (J per conversion).
    """

    full_well: float
    read_noise_e: float
    p_sensor: float
    f_frame: float
    n_pixels: float
    modulation: float
    e_adc: float

    card_kind: ClassVar[str] = "sensor_asp"
    card_units: ClassVar[dict[str, str]] = {"full_well": "1", "read_noise_e": "1", "p_sensor": "W",
                                            "f_frame": "Hz", "n_pixels": "1", "modulation": "1", "e_adc": "J"}
    card_ranges: ClassVar[dict] = {"full_well": (1.0, None), "modulation": (0.0, 1.0), "f_frame": (0.0, None)}

    def __check_init__(self):
        require(lambda v: (v >= 0) & (v <= 1), "ASPCard", "modulation", self.modulation, "must be in [0, 1]")


def asp_kernels(k: int = 5, orientations: int = 4, phases: int = 2, freqs: tuple[float, ...] = (0.25,)
                ) -> np.ndarray:
    """Fixed Gabor-like ASP filters ``(orientations*phases*len(freqs), k, k)``: the
    difference of complementary ASP pixel pairs, ``m cos(2 pi f (x cos t + y sin t) + phi)``
    under a Gaussian aperture (zero mean). No randomness, no training."""
    r = (k - 1) / 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    env = np.exp(-(xx**2 + yy**2) / (2 * (k / 3) ** 2))
    out = []
    for f in freqs:
        for o in range(orientations):
            t = math.pi * o / orientations
            for p in range(phases):
                phi = math.pi / 2 * p
                g = env * np.cos(2 * math.pi * f * (xx * math.cos(t) + yy * math.sin(t)) + phi)
                g = g - g.mean()
                out.append(g / np.abs(g).sum())
    return np.stack(out)


class ASPFilterBank(eqx.Module):
    """Angle-sensitive pixels as a fixed, non-trainable first layer (see module doc).

    ``__call__(image (H, W), *, key) -> (F, H', W')``: the optical filter responses (valid
    conv with :func:`asp_kernels` scaled by the modulation depth) with shot noise on the
    pixel pair's collected charge, rectified (``|response|``), max-pooled by ``pool`` and quantized to ``out_bits``. The
    kernels are a constant (``jax.lax.stop_gradient``): they are optics.
    """

    asp: ASPCard
    k: int = eqx.field(static=True, default=5)
    orientations: int = eqx.field(static=True, default=4)
    phases: int = eqx.field(static=True, default=2)
    pool: int = eqx.field(static=True, default=2)
    out_bits: int | None = eqx.field(static=True, default=6)
    shot_noise: bool = eqx.field(static=True, default=True)

    @property
    def kernels(self) -> np.ndarray:
        """The optical filters ``(orientations·phases, k, k)``: :func:`asp_kernels` times the
        card's modulation depth (dimensionless)."""
        return self.asp.modulation * asp_kernels(self.k, self.orientations, self.phases)

    def __call__(self, image: Float[Array, "h w"], *, key: PRNGKeyArray | None) -> Float[Array, "f hp wp"]:
        """Filter one frame ``(H, W)`` (intensities in [0, 1]) → ``(F, (H−k+1)//pool,
        (W−k+1)//pool)``: valid conv, max pool of ``|response|``, quantization to ``out_bits``
        on ``[0, modulation/2]`` (none when ``out_bits`` is None).

        Raises:
            ValueError: ``key`` is None while shot noise is on.
        """
        kern = jax.lax.stop_gradient(jnp.asarray(self.kernels, image.dtype))
        x = image
        if self.shot_noise:
            if key is None:
                raise ValueError("ASPFilterBank: shot noise is on, so a `key` is required")
            n = jnp.clip(x, 0.0, None) * self.asp.full_well
            x = (n + jnp.sqrt(n + self.asp.read_noise_e**2) * jax.random.normal(key, x.shape, x.dtype)) / self.asp.full_well
        y = jax.lax.conv_general_dilated(x[None, None], kern[:, None], (1, 1), "VALID")[0]
        p = self.pool
        f, ho, wo = y.shape
        y = jnp.abs(y[:, : ho // p * p, : wo // p * p]).reshape(f, ho // p, p, wo // p, p).max(axis=(2, 4))
        if self.out_bits is None:
            return y
        lv = 2**self.out_bits - 1
        rng = self.asp.modulation * 0.5
        return clip_ste(round_ste(y / rng * lv), 0, lv) * rng / lv

    def cost(self, image_shape: tuple[int, int]) -> Cost:
        """Sensor energy per frame (``p_sensor / f_frame`` scaled to the pixel count) plus one
        conversion per pooled output; no MAC energy (optics)."""
        h, w = image_shape
        f = self.orientations * self.phases
        ho, wo = (h - self.k + 1) // self.pool, (w - self.k + 1) // self.pool
        conv = float(f * ho * wo)
        e_sensor = self.asp.p_sensor / self.asp.f_frame * (h * w / self.asp.n_pixels)
        return Cost(counts={"adc_conversions": conv, "pixel_reads": float(h * w)},
                    energy_j={"array": e_sensor, "conversion": conv * self.asp.e_adc},
                    latency_s=1.0 / self.asp.f_frame, hardware="sensor_asp",
                    sources=(self.asp.card.source,) if self.asp.card else ())
