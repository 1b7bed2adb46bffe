"""Hardware entries of a study: a table of settings → a tile (or one tile per layer).

Each ``[[hardware]]`` entry of a study names a ``kind`` whose builder turns the entry's keys
into a tile. The kinds and their keys (defaults in parentheses):

* ``crossbar``: resistive crossbar (:class:`nds.tiles.CrossbarTile`); ``card`` (a PCM or
  RRAM card), ``rows`` (256), ``cols`` (256), ``dac_bits`` (8), ``adc_bits`` (8),
  ``adc_range`` (12.0, normalized units), ``out_noise`` (0.04), ``columns_per_adc`` (1).
* ``digital``: :class:`nds.tiles.DigitalTile`; ``card`` ("digital_45nm"), ``bits_weight``
  and ``bits_activation`` ("ideal" = floating point).
* ``pe_array``: near-DRAM digital PE array (:class:`nds.tiles.PEArrayTile`); ``card``
  ("pe_eyeriss"), ``memory`` (a memory card, "mem_lpddr3"; "hmc_gen1" for 3D-stacked),
  ``dataflow`` ("RS"), ``bits_weight``/``bits_activation`` (16), ``retention`` (a retention
  card or "" for none), ``refresh_interval_s`` (0.064), ``temperature_k`` (358.15).
* ``sram``: 6T SRAM bit-cell MAC (:class:`nds.tiles.SRAMTile`); ``card``
  ("sram_6t_130nm_zhang2017"), ``rows``/``cols`` (128), ``weight_bits`` (4, bit planes),
  ``mode`` ("current" or "charge").
* ``switched_cap``: charge-domain MAC with a SAR ADC (:class:`nds.tiles.SwitchedCapTile`);
  ``card`` ("sc_lee_wong2016"), ``adc`` ("sar_adc_lee_wong2016"), ``rows`` (64), ``a_bits`` (6).
* ``sensor``: in-sensor analog first layer (:class:`nds.tiles.SensorTile`); ``card``
  ("sensor_redeye2016"), ``snr_db`` (30), ``w_bits`` (4), ``out_bits`` (6).
* ``insitu``: a crossbar that also trains in place (:mod:`nds.insitu._study`): ``card`` (a
  PCM or RRAM read cell) and ``update`` (a pulse-response card), converters and noise as
  ``crossbar`` plus backward ones (``bdac_bits``, ``badc_bits``, ``badc_range``,
  ``back_noise``), ``pair``, ``w_max``, ``half_select``, the rule (``rule``: "stochastic",
  "manhattan", "analog"; ``bl``, ``lr``), ``epochs``, ``batch_size``, ``insitu_chips``,
  ``refresh_every`` and device variants (``states_scale``, ``symmetric``, ``linear``,
  ``c2c_scale``); defaults in ``nds.insitu._study.INSITU_KEYS``. Its
  standard and noise-aware rows use the same device programmed (the equal-device
  comparison); the study adds a row with ``training = "in-situ"``.
* ``mixed``: one tile per layer: ``layers`` lists, for each Linear/Conv2d layer in order, the
  name of another entry (or "digital").

Every entry also takes ``name`` (required), ``noise_aware`` (fine-tune with noise-aware
training; default true when the tile draws randomness) and ``standalone`` (default true;
false: the entry only serves as a part of ``mixed`` entries and of the cost-only report, and
gets no accuracy rows of its own — for tiles too slow to run a whole network on), ``attention``
(where the attention products ``Q Kᵀ`` and ``A V`` of transformer networks run: ``"digital"``
(default) or ``"gain_cell"``, :class:`nds.tiles.GainCellAttention`) and ``attention_card``
(the gain-cell card, ``"gain_cell_leroux2025"``).

Checked values (:func:`entry_defaults`, before anything runs): a bit width (``*_bits``) is an
integer from 1 to :data:`MAX_BITS` (24: above that a float32 cannot hold every code exactly)
or the string ``"ideal"`` (an unbounded converter or floating-point arithmetic: no
quantization); 0 is refused, so that an ideal converter is always asked for by name. Array
sizes (``rows``, ``cols``, ``columns_per_adc``) are integers >= 1; ``adc_range``,
``refresh_interval_s`` and ``temperature_k`` are finite and > 0; ``out_noise`` is finite and
>= 0; ``snr_db`` is finite; ``name`` is letters, digits and ``_ . + -`` (it names files).
Each message names the file, the entry and the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from . import cells as _cells
from ._cards import card_kind, load_card
from .arrays._crossbar import ResistiveCrossbar
from .converters._uniform import UniformADC, UniformDAC
from .tiles._abstract import AbstractTile
from .tiles._crossbar import CrossbarTile
from .tiles._digital import DigitalMACCosts, DigitalTile

__all__ = ["KINDS", "MAX_BITS", "Range", "BITS", "HardwareError", "entry_defaults", "build_tile", "tile_drifts",
           "register_kind"]


class HardwareError(ValueError):
    """A malformed hardware entry (names the entry, the key, what is allowed)."""


_CELLS = {"pcm": _cells.PCM, "rram": _cells.RRAM}
# attention: where Q K^T and A V of attention layers run ("digital" or "gain_cell");
# attention_card: the gain-cell card (default "gain_cell_leroux2025")
_COMMON = {"name": str, "kind": str, "noise_aware": bool, "standalone": bool, "attention": str,
           "attention_card": str}
#: the widest converter or fixed-point word a study accepts (float32 holds 2**24 exactly)
MAX_BITS = 24
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric key: ``lo <= v <= hi`` (``lo < v`` when ``strict_lo``);
    ``None`` leaves a side open. Non-finite values are always refused."""

    lo: float | None = None
    hi: float | None = None
    strict_lo: bool = False

    def check(self, v: Any) -> str | None:
        """``None`` if ``v`` is allowed, else what is allowed (for the message)."""
        if not math.isfinite(v):
            return "a finite number"
        bad = (self.lo is not None and (v <= self.lo if self.strict_lo else v < self.lo)) or (
            self.hi is not None and v > self.hi)
        if not bad:
            return None
        lo = "" if self.lo is None else f"{'>' if self.strict_lo else '>='} {self.lo:g}"
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        return " and ".join(x for x in (lo, hi) if x)


