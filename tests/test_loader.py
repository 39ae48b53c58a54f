"""The OpenDSS loader: reference feeders, radial-graph extraction, hand-checkable cases, bad
input. Real OpenDSS throughout; reference feeders come from ../shared (skipped if absent)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from models.errors import ScenarioError
from models.feeder import DSSFeeder

from conftest import SHARED_DIR


def _cases(with_extra: bool) -> list:
    out = []
    for ref in sorted((SHARED_DIR / "feeders").glob("*/reference.json")) if SHARED_DIR.is_dir() else ():
        for name, case in json.loads(ref.read_text())["cases"].items():
            if bool(case["extra"]) == with_extra:
                out.append(pytest.param(ref.parent / case["master"], case, id=name))
    return out


@pytest.mark.parametrize(("master", "case"), _cases(with_extra=False))
def test_reference_feeder_reproduces_opendss_results(shared_dir, master, case):
    # ../shared/feeders/<name>/reference.json: OpenDSS snapshot results for this master file.
    before = sorted(p.name for p in master.parent.iterdir())
    feeder = DSSFeeder.open(str(master))
    # OpenDSS report files (RegControl debugtrace in EPRI ckt24) go to a private temp
    # folder, never next to the user's model
    assert sorted(p.name for p in master.parent.iterdir()) == before
    res = feeder.base_case
    assert res.converged
    assert len(res.bus_names) == case["buses"] and len(res.node_names) == case["nodes"]
    assert res.losses_mw * 1e3 == pytest.approx(case["losses_kw"], rel=0.01)
    # reactive losses of the series elements only, as OpenDSS reports them (a capacitor's
    # "loss" is its output)
    assert res.losses_mvar * 1e3 == pytest.approx(case["losses_kvar"], rel=0.01)
    assert res.total_load_mw * 1e3 == pytest.approx(case["load_kw_solved"], rel=0.01)
    assert res.v_min_pu == pytest.approx(case["vmin_pu"], abs=1e-3)
    assert _is_tree_from_source(feeder)


@pytest.fixture(scope="module", params=["ieee123", "ieee8500"])
def big_feeder(request, shared_dir):
    ref = json.loads((shared_dir / "feeders" / request.param / "reference.json").read_text())
    case = ref["cases"][request.param]
    master = shared_dir / "feeders" / request.param / case["master"]
    return DSSFeeder.open(str(master), extra_commands=case["extra"]), case


def test_radial_graph_reaches_every_energized_bus(big_feeder):
    feeder, case = big_feeder
    res = feeder.base_case
    assert res.converged
    assert res.losses_mw * 1e3 == pytest.approx(case["losses_kw"], rel=0.01)
    energized = {b for b, v in zip(res.bus_names, res.bus_v_pu) if v > 0.01}
    assert len(energized) == case["buses"]
    assert energized <= set(feeder.data.bus_names)
    assert _is_tree_from_source(feeder)
    # single-phase regulator banks are one branch each, not loops
    assert not feeder.topology_report.mesh_elements
    kinds = {br.kind for br in feeder.data.branches}
    assert {"line", "regulator", "switch", "transformer"} <= kinds
    # the loads of the description equal the feeder's loads at nominal voltage
    assert feeder.data.total_load_mw * 1e3 == pytest.approx(case["load_kw_solved"], rel=0.05)


def _is_tree_from_source(feeder: DSSFeeder) -> bool:
    data = feeder.data
    seen = {data.source_bus}
    for br in data.branches:
        if br.from_bus not in seen or br.to_bus in seen:
            return False
        seen.add(br.to_bus)
    return len(data.branches) == len(data.buses) - 1 and seen == set(data.bus_names)


def test_line_impedance_from_ieee13_linecode(shared_dir):
    # IEEE 13-node test feeder, configuration 601 (published Z matrix, ohm/mile), line
    # 650-632 of 2000 ft. Z1 = mean(Zii) - mean(Zij).
    feeder = DSSFeeder.open(str(shared_dir / "feeders" / "ieee13" / "IEEE13Nodeckt.dss"))
    br = feeder.data.parent_branch["632"]
    r_self, r_mut = (0.3465 + 0.3375 + 0.3414) / 3, (0.1560 + 0.1580 + 0.1535) / 3
    x_self, x_mut = (1.0179 + 1.0478 + 1.0348) / 3, (0.5017 + 0.4236 + 0.3849) / 3
    miles = 2000 / 5280
    assert br.from_bus == "rg60" and br.kind == "line"
    assert br.r_ohm == pytest.approx((r_self - r_mut) * miles, rel=1e-3)
    assert br.x_ohm == pytest.approx((x_self - x_mut) * miles, rel=1e-3)
    assert feeder.data.parent_branch["rg60"].kind == "regulator"
    assert feeder.data.parent_branch["650"].kind == "transformer"


TINY = """clear
new circuit.tiny basekv=115 bus1=src pu=1.0 r1=0 x1=0.0001 r0=0 x0=0.0001
new transformer.sub phases=3 windings=2 buses=[src, a] conns=[delta, wye] kvs=[115, 12.47]
~ kvas=[5000, 5000] %rs=[0.5, 0.5] xhl=6
new line.ab bus1=a bus2=b phases=3 r1=1 x1=2 r0=1 x0=2 c1=0 c0=0 length=1 normamps=200
new line.bc bus1=c bus2=b phases=3 r1=0.5 x1=0.5 r0=0.5 x0=0.5 c1=0 c0=0 length=1
new load.b bus1=b phases=3 kv=12.47 kw=1000 kvar=300 model=1
new load.c bus1=c phases=3 kv=12.47 kw=200 kvar=0 model=1
{extra}
set voltagebases=[115, 12.47]
calcvoltagebases
"""


def test_hand_checkable_feeder_data(tmp_path):
    master = tmp_path / "tiny.dss"
    master.write_text(TINY.format(extra=""))
    feeder = DSSFeeder.open(str(master))
    data = feeder.data
    assert data.source_bus == "src" and data.base_kv_ll == pytest.approx(115)
    assert data.bus_names == ("src", "a", "b", "c")
    sub, ab, bc = data.branches
    # transformer: Z = (0.5 % + 0.5 % + j 6 %) on 5 MVA, referred to 12.47 kV; s_base = 1 MVA
    assert sub.kind == "transformer" and (sub.from_bus, sub.to_bus) == ("src", "a")
    assert sub.r_ohm == pytest.approx(0.01 * 12.47**2 / 5, rel=1e-9)
    assert sub.x_ohm == pytest.approx(0.06 * 12.47**2 / 5, rel=1e-9)
    assert sub.r_pu == pytest.approx(0.01 / 5, rel=1e-9) and sub.x_pu == pytest.approx(0.06 / 5, rel=1e-9)
    assert sub.rating_mva == pytest.approx(5.0)
    assert (ab.r_ohm, ab.x_ohm) == pytest.approx((1.0, 2.0))
    assert ab.r_pu == pytest.approx(1.0 / 12.47**2)
    assert ab.rating_mva == pytest.approx(math.sqrt(3) * 12.47 * 200 / 1e3)
    # line bc is drawn c -> b; the tree orients it b -> c and its flow follows the tree
    assert (bc.from_bus, bc.to_bus) == ("b", "c")
    res = feeder.solve()
    flows = dict(zip(res.line_names, res.line_p_mw))
    assert flows["bc"] == pytest.approx(0.2, rel=1e-3)
    # a-b carries both loads plus the losses of a-b and b-c, less than the substation import
    assert 1.2 < flows["ab"] < res.sub_p_mw
    assert res.sub_p_mw == pytest.approx(1.2 + res.losses_mw, abs=1e-3)
    assert {ld.bus: ld.p_mw for ld in data.loads} == pytest.approx({"b": 1.0, "c": 0.2})
    assert feeder.topology_report.radial and not data.notes


def test_mesh_and_islands_are_reported_not_dropped(tmp_path, caplog):
    extra = ("new line.loop bus1=a bus2=c phases=3 r1=3 x1=3 r0=3 x0=3 c1=0 c0=0 length=1\n"
             "new line.tie bus1=c bus2=d phases=3 r1=1 x1=1 r0=1 x0=1 c1=0 c0=0 length=1\n"
             "new load.d bus1=d phases=3 kv=12.47 kw=10 kvar=0 model=1\n"
             "open line.tie 1")
    master = tmp_path / "mesh.dss"
    master.write_text(TINY.format(extra=extra))
    with caplog.at_level(logging.WARNING, logger="models.feeder"):
        feeder = DSSFeeder.open(str(master))
    report = feeder.topology_report
    # the loop src-a-b-c-a: breadth first from the source, the element met last closes it
    assert report.mesh_elements == ("Line.bc",)
    assert len(feeder.data.branches) == len(feeder.data.buses) - 1
    assert report.unreached_buses == ("d",)
    assert report.open_elements == ("Line.tie",)
    assert not report.radial
    assert any("meshed" in n for n in feeder.data.notes)
    assert any("disconnected" in n and "'src'" in n for n in feeder.data.notes)
    assert "meshed" in caplog.text and "disconnected" in caplog.text
    res = feeder.solve()  # the meshed flow still solves; the island is de-energized
    assert res.converged and res.bus_voltage("d") == pytest.approx(0.0, abs=1e-6)
    assert "d" != res.v_min_bus


def test_feeders_in_one_process_are_independent():
    a, b = DSSFeeder.open("ieee33"), DSSFeeder.open("ieee69")
    a0, b0 = a.solve(), b.solve()
    a.add_injection("big", "18", 1.0, 0.0)
    a.set_source_voltage(0.95)
    b1 = b.solve()
    a1 = a.solve()
    np.testing.assert_allclose(b1.bus_v_pu, b0.bus_v_pu, atol=1e-7)  # re-solve refinement only
    assert a1.v_min_pu < a0.v_min_pu - 0.05
    assert b.solve().losses_mw == pytest.approx(b0.losses_mw, rel=1e-6)


def test_injection_sign_load_convention_and_load_scale():
    feeder = DSSFeeder.open("ieee33")
    base = feeder.solve()
    feeder.add_injection("fcm", "25", p_mw=-0.5, q_mvar=0.0)  # -p: injection into the grid
    res = feeder.solve()
    assert res.sub_p_mw < base.sub_p_mw - 0.45
    # OpenDSS converges to its default tolerance (1e-4 pu): balance to 1 kW
    assert res.total_load_mw == pytest.approx(3.715 - 0.5, abs=1e-3)
    feeder.set_load_scale(0.5)  # own loads only; the injection keeps its set-point
    res = feeder.solve()
    assert res.total_load_mw == pytest.approx(0.5 * 3.715 - 0.5, abs=1e-3)
    assert feeder.injections == {"fcm": (-0.5, 0.0)}
    feeder.set_source_voltage(0.9)
    assert feeder.solve().bus_voltage("1") == pytest.approx(0.9, abs=1e-6)


def test_diverged_solve_reports_nan_and_base_case_is_noted():
    feeder = DSSFeeder.open("ieee33", extra_commands=["set maxiterations=1"])
    assert not feeder.base_case.converged
    assert "did not converge" in " ".join(feeder.data.notes)
    res = feeder.solve()
    assert not res.converged and np.isnan(res.bus_v_pu).all() and math.isnan(res.losses_mw)
    assert np.isnan(res.line_p_mw).all() and math.isnan(res.v_min_pu)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"source": "ieee3"}, "unknown feeder 'ieee3'; allowed: ieee33, ieee69"),
    ({"source": "no/such/file.dss"}, "file not found"),
    ({"source": "ieee33", "scale": 0}, "scale: must be"),
    ({"source": "ieee33", "scale": float("nan")}, "scale: must be"),
    ({"source": "ieee33", "extra_commands": ["new line.x bus1=1 bus2=2 colour=red"]},
     r"extra_commands\[0\]"),
])
def test_bad_input_raises_scenario_error(kwargs, match):
    with pytest.raises(ScenarioError, match=match):
        DSSFeeder.open(**kwargs)


def test_bad_files_and_bus_names(tmp_path):
    empty = tmp_path / "empty.dss"
    empty.write_text("// nothing here\n")
    with pytest.raises(ScenarioError, match="empty"):
        DSSFeeder.open(str(empty))
    nocircuit = tmp_path / "nocircuit.dss"
    nocircuit.write_text("set voltagebases=[12.47]\n")
    with pytest.raises(ScenarioError, match="OpenDSS rejected|no circuit"):
        DSSFeeder.open(str(nocircuit))
    nobase = tmp_path / "nobase.dss"
    nobase.write_text(TINY.format(extra="").replace("set voltagebases=[115, 12.47]\ncalcvoltagebases\n", ""))
    with pytest.raises(ScenarioError, match="voltage base"):
        DSSFeeder.open(str(nobase))
    partial = tmp_path / "partial.dss"  # bus d only gets its base after calcvoltagebases
    partial.write_text(TINY.format(extra="") + "new line.cd bus1=c bus2=d phases=3 r1=1 x1=1 length=1\n")
    feeder = DSSFeeder.open(str(partial))
    assert any("no voltage base" in n and "d" in n for n in feeder.data.notes)
    res = feeder.solve()
    assert math.isnan(res.bus_voltage("d")) and res.v_min_bus != "d" and 0.9 < res.v_min_pu < 1.0
    feeder = DSSFeeder.open("ieee33")
    with pytest.raises(ScenarioError, match="unknown bus '34'"):
        feeder.add_injection("x", "34")
    with pytest.raises(ScenarioError, match="letters, digits"):
        feeder.add_injection("a b", "3")
    feeder.add_injection("x", "3")
    with pytest.raises(ScenarioError, match="exists"):
        feeder.add_injection("x", "4")



def test_branch_flows_follow_feeder_data(shared_dir):
    """branch_* arrays: one entry per FeederData branch; a per-phase regulator bank's flow
    is the sum over its three units and equals the flow of the next line within its loss."""
    feeder = DSSFeeder.open(str(shared_dir / "feeders" / "ieee13" / "IEEE13Nodeckt.dss"))
    res = feeder.solve()
    assert res.branch_names == tuple(br.name for br in feeder.data.branches)
    p = dict(zip(res.branch_names, res.branch_p_mw))
    reg = feeder.data.parent_branch["rg60"]
    assert reg.kind == "regulator"
    assert p[reg.name] == pytest.approx(p[feeder.data.parent_branch["632"].name], rel=1e-3)
    assert p[feeder.data.parent_branch["650"].name] == pytest.approx(res.sub_p_mw, rel=1e-9)
    ieee33 = DSSFeeder.open("ieee33").solve()
    lines = dict(zip(ieee33.line_names, ieee33.line_p_mw))
    for name, value in zip(ieee33.branch_names, ieee33.branch_p_mw):
        assert value == pytest.approx(lines[name], rel=1e-12)
