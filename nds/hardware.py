"""Hardware entries of a study: a table of settings → a tile (or one tile per layer).

Each ``[[hardware]]`` entry of a study names a ``kind`` whose builder turns the entry's keys
into a tile. The kinds and their keys (defaults in parentheses):

* ``crossbar``: resistive crossbar (:class:`nds.tiles.CrossbarTile`); ``card`` (a PCM or
  RRAM card), ``rows`` (256), ``cols`` (256), ``dac_bits`` (8), ``adc_bits`` (8),
  ``adc_range`` (12.0, normalized units), ``out_noise`` (0.04), ``columns_per_adc`` (1).
* ``digital``: :class:`nds.tiles.DigitalTile`; ``card`` ("digital_45nm"), ``bits_weight``
  and ``bits_activation`` (0 = floating point).
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
* ``mixed``: one tile per layer: ``layers`` lists, for each Linear/Conv2d layer in order, the
  name of another entry (or "digital").

Every entry also takes ``name`` (required), ``noise_aware`` (fine-tune with noise-aware
training; default true when the tile draws randomness) and ``standalone`` (default true;
false: the entry only serves as a part of ``mixed`` entries and of the cost-only report, and
gets no accuracy rows of its own — for tiles too slow to run a whole network on).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

from . import cells as _cells
from ._cards import card_path, load_card
from .arrays._crossbar import ResistiveCrossbar
from .converters._uniform import UniformADC, UniformDAC
from .tiles._abstract import AbstractTile
from .tiles._crossbar import CrossbarTile
from .tiles._digital import DigitalMACCosts, DigitalTile

__all__ = ["KINDS", "HardwareError", "entry_defaults", "build_tile", "tile_drifts", "register_kind"]


class HardwareError(ValueError):
    """A malformed hardware entry (names the entry, the key, what is allowed)."""


_CELLS = {"pcm": _cells.PCM, "rram": _cells.RRAM}
_COMMON = {"name": str, "kind": str, "noise_aware": bool, "standalone": bool}

# kind -> (keys with their types and defaults, builder)
KINDS: dict[str, tuple[dict[str, tuple[Any, Any]], Callable[[dict], AbstractTile] | None]] = {}


def register_kind(kind: str, keys: dict[str, tuple[Any, Any]], builder: Callable[[dict], AbstractTile] | None) -> None:
    """Register a hardware kind: ``keys`` maps key -> (type or tuple of types, default or
    ``...`` for required); ``builder(entry) -> tile``."""
    KINDS[kind] = (keys, builder)


def _crossbar(h: dict) -> CrossbarTile:
    kind = tomllib.loads(card_path(h["card"]).read_text())["meta"]["kind"]
    if kind not in _CELLS:
        raise HardwareError(f"hardware {h['name']!r}: card {h['card']!r} has kind {kind!r}, not a resistive "
                            f"cell ({', '.join(_CELLS)})")
    cell = load_card(h["card"], _CELLS[kind])
    return CrossbarTile(
        cell=cell, array=ResistiveCrossbar(rows=h["rows"], cols=h["cols"]),
        dac=UniformDAC(bits=h["dac_bits"] or None), adc=UniformADC(bits=h["adc_bits"] or None,
                                                                   y_range=float(h["adc_range"])),
        out_noise=float(h["out_noise"]), columns_per_adc=h["columns_per_adc"],
    )


def _digital(h: dict) -> DigitalTile:
    return DigitalTile(bits_weight=h["bits_weight"] or None, bits_activation=h["bits_activation"] or None,
                       costs=load_card(h["card"], DigitalMACCosts))


def _pe_array(h: dict) -> AbstractTile:
    from .dataflow import PEArray
    from .memory import DRAM2D, HBM, HMC, DRAMRetention
    from .tiles._pe_array import PEArrayTile

    mkind = tomllib.loads(card_path(h["memory"]).read_text())["meta"]["kind"]
    mcls = {c.card_kind: c for c in (DRAM2D, HMC, HBM)}.get(mkind)
    if mcls is None:
        raise HardwareError(f"hardware {h['name']!r}: memory card {h['memory']!r} has kind {mkind!r}; "
                            f"allowed: {[c.card_kind for c in (DRAM2D, HMC, HBM)]}")
    ret = load_card(h["retention"], DRAMRetention) if h["retention"] else None
    return PEArrayTile(
        pe=load_card(h["card"], PEArray), memory=load_card(h["memory"], mcls), dataflow=h["dataflow"],
        bits_weight=h["bits_weight"] or None, bits_activation=h["bits_activation"] or None, retention=ret,
        refresh_interval_s=float(h["refresh_interval_s"]) if ret else None,
        temperature_k=float(h["temperature_k"]) if ret else None,
    )


_NUM = (int, float)
register_kind("crossbar", {
    "card": (str, ...), "rows": (int, 256), "cols": (int, 256), "dac_bits": (int, 8), "adc_bits": (int, 8),
    "adc_range": (_NUM, 12.0), "out_noise": (_NUM, 0.04), "columns_per_adc": (int, 1),
}, _crossbar)
register_kind("digital", {"card": (str, "digital_45nm"), "bits_weight": (int, 0), "bits_activation": (int, 0)},
              _digital)
register_kind("pe_array", {
    "card": (str, "pe_eyeriss"), "memory": (str, "mem_lpddr3"), "dataflow": (str, "RS"),
    "bits_weight": (int, 16), "bits_activation": (int, 16), "retention": (str, ""),
    "refresh_interval_s": (_NUM, 0.064), "temperature_k": (_NUM, 358.15),
}, _pe_array)
register_kind("mixed", {"layers": (list, ...)}, None)


def entry_defaults(h: dict, where: str, index: int) -> dict:
    """Validate one entry and fill in its kind's defaults. Raises :class:`HardwareError`."""
    kind = h.get("kind", "crossbar")
    if kind not in KINDS:
        raise HardwareError(f"{where}: hardware[{index}].kind = {kind!r}; allowed: {sorted(KINDS)}")
    keys, _ = KINDS[kind]
    allowed = dict(_COMMON, **{k: t for k, (t, _) in keys.items()})
    out = {"kind": kind}
    for k, v in h.items():
        if k not in allowed:
            raise HardwareError(f"{where}: unknown key hardware[{index}].{k} for kind {kind!r}; "
                                f"allowed: {sorted(allowed)}")
        t = allowed[k]
        if not isinstance(v, t) or (isinstance(v, bool) and t is not bool):
            raise HardwareError(f"{where}: hardware[{index}].{k} = {v!r} has the wrong type; expected {t}")
        out[k] = v
    if "name" not in out:
        raise HardwareError(f"{where}: hardware[{index}] needs a 'name'")
    for k, (_, d) in keys.items():
        if k not in out:
            if d is ...:
                raise HardwareError(f"{where}: hardware[{index}] ({out['name']!r}, kind {kind!r}) needs key {k!r}")
            out[k] = d
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
                    weight_bits=h["weight_bits"] or None, readout="analog", mode=h["mode"])


