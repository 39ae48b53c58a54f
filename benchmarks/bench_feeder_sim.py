"""Per-step cost of FeederSim inside mosaik against a plain opendssdirect loop.

    python benchmarks/bench_feeder_sim.py [--steps-33 N] [--steps-8500 N]

For each feeder (built-in ieee33; IEEE 8500 from ../shared/feeders/ieee8500/Master.dss with
``set maxiterations=20``) the same changing injection profile is applied three ways, each
step one snapshot solve:

1. baseline: one plain opendssdirect loop (set the load's kW/kvar, ``Solution.Solve()``,
   read ``Circuit.AllBusMagPu()``); also the same loop reading every array DSSFeeder reads
   (``PDElements.AllPowers``, ``AllPctNorm``, ``Circuit.Losses``, ``TotalPower``), which
   separates OpenDSS's own cost of those results from our Python;
2. ``DSSFeeder.solve()`` in a plain loop (our wrapper: whole-circuit result arrays);
3. FeederSim in a real mosaik World: a source simulator drives one Injection, a collector
   requests what the recorder requests (Grid scalars, ``bus_v_pu``, ``line_loading_pct`` and
   the Injection's ``v_pu``).

Prints measured figures only (no assertions).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import mosaik
import mosaik_api_v3
import numpy as np
import opendssdirect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.feeder import DSSFeeder  # noqa: E402

SHARED = REPO.parent / "shared"
STEP_S = 60


def profile(n: int, amplitude_mw: float) -> np.ndarray:
    """A deterministic campus-like draw: a base, a square wave and a slow ramp (MW)."""
    k = np.arange(n)
    return amplitude_mw * (0.5 + 0.3 * ((k // 5) % 2) + 0.2 * np.sin(k / 17.0))


def bench_raw(source: str, extra: list[str], bus: str, p_mw: np.ndarray, arrays: bool = False) -> float:
    dss = opendssdirect.NewContext()
    dss.Basic.AllowChangeDir(False)
    if source in ("ieee33",):
        from models.builtin_feeders import BUILTINS

        dss.Text.Commands(BUILTINS[source]())
    else:
        dss.Text.Command(f'redirect "{source}"')
    for cmd in extra:
        dss.Text.Command(cmd)
    dss.Text.Command("set mode=snapshot")
    dss.Circuit.SetActiveBus(bus)
    kv = dss.Bus.kVBase() * 3**0.5
    dss.Text.Command(f"new load.bench bus1={bus} phases=3 kv={kv} kw=0 kvar=0 model=1 status=fixed vminpu=0.5")
    dss.Solution.Solve()
    t0 = time.perf_counter()
    for p in p_mw:
        dss.Loads.Name("bench")
        dss.Loads.kW(p * 1e3)
        dss.Loads.kvar(0.2 * p * 1e3)
        dss.Solution.Solve()
        dss.Circuit.AllBusMagPu()
        if arrays:  # the same whole-circuit arrays DSSFeeder.solve reads
            dss.PDElements.AllPowers()
            dss.PDElements.AllPctNorm(False)
            dss.Circuit.Losses()
            dss.Circuit.TotalPower()
    return (time.perf_counter() - t0) / len(p_mw)


def bench_wrapper(source: str, extra: list[str], bus: str, p_mw: np.ndarray) -> float:
    feeder = DSSFeeder.open(source, extra_commands=extra)
    feeder.add_injection("bench", bus)
    feeder.solve()
    t0 = time.perf_counter()
    for p in p_mw:
        feeder.set_injection("bench", p, 0.2 * p)
        feeder.solve()
    return (time.perf_counter() - t0) / len(p_mw)


PROFILE: list[float] = []


class SourceSim(mosaik_api_v3.Simulator):
    """Outputs the benchmark profile (p_mw, q_mvar) one entry per step."""

    def __init__(self) -> None:
        super().__init__({"api_version": "3.0", "type": "time-based", "models": {
            "Src": {"public": True, "params": [], "attrs": ["p_mw", "q_mvar"]}}})
        self.k = 0

    def init(self, sid, time_resolution=1.0, **_):
        return self.meta

    def create(self, num, model):
        return [{"eid": "src", "type": model}]

    def step(self, time, inputs, max_advance):
        self.k = time // STEP_S
        return time + STEP_S

    def get_data(self, outputs):
        p = PROFILE[self.k]
        return {"src": {"p_mw": p, "q_mvar": 0.2 * p}}


class SinkSim(mosaik_api_v3.Simulator):
    """Receives every requested attribute and counts steps."""

    def __init__(self) -> None:
        super().__init__({"api_version": "3.0", "type": "time-based", "models": {
            "Sink": {"public": True, "params": [], "any_inputs": True, "attrs": []}}})
        self.steps = 0

    def init(self, sid, time_resolution=1.0, **_):
        return self.meta

    def create(self, num, model):
        return [{"eid": "sink", "type": model}]

    def step(self, time, inputs, max_advance):
        self.steps += 1
        return time + STEP_S


def bench_mosaik(source: str, extra: list[str], bus: str, p_mw: np.ndarray) -> float:
    PROFILE[:] = list(map(float, p_mw))
    world = mosaik.World({
        "FeederSim": {"python": "sim.feeder_sim:FeederSim"},
        "Source": {"python": f"{__name__}:SourceSim"},
        "Sink": {"python": f"{__name__}:SinkSim"},
    }, time_resolution=1.0, skip_greetings=True, configure_logging=False)
    feeder = world.start("FeederSim", source=source, step_s=STEP_S, extra_commands=extra)
    grid = feeder.Grid()
    inj = feeder.Injection(bus=bus)
    src = world.start("Source").Src()
    sink = world.start("Sink").Sink()
    world.connect(src, inj, "p_mw", "q_mvar")
    world.connect(grid, sink, "converged", "sub_p_mw", "sub_q_mvar", "losses_mw", "v_min_pu",
                  "v_max_pu", "bus_v_pu", "line_loading_pct")
    world.connect(inj, sink, "v_pu")
    t0 = time.perf_counter()
    world.run(until=STEP_S * len(p_mw), print_progress=False)
    return (time.perf_counter() - t0) / len(p_mw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-33", type=int, default=1000)
    parser.add_argument("--steps-8500", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="best-of repeats per figure")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    cases = [("ieee33", "ieee33", [], "18", args.steps_33, 1.0)]
    master = SHARED / "feeders" / "ieee8500" / "Master.dss"
    if master.is_file():
        cases.append(("ieee8500", str(master), ["set maxiterations=20"], "m1047513",
                      args.steps_8500, 1.0))
    else:
        print(f"(IEEE 8500 skipped: {master} absent)")
    print(f"FeederSim per-step cost — {dt.date.today().isoformat()}, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, "
          f"opendssdirect {opendssdirect.__version__}, mosaik {mosaik.__version__}")
    print(f"best of {args.repeat} runs; baseline = plain opendssdirect loop in the same run\n")
    header = (f"{'feeder':10s} {'steps':>6s} {'raw dss ms':>11s} {'raw+arrays ms':>14s} "
              f"{'DSSFeeder ms':>13s} {'FeederSim ms':>13s} {'wrapper/raw':>12s} {'mosaik/raw':>11s}")
    print(header)
    print("-" * len(header))
    for name, source, extra, bus, steps, amp in cases:
        p = profile(steps, amp)
        raw = min(bench_raw(source, extra, bus, p) for _ in range(args.repeat))
        raw_arr = min(bench_raw(source, extra, bus, p, arrays=True) for _ in range(args.repeat))
        wrap = min(bench_wrapper(source, extra, bus, p) for _ in range(args.repeat))
        mos = min(bench_mosaik(source, extra, bus, p) for _ in range(args.repeat))
        print(f"{name:10s} {steps:6d} {raw * 1e3:11.3f} {raw_arr * 1e3:14.3f} {wrap * 1e3:13.3f} {mos * 1e3:13.3f} "
              f"{wrap / raw:12.2f} {mos / raw:11.2f}")


if __name__ == "__main__":
    main()
