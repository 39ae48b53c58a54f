"""What the World carries over its connections (scenarios/world.py, docs/cosim.md §2).

Each attribute and each simulator-to-simulator edge costs mosaik time every step, so the
World sends a consumer only what it reads: the campus forecast goes only to controllers that
use one, and the background multiplier reaches the controller and the recorder as the
grid's read-back of what it applied. A short run checks that those readings are the values
the background input produced.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.schedule import background_shape
from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.world import build_world, campus_reads, plan_world
from scenarios.timeseries_io import read_timeseries


def _world(kind: str, tmp_path, steps: int = 4):
    sc = load_scenario(DEFAULT_SCENARIO)
    sc = sc.with_overrides(simulation={"hours": steps * sc.simulation.step_s / 3600},
                           controller={"kind": kind})
    plan = plan_world(sc)
    path = tmp_path / "timeseries.parquet"
    return sc, plan, build_world(plan, path), path


@pytest.mark.parametrize("kind", ["none", "rule"])
def test_campus_forecasts_only_to_a_controller_that_reads_them(kind, tmp_path):
    sc, _, h, _ = _world(kind, tmp_path)
    try:
        requested = {a for attrs in h.world.sims["DC"].output_request.values() for a in attrs}
        assert requested & {"forecast_mw", "next_mw"} == set(campus_reads(sc.controller))
        assert {"p_mw", "q_mvar", "online"} <= requested
    finally:
        h.world.shutdown()


def test_what_each_controller_reads_of_the_campus():
    ctrl = load_scenario(DEFAULT_SCENARIO).controller
    assert campus_reads(ctrl.model_copy(update={"kind": "none"})) == ()
    assert campus_reads(ctrl.model_copy(update={"kind": "rule"})) == ("next_mw",)
    mpc = ctrl.model_copy(update={"kind": "mpc", "forecaster": "persistence"})
    assert campus_reads(mpc.model_copy(update={"trim": "ramp"})) == ("next_mw",)
    assert campus_reads(mpc.model_copy(update={"trim": "none"})) == ()
    assert campus_reads(mpc.model_copy(update={"forecaster": "operator", "trim": "ramp"})) == (
        "next_mw", "forecast_mw")


def test_background_reaches_controller_and_recorder_through_the_grid(tmp_path):
    sc, plan, h, path = _world("rule", tmp_path)
    assert [s.sid for s in h.world.sims["Background"].successors] == ["Feeder"]
    h.world.run(until=plan.steps * plan.step_s, print_progress=False)
    ts = read_timeseries(path)
    expected = background_shape(ts.index.to_numpy(float), sc.simulation.start_hour,
                                sc.grid.background_load_scale)
    np.testing.assert_array_equal(ts["sub.load_scale"].to_numpy(float), expected)
