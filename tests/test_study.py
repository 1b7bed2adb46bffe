"""The main job: study files (validation, errors) and a tiny study end to end, with resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nds
import nds.study
from nds.study import DEFAULT_STUDY, StudyError, load_study, run_study

TINY = """
[study]
name = "tiny"
seed = 0
chips = 2
chip_batch = 2
times = [1.0, 3600.0]

[dataset]
name = "digits"
n_train = 300
n_test = 100

[network]
name = "mlp"

[training]
steps = 60
batch_size = 32
noise_aware_steps = 10

[[hardware]]
name = "pcm"
kind = "crossbar"
card = "pcm_joshi2020"
rows = 64
cols = 64
"""


def test_default_study_validates():
    cfg = load_study()
    assert cfg["study"]["chips"] == DEFAULT_STUDY["study"]["chips"] == 32
    assert cfg["study"]["times"] == [1.0, 3600.0, 86400.0, 31536000.0]
    assert cfg["dataset"]["name"] == "mnist" and cfg["network"]["name"] == "lenet5"
    assert {h["name"] for h in cfg["hardware"]} == {"rram", "pcm"}
    # loading does not alter the built-in default
    cfg["study"]["chips"] = 1
    assert DEFAULT_STUDY["study"]["chips"] == 32


def test_study_file_overrides_and_inherits(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    cfg = load_study(p)
    assert cfg["study"]["chips"] == 2 and cfg["dataset"]["n_test"] == 100
    assert cfg["training"]["steps"] == 60
    assert cfg["training"]["lr"] == DEFAULT_STUDY["training"]["lr"]  # inherited
    assert [h["name"] for h in cfg["hardware"]] == ["pcm"]
    h = cfg["hardware"][0]
    assert h["rows"] == 64 and h["cols"] == 64
    assert h["adc_bits"] == 8 and h["dac_bits"] == 8  # the kind's defaults
    assert load_study(p, **{"study.chips": 3})["study"]["chips"] == 3


@pytest.mark.parametrize("text,key", [
    ("[study]\nchipz = 3\n", "chipz"),
    ("[study]\nchips = \"many\"\n", "study.chips"),
    ("[training]\nlr = true\n", "training.lr"),
    ("[dataset]\nname = \"cifar\"\n", "dataset.name"),
    ("[network]\nname = \"vgg16\"\n", "network.name"),
    ("[bogus]\nx = 1\n", "bogus"),
    ("[[hardware]]\nname = \"pcm\"\ncard = \"pcm_joshi2020\"\nrowz = 3\n", "rowz"),
    ("[[hardware]]\nname = \"pcm\"\ncard = \"pcm_joshi2020\"\nrows = \"64\"\n", "rows"),
    ("[[hardware]]\nname = \"digital\"\ncard = \"pcm_joshi2020\"\n", "digital"),
    ("[study\n", "TOML"),
    ("[[hardware]]\nname = \"pcm\"\ncard = \"pcm_joshi2021\"\n", "hardware[0].card"),
    ("[[hardware]]\nname = \"pe\"\nkind = \"pe_array\"\nmemory = \"hmc_gen9\"\n", "hardware[0].memory"),
    ("[sweep]\ncard = \"nope\"\n", "sweep.card"),
])
def test_bad_study_file_names_file_and_key(tmp_path, text, key):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(StudyError) as e:
        load_study(p)
    msg = str(e.value)
    assert str(p) in msg and key in msg, msg


def test_missing_study_file(tmp_path):
    with pytest.raises(StudyError, match="no such"):
        load_study(tmp_path / "nope.toml")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    p = d / "tiny.toml"
    p.write_text(TINY)
    cfg = load_study(p)
    out = d / "out"
    res = run_study(cfg, out)
    return cfg, out, res


def test_tiny_study_writes_documented_results(tiny_run):
    cfg, out, res = tiny_run
    assert (out / "results.json").is_file()
    data = json.loads((out / "results.json").read_text())
    assert data["rows"] == json.loads(json.dumps(res["rows"]))
    assert data["dataset"]["name"] == "digits" and data["dataset"]["n_test"] == 100
    rows = data["rows"]
    keyset = [(r["hardware"], r["training"], r["t_seconds"]) for r in rows]
    assert keyset == [("digital", "standard", None), ("digital-fp32", "standard", None),
                      ("pcm", "standard", 1.0), ("pcm", "standard", 3600.0),
                      ("pcm", "noise-aware", 1.0), ("pcm", "noise-aware", 3600.0)]
    for r in rows:
        a = r["accuracy"]
        s = np.asarray(a["samples"], np.float64)
        assert len(s) == (1 if r["hardware"].startswith("digital") else 2) == r["num_chips"]
        # accuracies are counts over 100 test digits
        np.testing.assert_allclose(s * 100, np.round(s * 100), atol=1e-6)
        assert a["mean"] == pytest.approx(s.mean(), rel=1e-12)
        assert a["p5"] == pytest.approx(np.quantile(s, 0.05), rel=1e-12)
        if len(s) > 1:
            assert a["std"] == pytest.approx(s.std(ddof=1), rel=1e-12, abs=1e-15)
        assert r["energy_j"] > 0 and r["latency_s"] > 0
        assert r["energy_j"] == pytest.approx(sum(r["energy_breakdown_j"].values()), rel=1e-12)
    # energy of a row is the total of its hardware's per-layer cost table
    for hw in ("digital", "pcm"):
        total = data["cost"][hw][-1]
        assert total["layer"] == "total"
        row = next(r for r in rows if r["hardware"] == hw)
        assert row["energy_j"] == pytest.approx(total["energy_total_j"], rel=1e-12)
        # MLP 64-256-128-10: 16384 + 32768 + 1280 MACs per inference
        assert total["macs"] == 64 * 256 + 256 * 128 + 128 * 10
    # the digital baseline is int8 (study.baseline_bits = 8): its MACs at the card's int8
    # energy and its weights read as 8-bit words; the float datapath is the reference row
    from nds.tiles import DigitalMACCosts

    cc = nds.load_card("digital_45nm", DigitalMACCosts)
    macs = 64 * 256 + 256 * 128 + 128 * 10
    t8, t32 = data["cost"]["digital"][-1], data["cost"]["digital-fp32"][-1]
    assert t8["bits_weight"] == 8 and t32["bits_weight"] is None
    assert t8["energy_j"]["compute"] == pytest.approx(macs * cc.e_mac_int8, rel=1e-12)
    assert t32["energy_j"]["compute"] == pytest.approx(macs * cc.e_mac_fp32, rel=1e-12)
    assert t8["energy_j"]["onchip_memory"] < t32["energy_j"]["onchip_memory"]
    # the PCM layers on 64x64 arrays: 64 → 256 has 1 row block, 256 → 128 has 4, 128 → 10 has 2;
    # the ISAAC converter card's DAC is bit-serial: 8 reads (8-bit inputs) per MVM
    pcm_layers = data["cost"]["pcm"][:-1]
    assert [l["counts"]["adc_conversions"] for l in pcm_layers] == [8 * 256, 8 * 4 * 128, 8 * 2 * 10]
    # programming, once per chip, on its own line: 2 devices per weight at the generic one-shot card's 5 pJ
    rep = next(r for r in data["report"] if r["hardware"] == "pcm")
    assert rep["programming_energy_j"] == pytest.approx(2 * (64 * 256 + 256 * 128 + 128 * 10) * 5e-12, rel=1e-9)
    png = (out / "accuracy_vs_time.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_tiny_study_resumes_without_recomputing(tiny_run, monkeypatch):
    """A rerun finds every part saved: no training and no Monte Carlo happen (both patched to
    raise), the parts' files are untouched, and the results are identical."""
    cfg, out, res = tiny_run
    parts = sorted((out / "parts").iterdir())
    assert any(p.suffix == ".json" for p in parts) and any(p.suffix == ".eqx" for p in parts)
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}

    def boom(*a, **k):
        raise AssertionError("recomputed a finished part")

    monkeypatch.setattr(nds.study, "fit", boom)
    monkeypatch.setattr(nds.study, "evaluate", boom)
    res2 = run_study(cfg, out)
    assert json.dumps(res2["rows"]) == json.dumps(res["rows"])
    assert {p.name: p.stat().st_mtime_ns for p in sorted((out / "parts").iterdir())} == mtimes


