"""The main job: a study described by TOML → table, ``results.json`` and plots.

A study trains a network digitally, evaluates it, maps it onto each hardware entry, runs
Monte Carlo over chips (at each time after programming for drifting devices), fine-tunes with
noise-aware training and evaluates the same rows again. Every finished part is saved under
``<out>/parts/`` (JSON for rows, Equinox serialisation for trained models, file names carrying
the hash of what the part depends on) and a rerun resumes from there; training keeps a
checkpoint every 100 steps and resumes mid-way. A damaged part is named, moved to
``parts/damaged/`` and recomputed; one study at a time may write into a folder (see
:func:`run_study`). The built-in default (``nds study`` with no argument) is
:data:`DEFAULT_STUDY`.

``results.json`` schema (also in the README)::

    {
      "config_hash": "<16 hex digits: hash of the configuration and the nds version>",
      "nds_version": "0.1.0",
      "study": {...the configuration...},
      "dataset": {"name": "mnist", "n_test": 1000, "n_train": 4000},
      "rows": [
        {"hardware": "digital" | "<entry name>", "kind": "<kind>", "card": "<card>" | null,
         "training": "standard" | "noise-aware", "t_seconds": float | null,
         "accuracy": {"mean", "std", "p5", "p50", "p95", "ci": [lo, hi], "n", "confidence",
                      "test_se", "n_test", "samples": [one per chip]},
         "energy_j": float, "latency_s": float,          # per inference
         "energy_breakdown_j": {...}, "offchip_bytes": float, "area_m2": float, "num_chips": int}
      ],
      "cost": {"<hardware>": [per-layer cost rows + a "total" row]},
      "report": [one section-VIII row per (network, hardware), see :func:`report_row`],
      "timing": {"parts": [{"part", "seconds"}], "total_s"}     # this run's parts
    }

Accuracy rows come from :func:`nds.evaluate` (each chip programmed once and aged to every
time of ``study.times``); ``test_se`` is the test-set standard error beside ``std``, the
spread over chips.

Hardware entries and their keys: :mod:`nds.hardware`.
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
import tomllib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._keys import stream, streams
from . import _study_networks as _nets
from ._cards import CardError, card_kind
from ._evaluate import evaluate
from ._cost_types import ENERGY_CATEGORIES
from ._atomic import atomic_path, atomic_write
from ._distributed import is_main as _is_main
from ._parts import _hash, _Parts, _warn
from .costs import CostReport, cost, plot_energy_breakdown
from .datasets import DATASETS, SHAPES, SIZES, SPLITS, load_dataset
from .hardware import HardwareError, build_tile, entry_defaults, tile_drifts, tile_random
from .nn._analogize import analogize
from .nn.models import alexnet, lenet5, mlp, vgg16
from .tiles._digital import DigitalTile
from .console import Reporter, fmt_duration
from .train import fit

__all__ = ["DEFAULT_STUDY", "StudyError", "load_study", "run_study"]

DEFAULT_STUDY: dict[str, Any] = {
    "study": {"name": "default", "seed": 0, "chips": 32, "chip_batch": 8,
              "times": [1.0, 3600.0, 86400.0, 31536000.0],
              # the digital baseline's datapath: int8 weights and activations (its weights then
              # fit the on-chip buffer card); "fp32" makes the float row the baseline
              "baseline_bits": 8},
    "dataset": {"name": "mnist", "n_train": 4000, "n_test": 1000},
    "network": {"name": "lenet5", "digital_layers": [], "hidden": [256, 128]},
    "training": {"steps": 3000, "batch_size": 64, "lr": 2e-3,
                 "noise_aware_steps": 400, "noise_aware_lr": 1e-4, "noise_aware_t": 31536000.0,
                 "clip_sigma": 2.5},
    "hardware": [
        # an energy-lean design point: 6-bit DAC and ADC (the ADC dominates the energy)
        {"name": "rram", "kind": "crossbar", "card": "rram_generic", "dac_bits": 6, "adc_bits": 6},
        {"name": "pcm", "kind": "crossbar", "card": "pcm_joshi2020", "dac_bits": 6, "adc_bits": 6},
    ],
    "report": {"networks": ["alexnet", "vgg16"], "batch_size": 16},
    # accuracy and wire-energy share against array size and wire resistance (exact IR drop);
    # off by default (minutes per array size): see examples/study_sweep.toml
    "sweep": {"card": "rram_wan2022", "array_sizes": [], "r_wire": [0.0, 1.0, 2.5, 5.0], "chips": 8,
              "fidelity": "exact"},
    # gradient of the chip-averaged cross-entropy w.r.t. hardware parameters (nds.sensitivity);
    # off by default: params = [] ("all": every differentiable parameter of each entry)
    "sensitivity": {"params": [], "chips": 8, "n_examples": 200, "t": 86400.0},
}

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "study": {"name": str, "seed": int, "chips": int, "chip_batch": int, "times": list, "baseline_bits": (int, str)},
    "dataset": {"name": str, "n_train": int, "n_test": int, "context": int},
    # name: one network or a list (one study each, with per-network overrides of any table)
    "network": {"name": (str, list), "digital_layers": list, "config": dict, "checkpoint": str,
                "digital_bits": (int, str), "overrides": dict, "hidden": list},
    "report": {"networks": list, "batch_size": int},
    "sweep": {"card": str, "array_sizes": list, "r_wire": list, "chips": int, "fidelity": str},
    "sensitivity": {"params": list, "chips": int, "n_examples": int, "t": (int, float)},
    "training": {"steps": int, "batch_size": int, "lr": (int, float), "noise_aware_steps": int,
                 "noise_aware_lr": (int, float), "noise_aware_t": (int, float), "clip_sigma": (int, float)},
}
NETWORKS = ("lenet5", "mlp") + _nets.ZOO
#: cost-only networks for the ``[report]`` table: builder and input shape
COST_NETWORKS = {"alexnet": (alexnet, (3, 227, 227)), "vgg16": (vgg16, (3, 224, 224)),
                 "lenet5": (lambda key: lenet5(key=key), (1, 28, 28))}


class StudyError(ValueError):
    """A malformed study file: names the file, the key and what is allowed."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _bad(where: str, key: str, value: Any, allowed: str) -> StudyError:
    return StudyError(f"{where}: {key} = {value!r} is not allowed; expected {allowed}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _build_network(name: str, input_shape: tuple[int, ...], n_classes: int, key: Any,
                   hidden: Any = (256, 128)) -> Any:
    """The study's network ``name`` for inputs of ``input_shape`` (``hidden``: the MLP's
    hidden-layer widths)."""
    if name == "lenet5":
        return lenet5(input_shape, n_classes, key=key)
    return mlp((int(np.prod(input_shape)), *hidden, n_classes), key=key)


