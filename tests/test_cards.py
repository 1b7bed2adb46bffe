"""Device cards: every shipped card loads with its class, units are SI, cards ship in the wheel."""

from __future__ import annotations

import importlib
import pathlib
import pkgutil
import tomllib

import pytest

import nds
from nds._cards import _devices_dir, card_path
from nds._units import to_si

REPO = pathlib.Path(__file__).resolve().parent.parent


def _card_classes() -> dict[str, list[type]]:
    """card kind -> classes declaring it (every nds module imported first)."""
    for m in pkgutil.walk_packages(nds.__path__, "nds."):
        if m.name in ("nds.cli",):
            continue
        importlib.import_module(m.name)

    def subs(c):
        for s in c.__subclasses__():
            yield s
            yield from subs(s)

    out: dict[str, list[type]] = {}
    for c in subs(nds.AbstractCardModule):
        if c.card_kind and c not in out.get(c.card_kind, []):
            out.setdefault(c.card_kind, []).append(c)
    return out


KINDS = _card_classes()
SHIPPED = nds.list_cards()


def test_list_cards_nonempty_and_has_the_two_cells():
    assert len(SHIPPED) >= 2
    assert {"pcm_joshi2020", "rram_generic"} <= set(SHIPPED)
    # list_cards is exactly the stems of the shipped folder
    assert SHIPPED == sorted(p.stem for p in _devices_dir().glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_card_loads_with_its_class(name):
    data = tomllib.loads(card_path(name).read_text())
    meta = data["meta"]
    assert isinstance(meta.get("source"), str) and len(meta["source"]) > 10, "a card must cite its source"
    classes = KINDS.get(meta["kind"], [])
    for cls in classes:
        m = nds.load_card(name, cls)
        assert isinstance(m, cls)
        assert m.card.name == name and m.card.kind == meta["kind"] and m.card.source == meta["source"]
        assert m.card.measured == bool(meta.get("measured", False))
        # every card parameter is on the module, converted to SI
        for key, entry in data["params"].items():
            v_si, _ = to_si(entry["value"], entry["unit"])
            assert float(getattr(m, key)) == pytest.approx(v_si, rel=1e-12, abs=0.0), key


def test_the_two_resistive_cards_have_a_class():
    assert nds.cells.PCM in KINDS["pcm"] and nds.cells.RRAM in KINDS["rram"]


def test_pcm_card_in_si_exactly(pcm):
    # REFERENCES.md "PCM statistical model": g_max = 25 uS, t0 = 20 s, t_read = 250 ns
    assert pcm.g_max == 25e-6  # exact: 25 / 1e6 is the double nearest 2.5e-5
    assert isinstance(pcm.g_max, float)
    assert pcm.g_min == 0.0
    assert pcm.drift_t0 == 20.0
    assert pcm.t_read_noise == pytest.approx(250e-9, rel=1e-15)
    assert pcm.prog_c0 == pytest.approx(0.2635e-6, rel=1e-15)
    assert pcm.prog_c1 == pytest.approx(1.965e-6, rel=1e-15)
    assert pcm.prog_c2 == pytest.approx(-1.1731e-6, rel=1e-15)
    assert pcm.nu_mu_a == -0.0155 and pcm.nu_mu_b == 0.0244
    assert pcm.qs_a == 0.0088 and pcm.qs_exp == 0.65 and pcm.qs_max == 0.2
    assert pcm.levels == 0 and isinstance(pcm.levels, int)


def test_rram_card_in_si(rram):
    assert rram.g_min == pytest.approx(1e-6, rel=1e-15)
    assert rram.g_max == pytest.approx(40e-6, rel=1e-15)
    assert rram.levels == 32 and isinstance(rram.levels, int)
    assert rram.cell_area == pytest.approx(0.0576e-12, rel=1e-12)
    assert rram.t_read == pytest.approx(100e-9, rel=1e-15)


@pytest.mark.parametrize("value,unit,si,canon", [
    (25.0, "uS", 25e-6, "S"), (2.0, "kOhm", 2000.0, "Ohm"), (1.0, "um2", 1e-12, "m2"),
    (0.417, "pJ", 0.417e-12, "J"), (1.2, "GHz", 1.2e9, "Hz"), (1.0, "year", 365.25 * 86400, "s"),
    (3.0, "pJ/bit", 3e-12, "J/bit"), (300.0, "aF", 300e-18, "F"), (5.0, "1", 5.0, "1"),
])
def test_units(value, unit, si, canon):
    v, c = to_si(value, unit)
    assert c == canon
    assert v == pytest.approx(si, rel=1e-14)


def test_cards_ship_in_the_wheel():
    """A plain (non-editable) install maps devices/ to the package folder nds/devices with its
    TOML files as package data (checked on pyproject, building a wheel is too slow here)."""
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    st = py["tool"]["setuptools"]
    assert "nds.devices" in st["packages"]
    assert st["package-dir"]["nds.devices"] == "devices"
    assert "*.toml" in st["package-data"]["nds.devices"]
    d = _devices_dir()
    assert d.is_dir()
    assert (d / "pcm_joshi2020.toml").is_file() and (d / "rram_generic.toml").is_file()
    # every card in the repository folder is one the package lists
    assert {p.stem for p in (REPO / "devices").glob("*.toml")} <= set(SHIPPED)


def test_unknown_card_name_lists_shipped():
    with pytest.raises(FileNotFoundError, match="pcm_joshi2020"):
        nds.load_card("no_such_card_xyz", nds.cells.PCM)


def test_card_kind_mismatch_names_file():
    with pytest.raises(nds.CardError, match=r"rram_generic\.toml.*kind"):
        nds.load_card("rram_generic", nds.cells.PCM)


def test_overrides_replace_card_values():
    cell = nds.load_card("pcm_joshi2020", nds.cells.PCM, levels=16)
    assert cell.levels == 16
