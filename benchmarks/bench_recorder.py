#!/usr/bin/env python
"""Recorder cost per step for an IEEE-33-like row: 33 bus voltages, 32 line loadings and 20
other columns (85 values), at Δt = 60 s.

Measured in one run, on the same values:

* ``mosaik+Recorder``: a mosaik World with a source simulator and the Recorder; wall time
  of ``world.run`` + shutdown minus the same World without the Recorder (what adding the
  Recorder costs: mosaik's data transfer, the source's ``get_data`` and the final join of
  the segments included), and the time spent in the Recorder's ``step()`` (``timing()``);
* the same row building and segment writer driven from a plain loop (no mosaik);
* baseline: a plain Python loop that builds the same row as a dict, appends it to a list,
  and writes one ``DataFrame.to_parquet`` at the end (not crash-safe).

Prints figures only; no assertions.  Usage: ``python benchmarks/bench_recorder.py [STEPS]``.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import mosaik
import mosaik_api_v3
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from scenarios.timeseries_io import ColumnNamer, SegmentWriter  # noqa: E402


STEP_S = 60
BUSES = [str(b) for b in range(1, 34)]
LINES = [f"L{i}" for i in range(1, 33)]
SCALARS = [f"x{i}_mw" for i in range(19)] + ["converged"]

META = {"api_version": "3.0", "type": "time-based",
        "models": {"Grid": {"public": True, "params": [],
                            "attrs": ["bus_v_pu", "line_loading_pct", *SCALARS]}}}


def values(k: int) -> dict:
    """The source's outputs at step k (cheap, deterministic)."""
    v = 1.0 - 0.0005 * (k % 97)
    out = {"bus_v_pu": {b: v - 0.002 * i for i, b in enumerate(BUSES)},
           "line_loading_pct": {ln: 40.0 + 0.5 * i + 0.01 * k for i, ln in enumerate(LINES)}}
    out |= {s: 0.1 * i + 1e-4 * k for i, s in enumerate(SCALARS[:-1])}
    out["converged"] = True
    return out


class BenchSource(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self.k = 0

    def create(self, num, model):
        return [{"eid": "grid", "type": model}]

    def step(self, time, inputs, max_advance):
        self.k = time // STEP_S
        return time + STEP_S

    def get_data(self, outputs):
        vals = values(self.k)
        return {eid: {a: vals[a] for a in attrs} for eid, attrs in outputs.items()}


def run_world(steps: int, out: Path | None, flush_every: int = 60) -> tuple[float, float]:
    world = mosaik.World({"Src": {"python": "bench_recorder:BenchSource"},
                          "Rec": {"python": "sim.recorder:RecorderSim"}},
                         skip_greetings=True, configure_logging=False)
    grid = world.start("Src").Grid()
    rec_sim = None
    if out is not None:
        rec_sim = world.start("Rec", path=str(out), step_s=STEP_S, flush_every=flush_every,
                              column_map={"Src-0.grid": "sub"})
        world.connect(grid, rec_sim.Sink(), "bus_v_pu", "line_loading_pct", *SCALARS)
    t0 = time.perf_counter()
    world.run(until=steps * STEP_S, print_progress=False, shutdown=False)
    rec_s = rec_sim.timing()["recording_s"] if rec_sim is not None else 0.0
    world.shutdown()  # finalize: the Recorder joins its segments here
    wall = time.perf_counter() - t0
    if rec_sim is not None:
        rec_s = max(rec_s, 0.0)
    return wall, rec_s


def run_baseline(steps: int, out: Path) -> float:
    namer = ColumnNamer({"Src-0.grid": "sub"})
    t0 = time.perf_counter()
    rows = []
    for k in range(steps):
        vals = values(k)
        row = namer.row({a: {"Src-0.grid": v} for a, v in vals.items()})
        row["time_s"] = k * STEP_S
        rows.append(row)
    pd.DataFrame(rows).set_index("time_s").to_parquet(out)
    return time.perf_counter() - t0


def run_writer_loop(steps: int, out: Path) -> tuple[float, float]:
    """The Recorder's row building and segment writer in the baseline's plain loop (no
    mosaik): time of the loop, and of the final join of the segments."""
    namer = ColumnNamer({"Src-0.grid": "sub"})
    writer = SegmentWriter(out, flush_every=60)
    t0 = time.perf_counter()
    for k in range(steps):
        vals = values(k)
        writer.append(k * STEP_S, namer.row({a: {"Src-0.grid": v} for a, v in vals.items()}))
    t1 = time.perf_counter()
    writer.close()
    return t1 - t0, time.perf_counter() - t1


def run_values_only(steps: int) -> float:
    """The cost of producing the values alone (subtracted from the baseline)."""
    t0 = time.perf_counter()
    for k in range(steps):
        values(k)
    return time.perf_counter() - t0


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1440
    repeats = 3
    print(f"bench_recorder: {steps} steps × 85 columns, Δt = {STEP_S} s; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, python {platform.python_version()}; best of {repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        no_rec = min(run_world(steps, None)[0] for _ in range(repeats))
        with_rec = [run_world(steps, tmp / f"ts{i}.parquet") for i in range(repeats)]
        rec_wall = min(w for w, _ in with_rec)
        rec_own = min(r for _, r in with_rec)
        every1 = run_world(steps, tmp / "e1.parquet", flush_every=1)[1]
        base = min(run_baseline(steps, tmp / f"base{i}.parquet") for i in range(repeats))
        gen = min(run_values_only(steps) for _ in range(repeats))
        loops = [run_writer_loop(steps, tmp / f"loop{i}.parquet") for i in range(repeats)]
        loop_s = min(a for a, _ in loops)
        join_s = min(b for _, b in loops)
        check = pd.read_parquet(tmp / "ts0.parquet")
        ref = pd.read_parquet(tmp / "base0.parquet")
        same = check.shape == ref.shape and np.allclose(
            check[ref.columns].to_numpy(float), ref.to_numpy(float))
    us = 1e6 / steps
    print(f"  mosaik World without Recorder      : {no_rec * us:8.1f} µs/step")
    print(f"  mosaik World with Recorder         : {rec_wall * us:8.1f} µs/step")
    print(f"  → added by the Recorder (in mosaik): {(rec_wall - no_rec) * us:8.1f} µs/step")
    print(f"  Recorder step() time (flush 60)    : {rec_own * us:8.1f} µs/step")
    print(f"  Recorder step() time (flush 1)     : {every1 * us:8.1f} µs/step (one run)")
    print(f"  baseline list + one to_parquet     : {(base - gen) * us:8.1f} µs/step "
          f"(values generation {gen * us:.1f} µs/step excluded)")
    print(f"  Recorder writer in the plain loop  : {(loop_s - gen) * us:8.1f} µs/step "
          f"+ final join {join_s * 1e3:.1f} ms ({(loop_s - gen + join_s) * us:.1f} µs/step in all)")
    print(f"  ratio writer loop (all) / baseline : {(loop_s - gen + join_s) / max(base - gen, 1e-12):8.2f}×")
    print(f"  ratio Recorder step() / baseline   : {rec_own / max(base - gen, 1e-12):8.2f}×")
    print(f"  ratio added in mosaik / baseline   : {(rec_wall - no_rec) / max(base - gen, 1e-12):8.2f}×")
    print(f"  same content as the baseline file  : {same}")


if __name__ == "__main__":
    main()
