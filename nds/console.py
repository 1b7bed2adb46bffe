"""Console output shared by ``nds study`` and the examples: progress that survives
redirection, tables that fit 80 columns, one JSON file per run.

:class:`Reporter` is one run's output:

* **Progress** goes to standard error. In a terminal a part shows a ``rich`` progress bar;
  when standard error is not a terminal (a log file, CI, ``nohup``) it prints one plain line
  per finished part with its time, and a line every ``heartbeat`` seconds while a long part
  runs, so a redirected run is never silent for long::

      [    41 s] train digital: 1200/3000 (38 s)
      [   102 s] train digital: 3000 steps in 99.6 s

* **Tables** go to standard output (:meth:`Reporter.table`). The default ``text`` format is
  a compact ``rich`` table of the columns marked ``compact`` that fits 80 columns; names
  wrap inside their column, numbers are never cut. ``markdown`` and ``csv`` print every
  column; ``json`` prints the run's JSON document instead of tables (progress stays on
  standard error, so standard output parses).
* **JSON**: :meth:`Reporter.finish` writes the results together with every printed table
  (its raw values and each column's format) and the time of every part, and prints a
  timing summary.

Number formats (:func:`fmt`): ``pct`` a fraction as percent with two decimals
(``0.9626 → "96.26%"``), ``pp`` a fraction as percentage points (``0.0031 → "0.31"``),
``energy`` joules with an SI prefix (``2.06e-7 → "206 nJ"``), ``seconds`` a duration with
an SI prefix (``8.94e-5 → "89.4 us"``), ``duration`` a time after programming
(``86400 → "1 d"``), ``num`` three significant digits, ``int``, ``text``; ``None`` prints
as ``-``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

__all__ = ["Column", "Reporter", "FORMATS", "fmt", "fmt_duration", "fmt_energy", "fmt_seconds",
           "example_parser", "OUTPUT_FORMATS"]

#: the ``--format`` choices
OUTPUT_FORMATS = ("text", "markdown", "csv", "json")


def fmt_energy(j: float) -> str:
    """Joules with an SI prefix and three significant digits (``2.06e-7 → "206 nJ"``)."""
    if j == 0:
        return "0"
    for unit, f in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(j) >= f:
            return f"{j / f:.3g} {unit}"
    return f"{j / 1e-15:.3g} fJ"


def fmt_seconds(s: float) -> str:
    """A duration with an SI prefix and three significant digits (``8.94e-5 → "89.4 us"``)."""
    if s == 0:
        return "0"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(s) >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s / 1e-12:.3g} ps"


def fmt_duration(t: float | None) -> str:
    """A time after programming in the largest fitting unit (``86400 → "1 d"``,
    ``31536000 → "1 y"``, ``None → "-"``)."""
    if t is None:
        return "-"
    for unit, sec in (("y", 31536000.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if t >= sec:
            return f"{t / sec:.3g} {unit}"
    return f"{t:.3g} s"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _pp(v: float) -> str:
    return f"{100 * v:.2f}"


FORMATS: dict[str, Callable[[Any], str]] = {
    "text": str,
    "int": lambda v: str(int(v)),
    "pct": _pct,
    "pp": _pp,
    "energy": fmt_energy,
    "seconds": fmt_seconds,
    "duration": fmt_duration,
    "num": lambda v: f"{v:.3g}",
}


def fmt(kind: str, value: Any) -> str:
    """``value`` printed in format ``kind`` (module docstring); ``None`` and NaN → ``"-"``.

    Raises:
        KeyError: an unknown ``kind`` (the message lists :data:`FORMATS`).
    """
    if kind not in FORMATS:
        raise KeyError(f"nds.console.fmt: unknown format {kind!r}; known: {sorted(FORMATS)}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "duration":
        return fmt_duration(value)
    return FORMATS[kind](value)


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: header ``name``, number format ``kind`` (:data:`FORMATS`), and whether
    the compact ``text`` view shows it."""

    name: str
    kind: str = "text"
    compact: bool = True


def _columns(columns: Sequence[Column | tuple]) -> list[Column]:
    out = [c if isinstance(c, Column) else Column(*c) for c in columns]
    for c in out:
        if c.kind not in FORMATS:
            raise KeyError(f"nds.console: column {c.name!r} has unknown format {c.kind!r}; known: {sorted(FORMATS)}")
    return out


def rich_table(title: str, columns: Sequence[Column | tuple], rows: Sequence[Sequence[Any]], *,
               compact: bool = True, caption: str | None = None):
    """A ``rich.table.Table`` of ``rows`` (raw values, formatted by each column's kind):
    single-space column gaps, text columns wrap (``fold``), number columns never wrap."""
    from rich import box
    from rich.table import Table

    cols = _columns(columns)
    keep = [i for i, c in enumerate(cols) if c.compact or not compact]
    t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0,
              title_justify="left", caption_justify="left", min_width=min(len(title), 80))
    for i in keep:
        c = cols[i]
        text = c.kind == "text"
        t.add_column(c.name, justify="left" if text else "right", overflow="fold", no_wrap=not text)
    for r in rows:
        t.add_row(*[fmt(cols[i].kind, r[i]) for i in keep])
    return t


