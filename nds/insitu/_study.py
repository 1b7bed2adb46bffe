"""The ``insitu`` hardware kind of ``nds study``: an MLP trained on the array beside the same
device programmed with digitally (and noise-aware) trained weights.

An entry of kind ``"insitu"`` (keys, defaults and allowed values in
:data:`nds.hardware.INSITU_KEYS`, re-exported here) names a read cell
card (``card``: conductance window, read noise) and a pulse-response card (``update``). The
study then

* builds the *equal-device* inference tile (:meth:`InSituTile.as_crossbar`: same cell, array
  size, forward converters and output noise; the cell quantized to ``n_up`` levels, the
  states the pulse response resolves; :func:`equal_device_tile`) and runs the usual rows on it: ``training =
  "standard"`` (digital training, then programming) and ``"noise-aware"``;
* trains the same MLP *in situ* on ``insitu_chips`` chips (each its own D2D sample, initial
  state and pulse noise), ``epochs`` epochs of :func:`nds.insitu.train_epoch` with the entry's
  rule, recording the test accuracy after every epoch, and adds one row with ``training =
  "in-situ"``: the final accuracy over chips, the accuracy per epoch, and the update energy
  and time of the whole training (pulses, half-selected cells, lines, random bits).

Device variants for the sweeps (effect of asymmetry, non-linearity, number of states, C2C):
``states_scale`` multiplies ``n_up`` and ``n_down`` (finer pulses; the additive C2C noise of a
pulse is divided by it, so its ratio to the step stays); ``symmetric = true`` sets the
depression branch equal to the potentiation branch (``n_down = n_up``, ``nl_down = nl_up``, no
up/down D2D imbalance); ``linear = true`` sets ``nl_up = nl_down = 0`` (NeuroSim cards);
``c2c_scale`` multiplies both C2C spreads (0: noise-free pulses).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._keys import stream
from .._cards import card_path, load_card
from .._monte_carlo import summarize
from ..cells import PCM, RRAM, ExpStep, LinearStep, SoftBounds
from ..converters._uniform import UniformADC, UniformDAC
from ..hardware import INSITU_KEYS, bits_or_none
from ._network import InSituNetwork, accuracy, train_epoch
from ._rules import AnalogRule, ManhattanRule, StochasticPulseRule
from ._tile import PAIR_MODES, InSituTile, UpdateCost

__all__ = ["INSITU_KEYS", "UPDATE_CLASSES", "RULES", "build_insitu_tile", "equal_device_tile", "insitu_rows"]

UPDATE_CLASSES = {c.card_kind: c for c in (LinearStep, SoftBounds, ExpStep)}
RULES = ("stochastic", "manhattan", "analog")
_CELLS = {"pcm": PCM, "rram": RRAM}


def _kind(name: str) -> str:
    return tomllib.loads(card_path(name).read_text())["meta"]["kind"]


def build_insitu_tile(h: dict) -> InSituTile:
    """The :class:`InSituTile` of a validated ``insitu`` entry (device variants applied).

    Raises:
        ValueError: a card of the wrong kind, an unknown ``pair`` or ``rule``, or a
            non-positive ``states_scale``, ``bl``, ``epochs``, ``batch_size`` or
            ``insitu_chips``; the message names the key.
    """
    ck, uk = _kind(h["card"]), _kind(h["update"])
    if ck not in _CELLS:
        raise ValueError(f"card {h['card']!r} has kind {ck!r}; an insitu entry needs a resistive cell ({', '.join(_CELLS)})")
    if uk not in UPDATE_CLASSES:
        raise ValueError(f"update {h['update']!r} has kind {uk!r}; allowed: {sorted(UPDATE_CLASSES)}")
    if h["pair"] not in PAIR_MODES:
        raise ValueError(f"pair = {h['pair']!r}; allowed: {PAIR_MODES}")
    if h["rule"] not in RULES:
        raise ValueError(f"rule = {h['rule']!r}; allowed: {RULES}")
    for k in ("states_scale", "bl", "epochs", "batch_size", "insitu_chips"):
        if not h[k] > 0:
            raise ValueError(f"{k} = {h[k]!r}: must be > 0")
    if h["c2c_scale"] < 0:
        raise ValueError(f"c2c_scale = {h['c2c_scale']!r}: must be >= 0")
    dev = load_card(h["update"], UPDATE_CLASSES[uk])
    sc = h["states_scale"]
    rep = {"n_up": float(dev.n_up) * sc, "n_down": float(dev.n_down) * sc,
           # finer pulses: the C2C noise of a pulse keeps its ratio to the step
           "range_c2c": float(dev.range_c2c) * h["c2c_scale"] / sc, "step_c2c": float(dev.step_c2c) * h["c2c_scale"]}
    if h["symmetric"]:
        rep.update(n_down=rep["n_up"], asym_d2d=0.0)
        if isinstance(dev, ExpStep):
            rep["nl_down"] = float(dev.nl_up)
    if h["linear"] and isinstance(dev, ExpStep):
        rep.update(nl_up=0.0, nl_down=0.0)
    dev = dataclasses.replace(dev, **rep)
    # device numbers as arrays: variants of one card share one compiled training step
    dev = jax.tree.map(lambda v: jnp.asarray(v, jnp.result_type(float)) if isinstance(v, float) else v, dev)
    cell = load_card(h["card"], _CELLS[ck])
    bits = bits_or_none
    return InSituTile(cell=cell, device=dev, rows=h["rows"], cols=h["cols"],
                      dac=UniformDAC(bits=bits(h["dac_bits"])),
                      adc=UniformADC(bits=bits(h["adc_bits"]), y_range=float(h["adc_range"])),
                      bdac=UniformDAC(bits=bits(h["bdac_bits"])),
                      badc=UniformADC(bits=bits(h["badc_bits"]), y_range=float(h["badc_range"])),
                      out_noise=float(h["out_noise"]), back_noise=float(h["back_noise"]), pair=h["pair"],
                      w_max=float(h["w_max"]), half_select=h["half_select"])


def equal_device_tile(h: dict):
    """The inference tile (:class:`nds.tiles.CrossbarTile`) of the same device as the entry's
    in-situ tile, its cell quantized to ``n_up`` levels (the states the pulse response
    resolves): digitally trained weights are programmed onto it."""
    t = build_insitu_tile(h)
    return t.as_crossbar(levels=max(2, int(round(float(t.device.n_up)))))


def _rule(h: dict):
    if h["rule"] == "stochastic":
        return StochasticPulseRule(lr=float(h["lr"]), bl=h["bl"])
    if h["rule"] == "manhattan":
        return ManhattanRule()
    return AnalogRule(lr=float(h["lr"]))


def insitu_rows(h: dict, sizes: tuple[int, ...], data: tuple, *, key, parts: Any, dep: Any,
                log: Callable[[str], None], bar: Callable, energy_j: float, latency_s: float) -> dict:
    """Train the MLP ``sizes`` in situ on ``h["insitu_chips"]`` chips and return the study row
    (``training = "in-situ"``; schema in the module docstring of :mod:`nds.study`).

    ``data = (x_train, y_train, x_test, y_test)`` (inputs flattened); ``parts`` is the
    study's store of finished parts (the row is saved and reused when ``dep`` matches);
    ``energy_j``, ``latency_s``: per-inference cost of the equal-device tile.
    """
    xtr, ytr, xte, yte = data
    tile = build_insitu_tile(h)
    net = InSituNetwork.mlp(sizes, tile)
    rule = _rule(h)
    chips, epochs = h["insitu_chips"], h["epochs"]

    def train_chip(c: int) -> dict:
        """One chip trained from scratch: test accuracy per epoch and the summed update cost."""
        upd, done = bar(f"{h['name']} in-situ chip {c} ({epochs} epochs)", epochs)
        kc = jax.random.fold_in(key, c)
        states = net.init(key=kc)
        total = UpdateCost.zero()
        curve = []
        for ep in range(epochs):
            states, cost, _ = train_epoch(net, states, xtr, ytr, rule, key=jax.random.split(stream(kc, "train"), epochs)[ep],
                                          batch_size=h["batch_size"], refresh_every=h["refresh_every"])
            total = jax.tree.map(jnp.add, total, cost)
            curve.append(float(accuracy(net, states, xte, yte, key=jax.random.split(stream(kc, "test"), epochs)[ep])))
            upd(ep + 1)
        done()
        log(f"{h['name']} in-situ chip {c}: test accuracy per epoch "
            + " ".join(f"{100 * a:.1f}%" for a in curve) + f", update energy {float(total.energy_j):.3g} J")
        return {"curve": curve, "cost": total.as_dict()}

    def make():
        # every chip is its own part: an interrupted study loses at most the chip in flight
        per_chip = [parts.json(f"insitu_{h['name']}_chip{c}", {"row": dep, "chip": c}, lambda c=c: train_chip(c),
                               log=log) for c in range(chips)]
        curves = [p["curve"] for p in per_chip]
        finals = [cv[-1] for cv in curves]
        costs = [p["cost"] for p in per_chip]
        n_ex = float(len(ytr) // h["batch_size"] * h["batch_size"]) * epochs
        mean_cost = {k: float(np.mean([c[k] for c in costs])) for k in costs[0]}
        return {
            "hardware": h["name"], "kind": "insitu", "card": h["card"], "update_card": h["update"],
            "training": "in-situ", "t_seconds": None,
            "accuracy": dict(summarize(np.array(finals)), samples=finals),
            "accuracy_per_epoch": {"mean": list(np.mean(curves, axis=0)), "samples": curves},
            "energy_j": energy_j, "latency_s": latency_s,
            "update_energy_j": mean_cost["energy_j"], "update_time_s": mean_cost["time_s"],
            "update_energy_per_example_j": mean_cost["energy_j"] / n_ex,
            "update_time_per_example_s": mean_cost["time_s"] / n_ex,
            "update_cost": mean_cost, "examples_seen": n_ex,
            "rule": h["rule"], "epochs": epochs, "num_chips": chips,
            "device": {"n_up": float(tile.device.n_up), "n_down": float(tile.device.n_down),
                       "nl_up": float(getattr(tile.device, "nl_up", 0.0)),
                       "nl_down": float(getattr(tile.device, "nl_down", 0.0)),
                       "dw_min": float(tile.dw_min)},
        }

    return parts.json(f"row_{h['name']}_in-situ", dep, make, log=log)
