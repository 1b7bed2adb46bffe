"""The ``nds`` command line (typer): ``nds study [STUDY.toml]``, ``nds cards``, ``nds --version``.

Tables go to standard output, progress to standard error (:class:`nds.console.Reporter`):
``nds study > log.txt`` keeps a readable 80-column log, ``--format markdown|csv`` prints every
column, ``--format json`` prints ``results.json`` only. Help texts are written for users and
shown without markup processing, so ``[sweep]`` prints as it reads.
"""

from __future__ import annotations

import enum
import json
import pathlib
import sys
from typing import Annotated, Any, Optional

import typer

from .console import Column, Reporter, fmt_energy, fmt_seconds

__all__ = ["app", "main", "results_table", "report_table", "sensitivity_table"]

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                  help="nds: simulate a DNN on mixed-signal near-data hardware (accuracy over chips and "
                       "time, energy, latency, area). Documentation: the README and docs/ of the nds "
                       "repository.")

# kept for callers of the former names
_fmt_energy = fmt_energy
_fmt_time = fmt_seconds


class OutputFormat(str, enum.Enum):
    """``--format`` choices."""

    text = "text"
    markdown = "markdown"
    csv = "csv"
    json = "json"


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"nds {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """nds: simulate a DNN on mixed-signal near-data hardware."""


def results_table(results: dict) -> tuple[str, list[Column], list[list[Any]], str]:
    """The study's table, one row per (hardware, training, time): ``(title, columns, rows,
    note)`` for :meth:`nds.console.Reporter.table` (raw values; the compact view shows the
    columns marked compact)."""
    ds = results["dataset"]
    cols = [Column("hardware"), Column("training"), Column("t", "duration"), Column("chips", "int"),
            Column("mean", "pct"), Column("std", "pp"), Column("test SE", "pp"), Column("p5", "pct"),
            Column("p50", "pct", False), Column("p95", "pct", False), Column("energy", "energy"),
            Column("latency", "seconds"), Column("off-chip B", "num", False), Column("area mm²", "num", False)]
    rows = []
    for r in results["rows"]:
        m = r.get("metric", "accuracy")
        a = r[m]
        rows.append([r["hardware"], r["training"], r["t_seconds"], r["num_chips"], a["mean"], a["std"],
                     a.get("test_se"), a["p95"] if m == "bits_per_char" else a["p5"], a["p50"],
                     a["p5"] if m == "bits_per_char" else a["p95"], r["energy_j"], r["latency_s"],
                     r["offchip_bytes"], r["area_m2"] * 1e6])
        if "update_energy_j" in r:  # in-situ training: pulse energy per training example
            rows[-1].append(r["update_energy_j"])
    if any("update_energy_j" in r for r in results["rows"]):
        cols.append(Column("update E/example", "energy"))
        rows = [row + [None] * (len(cols) - len(row)) for row in rows]
    if any(r.get("metric") == "bits_per_char" for r in results["rows"]):
        # bits per character: lower is better, the 95th percentile is the bad tail
        cols[4:10] = [Column("b/c mean", "num"), Column("std", "num"), Column("test SE", "num"),
                      Column("b/c p95", "num"), Column("p50", "num", False), Column("p5", "num", False)]
    title = f"nds study: {ds['name']}, {ds['n_test']} test examples: {'bits per character' if any(r.get('metric') == 'bits_per_char' for r in results['rows']) else 'accuracy'} over chips"
    note = ("t: time after programming; std: spread over chips and test SE: test-set standard error, both "
            "in percentage points (accuracy) or bits per character; energy and latency per inference. "
            "Every column: --format markdown.")
    return title, cols, rows, note


def report_table(results: dict) -> tuple[str, list[Column], list[list[Any]], str]:
    """The section VIII table (accuracy beside energy by category, off-chip traffic, latency,
    throughput, area, bits): ``(title, columns, rows, note)`` like :func:`results_table`."""
    cols = [Column("network"), Column("hardware"), Column("accuracy", "pct"), Column("n test", "int", False),
            Column("energy", "energy"), Column("compute", "energy", False), Column("conversion", "energy", False),
            Column("array", "energy", False), Column("on-chip", "energy", False),
            Column("off-chip", "energy", False), Column("static", "energy", False),
            Column("off-chip B", "num", False), Column("latency", "seconds"), Column("inf/s", "num"),
            Column("area mm²", "num"), Column("bits w/a")]
    rows = []
    for r in results.get("report", []):
        e = r["energy_breakdown_j"]
        bits = f"{r['bits_weight'] or 'fp'}/{r['bits_activation'] or 'fp'}"
        bpc = r.get("dataset") == "pydoc_topics"  # the GPT's metric: bits per character, in its own column
        rows.append([r["network"], r["hardware"], None if bpc else r["accuracy"], r.get("n_test"), r["energy_j"], e["compute"],
                     e["conversion"], e["array"], e["onchip_memory"], e["offchip"], e.get("static", 0.0),
                     r["offchip_bytes"], r["latency_s"], r["throughput_inf_per_s"], r["area_m2"] * 1e6, bits,
                     r["accuracy"] if bpc else None])
    if any(row[-1] is not None for row in rows):
        cols.append(Column("bits/char", "num"))
    else:
        rows = [row[:-1] for row in rows]
    reps = results.get("report", [])
    if any(r.get("update_energy_per_example_j") for r in reps):  # in-situ training
        cols += [Column("update E/example", "energy"), Column("update t/example", "seconds")]
        rows = [row + [r.get("update_energy_per_example_j"), r.get("update_latency_per_example_s")]
                for row, r in zip(rows, reps)]
    # programming, once per chip (not per inference): its own columns, full format only
    cols += [Column("program E/chip", "energy", False), Column("program t/chip", "seconds", False)]
    rows = [row + [r.get("programming_energy_j"), r.get("programming_time_s")] for row, r in zip(rows, reps)]
    note = ("Per inference; energies simulated from the cards' per-action figures, not measured; fp: "
            "unquantized. Energy by category (compute, conversion, array, memories, static) and the programming "
            "energy and time per chip: --format markdown.")
    return "hardware report", cols, rows, note


def sensitivity_table(results: dict) -> tuple[str, list[Column], list[list[Any]], str]:
    """The ``[sensitivity]`` table (per hardware entry, each parameter's value, gradient and
    change of the chip-averaged cross-entropy for +1 %, most harmful first): ``(title, columns,
    rows, note)`` like :func:`results_table`."""
    cols = [Column("hardware"), Column("parameter"), Column("value (SI)", "num"), Column("dL/dθ (SI)", "num", False),
            Column("ΔL per +1 %", "num"), Column("± s.e.", "num")]
    rows = []
    for hw, rs in (results.get("sensitivity") or {}).items():
        for r in rs:
            v = r["value"] if not isinstance(r["value"], list) else max(r["value"], key=abs)
            rows.append([hw, r["name"], v, r["grad"], r["per_percent"], r["per_percent_se"]])
    note = ("Change of the chip-averaged cross-entropy (nats) for +1 % of each parameter; s.e. over chips; "
            "the gradient per SI unit: --format markdown.")
    return "sensitivity", cols, rows, note


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.command(short_help="Run a study: accuracy over chips and time, energy, latency, area.", help="""Run a study: train a network, map it onto each hardware entry, evaluate it over
manufactured chips and times after programming, fine-tune with noise-aware training, and cost
it. With no STUDY file the built-in MNIST study runs (LeNet-5 on RRAM and PCM, 32 chips).

