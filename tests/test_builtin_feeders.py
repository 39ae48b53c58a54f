"""Built-in Baran & Wu feeders against published results and an independent engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.builtin_feeders import branch_table, load_table
from models.feeder import DSSFeeder


@pytest.fixture(scope="module")
def ieee33() -> DSSFeeder:
    return DSSFeeder.open("ieee33")


@pytest.fixture(scope="module")
def ieee69() -> DSSFeeder:
    return DSSFeeder.open("ieee69")


def test_ieee33_published_losses_and_vmin(ieee33):
    # Baran & Wu, IEEE Trans. Power Delivery 4(2), 1989: 202.67 kW, Vmin 0.9131 pu at bus 18.
    res = ieee33.solve()
    assert res.converged
    assert res.losses_mw * 1e3 == pytest.approx(202.67, rel=0.005)
    assert res.v_min_pu == pytest.approx(0.9131, abs=1e-4)
    assert res.v_min_bus == "18"
    assert res.total_load_mw == pytest.approx(3.715, rel=1e-6)


def test_ieee69_published_losses_and_vmin(ieee69):
    # Baran & Wu, IEEE Trans. Power Delivery 4(1), 1989: 224.95 kW, Vmin 0.9092 pu at bus 65.
    res = ieee69.solve()
    assert res.converged
    assert res.losses_mw * 1e3 == pytest.approx(224.95, rel=0.005)
    assert res.v_min_pu == pytest.approx(0.9092, abs=1e-4)
    assert res.v_min_bus == "65"


def test_builtins_match_shared_reference(shared_dir, ieee33, ieee69):
    # ../shared/data/reference.json: OpenDSS + pandapower at tolerance 1e-10.
    ref = json.loads((shared_dir / "data" / "reference.json").read_text())
    for feeder, key in ((ieee33, "ieee33"), (ieee69, "ieee69")):
        res = feeder.solve()
        computed = ref[key]["computed_here"]
        assert res.losses_mw * 1e3 == pytest.approx(computed["losses_kw"], rel=1e-3)
        assert res.losses_mvar * 1e3 == pytest.approx(computed["losses_kvar"], rel=1e-3)
        assert res.v_min_pu == pytest.approx(computed["v_min_pu"], abs=2e-5)
        assert feeder.data.total_load_mw * 1e3 == pytest.approx(ref[key]["total_load_kw"], rel=1e-9)


def test_ieee33_voltages_equal_pandapower_newton_raphson(ieee33):
    # Independent engine: pandapower's case33bw (same Baran & Wu data), Newton-Raphson.
    pn = pytest.importorskip("pandapower.networks")
    import pandapower as pp

    net = pn.case33bw()
    pp.runpp(net, algorithm="nr", tolerance_mva=1e-10, calculate_voltage_angles=True)
    res = ieee33.solve()
    ours = res.bus_voltages()
    theirs = {str(i + 1): float(v) for i, v in zip(net.bus.index, net.res_bus.vm_pu)}
    assert set(theirs) == set(ours)
    diff = max(abs(ours[b] - theirs[b]) for b in theirs)
    assert diff < 1e-4


def test_feeder_data_is_the_radial_baran_wu_graph(ieee33):
    data = ieee33.data
    assert data.source_bus == "1"
    assert data.bus_names[0] == "1" and set(data.bus_names) == {str(i) for i in range(1, 34)}
    assert data.base_kv_ll == pytest.approx(12.66)
    table = {(b.from_bus, b.to_bus): b for b in branch_table("ieee33") if not b.tie}
    assert len(data.branches) == len(table) == 32
    z_base = 12.66**2 / data.s_base_mva
    for br in data.branches:
        row = table[(br.from_bus, br.to_bus)]
        assert br.r_ohm == pytest.approx(row.r_ohm, rel=1e-9)
        assert br.x_ohm == pytest.approx(row.x_ohm, rel=1e-9)
        assert br.r_pu == pytest.approx(row.r_ohm / z_base, rel=1e-9)
        assert br.rating_mva == pytest.approx(np.sqrt(3) * 12.66 * row.normamps / 1e3)
    seen = {data.source_bus}
    for br in data.branches:  # ordered from the substation outward
        assert br.from_bus in seen
        seen.add(br.to_bus)
    loads = {ld.bus: ld for ld in load_table("ieee33")}
    assert {ld.bus: round(ld.p_mw * 1e3, 6) for ld in data.loads} == {
        b: ld.p_kw for b, ld in loads.items()}
    # the five normally open ties are present in the model but open
    assert sorted(ieee33.topology_report.open_elements) == sorted(
        f"Line.l{b.branch}" for b in branch_table("ieee33") if b.tie)
    assert ieee33.topology_report.radial


def test_line_flows_are_oriented_outward_and_balance(ieee33):
    res = ieee33.solve()
    p = dict(zip(res.line_names, res.line_p_mw))
    assert p["l1"] == pytest.approx(res.sub_p_mw, rel=1e-6)
    assert all(v > 0 for name, v in p.items() if name not in {"l33", "l34", "l35", "l36", "l37"})
    assert max(res.line_loading_pct) < 100.0