class _Bits:
    def __repr__(self) -> str:
        return "BITS"


#: a bit width: an integer in [1, MAX_BITS] or "ideal" (unbounded: no quantization)
BITS = _Bits()
_POS, _NONNEG, _COUNT = Range(0, None, strict_lo=True), Range(0, None), Range(1, None)


def bits_or_none(v: int | str) -> int | None:
    """A validated bit width as a tile argument: ``"ideal"`` → ``None`` (unbounded)."""
    return None if v == "ideal" else int(v)


# kind -> (keys with their types, defaults and allowed values, builder)
KINDS: dict[str, tuple[dict[str, tuple], Callable[[dict], AbstractTile] | None]] = {}


def register_kind(kind: str, keys: dict[str, tuple], builder: Callable[[dict], AbstractTile] | None) -> None:
    """Register a hardware kind: ``keys`` maps key -> ``(type or tuple of types, default or
    ... for required)`` or ``(type, default, allowed)`` with ``allowed`` a :class:`Range`,
    :data:`BITS` or a tuple of allowed strings; ``builder(entry) -> tile``."""
    KINDS[kind] = (keys, builder)


def _check_value(v: Any, allowed: Any) -> str | None:
    """``None`` if ``v`` passes ``allowed`` (see :func:`register_kind`), else what is allowed."""
    if allowed is None:
        return None
    if allowed is BITS:
        if v == "ideal" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_BITS):
            return None
        hint = ' (0 is not a width: write "ideal" for an unbounded converter)' if v == 0 else ""
        return f'an integer from 1 to {MAX_BITS} or "ideal"{hint}'
    if isinstance(allowed, Range):
        return allowed.check(v)
    if isinstance(allowed, tuple):
        return None if v in allowed else f"one of {list(allowed)}"
    raise TypeError(f"register_kind: unknown check {allowed!r}")  # pragma: no cover


