#!/usr/bin/env python
"""Stage-I DRO-CVaR siting on ieee33: extensive form against Benders, N = 10, 50, 200.

    python benchmarks/bench_stage1.py [--sizes 10 50 200] [--step-s 600] [--hours 2]
                                      [--time-limit 300] [--extensive-max 50]
                                      [--network-form branch|compact]

Setup (printed with the table): the shipped scenario ``scenarios/ieee33_ai_shock.toml``
(campus at bus 18, 5 candidate buses × 4 FCM kinds = 20 candidates, Wasserstein θ = 0.05,
α = 0.9, β = 0.5, budget 2 M$), LinDistFlow on the whole 33-bus feeder, LP-relaxed recourse
(the default ``siting.recourse = "lp"``), relative gap 1 %. The siting step is coarser than
the scenario's 300 s (``--step-s``, default 600 s: 12 steps over 2 h) to keep N = 200
tractable on 2 cores. The extensive form is skipped above ``--extensive-max`` scenarios;
the table says so. The baseline for the ratio is the extensive form at the same N.
Prints measured figures only (no assertions).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.decomposition import recourse_size, solve_benders, solve_extensive  # noqa: E402
from controllers.stage1 import build_problem  # noqa: E402
from scenarios.feeder import open_scenario_feeder  # noqa: E402
from models.shocks import sample_campus_trajectories  # noqa: E402
from scenarios.config import DEFAULT_SCENARIO, load_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--step-s", type=float, default=600.0)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--extensive-max", type=int, default=50)
    ap.add_argument("--gap", type=float, default=0.01)
    ap.add_argument("--network-form", choices=["branch", "compact"], default=None,
                    help="the recourse's network form (default: what site() uses)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.verbose:
        logging.getLogger("controllers").setLevel(logging.INFO)

    base = load_scenario(DEFAULT_SCENARIO)
    feeder = open_scenario_feeder(base).data  # the run's own feeder definition
    print(f"# bench_stage1  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC  "
          f"{platform.node()}  cores={os.cpu_count()}  python {platform.python_version()}")
    print(f"# ieee33, {len(base.siting.candidate_buses)} buses x {len(base.siting.kinds)} kinds, "
          f"{base.siting.ambiguity} theta={base.siting.radius} alpha={base.siting.alpha} "
          f"beta={base.siting.beta}, step {args.step_s:g} s x {args.hours:g} h, "
          f"gap {args.gap:.0%}, time limit {args.time_limit:g} s, recourse LP")
    header = (f"{'N':>4} {'method':>9} {'status':>10} {'solve_s':>8} {'gap':>8} "
              f"{'objective':>12} {'capex':>10} {'iters':>5} {'vars':>8} {'vs_ext':>7}")
    print(header)
    for n in args.sizes:
        sc = base.with_overrides(siting={"scenarios": n, "step_s": args.step_s,
                                         "horizon_hours": args.hours})
        xi = sample_campus_trajectories(sc, n, sc.seed, step_s=args.step_s, hours=args.hours)
        problem, _, _ = (build_problem(sc, feeder, xi) if args.network_form is None
                         else build_problem(sc, feeder, xi, network_form=args.network_form))
        size = n * recourse_size(problem)
        ext_s = None
        runs = []
        if n <= args.extensive_max:
            t0 = time.perf_counter()
            sol = solve_extensive(problem, time_limit_s=args.time_limit, mip_gap=args.gap,
                                  relax_recourse=True)
            ext_s = time.perf_counter() - t0
            runs.append(("extensive", sol, ext_s))
        t0 = time.perf_counter()
        sol = solve_benders(problem, time_limit_s=args.time_limit, mip_gap=args.gap)
        runs.append(("benders", sol, time.perf_counter() - t0))
        for name, sol, wall in runs:
            ratio = f"{ext_s / wall:7.2f}" if ext_s is not None else "    n/a"
            print(f"{n:>4} {name:>9} {sol.status:>10} {wall:8.1f} {sol.gap:8.2e} "
                  f"{sol.objective:12.6g} {sol.first_stage_cost:10.6g} {sol.iterations:>5} "
                  f"{size:>8} {ratio}", flush=True)
        if n > args.extensive_max:
            print(f"{n:>4} extensive    skipped (N > --extensive-max {args.extensive_max}; "
                  f"{size} recourse variables)", flush=True)


if __name__ == "__main__":
    main()