def _n_layers(name: str, input_shape: tuple[int, ...], config: dict | None = None,
              hidden: Any = (256, 128)) -> int:
    """Number of convertible (Linear/Conv2d) layers of network ``name`` (built abstractly).

    Raises:
        ValueError: a zoo network's ``config`` its builder does not take.
    """
    if name in _nets.ZOO:
        import types

        ds = types.SimpleNamespace(input_shape=tuple(input_shape), vocab="?" * 128)
        net = eqx.filter_eval_shape(lambda: _nets.build_network(name, ds, config or {}, jax.random.key(0))[0])
    else:
        net = eqx.filter_eval_shape(lambda: _build_network(name, input_shape, 10, jax.random.key(0), hidden))
    is_conv = lambda x: isinstance(x, (eqx.nn.Linear, eqx.nn.Conv2d))
    return sum(1 for x in jax.tree_util.tree_leaves(net, is_leaf=is_conv) if is_conv(x))


def validate_study(cfg: dict, where: str = "<built-in default>") -> dict:
    """Check a whole study configuration before anything runs; returns it (hardware entries
    with their defaults filled in).

    Checked, each with a message naming the file (``where``), the key, the value and what is
    allowed: tables and keys (names and types); ``study.seed`` in [0, 2**32 − 1];
    ``study.chips``, ``study.chip_batch`` >= 1; ``study.times`` finite seconds >= 0 without
    repeats, and not empty when an entry drifts; ``dataset.n_train``, ``n_test`` >= 1 and
    their sum at most the dataset's size; ``training.steps``, ``noise_aware_steps`` >= 1,
    ``batch_size`` in [1, n_train], ``lr`` and ``noise_aware_lr`` finite and > 0 (a negative
    rate climbs the loss, zero trains nothing: both refused, not warned, since a study that
    trains to chance and exits 0 is worse than one that stops), ``noise_aware_t`` finite and
    >= 0, ``clip_sigma`` finite and > 0; ``network.digital_layers`` indices within the
    network's layers (or "first"/"last"); every ``[[hardware]]`` entry
    (:func:`nds.hardware.entry_defaults`: types, ranges, bit widths, names), its cards (they
    exist, are text, and have the kind its builder needs), its tile built (array sizes and
    the tile's own checks), a ``mixed`` entry's ``layers`` (one per network layer, each
    ``"digital"`` or another non-mixed entry); ``[sweep]`` (a resistive card, sizes >= 2,
    finite resistances >= 0); ``[report]``.

    Raises:
        StudyError: the first problem found.
    """
    allowed = set(_SCHEMA) | {"hardware"}
    for k in cfg:
        if k not in allowed:
            raise StudyError(f"{where}: unknown table [{k}]; allowed: {sorted(allowed)}")
    for table, keys in _SCHEMA.items():
        if not isinstance(cfg.get(table), dict):
            raise StudyError(f"{where}: [{table}] must be a table, got {cfg.get(table)!r}")
        for k, v in cfg[table].items():
            if k not in keys:
                raise StudyError(f"{where}: unknown key {table}.{k}; allowed: {sorted(keys)}")
            if not isinstance(v, keys[k]) or isinstance(v, bool):
                raise StudyError(f"{where}: {table}.{k} = {v!r} has the wrong type; expected {keys[k]}")
    if isinstance(cfg["network"]["name"], list):
        return _validate_many(cfg, where)
    s, d, n, tr = cfg["study"], cfg["dataset"], cfg["network"], cfg["training"]
    if not 0 <= s["seed"] <= 2**32 - 1:
        raise _bad(where, "study.seed", s["seed"], "an integer in [0, 4294967295] (a 32-bit PRNG seed)")
    for k in ("chips", "chip_batch"):
        if s[k] < 1:
            raise _bad(where, f"study.{k}", s[k], "an integer >= 1")
    bb = s.get("baseline_bits", 8)
    if not (bb == "fp32" or (isinstance(bb, int) and not isinstance(bb, bool) and 2 <= bb <= 24)):
        raise _bad(where, "study.baseline_bits", bb, "an integer from 2 to 24 (8: int8, the default) or \"fp32\"")
    times = s["times"]
    if any(not _is_num(t) or not math.isfinite(t) or t < 0 for t in times):
        raise _bad(where, "study.times", times, "a list of finite times in seconds >= 0")
    if len(set(float(t) for t in times)) != len(times):
        raise _bad(where, "study.times", times, "times without repeats")
    if d["name"] not in DATASETS:
        raise StudyError(f"{where}: dataset.name = {d['name']!r}; allowed: {list(DATASETS)}")
    size = SIZES[d["name"]]
    for k in ("n_train", "n_test"):
        if k in d and d[k] < 1:
            raise _bad(where, f"dataset.{k}", d[k], "an integer >= 1")
    n_train, n_test = d.get("n_train", SPLITS[d["name"]][0]), d.get("n_test", SPLITS[d["name"]][1])
    if n_train + n_test > size:
        raise StudyError(f"{where}: dataset.n_train + dataset.n_test = {n_train} + {n_test} = {n_train + n_test} is "
                         f"more than the {size} examples of dataset {d['name']!r}")
    if n["name"] not in NETWORKS:
        raise StudyError(f"{where}: network.name = {n['name']!r}; allowed: {list(NETWORKS)}")
    if (n["name"] in _nets.TEXT_NETWORKS) != (d["name"] == "pydoc_topics"):
        raise StudyError(f"{where}: network {n['name']!r} and dataset {d['name']!r} do not fit: "
                         f"{list(_nets.TEXT_NETWORKS)} run on 'pydoc_topics' (text), the others on images")
    net = n["name"]
    if n.get("checkpoint") and net not in _nets.ZOO:
        raise StudyError(f"{where}: network.checkpoint needs a zoo network {list(_nets.ZOO)}, got {net!r}")
    db = n.get("digital_bits", "fp32")
    if not (db == "fp32" or (isinstance(db, int) and 2 <= db <= 24)):
        raise _bad(where, "network.digital_bits", db, "\"fp32\" (default) or an integer from 2 to 24")
    n.setdefault("hidden", list(DEFAULT_STUDY["network"]["hidden"]))
    if not n["hidden"] or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in n["hidden"]):
        raise _bad(where, "network.hidden", n["hidden"], "a non-empty list of hidden-layer widths, integers >= 1")
    try:
        n_layers = _n_layers(n["name"], SHAPES[d["name"]], n.get("config", {}), n["hidden"])
    except ValueError as e:
        raise StudyError(f"{where}: {e}") from None
    for i in n["digital_layers"]:
        if not (i in ("first", "last") or (isinstance(i, int) and not isinstance(i, bool) and -n_layers <= i < n_layers)):
            raise _bad(where, "network.digital_layers", n["digital_layers"],
                       f"'first', 'last' or layer indices in [{-n_layers}, {n_layers}) ({n['name']} has {n_layers} "
                       "Linear/Conv2d layers)")
    for k in ("steps", "noise_aware_steps"):
        if tr[k] < 1:
            raise _bad(where, f"training.{k}", tr[k], "an integer >= 1")
    if not 1 <= tr["batch_size"] <= n_train:
        raise _bad(where, "training.batch_size", tr["batch_size"], f"an integer in [1, dataset.n_train = {n_train}]")
    for k in ("lr", "noise_aware_lr"):
        if not math.isfinite(tr[k]) or tr[k] <= 0:
            raise _bad(where, f"training.{k}", tr[k], "a finite learning rate > 0 (a negative rate climbs the loss, "
                       "zero trains nothing)")
    if not math.isfinite(tr["noise_aware_t"]) or tr["noise_aware_t"] < 0:
        raise _bad(where, "training.noise_aware_t", tr["noise_aware_t"], "a finite time in seconds >= 0")
    if not math.isfinite(tr["clip_sigma"]) or tr["clip_sigma"] <= 0:
        raise _bad(where, "training.clip_sigma", tr["clip_sigma"],
                   "a finite number > 0 (weights are clipped to ± clip_sigma · std; a large value clips nothing)")
    for net in cfg["report"]["networks"]:
        if net not in COST_NETWORKS:
            raise StudyError(f"{where}: report.networks entry {net!r}; allowed: {sorted(COST_NETWORKS)}")
    if cfg["report"]["batch_size"] < 1:
        raise _bad(where, "report.batch_size", cfg["report"]["batch_size"], "an integer >= 1")
    sw = cfg["sweep"]
    try:
        kind = card_kind(sw["card"])
    except (FileNotFoundError, CardError) as err:
        raise StudyError(f"{where}: sweep.card: {err}") from None
    if kind not in ("pcm", "rram"):
        raise StudyError(f"{where}: sweep.card = {sw['card']!r} has kind {kind!r}; a resistive cell (pcm, rram) "
                         "is needed")
    if any(not isinstance(a, int) or isinstance(a, bool) or a < 2 for a in sw["array_sizes"]):
        raise _bad(where, "sweep.array_sizes", sw["array_sizes"], "integers >= 2")
    if any(not _is_num(r) or not math.isfinite(r) or r < 0 for r in sw["r_wire"]):
        raise _bad(where, "sweep.r_wire", sw["r_wire"], "finite resistances in ohms >= 0")
    if sw["fidelity"] not in ("exact", "first_order"):
        raise _bad(where, "sweep.fidelity", sw["fidelity"], "'exact' or 'first_order'")
    if sw["chips"] < 1:
        raise _bad(where, "sweep.chips", sw["chips"], "an integer >= 1")
    se = cfg["sensitivity"]
    if any(not isinstance(p, str) for p in se["params"]):
        raise _bad(where, "sensitivity.params", se["params"], "parameter names (see nds.sensitivity), or ['all']")
    if se["chips"] < 1:
        raise _bad(where, "sensitivity.chips", se["chips"], "an integer >= 1")
    if se["n_examples"] < 1:
        raise _bad(where, "sensitivity.n_examples", se["n_examples"], "an integer >= 1")
    if not (_is_num(se["t"]) and math.isfinite(se["t"]) and se["t"] >= 0):
        raise _bad(where, "sensitivity.t", se["t"], "finite seconds >= 0")
    hw = cfg["hardware"]
    if not isinstance(hw, list) or not hw:
        raise StudyError(f"{where}: [[hardware]] must list at least one entry")
    names = set()
    out = []
    for i, h in enumerate(hw):
        if not isinstance(h, dict):
            raise StudyError(f"{where}: hardware[{i}] must be a table, got {h!r}")
        try:
            e = entry_defaults(h, where, i)
        except HardwareError as err:
            raise StudyError(str(err)) from None
        for key in ("card", "memory", "retention", "adc", "attention_card", "update"):
            if isinstance(e.get(key), str) and e[key]:
                try:
                    card_kind(e[key])
                except (FileNotFoundError, CardError) as err:
                    raise StudyError(f"{where}: hardware[{i}].{key}: {err}") from None
        if e["name"] in names or e["name"] in ("digital", "digital-fp32"):
            raise StudyError(f"{where}: hardware[{i}].name = {e['name']!r} is repeated or reserved ('digital', 'digital-fp32')")
        names.add(e["name"])
        out.append(e)
    entries = {e["name"]: e for e in out}
    for i, e in enumerate(out):
        if e["kind"] == "mixed" and len(e["layers"]) != n_layers:
            raise StudyError(f"{where}: hardware[{i}].layers has {len(e['layers'])} entries; {n['name']} has "
                             f"{n_layers} Linear/Conv2d layers, one entry each ('digital' or an entry name)")
        try:
            tile = build_tile(e, entries)
        except HardwareError as err:
            msg = str(err).removeprefix(f"hardware {e['name']!r}: ")
            raise StudyError(f"{where}: hardware[{i}] ({e['name']!r}): {msg}") from None
        if e.get("standalone", True) and tile_drifts(tile) and not times:
            raise StudyError(f"{where}: study.times = [] but hardware[{i}] ({e['name']!r}) drifts after programming; "
                             "give at least one time in seconds (e.g. times = [1.0])")
    if any(e["kind"] == "insitu" for e in out) and (n["name"] != "mlp" or n["digital_layers"]):
        raise StudyError(f"{where}: hardware of kind 'insitu' trains the MLP on the array: set network.name = 'mlp' "
                         f"and no network.digital_layers (got {n['name']!r}, {n['digital_layers']})")
    cfg["hardware"] = out
    return cfg


