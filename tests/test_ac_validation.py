"""The run's AC validation without mosaik: LinDistFlow re-evaluated at recorded injections
on a two-bus feeder, against the hand-computed voltage drop."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from controllers.ac_validation import network_model_validation
from models.network import Branch, Bus, BusLoad, FeederData

# source "1", one line (r = 0.02 pu, x = 0.04 pu on 10 MVA) to bus "2" with 1 + j0.5 MVA of load
FEEDER = FeederData(
    name="two_bus", source_bus="1", base_kv_ll=11.0, s_base_mva=10.0,
    buses=(Bus("1", 11.0), Bus("2", 11.0)),
    branches=(Branch("l12", "1", "2", 0.02 * 12.1 / 10, 0.04 * 12.1 / 10, 0.02, 0.04),),
    loads=(BusLoad("2", 1.0, 0.5),),
)


def _v2(p_mw: float, q_mvar: float) -> float:
    """Lossless LinDistFlow from a 1.0-pu source: v2 = 1 − 2 (r P + x Q) / S_base, |V2| = √v2."""
    return math.sqrt(1.0 - 2.0 * (0.02 * p_mw + 0.04 * q_mvar) / 10.0)


def _ts(v2_meas, scale, campus_p, campus_q, fcm_p=(0.0, 0.0, 0.0), flows=None):
    cols = {"bus.1.v_pu": [1.0] * len(v2_meas), "bus.2.v_pu": v2_meas, "sub.load_scale": scale,
            "dc.c.p_mw": campus_p, "dc.c.q_mvar": campus_q,
            "fcm.b.p_mw": fcm_p, "fcm.b.q_mvar": [0.0] * len(v2_meas)}
    if flows is not None:
        cols.update({"branch.l12.p_mw": flows[0], "branch.l12.q_mvar": flows[1]})
    return pd.DataFrame(cols, index=pd.Index([0, 60, 120], name="time_s")[:len(v2_meas)])


def test_flat_model_error_is_the_hand_computed_drop():
    # step 0 diverged (NaN): skipped; steps 1, 2 without recorded flows: flat start
    ts = _ts([math.nan, 0.97, 0.95], [1.0, 0.5, 1.0], [0.0, 2.0, 1.0], [0.0, 0.4, 0.2],
             fcm_p=[0.0, 0.0, 0.5])
    res = network_model_validation(ts, FEEDER, {"c": "2"}, {"b": "2"}, {})
    # net load at bus 2: step 1: 0.5 + 2.0 = 2.5 MW, 0.25 + 0.4 = 0.65 Mvar;
    # step 2: 1 + 1 − 0.5 (FCM injects) = 1.5 MW, 0.5 + 0.2 = 0.7 Mvar
    e = [abs(_v2(2.5, 0.65) - 0.97), abs(_v2(1.5, 0.7) - 0.95)]
    assert res["steps"] == 2
    assert res["flat_max_abs_v_error_pu"] == pytest.approx(max(e), abs=1e-12)
    assert res["flat_mean_abs_v_error_pu"] == pytest.approx(sum(e) / 4, abs=1e-12)  # 2 buses × 2 steps
    assert res["max_abs_v_error_pu"] == pytest.approx(max(e), abs=1e-12)  # no flows: flat too
    assert res["steps_above_0_01_pu"] == sum(x > 0.01 for x in e)


def test_linearised_at_the_previous_step_reproduces_an_unchanged_step():
    # step 0 diverged; steps 1 and 2 with the same injections: step 1 is evaluated at the flat
    # start, step 2 calibrated at step 1's AC point, which it reproduces whatever the
    # lossless drop says
    ts = _ts([math.nan, 0.9, 0.9], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.2, 0.2],
             flows=([math.nan, 2.05, 2.05], [math.nan, 0.72, 0.72]))
    res = network_model_validation(ts, FEEDER, {"c": "2"}, {}, {})
    e1 = abs(_v2(2.0, 0.7) - 0.9)  # 1 + 1 MW, 0.5 + 0.2 Mvar
    assert res["steps"] == 2
    assert res["flat_mean_abs_v_error_pu"] == pytest.approx(2 * e1 / 4, abs=1e-12)
    assert res["max_abs_v_error_pu"] == pytest.approx(e1, abs=1e-12)
    assert res["mean_abs_v_error_pu"] == pytest.approx(e1 / 4, abs=1e-9)  # step 2: no error


def test_without_voltages_there_is_nothing_to_validate():
    ts = pd.DataFrame({"sub.p_mw": [1.0]})
    res = network_model_validation(ts, FEEDER, {}, {}, {})
    assert res["steps"] == 0 and math.isnan(res["max_abs_v_error_pu"])
