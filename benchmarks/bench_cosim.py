#!/usr/bin/env python
"""Co-simulation benchmarks (prints measured figures; no assertions).

    python benchmarks/bench_cosim.py overhead [--hours H]     # mosaik World vs plain OpenDSS loop
    python benchmarks/bench_cosim.py split [--hours H]        # default run with mpc, wall time split
    python benchmarks/bench_cosim.py compare [--hours H] [--seeds 42 1 2]   # none / rule / mpc KPI table
    python benchmarks/bench_cosim.py all

``overhead``: the whole default World (FeederSim, DataCenterSim, FCMSim, ControllerSim with
controller ``none``, Recorder, background Input) per step, against the same number of
OpenDSS snapshot solves of the same feeder with the same injections driven from a plain
Python loop in the same process (the baseline), and the ratio. Also mosaik's floor: six
do-nothing simulators wired like the World (same simulator edges and time shifts), i.e.
what the scheduling alone costs per step before any simulator does work.

``split``: the default scenario with the MPC; wall time split into power flow (FeederSim's
step), MILP (the controller's solves), recording (the Recorder's step), other adapters
(campus, FCMs, controller bookkeeping) and mosaik (the rest), from the timers of the adapters.

``compare``: the acceptance table of issue 5, the KPIs of the three controllers on the
default scenario with the same seed, for each seed given (default: the scenario's own), and
whether MPC < rule < none holds strictly on each of the four acceptance KPIs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # mosaik starts _Trivial as bench_cosim:_Trivial

import mosaik  # noqa: E402
import mosaik_api_v3  # noqa: E402

from models.feeder import DSSFeeder  # noqa: E402
from models.schedule import background_shape  # noqa: E402
from scenarios.config import DEFAULT_SCENARIO, load_scenario  # noqa: E402
from scenarios.runner import run_scenario  # noqa: E402

KPI_ROWS = ("unserved_energy_mwh", "imbalance_mwh", "ramp_violation_mwh",
            "voltage_violation_bus_steps", "v_min_pu", "restoration_time_s", "campus_trips",
            "trips_avoided", "unserved_energy_avoided_mwh", "fcm_q_mvarh",
            "fcm_operating_cost", "controller_solves", "controller_fallbacks",
            "controller_solve_s_median", "controller_solve_s_max",
            "ac_validation.max_abs_v_error_pu",
            "ac_validation_prediction.max_abs_v_error_pu", "wall_s")
#: the four KPIs of issue 5's acceptance (lower is better)
ACCEPTANCE = ("unserved_energy_mwh", "imbalance_mwh", "ramp_violation_mwh",
              "voltage_violation_bus_steps")


def header() -> None:
    print(f"# {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")


def scenario(hours: float, kind: str, seed: int | None = None):
    sc = load_scenario(DEFAULT_SCENARIO)
    sc = sc.with_overrides(simulation={"hours": hours}, controller={"kind": kind})
    return sc if seed is None else sc.with_overrides(seed=seed)


def plain_loop(hours: float) -> tuple[float, int]:
    """The baseline: one DSSFeeder, the World's injections and load shape, a Python loop."""
    sc = scenario(hours, "none")
    feeder = DSSFeeder.open(sc.feeder_source(), sc.feeder.scale, sc.feeder.extra_commands)
    buses = sorted({c.bus for c in sc.campus} | {p.bus for p in sc.fcm.placements})
    for b in buses:
        feeder.add_injection(f"inj_{b}", b)
    steps, dt = sc.simulation.steps, sc.simulation.step_s
    t0 = time.perf_counter()
    for k in range(steps):
        feeder.set_load_scale(float(background_shape(k * dt, sc.simulation.start_hour,
                                                     sc.grid.background_load_scale)))
        for i, b in enumerate(buses):
            feeder.set_injection(f"inj_{b}", 0.8 + 0.01 * ((k + i) % 7), 0.16)
        res = feeder.solve()
        _ = (res.bus_voltages(), res.sub_p_mw)
    return time.perf_counter() - t0, steps


class _Trivial(mosaik_api_v3.Simulator):
    """A time-based simulator that does nothing: one entity, one output ``x`` = 1.0."""

    def __init__(self) -> None:
        super().__init__({"api_version": "3.0", "type": "time-based", "models": {
            "E": {"public": True, "any_inputs": True, "params": [], "attrs": ["x"]}}})
        self.step_s = 60
        self.n = 0

    def init(self, sid, time_resolution=1.0, step_s=60, **_):
        self.step_s = int(step_s)
        return self.meta

    def create(self, num, model, **_):
        out = [{"eid": f"e{self.n + i}", "type": model} for i in range(num)]
        self.n += num
        return out

    def step(self, time, inputs, max_advance):
        return time + self.step_s

    def get_data(self, outputs):
        return {eid: {a: 1.0 for a in attrs} for eid, attrs in outputs.items()}


