#!/usr/bin/env python
"""Stage I on the one horizon problem (issue 10): the recourse in compact and branch form.

    python benchmarks/bench_one_core.py [--sizes 10 20] [--step-s 600] [--hours 2]
                                        [--feeders ieee33 ieee123] [--time-limit 300]

Stage I's recourse is the Stage-II horizon problem (controllers/horizon.py), in the network
form Stage II uses (compact: superposition, no flow variables) or with branch flows as
variables (branch; needed for shedding). Both are the same linear model, so the siting and
its objective must agree (to the solver's gap); the table gives each form's solve time,
the ratio branch/compact measured in the same run, the objective of each and the siting
re-evaluated with integer recourse (``siting.json``'s ``integer_recourse``) with its time.

Setup: the shipped scenario ``scenarios/ieee33_ai_shock.toml`` (5 candidate buses × 4
kinds, Wasserstein θ = 0.05, α = 0.9, β = 0.5), LP-relaxed recourse, relative gap 1 %,
extensive form; ``ieee123`` puts a 0.4 MW campus at bus 66 and five candidates on IEEE 123 from
../shared/feeders (skipped when absent). Prints measured figures only (no assertions).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controllers.decomposition import recourse_size, solve_extensive  # noqa: E402
from controllers.stage1 import build_problem, integer_recourse  # noqa: E402
from models.shocks import sample_campus_trajectories  # noqa: E402
from scenarios.config import DEFAULT_SCENARIO, load_scenario  # noqa: E402
from scenarios.feeder import open_scenario_feeder  # noqa: E402

IEEE123 = ROOT.parent / "shared" / "feeders" / "ieee123" / "IEEE123Master.dss"


def scenario_on(name: str):
    """The default scenario, or the same campus and candidates moved to IEEE 123."""
    base = load_scenario(DEFAULT_SCENARIO)
    if name == "ieee33":
        return base
    if not IEEE123.exists():
        return None
    return base.with_overrides(
        feeder={"source": str(IEEE123), "extra_commands": ["set maxcontroliter=30"]},
        campus=[{**base.campus[0].model_dump(), "bus": "66", "capacity_mw": 0.4}],
        fcm={"placements": []},
        siting={"candidate_buses": ["66", "610", "76", "101", "97"]},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--step-s", type=float, default=600.0)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--feeders", nargs="+", default=["ieee33", "ieee123"])
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--gap", type=float, default=0.01)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"# bench_one_core  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC  "
          f"{platform.node()}  cores={os.cpu_count()}  python {platform.python_version()}")
    print(f"# step {args.step_s:g} s x {args.hours:g} h, gap {args.gap:.0%}, extensive form, "
          "LP recourse; ratio = branch / compact solve time")
    print(f"{'feeder':>8} {'N':>4} {'form':>8} {'status':>8} {'solve_s':>8} {'ratio':>6} "
          f"{'vars':>8} {'objective':>12} {'capex':>10} {'int_obj':>12} {'int_s':>6}")
    for name in args.feeders:
        base = scenario_on(name)
        if base is None:
            print(f"{name:>8} skipped: {IEEE123} not found")
            continue
        feeder = open_scenario_feeder(base).data
        for n in args.sizes:
            sc = base.with_overrides(siting={"scenarios": n, "step_s": args.step_s,
                                             "horizon_hours": args.hours})
            xi = sample_campus_trajectories(sc, n, sc.seed, step_s=args.step_s, hours=args.hours)
            wall = {}
            for form in ("compact", "branch"):
                problem, _, _ = build_problem(sc, feeder, xi, network_form=form)
                t0 = time.perf_counter()
                sol = solve_extensive(problem, time_limit_s=args.time_limit, mip_gap=args.gap,
                                      relax_recourse=True)
                wall[form] = time.perf_counter() - t0
                t0 = time.perf_counter()
                exact = integer_recourse(sol, problem, args.time_limit, args.gap)
                int_s = time.perf_counter() - t0
                ratio = f"{wall['branch'] / wall['compact']:6.2f}" if form == "branch" else "     -"
                print(f"{name:>8} {n:>4} {form:>8} {sol.status:>8} {wall[form]:8.1f} {ratio} "
                      f"{n * recourse_size(problem):>8} {sol.objective:12.6g} "
                      f"{sol.first_stage_cost:10.6g} {exact.objective:12.6g} {int_s:6.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
