"""Demand-response FCMs: catalog entry, device physics, Pyomo block (docs/fcm.md).

A curtailable block of the load at its host bus, with a per-event energy budget and payback
of the deferred energy. It can curtail at most the load its host bus carries: 1 MW of DR at a
bus of 60 kW is 60 kW of DR, not a generator. Equations: the device in
:class:`DemandResponse` (docs/cosim.md §4), the block in :func:`add_dr`
(docs/optimization.md §2.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pyomo.environ as pyo
from pydantic import Field, NonNegativeFloat, PositiveFloat

from models.fcm.base import (
    _EPS,
    Device,
    DeviceOutput,
    Placement,
    Technology,
    add_no_reactive,
    big_m,
    finite,
)
from models.schema import StrictModel


class DRType(StrictModel):
    """Demand-response module: a curtailable block of load with an energy budget and payback."""

    technology: Literal["dr"] = "dr"
    p_mw_per_module: PositiveFloat = 0.1
    energy_budget_mwh_per_module: PositiveFloat = 0.2
    payback_frac: float = Field(1.0, ge=0, le=2)
    payback_window_s: PositiveFloat = 3600.0
    cost_per_mwh: NonNegativeFloat = 200.0
    capex_per_module: NonNegativeFloat = 20_000.0
    max_modules: int = Field(10, ge=1)


class DemandResponse(Device):
    """Curtailable load block with a per-event energy budget and payback.

    Curtailment ``d`` (an injection, ``p = d > 0``) is clipped to ``0 ≤ d ≤ min(D̄, L)``,
    with ``L`` the load of the host bus (``host_p_mw``; ``None``: not bounded by it), and
    to the event budget ``Σ_event d Δt_h ≤ B``. Each curtailed MWh adds ``φ`` MWh of
    deferred energy (the debt) that must be paid back as extra consumption (``p < 0``)
    within the payback window ``W`` after the curtailment ended (deadline ``t_due``). When
    the setpoint is ≤ 0 the device pays back at the rate the controller asks for
    (``−p_set``); it pays faster only when the deadline forces it, i.e. when the debt left
    after this step could no longer be cleared at ``D̄`` in the time left::

        payback = min(D̄, debt/Δt_h, max(−p_set, (debt − D̄·max(0, t_due − t − Δt)/3600) / Δt_h))

    The event ends (its curtailed energy resets to 0) when the debt is cleared.
    Cost = ``c · d · Δt_h``.
    """

    def __init__(self, placement: Placement, tech: DRType, host_p_mw: float | None = None) -> None:
        self.label = placement.label
        self.p_max, self.budget_mwh = TECHNOLOGY.sizes(placement, tech)
        self.d_max = self.p_max
        if host_p_mw is not None:
            self.set_host_load(host_p_mw)
        self.payback_frac = tech.payback_frac
        self.window_s = tech.payback_window_s
        self.cost_per_mwh = tech.cost_per_mwh
        self.event_mwh = 0.0
        self.debt_mwh = 0.0
        self.since_curtail_s = 0.0

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        p_set = finite(p_set_mw)
        cost = 0.0
        if p_set > _EPS:
            d = min(p_set, self.d_max, max(self.budget_mwh - self.event_mwh, 0.0) / dt_h)
        else:
            d = 0.0
        if d > _EPS:
            self.event_mwh += d * dt_h
            self.debt_mwh += self.payback_frac * d * dt_h
            self.since_curtail_s = 0.0
            cost = self.cost_per_mwh * d * dt_h
            p = d
        else:
            self.since_curtail_s += dt_s
            p = 0.0
            if self.debt_mwh > _EPS:
                # seconds from the end of this step to the deadline
                left_s = max(self.window_s - self.since_curtail_s, 0.0)
                forced = (self.debt_mwh - self.p_max * left_s / 3600.0) / dt_h
                rate = min(max(-p_set, forced, 0.0), self.p_max, self.debt_mwh / dt_h)
                self.debt_mwh -= rate * dt_h
                p = -rate
            if self.debt_mwh <= 1e-9:
                self.debt_mwh = 0.0
                self.event_mwh = 0.0
        return DeviceOutput(p, 0.0, math.nan, self.event_mwh, False, cost, debt_mwh=self.debt_mwh)

    def reading(self) -> DeviceOutput:
        return DeviceOutput(0.0, 0.0, math.nan, self.event_mwh, False, 0.0,
                            debt_mwh=self.debt_mwh)

    def set_host_load(self, p_mw: float) -> None:
        """``L``: the curtailment is at most ``min(D̄, L)`` from the next step on."""
        x = float(p_mw)
        self.d_max = max(0.0, min(self.p_max, x)) if math.isfinite(x) else self.p_max


def add_dr(
    b: pyo.Block,
    time: Sequence[int],
    dt_h: float,
    spec: DRType,
    *,
    p_cap: Any,
    e_cap: Any,
    e_used_init: Any = 0.0,
    debt_init: Any = 0.0,
    p_max: float | None = None,
) -> pyo.Block:
    """Demand response: curtailment with an event energy cap and payback (docs §2.3).

    ::

        0 ≤ d_t ≤ D̄,   0 ≤ r_t ≤ D̄,   d_t ≤ M w_t,   r_t ≤ M (1 − w_t),   w_t ∈ {0, 1}
        e^used + Σ_t d_t Δt_h ≤ B                                   (per-event energy cap)
        D_0 = D^init,  D_{t+1} = D_t + φ d_t Δt_h − r_t Δt_h,  D_t ≥ 0   (deferred energy)
        D_{|T|} ≤ φ Σ_{t ≥ |T| − W} d_t Δt_h                          (paid back within W)
        p_t = d_t − r_t
        op_cost = c Σ_t d_t Δt_h

    ``spec`` is the catalog entry (``φ = payback_frac``, the window, ``c``).
    ``D̄ = p_cap``, ``B = e_cap``, ``W = ⌈payback_window_s / Δt⌉`` steps, ``M = p_max``. The
    payback rule asks that all debt except that of the last ``W`` steps' curtailment is
    cleared by the end of the horizon (a horizon-level form of the device's window rule), so
    the payback's consumption is planned inside the horizon. DR has no reactive power
    (``q_mvar = q_room_mvar = 0``). Exposes ``d``, ``r``, ``w``, ``D``, ``p_mw``, ``op_cost`` and ``host_draw_mw[t] = d_t``, what the block takes off its
    host bus's load: the horizon problem bounds it by that load
    (:class:`controllers.horizon.HorizonProblem`, ``Σ_{k at j} d_kt ≤ L_jt``).
    """
    m_big = big_m(p_cap, p_max, "add_dr")
    steps = list(time)
    n = len(steps)
    window = max(1, math.ceil(spec.payback_window_s / (dt_h * 3600.0) - 1e-9))
    b.T = pyo.Set(initialize=steps, ordered=True)
    b.TD = pyo.Set(initialize=list(range(n + 1)), ordered=True)
    b.d = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.r = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.w = pyo.Var(b.T, domain=pyo.Binary)
    b.D = pyo.Var(b.TD, domain=pyo.NonNegativeReals)
    pos = {t: k for k, t in enumerate(steps)}

    b.d_cap = pyo.Constraint(b.T, rule=lambda b, t: b.d[t] <= p_cap)
    b.r_cap = pyo.Constraint(b.T, rule=lambda b, t: b.r[t] <= p_cap)
    b.d_mode = pyo.Constraint(b.T, rule=lambda b, t: b.d[t] <= m_big * b.w[t])
    b.r_mode = pyo.Constraint(b.T, rule=lambda b, t: b.r[t] <= m_big * (1 - b.w[t]))
    b.budget = pyo.Constraint(expr=e_used_init + sum(b.d[t] * dt_h for t in b.T) <= e_cap)
    b.debt_start = pyo.Constraint(expr=b.D[0] == debt_init)
    b.debt = pyo.Constraint(
        b.T,
        rule=lambda b, t: b.D[pos[t] + 1]
        == b.D[pos[t]] + spec.payback_frac * b.d[t] * dt_h - b.r[t] * dt_h,
    )
    b.payback = pyo.Constraint(
        expr=b.D[n] <= spec.payback_frac * sum(b.d[steps[k]] * dt_h for k in range(max(0, n - window), n))
    )
    b.p_mw = pyo.Expression(b.T, rule=lambda b, t: b.d[t] - b.r[t])
    b.host_draw_mw = pyo.Expression(b.T, rule=lambda b, t: b.d[t])
    add_no_reactive(b)
    b.target_shortfall_mwh = pyo.Expression(expr=0.0)
    b.op_cost = pyo.Expression(expr=spec.cost_per_mwh * sum(b.d[t] * dt_h for t in b.T))
    return b


class DRTechnology(Technology):
    """DR (module docstring). Block state: ``e_used`` (MWh curtailed this event) and
    ``debt_init`` (MWh to pay back), both nominally 0. The plant device is bounded by the
    host bus's load given to :meth:`device`; the block's ``host_draw_mw`` is bounded by the
    horizon problem."""

    name = "dr"
    catalog_type = DRType
    energy_name = "energy budget per event"

    def e_mwh_per_module(self, tech: DRType) -> float:
        return float(tech.energy_budget_mwh_per_module)

    def device(self, placement: Placement, tech: DRType,
               host_p_mw: float | None = None) -> DemandResponse:
        return DemandResponse(placement, tech, host_p_mw)

    def add_block(self, b: pyo.Block, time: Sequence[int], dt_h: float, tech: DRType, *,
                  p_cap: Any, e_cap: Any, p_max: float | None = None,
                  plant_step_s: float | None = None, s_cap: Any = None) -> pyo.Block:
        b.e_used = pyo.Param(mutable=True, initialize=0.0)
        b.debt_init = pyo.Param(mutable=True, initialize=0.0)
        return add_dr(b, time, dt_h, tech, p_cap=p_cap, e_cap=e_cap,
                      e_used_init=b.e_used, debt_init=b.debt_init, p_max=p_max)

    def set_state(self, b: pyo.Block, tech: DRType, state: Any, dt_s: float) -> None:
        b.e_used = float(state.soc_mwh)
        b.debt_init = float(state.debt_mwh)


TECHNOLOGY = DRTechnology()
