#!/usr/bin/env python
"""Real-feeder benchmarks (issue 9; prints measured figures, no assertions).

    python benchmarks/bench_real_feeders.py step-cost [--steps N]     # IEEE 8500 World vs plain loop
    python benchmarks/bench_real_feeders.py invariants [--solves N]   # the §2a check's share of a solve
    python benchmarks/bench_real_feeders.py accuracy                  # LinDistFlow vs OpenDSS, six feeders
    python benchmarks/bench_real_feeders.py mpc-push [--solves N]     # Stage-II parameter push, ckt5 and 8500
    python benchmarks/bench_real_feeders.py lift                      # fault-support transfer reactance
    python benchmarks/bench_real_feeders.py all

``step-cost``: IEEE 8500 (``set maxiterations=20``) with a 1.5 MW campus and a 0.5 MW BESS at
a 12.47 kV bus, the whole World with controllers ``none`` and ``rule`` for N steps of 60 s.
Baseline, in the same run: the recorded campus and BESS powers and load multipliers applied
to a plain opendssdirect engine in a Python loop (one load per injection bus, one
``Solution.Solve()`` per step, nothing read back but the substation import), i.e. the
power-flow work the run cannot avoid. The World's figure is ``world.run`` only (no setup, no
KPIs); FeederSim's own share (its step: set-points, solve, reading and checking the
results) is given beside it.

``invariants``: the same feeder and injections; N solves with changing set-points through
``DSSFeeder.solve()``; the time of the invariant check (reading ``AllElementLosses`` and
:meth:`~models.feeder.DSSFeeder.invariant_violations`) against the time of OpenDSS's solve
itself, both measured inside the same solves.

``mpc-push``: the Stage-II MPC (reduced rows) on EPRI ckt5 and IEEE 8500 with a campus and
a BESS, built at the plan's first reading; N pushes of new parameter values (two
measurements, alternating) by :meth:`controllers.highs_direct.DirectHighs.push`, against
Pyomo's own APPSI ``update_params`` of the same model after the same changes (baseline).

``lift``: :meth:`~models.feeder.DSSFeeder.lift_sensitivity` (one POI, its own bus and one
other inverter bus) on ieee33, IEEE 123, EPRI ckt5 and IEEE 8500: the first call (the system
admittance matrix, its sparse LU, the load corrections) and a cached one, against one
snapshot power flow (``DSSFeeder.solve()``) of the same feeder (baseline, same run).

``accuracy``: :func:`controllers.ac_validation.snapshot_accuracy` on IEEE 13, 34, 37, 123 and EPRI
ckt5, J1 with two campuses of 10 % of the feeder's load (the table of docs/feeders.md §8).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import opendssdirect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.feeder import DSSFeeder  # noqa: E402
from scenarios.config import validate_scenario  # noqa: E402
from scenarios.runner import run_scenario  # noqa: E402
from controllers.ac_validation import campus_buses, snapshot_accuracy  # noqa: E402
from scenarios.timeseries_io import read_timeseries  # noqa: E402

SHARED = REPO.parent / "shared" / "feeders"
MASTER_8500 = SHARED / "ieee8500" / "Master.dss"
EXTRA_8500 = ["set maxiterations=20"]
BUS_8500 = "m1026328"
ACCURACY = {
    "ieee13": ("ieee13/IEEE13Nodeckt.dss", [], None),
    "ieee34": ("ieee34/ieee34Mod1.dss", [], None),
    "ieee37": ("ieee37/ieee37.dss", ["set maxiterations=100"], None),
    "ieee123": ("ieee123/IEEE123Master.dss", ["set maxcontroliter=30"], ["66", "101"]),
    "epri_ckt5": ("epri_ckt5/Master_ckt5.dss", [], None),
    "epri_j1": ("epri_j1/Master_noPV.dss", [], None),
}


def header() -> None:
    print(f"# {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, opendssdirect {opendssdirect.__version__}")


def scenario_8500(steps: int, kind: str):
    return validate_scenario({
        "name": "ieee8500_campus", "seed": 42,
        "feeder": {"source": str(MASTER_8500), "extra_commands": EXTRA_8500},
        "simulation": {"hours": steps * 60 / 3600, "step_s": 60},
        "grid": {"v_min_pu": 0.9, "v_max_pu": 1.1, "ramp_limit_mw_per_min": 0.2},
        "campus": [{"name": "campus1", "bus": BUS_8500, "capacity_mw": 1.5}],
        "fcm": {"placements": [{"kind": "bess", "bus": BUS_8500, "p_mw": 0.5, "e_mwh": 1.0}]},
        "controller": {"kind": kind},
    }, "<ieee8500_campus>")


def plain_loop(ts) -> float:
    """The baseline: the recorded set-points through plain opendssdirect (seconds)."""
    dss = opendssdirect.NewContext()
    dss.Basic.AllowChangeDir(False)
    dss.Text.Command(f'redirect "{MASTER_8500}"')
    for cmd in EXTRA_8500:
        dss.Text.Command(cmd)
    dss.Text.Command("set mode=snapshot")
    dss.Solution.Solve()
    dss.Text.Command(f"new load.campus bus1={BUS_8500}.1.2.3 phases=3 conn=delta kv=12.47 "
                     "model=1 status=fixed vminpu=0.5 vmaxpu=2 kw=0 kvar=0")
    p = ts["dc.campus1.p_mw"].to_numpy(float) - ts["fcm.bess_m1026328.p_mw"].to_numpy(float)
    q = ts["dc.campus1.q_mvar"].to_numpy(float) - ts["fcm.bess_m1026328.q_mvar"].to_numpy(float)
    scale = ts["sub.load_scale"].to_numpy(float)
    t0 = time.perf_counter()
    for t in range(len(ts)):
        dss.Solution.LoadMult(float(scale[t]))
        dss.Loads.Name("campus")
        dss.Loads.kW(float(p[t]) * 1e3)
        dss.Loads.kvar(float(q[t]) * 1e3)
        try:
            dss.Solution.Solve()
        except opendssdirect.DSSException:
            dss.Text.Command("set mode=snapshot")
            dss.Solution.Solve()
        if not dss.Solution.Converged():
            dss.Solution.InitSnap()
            dss.Solution.Solve()
        _ = dss.Circuit.TotalPower()
    return time.perf_counter() - t0


def step_cost(steps: int) -> None:
    print(f"\n## IEEE 8500, 1.5 MW campus + 0.5 MW BESS at {BUS_8500}, {steps} steps of 60 s")
    print("| controller | World ms/step | FeederSim ms/step | plain loop ms/step | World ÷ loop | FeederSim ÷ loop |")
    print("|---|---|---|---|---|---|")
    for kind in ("none", "rule"):
        with tempfile.TemporaryDirectory() as tmp:
            kpis = run_scenario(scenario_8500(steps, kind), Path(tmp) / "run", progress=False)
            ts = read_timeseries(Path(tmp) / "run" / "timeseries.parquet")
        base = plain_loop(ts)
        world, pf = kpis["wall_run_s"], kpis["wall_powerflow_s"]
        print(f"| {kind} | {1e3 * world / steps:.2f} | {1e3 * pf / steps:.2f} | "
              f"{1e3 * base / steps:.2f} | {world / base:.2f}× | {pf / base:.2f}× |")
        split = {k[5:-2]: kpis[k] for k in ("wall_powerflow_s", "wall_recording_s", "wall_models_s",
                                            "wall_controller_other_s", "wall_mosaik_s")}
        print(f"|   split of world.run | " + ", ".join(f"{k} {100 * v / world:.0f} %"
                                                      for k, v in split.items()) + " | | | | |")


def invariants(solves: int, repeat: int = 3) -> None:
    """The loader's solve with and without the invariant check, alternating blocks of
    ``solves`` solves with the same changing set-points (best of ``repeat`` per variant),
    against OpenDSS's ``Solution.Solve`` alone."""
    feeder = DSSFeeder.open(str(MASTER_8500), extra_commands=EXTRA_8500)
    feeder.add_injection("campus", BUS_8500, 1.0, 0.2)
    feeder.solve()
    dss = feeder._dss
    setpoints = 1.0 + 0.4 * np.sin(np.arange(solves) / 3.0)

    def block(fn) -> float:
        t0 = time.perf_counter()
        for p in setpoints:
            feeder.set_injection("campus", float(p), 0.2)
            fn()
        return (time.perf_counter() - t0) / solves

    def checked(flag: bool):
        def run():
            feeder.check_invariants = flag
            feeder.solve()
        return run

    best = {"raw": math.inf, "off": math.inf, "on": math.inf}
    for _ in range(repeat):
        best["raw"] = min(best["raw"], block(dss.Solution.Solve))
        best["off"] = min(best["off"], block(checked(False)))
        best["on"] = min(best["on"], block(checked(True)))
    feeder.check_invariants = True
    extra = best["on"] - best["off"]
    print(f"\n## the invariant check on IEEE 8500 ({solves} solves × best of {repeat}, changing campus set-point)")
    print(f"OpenDSS Solution.Solve alone            : {1e3 * best['raw']:.3f} ms/solve")
    print(f"DSSFeeder.solve, invariants not checked : {1e3 * best['off']:.3f} ms/solve")
    print(f"DSSFeeder.solve, invariants checked     : {1e3 * best['on']:.3f} ms/solve")
    print(f"the check costs {1e3 * extra:.3f} ms/solve = {100 * extra / best['raw']:.1f} % of a solve")


