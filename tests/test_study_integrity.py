"""Studies that cannot corrupt each other or themselves (issue 12): atomic writes from many
processes, one computation per part, damaged parts named, moved aside and recomputed, one
study per output folder, and results of another configuration kept, never replaced."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import equinox as eqx
import jax
import numpy as np
import pytest

import nds
from nds.study import StudyError, _hash, _Parts, load_study, run_study

_WRITER = textwrap.dedent("""
    import json, os, sys, time, types
    # nds._parts and nds._atomic need only the standard library and filelock: load them
    # without the package's __init__ (which imports JAX) so that six processes start quickly
    pkg = types.ModuleType("nds")
    pkg.__path__, pkg.__version__ = [sys.argv[3]], "test"
    sys.modules["nds"] = pkg
    from nds._atomic import atomic_write
    from nds._parts import _Parts
    assert "jax" not in sys.modules
    out, me = sys.argv[1], int(sys.argv[2])
    # 1. one part wanted by every process: computed once, the others wait and load it
    def make():
        with open(os.path.join(out, "made.log"), "a") as f:
            f.write(f"{me}\\n")
        time.sleep(0.5)
        return {"rows": list(range(1000)), "by": "whoever came first"}
    v = _Parts(__import__("pathlib").Path(out)).json("row_shared", {"dep": 1}, make)
    assert v["rows"] == list(range(1000)), "torn part"
    # 2. the same file written 300 times by every process, read back in between
    target = os.path.join(out, "hot.json")
    bad = 0
    for i in range(300):
        atomic_write(target, json.dumps({"writer": me, "i": i, "pad": "x" * 4000}).encode())
        try:
            d = json.loads(open(target, "rb").read())
            bad += not (len(d["pad"]) == 4000 and 0 <= d["writer"] < 6)
        except (ValueError, FileNotFoundError):
            bad += 1
    print(bad)