def load_study(path: str | pathlib.Path | None = None, **overrides: Any) -> dict:
    """The default study, updated by a TOML file (any subset of its tables) and overrides.

    A file's ``[[hardware]]`` list replaces the default list; entries inherit the default
    entry's keys (array size, bits, noise) unless given.

    Raises:
        StudyError: no such file, invalid TOML, or a configuration that
            :func:`validate_study` rejects (unknown table or key, wrong type, value out of
            range, unknown dataset/network/card, malformed ``[[hardware]]`` entry).
        KeyError: an override ``"table.key"`` whose table does not exist.
    """
    cfg = copy.deepcopy(DEFAULT_STUDY)
    where = "<built-in default>"
    if path is not None:
        where = str(path)
        try:
            user = tomllib.loads(pathlib.Path(path).read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise StudyError(f"{where}: no such study file") from None
        except IsADirectoryError:
            raise StudyError(f"{where}: a folder, not a study file") from None
        except UnicodeDecodeError as e:
            raise StudyError(f"{where}: not a text (UTF-8) TOML file: byte {e.start} is "
                             f"{e.object[e.start:e.start + 1]!r} (a binary file?)") from None
        except OSError as e:
            raise StudyError(f"{where}: cannot be read: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise StudyError(f"{where}: not valid TOML: {e}") from None
        hw = user.pop("hardware", None)
        ud = user.get("dataset", {})
        if isinstance(ud, dict) and ud.get("name") in SPLITS:
            ntr, nte = SPLITS[ud["name"]]
            ud.setdefault("n_train", ntr)
            ud.setdefault("n_test", nte)
        cfg = _merge(cfg, user)
        if hw is not None:
            cfg["hardware"] = hw
    for k, v in overrides.items():
        table, _, key = k.partition(".")
        cfg[table][key] = v
    return validate_study(cfg, where)


def make_tile(h: dict, entries: dict[str, dict] | None = None):
    """The tile (or per-layer tiles) of a validated ``[[hardware]]`` entry.

    Raises:
        StudyError: :func:`nds.hardware.build_tile` raised :class:`nds.hardware.HardwareError`
            (same message).
    """
    try:
        return build_tile(h, entries)
    except HardwareError as e:
        raise StudyError(str(e)) from None


def _version() -> str:
    from . import __version__

    return __version__


def run_study(
    cfg: dict,
    out: str | pathlib.Path,
    *,
    reporter: Reporter | None = None,
) -> dict:
    """Run a validated study configuration, writing to ``out``. Returns the results dict.

    ``reporter``: a :class:`nds.console.Reporter` for progress (a line per finished part,
    bars in a terminal) and notices; default: silent, notices as warnings.

    The study holds a lock on ``out`` (``out/.nds-study.lock``, an OS file lock released when
    the process ends, however it ends) for its whole run: a second study into the same
    folder is refused at once. ``results.json`` records the configuration's hash
    (``config_hash``); a ``results.json`` of another configuration found in ``out`` is kept
    as ``results-<its hash>.json`` (announced) before the new one is written. Every file is
    written atomically (a unique temporary file, then a rename).

    Raises:
        StudyError: another study holds ``out``; for a configuration that did not pass
            :func:`validate_study`: a hardware entry's tile cannot be built (see
            :func:`make_tile`), or a ``sweep.card`` that is not a PCM or RRAM card.
        ValueError: for a configuration that did not pass :func:`validate_study`:
            ``dataset.n_train + dataset.n_test`` larger than the dataset
            (from :func:`nds.datasets.load_dataset`).
    """
    from ._distributed import is_main

    out = pathlib.Path(out)
    if isinstance(cfg["network"]["name"], list):
        return _run_many(cfg, out, reporter=reporter)
    if not is_main():  # under jax.distributed process 0 alone reads and writes ``out``
        return _run_study(cfg, out, reporter=reporter)
    out.mkdir(parents=True, exist_ok=True)
    with _study_lock(out):
        return _run_study(cfg, out, reporter=reporter)


def _study_lock(out: pathlib.Path):
    """An exclusive, non-blocking lock on ``out`` (``filelock``: ``flock`` on
    ``out/.nds-study.lock``). Raises :class:`StudyError` when another process holds it."""
    import contextlib

    import filelock

    @contextlib.contextmanager
    def held():
        lock = filelock.FileLock(out / ".nds-study.lock", blocking=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StudyError(f"{out}: another study is running with this output folder (it holds "
                             f"{out / '.nds-study.lock'}); wait for it to finish, or give another --out") from None
        try:
            yield
        finally:
            lock.release()

    return held()


def _previous_results(path: pathlib.Path, config_hash: str) -> tuple[str | None, pathlib.Path | None]:
    """``(hash, keep_as)`` of a ``results.json`` already at ``path`` that belongs to another
    configuration (``keep_as``: where it will be kept); ``(None, None)`` when there is none or
    it is this configuration's."""
    if not path.exists():
        return None, None
    try:
        old = json.loads(path.read_bytes())
        oh = old.get("config_hash") if isinstance(old, dict) else None
    except (ValueError, UnicodeDecodeError):
        oh = None
    if oh == config_hash:
        return None, None
    if not isinstance(oh, str) or not oh.isalnum():
        import time

        oh = "unknown-" + time.strftime("%Y%m%dT%H%M%S", time.localtime(path.stat().st_mtime))
    return oh, path.with_name(f"results-{oh}.json")


def _run_study(cfg: dict, out: pathlib.Path, *, reporter: Reporter | None) -> dict:
    ui = reporter if reporter is not None else Reporter("study", quiet=True)
    log = ui.log
    warn = log if reporter is not None else _warn  # a console shows notices; a library caller gets warnings
    parts = _Parts(out, log, warn)
    config_hash = _hash(cfg)
    old_hash, keep_as = _previous_results(out / "results.json", config_hash) if _is_main() else (None, None)
    if keep_as is not None:
        log(f"{out / 'results.json'} holds another configuration ({old_hash}); it will be kept as {keep_as}")
    s, d, n, tr = cfg["study"], cfg["dataset"], cfg["network"], cfg["training"]
    key = jax.random.key(s["seed"])
    k_init, k_train, k_mc, k_na = streams(key, "init", "train", "chips", "noise_aware")
    ds = load_dataset(d["name"], n_train=d["n_train"], n_test=d["n_test"], seed=s["seed"],
                      **({"context": d["context"]} if "context" in d else {}))
    xtr, ytr, xte, yte = (jnp.asarray(a) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))
    n_classes = 10
    zoo = n["name"] in _nets.ZOO
    state0 = None
    if not zoo:
        net = _build_network(n["name"], ds.input_shape, n_classes, k_init, n["hidden"])
    else:
        try:
            net, state0 = _nets.build_network(n["name"], ds, n.get("config", {}), k_init)
        except ValueError as e:
            raise StudyError(str(e)) from None
    metric, mname, idt = _nets.metric_fn(n["name"]), _nets.metric_name(n["name"]), _nets.input_dtype(n["name"])
    dbits = None if n.get("digital_bits", "fp32") == "fp32" else n["digital_bits"]
    like = _nets.digital_like(n["name"], net, state0)
    net_ckpt = n.get("checkpoint", "")

    # 1. digital training --------------------------------------------------------------
    dep_train = {"dataset": d, "network": n, "seed": s["seed"], "steps": tr["steps"], "bs": tr["batch_size"],
                 "lr": tr["lr"]}
    if net_ckpt:
        try:
            dep_train["checkpoint_sha256"] = _nets.checkpoint_digest(net_ckpt)
        except FileNotFoundError:
            raise StudyError(f"network.checkpoint = {net_ckpt!r}: no such file") from None

    def train_digital(ckpt: pathlib.Path | None):
        import optax

        if zoo and net_ckpt:
            from .nn._torch import load_state_dict

            return load_state_dict(like, net_ckpt)
        with ui.part("train digital", tr["steps"]) as upd:
            if zoo and state0 is not None:  # batch norm on batch statistics, then frozen
                return _nets.train_network(n["name"], net, state0, xtr, ytr, tr, key=k_train, progress=upd)
            if zoo:
                m, _ = _fit_resumable(ckpt, log, warn, net, xtr, ytr, key=k_train, steps=tr["steps"],
                                      batch_size=tr["batch_size"], optimizer=_nets.optimizer(tr),
                                      filter_spec=_nets.every_array(net), progress=upd)
                return m
            sched = optax.cosine_decay_schedule(tr["lr"], tr["steps"])
            m, _ = _fit_resumable(ckpt, log, warn, net, xtr, ytr, key=k_train, steps=tr["steps"],
                                  batch_size=tr["batch_size"], optimizer=optax.adam(sched), progress=upd)
        return m

    digital, cached = parts.model("digital", dep_train, like, train_digital)
    if cached:
        log("digital model loaded from parts/")
    rows: list[dict] = []
    # accuracy through nds.evaluate's default metric (with its test-set error); other metrics
    # (bits per character) as the network's own scalar metric
    ev_metric = None if mname == "accuracy" else metric

    # the digital baseline at the hardware's bit widths (int8 by default: weights and
    # activations quantized like the analog tiles' DAC, its MACs and weight reads at int8
    # energy); the float datapath is kept as a reference row ("digital-fp32")
    bb = s.get("baseline_bits", 8)
    bb = None if bb == "fp32" else int(bb)
    baselines = {"digital": DigitalTile(bits_weight=bb, bits_activation=bb)}
    if bb is not None:
        baselines["digital-fp32"] = DigitalTile()

    def digital_row(name: str, tile: DigitalTile):
        dmodel = analogize(digital, tile, digital_bits=dbits)
        with ui.part(f"evaluate {name}"):
            ev = evaluate(digital if tile.bits_weight is None else dmodel, xte, yte, key=k_mc, num_chips=1,
                          metric=ev_metric).rows()[0]
        c = cost(dmodel, ds.input_shape, input_dtype=idt)
        row = {"hardware": name, "kind": "digital", "card": "digital_45nm", "training": "standard",
               "t_seconds": None, "metric": mname, mname: {k: v for k, v in ev.items() if k != "t_seconds"},
               "energy_j": c.energy_j, "latency_s": c.latency_s, "energy_breakdown_j": _breakdown(c),
               "offchip_bytes": c.total.offchip_bytes, "area_m2": c.total.area_m2, "num_chips": 1}
        if zoo:
            row["energy_split_j"] = _nets.energy_split(dmodel, c)
        return row

    cost_tables: dict[str, Any] = {}
    reports: dict[str, CostReport] = {}
    for name, tile in baselines.items():
        rows.append(parts.json(f"row_{name}", {"train": dep_train, "bits": tile.bits_weight},
                               lambda name=name, tile=tile: digital_row(name, tile), log=log))
        reports[name] = cost(analogize(digital, tile, digital_bits=dbits), ds.input_shape, input_dtype=idt)
        cost_tables[name] = reports[name].rows()

    entries = {h["name"]: h for h in cfg["hardware"]}
    digital_layers = [int(i) if not isinstance(i, str) else i for i in n["digital_layers"]]
    for h in cfg["hardware"]:
        if not h.get("standalone", True):
            continue
        tile = make_tile(h, entries)
        amodel = analogize(digital, tile, digital=digital_layers, digital_bits=dbits,
                           attention=_attention_tile(h, n_layers=len(getattr(digital, "blocks", ())) or 1))
        c = cost(amodel, ds.input_shape, input_dtype=idt)
        reports[h["name"]] = c
        cost_tables[h["name"]] = c.rows()
        drifts = tile_drifts(tile)
        random = tile_random(tile)
        times = list(s["times"]) if drifts else None
        card = h.get("card")

        def mc_rows(model, training: str, model_dep: Any) -> list[dict]:
            chips = s["chips"] if random else 1
            dep = {"model": model_dep, "hw": h, "times": times, "chips": chips, "seed": s["seed"], "ds": d,
                   "entries": entries if h["kind"] == "mixed" else None}

            def make():
                when = "not aged" if times is None else ", ".join(fmt_duration(t) for t in times)
                with ui.part(f"{h['name']} {training}: {chips} chip{'s' * (chips > 1)} ({when})", chips,
                             "chips") as upd:
                    ev = evaluate(model, xte, yte, key=k_mc, num_chips=chips, t=times, metric=ev_metric,
                                  batch_size=s["chip_batch"], progress=upd)
                res = []
                for r in ev.rows():
                    t = r.pop("t_seconds")
                    row = {"hardware": h["name"], "kind": h["kind"], "card": card, "training": training,
                           "t_seconds": t, "metric": mname, mname: r, "energy_j": c.energy_j,
                           "latency_s": c.latency_s, "energy_breakdown_j": _breakdown(c),
                           "offchip_bytes": c.total.offchip_bytes, "area_m2": c.total.area_m2,
                           "num_chips": chips}
                    if zoo:
                        row["attention"] = h.get("attention", "digital")
                        row["energy_split_j"] = _nets.energy_split(amodel, c)
                    res.append(row)
                return res

            return parts.json(f"rows_{h['name']}_{training}", dep, make, log=log)

        rows += mc_rows(amodel, "standard", dep_train)
        if h["kind"] == "insitu":  # the same MLP trained on the array (nds.insitu._study)
            from .insitu._study import insitu_rows

            flat = lambda a: a.reshape(a.shape[0], -1)
            sizes = (int(np.prod(ds.input_shape)), *n["hidden"], n_classes)
            r = insitu_rows(h, sizes, (flat(xtr), ytr, flat(xte), yte), key=stream(k_na, f"insitu/{h['name']}"),
                            parts=parts, dep={"hw": h, "ds": d, "sizes": sizes, "seed": s["seed"]}, log=log,
                            bar=_bar(ui),
                            energy_j=c.energy_j, latency_s=c.latency_s)
            rows.append(r)
            c = reports[h["name"]] = c.with_update(r["update_energy_per_example_j"], r["update_time_per_example_s"])
            cost_tables[h["name"]] = c.rows()
        if not h.get("noise_aware", random):
            continue
        # noise-aware fine-tuning on this hardware -------------------------------------
        dep_na = {"base": dep_train, "hw": h, "steps": tr["noise_aware_steps"], "lr": tr["noise_aware_lr"],
                  "t": tr["noise_aware_t"] if drifts else None, "dl": n["digital_layers"],
                  "clip": tr["clip_sigma"], "entries": entries if h["kind"] == "mixed" else None,
                  "key_index": len(rows)}

        def train_na(ckpt: pathlib.Path):
            import optax

            with ui.part(f"noise-aware training on {h['name']}", tr["noise_aware_steps"]) as upd:
                m, _ = _fit_resumable(ckpt, log, warn, amodel, xtr, ytr, key=jax.random.fold_in(k_na, len(rows)),
                                      steps=tr["noise_aware_steps"], batch_size=tr["batch_size"],
                                      optimizer=optax.adam(tr["noise_aware_lr"]), noise_aware=True,
                                      t_drift=tr["noise_aware_t"] if drifts else None, clip_sigma=tr["clip_sigma"],
                                      progress=upd)
            return m

        na_model, cached = parts.model(f"noise_aware_{h['name']}", dep_na, amodel, train_na)
        if cached:
            log(f"noise-aware model on {h['name']} loaded from parts/")
        rows += mc_rows(na_model, "noise-aware", dep_na)

    main = _is_main()
    if main:
        with atomic_path(out / "energy_breakdown.png") as tmp:
            plot_energy_breakdown(reports, tmp, title=f"{n['name']} on {d['name']}: energy per inference by layer")
    # cost-only report of larger networks (shapes only, no accuracy) ----------------------
    report_rows = []
    bs = cfg["report"]["batch_size"]
    for net_name in cfg["report"]["networks"]:
        log(f"cost of {net_name} on every tile")
        build, shape = COST_NETWORKS[net_name]
        hw_list = [{"name": "digital", "kind": "digital"}] + [h for h in cfg["hardware"] if h["kind"] != "mixed"]
        for h in hw_list:
            tile = baselines["digital"] if h["name"] == "digital" else make_tile(h, entries)
            am = eqx.filter_eval_shape(lambda: analogize(build(key=jax.random.key(0)), tile))
            rep = cost(am, shape, batch_size=bs)
            report_rows.append(report_row(net_name, h["name"], rep, accuracy=None, dataset=None))
    sweep_rows = None
    sw = cfg["sweep"]
    if sw["array_sizes"]:
        from . import cells as _cells
        from ._cards import load_card
        from .sweep import plot_sweep, sweep_array

        ckind = card_kind(sw["card"])
        ccls = {"pcm": _cells.PCM, "rram": _cells.RRAM}.get(ckind)
        if ccls is None:
            raise StudyError(f"sweep.card = {sw['card']!r} has kind {ckind!r}; a resistive cell is needed")
        cell = load_card(sw["card"], ccls)

        def do_sweep():
            n_cfg = len(sw["array_sizes"]) * len(sw["r_wire"])
            with ui.part("array size × wire resistance sweep", n_cfg, "configurations") as upd:
                count = iter(range(1, n_cfg + 1))
                r = sweep_array(digital, (xte, yte), card=cell, key=k_mc, array_sizes=sw["array_sizes"],
                                r_wire=sw["r_wire"], num_chips=sw["chips"], input_shape=ds.input_shape,
                                fidelity=sw["fidelity"], batch_size=s["chip_batch"],
                                progress=lambda row: upd(next(count)))
            return json.loads(json.dumps(r, default=float))

        sweep_rows = parts.json("sweep", {"base": dep_train, "sweep": sw, "seed": s["seed"]}, do_sweep, log=log)
        if _is_main():
            with atomic_path(out / "sweep.png") as tmp:
                plot_sweep(sweep_rows, tmp, title=f"{n['name']} on {d['name']}, card {sw['card']}")

    sens = _sensitivity_rows(cfg, digital, (xte, yte), entries, digital_layers, k_mc, parts, dep_train, log)
    results = {
        "config_hash": config_hash,
        "nds_version": _version(),
        "study": cfg,
        "dataset": {"name": ds.name, "n_test": int(len(ds.y_test)), "n_train": int(len(ds.y_train))},
        "rows": rows,
        "sweep": sweep_rows,
        "sensitivity": sens,
        "cost": cost_tables,
        "report": [report_row(n["name"], name, rep, accuracy=_acc_of(rows, name), dataset=ds.name,
                              n_test=int(len(ds.y_test))) for name, rep in reports.items()] + report_rows,
        "timing": ui.timing_summary(),
    }
    if not main:
        return results
    old_hash, keep_as = _previous_results(out / "results.json", config_hash)
    if keep_as is not None:
        import os

        os.replace(out / "results.json", keep_as)
        warn(f"{out / 'results.json'} of another configuration ({old_hash}) kept as {keep_as}")
    atomic_write(out / "results.json", json.dumps(results, indent=1).encode())
    with atomic_path(out / "accuracy_vs_time.png") as tmp:
        plot_accuracy_vs_time(results, tmp)
    return results


def _bar(ui: Reporter) -> Callable[[str, int], tuple[Callable[..., None], Callable[[], None]]]:
    """``bar(desc, total) -> (update, done)``: a part of ``ui`` opened by ``bar`` and closed by
    ``done()`` (for code that reports progress through a pair of callbacks)."""

    def bar(desc: str, total: int):
        cm = ui.part(desc, total)
        upd = cm.__enter__()
        return upd, (lambda: cm.__exit__(None, None, None))

    return bar


def _fit_resumable(ckpt: pathlib.Path | None, log: Callable[[str], None], warn: Callable[[str], None], *args: Any,
                   **kwargs: Any):
    """:func:`nds.train.fit` keeping a checkpoint at ``ckpt`` (every 100 steps) and resuming
    from it; a checkpoint that cannot be read back is named, moved to ``parts/damaged/`` and
    training starts over."""
    import os

    from .train import CheckpointError

    if ckpt is None:  # a process other than 0 under jax.distributed: process 0 keeps the checkpoint
        return fit(*args, **kwargs)
    if ckpt.exists():
        log(f"resuming training from {ckpt}")
    try:
        return fit(*args, checkpoint=ckpt, checkpoint_every=100, **kwargs)
    except CheckpointError as e:
        dest = ckpt.parent / "damaged"
        dest.mkdir(exist_ok=True)
        os.replace(ckpt, dest / ckpt.name)
        warn(f"{e}; moved to {dest / ckpt.name}; training starts over")
        return fit(*args, checkpoint=ckpt, checkpoint_every=100, **kwargs)


def _sensitivity_rows(cfg, digital, data, entries, digital_layers, key, parts, dep_train, log) -> dict | None:
    """``{hardware name: nds.sensitivity rows}`` for the ``[sensitivity]`` table (None when
    its ``params`` list is empty). Each entry gets the names its model has; drifting tiles are
    aged to ``sensitivity.t``."""
    from .sensitivity import hardware_parameters, sensitivity

    se = cfg["sensitivity"]
    if not se["params"]:
        return None
    x, y = (a[: se["n_examples"]] for a in data)
    out = {}
    for h in cfg["hardware"]:
        if not h.get("standalone", True):
            continue
        tile = make_tile(h, entries)
        model = analogize(digital, tile, digital=digital_layers)
        have = hardware_parameters(model)
        names = have if se["params"] == ["all"] else [p for p in se["params"] if p.split(":")[-1] in have]
        if not names:
            continue
        t = float(se["t"]) if tile_drifts(tile) else None

        def make(model=model, names=names, t=t):
            return sensitivity(model, (x, y), params=names, key=key, num_chips=se["chips"], t=t).rows()

        out[h["name"]] = parts.json(f"sensitivity_{h['name']}", {"base": dep_train, "hw": h, "sens": se}, make,
                                    log=log)
    return out


def _breakdown(rep: CostReport) -> dict[str, float]:
    return {k: float(rep.total.energy_j.get(k, 0.0)) for k in ENERGY_CATEGORIES}


def _acc_of(rows: list[dict], hw: str) -> float | None:
    """Mean metric (accuracy, or bits per character) of the first standard row of ``hw``
    (earliest time)."""
    for r in rows:
        if r["hardware"] == hw and r["training"] == "standard":
            return r[r.get("metric", "accuracy")]["mean"]
    return None


def _attention_tile(h: dict, n_layers: int = 1):
    """The attention tile of a hardware entry's ``attention`` key: None (keep digital) or a
    :class:`nds.tiles.GainCellAttention` from ``attention_card`` whose tokens are written
    every ``n_layers · t_layer``."""
    kind = h.get("attention", "digital")
    if kind == "digital":
        return None
    from ._cards import load_card
    from .cells._gain_cell import GainCell
    from .tiles._gain_cell import GainCellAttention

    cell = load_card(h.get("attention_card", "gain_cell_leroux2025"), GainCell)
    return GainCellAttention(cell=cell, t_token=n_layers * float(cell.t_layer))


def _sub_config(cfg: dict, nm: str, where: str) -> dict:
    """The study of network ``nm`` of a ``network.name`` list: the configuration with
    ``network.overrides.<nm>`` merged in (a ``hardware`` list replaces the entries; a new
    dataset name brings its own default sizes unless given). Not yet validated.

    Raises:
        StudyError: an override that is not a table of study tables.
    """
    sub = copy.deepcopy(cfg)
    over = copy.deepcopy(sub["network"].pop("overrides", {}).get(nm, {}))
    if not isinstance(over, dict) or any(not isinstance(v, (dict, list)) for v in over.values()):
        raise StudyError(f"{where}: network.overrides.{nm} must be a table of study tables, got {over!r}")
    sub["network"]["name"] = nm
    hw = over.pop("hardware", None)
    sub = _merge(sub, over)
    if hw is not None:
        sub["hardware"] = hw
    ud = over.get("dataset", {})
    if isinstance(ud, dict) and ud.get("name") in SPLITS:  # a new dataset: its own defaults
        sub["dataset"] = dict(zip(("n_train", "n_test"), SPLITS[ud["name"]]), **ud)
    return sub


def _validate_many(cfg: dict, where: str) -> dict:
    """Validate a study with a list of networks: every name known, overrides only for listed
    networks, and each network's own study (:func:`_sub_config`) valid; messages name
    ``network.overrides.<network>``. Returns ``cfg``."""
    names = cfg["network"]["name"]
    if not names or any(not isinstance(nm, str) or nm not in NETWORKS for nm in names) or len(set(names)) != len(
            names):
        raise _bad(where, "network.name", names, f"a network or a list of distinct networks from {list(NETWORKS)}")
    for nm in cfg["network"].get("overrides", {}):
        if nm not in names:
            raise StudyError(f"{where}: network.overrides.{nm}: {nm!r} is not in the list network.name = {names!r}")
    for nm in names:
        validate_study(_sub_config(cfg, nm, where), f"{where}: network.overrides.{nm}")
    return cfg


def _run_many(cfg: dict, out: pathlib.Path, *, reporter: Reporter | None = None) -> dict:
    """One study per network of a ``network.name`` list, in ``out/<network>/``, each with its
    ``network.overrides.<network>`` tables merged in; ``results.json`` holds
    ``{"study", "studies": {network: results}}``."""
    studies = {}
    for nm in cfg["network"]["name"]:
        sub = validate_study(_sub_config(cfg, nm, str(out)), f"network.overrides.{nm}")
        if reporter is not None:
            reporter.log(f"network {nm}")
        studies[nm] = run_study(sub, out / nm, reporter=reporter)
    results = {"study": cfg, "studies": studies}
    if _is_main():
        atomic_write(out / "results.json", json.dumps(results, indent=1).encode())
    return results


def report_row(network: str, hardware: str, rep: CostReport, *, accuracy: float | None, dataset: str | None,
               n_test: int | None = None) -> dict:
    """One row of the section VIII table: accuracy with its dataset and test-set size, energy
    per inference by category, off-chip bytes, latency, throughput at the batch size, area and
    area per MAC unit, bits, which layers ran where, whether figures are measured, and the
    programming energy and time per chip (paid once, not per inference; ``CostReport.programming``)."""
    t = rep.total
    return {
        "network": network, "hardware": hardware, "dataset": dataset, "n_test": n_test, "accuracy": accuracy,
        "energy_j": rep.energy_j, "energy_breakdown_j": {k: float(t.energy_j.get(k, 0.0)) for k in ENERGY_CATEGORIES},
        "offchip_bytes": t.offchip_bytes, "latency_s": rep.latency_s, "throughput_inf_per_s": rep.throughput,
        "batch_size": rep.batch_size, "area_m2": t.area_m2,
        "area_per_mac_unit_m2": t.area_m2 / t.mac_units if t.mac_units else None, "macs": t.macs,
        "bits_weight": t.bits_weight, "bits_activation": t.bits_activation,
        "update_energy_per_example_j": t.update_energy_j, "update_latency_per_example_s": t.update_latency_s,
        "programming_energy_j": t.program_energy_j, "programming_time_s": t.program_time_s,
        "layers": {name: c.hardware for name, _, c in rep.layers},
        "measured": t.measured, "energy_source": "simulated from cards" if not t.measured else "measured",
    }


#: kept for callers of the former name; see :func:`nds.console.fmt_duration`
_fmt_t = fmt_duration

_TIME_TICKS = ((1.0, "1 s"), (60.0, "1 min"), (3600.0, "1 h"), (86400.0, "1 d"), (2592000.0, "1 mo"),
               (31536000.0, "1 y"), (315360000.0, "10 y"))


def plot_accuracy_vs_time(results: dict, path: str | pathlib.Path) -> None:
    """Accuracy (%) against time since programming for every row of ``results``.

    Rows with times (drifting devices) are lines, mean over chips with a band from the 5th to
    the 95th percentile over chips and error bars of ±1.96 test-set standard errors (the
    uncertainty from the finite test set, ``accuracy.test_se``); rows without a time (digital,
    and hardware that does not age) are horizontal lines across the plot, labelled "no
    ageing". One colour per hardware, solid for noise-aware and dotted for standard training;
    the legend sits outside the axes, so data never hide it. Writes ``path`` (PNG/PDF by
    suffix).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    timed = [r for r in rows if r["t_seconds"] is not None]
    ts = sorted({r["t_seconds"] for r in timed}) or [1.0, 31536000.0]
    t_lo, t_hi = max(min(ts), 1e-3) / 2, max(ts) * 2
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    hw_names = list(dict.fromkeys(r["hardware"] for r in rows))
    base = ("digital", "digital-fp32")
    color = {h: f"C{i % 10}" for i, h in enumerate(h for h in hw_names if h not in base)}
    color.update({"digital": "k", "digital-fp32": "0.55"})
    mname = rows[0].get("metric", "accuracy") if rows else "accuracy"
    f = 100.0 if mname == "accuracy" else 1.0
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["hardware"], r["training"]), []).append(r)
    chips = sorted({r["num_chips"] for r in rows if r["t_seconds"] is not None}) or [1]
    n_timed = sum(1 for rs in groups.values() if any(r["t_seconds"] is not None for r in rs))
    i_timed = 0
    for (hw, training), rs in groups.items():
        ls = "-" if training == "noise-aware" else ":"
        c = color[hw]
        if all(r["t_seconds"] is None for r in rs):
            a = rs[0][mname]
            ax.plot([t_lo, t_hi], [f * a["mean"]] * 2, color=c, ls="--" if hw in base else ls, lw=1.2,
                    label=f"{hw}, {training} (no ageing)")
            if a["n"] > 1:
                ax.fill_between([t_lo, t_hi], [f * a["p5"]] * 2, [f * a["p95"]] * 2, color=c, alpha=0.08)
            continue
        rs = sorted((r for r in rs if r["t_seconds"] is not None), key=lambda r: r["t_seconds"])
        # markers of different rows side by side (a few % of a decade apart), not on top of each other
        dodge = 10 ** (0.06 * (i_timed - (n_timed - 1) / 2))
        i_timed += 1
        t = [r["t_seconds"] for r in rs]
        m = [f * r[mname]["mean"] for r in rs]
        se = [1.96 * f * (r[mname].get("test_se") or 0.0) for r in rs]
        ax.errorbar([v * dodge for v in t], m, yerr=se, color=c, ls=ls, marker="o", ms=4, capsize=2, lw=1.4,
                    elinewidth=0.8, label=f"{hw}, {training}")
        ax.fill_between(t, [f * r[mname]["p5"] for r in rs], [f * r[mname]["p95"] for r in rs],
                        color=c, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlim(t_lo, t_hi)
    ticks = [(v, l) for v, l in _TIME_TICKS if t_lo <= v <= t_hi]
    ax.set_xticks([v for v, _ in ticks], [l for _, l in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("time since programming")
    ds = results["dataset"]
    label = "test accuracy (%)" if mname == "accuracy" else "test bits per character (lower is better)"
    ax.set_ylabel(f"{label}, {ds['name']}, n = {ds['n_test']}")
    nchips = "/".join(str(c) for c in chips)
    ax.set_title(f"mean over {nchips} chips; band: 5th–95th percentile over chips;\n"
                 "error bars: ±1.96 test-set standard errors", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
