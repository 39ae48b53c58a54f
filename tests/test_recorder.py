"""The Recorder in a real mosaik World: column naming, Parquet content, incremental flush.

The source simulator below publishes values that are known functions of time, so every cell
of the written file can be checked against the formula that produced it.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mosaik
import mosaik_api_v3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from scenarios.timeseries_io import ColumnNamer, consolidate, parts_dir, read_timeseries

ROOT = Path(__file__).resolve().parents[1]
STEP_S = 60

SRC_META = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Grid": {"public": True, "params": [], "attrs": [
        "p_mw", "bus_v_pu", "converged", "pred_bus_v_pu", "status"]},
               "Campus": {"public": True, "params": [], "attrs": ["p_mw", "online"]}},
}


def grid_values(step: int) -> dict[str, Any]:
    """What the Grid entity publishes at step k (the reference for the file's content)."""
    return {
        "p_mw": 3.0 + 0.1 * step,
        "bus_v_pu": {"1": 1.0, "2": 0.99 - 0.001 * step, "3": None if step == 2 else 0.97},
        "converged": step != 4,
        # a dict that is empty at first: its columns appear late (from step 3)
        "pred_bus_v_pu": {} if step < 3 else {"2": 0.985},
        "status": "idle" if step % 2 else "optimal",
    }


class SourceSim(mosaik_api_v3.Simulator):
    """Publishes :func:`grid_values` and a campus; raises or kills itself at ``fail_at``."""

    def __init__(self) -> None:
        super().__init__(SRC_META)
        self.k = 0
        self.fail_at: int | None = None
        self.kill = False

    def init(self, sid: str, time_resolution: float = 1.0, fail_at: int | None = None,
             kill: bool = False) -> dict:
        self.fail_at, self.kill = fail_at, kill
        return self.meta

    def create(self, num: int, model: str) -> list[dict]:
        return [{"eid": model.lower(), "type": model}]

    def step(self, time: int, inputs: dict, max_advance: int) -> int:
        self.k = time // STEP_S
        if self.fail_at is not None and self.k == self.fail_at:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"simulated crash at step {self.k}")
        return time + STEP_S

    def get_data(self, outputs: dict) -> dict:
        data = {}
        for eid, attrs in outputs.items():
            vals = grid_values(self.k) if eid == "grid" else {
                "p_mw": 1.2 if self.k < 5 else 0.0, "online": self.k < 5}
            data[eid] = {a: vals[a] for a in attrs}
        return data


def build_world(out: Path, *, flush_every: int, fail_at: int | None = None,
                kill: bool = False, module: str = __name__, until_s: float | None = None):
    world = mosaik.World({
        "Source": {"python": f"{module}:SourceSim"},
        "Recorder": {"python": "sim.recorder:RecorderSim"},
    })
    src = world.start("Source", fail_at=fail_at, kill=kill)
    grid, campus = src.Grid(), src.Campus()
    rec = world.start("Recorder", path=str(out), step_s=STEP_S, flush_every=flush_every,
                      column_map={"Source-0.grid": "sub", "Source-0.campus": "dc.campus1"},
                      column_rules={"status": "ctrl.status"}, until_s=until_s).Sink()
    world.connect(grid, rec, "p_mw", "bus_v_pu", "converged", "pred_bus_v_pu", "status")
    world.connect(campus, rec, "p_mw", "online")
    return world


def test_column_names_follow_the_rule_table() -> None:
    namer = ColumnNamer({"Feeder-0.grid": "sub", "FCM-0": "fcm"})
    row = namer.row({
        "bus_v_pu": {"Feeder-0.grid": {"18": 0.91}},
        "line_loading_pct": {"Feeder-0.grid": {"L3": 55.0}},
        "converged": {"Feeder-0.grid": True},
        "p_mw": {"FCM-0.bess_18": -0.2, "Other-1.x": 1.0},
        "p_set_mw": {"Ctrl-0.mpc": {"bess_18": 0.4}, "FCM-0.bess_18": 0.3},
        "extra": {"Other-1.x": {"a": 1}},
        "sub_p_mw": {"Feeder-0.grid": 3.8},
        "p_sched_mw": {"Ctrl-0.ctrl": 3.6},
        "pred_bus_v_pu": {"Ctrl-0.ctrl": None},
    })
    assert row == {
        "bus.18.v_pu": 0.91, "line.L3.loading_pct": 55.0, "pf.converged": True,
        "fcm.bess_18.p_mw": -0.2, "Other-1.x.p_mw": 1.0,
        "fcm.bess_18.p_set_mw": 0.3, "Other-1.x.extra.a": 1,
        "sub.p_mw": 3.8, "sub.p_sched_mw": 3.6,
    }


