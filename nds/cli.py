"""The ``nds`` command line (typer): ``nds study [STUDY.toml]``, ``nds cards``."""

from __future__ import annotations

import pathlib
import sys
import time
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, help="nds: mixed-signal near-data DNN hardware simulation.")


def _fmt_energy(j: float) -> str:
    if j == 0:
        return "0"
    for unit, f in (("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if j >= f:
            return f"{j / f:.3g} {unit}"
    return f"{j:.3g} J"


def _fmt_time(s: float) -> str:
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s:.3g} s"


def results_table(results: dict) -> Table:
    """The study's table: one row per (hardware, training, time)."""
    from .study import _fmt_t

    ds = results["dataset"]
    t = Table(title=f"nds study: {ds['name']} ({ds['n_test']} test images), accuracy over chips")
    for c in ("hardware", "training", "t", "chips", "acc mean", "acc std", "acc p5", "energy/inf", "latency/inf"):
        t.add_column(c, justify="right" if c not in ("hardware", "training") else "left")
    for r in results["rows"]:
        a = r["accuracy"]
        t.add_row(r["hardware"], r["training"], _fmt_t(r["t_seconds"]), str(r["num_chips"]),
                  f"{100 * a['mean']:.2f}%", f"{100 * a['std']:.2f}", f"{100 * a['p5']:.2f}%",
                  _fmt_energy(r["energy_j"]), _fmt_time(r["latency_s"]))
    return t


def report_table(results: dict) -> Table:
    """The section VIII table: accuracy beside energy (by category), off-chip traffic, latency,
    throughput, area, bits and the hardware of each layer."""
    t = Table(title="hardware report (per inference; energies simulated from cards)")
    cols = ("network", "hardware", "accuracy", "energy", "compute", "conv.", "array", "on-chip", "off-chip",
            "static", "off-chip B", "latency", "inf/s", "area mm²", "bits w/a")
    for c in cols:
        t.add_column(c, justify="left" if c in ("network", "hardware") else "right")
    for r in results.get("report", []):
        e = r["energy_breakdown_j"]
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}% (n={r['n_test']})"
        bits = f"{r['bits_weight'] or 'fp'}/{r['bits_activation'] or 'fp'}"
        t.add_row(r["network"], r["hardware"], acc, _fmt_energy(r["energy_j"]), _fmt_energy(e["compute"]),
                  _fmt_energy(e["conversion"]), _fmt_energy(e["array"]), _fmt_energy(e["onchip_memory"]),
                  _fmt_energy(e["offchip"]), _fmt_energy(e.get("static", 0.0)), f"{r['offchip_bytes']:.3g}", _fmt_time(r["latency_s"]),
                  f"{r['throughput_inf_per_s']:.3g}", f"{r['area_m2'] * 1e6:.3g}", bits)
    return t


def sensitivity_table(results: dict) -> Table:
    """The ``[sensitivity]`` table: per hardware entry, each parameter's value, gradient and
    change of the chip-averaged cross-entropy for +1 %, most harmful first."""
    t = Table(title="sensitivity: change of the chip-averaged cross-entropy (nats) for +1 % of each parameter")
    for c in ("hardware", "parameter", "value (SI)", "dL/dθ (per SI unit)", "ΔL per +1 %", "± s.e."):
        t.add_column(c, justify="left" if c in ("hardware", "parameter") else "right")
    for hw, rows in (results.get("sensitivity") or {}).items():
        for r in rows:
            v = r["value"] if not isinstance(r["value"], list) else max(r["value"], key=abs)
            t.add_row(hw, r["name"], f"{v:.4g}", f"{r['grad']:.4g}", f"{r['per_percent']:+.3g}",
                      f"{r['per_percent_se']:.2g}")
    return t


@app.command()
def study(
    path: Annotated[Optional[pathlib.Path], typer.Argument(help="study TOML (default: the built-in MNIST study)")] = None,
    out: Annotated[pathlib.Path, typer.Option("--out", "-o", help="output folder")] = pathlib.Path("nds-results"),
    chips: Annotated[Optional[int], typer.Option(help="number of chips per Monte Carlo row")] = None,
    seed: Annotated[Optional[int], typer.Option(help="study seed")] = None,
) -> None:
    """Run a study: train, map onto hardware, Monte Carlo over chips and time, noise-aware
    training; print the tables, write results.json, accuracy_vs_time.png and
    energy_breakdown.png (and sweep.png with a [sweep]) to OUT. Finished parts are kept in
    OUT/parts: rerun the same command after an interruption to resume.

    Raises:
        typer.Exit: code 2 after printing the message of a :class:`nds.study.StudyError`
            (malformed study file or hardware entry); code 130 on ``KeyboardInterrupt``.
            Other exceptions propagate (traceback, exit code 1).
    """
    from .study import StudyError, load_study, run_study

    console = Console(width=None if sys.stdout.isatty() else 180)
    over = {}
    if chips is not None:
        over["study.chips"] = chips
    if seed is not None:
        over["study.seed"] = seed
    try:
        cfg = load_study(path, **over)
    except StudyError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2)
    t0 = time.time()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            results = run_study(cfg, out, console=console, progress=progress)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished parts are saved in {out / 'parts'}; rerun the same command to resume")
        raise typer.Exit(130)
    except StudyError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2)
    console.print(results_table(results))
    console.print(report_table(results))
    if results.get("sensitivity"):
        console.print(sensitivity_table(results))
    extra = f", {out / 'sweep.png'}" if results.get("sweep") else ""
    console.print(f"wrote {out / 'results.json'}, {out / 'accuracy_vs_time.png'}, "
                  f"{out / 'energy_breakdown.png'}{extra} in {time.time() - t0:.0f} s")


@app.command()
def cards() -> None:
    """List the shipped device and circuit cards with their sources."""
    import tomllib

    from ._cards import card_path, list_cards

    t = Table(title="shipped cards")
    for c in ("name", "kind", "measured", "source"):
        t.add_column(c)
    for name in list_cards():
        meta = tomllib.loads(card_path(name).read_text())["meta"]
        t.add_row(name, meta["kind"], str(meta.get("measured", False)), meta["source"])
    Console().print(t)


def main() -> None:  # console-script entry point
    """Entry point of the ``nds`` console script: run the typer app on ``sys.argv``."""
    app()
