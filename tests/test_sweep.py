"""nds.sweep: array-size × wire-resistance sweep of accuracy and wire-energy share."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

import nds
from nds.arrays import ResistiveCrossbar
from nds.sweep import plot_sweep, sweep_array
from nds.tiles import CrossbarTile


@pytest.fixture(scope="module")
def trained(digits):
    x, y, xt, yt = digits
    m = nds.nn.models.mlp((64, 10), key=jax.random.key(0))
    m, _ = nds.train.fit(m, x, y, key=jax.random.key(1), steps=200, batch_size=64, optimizer=optax.adam(1e-2))
    return m, xt, yt


def test_sweep_rows_directions_and_plot(trained, tmp_path):
    m, xt, yt = trained
    card = nds.load_card("rram_wan2022", nds.cells.RRAM)
    rows = sweep_array(m, (xt, yt), card=card, key=jax.random.key(3), array_sizes=(16, 64), r_wire=(0.0, 60.0),
                       num_chips=2, out=tmp_path / "s.json")
    assert [(r["rows"], r["r_wire"]) for r in rows] == [(16, 0.0), (16, 60.0), (64, 0.0), (64, 60.0)]
    by = {(r["rows"], r["r_wire"]): r for r in rows}
    for n in (16, 64):
        assert by[(n, 0.0)]["wire_energy_share"] == 0.0
        assert 0 < by[(n, 60.0)]["wire_energy_share"] < 1
        assert by[(n, 60.0)]["wire_energy_j"] == pytest.approx(
            by[(n, 60.0)]["energy_j"] - by[(n, 0.0)]["energy_j"], rel=1e-9)
    # wire share grows with the array (longer lines carry more current)
    assert by[(64, 60.0)]["wire_energy_share"] > 2 * by[(16, 60.0)]["wire_energy_share"]
    # zero resistance reproduces ideal wires chip for chip (same keys)
    tile = CrossbarTile(cell=card, array=ResistiveCrossbar(rows=64, cols=64))
    from nds._keys import streams

    k_chips, k_read = streams(jax.random.key(3), "chips", "read")  # sweep_array's named streams
    # the same evaluation chunks as sweep_array (eval_batch=250): read keys are split per chunk
    fn = lambda mm, k: nds.train.accuracy(nds.program(mm, key=k), xt, yt, key=k_read, batch=250)
    ideal = nds.monte_carlo(fn, nds.analogize(m, tile), key=k_chips, num_chips=2)
    np.testing.assert_allclose(by[(64, 0.0)]["accuracy_samples"], ideal.samples, atol=1e-12)
    # IR drop on the 64-row array costs accuracy
    assert by[(64, 60.0)]["accuracy"]["mean"] < by[(64, 0.0)]["accuracy"]["mean"] - 0.02
    plot_sweep(rows, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "s.json").exists()


def test_sweep_errors(trained):
    m, xt, yt = trained
    card = nds.load_card("rram_wan2022", nds.cells.RRAM)
    with pytest.raises(ValueError, match="array size"):
        sweep_array(m, (xt, yt), card=card, key=jax.random.key(0), array_sizes=(0,))
    with pytest.raises(ValueError, match="r_wire"):
        sweep_array(m, (xt, yt), card=card, key=jax.random.key(0), r_wire=(-1.0,))