Prints the accuracy table and the hardware report (compact, 80 columns; --format for every
column), progress on standard error, and writes results.json, accuracy_vs_time.png,
energy_breakdown.png (and sweep.png when the study has a [sweep] table) to --out. Finished
parts are kept in OUT/parts: rerun the same command after an interruption to resume.

Exit codes: 2 for a malformed study file or option (the message names the file, key or
option), 130 when interrupted.

Several processes (one per host or accelerator, jax.distributed): start the same command in
each with --coordinator HOST:PORT --num-processes N --process-id I (or --distributed under
Slurm / Open MPI / with JAX_COORDINATOR_ADDRESS set). Chips are spread over every process's
devices; process 0 alone prints and writes OUT (docs/distributed.md).""")
def study(
    path: Annotated[Optional[pathlib.Path], typer.Argument(
        metavar="STUDY.toml", help="study file (TOML); default: the built-in MNIST study")] = None,
    out: Annotated[pathlib.Path, typer.Option("--out", "-o", help="output folder")] = pathlib.Path("nds-results"),
    chips: Annotated[Optional[int], typer.Option(min=1, help="chips per Monte Carlo row (overrides study.chips)")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="study seed (overrides study.seed)")] = None,
    format: Annotated[OutputFormat, typer.Option(
        "--format", "-f", help="tables as compact text (80 columns), markdown or csv with every column, "
                               "or json (results.json on standard output)")] = OutputFormat.text,
    coordinator: Annotated[Optional[str], typer.Option(
        help="several processes (jax.distributed): HOST:PORT of process 0, the same in every process")] = None,
    num_processes: Annotated[Optional[int], typer.Option(min=1, help="several processes: how many")] = None,
    process_id: Annotated[Optional[int], typer.Option(min=0, help="several processes: this one's index, 0 .. N-1")] = None,
    distributed: Annotated[bool, typer.Option(
        help="several processes, settings from the environment (JAX_COORDINATOR_ADDRESS, Slurm, Open MPI)")] = False,
) -> None:
    from ._distributed import initialize, is_main

    if distributed or coordinator is not None or num_processes is not None or process_id is not None:
        try:  # before anything touches JAX
            initialize(coordinator, num_processes, process_id)
        except ValueError as e:
            _fail(str(e))
    from .study import StudyError, load_study, run_study

    main = is_main()  # process 0 prints and writes; the others compute quietly
    if main and out.exists() and not out.is_dir():
        _fail(f"--out {out}: exists and is not a folder")
    over = {}
    if chips is not None:
        over["study.chips"] = chips
    if seed is not None:
        over["study.seed"] = seed
    try:
        cfg = load_study(path, **over)
    except StudyError as e:
        _fail(str(e))
    ui = Reporter("study", out=out if main else None, format=format.value, quiet=not main)
    try:
        with ui:
            results = run_study(cfg, out, reporter=ui)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished parts are saved in {out / 'parts'}; rerun the same command to resume",
                   err=True)
        raise typer.Exit(130)
    except StudyError as e:
        _fail(str(e))
    if format is OutputFormat.json and main:
        sys.stdout.write(json.dumps(results, indent=1) + "\n")
    wrote = []
    # a study of several networks: {"study", "studies": {network: results}}, each in OUT/<network>
    for sub_out, res in ([(out / k, v) for k, v in results["studies"].items()] if "studies" in results
                         else [(out, results)]):
        if format is not OutputFormat.json:
            tables = [results_table(res), report_table(res)]
            if res.get("sensitivity"):
                tables.append(sensitivity_table(res))
            for title, cols, rows, note in tables:
                ui.table(title, cols, rows, note=note)
        wrote += [sub_out / "results.json", sub_out / "accuracy_vs_time.png", sub_out / "energy_breakdown.png"]
        if res.get("sweep"):
            wrote.append(sub_out / "sweep.png")
    ui.summary(wrote)


@app.command(short_help="List the shipped device and circuit cards.", help="List the shipped device and circuit cards with their published sources.")
def cards(
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="text, markdown, csv or json")
                      ] = OutputFormat.text,
) -> None:
    import tomllib

    from ._cards import card_path, list_cards

    rows = []
    for name in list_cards():
        meta = tomllib.loads(card_path(name).read_text())["meta"]
        rows.append([name, meta["kind"], str(meta.get("measured", False)), meta["source"]])
    cols = [Column("name"), Column("kind"), Column("measured"), Column("source")]
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps([dict(zip((c.name for c in cols), r)) for r in rows], indent=1) + "\n")
        return
    Reporter("cards", format=format.value).table("shipped cards", cols, rows)


def main() -> None:  # console-script entry point
    """Entry point of the ``nds`` console script: run the typer app on ``sys.argv``."""
    app()