def test_study_sweep_hook(tmp_path):
    """The [sweep] table runs nds.sweep.sweep_array on the study's digital model: one row per
    (array size, wire resistance); zero wire resistance dissipates nothing in the wires, and
    5 ohm segments dissipate a positive share that grows with the array size (I²R over longer
    lines)."""
    import json

    from nds.study import load_study, run_study

    p = tmp_path / "s.toml"
    p.write_text(
        '[study]\nchips = 2\nchip_batch = 2\ntimes = [1.0]\n[dataset]\nname = "digits"\n'
        '[network]\nname = "mlp"\n[training]\nsteps = 20\nnoise_aware_steps = 2\n'
        '[sweep]\narray_sizes = [16, 32]\nr_wire = [0.0, 5.0]\nchips = 2\n'
        '[[hardware]]\nname = "pcm"\ncard = "pcm_joshi2020"\nrows = 64\ncols = 64\nnoise_aware = false\n'
        '[[hardware]]\nname = "part"\ncard = "pcm_joshi2020"\nstandalone = false\n'
        '[report]\nnetworks = []\n')
    res = run_study(load_study(p), tmp_path / "out")
    # an entry with standalone = false is only a building block: no rows, no cost table
    assert {r["hardware"] for r in res["rows"]} == {"digital", "digital-fp32", "pcm"}
    assert "part" not in res["cost"]
    rows = {(r["rows"], r["r_wire"]): r for r in res["sweep"]}
    assert set(rows) == {(16, 0.0), (16, 5.0), (32, 0.0), (32, 5.0)}
    assert rows[(16, 0.0)]["wire_energy_share"] == 0.0 and rows[(32, 0.0)]["wire_energy_share"] == 0.0
    assert 0.0 < rows[(16, 5.0)]["wire_energy_share"] < rows[(32, 5.0)]["wire_energy_share"]
    assert (tmp_path / "out" / "sweep.png").exists()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["sweep"] is not None


