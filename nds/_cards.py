"""Device, circuit and technology cards: measured constants in TOML, with their source.

A card is a TOML file with two tables::

    [meta]
    kind = "pcm"                       # must equal the class's ``card_kind``
    source = "author, venue year, figure/table"
    measured = true                    # measured on silicon (true) or simulated/secondary (false)
    valid = { g = "0.1-25 uS" }        # optional: range of validity, free text
    notes = "..."                      # optional

    [params]
    g_max = { value = 25.0, unit = "uS" }

Every key of ``[params]`` must be one the class declares in ``card_units`` (a mapping
parameter name -> canonical SI unit); none may be missing. Values are converted to SI once,
here, and checked against the class's ``card_ranges`` (inclusive bounds in SI). The class is
then constructed; its own ``__check_init__`` checks relations (``g_min < g_max``), and any
error is re-raised naming the file.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import pathlib
import tomllib
from typing import Any, ClassVar, TypeVar

import equinox as eqx

from ._checks import FLOAT32_MAX, FLOAT32_TINY, require, require_float32
from ._units import to_si

__all__ = ["CardInfo", "CardError", "AbstractCardModule", "load_card", "list_cards", "card_path", "card_kind"]


class CardError(ValueError):
    """A malformed or impossible card. The message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class CardInfo:
    """Provenance of a loaded card (kept on the module, reported by studies and costs)."""

    name: str
    path: str
    kind: str
    source: str
    measured: bool
    valid: tuple[tuple[str, str], ...] = ()
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The provenance as a JSON-ready dict (``valid`` as a mapping)."""
        return {
            "name": self.name, "path": self.path, "kind": self.kind, "source": self.source,
            "measured": self.measured, "valid": dict(self.valid), "notes": self.notes,
        }


class AbstractCardModule(eqx.Module):
    """Base of every module that can be built from a card.

    Subclasses set the class variables ``card_kind`` (the ``[meta] kind`` they accept),
    ``card_units`` (parameter -> canonical SI unit, e.g. ``{"g_max": "S"}``) and optionally
    ``card_ranges`` (parameter -> ``(low, high)`` in SI, inclusive; ``None`` for unbounded).
    """

    card: CardInfo | None = eqx.field(default=None, static=True, kw_only=True)

    card_kind: ClassVar[str] = ""
    card_units: ClassVar[dict[str, str]] = {}
    card_ranges: ClassVar[dict[str, tuple[float | None, float | None]]] = {}

    def __check_init__(self):
        # every card parameter, however the module was built (card, constructor,
        # dataclasses.replace): finite, a normal float32 when non-zero, inside card_ranges.
        # Concrete values only: traced leaves (sensitivity, co-design) pass unchecked.
        owner = type(self).__name__
        for key, unit in self.card_units.items():
            value = getattr(self, key, None)
            if value is None or isinstance(value, str):
                continue
            require_float32(owner, key, value, unit)
            lo, hi = self.card_ranges.get(key, (None, None))
            if lo is not None or hi is not None:
                lo_s = "-inf" if lo is None else f"{lo:g}"
                hi_s = "inf" if hi is None else f"{hi:g}"
                u = "" if unit == "1" else f" {unit}"
                require(lambda v: ((lo is None) | (v >= (lo if lo is not None else 0)))
                        & ((hi is None) | (v <= (hi if hi is not None else 0))),
                        owner, key, value, f"must be in [{lo_s}, {hi_s}]{u}")


T = TypeVar("T", bound=AbstractCardModule)
_META_KEYS = {"kind", "source", "measured", "valid", "notes"}


def _devices_dir() -> pathlib.Path:
    """The folder of shipped cards: ``nds/devices`` inside the installed package (the wheel
    maps the repository's ``devices/`` there), else the repository's ``devices/``."""
    pkg = pathlib.Path(str(importlib.resources.files("nds"))) / "devices"
    if pkg.is_dir():
        return pkg
    repo = pathlib.Path(__file__).resolve().parent.parent / "devices"
    return repo


def list_cards() -> list[str]:
    """Names of the shipped cards (file stems under ``devices/``)."""
    return sorted(p.stem for p in _devices_dir().glob("*.toml"))


def card_path(name_or_path: str | pathlib.Path) -> pathlib.Path:
    """Resolve a shipped card name (``"pcm_joshi2020"``) or a path to a card file.

    In order: an existing file at ``name_or_path`` (any suffix: a card saved without
    ``.toml`` is found too), then a shipped card of that name, then ``name_or_path`` with
    ``.toml`` appended (a path given without its suffix).

    Raises:
        FileNotFoundError: none of these exists; the message says what was tried (and that
            a folder is not a card) and lists the shipped names.
    """
    p = pathlib.Path(name_or_path)
    if p.is_file():
        return p
    shipped = _devices_dir() / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    with_suffix = p.with_name(p.name + ".toml")
    if p.suffix != ".toml" and with_suffix.is_file():
        return with_suffix
    why = f"{str(name_or_path)!r} is a folder, not a card file" if p.is_dir() else "no such file"
    tried = [str(p)] + ([str(with_suffix)] if p.suffix != ".toml" else [])
    raise FileNotFoundError(
        f"card {str(name_or_path)!r}: {why} (tried {', '.join(tried)}) and no shipped card of that name; "
        f"shipped cards: {', '.join(list_cards())}"
    )


def _read_toml(path: pathlib.Path) -> dict:
    """The parsed TOML of a card file. Raises :class:`CardError` naming the file when it is
    not UTF-8 text (a binary file) or not valid TOML."""
    where = str(path)
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CardError(f"{where}: not a text (UTF-8) TOML file: byte {e.start} is {e.object[e.start:e.start + 1]!r}"
                        " (a binary file?)") from None
    except tomllib.TOMLDecodeError as e:
        raise CardError(f"{where}: not valid TOML: {e}") from None
    except OSError as e:
        raise CardError(f"{where}: cannot be read: {e.strerror or e}") from None


def card_kind(name_or_path: str | pathlib.Path) -> str:
    """The ``[meta] kind`` of a card (e.g. to pick the class to load it with).

    Raises:
        FileNotFoundError: no such card (see :func:`card_path`).
        CardError: the file is binary, not valid TOML, or has no ``[meta] kind``; names the file.
    """
    path = card_path(name_or_path)
    data = _read_toml(path)
    meta = data.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("kind"), str):
        raise CardError(f"{path}: missing [meta] kind")
    return meta["kind"]


def load_card(name_or_path: str | pathlib.Path, cls: type[T], **overrides: Any) -> T:
    """Load a card and build ``cls`` from it.

    Args:
        name_or_path: a shipped card name (see :func:`list_cards`) or a path to a ``.toml``.
        cls: the class to build; must subclass :class:`AbstractCardModule`.
        **overrides: constructor arguments that are not card parameters (array size,
            bits, ...) or that replace a card value (in SI units).

    Returns:
        An instance of ``cls`` whose parameters are the card's values in SI units and whose
        ``card`` field holds the provenance (:class:`CardInfo`).

    Raises:
        FileNotFoundError: no such card.
        CardError: a binary (non-UTF-8) file, TOML syntax error, missing ``[meta]``/``[params]``, a ``kind`` that does
            not match ``cls.card_kind``, an unknown or missing parameter, a parameter that is
            not ``{value, unit}``, a unit of the wrong dimension, a value out of range, or
            a relation between parameters violated; the message names file and key.
    """
    path = card_path(name_or_path)
    where = str(path)
    data = _read_toml(path)
    for table in ("meta", "params"):
        if table not in data or not isinstance(data[table], dict):
            raise CardError(f"{where}: missing table [{table}]")
    extra_tables = set(data) - {"meta", "params"}
    if extra_tables:
        raise CardError(f"{where}: unknown table(s) {sorted(extra_tables)}; allowed: [meta], [params]")
    meta = data["meta"]
    unknown = set(meta) - _META_KEYS
    if unknown:
        raise CardError(f"{where}: unknown key(s) {sorted(unknown)} in [meta]; allowed: {sorted(_META_KEYS)}")
    for k in ("kind", "source"):
        if k not in meta:
            raise CardError(f"{where}: [meta] key {k!r} is missing")
    if cls.card_kind and meta["kind"] != cls.card_kind:
        raise CardError(
            f"{where}: [meta] kind = {meta['kind']!r}, but {cls.__name__} needs kind = {cls.card_kind!r}"
        )
    params = data["params"]
    expected = cls.card_units
    unknown = sorted(set(params) - set(expected))
    if unknown:
        raise CardError(
            f"{where}: unknown key(s) {unknown} in [params] for {cls.__name__}; valid keys: {sorted(expected)}"
        )
    missing = sorted(set(expected) - set(params) - set(overrides))
    if missing:
        raise CardError(
            f"{where}: missing key(s) {missing} in [params] for {cls.__name__}; valid keys: {sorted(expected)}"
        )
    kwargs: dict[str, Any] = {}
    for key, entry in params.items():
        if not isinstance(entry, dict) or set(entry) != {"value", "unit"}:
            raise CardError(f"{where}: [params] {key} must be {{ value = ..., unit = \"...\" }}, got {entry!r}")
        value, unit = entry["value"], entry["unit"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CardError(f"{where}: [params] {key}: value {value!r} is not a number")
        try:
            v_si, canon = to_si(value, unit)
        except ValueError as e:
            raise CardError(f"{where}: [params] {key}: {e}") from None
        if canon != expected[key]:
            raise CardError(
                f"{where}: [params] {key}: unit {unit!r} is in {canon!r}, expected a unit of {expected[key]!r}"
            )
        if not math.isfinite(v_si):
            raise CardError(f"{where}: [params] {key}: value {value!r} is not finite")
        if v_si != 0 and not FLOAT32_TINY <= abs(v_si) <= FLOAT32_MAX:
            raise CardError(
                f"{where}: [params] {key} = {value} {unit} ({v_si:g} {canon}): a non-zero value must have a "
                f"magnitude between {FLOAT32_TINY:.4g} and {FLOAT32_MAX:.4g} {canon} (a normal float32: nds "
                "computes in float32, where smaller values are flushed to zero and give NaN, larger ones overflow)"
            )
        lo, hi = cls.card_ranges.get(key, (None, None))
        if (lo is not None and v_si < lo) or (hi is not None and v_si > hi):
            raise CardError(
                f"{where}: [params] {key} = {value} {unit} ({v_si:g} {canon}) is out of range "
                f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}] {canon}"
            )
        if isinstance(value, int) and canon == "1":
            v_si = int(value)
        kwargs[key] = v_si
    kwargs.update(overrides)
    info = CardInfo(
        name=path.stem, path=where, kind=str(meta["kind"]), source=str(meta["source"]),
        measured=bool(meta.get("measured", False)),
        valid=tuple(sorted((str(k), str(v)) for k, v in dict(meta.get("valid", {})).items())),
        notes=str(meta.get("notes", "")),
    )
    try:
        return cls(**kwargs, card=info)
    except (ValueError, TypeError) as e:
        raise CardError(f"{where}: {e}") from None