def _crossbar(h: dict) -> CrossbarTile:
    kind = card_kind(h["card"])
    if kind not in _CELLS:
        raise HardwareError(f"card {h['card']!r} has kind {kind!r}, not a resistive cell ({', '.join(_CELLS)})")
    cell = load_card(h["card"], _CELLS[kind])
    return CrossbarTile(
        cell=cell, array=ResistiveCrossbar(rows=h["rows"], cols=h["cols"]),
        dac=UniformDAC(bits=bits_or_none(h["dac_bits"])),
        adc=UniformADC(bits=bits_or_none(h["adc_bits"]), y_range=float(h["adc_range"])),
        out_noise=float(h["out_noise"]), columns_per_adc=h["columns_per_adc"],
    )


def _digital(h: dict) -> DigitalTile:
    return DigitalTile(bits_weight=bits_or_none(h["bits_weight"]), bits_activation=bits_or_none(h["bits_activation"]),
                       costs=load_card(h["card"], DigitalMACCosts))


def _pe_array(h: dict) -> AbstractTile:
    from .dataflow import PEArray
    from .memory import DRAM2D, HBM, HMC, DRAMRetention
    from .tiles._pe_array import PEArrayTile

    mkind = card_kind(h["memory"])
    mcls = {c.card_kind: c for c in (DRAM2D, HMC, HBM)}.get(mkind)
    if mcls is None:
        raise HardwareError(f"memory card {h['memory']!r} has kind {mkind!r}; "
                            f"allowed: {[c.card_kind for c in (DRAM2D, HMC, HBM)]}")
    ret = load_card(h["retention"], DRAMRetention) if h["retention"] else None
    return PEArrayTile(
        pe=load_card(h["card"], PEArray), memory=load_card(h["memory"], mcls), dataflow=h["dataflow"],
        bits_weight=bits_or_none(h["bits_weight"]), bits_activation=bits_or_none(h["bits_activation"]), retention=ret,
        refresh_interval_s=float(h["refresh_interval_s"]) if ret else None,
        temperature_k=float(h["temperature_k"]) if ret else None,
    )


_NUM = (int, float)
_BITS_T = (int, str)
register_kind("crossbar", {
    "card": (str, ...), "rows": (int, 256, _COUNT), "cols": (int, 256, _COUNT), "dac_bits": (_BITS_T, 8, BITS),
    "adc_bits": (_BITS_T, 8, BITS), "adc_range": (_NUM, 12.0, _POS), "out_noise": (_NUM, 0.04, _NONNEG),
    "columns_per_adc": (int, 1, _COUNT),
}, _crossbar)
register_kind("digital", {"card": (str, "digital_45nm"), "bits_weight": (_BITS_T, "ideal", BITS),
                          "bits_activation": (_BITS_T, "ideal", BITS)}, _digital)
register_kind("pe_array", {
    "card": (str, "pe_eyeriss"), "memory": (str, "mem_lpddr3"), "dataflow": (str, "RS"),
    "bits_weight": (_BITS_T, 16, BITS), "bits_activation": (_BITS_T, 16, BITS), "retention": (str, ""),
    "refresh_interval_s": (_NUM, 0.064, _POS), "temperature_k": (_NUM, 358.15, _POS),
}, _pe_array)
register_kind("mixed", {"layers": (list, ...)}, None)


