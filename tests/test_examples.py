"""Every example keeps the contract of docs/examples.md: it runs in its ``--quick`` mode,
prints progress on standard error, writes ``OUT/<stem>.json`` and at least one PNG, and its
JSON holds every number of the tables it printed; it uses public names of nds only, states
its run time, and is listed in docs/examples.md.

The examples are discovered (``examples/*.py``): a new example is checked without editing
this file. They run in a subprocess with the environment of the test session (its
``XLA_FLAGS`` included, see conftest.py)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from nds.console import fmt

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
PRIVATE = re.compile(r"\bnds(\.\w+)*\._\w+|from\s+nds(\.\w+)*\s+import\s+_\w+|from\s+\.\S*\s+import")


def test_examples_exist():
    assert len(EXAMPLES) >= 5, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_source_keeps_the_contract(path):
    """Public names only (no ``nds._x`` / ``nds.a._b`` modules), the shared argument parser
    (positional OUT, --quick, --format), a stated run time, and an entry in docs/examples.md."""
    src = path.read_text()
    bad = [m.group(0) for m in PRIVATE.finditer(src)]
    assert not bad, f"{path.name} uses private names: {bad}"
    assert "example_parser(" in src, f"{path.name}: use nds.console.example_parser (OUT, --quick, --format)"
    assert re.search(r"[Rr]un time on 2 idle cores:\s+about\s[^.;]+;\s+``--quick``[^.]*\sabout\s\d+ s", src), \
        f"{path.name}: the docstring must state its run time on 2 idle cores, full and --quick"
    doc = (ROOT / "docs" / "examples.md").read_text()
    assert f"examples/{path.name}" in doc, f"{path.name} is not listed in docs/examples.md"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_quick_run(path, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               COLUMNS="80")
    r = subprocess.run([sys.executable, str(path), str(out), "--quick"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"{path.name} failed:\n{r.stderr[-4000:]}"
    # progress on standard error: a line per finished part with its time
    assert re.search(r"^\[\s*\d+ s\] .+ done in \d+\.\d s$", r.stderr, re.M), r.stderr
    assert re.search(r"^\[\s*\d+ s\] finished in \d+ s", r.stderr, re.M), r.stderr
    doc = json.loads((out / f"{path.stem}.json").read_text())
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    assert doc["timing"]["total_s"] > 0 and doc["timing"]["parts"]
    # the JSON holds the numbers the example printed: every cell of every table, formatted as
    # printed, is in standard output (the compact view prints the columns marked compact)
    tables = doc["tables"]
    assert tables and all(t["rows"] for t in tables)
    text = r.stdout
    assert "…" not in text
    for t in tables:
        assert t["title"].split()[0] in text
        for row in t["rows"]:
            for col, v in zip(t["columns"], row):
                if col["compact"] and col["kind"] != "text":
                    assert fmt(col["kind"], v) in text, (path.name, t["title"], col["name"], v)