""")


def test_six_processes_write_one_part_without_tearing_or_losing_it(tmp_path):
    """Six processes want the same part and rewrite one file 300 times each (the issue's
    replay gave 1453 errors in 1800 writes through a shared ``<name>.tmp``): every read sees
    a whole file, the part is computed exactly once and all six get its value, and no
    temporary file is left behind."""
    pkg = os.path.dirname(os.path.abspath(nds.__file__))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(i), pkg], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.strip() == "0", out  # torn or missing reads
    made = (tmp_path / "made.log").read_text().split()
    assert len(made) == 1, made  # computed once; five processes loaded it
    parts = sorted(p.name for p in (tmp_path / "parts").iterdir() if p.is_file())
    h = hashlib.sha256(json.dumps(["test", {"dep": 1}], sort_keys=True).encode()).hexdigest()[:16]  # version "test"
    assert parts == [f"row_shared-{h}.json"]
    assert json.loads((tmp_path / "hot.json").read_text())["i"] == 299  # the last write of some writer
    assert not [p for p in tmp_path.rglob("*.tmp")]


# ---------------------------------------------------------------------------- damaged parts
def _damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xff\xfe garbage \x81" * 7)
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_json_part_is_named_moved_aside_and_recomputed(tmp_path, how):
    parts = _Parts(tmp_path)
    value = {"accuracy": [0.25, 0.5]}
    assert parts.json("row_x", {"a": 1}, lambda: value) == value
    p = tmp_path / "parts" / f"row_x-{_hash({'a': 1})}.json"
    _damage(p, how)
    calls = []
    with pytest.warns(RuntimeWarning, match=f"damaged part {p}") as w:
        got = parts.json("row_x", {"a": 1}, lambda: calls.append(1) or value)
    assert got == value and calls == [1]
    moved = list((tmp_path / "parts" / "damaged").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(p.name) and str(moved[0]) in str(w[0].message)
    assert json.loads(p.read_text())["value"] == value  # rewritten whole
    # and now it loads without recomputing
    assert parts.json("row_x", {"a": 1}, lambda: pytest.fail("recomputed an intact part")) == value


@pytest.mark.parametrize("what,how", [("eqx", "truncated"), ("eqx", "garbage"), ("eqx", "empty"),
                                      ("sha256", "garbage"), ("sha256", "empty"), ("sha256", "missing")])
def test_damaged_model_part_is_named_moved_aside_and_recomputed(tmp_path, what, how):
    like = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    trained = eqx.nn.Linear(3, 2, key=jax.random.key(1))
    parts = _Parts(tmp_path)
    m, loaded = parts.model("digital", {"b": 2}, like, lambda ckpt: trained)
    assert not loaded
    f = tmp_path / "parts" / f"digital-{_hash({'b': 2})}.{what}"
    if how == "missing":
        f.unlink()
    else:
        _damage(f, how)
    with pytest.warns(RuntimeWarning, match="damaged part .*digital-") as w:
        m2, loaded = parts.model("digital", {"b": 2}, like, lambda ckpt: trained)
    assert not loaded and "moved to" in str(w[0].message)
    np.testing.assert_array_equal(np.asarray(m2.weight), np.asarray(trained.weight))
    m3, loaded = parts.model("digital", {"b": 2}, like, lambda ckpt: pytest.fail("recomputed an intact part"))
    assert loaded
    np.testing.assert_array_equal(np.asarray(m3.weight), np.asarray(trained.weight))


# ---------------------------------------------------------------------------- two studies, one --out
_TINY = """
[study]
seed = {seed}
chips = 1
chip_batch = 1
times = [1.0]
[dataset]
name = "digits"
n_train = 64
n_test = 32
[network]
name = "mlp"
[training]
steps = 3
batch_size = 16
[[hardware]]
name = "int8"
kind = "digital"
bits_weight = 8
bits_activation = 8
[report]
networks = []
"""


class _Gate:
    """A stand-in for :class:`nds.console.Reporter` whose first ``part`` waits until
    released: the study holding its folder is parked mid-run."""

    def __init__(self):
        from nds.console import Reporter

        self.entered, self.release = threading.Event(), threading.Event()
        self._rep = Reporter("study", quiet=True)

    def part(self, *a, **k):
        self.entered.set()
        assert self.release.wait(300)
        return self._rep.part(*a, **k)

    def __getattr__(self, name):
        return getattr(self._rep, name)


def test_two_studies_into_one_out_neither_corrupts_nor_replaces_the_other(tmp_path):
    """While study A runs, study B into the same folder is refused at once, naming the
    folder; A then finishes intact. B run afterwards (another seed) keeps A's results as
    ``results-<A's hash>.json``, byte for byte, and announces it."""
    (tmp_path / "a.toml").write_text(_TINY.format(seed=0))
    (tmp_path / "b.toml").write_text(_TINY.format(seed=1))
    cfg_a, cfg_b = load_study(tmp_path / "a.toml"), load_study(tmp_path / "b.toml")
    out = tmp_path / "out"
    gate, box = _Gate(), {}
    th = threading.Thread(target=lambda: box.setdefault("a", run_study(cfg_a, out, reporter=gate)))
    th.start()
    try:
        assert gate.entered.wait(300)
        with pytest.raises(StudyError, match="another study is running with this output folder") as e:
            run_study(cfg_b, out)
        assert str(out) in str(e.value)
    finally:
        gate.release.set()
        th.join(300)
    a_bytes = (out / "results.json").read_bytes()
    a = json.loads(a_bytes)
    assert a["config_hash"] == _hash(cfg_a) and a["rows"] == json.loads(json.dumps(box["a"]["rows"]))
    with pytest.warns(RuntimeWarning, match="kept as"):
        b = run_study(cfg_b, out)
    assert json.loads((out / "results.json").read_text())["config_hash"] == _hash(cfg_b) == b["config_hash"]
    assert (out / f"results-{_hash(cfg_a)}.json").read_bytes() == a_bytes
    assert sorted(p.name for p in out.glob("results*.json")) == sorted(
        ["results.json", f"results-{_hash(cfg_a)}.json"])


def test_atomic_writes_get_the_mode_of_a_plain_new_file(tmp_path):
    """Results and parts written through temporary files (``tempfile.mkstemp`` creates them
    0600) end with the mode a plain ``open(path, "w")`` gives, so other users can read a
    study's results as they could before atomic writes."""
    import os
    import stat

    from nds._atomic import atomic_path, atomic_write

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    want = stat.S_IMODE(os.stat(plain).st_mode)
    atomic_write(tmp_path / "a.json", b"{}")
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"x")
    for name in ("a.json", "b.png"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == want, name