def markdown_table(title: str, columns: Sequence[Column | tuple], rows: Sequence[Sequence[Any]]) -> str:
    """Every column of ``rows`` as a GitHub markdown table under a ``### title`` line."""
    cols = _columns(columns)
    lines = [f"### {title}", "", "| " + " | ".join(c.name for c in cols) + " |",
             "|" + "|".join("---" if c.kind == "text" else "---:" for c in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c.kind, v).replace("|", "\\|") for c, v in zip(cols, r)) + " |")
    return "\n".join(lines) + "\n"


def csv_table(columns: Sequence[Column | tuple], rows: Sequence[Sequence[Any]]) -> str:
    """Every column of ``rows`` as CSV with raw (unformatted, full-precision) values."""
    cols = _columns(columns)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.name for c in cols])
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    return v


class Reporter:
    """Progress, tables and the JSON file of one run (a study or an example).

    Args:
        name: the run's name (the JSON file is ``<name>.json`` unless :meth:`finish` is
            given a path).
        out: output folder for :meth:`finish` and the run's plots (created here).
        format: ``text`` (compact rich tables), ``markdown``, ``csv`` or ``json`` (module
            docstring).
        heartbeat: seconds between progress lines of a running part when standard error is
            not a terminal.
        stdout, stderr: streams for tables and progress (default ``sys.stdout`` /
            ``sys.stderr``, looked up when the reporter is made).
        width: width of text tables (default: the terminal's, 80 when not a terminal).
        quiet: print nothing (tables and times are still recorded).

    Use it as a context manager (``with Reporter(...) as rep:``): in a terminal it runs the
    progress bars while the block runs.

    Raises:
        ValueError: an unknown ``format``.
    """

    def __init__(self, name: str, *, out: str | pathlib.Path | None = None, format: str = "text",
                 heartbeat: float = 30.0, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 width: int | None = None, quiet: bool = False):
        from rich.console import Console

        if format not in OUTPUT_FORMATS:
            raise ValueError(f"nds.console.Reporter: format = {format!r}; allowed: {list(OUTPUT_FORMATS)}")
        self.name = name
        self.out = pathlib.Path(out) if out is not None else None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        self.format = format
        self.quiet = bool(quiet)
        self.heartbeat = float(heartbeat)
        self._stdout = stdout if stdout is not None else sys.stdout
        self._stderr = stderr if stderr is not None else sys.stderr
        tty_out = getattr(self._stdout, "isatty", lambda: False)()
        self.tty = bool(getattr(self._stderr, "isatty", lambda: False)()) and not self.quiet
        self.console = Console(file=self._stdout, width=width or (None if tty_out else 80),
                               highlight=False, soft_wrap=False)
        self.err = Console(file=self._stderr, highlight=False, soft_wrap=True,
                           width=None if self.tty else 10_000)
        self.t0 = time.perf_counter()
        self.timing: list[dict[str, Any]] = []
        self.tables: list[dict[str, Any]] = []
        self._progress = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Reporter":
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.err, transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @property
    def elapsed(self) -> float:
        """Seconds since the reporter was made."""
        return time.perf_counter() - self.t0

    # ------------------------------------------------------------------ progress
    def log(self, msg: str) -> None:
        """One progress line on standard error, prefixed with the run's elapsed time."""
        if self.quiet:
            return
        line = f"[{self.elapsed:6.0f} s] {msg}"
        (self._progress.console if self._progress is not None else self.err).print(line, markup=False)

    @contextlib.contextmanager
    def part(self, desc: str, total: int | None = None, unit: str = "steps") -> Iterator[Callable[..., None]]:
        """Time one part of the run; yields ``update(done, *ignored)`` for progress callbacks
        (e.g. ``fit(..., progress=update)``, ``monte_carlo(..., progress=update)``).

        On exit logs ``"<desc>: <total> <unit> in <s> s"`` and records the time; a part that
        raises logs ``"<desc>: stopped after <s> s"`` and re-raises.
        """
        t0 = time.perf_counter()
        last = [t0]
        task = None
        if self._progress is not None:
            task = self._progress.add_task(desc, total=total)

        def update(done: int, *_: Any) -> None:
            if task is not None:
                self._progress.update(task, completed=done)
                return
            now = time.perf_counter()
            if now - last[0] >= self.heartbeat and (total is None or done < total):
                last[0] = now
                of = f"/{total}" if total is not None else ""
                self.log(f"{desc}: {done}{of} ({now - t0:.0f} s)")

        ok = False
        try:
            yield update
            ok = True
        finally:
            dt = time.perf_counter() - t0
            if task is not None:
                self._progress.remove_task(task)
                self._progress.refresh()
            self.timing.append({"part": desc, "seconds": dt})
            if ok:
                what = f"{total} {unit} " if total is not None else ""
                self.log(f"{desc}: {what}done in {dt:.1f} s")
            else:
                self.log(f"{desc}: stopped after {dt:.1f} s")

    # ------------------------------------------------------------------ tables
    def table(self, title: str, columns: Sequence[Column | tuple], rows: Sequence[Sequence[Any]], *,
              key: str | None = None, note: str | None = None) -> None:
        """Print a table in the run's format and record it (raw values) for the JSON file.

        Args:
            title: printed above the table.
            columns: :class:`Column` s (or ``(name, kind[, compact])`` tuples).
            rows: raw values, one sequence per row, in column order.
            key: the table's name in the JSON file (default: the title).
            note: a line printed under the table (text and markdown).
        """
        cols = _columns(columns)
        raw = [[_jsonable(v) for v in r] for r in rows]
        for r in raw:
            if len(r) != len(cols):
                raise ValueError(f"nds.console: table {title!r}: a row has {len(r)} values for {len(cols)} columns")
        self.tables.append({"key": key or title, "title": title, "note": note,
                            "columns": [dataclasses.asdict(c) for c in cols], "rows": raw})
        if self.quiet:
            return
        if self.format == "text":
            self.console.print(rich_table(title, cols, raw, caption=None))
            if note:
                self.console.print(note, markup=False)
            self.console.print()
        elif self.format == "markdown":
            self._stdout.write(markdown_table(title, cols, raw) + (f"\n{note}\n" if note else "") + "\n")
        elif self.format == "csv":
            self._stdout.write(f"# {title}\n" + csv_table(cols, raw) + "\n")
        self._stdout.flush()

    def say(self, msg: str) -> None:
        """A line of results on standard output (not in ``json`` format)."""
        if self.format == "json" or self.quiet:
            return
        if self.format == "text":
            self.console.print(msg, markup=False)
        else:
            self._stdout.write(msg + "\n")
            self._stdout.flush()

    # ------------------------------------------------------------------ end of run
    def timing_summary(self) -> dict[str, Any]:
        """``{"parts": [{"part", "seconds"}, ...], "total_s": ...}``."""
        return {"parts": list(self.timing), "total_s": self.elapsed}

    def finish(self, results: dict[str, Any], path: str | pathlib.Path | None = None) -> pathlib.Path | None:
        """Write ``results`` plus ``tables`` (every printed table) and ``timing`` to ``path``
        (default ``<out>/<name>.json``; nothing is written without either), log the timing
        summary, and in ``json`` format print the document to standard output. Returns the
        path written.

        Raises:
            ValueError: ``results`` already has a ``tables`` or ``timing`` key.
        """
        for k in ("tables", "timing"):
            if k in results:
                raise ValueError(f"nds.console.Reporter.finish: results already hold a {k!r} key")
        doc = dict(results, tables=self.tables, timing=self.timing_summary())
        p = pathlib.Path(path) if path is not None else (self.out / f"{self.name}.json" if self.out else None)
        text = json.dumps(doc, indent=1, default=_jsonable)
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(p)
        if self.format == "json" and not self.quiet:
            self._stdout.write(text + "\n")
            self._stdout.flush()
        self.summary([p] if p is not None else [])
        return p

    def summary(self, wrote: Sequence[str | pathlib.Path] = ()) -> None:
        """Log the timing summary: the total and the longest parts, and the files written."""
        slow = sorted(self.timing, key=lambda d: -d["seconds"])[:5]
        parts = "; ".join(f"{d['part']} {d['seconds']:.0f} s" for d in slow)
        self.log(f"finished in {self.elapsed:.0f} s" + (f" (longest parts: {parts})" if parts else ""))
        if wrote:
            self.log("wrote " + ", ".join(str(w) for w in wrote))


def example_parser(doc: str | None):
    """The argument parser every example shares (docs/examples.md): a positional output
    folder, ``--quick`` and ``--format``; add the example's own options to it."""
    import argparse

    first = (doc or "").strip().split("\n")[0]
    ap = argparse.ArgumentParser(description=first, epilog="see docs/examples.md",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="examples/out",
                    help="output folder for <name>.json and the plots (default: examples/out)")
    ap.add_argument("--quick", action="store_true", help="a short run (under 45 s on 2 cores) with fewer "
                    "steps, chips and test examples")
    ap.add_argument("--format", choices=OUTPUT_FORMATS, default="text",
                    help="tables as compact text (default), markdown or csv with every column, or the JSON document")
    return ap
