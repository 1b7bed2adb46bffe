"""The ``nds`` command line (typer): ``nds study [STUDY.toml]``, ``nds cards``."""

from __future__ import annotations

import pathlib
import time
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, help="nds: mixed-signal near-data DNN hardware simulation.")


def _fmt_energy(j: float) -> str:
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


@app.command()
def study(
    path: Annotated[Optional[pathlib.Path], typer.Argument(help="study TOML (default: the built-in MNIST study)")] = None,
    out: Annotated[pathlib.Path, typer.Option("--out", "-o", help="output folder")] = pathlib.Path("nds-results"),
    chips: Annotated[Optional[int], typer.Option(help="number of chips per Monte Carlo row")] = None,
    seed: Annotated[Optional[int], typer.Option(help="study seed")] = None,
) -> None:
    """Run a study: train, map onto hardware, Monte Carlo over chips and time, noise-aware
    training; print the table, write results.json and accuracy_vs_time.png to OUT."""
    from .study import StudyError, load_study, run_study

    console = Console()
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
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        results = run_study(cfg, out, console=console, progress=progress)
    console.print(results_table(results))
    console.print(f"wrote {out / 'results.json'} and {out / 'accuracy_vs_time.png'} in {time.time() - t0:.0f} s")


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
    app()