def entry_defaults(h: dict, where: str, index: int) -> dict:
    """Validate one entry and fill in its kind's defaults. Raises :class:`HardwareError`."""
    kind = h.get("kind", "crossbar")
    if kind not in KINDS:
        raise HardwareError(f"{where}: hardware[{index}].kind = {kind!r}; allowed: {sorted(KINDS)}")
    keys, _ = KINDS[kind]
    allowed = dict(_COMMON, **{k: spec[0] for k, spec in keys.items()})
    out = {"kind": kind}
    for k, v in h.items():
        if k not in allowed:
            raise HardwareError(f"{where}: unknown key hardware[{index}].{k} for kind {kind!r}; "
                                f"allowed: {sorted(allowed)}")
        t = allowed[k]
        if not isinstance(v, t) or (isinstance(v, bool) and t is not bool):
            raise HardwareError(f"{where}: hardware[{index}].{k} = {v!r} has the wrong type; expected {t}")
        why = _check_value(v, keys[k][2] if k in keys and len(keys[k]) > 2 else None)
        if why is not None:
            raise HardwareError(f"{where}: hardware[{index}].{k} = {v!r} is not allowed; expected {why}")
        out[k] = v
    if "name" not in out:
        raise HardwareError(f"{where}: hardware[{index}] needs a 'name'")
    if not out["name"] or not set(out["name"]) <= _NAME_OK:
        raise HardwareError(f"{where}: hardware[{index}].name = {out['name']!r}: use letters, digits and _ . + - "
                            "(the name is part of file names)")
    if out.get("attention", "digital") not in ("digital", "gain_cell"):
        raise HardwareError(f"{where}: hardware[{index}].attention = {out['attention']!r}; allowed: 'digital', "
                            "'gain_cell'")
    for k, spec in keys.items():
        if k not in out:
            if spec[1] is ...:
                raise HardwareError(f"{where}: hardware[{index}] ({out['name']!r}, kind {kind!r}) needs key {k!r}")
            out[k] = spec[1]
    return out


def build_tile(h: dict, entries: dict[str, dict] | None = None) -> AbstractTile | list[AbstractTile | None]:
    """The tile of an entry, or for ``kind = "mixed"`` a list with one tile (``None`` =
    digital) per layer, resolving names in ``entries``.

    ``h`` should have passed :func:`entry_defaults` (kind known, defaults filled in).

    Raises:
        HardwareError: a ``mixed`` entry's ``layers`` names neither ``"digital"`` nor another
            non-mixed entry of ``entries``; or the builder raised ``ValueError`` (including
            :class:`nds.CardError` and ``HardwareError``, e.g. a card of the wrong kind),
            ``TypeError`` or ``FileNotFoundError`` (message prefixed with the entry name).
        KeyError: ``h["kind"]`` is not a registered kind, or a key the builder needs is
            missing (an entry that did not pass :func:`entry_defaults`).
    """
    keys, builder = KINDS[h["kind"]]
    if h["kind"] == "mixed":
        entries = entries or {}
        out: list[AbstractTile | None] = []
        for n in h["layers"]:
            if n == "digital":
                out.append(None)
            elif n in entries and entries[n]["kind"] != "mixed":
                out.append(build_tile(entries[n]))
            else:
                raise HardwareError(f"hardware {h['name']!r}: layers entry {n!r} is not 'digital' or the name of "
                                    f"another non-mixed entry ({sorted(entries)})")
        return out
    try:
        return builder(h)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise HardwareError(f"hardware {h['name']!r}: {e}") from None


def tile_drifts(tile: AbstractTile | list) -> bool:
    """Whether a tile (or any tile of a list) ages after programming."""
    if isinstance(tile, list):
        return any(t is not None and tile_drifts(t) for t in tile)
    cell = getattr(tile, "cell", None)
    return bool(getattr(cell, "has_drift", False))


