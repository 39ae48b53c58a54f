"""Benchmark: 100 shock samples × 24 h at 60-s steps for the GW scenario.

Prints measured figures only (no assertions). Baseline, measured in the same run: the SimPy
campus model (models.campus.Campus) stepped through one sample-day at the same step, the
way the co-simulation runs it, extrapolated × 100.

    python benchmarks/bench_shocks.py [--samples 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.campus import Campus  # noqa: E402
from models.shocks import generate_shocks, sample_campus_trajectories  # noqa: E402
from scenarios.config import SCENARIO_DIR, load_scenario  # noqa: E402


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sc = load_scenario(SCENARIO_DIR / "ieee33_gw_shock.toml")
    steps = sc.simulation.steps
    step_s = sc.simulation.step_s

    t_frame, frame = best_of(args.repeat, lambda: generate_shocks(sc, args.samples, sc.seed))
    t_traj, traj = best_of(args.repeat, lambda: sample_campus_trajectories(sc, args.samples, sc.seed))

    def one_simpy_day():
        c = Campus(sc.campus[0], step_s, np.random.default_rng(sc.seed), 0.0, sc.shocks)
        return [c.step(k * step_s, None).p_mw for k in range(steps)]

    t_one, _ = best_of(args.repeat, one_simpy_day)
    baseline = t_one * args.samples

    print(f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}")
    print(f"scenario: {sc.name} ({sc.campus[0].capacity_mw:.0f} MW campus), {args.samples} samples × "
          f"{sc.simulation.hours:g} h at {step_s} s = {args.samples * steps} campus-steps; best of {args.repeat}")
    print(f"generate_shocks (long DataFrame, {len(frame)} rows):      {t_frame:8.3f} s")
    print(f"sample_campus_trajectories {traj.shape}:    {t_traj:8.3f} s")
    print(f"baseline: SimPy Campus.step, 1 sample-day {t_one:.3f} s × {args.samples} = {baseline:8.3f} s")
    print(f"speed-up of generate_shocks over the stepped SimPy baseline: {baseline / t_frame:.1f}×")
    print(f"peak draw over all samples: {traj.max():.0f} MW; mean {traj.mean():.0f} MW")


if __name__ == "__main__":
    main()
