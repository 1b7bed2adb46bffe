"""Dataflow mapper, layer shapes, near-memory systems and the PE-array tile."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nds
from nds.dataflow import (DATAFLOWS, LEVELS, ConvShape, FCShape, NearMemorySystem, PEArray,
                          TechEnergies, alexnet, best_case_accesses, compare_systems,
                          count_accesses, map_layer, naive_accesses, network, vgg16)
from nds.memory import DRAM2D, HMC, DRAMRetention
from nds.tiles._pe_array import PEArrayTile


@pytest.fixture(scope="module")
def hw():
    return nds.load_card("pe_dataflow_survey", PEArray)


@pytest.fixture(scope="module")
def alexnet_runs(hw):
    layers = alexnet(16)
    return {df: [map_layer(L, df, hw, equal_area=True) for L in layers] for df in DATAFLOWS}


# --------------------------------------------------------------------------- shapes

def test_network_sizes_match_survey():
    a, v = alexnet(1), vgg16(1)
    assert sum(L.macs for L in a) == 724_406_816           # survey: 724M
    assert abs(sum(L.n_weights for L in a) / 61e6 - 1) < 0.01
    assert abs(sum(L.macs for L in v) / 15.5e9 - 1) < 0.01
    assert abs(sum(L.n_weights for L in v) / 138e6 - 1) < 0.01
    assert [L.E for L in a[:5]] == [55, 27, 13, 13, 13]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="stride"):
        ConvShape("x", 1, 3, 8, 8, 4, 3, 3, stride=0)
    with pytest.raises(ValueError, match="groups"):
        ConvShape("x", 1, 3, 8, 8, 4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="allowed"):
        network("resnet")


# --------------------------------------------------------------------------- counts

def test_naive_and_best_case_alexnet():
    layers = alexnet(1)
    assert naive_accesses(layers) == 4 * 724_406_816       # ~ 3000M (survey §V-B)
    best = best_case_accesses(layers)
    # one access per weight (61M) + ifmap + ofmap elements: survey "about 61M"
    assert 61e6 < best < 64e6
    assert abs(best - sum(L.n_weights for L in layers)) / best < 0.05


TINY = ConvShape("tiny", N=1, C=2, H=3, W=3, M=2, R=2, S=2)  # E = F = 2, 64 MACs


def test_hand_counted_nlr(hw):
    # NLR, k_sp = 8 (all C R S), m_sp = 2, everything fetched once (a = 1)
    m = count_accesses(TINY, "NLR", hw, dict(k_sp=8, m_sp=2))
    c = m.counts
    # weights (16, each used N E F = 4 times): unicast from buffer for every use
    assert (c["dram", "weight"], c["buffer", "weight"], c["array", "weight"], c["rf", "weight"]) == (16, 64, 64, 0)
    # ifmaps (18): buffer read once per 2 uses (multicast to 2 channels), delivered to every MAC
    assert (c["dram", "ifmap"], c["buffer", "ifmap"], c["array", "ifmap"], c["rf", "ifmap"]) == (18, 32, 64, 0)
    # psums (8 outputs x 8 accumulations): all spatial, 7 hops each, written once
    assert (c["dram", "psum"], c["buffer", "psum"], c["array", "psum"], c["rf", "psum"]) == (8, 0, 56, 0)
    assert c["alu", "mac"] == 64


def test_hand_counted_ws(hw):
    m = count_accesses(TINY, "WS", hw, dict(k_sp=4, m_sp=2))
    c = m.counts
    # weight stationary: fetched once, read from RF at every use
    assert (c["dram", "weight"], c["buffer", "weight"], c["array", "weight"], c["rf", "weight"]) == (16, 16, 16, 64)
    # psums accumulate over 4 PEs, 2 passes -> 1 buffer round trip each: 2 a (b - 1) = 2
    assert (c["dram", "psum"], c["buffer", "psum"], c["array", "psum"], c["rf", "psum"]) == (8, 16, 48, 0)
    assert c["buffer", "ifmap"] == 32 and c["rf", "ifmap"] == 0


def test_hand_counted_os(hw):
    m = count_accesses(TINY, "OS", hw, dict(ph=2, pw=2, m_sp=2))
    c = m.counts
    # psum stationary in RF: 8 accumulations each -> 2 (8 - 1) RF accesses per output
    assert (c["dram", "psum"], c["buffer", "psum"], c["array", "psum"], c["rf", "psum"]) == (8, 0, 0, 112)
    # weights broadcast to the 4 output pixels: 64 / 4 buffer reads
    assert (c["buffer", "weight"], c["array", "weight"]) == (16, 64)
    # ifmaps: 2 channels x overlap 4*4/9 -> 64 / (32/9) = 18 buffer reads
    assert c["buffer", "ifmap"] == pytest.approx(18.0) and c["array", "ifmap"] == pytest.approx(64.0)


def test_hand_counted_rs(hw):
    # PE set R x E = 2 x 2, one channel set (r = 1) and one filter set (t = 1);
    # RF: p = 2 filters, q = 2 channels, n = 1
    m = count_accesses(TINY, "RS", hw, dict(h=2, e_sp=2, r=1, t=1, p=2, q=2, n=1))
    c = m.counts
    # weight: d = n F = 2, c = e_sp = 2 -> 1 buffer read per weight
    assert (c["buffer", "weight"], c["array", "weight"], c["rf", "weight"]) == (16, 32, 64)
    # psum: d = q S = 4, c = h r = 2 -> b = 8 / 8 = 1
    assert (c["buffer", "psum"], c["array", "psum"], c["rf", "psum"]) == (0, 8, 2 * 2 * 3 * 8)
    # ifmap: d = p S F / W = 8/3, c = diag = 2*2 / 3 = 4/3 -> a b = U / (c d) = (64/18) / (32/9) = 1
    assert c["buffer", "ifmap"] == pytest.approx(18.0)
    assert c["rf", "ifmap"] == pytest.approx(64.0)


def test_all_fits_gives_best_case_dram(hw):
    for df in DATAFLOWS:
        m = map_layer(TINY, df, hw)
        assert m.level_accesses("dram") == TINY.n_weights + TINY.n_ifmap + TINY.n_ofmap


def test_energy_is_sum_of_counts_times_energies(hw, alexnet_runs):
    e = hw.normalized_energies().as_dict()
    for df, runs in alexnet_runs.items():
        for m in runs:
            by = m.energy_by_level()
            for lv in LEVELS:
                expect = sum(v for (l, _), v in m.counts.items() if l == lv) * e[lv]
                assert by[lv] == pytest.approx(expect, rel=1e-12)
            assert m.energy == pytest.approx(sum(by.values()), rel=1e-12)
            assert sum(m.energy_by_datatype().values()) == pytest.approx(m.energy, rel=1e-12)


def test_mapping_never_below_best_case(alexnet_runs):
    for runs in alexnet_runs.values():
        for m in runs:
            L = m.layer
            assert m.level_accesses("dram") >= (L.n_weights + L.n_ifmap + L.n_ofmap) * (1 - 1e-9)
            assert m.level_accesses("alu") == L.macs


def test_equal_area_split(hw):
    for df in ("WS", "OS", "NLR"):
        h2 = hw.equal_area(df)
        area = lambda h: h.n_pe * h.rf_bytes * hw.rf_area_ratio + h.buffer_bytes
        assert area(h2) == pytest.approx(area(hw))
        assert h2.rf_bytes < hw.rf_bytes and h2.buffer_bytes > hw.buffer_bytes
    assert hw.equal_area("RS") is hw
    with pytest.raises(ValueError, match="allowed"):
        hw.equal_area("XS")


# --------------------------------------------------------------------------- survey results

def _tot(runs, sl):
    return sum(m.energy for m in runs[sl])


def test_rs_beats_other_dataflows_on_alexnet(alexnet_runs):
    """Survey: RS 1.4-2.5x less energy on CONV, ~1.3x on FC (batch 16, 256 PEs, equal area).

    This model gives WS 1.24x, OS 1.29x, NLR 2.40x on CONV and WS 1.06x, OS 1.35x, NLR 1.40x
    on FC: RS is the best everywhere, NLR sits in the published band, WS and OS fall short
    (the mapper finds better WS/OS mappings than the survey's fixed ones; see the report).
    Bounds here are the model's values +-5 %, and the published band for NLR.
    """
    conv, fc = slice(0, 5), slice(5, 8)
    rs_c, rs_f = _tot(alexnet_runs["RS"], conv), _tot(alexnet_runs["RS"], fc)
    r_conv = {df: _tot(alexnet_runs[df], conv) / rs_c for df in DATAFLOWS}
    r_fc = {df: _tot(alexnet_runs[df], fc) / rs_f for df in DATAFLOWS}
    assert 1.4 <= r_conv["NLR"] <= 2.5
    assert r_conv["WS"] == pytest.approx(1.24, rel=0.05)
    assert r_conv["OS"] == pytest.approx(1.29, rel=0.05)
    assert min(r_conv[d] for d in ("WS", "OS", "NLR")) > 1.15
    assert min(r_fc[d] for d in ("WS", "OS", "NLR")) > 1.0
    assert 1.0 < float(np.mean([r_fc[d] for d in ("WS", "OS", "NLR")])) < 1.6   # survey ~1.3


def test_conv_share_and_breakdown(alexnet_runs):
    rs = alexnet_runs["RS"]
    conv, total = _tot(rs, slice(0, 5)), _tot(rs, slice(0, 8))
    assert 0.7 < conv / total < 0.9                         # survey: ~80 %
    by_conv = {lv: sum(m.energy_by_level()[lv] for m in rs[:5]) for lv in LEVELS}
    by_fc = {lv: sum(m.energy_by_level()[lv] for m in rs[5:]) for lv in LEVELS}
    assert max(by_conv, key=by_conv.get) == "rf"            # RF dominates CONV
    assert max(by_fc, key=by_fc.get) == "dram"              # DRAM dominates FC


def test_horowitz_ratios_from_card():
    t = nds.load_card("tech_45nm_horowitz", TechEnergies)
    assert t.add32 / t.add8 == pytest.approx(3.3, abs=0.05)
    assert t.mult32 / t.mult8 == pytest.approx(15.5, abs=0.05)
    assert t.fmult32 / t.mult8 == pytest.approx(18.5, abs=0.05)
    assert t.mac_energy(8) == pytest.approx(t.mult8 + t.add8)


# --------------------------------------------------------------------------- near memory

def _systems(dram_card="mem_lpddr3"):
    pe3 = nds.load_card("pe_tetris_vault", PEArray)
    pe2 = nds.load_card("pe_tetris_2d", PEArray)
    base = NearMemorySystem("2D", pe2, nds.load_card(dram_card, DRAM2D, channels=4), engines=4)
    tet = NearMemorySystem("TETRIS", pe3, nds.load_card("hmc_gen1", HMC), engines=16)
    return base, tet


def test_tetris_vs_2d():
    """TETRIS: 4.1x throughput, 1.5x less energy than a low-power 2D-DRAM design.

    Tolerance on throughput: 2.5-5x (the configurations are recalled, unverified, and the
    model has neither TETRIS's in-memory accumulation nor its bypass ordering). This model
    gives about 3.2x. Energy: with the cards' figures (LPDDR3 3.7 pJ/bit = HMC DRAM-layer
    3.7 pJ/bit) the model cannot show the 1.5x: it gives 0.96x (larger arrays with smaller
    buffers refetch slightly more); asserted as such, not tuned.
    """
    base, tet = _systems()
    r = compare_systems(alexnet(16)[:5], base, tet)
    assert 2.5 < r["throughput_ratio"] < 5.0
    r_all = compare_systems(alexnet(16), base, tet)
    assert 0.85 < r_all["energy_ratio"] < 1.1
    # with a DDR3-like 2D memory (70 pJ/bit) the 3D design saves energy, as the survey says
    base3, _ = _systems("mem_ddr3")
    assert compare_systems(alexnet(16), base3, tet)["energy_ratio"] > 1.5


def test_roofline_memory_bound_fc():
    base, _ = _systems()
    from nds.dataflow import run_network
    run = run_network(alexnet(16), base)
    fc = run.layers[5]
    assert fc.memory_time_s > fc.compute_time_s and fc.time_s == fc.memory_time_s
    conv = run.layers[1]
    assert conv.compute_time_s > conv.memory_time_s and conv.time_s == conv.compute_time_s


# --------------------------------------------------------------------------- tile

@pytest.fixture(scope="module")
def tile():
    return PEArrayTile(pe=nds.load_card("pe_eyeriss", PEArray), memory=nds.load_card("mem_lpddr3", DRAM2D))


def test_tile_ideal_exact(tile):
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        w = jax.random.normal(jax.random.key(0), (7, 5), dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(1), (5,), dtype=jnp.float64)
        t = tile.ideal()
        y = t.apply(t.program(w, key=None), x, key=None)
        assert float(jnp.max(jnp.abs(y - w @ x))) < 1e-10
    finally:
        jax.config.update("jax_enable_x64", was)


def test_tile_quantization_error_bound(tile):
    t = dataclasses.replace(tile, bits_weight=8)
    w = jax.random.normal(jax.random.key(0), (16, 32))
    s = t.program(w, key=None)
    step = float(jnp.max(jnp.abs(w))) / 127
    assert float(jnp.max(jnp.abs(s - w))) <= step / 2 * (1 + 1e-5)
    assert float(jnp.max(jnp.abs(s - w))) > 0


def test_tile_cost_energy_split(tile):
    c = tile.cost((4096, 9216), 16)
    pe, mem = tile.pe, tile.memory
    assert c.energy_j["offchip"] == pytest.approx(c.counts["dram_accesses"] * 16 * mem.energy_per_bit)
    assert c.energy_j["compute"] == pytest.approx(c.macs * pe.e_alu * pe.unit_energy)
    onchip = (c.counts["buffer_accesses"] * pe.e_buffer + c.counts["array_accesses"] * pe.e_array
              + c.counts["rf_accesses"] * pe.e_rf) * pe.unit_energy
    assert c.energy_j["onchip_memory"] == pytest.approx(onchip)
    assert c.offchip_bytes == pytest.approx(2 * c.counts["dram_accesses"])
    t_compute = c.macs / (c.counts["active_pes"] * pe.clock)
    assert c.latency_s == pytest.approx(max(t_compute, c.offchip_bytes / mem.bandwidth))
    assert c.offchip_bytes >= 2 * (4096 * 9216)             # every weight read at least once
    assert c.area_m2 == pytest.approx(168 * pe.area_per_pe)


def test_tile_retention_changes_weights_reproducibly(tile):
    ret = nds.load_card("dram_retention_raidr", DRAMRetention)
    w = jax.random.normal(jax.random.key(0), (64, 64))
    nominal = dataclasses.replace(tile, bits_weight=8, retention=ret, refresh_interval_s=0.064, temperature_k=358.15)
    quant = dataclasses.replace(tile, bits_weight=8)
    assert jnp.array_equal(nominal.program(w, key=jax.random.key(3)), quant.program(w, key=None))
    hot = dataclasses.replace(nominal, refresh_interval_s=60.0)
    a, b = hot.program(w, key=jax.random.key(3)), hot.program(w, key=jax.random.key(3))
    assert jnp.array_equal(a, b)
    assert int(jnp.sum(a != quant.program(w, key=None))) > 0


def test_tile_bad_args(tile):
    with pytest.raises(ValueError, match="dataflow"):
        dataclasses.replace(tile, dataflow="XS")
    with pytest.raises(ValueError, match="bits_weight"):
        dataclasses.replace(tile, bits_weight=1)
    with pytest.raises(ValueError, match="retention"):
        dataclasses.replace(tile, retention=nds.load_card("dram_retention_raidr", DRAMRetention),
                            refresh_interval_s=1.0, temperature_k=300.0)