def accuracy() -> None:
    logging.getLogger("models.feeder").setLevel(logging.ERROR)
    print("\n## LinDistFlow against OpenDSS, two campuses of 10 % of the feeder load each (pf 0.98)")
    print("| feeder | buses | campus buses | campus MW | flat, frozen | calibrated, frozen | "
          "calibrated, controls act |")
    print("|---|---|---|---|---|---|---|")
    for name, (master, extra, buses) in ACCURACY.items():
        feeder = DSSFeeder.open(str(SHARED / master), extra_commands=extra)
        buses = buses or campus_buses(feeder.data, 2)
        total = feeder.data.total_load_mw
        r = snapshot_accuracy(feeder, {b: (0.1 * total, 0.02 * total) for b in buses})
        f, c = r["frozen"], r["controls"]

        def cell(row, model):
            return f"{row[model]['max_abs_v_error_pu']:.4f} ({row[model]['mean_abs_v_error_pu']:.4f})"

        print(f"| {name} | {f['buses']} | {', '.join(buses)} | {r['campus_mw']:.3f} | "
              f"{cell(f, 'flat')} | {cell(f, 'calibrated')} | {cell(c, 'calibrated')} |")
    print("cells: max (mean) |V_model − V_OpenDSS| over the energized buses, pu")


