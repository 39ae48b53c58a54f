"""Fast-ramping generator FCMs: catalog entry, device physics, Pyomo block (docs/fcm.md).

Reciprocating engines or aeroderivative turbines with unit commitment. Equations: the device
in :class:`Generator` (docs/cosim.md §4), the block in :func:`add_generator`
(docs/optimization.md §2.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pyomo.environ as pyo
from pydantic import Field, NonNegativeFloat, PositiveFloat

from models.fcm.base import (
    NEVER_SWITCHED_S,
    _EPS,
    Device,
    DeviceOutput,
    Placement,
    Technology,
    add_reactive_power,
    big_m,
    finite,
)
from models.schema import StrictModel


class GeneratorType(StrictModel):
    """Fast-ramping generator module (e.g. reciprocating engine, aeroderivative turbine)."""

    technology: Literal["generator"] = "generator"
    p_mw_per_module: PositiveFloat = 0.5
    p_min_frac: float = Field(0.3, ge=0, le=1)
    ramp_mw_per_min: PositiveFloat = 0.25
    min_up_s: NonNegativeFloat = 600.0
    min_down_s: NonNegativeFloat = 600.0
    startup_cost: NonNegativeFloat = 50.0
    cost_per_mwh: NonNegativeFloat = 120.0
    capex_per_module: NonNegativeFloat = 400_000.0
    max_modules: int = Field(4, ge=1)
    # power-factor range: over-excited (injecting Q) down to pf_lagging_min, under-excited
    # (absorbing Q) down to pf_leading_min
    pf_lagging_min: float = Field(0.85, gt=0, le=1)
    pf_leading_min: float = Field(0.95, gt=0, le=1)
    cost_per_mvarh: NonNegativeFloat = 0.5

    @property
    def q_over_p(self) -> tuple[float, float]:
        """``(tan φ_lag, tan φ_lead)``: the most Mvar it injects and absorbs per MW."""
        return (math.tan(math.acos(self.pf_lagging_min)), math.tan(math.acos(self.pf_leading_min)))

    def ramp_mw_per_min_for(self, p_mw: float) -> float:
        """Ramp limit of a placement of ``p_mw`` (MW/min). ``ramp_mw_per_min`` is one
        module's; the ``p_mw / p_mw_per_module`` modules of a placement ramp side by side::

            R(P̄) = ramp_mw_per_min · P̄ / p_mw_per_module

        the same fraction of the rating per minute as :attr:`ramp_frac_per_min`, which the
        block scales with the (possibly variable) size."""
        return self.ramp_mw_per_min * float(p_mw) / self.p_mw_per_module

    @property
    def ramp_frac_per_min(self) -> float:
        """The ramp as a fraction of the rating per minute, ``ramp_mw_per_min /
        p_mw_per_module``: size-independent."""
        return self.ramp_mw_per_min / self.p_mw_per_module


class Generator(Device):
    """Fast-ramping generator with unit commitment.

    Commitment ``u``: a positive setpoint asks for ``u = 1``, a setpoint ≤ 0 for ``u = 0``.
    A start is allowed only after the unit has been off for ``min_down_s``, a stop only
    after it has run for ``min_up_s``; otherwise the commitment is held. When committed::

        P_min ≤ P ≤ P̄,   |P_t − P_{t−1}| ≤ R · Δt        (R = ramp_mw_per_min_for(P̄)/60 MW/s)

    A start may reach ``max(P_min, R·Δt)`` in its first step (start-up trajectory); a stop
    takes the output to 0 in one step (shut-down). A held-on unit asked for less than
    ``P_min`` runs at ``P_min``. Reactive power lies in its power-factor range,
    ``−tan φ_lead P ≤ Q ≤ tan φ_lag P`` (0 when off). Cost = ``c · P · Δt_h + c_q |Q| Δt_h +
    C_su · [start]``.
    """

    def __init__(self, placement: Placement, tech: GeneratorType) -> None:
        self.label = placement.label
        self.p_max = float(placement.p_mw)
        self.p_min = tech.p_min_frac * self.p_max
        self.ramp_mw_per_s = tech.ramp_mw_per_min_for(self.p_max) / 60.0  # all its modules
        self.min_up_s = tech.min_up_s
        self.min_down_s = tech.min_down_s
        self.startup_cost = tech.startup_cost
        self.cost_per_mwh = tech.cost_per_mwh
        self.committed = False
        self.time_in_state_s = NEVER_SWITCHED_S  # off "forever": a start is allowed at once
        self.p_prev = 0.0
        self.q_prev = 0.0
        self.q_over_p = tech.q_over_p
        self.cost_per_mvarh = tech.cost_per_mvarh

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        p_set = finite(p_set_mw)
        want_on = p_set > _EPS
        started = False
        if want_on and not self.committed and self.time_in_state_s >= self.min_down_s:
            self.committed, self.time_in_state_s, started = True, 0.0, True
        elif not want_on and self.committed and self.time_in_state_s >= self.min_up_s:
            self.committed, self.time_in_state_s = False, 0.0
        r = self.ramp_mw_per_s * dt_s
        if not self.committed:
            p = 0.0
        elif started:
            p = min(max(p_set, self.p_min), max(self.p_min, min(r, self.p_max)))
        else:
            lo = max(self.p_min, self.p_prev - r)
            hi = min(self.p_max, self.p_prev + r)
            p = min(max(p_set, lo), hi)
        self.time_in_state_s += dt_s
        lag, lead = self.q_over_p
        q = min(max(finite(q_set_mvar), -lead * p), lag * p)
        self.p_prev, self.q_prev = p, q
        cost = ((self.cost_per_mwh * p + self.cost_per_mvarh * abs(q)) * dt_h
                + (self.startup_cost if started else 0.0))
        return DeviceOutput(p, q, math.nan, 0.0, self.committed, cost, self.time_in_state_s)

    def reading(self) -> DeviceOutput:
        return DeviceOutput(self.p_prev, self.q_prev, math.nan, 0.0, self.committed, 0.0,
                            self.time_in_state_s)


def add_generator(
    b: pyo.Block,
    time: Sequence[int],
    dt_h: float,
    spec: GeneratorType,
    *,
    p_cap: Any,
    u_init: Any = 0,
    p_init: Any = 0.0,
    must_on: Sequence[Any] | None = None,
    must_off: Sequence[Any] | None = None,
    p_max: float | None = None,
) -> pyo.Block:
    """Fast-ramping generator with commitment (docs/optimization.md §2.2).

    ::

        u_t − u_{t−1} = y_t − z_t,   u ∈ {0, 1},  y, z ∈ [0, 1],  u_{−1} = u^init
        p_t ≤ P̄,  p_t ≤ M u_t,  p_t ≥ π P̄ − π M (1 − u_t)          (min/max output)
        p_t − p_{t−1} ≤ ρ P̄ Δt_min + M y_t                           (ramp up; a start is free)
        p_{t−1} − p_t ≤ ρ P̄ Δt_min + M z_t                           (ramp down; a stop is free)
        Σ_{τ=t−U+1..t} y_τ ≤ u_t,   Σ_{τ=t−D+1..t} z_τ ≤ 1 − u_t      (min up/down time)
        u_t ≥ must_on_t,   u_t ≤ 1 − must_off_t                       (carried-over up/down time)
        −tan φ_lead p_t ≤ q_t ≤ tan φ_lag p_t,  a_t ≥ ±q_t             (power-factor range)
        op_cost = c Σ_t p_t Δt_h + c_q Σ_t a_t Δt_h + C^SU Σ_t y_t

    ``spec`` is the catalog entry. ``P̄ = p_cap``, ``π = p_min_frac``, ``ρ =
    ramp_frac_per_min``, ``Δt_min = 60 Δt_h``,
    ``U = ⌈min_up_s / Δt⌉``, ``D = ⌈min_down_s / Δt⌉`` steps, ``M = p_max``. ``must_on`` /
    ``must_off`` (one value per step, numbers or mutable Params, default 0) carry the minimum
    up/down time of a state that started before the horizon; see :func:`carried_min_time`.

    Only the commitment ``u`` is declared binary: the start and stop indicators are integral
    at every integral ``u``. The min-up row at ``t`` holds ``y_t ≤ u_t`` and the min-down
    row ``z_t ≤ 1 − u_t`` (each window contains ``t``), so ``u_t = 1`` gives ``z_t = 0``
    and ``y_t = u_t − u_{t−1}``, and ``u_t = 0`` gives ``y_t = 0`` and ``z_t = u_{t−1}``.
    Declaring them continuous leaves the feasible set of the MILP unchanged and removes
    two thirds of the block's binaries (BENCHMARKS.md, "Stage II in real time").
    Exposes ``u``, ``y``, ``z``, ``pg``, ``p_mw``, ``q_mvar``, ``q_room_mvar`` (0: no
    fault-time support is modelled for a rotating machine) and ``op_cost``.
    """
    m_big = big_m(p_cap, p_max, "add_generator")
    steps = list(time)
    n = len(steps)
    dt_s = dt_h * 3600.0
    up = max(1, math.ceil(spec.min_up_s / dt_s - 1e-9))
    down = max(1, math.ceil(spec.min_down_s / dt_s - 1e-9))
    ramp = spec.ramp_frac_per_min * dt_h * 60.0
    b.T = pyo.Set(initialize=steps, ordered=True)
    b.u = pyo.Var(b.T, domain=pyo.Binary)
    b.y = pyo.Var(b.T, domain=pyo.UnitInterval)  # integral at integral u (docstring)
    b.z = pyo.Var(b.T, domain=pyo.UnitInterval)
    b.pg = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    pos = {t: k for k, t in enumerate(steps)}
    must_on = list(must_on) if must_on is not None else [0] * n
    must_off = list(must_off) if must_off is not None else [0] * n

    def u_prev(t: int) -> Any:
        return u_init if pos[t] == 0 else b.u[steps[pos[t] - 1]]

    def p_prev(t: int) -> Any:
        return p_init if pos[t] == 0 else b.pg[steps[pos[t] - 1]]

    b.logic = pyo.Constraint(b.T, rule=lambda b, t: b.u[t] - u_prev(t) == b.y[t] - b.z[t])
    b.p_hi = pyo.Constraint(b.T, rule=lambda b, t: b.pg[t] <= p_cap)
    b.p_on = pyo.Constraint(b.T, rule=lambda b, t: b.pg[t] <= m_big * b.u[t])
    b.p_lo = pyo.Constraint(
        b.T,
        rule=lambda b, t: b.pg[t] >= spec.p_min_frac * p_cap - spec.p_min_frac * m_big * (1 - b.u[t]),
    )
    b.ramp_up = pyo.Constraint(
        b.T, rule=lambda b, t: b.pg[t] - p_prev(t) <= ramp * p_cap + m_big * b.y[t]
    )
    b.ramp_down = pyo.Constraint(
        b.T, rule=lambda b, t: p_prev(t) - b.pg[t] <= ramp * p_cap + m_big * b.z[t]
    )
    b.min_up = pyo.Constraint(
        b.T, rule=lambda b, t: sum(b.y[steps[k]] for k in range(max(0, pos[t] - up + 1), pos[t] + 1))
        <= b.u[t]
    )
    b.min_down = pyo.Constraint(
        b.T, rule=lambda b, t: sum(b.z[steps[k]] for k in range(max(0, pos[t] - down + 1), pos[t] + 1))
        <= 1 - b.u[t]
    )
    b.carry_on = pyo.Constraint(b.T, rule=lambda b, t: b.u[t] >= must_on[pos[t]])
    b.carry_off = pyo.Constraint(b.T, rule=lambda b, t: b.u[t] <= 1 - must_off[pos[t]])
    b.p_mw = pyo.Expression(b.T, rule=lambda b, t: b.pg[t])
    lag, lead = spec.q_over_p
    add_reactive_power(b)
    b.q_lag = pyo.Constraint(b.T, rule=lambda b, t: b.q[t] <= lag * b.pg[t])
    b.q_lead = pyo.Constraint(b.T, rule=lambda b, t: -b.q[t] <= lead * b.pg[t])
    b.q_room_mvar = pyo.Expression(b.T, rule=lambda b, t: 0.0)
    b.target_shortfall_mwh = pyo.Expression(expr=0.0)
    b.op_cost = pyo.Expression(
        expr=sum((spec.cost_per_mwh * b.pg[t] + spec.cost_per_mvarh * b.q_abs[t]) * dt_h
                 + spec.startup_cost * b.y[t] for t in b.T)
    )
    return b


def carried_min_time(
    committed: bool, time_in_state_s: float, spec: GeneratorType, dt_s: float, steps: int
) -> tuple[list[int], list[int]]:
    """``(must_on, must_off)`` per horizon step from the state before the horizon.

    A unit on for ``τ`` seconds must stay on for the first ``⌈(min_up_s − τ)/Δt⌉`` steps
    (likewise off / ``min_down_s``).
    """
    on = [0] * steps
    off = [0] * steps
    left_s = (spec.min_up_s if committed else spec.min_down_s) - float(time_in_state_s)
    k = max(0, min(steps, math.ceil(left_s / dt_s - 1e-9))) if math.isfinite(left_s) else 0
    for i in range(k):
        (on if committed else off)[i] = 1
    return on, off


class GeneratorTechnology(Technology):
    """Generators (module docstring). Block state: ``u_init``, ``p_init``, ``must_on[t]``,
    ``must_off[t]`` (nominal: off, free to start). With ``plant_step_s`` the first step's
    output must be reachable within it (:meth:`_first_step_reach`)."""

    name = "generator"
    catalog_type = GeneratorType
    reactive = True

    def device(self, placement: Placement, tech: GeneratorType,
               host_p_mw: float | None = None) -> Generator:
        return Generator(placement, tech)

    def sizes(self, placement: Placement, tech: GeneratorType) -> tuple[float, float]:
        return float(placement.p_mw), 0.0

    def s_mva(self, placement: Placement, tech: GeneratorType) -> float:
        """Nameplate MVA: P̄ at its lowest lagging power factor."""
        return float(placement.p_mw) / tech.pf_lagging_min

    def ramp_mw_per_min(self, tech: GeneratorType, p_mw: float) -> float | None:
        return tech.ramp_mw_per_min_for(p_mw)

    def add_block(self, b: pyo.Block, time: Sequence[int], dt_h: float, tech: GeneratorType, *,
                  p_cap: Any, e_cap: Any = 0.0, p_max: float | None = None,
                  plant_step_s: float | None = None, s_cap: Any = None) -> pyo.Block:
        steps = list(time)
        b.u_init = pyo.Param(mutable=True, initialize=0)
        b.p_init = pyo.Param(mutable=True, initialize=0.0)
        b.must_on = pyo.Param(steps, mutable=True, initialize=0)
        b.must_off = pyo.Param(steps, mutable=True, initialize=0)
        add_generator(b, steps, dt_h, tech, p_cap=p_cap, u_init=b.u_init, p_init=b.p_init,
                      must_on=[b.must_on[t] for t in steps],
                      must_off=[b.must_off[t] for t in steps], p_max=p_max)
        if plant_step_s is not None and plant_step_s < dt_h * 3600.0 - 1e-9:
            self._first_step_reach(b, tech, p_cap, plant_step_s)
        return b

    @staticmethod
    def _first_step_reach(b: pyo.Block, tech: GeneratorType, p_cap: float,
                          plant_step_s: float) -> None:
        """First-step reach: the plant holds the first setpoint from the first co-simulation
        step on, and the unit moves at its own ramp ``R_g`` (:class:`Generator`), so the
        planned first-step output must be reachable within Δt_sim::

            pg_0 − p_init ≤ max(π P̄, R_g Δt_sim/60),     p_init − pg_0 ≤ R_g Δt_sim/60 + P̄ z_0

        (a start may reach its start-up level, a stop ``z_0`` drops to 0 in one step).
        Without it the plan's 5-min mean is reached only after minutes of ramping, at the
        unit's 0.25 MW/min, which alone exceeds a tighter upstream ramp limit.
        """
        r1 = min(tech.ramp_mw_per_min_for(p_cap) * plant_step_s / 60.0, p_cap)
        up = max(tech.p_min_frac * p_cap, r1)
        t0 = b.T.first()
        b.reach_up = pyo.Constraint(expr=b.pg[t0] - b.p_init <= up)
        b.reach_down = pyo.Constraint(expr=b.p_init - b.pg[t0] <= r1 + p_cap * b.z[t0])

    def set_state(self, b: pyo.Block, tech: GeneratorType, state: Any, dt_s: float) -> None:
        b.u_init = 1 if state.committed else 0
        b.p_init = float(state.p_mw) if state.committed else 0.0
        steps = list(b.T)
        on, off = carried_min_time(bool(state.committed), float(state.time_in_state_s),
                                   tech, dt_s, len(steps))
        for k, t in enumerate(steps):
            b.must_on[t] = on[k]
            b.must_off[t] = off[k]


TECHNOLOGY = GeneratorTechnology()