def test_study_plain_text_output_holds_every_row_untruncated(tiny_run):
    """`nds study` with standard output not a terminal (a log file): the accuracy table fits 80
    columns and every number of every results.json row is printed whole (no "…"), each row on
    its own line; progress goes to standard error; --format json prints results.json."""
    from typer.testing import CliRunner

    from nds.cli import app
    from nds.console import fmt

    cfg, out, _ = tiny_run
    toml = out.parent / "tiny.toml"
    r = CliRunner().invoke(app, ["study", str(toml), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert "…" not in text and max(len(l.rstrip()) for l in text.splitlines()) <= 80
    rows = json.loads((out / "results.json").read_text())["rows"]
    lines = text.splitlines()
    for row in rows:
        a = row["accuracy"]
        want = [row["hardware"], row["training"], fmt("duration", row["t_seconds"]), str(row["num_chips"]),
                fmt("pct", a["mean"]), fmt("pp", a["std"]), fmt("pp", a["test_se"]), fmt("pct", a["p5"]),
                fmt("energy", row["energy_j"]), fmt("seconds", row["latency_s"])]
        hits = [l for l in lines if l.split()[:2] == want[:2] and all(f" {w}" in f" {l} " for w in want)]
        assert hits, (want, text)
    assert "loaded from parts/" in r.stderr and "finished in" in r.stderr
    rj = CliRunner().invoke(app, ["study", str(toml), "--out", str(out), "--format", "json"])
    assert rj.exit_code == 0 and json.loads(rj.stdout)["rows"] == rows


MP_TINY = """
[study]
chips = 3
chip_batch = 2
times = [3600.0]
[dataset]
name = "digits"
n_train = 200
n_test = 60
[network]
name = "mlp"
[training]
steps = 10
batch_size = 32
[report]
networks = []
[[hardware]]
name = "pcm"
kind = "crossbar"
card = "pcm_joshi2020"
rows = 64
cols = 64
noise_aware = false
"""


def test_study_under_two_processes_writes_the_same_rows(tmp_path):
    """``nds study --coordinator … --num-processes 2 --process-id i`` in two processes (one
    CPU device each) writes results.json with the same rows, bit for bit (JSON floats), as the
    same study run here in one process: 3 chips at 2 per device, so both runs evaluate every
    chip in the same 2-chip program. The two processes start from the one-process run's
    trained model (its parts/digital.* copied into process 0's folder only): process 0 reads
    it and hands it to process 1. Only process 0 prints and gets files."""
    import os
    import shutil

    from test_monte_carlo import launch

    p = tmp_path / "tiny.toml"
    p.write_text(MP_TINY)
    ref = run_study(load_study(p), tmp_path / "one")
    (tmp_path / "out0" / "parts").mkdir(parents=True)
    digital = [f for f in (tmp_path / "one" / "parts").iterdir() if f.name.startswith("digital-")]
    assert sorted(f.suffix for f in digital) == [".eqx", ".sha256"]
    for f in digital:
        shutil.copy(f, tmp_path / "out0" / "parts" / f.name)
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_NUMPY_RANK_PROMOTION="raise")
    runs = launch(lambda port, i: ["-m", "nds", "study", str(p), "--out", f"out{i}", "--coordinator",
                                   f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
                  2, tmp_path, env=env)
    for code, log in runs:
        assert code == 0, log[-3000:]
    assert "digital model loaded from parts/" in runs[0][1]
    assert "hardware report" in runs[0][1] and "hardware report" not in runs[1][1]  # process 0 prints
    assert "digital model" not in runs[1][1]
    got = json.loads((tmp_path / "out0" / "results.json").read_text())
    assert not (tmp_path / "out1").exists()  # process 0 alone writes
    assert [r["num_chips"] for r in got["rows"]] == [1, 1, 3]  # digital (int8), digital-fp32, pcm
    assert got["rows"] == json.loads(json.dumps(ref["rows"]))
