"""Physics of the Flexible Capacity Modules (FCMs): the plant that FCMSim steps.

Each device takes a setpoint, clips it to what it can physically deliver over one step of
length Δt (seconds, given by the caller, never assumed), updates its state and reports what
it delivered. No mosaik, no solver: a device is usable and testable on its own.

Sign convention (docs/conventions.md): ``p_mw`` > 0 is an injection into the grid
(discharge, generation, load reduction); < 0 is consumption (charging, DR payback).

Equations (symbols of docs/cosim.md §4):

* Storage: ``E_{t+1} = E_t + η_c P^c Δt_h − P^d Δt_h / η_d`` with ``P = P^d − P^c``,
  ``E_min ≤ E ≤ E_max``, ``|P| ≤ P̄``, optionally ``|P_t − P_{t−1}| ≤ R Δt``.
* Generator: ``u ∈ {0,1}``, ``u P_min ≤ P ≤ u P̄``, ``|P_t − P_{t−1}| ≤ R Δt`` (a start may
  jump to ``max(P_min, R Δt)``), minimum up and down times, start-up cost on ``0 → 1``.
* DR: ``0 ≤ d ≤ D̄``, ``Σ_event d Δt_h ≤ B``, deferred energy ``φ Σ d Δt_h`` paid back
  (``p < 0``) within the payback window after curtailment ends.

``Δt_h = Δt / 3600`` converts a step in seconds to hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.fcm_catalog import DRType, FCMType, GeneratorType, Placement, StorageType

_EPS = 1e-12


@dataclass(frozen=True)
class DeviceOutput:
    """What a device delivered over one step and its state at the end of the step.

    ``soc`` is NaN for non-storage devices; ``soc_mwh`` is the stored energy (storage) or the
    energy curtailed in the current event (DR); ``committed`` is the generator's on/off state
    (False for other kinds); ``cost`` is the operating cost of this step in $;
    ``time_in_state_s`` is the generator's time since its last start or stop; ``debt_mwh`` is
    the DR energy still to be paid back.
    """

    p_mw: float
    q_mvar: float
    soc: float
    soc_mwh: float
    committed: bool
    cost: float
    time_in_state_s: float = 0.0
    debt_mwh: float = 0.0


class Storage:
    """Battery or long-duration storage with charge/discharge efficiencies.

    Energy balance over a step of Δt seconds (Δt_h = Δt/3600)::

        E_{t+1} = E_t + η_c · P^c · Δt_h − P^d · Δt_h / η_d,   P = P^d − P^c

    Only one of P^c, P^d is non-zero in a step (the sign of the setpoint chooses). The
    delivered power is the setpoint clipped, in this order, to the power rating
    ``|P| ≤ P̄``, the ramp limit ``|P − P_prev| ≤ R·Δt`` (if the type has one), and the
    energy bounds: discharge ``P ≤ (E − E_min) η_d / Δt_h``, charge
    ``−P ≤ (E_max − E) / (η_c Δt_h)``. The energy bound wins over the ramp limit: a store
    cannot deliver energy it does not hold. Reactive power is limited by the inverter
    rating ``|Q| ≤ sqrt(P̄² − P²)``. Operating cost = ``c · |P| · Δt_h`` (throughput).
    """

    kind_technology = "storage"

    def __init__(self, placement: Placement, tech: StorageType) -> None:
        self.label = placement.label
        self.p_max = float(placement.p_mw)
        modules = placement.p_mw / tech.p_mw_per_module
        self.e_max_mwh = float(placement.e_mwh) if placement.e_mwh > 0 else modules * tech.e_mwh_per_module
        self.e_lo = tech.soc_min * self.e_max_mwh
        self.e_hi = tech.soc_max * self.e_max_mwh
        self.eta_c = tech.eta_charge
        self.eta_d = tech.eta_discharge
        self.ramp_mw_per_s = tech.ramp_mw_per_s
        self.cost_per_mwh = tech.cost_per_mwh
        self.e_mwh = min(max(tech.soc_init * self.e_max_mwh, self.e_lo), self.e_hi)
        self.p_prev = 0.0

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        p = _finite(p_set_mw)
        p = min(max(p, -self.p_max), self.p_max)
        if self.ramp_mw_per_s is not None:
            r = self.ramp_mw_per_s * dt_s
            p = min(max(p, self.p_prev - r), self.p_prev + r)
        if p > 0:
            p = min(p, max(self.e_mwh - self.e_lo, 0.0) * self.eta_d / dt_h)
            self.e_mwh -= p * dt_h / self.eta_d
        elif p < 0:
            p = max(p, -max(self.e_hi - self.e_mwh, 0.0) / (self.eta_c * dt_h))
            self.e_mwh += -p * self.eta_c * dt_h
        # round-off must not push the state outside its bounds
        self.e_mwh = min(max(self.e_mwh, self.e_lo), self.e_hi)
        q_room = math.sqrt(max(self.p_max ** 2 - p ** 2, 0.0))
        q = min(max(_finite(q_set_mvar), -q_room), q_room)
        self.p_prev = p
        soc = self.e_mwh / self.e_max_mwh if self.e_max_mwh > 0 else math.nan
        return DeviceOutput(p, q, soc, self.e_mwh, False, self.cost_per_mwh * abs(p) * dt_h)


class Generator:
    """Fast-ramping generator with unit commitment.

    Commitment ``u``: a positive setpoint asks for ``u = 1``, a setpoint ≤ 0 for ``u = 0``.
    A start is allowed only after the unit has been off for ``min_down_s``, a stop only
    after it has run for ``min_up_s``; otherwise the commitment is held. When committed::

        P_min ≤ P ≤ P̄,   |P_t − P_{t−1}| ≤ R · Δt        (R = ramp_mw_per_min_for(P̄)/60 MW/s)

    A start may reach ``max(P_min, R·Δt)`` in its first step (start-up trajectory); a stop
    takes the output to 0 in one step (shut-down). A held-on unit asked for less than
    ``P_min`` runs at ``P_min``. Cost = ``c · P · Δt_h + C_su · [start]``.
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
        self.time_in_state_s = math.inf  # off "forever": a start is allowed at once
        self.p_prev = 0.0

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        p_set = _finite(p_set_mw)
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
        self.p_prev = p
        cost = self.cost_per_mwh * p * dt_h + (self.startup_cost if started else 0.0)
        return DeviceOutput(p, 0.0, math.nan, 0.0, self.committed, cost, self.time_in_state_s)


