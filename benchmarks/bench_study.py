#!/usr/bin/env python
"""The study's engine on Dask: members on 1 against 2 workers, and Benders at N = 200.

    python benchmarks/bench_study.py members [--members 4] [--hours 6] [--controller mpc]
    python benchmarks/bench_study.py benders [--scenarios 200] [--step-s 600] [--hours 2]
                                             [--workers 2] [--gap 0.01]

``members``: ``--members`` closed-loop runs of the default scenario (test seeds of
:func:`scenarios.study.study_seeds`, the scenario's FCMs, ``--controller``), each one task
(:func:`scenarios.ensemble.run_member`), timed three ways in one session:

* ``serial``: one after another in this process (imports paid before by a warm-up run);
* ``1 worker`` and ``2 workers``: on a warm LocalCluster of that many processes (1 thread
  each, the stack imported by :class:`scenarios.study.Preload`), from submit to the last
  result. ``ratio`` = serial / row. The rows also give each member's own wall time in its
  worker, so a slow-down from sharing the cores shows apart from the Dask overhead;
* with ``--pool``, ``1 process`` and ``2 processes``: the same members on a plain
  ``multiprocessing`` pool (spawned, imports paid before timing): the control that tells
  the machine's own two-process slow-down from Dask's.

``benders``: Stage I of the default scenario (Wasserstein θ = 0.05, LP recourse) with
``--scenarios`` draws at ``--step-s`` over ``--hours``, solved by
:func:`controllers.decomposition.solve_benders` serially and with its subproblems on a warm
LocalCluster of ``--workers`` processes (``client=``), with the time in the master MILP
solves, in the subproblem rounds (the first one builds the models) and the rest (set-up,
cuts). ``ratio`` = serial / Dask.

Prints measured figures only; no assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.ensemble import Member, dask_client, member_scenario, run_member
from scenarios.study import Preload, study_seeds


def _header(what: str) -> None:
    load = os.getloadavg()[0]
    print(f"# bench_study {what}  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
          f"{platform.node()}  cores={os.cpu_count()}  python {platform.python_version()}  "
          f"load {load:.2f}")


def members(args: argparse.Namespace) -> None:
    base = load_scenario(DEFAULT_SCENARIO)
    _, seeds = study_seeds(base.seed, 1, args.members)
    scen = [member_scenario(base, Member(s, args.controller), args.hours) for s in seeds]
    _header(f"members: {args.members} x {args.controller}, {args.hours:g} h each")
    with tempfile.TemporaryDirectory() as tmp:
        run_member(member_scenario(base, Member(1, args.controller), 0.1), Path(tmp) / "warm")
        t0 = time.perf_counter()
        rows = [run_member(sc, Path(tmp) / f"serial{i}") for i, sc in enumerate(scen)]
        serial = time.perf_counter() - t0
        table = [("serial", serial, [r["wall_s"] for r in rows])]
        for n in (1, 2):
            with dask_client(None, n) as client:
                client.register_plugin(Preload())
                t0 = time.perf_counter()
                futs = [client.submit(run_member, sc, str(Path(tmp) / f"w{n}_{i}"), pure=False)
                        for i, sc in enumerate(scen)]
                rows = client.gather(futs)
                table.append((f"{n} worker{'s' if n > 1 else ''}", time.perf_counter() - t0,
                              [r["wall_s"] for r in rows]))
                bad = [r["status"] for r in rows if r["status"] != "ok"]
                if bad:
                    print("# failed:", bad)
        if args.pool:  # the control without Dask: plain processes, same members
            import multiprocessing as mp

            for n in (1, 2):
                with mp.get_context("spawn").Pool(n, initializer=_preload) as pool:
                    pool.map(_noop, range(n))  # the imports paid before timing
                    t0 = time.perf_counter()
                    rows = pool.starmap(run_member, [(sc, str(Path(tmp) / f"p{n}_{i}"))
                                                     for i, sc in enumerate(scen)])
                    table.append((f"{n} process{'es' if n > 1 else ''} (Pool, no Dask)",
                                  time.perf_counter() - t0, [r["wall_s"] for r in rows]))
    print("| engine | wall s | ratio serial/row | member wall s (mean, in its process) |")
    print("|---|---|---|---|")
    for name, wall, each in table:
        print(f"| {name} | {wall:.1f} | {serial / wall:.2f} | {statistics.mean(each):.1f} |")
    one, two = table[1][1], table[2][1]
    print(f"# speed-up 2 workers / 1 worker: {one / two:.2f}x")
    if args.pool:
        print(f"# speed-up 2 processes / 1 process (no Dask): {table[3][1] / table[4][1]:.2f}x")


def _preload() -> None:
    Preload().setup(None)


def _noop(_: int) -> None:
    return None


def benders(args: argparse.Namespace) -> None:
    from controllers.decomposition import solve_benders
    from controllers.stage1 import build_problem
    from models.shocks import sample_campus_trajectories
    from scenarios.feeder import open_scenario_feeder

    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(
        siting={"step_s": args.step_s, "horizon_hours": args.hours, "scenarios": args.scenarios})
    feeder = open_scenario_feeder(sc).data
    xi = sample_campus_trajectories(sc, args.scenarios, sc.seed, step_s=args.step_s,
                                    hours=args.hours)
    problem, cands, _ = build_problem(sc, feeder, xi)
    _header(f"benders: N={args.scenarios}, {len(cands)} candidates, {args.hours:g} h at "
            f"{args.step_s:g} s, gap {args.gap:g}")
    t0 = time.perf_counter()
    ser = solve_benders(problem, mip_gap=args.gap, time_limit_s=args.time_limit)
    t_ser = time.perf_counter() - t0
    with dask_client(None, args.workers) as client:
        client.register_plugin(Preload())
        t0 = time.perf_counter()
        par = solve_benders(problem, mip_gap=args.gap, time_limit_s=args.time_limit,
                            client=client)
        t_par = time.perf_counter() - t0
    print("| engine | wall s | iterations | master MILP s | subproblem rounds s | rest s "
          "| subproblems s / iteration | objective | status | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, sol, t in (("serial", ser, t_ser), (f"Dask, {args.workers} workers", par, t_par)):
        rest = t - sol.master_s - sol.subproblems_s
        print(f"| {name} | {t:.1f} | {sol.iterations} | {sol.master_s:.1f} | "
              f"{sol.subproblems_s:.1f} | {rest:.1f} | {sol.subproblems_s / sol.iterations:.2f} | "
              f"{sol.objective:,.0f} | {sol.status} | {t_ser / t:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("members")
    m.add_argument("--members", type=int, default=4)
    m.add_argument("--hours", type=float, default=6.0)
    m.add_argument("--controller", default="mpc")
    m.add_argument("--pool", action="store_true",
                   help="also time the members on 1 and 2 plain processes (no Dask)")
    b = sub.add_parser("benders")
    b.add_argument("--scenarios", type=int, default=200)
    b.add_argument("--step-s", type=float, default=600.0)
    b.add_argument("--hours", type=float, default=2.0)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--gap", type=float, default=0.01)
    b.add_argument("--time-limit", type=float, default=900.0)
    args = ap.parse_args()
    {"members": members, "benders": benders}[args.what](args)


if __name__ == "__main__":
    main()
