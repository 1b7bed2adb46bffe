"""examples/codesign.py: the gradient co-design of weights, ADC range and g_max under an
energy budget from nds.cost is at least as good as the best point of a grid search over the
same hardware parameters (higher or equal accuracy, at equal or lower energy), on the same
chips (common random numbers) and the same test images."""

from __future__ import annotations

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_codesign_beats_the_grid(tmp_path):
    spec = importlib.util.spec_from_file_location("codesign", ROOT / "examples/codesign.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main([str(tmp_path), "--quick", "--skip-hardware-only"])
    saved = json.loads((tmp_path / "codesign.json").read_text())
    assert (tmp_path / "codesign.png").stat().st_size > 0
    best, cd = saved["grid_best"], saved["codesign_joint"]
    assert best == res["grid_best"]
    # every grid point and the co-design respect the budget (energy from nds.cost)
    assert all(r["energy_j"] <= saved["budget_j"] * (1 + 1e-9) for r in saved["grid"])
    assert cd["energy_j"] <= saved["budget_j"] * (1 + 1e-9)
    # at least as good as the best grid point: accuracy >= and energy <=
    assert cd["accuracy"] >= best["accuracy"], (cd["accuracy"], best["accuracy"])
    assert cd["energy_j"] <= best["energy_j"] * (1 + 1e-9), (cd["energy_j"], best["energy_j"])
    # the grid is a real search: its points differ (the ADC range matters at 4 bits)
    accs = [r["accuracy"] for r in saved["grid"]]
    assert max(accs) - min(accs) > 0.05
