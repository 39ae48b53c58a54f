#!/usr/bin/env python
"""Ensemble benchmark: the same members serially in this process vs on a Dask LocalCluster.

    python benchmarks/bench_ensemble.py [--hours 2] [--seeds 2] [--controllers none,rule]
                                        [--workers 2]

Members: ``--seeds`` seeds spawned from the default scenario's seed × ``--controllers``, each a
full ``run_scenario`` of ``--hours`` hours (default 2 seeds × {none, rule}, 2 h, 4 members).

Rows (all in one run, same members, same machine):

* ``serial``: the members one after another with ``run_scenario`` in this process (the
  baseline; the mosaik/OpenDSS/Pyomo imports are paid beforehand by a one-step warm-up run);
* ``dask cold``: :func:`scenarios.ensemble.run_ensemble` with its own LocalCluster, start-up of
  the worker processes and their imports included (what a user of ``run_cosim.py ensemble``
  waits for);
* ``dask warm``: the same ensemble again on an already running LocalCluster whose workers
  have imported the stack (``scheduler=`` its address): the steady-state throughput.

``ratio`` is serial wall time / row wall time (> 1: faster than serial). Prints measured
figures only; no assertions.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scenarios.config import DEFAULT_SCENARIO, load_scenario  # noqa: E402
from scenarios.ensemble import Member, member_scenario, resolve_seeds, run_ensemble  # noqa: E402
from scenarios.runner import run_scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--controllers", default="none,rule")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    sc = load_scenario(DEFAULT_SCENARIO)
    seeds = resolve_seeds(sc, args.seeds)
    kinds = args.controllers.split(",")
    members = [Member(s, c) for c in kinds for s in seeds]
    print(f"# {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(the machine is shared; a busy core leaves the workers one core between them)")
    print(f"# {len(members)} members ({len(seeds)} seeds x {','.join(kinds)}), "
          f"{args.hours:g} h each, {args.workers} Dask workers (1 thread each)")

    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as tmp:
        tmp_path = Path(tmp)
        # warm-up: pay the imports of the serial baseline before its clock starts
        run_scenario(member_scenario(sc, members[0], 1 / 60), tmp_path / "warmup", progress=False)

        t0 = time.perf_counter()
        member_s = []
        for m in members:
            t = time.perf_counter()
            run_scenario(member_scenario(sc, m, args.hours), tmp_path / "serial" / m.name,
                         progress=False)
            member_s.append(time.perf_counter() - t)
        serial = time.perf_counter() - t0

        t0 = time.perf_counter()
        cold_frame = run_ensemble(sc, seeds, kinds, tmp_path / "cold", hours=args.hours,
                                  n_workers=args.workers, progress=False)
        cold = time.perf_counter() - t0

        from dask.distributed import LocalCluster

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster:
            # warm the workers: one one-step member per worker pays their imports
            run_ensemble(sc, args.workers, kinds[:1], tmp_path / "warmup_cluster",
                         hours=1 / 60, scheduler=cluster.scheduler_address, progress=False)
            t0 = time.perf_counter()
            warm_frame = run_ensemble(sc, seeds, kinds, tmp_path / "warm", hours=args.hours,
                                      scheduler=cluster.scheduler_address, progress=False)
            warm = time.perf_counter() - t0

    failed = int((cold_frame["status"] != "ok").sum() + (warm_frame["status"] != "ok").sum())
    print(f"# serial member wall s: {', '.join(f'{x:.2f}' for x in member_s)}; "
          f"dask members failed: {failed}")
    print(f"{'mode':<12} {'wall_s':>8} {'ratio':>7}  note")
    print(f"{'serial':<12} {serial:8.2f} {1.0:7.2f}  in-process baseline")
    print(f"{'dask cold':<12} {cold:8.2f} {serial / cold:7.2f}  incl. LocalCluster start + imports")
    print(f"{'dask warm':<12} {warm:8.2f} {serial / warm:7.2f}  running cluster, workers warm")
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# member wall_s inside workers (warm): median "
          f"{warm_frame['wall_s'].median():.2f}, max {warm_frame['wall_s'].max():.2f}")


if __name__ == "__main__":
    main()