def _switched_cap(h: dict) -> AbstractTile:
    from .arrays._charge_sharing import ChargeSharingArray
    from .converters._sar import SARADC
    from .tiles._switched_cap import SwitchedCapTile

    return SwitchedCapTile(array=load_card(h["card"], ChargeSharingArray),
                           adc=load_card(h["adc"], SARADC) if h["adc"] else None, rows=h["rows"],
                           a_bits=h["a_bits"] or None)


def _sensor(h: dict) -> AbstractTile:
    from .tiles._sensor import SensorAnalogCard, SensorTile

    return SensorTile(sensor=load_card(h["card"], SensorAnalogCard), snr_db=float(h["snr_db"]),
                      w_bits=h["w_bits"] or None, out_bits=h["out_bits"] or None)


register_kind("sram", {"card": (str, "sram_6t_130nm_zhang2017"), "rows": (int, 128), "cols": (int, 128),
                       "weight_bits": (int, 4), "mode": (str, "current")}, _sram)
register_kind("switched_cap", {"card": (str, "sc_lee_wong2016"), "adc": (str, "sar_adc_lee_wong2016"),
                               "rows": (int, 64), "a_bits": (int, 6)}, _switched_cap)
register_kind("sensor", {"card": (str, "sensor_redeye2016"), "snr_db": (_NUM, 30.0), "w_bits": (int, 4),
                         "out_bits": (int, 6)}, _sensor)
