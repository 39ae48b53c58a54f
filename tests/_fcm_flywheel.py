"""An FCM technology added without touching the package (docs/fcm.md): a flywheel.

A flywheel stores energy in a spinning mass. It charges and discharges through one
converter of efficiency η each way, and loses a fraction σ of its stored energy per hour to
friction (its standing loss; 5-20 %/h for steel rotors)::

    E_{t+1} = (1 − σ Δt_h) E_t + η P^c_t Δt_h − P^d_t Δt_h / η,     0 ≤ P^c, P^d ≤ P̄,
    0 ≤ E ≤ Ē

It is switched on by ``DCSHOCK_FCM_MODULES=_fcm_flywheel`` (with ``tests/`` on the path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pyomo.environ as pyo
from pydantic import Field, NonNegativeFloat, PositiveFloat

from models.fcm.base import Device, DeviceOutput, Placement, Technology, big_m, finite
from models.schema import StrictModel


class FlywheelType(StrictModel):
    """A flywheel module: power, energy, converter efficiency, standing loss per hour."""

    technology: Literal["flywheel"] = "flywheel"
    p_mw_per_module: PositiveFloat = 0.1
    e_mwh_per_module: PositiveFloat = 0.025
    eta: float = Field(0.95, gt=0, le=1)
    standing_loss_per_h: float = Field(0.1, ge=0, lt=1)
    capex_per_module: NonNegativeFloat = 50_000.0
    cost_per_mwh: NonNegativeFloat = 2.0
    max_modules: int = Field(4, ge=1)


class Flywheel(Device):
    """The device: the set-point clipped to ``±P̄`` and to the energy the rotor holds (or
    has room for) after this step's standing loss (module docstring)."""

    def __init__(self, placement: Placement, tech: FlywheelType) -> None:
        self.label = placement.label
        self.p_max, self.e_max = TECHNOLOGY.sizes(placement, tech)
        self.eta, self.loss = tech.eta, tech.standing_loss_per_h
        self.cost_per_mwh = tech.cost_per_mwh
        self.e_mwh = 0.5 * self.e_max

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        kept = (1.0 - self.loss * dt_h) * self.e_mwh
        p = min(max(finite(p_set_mw), -self.p_max), self.p_max)
        if p > 0:
            p = min(p, kept * self.eta / dt_h)
            self.e_mwh = kept - p * dt_h / self.eta
        else:
            p = max(p, -(self.e_max - kept) / (self.eta * dt_h))
            self.e_mwh = kept - p * self.eta * dt_h
        self.e_mwh = min(max(self.e_mwh, 0.0), self.e_max)
        return DeviceOutput(p, 0.0, self.e_mwh / self.e_max, self.e_mwh, False,
                            self.cost_per_mwh * abs(p) * dt_h)

    def reading(self) -> DeviceOutput:
        return DeviceOutput(0.0, 0.0, self.e_mwh / self.e_max, self.e_mwh, False, 0.0)


class FlywheelTechnology(Technology):
    """The flywheel's catalog entry, sizing, device, block and measurement mapping."""

    name = "flywheel"
    catalog_type = FlywheelType

    def e_mwh_per_module(self, tech: FlywheelType) -> float:
        return float(tech.e_mwh_per_module)

    def device(self, placement: Placement, tech: FlywheelType,
               host_p_mw: float | None = None) -> Flywheel:
        return Flywheel(placement, tech)

    def add_block(self, b: pyo.Block, time: Sequence[int], dt_h: float, tech: FlywheelType, *,
                  p_cap: Any, e_cap: Any, p_max: float | None = None,
                  plant_step_s: float | None = None, s_cap: Any = None) -> pyo.Block:
        """The module docstring's balance over the horizon, with a binary against charging
        and discharging at once (big-M ``p_max``), from the measured energy ``e_init``."""
        m_big = big_m(p_cap, p_max, "flywheel")
        steps = list(time)
        b.T = pyo.Set(initialize=steps, ordered=True)
        b.TE = pyo.RangeSet(0, len(steps))
        b.e_init = pyo.Param(mutable=True, initialize=0.5 * e_cap if isinstance(e_cap, (int, float)) else 0.0)
        b.pc = pyo.Var(b.T, domain=pyo.NonNegativeReals)
        b.pd = pyo.Var(b.T, domain=pyo.NonNegativeReals)
        b.u = pyo.Var(b.T, domain=pyo.Binary)
        b.E = pyo.Var(b.TE, domain=pyo.NonNegativeReals)
        pos = {t: k for k, t in enumerate(steps)}
        keep = 1.0 - tech.standing_loss_per_h * dt_h
        b.e_start = pyo.Constraint(expr=b.E[0] == b.e_init)
        b.balance = pyo.Constraint(b.T, rule=lambda b, t: b.E[pos[t] + 1] == keep * b.E[pos[t]]
                                   + tech.eta * b.pc[t] * dt_h - b.pd[t] * dt_h / tech.eta)
        b.e_hi = pyo.Constraint(b.T, rule=lambda b, t: b.E[pos[t] + 1] <= e_cap)
        b.pc_cap = pyo.Constraint(b.T, rule=lambda b, t: b.pc[t] <= p_cap)
        b.pd_cap = pyo.Constraint(b.T, rule=lambda b, t: b.pd[t] <= p_cap)
        b.pd_mode = pyo.Constraint(b.T, rule=lambda b, t: b.pd[t] <= m_big * b.u[t])
        b.pc_mode = pyo.Constraint(b.T, rule=lambda b, t: b.pc[t] <= m_big * (1 - b.u[t]))
        b.p_mw = pyo.Expression(b.T, rule=lambda b, t: b.pd[t] - b.pc[t])
        b.target_shortfall_mwh = pyo.Expression(expr=0.0)
        b.op_cost = pyo.Expression(expr=tech.cost_per_mwh * sum((b.pc[t] + b.pd[t]) * dt_h for t in b.T))
        return b

    def set_state(self, b: pyo.Block, tech: FlywheelType, state: Any, dt_s: float) -> None:
        b.e_init = float(state.soc_mwh)


TECHNOLOGY = FlywheelTechnology()
