"""What a controller sees and what it returns, as plain data.

A controller (``none``, ``rule``, ``mpc``) is an object with ``step(measurement) ->
Dispatch``. It sees only :class:`Measurement` (what a utility SCADA or the campus operator
could report) and the static description it was built with (feeder data, FCM placements and
their catalog parameters, scenario weights). It never reads the plant's internals.

Sign convention (docs/conventions.md): FCM ``p_mw`` > 0 injects into the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FCMState:
    """Measured state of one FCM at the start of a step."""

    p_mw: float = 0.0
    q_mvar: float = 0.0
    soc_mwh: float = 0.0          # storage: stored energy; DR: energy curtailed this event
    committed: bool = False       # generator: on/off; storage and DR: always False
    time_in_state_s: float = 0.0  # generator: time since its last start or stop
    debt_mwh: float = 0.0         # DR: deferred energy still to be paid back


@dataclass(frozen=True)
class Measurement:
    """Everything a controller is told at simulated time ``time_s`` (seconds).

    ``campus_forecast_mw`` maps each campus to a forecast of its grid draw over the
    controller's horizon (MW, one value per horizon step) as published by the campus
    operator; a forecaster may use or ignore it. ``campus_next_mw`` is the operator's
    forecast of each campus's mean draw over the coming co-simulation step (planned
    reconnections, scheduled job starts and stops), for controllers that act every step.
    ``p_sched_mw`` is the substation import schedule over the same horizon.
    """

    time_s: float
    sub_p_mw: float
    sub_q_mvar: float
    bus_v_pu: dict[str, float]
    campus_p_mw: dict[str, float]
    campus_online: dict[str, bool]
    fcm: dict[str, FCMState]
    p_sched_mw: np.ndarray
    campus_forecast_mw: dict[str, np.ndarray] = field(default_factory=dict)
    campus_next_mw: dict[str, float] = field(default_factory=dict)
    background_p_mw: float | None = None
    converged: bool = True
    branch_p_mw: dict[str, float] = field(default_factory=dict)    # AC flows for linearising
    branch_q_mvar: dict[str, float] = field(default_factory=dict)  # (branch name → MW/Mvar)


@dataclass(frozen=True)
class Dispatch:
    """A controller's answer: FCM setpoints and, for the MPC, what it predicted.

    ``predicted_v_pu`` holds the bus voltages the MILP's network model predicts for the
    first horizon step with these setpoints (empty for controllers without a network
    model); it feeds the AC validation. ``status`` is ``"optimal"``, ``"feasible"``,
    ``"fallback:<reason>"`` or ``"rule"``/``"idle"``.
    """

    p_mw: dict[str, float]
    q_mvar: dict[str, float] = field(default_factory=dict)
    predicted_v_pu: dict[str, float] = field(default_factory=dict)
    predicted_sub_p_mw: float | None = None
    status: str = "idle"
    solve_s: float = 0.0
    fallback: bool = False
    solved: bool = False


class Controller(Protocol):
    """The one method a controller must have."""

    def step(self, measurement: Measurement) -> Dispatch: ...
