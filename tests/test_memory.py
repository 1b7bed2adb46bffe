"""Memory level cards and their functional forms."""

import pytest

import nds
from nds.memory import DRAM2D, EDRAM, HBM, HMC, RegisterFile, SRAMBuffer, roofline_time

CARDS = [("mem_rf_eyeriss", RegisterFile), ("mem_sram_horowitz45_8kB", SRAMBuffer),
         ("mem_glb_eyeriss", SRAMBuffer), ("mem_edram_isaac", EDRAM), ("mem_lpddr3", DRAM2D),
         ("mem_ddr3", DRAM2D), ("hmc_gen1", HMC), ("hbm_gen1", HBM), ("hbm_gen2", HBM)]


@pytest.mark.parametrize("name,cls", CARDS)
def test_cards_load_and_cite(name, cls):
    m = nds.load_card(name, cls)
    assert m.card.source and m.bandwidth > 0 and m.capacity > 0 and m.energy_per_bit > 0
    if "(secondary)" in m.card.notes or "unverified" in m.card.notes:
        assert m.card.measured is False


def test_values_from_references():
    hmc = nds.load_card("hmc_gen1", HMC)
    assert hmc.bandwidth == pytest.approx(160e9)            # 16 vaults x 10 GB/s
    assert hmc.capacity == pytest.approx(2e9)
    assert hmc.host_energy_per_bit == pytest.approx(10.48e-12)
    assert nds.load_card("hbm_gen1", HBM).bandwidth == pytest.approx(128e9)
    assert nds.load_card("hbm_gen2", HBM).bandwidth == pytest.approx(256e9)
    lp = nds.load_card("mem_lpddr3", DRAM2D, channels=4)
    assert lp.bandwidth == pytest.approx(4 * 6.4e9)
    # TETRIS's access energies per 16-bit word (nn_dataflow test_eyeriss_asplos17): LPDDR3
    # 240 pJ, HMC vault from the logic die 80 pJ
    assert 16 * lp.energy_per_bit == pytest.approx(240e-12)
    assert 16 * hmc.energy_per_bit == pytest.approx(80e-12)
    sram = nds.load_card("mem_sram_horowitz45_8kB", SRAMBuffer)
    assert sram.access_energy(4) == pytest.approx(5e-12)    # one 32-bit read = 5 pJ
    # 3D stacking: about an order of magnitude more bandwidth than a 2D channel
    assert hmc.bandwidth / nds.load_card("mem_lpddr3", DRAM2D).bandwidth >= 10


def test_energy_and_time_forms():
    d = nds.load_card("mem_ddr3", DRAM2D)
    assert d.access_energy(1000) == pytest.approx(8000 * 70e-12)
    assert d.stream_time(12.8e9) == pytest.approx(1.0)
    assert d.transfer_time(0) == pytest.approx(50e-9)
    c = d.cost(1e6)
    assert c.offchip_bytes == 1e6 and c.energy_j == {"offchip": pytest.approx(8e6 * 70e-12)}
    r = nds.load_card("mem_rf_eyeriss", RegisterFile).cost(2)
    assert r.offchip_bytes == 0 and "onchip_memory" in r.energy_j
    with pytest.raises(ValueError, match="nbytes"):
        d.access_energy(-1)


def test_roofline():
    assert roofline_time(1e9, 1e9, 1e9, 1e10) == pytest.approx(1.0)     # compute bound
    assert roofline_time(1e6, 1e9, 1e9, 1e9) == pytest.approx(1.0)      # memory bound
    with pytest.raises(ValueError, match="bandwidth"):
        roofline_time(1, 1, 1, 0)


def test_wrong_kind_rejected():
    with pytest.raises(nds.CardError, match="kind"):
        nds.load_card("mem_lpddr3", HMC)
