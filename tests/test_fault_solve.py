"""The fault solve of :mod:`models.faults.solve` against independent references.

* A three-phase fault is the Z-bus voltage divider ``V_k = V_pre (1 − Z_kf/(Z_ff + Z_f))``:
  on ieee33 with the path impedances summed by hand from the Baran & Wu table
  (../shared/data), and on IEEE 123 across its transformers and regulators with the Z-bus
  inverted from OpenDSS's own system admittance matrix (every phase, every mutual).
* A bolted SLG fault against OpenDSS's own ``faultstudy``: the fault current
  ``Voc_a/Z_aa`` and the healthy phases' voltages ``Voc − Z_sc[:, a] I_a``.
* The inverters' K-factor fixed point against an iteration written here in plain
  opendssdirect (an ``ISource`` per inverter, set from the last solve), with the campus
  loaded (1.2 MW) behind its UPS front end.
* The linear lift (:meth:`DSSFeeder.lift_sensitivity`, the fast estimate) against the
  fault solve where they should agree: a shallow upstream sag.

No load draws anything in the divider tests (loads disabled): the divider is exact there.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import opendssdirect
import pytest
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import splu

from models.fault_support import SupportSource, support_lift
from models.faults.draws import Fault, Shot
from models.faults.solve import Component, FaultSolver
from models.feeder import DSSFeeder

IEEE123 = "feeders/ieee123/IEEE123Master.dss"


def _disable_loads(f: DSSFeeder) -> None:
    f.engine.Text.Command("batchedit load..* enabled=no")


def _fault(bus: str, kind: str = "3ph", phases=(1, 2, 3), r: float = 0.0) -> Fault:
    return Fault(0, bus, kind, tuple(phases), r, math.nan, (Shot(0.0, 0.1),))


def _solve_shot(f: DSSFeeder, fault: Fault, components=None, support=True):
    pre = f.solve(controls=False)
    assert pre.converged
    solver = FaultSolver(f)
    solver.begin(pre)
    try:
        sol = solver.solve(fault, components or {}, support)
    finally:
        solver.restore()
    return pre, sol, solver


def _path(rows: dict[str, tuple[str, complex]], bus: str) -> list[str]:
    out = []
    while bus in rows:
        out.append(bus)
        bus = rows[bus][0]
    return out


@pytest.mark.parametrize("fault_bus, r_ohm", [("18", 0.0), ("25", 0.5), ("33", 2.0), ("6", 0.1)])
def test_ieee33_three_phase_fault_is_the_zbus_divider(shared_dir, fault_bus, r_ohm):
    """Radial, no load, source ideal: ``Z_kf`` is the impedance of the path the two buses
    share from the source, ``Z_ff`` the fault bus's whole path (Ω, Baran & Wu's table)."""
    rows = {}
    with open(shared_dir / "data" / "ieee33_branches.csv") as fh:
        for r in csv.DictReader(fh):
            if r["normally_open"] == "0":
                rows[r["to_bus"]] = (r["from_bus"], complex(float(r["r_ohm"]), float(r["x_ohm"])))
    f = DSSFeeder.open("ieee33")
    _disable_loads(f)
    pre, sol, _ = _solve_shot(f, _fault(fault_bus, r=r_ohm))
    zs = 1e-6j  # the built-in source reactance (models/builtin_feeders.py)
    path_f = set(_path(rows, fault_bus))
    z_ff = zs + sum(rows[b][1] for b in path_f)
    r_f = max(r_ohm, 1e-4)  # OpenDSS's Fault takes at least 0.1 mΩ
    node_v = dict(zip(pre.node_names, sol.node_v_pu))
    for k in ("2", "6", "12", "18", "22", "25", "30", "33"):
        z_kf = zs + sum(rows[b][1] for b in path_f & set(_path(rows, k)))
        expect = abs(1.0 - z_kf / (z_ff + r_f))
        assert node_v[f"{k}.1"] == pytest.approx(expect, abs=1e-4), k
        assert node_v[f"{k}.2"] == pytest.approx(node_v[f"{k}.1"], abs=1e-9)


def _zbus(dss) -> tuple[np.ndarray, list[str]]:
    """The Z-bus of the compiled circuit: the inverse of OpenDSS's system Y (source
    admittance, lines, transformers, capacitors; loads disabled), and its node order."""
    data, rows, ptr = dss.YMatrix.getYsparse()
    n = len(ptr) - 1
    lu = splu(csc_matrix((data, rows, ptr), shape=(n, n)))
    return lu.solve(np.eye(n, dtype=complex)), [s.lower() for s in dss.Circuit.YNodeOrder()]


@pytest.mark.parametrize("fault_bus, r_ohm", [("610", 0.01), ("76", 0.2), ("35", 1.0)])
def test_ieee123_three_phase_fault_is_the_zbus_divider_across_transformers(shared_dir,
                                                                           fault_bus, r_ohm):
    """``V = V_pre − Z[:, F] (Z[F, F] + r I)⁻¹ V_pre[F]`` with ``F`` the faulted nodes, on the
    unbalanced, multi-voltage IEEE 123 (a fault behind the 4.16/0.48 kV transformer XFM1,
    one on the 4.16 kV primary and one at a three-phase bus of a regulated zone)."""
    f = DSSFeeder.open(str(shared_dir / IEEE123), extra_commands=["set maxcontroliter=30"])
    _disable_loads(f)
    pre, sol, _ = _solve_shot(f, _fault(fault_bus, r=r_ohm))
    dss = f.engine
    dss.Text.Command("batchedit fault..* enabled=no")
    f.solve(controls=False)
    z, order = _zbus(dss)
    v_pre = np.asarray(dss.Circuit.YNodeVArray(), dtype=float)
    v_pre = v_pre[0::2] + 1j * v_pre[1::2]
    F = [order.index(f"{fault_bus}.{p}") for p in (1, 2, 3)]
    i_f = np.linalg.solve(z[np.ix_(F, F)] + r_ohm * np.eye(3), v_pre[F])
    v_fault = v_pre - z[:, F] @ i_f
    node_v = dict(zip(pre.node_names, sol.node_v_pu))
    for node in ("610.1", "76.2", "35.3", "150.1", "52.1", "13.2", "66.3", "101.1"):
        dss.Circuit.SetActiveBus(node.split(".")[0])
        base_v = dss.Bus.kVBase() * 1e3
        assert node_v[node] == pytest.approx(abs(v_fault[order.index(node)]) / base_v,
                                             abs=2e-4), node


@pytest.mark.parametrize("bus, phase", [("13", 1), ("67", 2), ("610", 3)])
def test_ieee123_slg_fault_against_opendss_faultstudy(shared_dir, bus, phase):
    """A bolted SLG fault (0.1 mΩ) at ``bus``: OpenDSS's ``faultstudy`` gives the bus's
    open-circuit voltages ``Voc`` and short-circuit impedance matrix ``Z_sc``; then the fault
    current is ``I = Voc_a/(Z_sc[a, a] + Z_f)`` and the phases' voltages
    ``Voc − Z_sc[:, a] I``. The fault solve's Fault element carries that current and leaves
    those voltages."""
    path = str(shared_dir / IEEE123)
    study = opendssdirect.NewContext()
    study.Basic.AllowChangeDir(False)
    study.Text.Command(f'redirect "{path}"')
    study.Text.Command("set maxcontroliter=30")
    study.Solution.Solve()  # regulators at the taps of the loaded base case, as the feeder's
    study.Text.Command("batchedit load..* enabled=no")
    study.Solution.SolveNoControl()
    study.Text.Command("set mode=faultstudy")
    study.Solution.Solve()
    study.Circuit.SetActiveBus(bus)
    nodes = [int(n) for n in study.Bus.Nodes()]
    zsc = np.asarray(study.Bus.ZscMatrix(), dtype=float)
    zsc = (zsc[0::2] + 1j * zsc[1::2]).reshape(len(nodes), len(nodes))
    voc = np.asarray(study.Bus.Voc(), dtype=float)
    voc = voc[0::2] + 1j * voc[1::2]
    base_v = study.Bus.kVBase() * 1e3
    a = nodes.index(phase)
    i_expect = voc[a] / (zsc[a, a] + 1e-4)
    v_expect = np.abs(voc - zsc[:, a] * i_expect) / base_v

    f = DSSFeeder.open(path, extra_commands=["set maxcontroliter=30"])
    _disable_loads(f)
    pre, sol, _ = _solve_shot(f, _fault(bus, "slg", (phase,), 0.0))
    node_v = dict(zip(pre.node_names, sol.node_v_pu))
    for k, n in enumerate(nodes):
        assert node_v[f"{bus}.{n}"] == pytest.approx(v_expect[k], abs=2e-3), n
    # the Fault element's current, left enabled by a second solve of the same shot
    dss = f.engine
    solver = FaultSolver(f)
    solver.begin(f.solve(controls=False))
    solver._apply(_fault(bus, "slg", (phase,), 0.0))
    f.solve_raw(controls=False)
    dss.Circuit.SetActiveElement("Fault.dcshock_fault")
    cur = np.asarray(dss.CktElement.Currents(), dtype=float)
    assert abs(cur[0] + 1j * cur[1]) == pytest.approx(abs(i_expect), rel=5e-3)
    solver._clear()


def _iterate_with_isources(f_master_cmds, campus_bus, inv_bus, p_campus, q_campus, cap, i_lim,
                           v_transfer, rho, p_inv, k_mva, room, deadband, source_pu):
    """An independent fixed point in plain opendssdirect (test code, from
    docs/faults.md §3): the inverter as an ``ISource`` whose current is re-set from the last
    solve (active current held, reactive current by its K-factor within its room), the
    campus as a constant-PQ load re-set to its UPS front end's draw; until the bus voltages
    settle."""
    dss = opendssdirect.NewContext()
    for cmd in f_master_cmds:
        dss.Text.Command(cmd)
    dss.Text.Command("set mode=snapshot")
    dss.Vsources.First()
    v_src = dss.Vsources.PU()
    dss.Text.Command(f"new load.campus bus1={campus_bus}.1.2.3 phases=3 conn=delta "
                     f"kv={12.66} model=1 vminpu=0 vlowpu=0 vmaxpu=2 kw={p_campus * 1e3} "
                     f"kvar={q_campus * 1e3}")
    dss.Text.Command(f"new isource.inv bus1={inv_bus} phases=3 amps=0 angle=0")

    def bus_v(bus):
        dss.Circuit.SetActiveBus(bus)
        mags = np.asarray(dss.Bus.puVmagAngle(), dtype=float)
        return float(np.mean(mags[0::2][:3])), float(np.min(mags[0::2][:3])), float(mags[1])

    i_base = 1e6 / (math.sqrt(3) * 12.66e3)  # A per MVA at 1 pu, 12.66 kV

    def set_inverter(v, angle, i_p, i_q):
        # injecting Q (S = V I*): the current lags the bus voltage by atan(I_q/I_p)
        mag = math.hypot(i_p, i_q) * i_base
        dss.Text.Command(f"edit isource.inv amps={mag:.10g} "
                         f"angle={angle - math.degrees(math.atan2(i_q, i_p)):.10g}")

    dss.Solution.Solve()
    v_pre_inv, _, ang = bus_v(inv_bus)
    i_p0 = p_inv / v_pre_inv
    set_inverter(v_pre_inv, ang, i_p0, 0.0)
    dss.Solution.Solve()
    v_pre_inv, _, ang = bus_v(inv_bus)
    i_p0 = p_inv / v_pre_inv
    dss.Vsources.PU(v_src * source_pu)
    transferred = False
    v_c = v_inv = 1.0
    for _ in range(60):
        dss.Solution.SolveNoControl()
        if not dss.Solution.Converged() and not transferred:
            # the campus at full draw has no solution at this sag (a collapse): its UPS
            # takes over, which is what a sag that deep does
            transferred = True
            dss.Loads.Name("campus")
            dss.Loads.kW(rho * p_campus * 1e3)
            dss.Loads.kvar(rho * q_campus * 1e3)
            continue
        assert dss.Solution.Converged(), "the reference iteration must converge"
        v_c_new, low_c, _ = bus_v(campus_bus)
        v_inv_new, _, ang = bus_v(inv_bus)
        transferred |= low_c < v_transfer
        p = rho * p_campus if transferred else min(p_campus, i_lim * cap * v_c_new)
        dss.Loads.Name("campus")
        dss.Loads.kW(p * 1e3)
        dss.Loads.kvar(p * q_campus / p_campus * 1e3)
        dv = v_pre_inv - v_inv_new
        i_q = min(k_mva * dv, room) if dv > deadband else 0.0
        set_inverter(v_inv_new, ang, i_p0, i_q)
        if abs(v_c_new - v_c) < 1e-7 and abs(v_inv_new - v_inv) < 1e-7:
            break
        v_c, v_inv = v_c_new, v_inv_new
    return bus_v(campus_bus)[1], bus_v(inv_bus)[0]


@pytest.mark.parametrize("source_pu", [0.8, 0.65, 0.4])
def test_k_factor_fixed_point_against_an_isource_iteration(source_pu):
    """ieee33 with its loads, a 1.2 MW campus at bus 18 behind its UPS front end and a
    0.3 MW inverter (K S̄ = 1 MVA/pu, room 0.4 MVA) at bus 17, an upstream sag: the
    campus's lowest phase and the inverter's voltage within 2e-3 pu of the independent
    ISource iteration. (At a source of 0.5 pu neither settles: the feeder's own loads sit
    at their 0.5-pu kink; the fallback test below covers that band.)"""
    from models.builtin_feeders import BUILTINS

    f = DSSFeeder.open("ieee33")
    f.add_injection("campus", "18", 1.2, 0.24)
    f.add_injection("inv", "17", -0.3, 0.0)
    comps = {"campus": [Component("ups", 1.2, 0.24, capacity_mw=1.2)],
             "inv": [Component("inverter", -0.3, 0.0, k_mva_per_pu=1.0, room_mva=0.4,
                               deadband_pu=0.1)]}
    fault = Fault(0, "transmission", retained_pu=source_pu, shots=(Shot(0.0, 0.1),))
    pre, sol, _ = _solve_shot(f, fault, comps)
    assert not sol.fallback
    expect_c, expect_inv = _iterate_with_isources(
        BUILTINS["ieee33"](), "18", "17", 1.2, 0.24, 1.2, 1.2, 0.85, 0.02, 0.3, 1.0, 0.4, 0.1,
        source_pu)
    assert sol.v_low_pu["campus"] == pytest.approx(expect_c, abs=2e-3)
    assert sol.v_mean_pu["inv"] == pytest.approx(expect_inv, abs=2e-3)


def test_the_support_lifts_the_campus_and_the_linear_estimate_agrees_in_a_shallow_sag():
    """The fault solve with the inverter's response against the same shot without it: the
    response lifts the campus's bus. In a shallow upstream sag (0.85 of the source, the
    campus's UPS on battery so its draw does not move the voltage) the linear lift of
    :func:`models.fault_support.support_lift` over the transfer reactance agrees within 15 %."""
    f = DSSFeeder.open("ieee33", v_source_pu=1.05)
    f.add_injection("campus", "18", 1.2, 0.24)
    f.add_injection("inv", "17", -0.3, 0.0)
    comps = {"campus": [Component("ups", 1.2, 0.24, capacity_mw=1.2, transfer_v_pu=1.1)],
             "inv": [Component("inverter", -0.3, 0.0, k_mva_per_pu=1.0, room_mva=0.4,
                               deadband_pu=0.05)]}
    fault = Fault(0, "transmission", retained_pu=0.85, shots=(Shot(0.0, 0.1),))
    pre = f.solve(controls=False)
    solver = FaultSolver(f)
    solver.begin(pre)
    with_s = solver.solve(fault, comps, True)
    without = solver.solve(fault, comps, False)
    solver.restore()
    lift = with_s.v_mean_pu["campus"] - without.v_mean_pu["campus"]
    assert lift > 0.002
    x = f.lift_sensitivity(["18"], ["17"])[0, 0]
    x_self = f.lift_sensitivity(["17"], ["17"])[0, 0]
    v17 = pre.bus_voltage("17")
    src = SupportSource("inv", x, x_self, 1.0, 0.4, 0.05, v17)
    retained = without.v_mean_pu["inv"] / v17
    assert support_lift([src], retained) == pytest.approx(lift, rel=0.15)


def test_a_collapse_the_loads_cause_falls_back_to_impedances_and_says_so():
    """ieee33's own loads hold their power down to 0.5 pu: with the source at 0.6 pu the
    feeder's far end sits near that kink and OpenDSS's iteration does not settle; the shot
    is solved with the loads as impedances, marked ``fallback``, never left unsolved."""
    f = DSSFeeder.open("ieee33", v_source_pu=1.05)
    f.add_injection("campus", "18", 1.2, 0.24)
    comps = {"campus": [Component("ups", 1.2, 0.24, capacity_mw=1.2)]}
    fault = Fault(0, "transmission", retained_pu=0.6, shots=(Shot(0.0, 0.1),))
    pre, sol, _ = _solve_shot(f, fault, comps)
    assert sol.converged and sol.fallback and 0.4 < sol.v_low_pu["campus"] < 0.7
    after = f.solve()  # the shot left the engine at the pre-fault state (to its tolerance)
    assert after.converged and after.sub_p_mw == pytest.approx(pre.sub_p_mw, rel=5e-4)
    np.testing.assert_allclose(after.bus_v_pu, pre.bus_v_pu, atol=1e-4)
