"""Every bad input answered at the earliest point it can be known (issue 12): a study is
validated whole before any training, and card/study/layer messages name the file or layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import nds
import nds.study
from nds.study import StudyError, load_study

_BASE = {
    "study": 'chips = 2\ntimes = [1.0]',
    "dataset": 'name = "digits"',
    "network": 'name = "mlp"',
    "training": 'steps = 5',
}
_PCM = '[[hardware]]\nname = "pcm"\ncard = "pcm_joshi2020"\n'


def _study(tmp_path, hardware=_PCM, **tables):
    text = ""
    for t in ("study", "dataset", "network", "training"):
        text += f"[{t}]\n{_BASE[t]}\n{tables.get(t, '')}\n"
    p = tmp_path / "s.toml"
    p.write_text(text + hardware)
    return p


@pytest.mark.parametrize("tables,hardware,key,allowed", [
    ({"study": "seed = -1"}, _PCM, "study.seed = -1", "[0, 4294967295]"),
    ({"study": "chip_batch = 0"}, _PCM, "study.chip_batch = 0", ">= 1"),
    ({"dataset": "n_train = 1700"}, _PCM, "dataset.n_train + dataset.n_test = 1700 + 500", "1797 examples"),
    ({"dataset": "n_test = 0"}, _PCM, "dataset.n_test = 0", ">= 1"),
    ({"network": "digital_layers = [3]"}, _PCM, "network.digital_layers = [3]", "[-3, 3)"),
    ({"network": 'digital_layers = ["middle"]'}, _PCM, "network.digital_layers", "'first', 'last'"),
    ({"training": "batch_size = -1"}, _PCM, "training.batch_size = -1", "[1, dataset.n_train = 1297]"),
    ({"training": "noise_aware_steps = 0"}, _PCM, "training.noise_aware_steps = 0", ">= 1"),
    ({"training": "lr = -1.0"}, _PCM, "training.lr = -1.0", "a negative rate climbs the loss"),
    ({"training": "noise_aware_lr = 0.0"}, _PCM, "training.noise_aware_lr = 0.0", "> 0"),
    ({"training": "noise_aware_t = -1.0"}, _PCM, "training.noise_aware_t = -1.0", ">= 0"),
    ({"training": "clip_sigma = 0"}, _PCM, "training.clip_sigma = 0", "> 0"),
    ({"training": "clip_sigma = inf"}, _PCM, "training.clip_sigma = inf", "finite"),
    ({}, _PCM + "adc_bits = 64\n", "hardware[0].adc_bits = 64", 'from 1 to 24 or "ideal"'),
    ({}, _PCM + "dac_bits = 0\n", "hardware[0].dac_bits = 0", 'write "ideal"'),
    ({}, _PCM + "rows = 0\n", "hardware[0].rows = 0", ">= 1"),
    ({}, _PCM + "out_noise = -0.1\n", "hardware[0].out_noise = -0.1", ">= 0"),
    ({}, _PCM + "adc_range = nan\n", "hardware[0].adc_range = nan", "finite"),
    ({}, '[[hardware]]\nname = "a/b"\ncard = "pcm_joshi2020"\n', "hardware[0].name = 'a/b'", "letters, digits"),
    ({}, '[[hardware]]\nname = "x"\ncard = "sram_6t_130nm_zhang2017"\n', "hardware[0] ('x')", "not a resistive cell"),
    ({}, _PCM + '[[hardware]]\nname = "m"\nkind = "mixed"\nlayers = ["pcm", "digital"]\n', "hardware[1].layers",
     "mlp has 3 Linear/Conv2d layers"),
    ({}, _PCM + '[[hardware]]\nname = "m"\nkind = "mixed"\nlayers = ["pcm", "nope", "digital"]\n',
     "hardware[1] ('m')", "'nope' is not 'digital' or the name of"),
    ({}, '[[hardware]]\nname = "s"\nkind = "sram"\nmode = "voltage"\n', "hardware[0].mode = 'voltage'",
     "['current', 'charge']"),
    ({}, '[[hardware]]\nname = "s"\nkind = "sensor"\nw_bits = 1\n', "hardware[0] ('s')", "w_bits = 1"),
])
def test_study_values_are_refused_before_anything_runs(tmp_path, monkeypatch, tables, hardware, key, allowed):
    """Each value of the issue's list fails in load_study, naming the file, the key, the
    value and what is allowed; nothing is loaded or trained (both patched to fail)."""
    monkeypatch.setattr(nds.study, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    monkeypatch.setattr(nds.study, "fit", lambda *a, **k: pytest.fail("trained"))
    p = _study(tmp_path, hardware, **tables)
    with pytest.raises(StudyError) as e:
        load_study(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and key in msg and allowed in msg, msg


@pytest.mark.parametrize("times,msg", [
    ("[nan]", "study.times = [nan]"), ("[-1.0]", "study.times = [-1.0]"), ("[inf]", "study.times = [inf]"),
    ("[1.0, 1]", "without repeats"), ("[]", "study.times = [] but hardware[0] ('pcm') drifts"),
])
def test_study_times(tmp_path, times, msg):
    p = tmp_path / "s.toml"
    p.write_text(f"[study]\ntimes = {times}\n" + _PCM)
    with pytest.raises(StudyError, match=msg.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_study(p)


def test_empty_times_allowed_without_drift_and_ideal_converters_by_name(tmp_path):
    """``times = []`` is fine when nothing drifts (RRAM: one row at t = none); "ideal" asks
    for an unbounded converter and reaches the tile as bits=None."""
    p = tmp_path / "s.toml"
    p.write_text('[study]\ntimes = []\n[[hardware]]\nname = "r"\ncard = "rram_generic"\nadc_bits = "ideal"\n')
    cfg = load_study(p)
    h = cfg["hardware"][0]
    assert h["adc_bits"] == "ideal" and h["dac_bits"] == 8
    tile = nds.study.make_tile(h)
    assert tile.adc.bits is None and tile.dac.bits == 8


def test_study_file_that_is_binary_names_the_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    with pytest.raises(StudyError, match=f"{p}: not a text \\(UTF-8\\) TOML file: byte 0"):
        load_study(p)


def test_card_messages_name_the_file(tmp_path):
    """A binary card file names the file (not a bare UnicodeDecodeError); a card saved
    without .toml is found; a missing one says what was tried."""
    b = tmp_path / "bin.toml"
    b.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(nds.CardError, match=f"{b}: not a text \\(UTF-8\\) TOML file: byte 0"):
        nds.load_card(b, nds.cells.PCM)
    src = nds._cards.card_path("pcm_joshi2020").read_text()
    plain = tmp_path / "mypcm"
    plain.write_text(src)
    assert nds.load_card(plain, nds.cells.PCM).g_max == nds.load_card("pcm_joshi2020", nds.cells.PCM).g_max
    (tmp_path / "other.toml").write_text(src)
    assert nds._cards.card_path(tmp_path / "other") == tmp_path / "other.toml"  # suffix left off
    with pytest.raises(FileNotFoundError, match=f"no such file \\(tried {tmp_path / 'nope'}, {tmp_path / 'nope.toml'}\\)"):
        nds.load_card(tmp_path / "nope", nds.cells.PCM)
    with pytest.raises(FileNotFoundError, match="is a folder, not a card file"):
        nds.load_card(tmp_path, nds.cells.PCM)


def test_conv_input_smaller_than_its_kernel_names_the_layer(pcm):
    """Was: "zero-size array to reduction operation max"."""
    conv = eqx_conv()
    layer = nds.nn.AnalogConv2d.from_conv(conv, nds.tiles.CrossbarTile(cell=pcm.ideal()), name="conv7")
    with pytest.raises(ValueError, match=r"layer 'conv7' .*kernel \(5, 5\).*input \(3, 4\) is smaller than the kernel"):
        layer(jnp.ones((2, 3, 4)))


def eqx_conv():
    import equinox as eqx

    return eqx.nn.Conv2d(2, 4, 5, key=jax.random.key(0))
