"""The default day's Stage-II steps: where the time goes, and step times before/after.

    python benchmarks/bench_stage2_day.py record [--scenario FILE] [--hours H] [--out FILE.pkl]
    python benchmarks/bench_stage2_day.py replay [--in FILE.pkl] [--profile] [--limit N]
    python benchmarks/bench_stage2_day.py variants [--in FILE.pkl] [--every 4]

``record`` runs the scenario's co-simulation (default: the default scenario, 24 h, MPC)
and stores every measurement the MPC was given at a re-solve (288 on the default day) with
the plan's feeder data. ``replay`` builds a fresh MPC (:func:`controllers.factory.make_mpc`)
and steps it through the recorded measurements in order, timing each ``step`` (parameter
update + solve + reading the solution), so that two versions of the code are compared on
the same 288 problems without the rest of the co-simulation. The replay is open loop: the
FCM states come from the recorded run, so the solutions may differ from the recorded ones
once the code changes; the control quality is measured with the closed loop
(``python run_cosim.py``), not here.

``variants`` solves every ``--every``-th recorded problem cold (a fresh HiGHS each time, no
MIP start) in variants of the model and of HiGHS's options, to see what makes the MILP
slow: the generator's start/stop indicators binary (as before issue 11) or continuous,
HiGHS's defaults or :data:`controllers.stage2.ROLLING_HIGHS_OPTIONS`, and, for reference,
inexact relaxations of the DR and storage binaries. It prints the median and max solve
time and the objective against the first variant.

``--profile`` runs the replay under cProfile and prints the split: HiGHS (``Highs.run``),
Pyomo's parameter push and model update (APPSI ``update``/``set_instance``), loading the
solution, building the model, and the rest. Prints only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import pickle
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scenarios.config import DEFAULT_SCENARIO, load_scenario  # noqa: E402

DEFAULT_PICKLE = Path("results/bench_stage2_day.pkl")


def record(scenario_path: Path, hours: float | None, out: Path) -> None:
    import controllers.stage2 as stage2
    from scenarios.runner import run_scenario

    seen: list = []
    original = stage2.RollingMPC.step

    def step(self, measurement):  # keep what the MPC is told, then solve as usual
        seen.append(measurement)
        return original(self, measurement)

    stage2.RollingMPC.step = step  # type: ignore[method-assign]
    scenario = load_scenario(scenario_path)
    if hours is not None:
        scenario = scenario.with_overrides(simulation={"hours": hours})
    t0 = time.perf_counter()
    kpis = run_scenario(scenario, Path("results") / "bench_stage2_day_record", progress=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        pickle.dump({"scenario": str(scenario_path), "hours": hours, "measurements": seen}, f)
    print(f"recorded {len(seen)} measurements in {time.perf_counter() - t0:.1f} s to {out}")
    print(f"  run: controller_solve_s_median={kpis['controller_solve_s_median']:.3f} "
          f"max={kpis['controller_solve_s_max']:.3f} fallbacks={kpis['controller_fallbacks']}")


def make_controller(scenario_path: Path, hours: float | None):
    from controllers.factory import make_controller as factory
    from scenarios.world import plan_world

    scenario = load_scenario(scenario_path)
    if hours is not None:
        scenario = scenario.with_overrides(simulation={"hours": hours})
    plan = plan_world(scenario)
    return factory("mpc", plan.feeder, list(plan.placements), scenario.fcm.catalog, scenario)


def replay(path: Path, profile: bool, limit: int | None) -> None:
    with path.open("rb") as f:
        data = pickle.load(f)
    meas = data["measurements"][:limit]
    mpc = make_controller(Path(data["scenario"]), data["hours"])
    times, statuses = [], []
    prof = cProfile.Profile() if profile else None
    t_all = time.perf_counter()
    for m in meas:
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        d = mpc.step(m)
        if prof is not None:
            prof.disable()
        times.append(time.perf_counter() - t0)
        statuses.append(d.status)
    wall = time.perf_counter() - t_all
    print(f"# Stage-II replay: {len(meas)} steps of {data['scenario']}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    first, rest = times[0], times[1:] or [float("nan")]
    limit_s = mpc.params.time_limit_s
    print(f"first step (build + solve): {first:.3f} s")
    print(f"steps 2..: median {statistics.median(rest) * 1e3:.1f} ms, "
          f"p90 {sorted(rest)[int(0.9 * (len(rest) - 1))] * 1e3:.1f} ms, max {max(rest) * 1e3:.1f} ms, "
          f"total {wall:.1f} s")
    print(f"steps over 100 ms: {sum(t > 0.1 for t in rest)}, over 1 s: {sum(t > 1.0 for t in rest)}, "
          f"at the {limit_s:g}-s limit: {sum(t >= limit_s for t in times)}")
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if prof is not None:
        _split(prof)


#: cProfile functions whose cumulative time makes up each part of a step: (file part,
#: function name); the APPSI entries are the code before issue 11, the DirectHighs ones after
_PARTS = {
    "HiGHS run (the solve itself)": [("~", "<built-in method highspy._core.run>")],
    "APPSI update (parameter push, changed rows)": [("appsi/base.py", "update")],
    "DirectHighs.push (parameter push)": [("highs_direct.py", "push")],
    "loading the solution (APPSI load_vars / DirectHighs.load)": [("appsi", "load_vars"),
                                                                   ("highs_direct.py", "load")],
    "APPSI warm start": [("appsi", "_warm_start")],
    "set_state (inputs into parameters)": [("stage2.py", "set_state")],
    "forecast": [("forecast.py", "forecast")],
}


def _split(prof: cProfile.Profile) -> None:
    stats = pstats.Stats(prof)
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "step" and k[0].endswith("stage2.py"))
    build = sum(v[3] for k, v in stats.stats.items() if k[2] == "_build" and k[0].endswith("stage2.py"))
    print(f"\ncProfile split (RollingMPC.step total {total:.1f} s, of it building the model "
          f"{build:.1f} s):")
    for name, keys in _PARTS.items():
        cum = sum(v[3] for (file, _line, func), v in stats.stats.items()
                  if any(f in file and fn == func for f, fn in keys))
        print(f"  {name:58s} {cum:7.2f} s  {100 * cum / max(total, 1e-9):5.1f} %")
    print("\ntop 25 by cumulative time:")
    stats.sort_stats("cumulative").print_stats(25)


def variants(path: Path, every: int) -> None:
    import tempfile

    import highspy

    from controllers.stage2 import ROLLING_HIGHS_OPTIONS

    with path.open("rb") as f:
        data = pickle.load(f)
    meas = data["measurements"]
    mpc = make_controller(Path(data["scenario"]), data["hours"])
    mpc.step(meas[0])
    model, direct = mpc.model, mpc.direct
    m = model.m

    def cols(kind: str, names: tuple[str, ...]) -> list[int]:
        return [direct.column(v) for u in model.units if u.tech.technology == kind
                for name in names for v in getattr(m.fcm[u.label], name).values()]

    yz, dr, storage = cols("generator", ("y", "z")), cols("dr", ("w",)), cols("storage", ("u",))
    base = {"output_flag": False, "threads": 1, "mip_rel_gap": mpc.params.mip_gap, "time_limit": 60.0}
    cases = {  # name: (columns made integer, columns made continuous, options)
        "start/stop binary (before), HiGHS defaults": (yz, [], {}),
        "start/stop continuous, HiGHS defaults": ([], [], {}),
        "start/stop continuous, no restart, no RINS": (
            [], [], {"mip_allow_restart": False, "mip_heuristic_run_rins": False}),
        "start/stop continuous, ROLLING_HIGHS_OPTIONS (after)": ([], [], dict(ROLLING_HIGHS_OPTIONS)),
        "  + DR binary relaxed (inexact)": ([], dr, dict(ROLLING_HIGHS_OPTIONS)),
        "  + storage binary relaxed (inexact)": ([], storage, dict(ROLLING_HIGHS_OPTIONS)),
    }
    picked = list(range(1, len(meas), every))
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for i in picked:
            model.set_state(meas[i], mpc.forecaster.forecast(
                meas[i], mpc.params.horizon_steps, mpc.params.horizon_step_s))
            direct.push()
            mps = f"{tmp}/step{i}.mps"
            direct.h.writeModel(mps)
            for name, (to_int, to_cont, opts) in cases.items():
                h = highspy.Highs()
                for k, v in {**base, **opts}.items():
                    h.setOptionValue(k, v)
                h.readModel(mps)
                for c in to_int:
                    h.changeColIntegrality(c, highspy.HighsVarType.kInteger)
                for c in to_cont:
                    h.changeColIntegrality(c, highspy.HighsVarType.kContinuous)
                t0 = time.perf_counter()
                h.run()
                results[name].append((time.perf_counter() - t0, h.getInfo().objective_function_value))
    print(f"# Stage-II variants: {len(picked)} of the {len(meas)} recorded problems solved cold, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    ref = [o for _, o in results[next(iter(cases))]]
    for name, res in results.items():
        t = sorted(x for x, _ in res)
        rel = [(o - r) / abs(r) for (_, o), r in zip(res, ref) if r]
        print(f"  {name:54s} median {statistics.median(t) * 1e3:6.1f} ms  max {t[-1]:5.2f} s  "
              f"objective vs first: mean {100 * statistics.mean(rel):+.2f} % "
              f"[{100 * min(rel):+.2f}, {100 * max(rel):+.2f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    r.add_argument("--hours", type=float)
    r.add_argument("--out", type=Path, default=DEFAULT_PICKLE)
    p = sub.add_parser("replay")
    p.add_argument("--in", dest="path", type=Path, default=DEFAULT_PICKLE)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--limit", type=int)
    v = sub.add_parser("variants")
    v.add_argument("--in", dest="path", type=Path, default=DEFAULT_PICKLE)
    v.add_argument("--every", type=int, default=4)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.scenario, args.hours, args.out)
    elif args.cmd == "variants":
        variants(args.path, args.every)
    else:
        replay(args.path, args.profile, args.limit)


if __name__ == "__main__":
    main()