def tile_random(tile: AbstractTile | list) -> bool:
    """Whether a tile (or any tile of a list) draws randomness at program or read time."""
    if isinstance(tile, list):
        return any(t is not None and tile_random(t) for t in tile)
    return not isinstance(tile, DigitalTile) and not (
        type(tile).__name__ == "PEArrayTile" and getattr(tile, "retention", None) is None)


def _sram(h: dict) -> AbstractTile:
    from .arrays._sram_column import SRAMColumn
    from .tiles._sram import SRAMTile

    return SRAMTile(column=load_card(h["card"], SRAMColumn), rows=h["rows"], cols=h["cols"],
                    weight_bits=bits_or_none(h["weight_bits"]), readout="analog", mode=h["mode"])


def _switched_cap(h: dict) -> AbstractTile:
    from .arrays._charge_sharing import ChargeSharingArray
    from .converters._sar import SARADC
    from .tiles._switched_cap import SwitchedCapTile

    return SwitchedCapTile(array=load_card(h["card"], ChargeSharingArray),
                           adc=load_card(h["adc"], SARADC) if h["adc"] else None, rows=h["rows"],
                           a_bits=bits_or_none(h["a_bits"]))


def _sensor(h: dict) -> AbstractTile:
    from .tiles._sensor import SensorAnalogCard, SensorTile

    return SensorTile(sensor=load_card(h["card"], SensorAnalogCard), snr_db=float(h["snr_db"]),
                      w_bits=bits_or_none(h["w_bits"]), out_bits=bits_or_none(h["out_bits"]))


register_kind("sram", {"card": (str, "sram_6t_130nm_zhang2017"), "rows": (int, 128, _COUNT),
                       "cols": (int, 128, _COUNT), "weight_bits": (_BITS_T, 4, BITS),
                       "mode": (str, "current", ("current", "charge"))}, _sram)
register_kind("switched_cap", {"card": (str, "sc_lee_wong2016"), "adc": (str, "sar_adc_lee_wong2016"),
                               "rows": (int, 64, _COUNT), "a_bits": (_BITS_T, 6, BITS)}, _switched_cap)
register_kind("sensor", {"card": (str, "sensor_redeye2016"), "snr_db": (_NUM, 30.0, Range()),
                         "w_bits": (_BITS_T, 4, BITS), "out_bits": (_BITS_T, 6, BITS)}, _sensor)


#: keys of an ``insitu`` entry: (type, default, allowed) (module docstring; nds.insitu._study)
INSITU_KEYS: dict[str, tuple] = {
    "card": (str, ...), "update": (str, ...), "rows": (int, 256, _COUNT), "cols": (int, 256, _COUNT),
    "dac_bits": (_BITS_T, 8, BITS), "adc_bits": (_BITS_T, 8, BITS), "adc_range": (_NUM, 12.0, _POS),
    "bdac_bits": (_BITS_T, 8, BITS), "badc_bits": (_BITS_T, 8, BITS), "badc_range": (_NUM, 12.0, _POS),
    "out_noise": (_NUM, 0.02, _NONNEG), "back_noise": (_NUM, 0.02, _NONNEG),
    "pair": (str, "both", ("both", "single", "potentiate")), "w_max": (_NUM, 1.0, _POS),
    "half_select": (bool, False), "rule": (str, "stochastic", ("stochastic", "manhattan", "analog")),
    "bl": (int, 10, _COUNT), "lr": (_NUM, 0.03, _POS), "epochs": (int, 4, _COUNT), "batch_size": (int, 16, _COUNT),
    "insitu_chips": (int, 2, _COUNT), "refresh_every": (int, 0, _NONNEG), "states_scale": (_NUM, 1.0, _POS),
    "symmetric": (bool, False), "linear": (bool, False), "c2c_scale": (_NUM, 1.0, _NONNEG),
}


def _insitu(h: dict) -> AbstractTile:
    from .insitu._study import equal_device_tile

    return equal_device_tile(h)


register_kind("insitu", INSITU_KEYS, _insitu)