class DemandResponse:
    """Curtailable load block with a per-event energy budget and payback.

    Curtailment ``d`` (an injection, ``p = d > 0``) is clipped to ``0 ≤ d ≤ D̄`` and to the
    event budget ``Σ_event d Δt_h ≤ B``. Each curtailed MWh adds ``φ`` MWh of deferred
    energy (the debt) that must be paid back as extra consumption (``p < 0``) within the
    payback window ``W`` after the curtailment ended (deadline ``t_due``). When the setpoint
    is ≤ 0 the device pays back at the rate the controller asks for (``−p_set``); it pays
    faster only when the deadline forces it, i.e. when the debt left after this step could
    no longer be cleared at ``D̄`` in the time left::

        payback = min(D̄, debt/Δt_h, max(−p_set, (debt − D̄·max(0, t_due − t − Δt)/3600) / Δt_h))

    The event ends (its curtailed energy resets to 0) when the debt is cleared.
    Cost = ``c · d · Δt_h``.
    """

    def __init__(self, placement: Placement, tech: DRType) -> None:
        self.label = placement.label
        self.p_max = float(placement.p_mw)
        modules = placement.p_mw / tech.p_mw_per_module
        self.budget_mwh = (
            float(placement.e_mwh) if placement.e_mwh > 0 else modules * tech.energy_budget_mwh_per_module
        )
        self.payback_frac = tech.payback_frac
        self.window_s = tech.payback_window_s
        self.cost_per_mwh = tech.cost_per_mwh
        self.event_mwh = 0.0
        self.debt_mwh = 0.0
        self.since_curtail_s = 0.0

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        p_set = _finite(p_set_mw)
        cost = 0.0
        if p_set > _EPS:
            d = min(p_set, self.p_max, max(self.budget_mwh - self.event_mwh, 0.0) / dt_h)
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


Device = Storage | Generator | DemandResponse


def make_device(placement: Placement, tech: FCMType) -> Device:
    """The device for a placement and its catalog type (chosen by ``tech.technology``)."""
    if isinstance(tech, StorageType):
        return Storage(placement, tech)
    if isinstance(tech, GeneratorType):
        return Generator(placement, tech)
    if isinstance(tech, DRType):
        return DemandResponse(placement, tech)
    raise TypeError(f"unknown FCM technology {type(tech).__name__}")


def _finite(x: float) -> float:
    """A NaN or missing setpoint means 'no request' (0 MW)."""
    x = float(x) if x is not None else 0.0
    return x if math.isfinite(x) else 0.0