def test_recorder_in_mosaik_writes_every_step(tmp_path: Path) -> None:
    out = tmp_path / "timeseries.parquet"
    steps = 8
    build_world(out, flush_every=3).run(until=steps * STEP_S, print_progress=False)

    assert out.is_file() and not parts_dir(out).exists()
    assert pq.ParquetFile(out).metadata.num_row_groups == 3  # 3 + 3 + 2 rows
    ts = pd.read_parquet(out)
    assert ts.index.name == "time_s"
    assert list(ts.index) == [k * STEP_S for k in range(steps)]
    for k in range(steps):
        ref = grid_values(k)
        row = ts.loc[k * STEP_S]
        assert row["sub.p_mw"] == pytest.approx(ref["p_mw"])
        assert row["bus.2.v_pu"] == pytest.approx(ref["bus_v_pu"]["2"])
        assert row["pf.converged"] == ref["converged"]
        assert row["ctrl.status"] == ref["status"]
        assert row["dc.campus1.online"] == (k < 5)
    assert ts["bus.3.v_pu"].isna().tolist() == [k == 2 for k in range(steps)]
    # columns that appeared at step 3 are NaN before it, values after
    pred = ts["pred.bus.2.v_pu"]
    assert pred.iloc[:3].isna().all() and (pred.iloc[3:] == 0.985).all()
    assert ts["pf.converged"].dtype == bool
    assert ts["sub.p_mw"].dtype == np.float64


@pytest.mark.filterwarnings("ignore:AsyncWorld was never shut down")
def test_exception_mid_run_keeps_the_flushed_rows(tmp_path: Path) -> None:
    out = tmp_path / "timeseries.parquet"
    world = build_world(out, flush_every=3, fail_at=7)
    with pytest.raises(Exception):
        world.run(until=20 * STEP_S, print_progress=False)
    assert not out.exists(), "an unfinished run must not look complete"
    ts = read_timeseries(out)
    assert len(ts) >= 6  # two segments of 3 were flushed before step 7
    assert list(ts.index[:6]) == [k * STEP_S for k in range(6)]
    assert ts["sub.p_mw"].iloc[:6].tolist() == pytest.approx([3.0 + 0.1 * k for k in range(6)])
    assert math.isnan(ts["pred.bus.2.v_pu"].iloc[0]) and ts["pred.bus.2.v_pu"].iloc[4] == 0.985
    consolidate(out)  # the recovery path gives a normal file
    assert pd.read_parquet(out).equals(ts)
    del world  # left un-shut on purpose (a crash); let mosaik's warning fire here
    gc.collect()


def test_shutdown_after_a_failure_does_not_look_complete(tmp_path: Path) -> None:
    """mosaik calls finalize() on shutdown even after a failure; with until_s the Recorder
    keeps its rows as segments (the buffered ones too) instead of writing the file."""
    out = tmp_path / "timeseries.parquet"
    world = build_world(out, flush_every=3, fail_at=7, until_s=20 * STEP_S)
    with pytest.raises(Exception):
        world.run(until=20 * STEP_S, print_progress=False)
    world.shutdown()
    assert not out.exists()
    ts = read_timeseries(out)
    assert list(ts.index) == [k * STEP_S for k in range(7)]  # 6 flushed + 1 buffered


def test_until_s_reached_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "timeseries.parquet"
    build_world(out, flush_every=5, until_s=6 * STEP_S).run(until=6 * STEP_S,
                                                            print_progress=False)
    assert out.is_file() and len(pd.read_parquet(out)) == 6