def mpc_push(n: int) -> None:
    from controllers.factory import make_controller
    from controllers.interface import Measurement
    from controllers.solve import highs
    from scenarios.world import plan_world

    cases = {"epri_ckt5": ("epri_ckt5/Master_ckt5.dss", [], "28288"),
             "ieee8500": ("ieee8500/Master.dss", EXTRA_8500, BUS_8500)}
    print("\n## Stage-II parameter push: DirectHighs against APPSI's update_params")
    print("| feeder | parameters | expressions with products of parameters | DirectHighs.push | APPSI update_params | ratio |")
    print("|---|---|---|---|---|---|")
    for name, (master, extra, bus) in cases.items():
        sc = validate_scenario({
            "name": name, "seed": 7,
            "feeder": {"source": str(SHARED / master), "extra_commands": extra},
            "simulation": {"hours": 1.0, "step_s": 60},
            "campus": [{"name": "campus1", "bus": bus, "capacity_mw": 1.5}],
            "fcm": {"placements": [{"kind": "bess", "bus": bus, "p_mw": 0.5, "e_mwh": 1.0}]},
            "controller": {"kind": "mpc", "horizon_steps": 12, "time_limit_s": 30.0},
        }, f"<{name}>")
        plan = plan_world(sc)
        mpc = make_controller("mpc", plan.feeder, list(plan.placements), sc.fcm.catalog, sc)
        g = plan.initial_grid
        first = Measurement(
            time_s=0.0, sub_p_mw=g["sub_p_mw"], sub_q_mvar=g["sub_q_mvar"], bus_v_pu=g["bus_v_pu"],
            campus_p_mw=dict(plan.campus_first_block_mw), campus_online={"campus1": True},
            fcm={}, p_sched_mw=np.array(plan.schedule_mw[:1]), branch_p_mw=g["branch_p_mw"],
            branch_q_mvar=g["branch_q_mvar"])
        mpc.step(first)
        other = Measurement(**{**first.__dict__, "sub_p_mw": first.sub_p_mw + 0.3,
                               "campus_p_mw": {"campus1": 0.5}, "time_s": 300.0})
        model, direct = mpc.model, mpc.direct
        appsi = highs()
        appsi.set_instance(model.m)

        def timed(push) -> float:
            total = 0.0
            for k in range(n):
                m = other if k % 2 == 0 else first
                model.set_state(m, mpc.forecaster.forecast(m, mpc.params.horizon_steps,
                                                           mpc.params.horizon_step_s))
                t0 = time.perf_counter()
                push()
                total += time.perf_counter() - t0
            return 1e3 * total / n

        ours, theirs = timed(direct.push), timed(appsi.update_params)
        print(f"| {name} | {direct.n_params} | {direct.not_affine} | {ours:.1f} ms | "
              f"{theirs:.1f} ms | {theirs / ours:.1f}× |")


