"""What a controller is told and when it decides, without mosaik: the re-solve cadence, the
schedule over the horizon and the measurement with its defaults."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from controllers.cadence import Cadence, Rolling
from controllers.interface import Dispatch
from controllers.measurement import (
    MeasurementBuilder, background_estimate_mw, finite, finite_floats,
)
from controllers.schedule import SubstationSchedule
from models.fcm import NEVER_SWITCHED_S


def test_cadence_by_controller_kind():
    assert Cadence.of(SimpleNamespace(kind="mpc", resolve_every_steps=3)).every_steps == 3
    assert Cadence.of(SimpleNamespace(kind="rule", resolve_every_steps=3)).every_steps == 1
    assert Cadence.of(SimpleNamespace(kind="none", resolve_every_steps=7)).every_steps == 1
    assert [Cadence(3).due(k) for k in range(7)] == [True, False, False, True, False, False, True]
    with pytest.raises(ValueError):
        Cadence(0)


class Counting:
    """Answers step() with the number of its solves as the setpoint, hold() with −1."""

    def __init__(self, with_hold: bool):
        self.solves, self.holds = 0, 0
        if with_hold:
            self.hold = self._hold

    def step(self, m):
        self.solves += 1
        return Dispatch(p_mw={"b": float(self.solves)}, status="optimal", solved=True, solve_s=0.5)

    def _hold(self, m):
        self.holds += 1
        return Dispatch(p_mw={"b": -1.0}, status="optimal")


def test_rolling_holds_between_resolves_and_measures_only_when_read():
    ctrl, reads = Counting(with_hold=False), []
    rolling = Rolling(ctrl, Cadence(2), ["b"])
    assert rolling.dispatch.p_mw == {"b": 0.0}
    out = [rolling.step(lambda: reads.append(1)) for _ in range(5)]
    assert [d.status for d in out] == ["optimal", "hold", "optimal", "hold", "optimal"]
    assert [d.dispatch.p_mw["b"] for d in out] == [1.0, 1.0, 2.0, 2.0, 3.0]  # held plan
    assert [d.solve_s for d in out] == [0.5, 0.0, 0.5, 0.0, 0.5]
    assert len(reads) == 3 and rolling.solve_s == 1.5  # no measurement while holding
    guarded = Rolling(Counting(with_hold=True), Cadence(2))
    held = [guarded.step(lambda: None) for _ in range(3)][1]
    assert held.status == "hold" and not held.solved and held.dispatch.p_mw["b"] == -1.0


def test_schedule_block_at_each_horizon_step_middle():
    sch = SubstationSchedule.of([3.0, 4.0, 5.0], 3600)
    assert sch.at(0) == 3.0 and sch.at(3599.9) == 3.0 and sch.at(3600) == 4.0
    assert sch.at(99 * 3600) == 5.0  # the last block holds after the run
    # from t = 3000 s, steps of 600 s: middles 3300, 3900, 4500, 5100, ..., 7500
    np.testing.assert_array_equal(sch.over_horizon(3000.0, 600.0, 8),
                                  [3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 5.0])
    assert SubstationSchedule.of(None).at(1e6) == 0.0


def test_finite_numbers_and_dicts():
    assert finite(None) == 0.0 and finite("x", 2.0) == 2.0 and finite(math.nan, -1.0) == -1.0
    assert finite(math.inf) == 0.0 and finite(np.float64(1.5)) == 1.5
    assert finite_floats({1: 0.9, "2": math.nan, "3": math.inf}) == {"1": 0.9}
    assert finite_floats({"a": None, "b": 1, "c": "x"}) == {"b": 1.0}
    assert finite_floats(None) == {}


def test_background_estimate():
    assert background_estimate_mw(0.8, 3.715) == pytest.approx(2.972)  # 0.8 × 3.715 MW
    assert background_estimate_mw(None, 3.715) is None


def test_measurement_from_readings_with_defaults():
    ctrl = SimpleNamespace(horizon_steps=3, horizon_step_s=1800.0)
    b = MeasurementBuilder.of(ctrl, (), SubstationSchedule.of([3.0, 4.0]), 2.0).for_fcms(["bess", "gen"])
    m = b.build(1800.0,
                grid={"sub_p_mw": 4.2, "bus_v_pu": {"1": 1.0, "18": math.nan}, "load_scale": 0.5,
                      "converged": False, "branch_p_mw": {"L1": 4.0}},
                campus={"p_mw": {"c1": math.nan}, "online": {"c1": 0},
                        "forecast_mw": {"c1": [1.0, 2.0], "c2": None},
                        "next_mw": {"c1": 1.5, "c2": math.nan}},
                fcm={"p_mw": {"bess": -0.2}, "soc_mwh": {"bess": 0.4},
                     "committed": {"gen": True}, "time_in_state_s": {"gen": 120.0}})
    assert m.time_s == 1800.0 and m.sub_p_mw == 4.2 and m.sub_q_mvar == 0.0
    assert m.bus_v_pu == {"1": 1.0} and m.branch_p_mw == {"L1": 4.0} and m.branch_q_mvar == {}
    assert m.converged is False
    assert m.background_p_mw == pytest.approx(1.0)  # 0.5 × 2 MW
    assert m.campus_p_mw == {"c1": 0.0} and m.campus_online == {"c1": False}
    assert list(m.campus_forecast_mw) == ["c1"] and m.campus_next_mw == {"c1": 1.5}
    # middles 2700, 4500, 6300 s: blocks 0, 1, 1
    np.testing.assert_array_equal(m.p_sched_mw, [3.0, 4.0, 4.0])
    assert list(m.fcm) == ["bess", "gen"]
    assert (m.fcm["bess"].p_mw, m.fcm["bess"].soc_mwh, m.fcm["bess"].committed) == (-0.2, 0.4, False)
    assert m.fcm["bess"].time_in_state_s == NEVER_SWITCHED_S  # not reported: free to switch
    assert m.fcm["gen"].committed and m.fcm["gen"].time_in_state_s == 120.0
    empty = b.build(0.0, {}, {}, {})
    assert empty.converged and empty.background_p_mw is None and empty.sub_p_mw == 0.0