def mosaik_floor(hours: float) -> tuple[float, int]:
    """mosaik's own cost: six do-nothing simulators wired like the default World
    (scenarios/world.py: the same simulator-to-simulator edges and time shifts, one entity
    per campus and FCM, one attribute per edge), run for the same steps."""
    sc = scenario(hours, "none")
    steps, dt = sc.simulation.steps, sc.simulation.step_s
    names = ("Feeder", "Background", "DC", "FCM", "Ctrl", "Rec")
    world = mosaik.World({n: {"python": "bench_cosim:_Trivial"} for n in names},
                         time_resolution=1.0, skip_greetings=True, configure_logging=False)
    f, bg, dc, fcm, ctrl, rec = (world.start(n, step_s=dt).E for n in names)
    grid, inj, background, ctl, sink = f(), f(), bg(), ctrl(), rec()
    campuses = dc.create(len(sc.campus))
    fcms = fcm.create(len(sc.fcm.placements))
    setpoints = ctrl.create(len(sc.fcm.placements))
    world.connect(background, grid, "x")
    for c in campuses:
        world.connect(c, inj, "x")
        world.connect(inj, c, "x", time_shifted=True, initial_data={"x": 1.0})
        world.connect(c, ctl, "x", time_shifted=True, initial_data={"x": 1.0})
    for d, sp in zip(fcms, setpoints):
        world.connect(sp, d, "x")
        world.connect(d, inj, "x")
        world.connect(d, ctl, "x", time_shifted=True, initial_data={"x": 1.0})
    world.connect(grid, ctl, "x", time_shifted=True, initial_data={"x": 1.0})
    for e in (grid, *campuses, *fcms, ctl):
        world.connect(e, sink, "x")
    t0 = time.perf_counter()
    world.run(until=steps * dt, print_progress=False)
    return time.perf_counter() - t0, steps


def overhead(hours: float) -> None:
    base_s, steps = plain_loop(hours)
    floor_s, _ = mosaik_floor(hours)
    with tempfile.TemporaryDirectory() as tmp:
        kpis = run_scenario(scenario(hours, "none"), Path(tmp) / "run", progress=False)
    run_s = kpis["wall_run_s"]
    print(f"\n## co-simulation cost per step, controller none, {steps} steps of 60 s")
    print(f"plain OpenDSS loop : {base_s:8.3f} s  = {1e3 * base_s / steps:7.3f} ms/step")
    print(f"mosaik World       : {run_s:8.3f} s  = {1e3 * run_s / steps:7.3f} ms/step "
          f"(world.run only; setup + KPIs + report add {kpis['wall_s'] - run_s:.2f} s)")
    print(f"ratio World / loop : {run_s / base_s:8.2f} x")
    print(f"mosaik floor       : {floor_s:8.3f} s  = {1e3 * floor_s / steps:7.3f} ms/step "
          f"(six do-nothing simulators wired like the World; {floor_s / base_s:.2f} x the loop)")
    _split(kpis, steps)


def _split(kpis: dict, steps: int | None = None) -> None:
    run_s = kpis["wall_run_s"]
    print("wall time split of world.run:")
    for key in ("wall_powerflow_s", "wall_milp_s", "wall_recording_s", "wall_models_s",
                "wall_controller_other_s", "wall_mosaik_s"):
        v = kpis.get(key, float("nan"))
        per_step = f"  {1e3 * v / steps:7.3f} ms/step" if steps else ""
        print(f"  {key[5:-2]:<18} {v:9.3f} s  {100 * v / run_s:5.1f} %{per_step}")


def split(hours: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kpis = run_scenario(scenario(hours, "mpc"), Path(tmp) / "run", progress=False)
    print(f"\n## default scenario with mpc, {kpis['steps']} steps, total wall {kpis['wall_s']:.1f} s, "
          f"{kpis['controller_solves']} solves (median {kpis['controller_solve_s_median']:.3f} s, "
          f"max {kpis['controller_solve_s_max']:.3f} s), {kpis['controller_fallbacks']} fallbacks")
    _split(kpis)
    print(f"AC validation: {json.dumps(kpis.get('ac_validation'))}")


def _get(kpis: dict, key: str):
    v = kpis
    for part in key.split("."):
        v = v.get(part, float("nan")) if isinstance(v, dict) else float("nan")
    return v


def compare(hours: float, seeds: list[int] | None = None) -> None:
    for seed in seeds or [load_scenario(DEFAULT_SCENARIO).seed]:
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("none", "rule", "mpc"):
                rows[kind] = run_scenario(scenario(hours, kind, seed), Path(tmp) / kind,
                                          progress=False)
        print(f"\n## controllers on the default scenario ({hours:g} h, seed {seed})")
        print(f"| {'KPI':<44} | {'none':>10} | {'rule':>10} | {'mpc':>10} |")
        print(f"|{'-' * 46}|{'-' * 12}|{'-' * 12}|{'-' * 12}|")
        for key in KPI_ROWS:
            vals = [_get(rows[k], key) for k in ("none", "rule", "mpc")]
            print(f"| {key:<44} | " + " | ".join(
                f"{v:10.4g}" if isinstance(v, (int, float)) and v is not None else f"{str(v):>10}"
                for v in vals) + " |")
        for key in ACCEPTANCE:
            n, r, m = (_get(rows[k], key) for k in ("none", "rule", "mpc"))
            print(f"{key}: mpc < rule {'yes' if m < r else 'NO'}, rule < none "
                  f"{'yes' if r < n else 'NO'}")
        print("\ntrip log (UPS-input voltage with the inverters' fault current / without it):")
        for kind in ("none", "rule", "mpc"):
            for tr in rows[kind].get("campus_trip_log", []):
                print(f"  {kind:<4} t={tr['time_s']:8.0f} s {tr['outcome']:<7} {tr['cause']:<13} "
                      f"{tr['v_pu']:.3f} / {tr['v_unsupported_pu']:.3f} pu for {tr['duration_s']:.3g} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["overhead", "split", "compare", "all"])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    args = ap.parse_args()
    header()
    if args.what in ("overhead", "all"):
        overhead(args.hours)
    if args.what in ("split", "all"):
        split(args.hours)
    if args.what in ("compare", "all"):
        compare(args.hours, args.seeds)


if __name__ == "__main__":
    main()
