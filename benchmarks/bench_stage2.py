"""Stage-II rolling step on ieee33: parameter update + solve, against rebuilding each step.

    python benchmarks/bench_stage2.py [--steps 50] [--rebuild-steps 10]

Set-up: built-in IEEE 33-bus (OpenDSS), the default scenario's campus (1.2 MW at bus 18,
its shock generator drawing the campus trajectory at 300 s), horizon 24 steps of 5 min,
four FCMs at different buses (BESS 18, LDES 25, generator 33, DR 6). Closed loop: at every
step OpenDSS solves the feeder with the campus draw and the previous dispatch, and that AC
result is the measurement (voltages, import, branch flows) the controller gets.

Prints (no assertions):
* the step time (parameter update + solve) of the persistent RollingMPC, median and max;
* the same for rebuilding the model and a fresh solver every step (baseline), and the ratio;
* the branch-flow network form in the persistent driver, for comparison with the compact form;
* |V| error of the MILP's first-step voltages against OpenDSS with that dispatch applied,
  for ``linearize_at = ac`` and ``flat``; and the flat-start vs AC-linearised LinDistFlow
  error at base load and with the campus at full draw (linearised at the base case).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyomo.environ as pyo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.interface import FCMState, Measurement  # noqa: E402
from controllers.network import (  # noqa: E402
    NetworkParams,
    build_network,
    operating_point_from_power_flow,
    predicted_voltages,
)
from controllers.solve import solve  # noqa: E402
from controllers.stage2 import MPCParams, RollingMPC, solve_horizon  # noqa: E402
from models.feeder import DSSFeeder  # noqa: E402
from models.fcm_catalog import Placement  # noqa: E402
from models.shocks import sample_campus_trajectories  # noqa: E402
from scenarios.config import DEFAULT_SCENARIO, load_scenario  # noqa: E402

PLACEMENTS = [
    Placement(kind="bess", bus="18", p_mw=0.5, e_mwh=1.0),
    Placement(kind="ldes", bus="25", p_mw=0.2, e_mwh=2.0),
    Placement(kind="gen", bus="33", p_mw=0.5),
    Placement(kind="dr", bus="6", p_mw=0.2, e_mwh=0.4),
]


def _measure(fd: DSSFeeder, t_s: float, campus_mw: float, tan_phi: float, state: dict[str, FCMState],
             sched: np.ndarray) -> tuple[Measurement, object]:
    fd.set_injection("campus", campus_mw, campus_mw * tan_phi)
    res = fd.solve()
    meas = Measurement(
        time_s=t_s, sub_p_mw=res.sub_p_mw, sub_q_mvar=res.sub_q_mvar, bus_v_pu=res.bus_voltages(),
        campus_p_mw={"campus1": campus_mw}, campus_online={"campus1": True}, fcm=dict(state),
        p_sched_mw=sched, converged=res.converged,
        branch_p_mw=dict(zip(res.line_names, res.line_p_mw.tolist())),
        branch_q_mvar=dict(zip(res.line_names, res.line_q_mvar.tolist())),
    )
    return meas, res


def _apply(fd: DSSFeeder, dispatch: dict[str, float]) -> None:
    for pl in PLACEMENTS:
        fd.set_injection(pl.label, -dispatch.get(pl.label, 0.0), 0.0)  # load convention


def _v_error(pred: dict[str, float], res) -> float:
    v = res.bus_voltages()
    return max(abs(pred[b] - v[b]) for b in pred)


def _advance(state: dict[str, FCMState], dispatch: dict[str, float], catalog, dt_h: float) -> dict[str, FCMState]:
    """Crude plant for the benchmark only: storage energy and DR budget follow the setpoints."""
    out = dict(state)
    for pl in PLACEMENTS:
        p = dispatch.get(pl.label, 0.0)
        st = state[pl.label]
        tech = catalog[pl.kind]
        if tech.technology == "storage":
            e = st.soc_mwh - (p / tech.eta_discharge if p > 0 else p * tech.eta_charge) * dt_h
            e = min(max(e, tech.soc_min * pl.e_mwh), tech.soc_max * pl.e_mwh)
            out[pl.label] = FCMState(p_mw=p, soc_mwh=e)
        elif tech.technology == "generator":
            on = p > 1e-6
            same = on == st.committed
            out[pl.label] = FCMState(p_mw=p, committed=on,
                                     time_in_state_s=(st.time_in_state_s if same else 0.0) + dt_h * 3600)
        else:
            used = min(st.soc_mwh + max(p, 0.0) * dt_h, pl.e_mwh)
            out[pl.label] = FCMState(p_mw=p, soc_mwh=used)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rebuild-steps", type=int, default=10)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    scenario = load_scenario(DEFAULT_SCENARIO)
    catalog = scenario.fcm.catalog
    cp = scenario.campus[0]
    tan_phi = cp.tan_phi
    params = dataclasses.replace(MPCParams.from_scenario(scenario), horizon_steps=24, horizon_step_s=300.0)
    dt_h = params.dt_h
    traj = sample_campus_trajectories(scenario, 1, scenario.seed, step_s=300.0,
                                      hours=(args.steps + 1) * 300.0 / 3600.0)[0, 0]

    fd = DSSFeeder.open("ieee33")
    base = fd.solve()
    feeder = fd.data
    fd.add_injection("campus", cp.bus, 0.0, 0.0)
    for pl in PLACEMENTS:
        fd.add_injection(pl.label, pl.bus, 0.0, 0.0)
    sched = np.full(params.horizon_steps, base.sub_p_mw + float(np.mean(traj)))
    state0 = {
        "bess_18": FCMState(soc_mwh=0.5), "ldes_25": FCMState(soc_mwh=1.0),
        "gen_33": FCMState(time_in_state_s=1e9), "dr_6": FCMState(),
    }

    print(f"# bench_stage2  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC  "
          f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"ieee33, horizon {params.horizon_steps} × {params.horizon_step_s:.0f} s, "
          f"{len(PLACEMENTS)} FCMs, {args.steps} rolling steps, mip_gap {params.mip_gap}, "
          f"time limit {params.time_limit_s} s")

    # --- the measurements of one closed-loop run (AC-linearised persistent MPC) -------------
    mpc = {form: RollingMPC(feeder, PLACEMENTS, catalog, dataclasses.replace(params, network_form=form))
           for form in ("compact", "branch")}
    mpc_flat = RollingMPC(feeder, PLACEMENTS, catalog, dataclasses.replace(params, linearize_at="flat"))
    state = dict(state0)
    dispatch = {pl.label: 0.0 for pl in PLACEMENTS}
    meas_log: list[Measurement] = []
    times = {"compact": [], "branch": [], "flat": [], "rebuild": []}
    err_ac, err_flat, statuses = [], [], []
    n_branch = min(args.steps, 20)
    for k in range(args.steps):
        _apply(fd, dispatch)
        meas, _ = _measure(fd, 300.0 * k, float(traj[k]), tan_phi, state, sched)
        meas_log.append(meas)
        d = mpc["compact"].step(meas)
        times["compact"].append(d.solve_s)
        statuses.append(d.status)
        if k < n_branch:
            times["branch"].append(mpc["branch"].step(meas).solve_s)
        d_flat = mpc_flat.step(meas)
        times["flat"].append(d_flat.solve_s)
        # AC check: the same campus draw, the dispatch applied
        for dd, errs in ((d, err_ac), (d_flat, err_flat)):
            if dd.predicted_v_pu:
                _apply(fd, dd.p_mw)
                errs.append(_v_error(dd.predicted_v_pu, fd.solve()))
        dispatch = d.p_mw
        state = _advance(state, dispatch, catalog, dt_h)

    for meas in meas_log[: args.rebuild_steps]:
        t0 = time.perf_counter()
        solve_horizon(feeder, PLACEMENTS, catalog, params, meas)
        times["rebuild"].append(time.perf_counter() - t0)

    def line(name: str, xs: list[float]) -> str:
        return (f"{name:<34} median {1e3 * statistics.median(xs):8.1f} ms   max {1e3 * max(xs):8.1f} ms"
                f"   (n={len(xs)})")

    print(line("persistent, compact form (default)", times["compact"][1:]))
    print(line("persistent, branch form", times["branch"][1:]))
    print(line("persistent, compact, flat start", times["flat"][1:]))
    print(line("rebuild every step (baseline)", times["rebuild"]))
    print(f"first step (build + first solve): {1e3 * times['compact'][0]:.0f} ms")
    print(f"speed-up of persistent compact vs rebuild (medians): "
          f"{statistics.median(times['rebuild']) / statistics.median(times['compact'][1:]):.1f}x")
    print(f"statuses: { {s: statuses.count(s) for s in sorted(set(statuses))} }, "
          f"fallbacks {mpc['compact'].fallbacks}")
    print(f"AC validation, max |V_MILP − V_OpenDSS| per step: linearize_at=ac median "
          f"{statistics.median(err_ac):.5f} max {max(err_ac):.5f} pu;  flat median "
          f"{statistics.median(err_flat):.5f} max {max(err_flat):.5f} pu")

    # --- flat vs AC-linearised LinDistFlow, single snapshots --------------------------------
    op_base = operating_point_from_power_flow(base)
    for label, campus in (("base load", 0.0), (f"campus {cp.capacity_mw} MW at bus {cp.bus}", cp.capacity_mw)):
        _apply(fd, {})
        fd.set_injection("campus", campus, campus * tan_phi)
        ac = fd.solve()
        errs = {}
        for name, op in (("flat", None), ("ac@base", op_base)):
            m = pyo.ConcreteModel()
            m.net = pyo.Block()
            build_network(m.net, feeder, range(1), NetworkParams(v_min_pu=0.5, allow_shedding=False),
                          operating_point=op)
            m.net.p_load_mw[cp.bus, 0] = pyo.value(m.net.p_load_mw[cp.bus, 0]) + campus
            m.net.q_load_mvar[cp.bus, 0] = pyo.value(m.net.q_load_mvar[cp.bus, 0]) + campus * tan_phi
            m.obj = pyo.Objective(expr=m.net.voltage_slack_pu)
            solve(m)
            errs[name] = _v_error(predicted_voltages(m.net), ac)
        print(f"LinDistFlow vs OpenDSS, {label:<26} max |ΔV|: flat {errs['flat']:.5f} pu, "
              f"AC-linearised at the base case {errs['ac@base']:.5f} pu")


if __name__ == "__main__":
    main()