def lift(repeat: int = 5) -> None:
    cases = {"ieee33": ("ieee33", [], "18", "33"),
             "ieee123": (str(SHARED / "ieee123/IEEE123Master.dss"), ["set maxcontroliter=30"], "76", "610"),
             "epri_ckt5": (str(SHARED / "epri_ckt5/Master_ckt5.dss"), [], "28288", "28288"),
             "ieee8500": (str(MASTER_8500), EXTRA_8500, BUS_8500, BUS_8500)}
    print("\n## Fault-support transfer reactance (DSSFeeder.lift_sensitivity)")
    print("| feeder | Y nodes | first call | cached call | one power flow (baseline) | first / flow |")
    print("|---|---|---|---|---|---|")
    for name, (source, extra, poi, other) in cases.items():
        fd = DSSFeeder.open(source, extra_commands=extra)
        fd.add_injection("campus", poi)
        if other != poi:
            fd.add_injection("bess", other)
        fd.solve()
        flow = min(_timed(fd.solve) for _ in range(repeat))
        firsts = []
        for _ in range(repeat):
            fd._lift_cache.clear()
            firsts.append(_timed(lambda: fd.lift_sensitivity([poi], [poi, other])))
        cached = min(_timed(lambda: fd.lift_sensitivity([poi], [poi, other])) for _ in range(repeat))
        first = min(firsts)
        nodes = len(fd._dss.Circuit.YNodeOrder())
        print(f"| {name} | {nodes} | {1e3 * first:.1f} ms | {1e6 * cached:.0f} µs | "
              f"{1e3 * flow:.1f} ms | {first / flow:.1f}× |")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["step-cost", "invariants", "accuracy", "mpc-push", "lift", "all"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--solves", type=int, default=100)
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is absent: these benchmarks need the ../shared feeders")
    header()
    if args.what in ("invariants", "all"):
        invariants(args.solves)
    if args.what in ("accuracy", "all"):
        accuracy()
    if args.what in ("step-cost", "all"):
        step_cost(args.steps)
    if args.what in ("mpc-push", "all"):
        mpc_push(min(args.solves, 20))
    if args.what in ("lift", "all"):
        lift()


if __name__ == "__main__":
    main()