def test_killed_process_keeps_the_flushed_rows(tmp_path: Path) -> None:
    """SIGKILL gives no chance to close anything: only complete segments may survive."""
    out = tmp_path / "timeseries.parquet"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]
        from test_recorder import build_world
        build_world(__import__("pathlib").Path({str(out)!r}), flush_every=4, fail_at=9,
                    kill=True, module="test_recorder").run(until=20 * 60, print_progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ts = read_timeseries(out)
    assert len(ts) == 8  # segments of 4 flushed at steps 3 and 7; step 8 was still buffered
    assert ts["sub.p_mw"].tolist() == pytest.approx([3.0 + 0.1 * k for k in range(8)])


def test_segment_writer_types_and_missing_values(tmp_path: Path, caplog) -> None:
    """Types are fixed from the first non-missing value; misfits become missing."""
    from scenarios.timeseries_io import SegmentWriter

    out = tmp_path / "ts.parquet"
    w = SegmentWriter(out, flush_every=2)
    w.append(0, {"a": 1, "flag": True, "status": None})
    w.append(60, {"a": "oops", "flag": None, "status": "optimal"})
    w.append(120, {"a": np.float32(2.5), "flag": np.bool_(False), "late": 7})
    w.close()
    ts = pd.read_parquet(out)
    assert ts["a"].tolist()[0] == 1.0 and math.isnan(ts["a"].iloc[1]) and ts["a"].iloc[2] == 2.5
    assert ts["flag"].tolist() == [True, None, False]
    assert ts["status"].tolist() == [None, "optimal", None]
    assert math.isnan(ts["late"].iloc[0]) and ts["late"].iloc[2] == 7.0
    assert "column a holds numbers" in caplog.text


def test_recorder_as_a_separate_process(tmp_path: Path) -> None:
    """main(): mosaik starts the Recorder as its own process and talks to it over TCP."""
    out = tmp_path / "timeseries.parquet"
    world = mosaik.World({
        "Source": {"python": f"{__name__}:SourceSim"},
        "Recorder": {"cmd": f"{sys.executable} -m sim.recorder %(addr)s", "cwd": str(ROOT)},
    }, skip_greetings=True)
    grid = world.start("Source").Grid()
    rec = world.start("Recorder", path=str(out), step_s=STEP_S, flush_every=2,
                      column_map={"Source-0.grid": "sub"}, until_s=4 * STEP_S).Sink()
    world.connect(grid, rec, "p_mw", "bus_v_pu")
    world.run(until=4 * STEP_S, print_progress=False)
    ts = pd.read_parquet(out)
    assert ts["sub.p_mw"].tolist() == pytest.approx([3.0 + 0.1 * k for k in range(4)])
    assert ts["bus.2.v_pu"].tolist() == pytest.approx([0.99 - 0.001 * k for k in range(4)])


def test_dict_inputs_whose_keys_change_order_or_set_keep_their_columns() -> None:
    """The namer reuses a dict attribute's columns while its keys repeat; a new order, a
    new key or a missing key must still put every value in its own column."""
    namer = ColumnNamer({"Feeder-0.grid": "sub"})
    steps = [{"1": 1.0, "2": 0.99}, {"1": 1.0, "2": 0.98}, {"2": 0.97, "1": 1.01},
             {"2": 0.96, "3": 0.95}, {}, {"1": 1.02, "2": 0.94, "3": 0.93}]
    for values in steps:
        row = namer.row({"bus_v_pu": {"Feeder-0.grid": values}, "sub_p_mw": {"Feeder-0.grid": 3.0}})
        assert row == {**{f"bus.{k}.v_pu": v for k, v in values.items()}, "sub.p_mw": 3.0}


def test_segment_columns_with_rows_that_lack_some(tmp_path: Path) -> None:
    """A segment built from rows with different column sets: each cell where its row has it,
    missing elsewhere (the writer's fast gather falls back per row)."""
    from scenarios.timeseries_io import SegmentWriter

    w = SegmentWriter(tmp_path / "t.parquet", flush_every=10)
    rows = [{"a": 1.0, "b": True}, {"a": 2.0}, {"b": False, "c": "x"}, {"a": 4.0, "b": True, "c": "y"}]
    for k, r in enumerate(rows):
        w.append(60 * k, r)
    frame = read_timeseries(w.close())
    assert frame["a"].tolist()[:2] == [1.0, 2.0] and math.isnan(frame["a"].iloc[2])
    assert frame["b"].tolist() == [True, None, False, True]
    assert frame["c"].tolist() == [None, None, "x", "y"]
