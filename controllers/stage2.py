"""Stage II: the horizon dispatch MILP and its rolling-horizon driver (docs/optimization.md §3).

:class:`Stage2Model` is one horizon MILP: the LinDistFlow block (:mod:`controllers.network`)
plus one FCM block per placement (:mod:`controllers.blocks`), initial device states, a
forecast of campus and background loads, and the substation import schedule. Objective
(DESIGN.md §3), each term a named ``Expression`` in ``model.term``::

    min  w_imb Σ_t (e⁺_t + e⁻_t) Δt_h            imbalance,  P^sub_t − P^sched_t = e⁺_t − e⁻_t
       + w_ramp Σ_t ρ_t Δt_h                      ramp violation beyond R Δt
       + w_uns Σ_{j,t} s_jt Δt_h                  unserved energy
       + w_rest Σ_t z_t                           restoration: z_t ∈ {0,1}, M z_t ≥ Σ slacks_t
       + w_v Σ σ/(2V_lim) + w_th Σ τ              voltage and thermal slack
       + w_op Σ_k op_cost_k                       FCM operating cost
       + w_soc Σ_storage e^short                  storage below its end-of-horizon target

:class:`RollingMPC` keeps one :class:`Stage2Model` and one persistent HiGHS instance alive;
each ``step(measurement)`` only updates mutable parameters, warm-starts from the previous
solution and solves with a time limit. **It solves on every call**: holding the setpoints
between re-solves (every ``controller.resolve_every_steps`` co-simulation steps) is done by
:class:`sim.controller_sim.ControllerSim`, which calls ``step`` only when a re-solve is due.

Safe fallback: when the MILP is infeasible, stops without an incumbent, or the solver (or
the update) raises, ``step`` returns the answer of a :class:`controllers.baseline.RuleController`
(schedule and ramp holding by generation and storage, DR in sags; its step is the re-solve
period) with ``fallback=True`` and ``status="fallback:<reason>"`` (``infeasible``,
``time_limit``, ``error``, ``no-measurement`` for a diverged power flow). Every fallback is
logged and counted in ``fallback_counts``; ``step`` never raises. A time-out with an
incumbent is used as it is, with status ``"feasible"``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyomo.environ as pyo

from controllers.baseline import RuleController, RuleParams
from controllers.blocks import (
    DRSpec,
    GeneratorSpec,
    StorageSpec,
    add_dr,
    add_generator,
    add_storage,
    carried_min_time,
    placement_sizes,
)
from controllers.config import ObjectiveWeights
from controllers.forecast import Forecaster, PersistenceForecaster, make_forecaster
from controllers.interface import Dispatch, Measurement
from controllers.network import (
    CompactNetwork,
    NetworkParams,
    OperatingPoint,
    build_network,
    lossless_operating_point,
    set_operating_point,
)
from controllers.solve import SolveOutcome, SolveStatus, make_solver, solve
from models.errors import ScenarioError
from models.fcm_catalog import DRType, FCMType, GeneratorType, Placement, StorageType
from models.network import FeederData

logger = logging.getLogger(__name__)

#: objective term → the ObjectiveWeights field that weights it
TERM_WEIGHTS: dict[str, str] = {
    "imbalance_mwh": "imbalance_per_mwh",
    "ramp_violation_mwh": "ramp_violation_per_mwh",
    "unserved_mwh": "unserved_per_mwh",
    "restoration_steps": "restoration_per_step",
    "voltage_slack_pu": "voltage_slack_per_pu_step",
    "thermal_slack_mva": "thermal_slack_per_mva_step",
    "operating_cost": "operating_cost_scale",
    "soc_shortfall_mwh": "soc_shortfall_per_mwh",
}


@dataclass(frozen=True)
class CampusSite:
    """A campus as the controller knows it: name, POI bus and ``tan φ = q/p``."""

    name: str
    bus: str
    tan_phi: float = 0.0
    capacity_mw: float = 0.0


@dataclass(frozen=True)
class MPCParams:
    """Plain-number parameters of the Stage-II MILP and its driver.

    ``resolve_period_s`` is the time between ``step`` calls (``resolve_every_steps ×
    simulation.step_s``); it is the step of the fallback rule controller.
    ``big_m_abnormal`` bounds the sum of slacks at one step (restoration indicator) in the
    branch form; the compact form computes a bound of its own at every solve
    (:meth:`controllers.network.CompactNetwork._set_abnormal_bound`).
    ``allow_shedding``: plan with load shedding (unserved energy). Off by default: the plant
    has no shedding actuator, so a plan that sheds would not be the plan that runs; the
    unserved-energy term is then 0 in the plan and measured in the plant (KPIs).
    ``screen_load_factor``: thermal screening (:func:`controllers.network.thermal_screen`)
    assuming background loads up to this multiple of nominal; ``None`` keeps every polygon.
    ``network_form``: ``"compact"`` (:class:`controllers.network.CompactNetwork`, the same
    model in superposition form, no flow variables; the default, it is several times faster)
    or ``"branch"`` (:func:`controllers.network.build_network`, needed for shedding).
    ``apply_step_s``: the time within which the plant reaches the first setpoints (the
    co-simulation step Δt_sim); the change from the measured import to the first horizon
    step is then held to ``R·Δt_sim`` (soft, first-step ramp row), not ``R·Δt`` of a whole
    horizon step. ``None`` (or ≥ ``horizon_step_s``): no extra row.
    ``first_step_ramp_frac``: a, the share of ``R·Δt_sim`` the planned first step may use;
    the rest is left for the campus change the controller cannot see (it measures one step
    late and holds its setpoints between re-solves), as the rule controller does.
    """

    horizon_steps: int = 24
    horizon_step_s: float = 300.0
    time_limit_s: float = 5.0
    mip_gap: float = 0.01
    solver: str = "appsi_highs"
    linearize_at: str = "ac"
    weights: ObjectiveWeights = ObjectiveWeights()
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    ramp_limit_mw_per_min: float = 0.2
    loading_frac: float = 1.0
    campuses: tuple[CampusSite, ...] = ()
    resolve_period_s: float = 300.0
    big_m_abnormal: float = 10.0
    warmstart: bool = True
    allow_shedding: bool = False
    screen_load_factor: float | None = 1.5
    network_form: str = "compact"
    apply_step_s: float | None = None
    first_step_ramp_frac: float = 0.5
    trim: str = "ramp"
    trim_ramp_frac: float = 0.5
    network_rows: str = "auto"

    @property
    def dt_h(self) -> float:
        return self.horizon_step_s / 3600.0

    @classmethod
    def from_scenario(cls, scenario: Any) -> "MPCParams":
        c = scenario.controller
        return cls(
            horizon_steps=c.horizon_steps, horizon_step_s=float(c.horizon_step_s),
            time_limit_s=float(c.time_limit_s), mip_gap=float(c.mip_gap), solver=c.solver,
            linearize_at=c.linearize_at, weights=c.weights,
            v_min_pu=scenario.grid.v_min_pu, v_max_pu=scenario.grid.v_max_pu,
            ramp_limit_mw_per_min=scenario.grid.ramp_limit_mw_per_min,
            loading_frac=scenario.grid.max_loading_pct / 100.0,
            campuses=tuple(CampusSite(cp.name, str(cp.bus), _tan_phi(cp.power_factor),
                                      float(cp.capacity_mw)) for cp in scenario.campus),
            resolve_period_s=float(c.resolve_every_steps * scenario.simulation.step_s),
            apply_step_s=float(scenario.simulation.step_s),
            trim=c.trim, trim_ramp_frac=float(c.trim_ramp_frac), network_rows=c.network_rows,
        )


#: ``network_rows = "auto"`` reduces the compact form's rows above this many buses.
AUTO_GROUP_BUSES = 300


def resolve_network_rows(mode: str, n_buses: int) -> str:
    """``"full"`` or ``"reduced"`` for ``controller.network_rows`` (``"auto"``: full up to
    :data:`AUTO_GROUP_BUSES` buses, reduced above, docs/optimization.md §1.5)."""
    if mode == "auto":
        return "reduced" if n_buses > AUTO_GROUP_BUSES else "full"
    return mode


def _tan_phi(pf: float) -> float:
    return math.sqrt(max(0.0, 1.0 - pf * pf)) / pf


def _fit(values: Any, n: int, default: float) -> np.ndarray:
    """``values`` as ``n`` floats: truncated, or padded with its last value (or default)."""
    arr = np.asarray(values if values is not None else [], dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return np.full(n, float(default))
    if arr.size >= n:
        return arr[:n].copy()
    return np.concatenate([arr, np.full(n - arr.size, arr[-1])])


@dataclass(frozen=True)
class HorizonInputs:
    """What a measurement and a forecast mean for the horizon: bus loads (MW/Mvar per step,
    + = consumption, FCMs excluded), import schedule, operating point and source |V|²."""

    p_load: dict[str, np.ndarray]
    q_load: dict[str, np.ndarray]
    p_sched: np.ndarray
    op: OperatingPoint | None
    v_source_sq: float


def horizon_inputs(feeder: FeederData, placements: Sequence[Placement], params: MPCParams,
                   measurement: Measurement, campus_mw: Mapping[str, Sequence[float]]) -> HorizonInputs:
    """Loads over the horizon: nominal background loads × (measured background / nominal
    total, held), plus each campus's forecast at its POI (``q = p tan φ``); the schedule
    padded or cut to the horizon; the operating point for ``linearize_at="ac"``: the
    measured voltages and branch flows (else flows estimated as the downstream sums of the
    loads, and |V| = 1 when no voltage is usable), with the loads they were measured at
    (measured background and campus draw, net of the measured FCM output), so that the
    network model is calibrated to the measured state (docs/optimization.md §1.7)."""
    H = params.horizon_steps
    load = feeder.load_by_bus
    nominal_total = sum(ld.p_mw for ld in feeder.loads)
    bg = measurement.background_p_mw
    scale = bg / nominal_total if bg is not None and nominal_total > 0 and math.isfinite(bg) else 1.0
    p_load = {j: np.full(H, (load[j].p_mw if j in load else 0.0) * scale) for j in feeder.bus_names}
    q_load = {j: np.full(H, (load[j].q_mvar if j in load else 0.0) * scale) for j in feeder.bus_names}
    for cp in params.campuses:
        now = measurement.campus_p_mw.get(cp.name, 0.0)
        series = _fit(campus_mw.get(cp.name), H, now)
        p_load[cp.bus] = p_load[cp.bus] + series
        q_load[cp.bus] = q_load[cp.bus] + series * cp.tan_phi
    sched = _fit(measurement.p_sched_mw, H, measurement.sub_p_mw)
    v_src = measurement.bus_v_pu.get(feeder.source_bus)
    v_src_sq = float(v_src) ** 2 if v_src and math.isfinite(v_src) else 1.0
    op = None
    if params.linearize_at == "ac":
        # no usable voltages (first step, diverged flow): |V| = 1 with the load flows
        ok = measurement.converged and measurement.bus_v_pu
        v = {k: float(x) for k, x in measurement.bus_v_pu.items()
             if math.isfinite(x) and x > 0} if ok else {}
        p_now = {j: (load[j].p_mw if j in load else 0.0) * scale for j in feeder.bus_names}
        q_now = {j: (load[j].q_mvar if j in load else 0.0) * scale for j in feeder.bus_names}
        for cp in params.campuses:
            now = float(measurement.campus_p_mw.get(cp.name, 0.0))
            p_now[cp.bus] += now
            q_now[cp.bus] += now * cp.tan_phi
        for pl in placements:
            st = measurement.fcm.get(pl.label)
            if st is not None:
                p_now[pl.bus] = p_now.get(pl.bus, 0.0) - float(st.p_mw)
                q_now[pl.bus] = q_now.get(pl.bus, 0.0) - float(st.q_mvar)
        if ok and measurement.branch_p_mw:
            op = OperatingPoint(v, dict(measurement.branch_p_mw), dict(measurement.branch_q_mvar),
                                p_now, q_now)
        else:
            op = replace(lossless_operating_point(feeder, v, p_now, q_now),
                         p_load_mw=p_now, q_load_mvar=q_now)
    return HorizonInputs(p_load, q_load, sched, op, v_src_sq)


class Stage2Model:
    """One horizon MILP over ``T = 0..H−1`` (module docstring); built once, updated in place.

    Mutable parameters updated by :meth:`set_state`: the network block's bus loads,
    ``p_sub_prev_mw`` and its base state at the new operating point (compact form) or its
    source voltage and loss coefficients (branch form); ``p_sched_mw[t]``; and per FCM block
    its initial state (``e_init``; ``u_init``, ``p_init``, ``must_on[t]``, ``must_off[t]``;
    ``e_used``, ``debt_init``). ``operating_point`` is where the compact form's
    sensitivities (and the branch form's initial loss coefficients) are taken.
    """

    def __init__(self, feeder: FeederData, placements: Sequence[Placement],
                 catalog: Mapping[str, FCMType], params: MPCParams,
                 operating_point: OperatingPoint | None = None) -> None:
        self.feeder = feeder
        self.operating_point = operating_point
        self.placements = list(placements)
        self.catalog = dict(catalog)
        self.params = params
        self._check(feeder, self.placements, self.catalog, params)
        self.sizes = {pl.label: placement_sizes(pl, self.catalog[pl.kind]) for pl in self.placements}
        self.specs: dict[str, Any] = {}
        self.m = self._build()

    @staticmethod
    def _check(feeder: FeederData, placements: Sequence[Placement],
               catalog: Mapping[str, FCMType], params: MPCParams) -> None:
        """Raise :class:`ScenarioError` for placements or campuses the feeder cannot host."""
        for i, pl in enumerate(placements):
            if pl.kind not in catalog:
                raise ScenarioError("fcm", f"placements[{i}].kind",
                                    f"{pl.kind!r} is not in the catalog; allowed: "
                                    f"{', '.join(sorted(catalog))}")
            if not feeder.has_bus(pl.bus):
                raise ScenarioError("fcm", f"placements[{i}].bus",
                                    f"unknown bus {pl.bus!r} of feeder {feeder.name}")
        for cp in params.campuses:
            if not feeder.has_bus(cp.bus):
                raise ScenarioError("campus", f"{cp.name}.bus",
                                    f"unknown bus {cp.bus!r} of feeder {feeder.name}")
        labels = [pl.label for pl in placements]
        if len(set(labels)) != len(labels):
            raise ScenarioError("fcm", "placements", "two placements share a label; give them names")

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> pyo.ConcreteModel:
        p = self.params
        H = p.horizon_steps
        dt_h = p.dt_h
        T = list(range(H))
        m = pyo.ConcreteModel(name="stage2")
        m.T = pyo.Set(initialize=T, ordered=True)
        m.fcm = pyo.Block([pl.label for pl in self.placements])
        for pl in self.placements:
            self._add_fcm(m.fcm[pl.label], pl, T, dt_h)

        inj: dict[str, list[Any]] = {}
        for pl in self.placements:
            inj.setdefault(pl.bus, []).append(m.fcm[pl.label].p_mw)
        extra: dict[str, float] = {}
        for pl in self.placements:
            extra[pl.bus] = extra.get(pl.bus, 0.0) + self.sizes[pl.label][0]
        for cp in p.campuses:
            extra[cp.bus] = extra.get(cp.bus, 0.0) + cp.capacity_mw * math.sqrt(1 + cp.tan_phi ** 2)
        m.net = pyo.Block()
        net_params = NetworkParams(
            dt_s=p.horizon_step_s, v_min_pu=p.v_min_pu, v_max_pu=p.v_max_pu,
            ramp_limit_mw_per_min=p.ramp_limit_mw_per_min, loading_frac=p.loading_frac,
            allow_shedding=p.allow_shedding, screen_load_factor=p.screen_load_factor,
            network_rows=resolve_network_rows(p.network_rows, len(self.feeder.buses)),
        )
        if p.network_form == "compact" and not p.allow_shedding:
            self.compact: CompactNetwork | None = CompactNetwork(
                m.net, self.feeder, T, net_params, injections=inj, extra_mva=extra,
                operating_point=self.operating_point)
        elif p.network_form in ("compact", "branch"):
            self.compact = None
            build_network(m.net, self.feeder, T, net_params, injections=inj, extra_mva=extra,
                          operating_point=self.operating_point)
        else:
            raise ValueError(f"network_form must be 'compact' or 'branch', got {p.network_form!r}")

        m.p_sched_mw = pyo.Param(m.T, mutable=True, initialize=0.0)
        m.imb_pos = pyo.Var(m.T, domain=pyo.NonNegativeReals)
        m.imb_neg = pyo.Var(m.T, domain=pyo.NonNegativeReals)
        m.imbalance = pyo.Constraint(
            m.T, rule=lambda m, t: m.net.p_sub_mw[t] - m.p_sched_mw[t] == m.imb_pos[t] - m.imb_neg[t]
        )
        m.z = pyo.Var(m.T, domain=pyo.Binary)
        # big-M: the compact form's bound of the step's slacks, updated every solve; the
        # branch form's fixed big_m_abnormal
        big_m = m.net.abnormal_max if self.compact is not None else {t: p.big_m_abnormal for t in T}
        m.restoration = pyo.Constraint(
            m.T, rule=lambda m, t: big_m[t] * m.z[t] >= m.net.abnormal[t]
        )
        # restored for good: once the plan is in normal state it stays there (Σ z counts the
        # steps until the last abnormal one; this also makes the binaries easy to branch on)
        m.restored = pyo.Constraint(
            [t for t in T[1:]], rule=lambda m, t: m.z[t - 1] >= m.z[t]
        )
        storages = [pl.label for pl in self.placements
                    if isinstance(self.catalog[pl.kind], StorageType)]
        ramp_first = self._first_step_ramp(m)
        values = {
            "imbalance_mwh": sum((m.imb_pos[t] + m.imb_neg[t]) * dt_h for t in m.T),
            "ramp_violation_mwh": m.net.ramp_violation_mwh + ramp_first,
            "unserved_mwh": m.net.unserved_mwh,
            "restoration_steps": sum(m.z[t] for t in m.T),
            "voltage_slack_pu": m.net.voltage_slack_pu,
            "thermal_slack_mva": m.net.thermal_slack_mva,
            "operating_cost": sum(m.fcm[k].op_cost for k in m.fcm),
            "soc_shortfall_mwh": sum(m.fcm[k].target_shortfall_mwh for k in storages),
        }
        m.TERMS = pyo.Set(initialize=list(TERM_WEIGHTS), ordered=True)
        m.term = pyo.Expression(m.TERMS, rule=lambda m, k: values[k])
        m.weight = pyo.Param(
            m.TERMS, mutable=True, initialize=lambda m, k: getattr(p.weights, TERM_WEIGHTS[k])
        )
        m.obj = pyo.Objective(expr=sum(m.weight[k] * m.term[k] for k in m.TERMS))
        return m

    def _first_step_ramp(self, m: pyo.ConcreteModel) -> Any:
        """First-step ramp row: the plant applies the first setpoints at once, so the import
        moves from the measured ``P^sub_{−1}`` to ``P^sub_0`` within one co-simulation step
        Δt_sim, not over a horizon step::

            |P^sub_0 − P^sub_{−1}| ≤ a·R·Δt_sim/60 + ρ⁰,   ρ⁰ ≥ 0

        ``ρ⁰`` is held for one co-simulation step, so it adds ``ρ⁰·Δt_sim/3600`` MWh to the
        ramp-violation term (the KPI's definition of the excess). Returns that expression
        (0 when ``apply_step_s`` is unset or not shorter than the horizon step).
        """
        p = self.params
        if (p.apply_step_s is None or p.ramp_limit_mw_per_min is None
                or p.apply_step_s >= p.horizon_step_s):
            return 0.0
        allow = p.first_step_ramp_frac * p.ramp_limit_mw_per_min * p.apply_step_s / 60.0
        m.s_ramp_first = pyo.Var(domain=pyo.NonNegativeReals)
        net = m.net
        m.ramp_first_up = pyo.Constraint(
            expr=net.p_sub_mw[0] - net.p_sub_prev_mw <= allow + m.s_ramp_first)
        m.ramp_first_down = pyo.Constraint(
            expr=net.p_sub_prev_mw - net.p_sub_mw[0] <= allow + m.s_ramp_first)
        return m.s_ramp_first * (p.apply_step_s / 3600.0)

    def _first_step_reach(self, b: pyo.Block, tech: GeneratorType, p_cap: float) -> None:
        """First-step reach of a generator: the plant holds the first setpoint from the first
        co-simulation step on, and the unit moves at its own ramp ``R_g`` (models.devices), so
        the planned first-step output must be reachable within Δt_sim::

            pg_0 − p_init ≤ max(π P̄, R_g Δt_sim/60),     p_init − pg_0 ≤ R_g Δt_sim/60 + P̄ z_0

        (a start may reach its start-up level, a stop ``z_0`` drops to 0 in one step).
        Without it the plan's 5-min mean is reached only after minutes of ramping, at the
        unit's 0.25 MW/min, which alone exceeds a tighter upstream ramp limit.
        """
        p = self.params
        if p.apply_step_s is None or p.apply_step_s >= p.horizon_step_s:
            return
        r1 = min(tech.ramp_mw_per_min_for(p_cap) * p.apply_step_s / 60.0, p_cap)
        up = max(tech.p_min_frac * p_cap, r1)
        b.reach_up = pyo.Constraint(expr=b.pg[0] - b.p_init <= up)
        b.reach_down = pyo.Constraint(expr=b.p_init - b.pg[0] <= r1 + p_cap * b.z[0])

    def _add_fcm(self, b: pyo.Block, pl: Placement, T: list[int], dt_h: float) -> None:
        tech = self.catalog[pl.kind]
        p_cap, e_cap = self.sizes[pl.label]
        if isinstance(tech, StorageType):
            spec = StorageSpec.from_catalog(tech)
            b.e_init = pyo.Param(mutable=True, initialize=tech.soc_init * e_cap)
            b.e_target = pyo.Param(mutable=True, initialize=tech.soc_init * e_cap)
            add_storage(b, T, dt_h, spec, p_cap=p_cap, e_cap=e_cap, e_init=b.e_init,
                        e_target=b.e_target)
        elif isinstance(tech, GeneratorType):
            # ramp per module, as the plant (models.devices) and Stage I
            spec = GeneratorSpec.from_catalog(tech)
            b.u_init = pyo.Param(mutable=True, initialize=0)
            b.p_init = pyo.Param(mutable=True, initialize=0.0)
            b.must_on = pyo.Param(T, mutable=True, initialize=0)
            b.must_off = pyo.Param(T, mutable=True, initialize=0)
            add_generator(b, T, dt_h, spec, p_cap=p_cap, u_init=b.u_init, p_init=b.p_init,
                          must_on=[b.must_on[t] for t in T], must_off=[b.must_off[t] for t in T])
            self._first_step_reach(b, tech, p_cap)
        elif isinstance(tech, DRType):
            spec = DRSpec.from_catalog(tech)
            b.e_used = pyo.Param(mutable=True, initialize=0.0)
            b.debt_init = pyo.Param(mutable=True, initialize=0.0)
            add_dr(b, T, dt_h, spec, p_cap=p_cap, e_cap=e_cap, e_used_init=b.e_used,
                   debt_init=b.debt_init)
        else:  # pragma: no cover - the catalog is a closed union
            raise TypeError(f"unknown FCM technology {type(tech).__name__}")
        self.specs[pl.label] = spec

    # -- updating ---------------------------------------------------------------------------
    def set_state(self, measurement: Measurement, campus_mw: Mapping[str, Sequence[float]]) -> None:
        """Push a measurement and a campus forecast into the mutable parameters."""
        p = self.params
        m = self.m
        H = p.horizon_steps
        dt_s = p.horizon_step_s
        inp = horizon_inputs(self.feeder, self.placements, p, measurement, campus_mw)
        net = m.net
        steps = list(m.T)
        if self.compact is not None:
            names = self.feeder.bus_names
            self.compact.set_loads(np.array([inp.p_load[j] for j in names]),
                                   np.array([inp.q_load[j] for j in names]))
        else:
            net.p_load_mw.store_values(
                {(j, t): float(inp.p_load[j][k]) for j in net.N for k, t in enumerate(steps)}, check=False)
            net.q_load_mvar.store_values(
                {(j, t): float(inp.q_load[j][k]) for j in net.N for k, t in enumerate(steps)}, check=False)
        m.p_sched_mw.store_values({t: float(inp.p_sched[k]) for k, t in enumerate(steps)}, check=False)
        net.p_sub_prev_mw = float(measurement.sub_p_mw)
        if self.compact is not None:
            self.compact.update(inp.op, inp.v_source_sq)
        else:
            net.v_source_sq = inp.v_source_sq
            set_operating_point(net, self.feeder, inp.op)

        for pl in self.placements:
            b = m.fcm[pl.label]
            st = measurement.fcm.get(pl.label)
            tech = self.catalog[pl.kind]
            if st is None:
                continue
            if isinstance(tech, StorageType):
                b.e_init = float(st.soc_mwh)
            elif isinstance(tech, GeneratorType):
                b.u_init = 1 if st.committed else 0
                b.p_init = float(st.p_mw) if st.committed else 0.0
                on, off = carried_min_time(bool(st.committed), float(st.time_in_state_s),
                                           self.specs[pl.label], dt_s, H)
                for t in m.T:
                    b.must_on[t] = on[t]
                    b.must_off[t] = off[t]
            elif isinstance(tech, DRType):
                b.e_used = float(st.soc_mwh)
                b.debt_init = float(st.debt_mwh)

    # -- reading ----------------------------------------------------------------------------
    def dispatch(self, t: int = 0) -> dict[str, float]:
        """FCM setpoints (MW, + = injection) of horizon step ``t`` of the loaded solution."""
        return {k: _clean(pyo.value(self.m.fcm[k].p_mw[t])) for k in self.labels}

    def schedule(self) -> dict[str, np.ndarray]:
        """FCM setpoints over the whole horizon."""
        return {k: np.array([_clean(pyo.value(self.m.fcm[k].p_mw[t])) for t in self.m.T])
                for k in self.labels}

    def term_values(self) -> dict[str, float]:
        """Value of each named objective term (unweighted) of the loaded solution."""
        return {k: float(pyo.value(self.m.term[k])) for k in self.m.TERMS}

    def predicted_v_pu(self, t: int = 0) -> dict[str, float]:
        if self.compact is not None:
            return self.compact.voltages_pu(t)
        return {j: math.sqrt(max(float(pyo.value(self.m.net.v[j, t])), 0.0)) for j in self.m.net.N}

    def predicted_sub_p_mw(self, t: int = 0) -> float:
        return float(pyo.value(self.m.net.p_sub_mw[t]))

    @property
    def labels(self) -> list[str]:
        return [pl.label for pl in self.placements]

    def n_constraints(self) -> int:
        return sum(1 for _ in self.m.component_data_objects(pyo.Constraint, active=True))


def _clean(x: float | None) -> float:
    if x is None or not math.isfinite(x):
        return 0.0
    return 0.0 if abs(x) < 1e-7 else float(x)


@dataclass
class HorizonResult:
    """One-shot Stage-II result: typed outcome and, when it is usable, the solution."""

    outcome: SolveOutcome
    schedule_mw: dict[str, np.ndarray] = field(default_factory=dict)
    terms: dict[str, float] = field(default_factory=dict)
    predicted_v_pu: dict[str, float] = field(default_factory=dict)
    sub_p_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model: Stage2Model | None = None


def solve_horizon(feeder: FeederData, placements: Sequence[Placement],
                  catalog: Mapping[str, FCMType], params: MPCParams, measurement: Measurement,
                  campus_mw: Mapping[str, Sequence[float]] | None = None) -> HorizonResult:
    """Build, update and solve one horizon MILP (no driver state); never raises on solver
    failure: read ``result.outcome.status``. ``campus_mw`` default: persistence."""
    if campus_mw is None:
        campus_mw = PersistenceForecaster().forecast(measurement, params.horizon_steps,
                                                     params.horizon_step_s)
    op = horizon_inputs(feeder, placements, params, measurement, campus_mw).op
    model = Stage2Model(feeder, placements, catalog, params, operating_point=op)
    model.set_state(measurement, campus_mw)
    outcome = solve(model.m, make_solver(params.solver, params.time_limit_s, params.mip_gap))
    if not outcome.ok:
        return HorizonResult(outcome, model=model)
    return HorizonResult(
        outcome, model.schedule(), model.term_values(), model.predicted_v_pu(),
        np.array([model.predicted_sub_p_mw(t) for t in model.m.T]), model,
    )


class RollingMPC:
    """Stage-II rolling-horizon controller (module docstring): ``step(measurement) -> Dispatch``.

    Solves on every call (the caller decides the re-solve cadence and holds setpoints in
    between; ControllerSim does so every ``resolve_every_steps`` steps). The Pyomo model
    (``self.model.m``) and the persistent solver are created once: with
    ``linearize_at="ac"`` at the first ``step`` (its sensitivities are taken at the first
    measured operating point), with ``"flat"`` in the constructor. After that ``step``
    updates parameters only. Counters: ``solves``, ``fallbacks``, ``fallback_counts`` (by
    reason), ``solve_times_s``, ``builds`` (1 after the first step, never more).
    """

    def __init__(self, feeder: FeederData, placements: Sequence[Placement],
                 catalog: Mapping[str, FCMType], params: MPCParams,
                 forecaster: Forecaster | None = None) -> None:
        self.params = params
        self.feeder = feeder
        self.placements = list(placements)
        self.catalog = dict(catalog)
        self.builds = 0
        self.model: Stage2Model | None = None
        if params.linearize_at != "ac":
            self._build(None)
        else:  # validate the inputs now, build at the first measurement
            Stage2Model._check(feeder, self.placements, self.catalog, params)
        self.forecaster = forecaster or PersistenceForecaster()
        self.solver = make_solver(params.solver, params.time_limit_s, params.mip_gap)
        self.fallback_rule = RuleController(
            feeder, placements, catalog,
            RuleParams(step_s=params.resolve_period_s,
                       ramp_limit_mw_per_min=params.ramp_limit_mw_per_min,
                       v_min_pu=params.v_min_pu),
        )
        # rule 5 of the rule controller, acting every co-simulation step on the held plan
        self.trimmer: RuleController | None = None
        if params.trim == "ramp" and params.apply_step_s is not None:
            self.trimmer = RuleController(
                feeder, placements, catalog,
                RuleParams(step_s=params.apply_step_s,
                           ramp_limit_mw_per_min=params.ramp_limit_mw_per_min,
                           v_min_pu=params.v_min_pu, ramp_use_frac=params.trim_ramp_frac),
            )
        self.plan: Dispatch = Dispatch(p_mw={pl.label: 0.0 for pl in self.placements})
        self.trims = 0
        self.solves = 0
        self.fallbacks = 0
        self.fallback_counts: Counter[str] = Counter()
        self.solve_times_s: list[float] = []
        self.last_outcome: SolveOutcome | None = None
        self._loaded = False

    @classmethod
    def from_scenario(cls, feeder: FeederData, placements: Sequence[Placement],
                      catalog: Mapping[str, FCMType], scenario: Any,
                      forecaster: Forecaster | None = None) -> "RollingMPC":
        if forecaster is None:
            forecaster = make_forecaster(scenario.controller.forecaster, scenario)
        return cls(feeder, placements, catalog, MPCParams.from_scenario(scenario), forecaster)

    def step(self, measurement: Measurement) -> Dispatch:
        t0 = time.perf_counter()
        self.solves += 1
        if not measurement.converged:
            return self._fallback(measurement, "no-measurement", t0)
        try:
            forecast = self.forecaster.forecast(
                measurement, self.params.horizon_steps, self.params.horizon_step_s)
            if self.model is None:
                op = horizon_inputs(self.feeder, self.placements, self.params, measurement,
                                    forecast).op
                self._build(op)
            self.model.set_state(measurement, forecast)
            outcome = solve(self.model.m, self.solver,
                            warmstart=self.params.warmstart and self._loaded)
            if outcome.status is not SolveStatus.ERROR:  # the instance is loaded in HiGHS
                self._after_first_solve()
        except Exception as exc:  # never raise into the co-simulation
            logger.exception("Stage-II update/solve failed at t=%.0f s", measurement.time_s)
            outcome = SolveOutcome(SolveStatus.ERROR, message=str(exc))
        self.last_outcome = outcome
        if not outcome.ok:
            return self._fallback(measurement, outcome.status.value, t0, outcome.message)
        elapsed = time.perf_counter() - t0
        self.solve_times_s.append(elapsed)
        m = self.model
        self.plan = Dispatch(
            p_mw=m.dispatch(0), q_mvar={k: 0.0 for k in m.labels},
            predicted_v_pu=m.predicted_v_pu(0), predicted_sub_p_mw=m.predicted_sub_p_mw(0),
            status=outcome.status.value, solve_s=elapsed, fallback=False, solved=True,
        )
        return self._trimmed(measurement, self.plan)

    def hold(self, measurement: Measurement) -> Dispatch:
        """A co-simulation step between re-solves: the plan of the last ``step``, with the
        ramp guard (``trim = "ramp"``) applied to this step's measurement; no solve."""
        return replace(self._trimmed(measurement, self.plan), status="hold", solve_s=0.0,
                       solved=False, fallback=False)

    def _trimmed(self, measurement: Measurement, plan: Dispatch) -> Dispatch:
        """``plan`` with its storage setpoints corrected by the ramp guard (rule 5 of
        :class:`controllers.baseline.RuleController`); unchanged with ``trim = "none"``."""
        if self.trimmer is None:
            return plan
        try:
            p_mw = self.trimmer.trim(measurement, plan.p_mw)
        except Exception:  # the guard must never take the plan down with it
            logger.exception("ramp guard failed at t=%.0f s; plan applied as solved",
                             measurement.time_s)
            return plan
        if any(abs(p_mw[k] - plan.p_mw.get(k, 0.0)) > 1e-9 for k in p_mw):
            self.trims += 1
        return replace(plan, p_mw=p_mw)

    def _build(self, op: OperatingPoint | None) -> None:
        self.model = Stage2Model(self.feeder, self.placements, self.catalog, self.params,
                                 operating_point=op)
        self.builds += 1

    def _after_first_solve(self) -> None:
        """From the second solve on, tell APPSI that only parameter values change."""
        if self._loaded or not hasattr(self.solver, "update_config"):
            self._loaded = True
            return
        cfg = self.solver.update_config
        cfg.check_for_new_or_removed_constraints = False
        cfg.check_for_new_or_removed_vars = False
        cfg.check_for_new_or_removed_params = False
        cfg.check_for_new_objective = False
        cfg.update_constraints = False
        cfg.update_vars = False
        cfg.update_named_expressions = False
        cfg.update_objective = False
        cfg.update_params = True
        self._loaded = True

    def _fallback(self, measurement: Measurement, reason: str, t0: float, detail: str = "") -> Dispatch:
        self.fallbacks += 1
        self.fallback_counts[reason] += 1
        logger.warning("Stage-II fallback at t=%.0f s: %s %s (fallback %d of %d solves)",
                       measurement.time_s, reason, detail, self.fallbacks, self.solves)
        try:
            rule = self.fallback_rule.step(measurement)
            p_mw = dict(rule.p_mw)
        except Exception:  # the fallback of the fallback: everything at zero
            logger.exception("fallback rule controller failed; FCMs to 0")
            p_mw = {pl.label: 0.0 for pl in self.placements}
        elapsed = time.perf_counter() - t0
        self.solve_times_s.append(elapsed)
        self.plan = Dispatch(p_mw=p_mw, q_mvar={k: 0.0 for k in p_mw}, status=f"fallback:{reason}",
                             solve_s=elapsed, fallback=True, solved=False)
        return self._trimmed(measurement, self.plan)
