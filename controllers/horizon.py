"""The Stage-II problem over one horizon: the one builder both stages use (docs/optimization.md §3).

:class:`HorizonProblem` fills a Pyomo block with the LinDistFlow network
(:mod:`controllers.network`, compact or branch form), one FCM block per unit (the unit's
technology in :mod:`models.fcm`), the substation schedule, and the objective terms of
DESIGN.md §3, each a named ``Expression`` in ``blk.term``, weighted in ``blk.cost``::

    cost = w_imb Σ_t (e⁺_t + e⁻_t) Δt_h            imbalance,  P^sub_t − P^sched_t = e⁺_t − e⁻_t
         + w_ramp (Σ_t ρ_t Δt_h + ρ⁰ Δt_sim/3600)  ramp violation beyond R Δt (and the first step's)
         + w_uns Σ_{j,t} s_jt Δt_h                  unserved energy (branch form with shedding)
         + w_rest Σ_t z_t                           restoration (below)
         + w_v Σ σ/(2V_lim) + w_th Σ τ              voltage and thermal slack
         + w_op Σ_k op_cost_k                       FCM operating cost
         + w_soc Σ_k e^short_k                      storage below its end-of-horizon target
         + w_qr Σ_t π_t Σ_c r_ct                    reactive reserve short near the campuses

Restoration (docs/optimization.md §3.1). A step is *abnormal* as the KPI's normal state
defines it (docs/kpis.md): a voltage outside its limits, the import outside the band ``β``
around its schedule, or a campus offline. In per unit::

    a_t = Σ_g (σ⁻_gt/(2V_min) + σ⁺_gt/(2V_max)) + x_t / β,   x_t ≥ e⁺_t + e⁻_t − β,  x_t ≥ 0
    M_t z_t ≥ a_t,   z_t ≥ off_t,   z_{t−1} ≥ z_t,   z_t ∈ {0, 1}

``M_t`` bounds ``a_t`` at any dispatch, from the feeder's data (:meth:`_set_big_m`): the
compact form's base violations plus the largest change the injections can make, or the
branch form's box on ``v`` and the largest import its loads and ratings allow. ``off_t`` is
1 while a campus is measured offline and its forecast has not yet risen (its reconnection
is the campus's, not the controller's). ``β`` = ``import_band_mw``, or ``IMPORT_BAND_FRAC`` ×
the largest scheduled import of the horizon.

Reactive reserve (docs/optimization.md §3.7). A sag in step t (probability ``π_t``) is
ridden through more often when the inverters near a campus keep reactive room ``R_kt``
(:func:`models.fcm.base.add_pq_capability`): their fault current lifts the campus's POI by
``Σ_k x_ck R'_kt`` pu, ``x_ck = ∂|V_c|/∂Q_k`` the LinDistFlow sensitivity (pu per Mvar), with
``R'_kt`` the room its K-factor response can use in a sag of ``ΔV`` (:data:`RESERVE_DV_PU`).
Below the target lift ``L`` the shortfall is paid::

    r_ct ≥ L − Σ_k x_ck R'_kt,   0 ≤ R'_kt ≤ R_kt,   R'_kt ≤ K_k ΔV S̄_k,   r_ct ≥ 0

Stage II (:class:`controllers.stage2.Stage2Model`) builds it with the placements' sizes and
writes each measurement into its mutable parameters; Stage I
(:class:`controllers.stage1.FeederRecourse`) builds one per shock scenario with sizes that are
expressions of the module counts, and the nominal initial states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyomo.environ as pyo

from controllers.config import ObjectiveWeights
from controllers.network import (
    CompactNetwork,
    NetworkParams,
    OperatingPoint,
    build_network,
    lossless_operating_point,
    path_sensitivities,
    set_operating_point,
)
from models.errors import ScenarioError
from models.fcm import technology_of
from models.fcm.base import add_no_reactive
from models.fcm_catalog import FCMType, Placement, unknown_kind
from models.network import FeederData

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
    "q_reserve_shortfall_pu": "q_reserve_per_pu",
}

#: The band around the schedule inside which the import counts as normal, as a fraction of
#: the peak schedule: the KPI's (docs/kpis.md, "Restoration time") and the MILP's.
IMPORT_BAND_FRAC = 0.05

#: A band below this (MW) is taken as this, so that ``x_t / β`` stays finite.
MIN_BAND_MW = 1e-3

#: The sag depth (pu) the reactive reserve sizes an inverter's useful room for: its K-factor
#: response to a drop of this much uses at most ``K ΔV S̄`` of room (docs/optimization.md §3.7).
RESERVE_DV_PU = 0.3

#: ``network_rows = "auto"`` reduces the compact form's rows above this many buses.
AUTO_GROUP_BUSES = 300


def resolve_network_rows(mode: str, n_buses: int) -> str:
    """``"full"`` or ``"reduced"`` for ``controller.network_rows`` (``"auto"``: full up to
    :data:`AUTO_GROUP_BUSES` buses, reduced above, docs/optimization.md §1.5)."""
    if mode == "auto":
        return "reduced" if n_buses > AUTO_GROUP_BUSES else "full"
    return mode


@dataclass(frozen=True)
class CampusSite:
    """A campus as the optimisation knows it: name, POI bus, ``tan φ = q/p`` and capacity."""

    name: str
    bus: str
    tan_phi: float = 0.0
    capacity_mw: float = 0.0

    @classmethod
    def of(cls, campus: Any) -> "CampusSite":
        """From a scenario's ``[[campus]]`` entry (:class:`models.campus.CampusConfig`)."""
        return cls(campus.name, str(campus.bus).lower(), float(campus.tan_phi),
                   float(campus.capacity_mw))


@dataclass(frozen=True)
class MPCParams:
    """Plain-number parameters of the horizon problem and of the rolling driver.

    ``resolve_period_s`` is the time between ``step`` calls (``resolve_every_steps ×
    simulation.step_s``); it is the step of the fallback rule controller.
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
    ``import_band_mw``: the restoration term's band ``β`` (``None``: ``IMPORT_BAND_FRAC`` ×
    the horizon's peak schedule). ``v_source_pu``: the source voltage until a measurement
    sets it. ``q_reserve_lift_pu``: the reactive reserve's target lift ``L`` (0: no reserve
    rows); ``sags_per_step``: ``π``, the expected sags per horizon step
    (:func:`expected_sags_per_step`).
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
    ramp_limit_mw_per_min: float | None = 0.2
    loading_frac: float = 1.0
    campuses: tuple[CampusSite, ...] = ()
    resolve_period_s: float = 300.0
    warmstart: bool = True
    allow_shedding: bool = False
    screen_load_factor: float | None = 1.5
    network_form: str = "compact"
    apply_step_s: float | None = None
    first_step_ramp_frac: float = 0.5
    trim: str = "ramp"
    trim_ramp_frac: float = 0.5
    network_rows: str = "auto"
    import_band_mw: float | None = None
    v_source_pu: float = 1.0
    q_reserve_lift_pu: float = 0.0
    sags_per_step: float = 0.0

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
            campuses=tuple(CampusSite.of(cp) for cp in scenario.campus),
            resolve_period_s=float(c.resolve_every_steps * scenario.simulation.step_s),
            apply_step_s=float(scenario.simulation.step_s),
            trim=c.trim, trim_ramp_frac=float(c.trim_ramp_frac), network_rows=c.network_rows,
            q_reserve_lift_pu=float(c.q_reserve_lift_pu),
            sags_per_step=expected_sags_per_step(scenario, float(c.horizon_step_s)),
        )

    def network_params(self, n_buses: int) -> NetworkParams:
        return NetworkParams(
            dt_s=self.horizon_step_s, v_min_pu=self.v_min_pu, v_max_pu=self.v_max_pu,
            v_source_pu=self.v_source_pu, ramp_limit_mw_per_min=self.ramp_limit_mw_per_min,
            loading_frac=self.loading_frac, allow_shedding=self.allow_shedding,
            screen_load_factor=self.screen_load_factor,
            network_rows=resolve_network_rows(self.network_rows, n_buses),
        )


def expected_sags_per_step(scenario: Any, step_s: float) -> float:
    """``π``: the sags a campus expects in ``step_s`` seconds, from the scenario's fault
    law (:meth:`models.faults.FaultLaw.shots_per_day`: upstream faults and the feeder's
    per-day rate, times the mean shots per fault) × ``step_s``/86 400 (0 without one)."""
    law = getattr(scenario, "faults", None)
    if law is None:
        return 0.0
    return float(law.shots_per_day()) * step_s / 86_400.0


@dataclass(frozen=True)
class Unit:
    """One FCM in a horizon problem: its label, bus, catalog entry and sizes ``P̄ = p_cap``
    (MW), ``Ē = e_cap`` (MWh), numbers or Pyomo expressions, and ``p_max`` ≥ ``P̄`` (MW), the
    bound the big-Ms and the network's swing bounds use; ``s_cap`` the apparent-power rating
    S̄ (MVA; set for every inverter, :func:`placement_units` and Stage I's units; ``None``
    elsewhere: the technology's for ``p_cap``) and ``s_max`` ≥ S̄ its bound."""

    label: str
    bus: str
    tech: Any
    p_cap: Any
    e_cap: Any
    p_max: float
    s_cap: Any = None
    s_max: float | None = None

    @property
    def technology(self) -> Any:
        return technology_of(self.tech)


def placement_units(placements: Sequence[Placement], catalog: Mapping[str, FCMType]) -> list[Unit]:
    """The units of fixed placements (Stage II): sizes from their technology's sizing."""
    out = []
    for pl in placements:
        tech = catalog[pl.kind]
        technology = technology_of(tech)
        p_cap, e_cap = technology.sizes(pl, tech)
        s_cap = technology.s_mva(pl, tech)
        out.append(Unit(pl.label, pl.bus, tech, p_cap, e_cap, p_cap, s_cap, max(s_cap, p_cap)))
    return out


def check_sites(feeder: FeederData, placements: Sequence[Placement],
                catalog: Mapping[str, FCMType], campuses: Sequence[CampusSite],
                source: str = "fcm") -> None:
    """Raise :class:`ScenarioError` for placements or campuses the feeder cannot host."""
    for i, pl in enumerate(placements):
        if (msg := unknown_kind(pl.kind, catalog)) is not None:
            raise ScenarioError(source, f"placements[{i}].kind", msg)
        if not feeder.has_bus(pl.bus):
            raise ScenarioError(source, f"placements[{i}].bus",
                                f"unknown bus {pl.bus!r} of feeder {feeder.name}")
    for cp in campuses:
        if not feeder.has_bus(cp.bus):
            raise ScenarioError("campus", f"{cp.name}.bus",
                                f"unknown bus {cp.bus!r} of feeder {feeder.name}")
    labels = [pl.label for pl in placements]
    if len(set(labels)) != len(labels):
        raise ScenarioError(source, "placements", "two placements share a label; give them names")


class HorizonProblem:
    """The horizon problem of the module docstring, built into block ``blk``.

    ``units`` are the FCMs; ``operating_point`` is where the network is linearised (and
    calibrated, when it carries its loads); ``peak_load_mva`` (bus → MVA) replaces the
    thermal screen's ``screen_load_factor`` bound when the largest loads are known (Stage I).
    The block starts at the feeder's nominal loads, a flat schedule at 0, the units' nominal
    states and the campuses online. Update with :meth:`set_loads`, :meth:`set_schedule`,
    :meth:`set_grid`, :meth:`set_unit_state` and :meth:`set_offline`, then :meth:`refresh`
    (which recomputes the compact form's bases and the big-M) before solving.
    """

    def __init__(self, blk: pyo.Block, feeder: FeederData, units: Sequence[Unit],
                 params: MPCParams, operating_point: OperatingPoint | None = None,
                 peak_load_mva: Mapping[str, float] | None = None) -> None:
        self.blk, self.feeder, self.params = blk, feeder, params
        self.units = list(units)
        self._unit = {u.label: u for u in self.units}
        self.operating_point = operating_point
        self._op: OperatingPoint | None = operating_point
        self._v_source_sq = params.v_source_pu ** 2
        H, dt_h = params.horizon_steps, params.dt_h
        T = list(range(H))
        blk.T = pyo.Set(initialize=T, ordered=True)
        blk.fcm = pyo.Block([u.label for u in self.units])
        for u in self.units:
            b = blk.fcm[u.label]
            u.technology.add_block(b, T, dt_h, u.tech, p_cap=u.p_cap, e_cap=u.e_cap,
                                   p_max=u.p_max, plant_step_s=params.apply_step_s,
                                   s_cap=u.s_cap)
            if not hasattr(b, "q_mvar"):  # a technology without reactive power
                add_no_reactive(b)
        self._add_host_rows(T)

        inj: dict[str, list[Any]] = {}
        q_inj: dict[str, list[Any]] = {}
        extra: dict[str, float] = {}
        for u in self.units:
            inj.setdefault(u.bus, []).append(blk.fcm[u.label].p_mw)
            if u.technology.reactive:
                q_inj.setdefault(u.bus, []).append(blk.fcm[u.label].q_mvar)
            extra[u.bus] = extra.get(u.bus, 0.0) + max(float(u.p_max), float(u.s_max or 0.0))
        for cp in params.campuses:
            extra[cp.bus] = extra.get(cp.bus, 0.0) + cp.capacity_mw * math.sqrt(1 + cp.tan_phi ** 2)
        self.extra_mva = extra
        blk.net = pyo.Block()
        net_params = params.network_params(len(feeder.buses))
        if params.network_form == "compact" and not params.allow_shedding:
            self.compact: CompactNetwork | None = CompactNetwork(
                blk.net, feeder, T, net_params, injections=inj, q_injections=q_inj,
                extra_mva=extra, operating_point=operating_point, peak_load_mva=peak_load_mva)
        elif params.network_form in ("compact", "branch"):
            self.compact = None
            build_network(blk.net, feeder, T, net_params, injections=inj, q_injections=q_inj,
                          extra_mva=extra, operating_point=operating_point,
                          peak_load_mva=peak_load_mva)
        else:
            raise ValueError(f"network_form must be 'compact' or 'branch', got {params.network_form!r}")
        self._p_load = np.array([[ld] * H for ld in self._nominal_p()])
        self._sched = np.zeros(H)
        self._add_reserve(T)
        self._add_objective(T, dt_h)

    # -- building ---------------------------------------------------------------------------
    def _nominal_p(self) -> list[float]:
        load = self.feeder.load_by_bus
        return [load[j].p_mw if j in load else 0.0 for j in self.feeder.bus_names]

    def _add_host_rows(self, T: list[int]) -> None:
        """What a unit takes off its host bus's load (DR curtailment, ``host_draw_mw``) is at
        most that load: ``Σ_{k at j} d_kt ≤ L_jt`` (mutable ``host_p_mw[j,t]``, the bus's
        background load; nominal until :meth:`set_loads`)."""
        blk = self.blk
        draws: dict[str, list[Any]] = {}
        for u in self.units:
            b = blk.fcm[u.label]
            if hasattr(b, "host_draw_mw"):
                draws.setdefault(u.bus, []).append(b.host_draw_mw)
        load = self.feeder.load_by_bus
        blk.HOST = pyo.Set(initialize=sorted(draws), ordered=True)
        blk.host_p_mw = pyo.Param(blk.HOST, T, mutable=True,
                                  initialize=lambda _, j, t: load[j].p_mw if j in load else 0.0)
        blk.host_limit = pyo.Constraint(
            blk.HOST, T, rule=lambda b, j, t: sum(d[t] for d in draws[j]) <= b.host_p_mw[j, t])

    def _add_reserve(self, T: list[int]) -> None:
        """The reactive reserve of the module docstring: ``r[c, t]`` and its rows for each
        campus with an inverter whose room lifts it (``x_ck > 0``); ``sag_prob[t] = π``
        (mutable). Room counts up to what the inverter's K-factor response can use in a
        sag of :data:`RESERVE_DV_PU`: ``R'_kt ≤ R_kt``, ``R'_kt ≤ K_k ΔV S̄_k``."""
        blk, p = self.blk, self.params
        blk.sag_prob = pyo.Param(blk.T, mutable=True, initialize=float(p.sags_per_step))
        rooms = [u for u in self.units if u.technology.inverter]
        sites = [cp for cp in p.campuses if self.feeder.has_bus(cp.bus)]
        lift: dict[str, list[tuple[float, str]]] = {}
        if rooms and sites and p.q_reserve_lift_pu > 0:
            buses = sorted({u.bus for u in rooms}, key=self.feeder.bus_index.get)
            _, xv, _ = path_sensitivities(self.feeder, buses)
            col = {b: i for i, b in enumerate(buses)}
            bi = self.feeder.bus_index
            for cp in sites:
                terms = [(0.5 * float(xv[bi[cp.bus], col[u.bus]]), u.label) for u in rooms]
                terms = [(x, k) for x, k in terms if x > 0]
                if terms:
                    lift[cp.name] = terms
        used = sorted({k for terms in lift.values() for _, k in terms})
        unit = self._unit
        blk.ROOM = pyo.Set(initialize=used, ordered=True)
        blk.q_lift = pyo.Var(blk.ROOM, blk.T, domain=pyo.NonNegativeReals)
        blk.q_lift_room = pyo.Constraint(
            blk.ROOM, blk.T, rule=lambda b, k, t: b.q_lift[k, t] <= b.fcm[k].q_room_mvar[t])
        blk.q_lift_k = pyo.Constraint(
            blk.ROOM, blk.T, rule=lambda b, k, t: b.q_lift[k, t]
            <= unit[k].tech.fault_k * RESERVE_DV_PU * unit[k].s_cap)
        blk.RESERVE = pyo.Set(initialize=sorted(lift), ordered=True)
        blk.q_short = pyo.Var(blk.RESERVE, blk.T, domain=pyo.NonNegativeReals)
        blk.q_reserve = pyo.Constraint(
            blk.RESERVE, blk.T,
            rule=lambda b, c, t: b.q_short[c, t] + sum(x * b.q_lift[k, t] for x, k in lift[c])
            >= p.q_reserve_lift_pu)
        self.reserve_sensitivity = lift

    def _add_objective(self, T: list[int], dt_h: float) -> None:
        blk, p = self.blk, self.params
        net = blk.net
        blk.p_sched_mw = pyo.Param(blk.T, mutable=True, initialize=0.0)
        blk.imb_pos = pyo.Var(blk.T, domain=pyo.NonNegativeReals)
        blk.imb_neg = pyo.Var(blk.T, domain=pyo.NonNegativeReals)
        blk.imbalance = pyo.Constraint(
            blk.T, rule=lambda b, t: net.p_sub_mw[t] - b.p_sched_mw[t] == b.imb_pos[t] - b.imb_neg[t])
        # restoration (module docstring): a_t in pu, M_t from the feeder's data
        blk.band_mw = pyo.Param(mutable=True, initialize=MIN_BAND_MW)
        blk.band_inv = pyo.Param(mutable=True, initialize=1.0 / MIN_BAND_MW)
        blk.imb_out = pyo.Var(blk.T, domain=pyo.NonNegativeReals)
        blk.imb_out_def = pyo.Constraint(
            blk.T, rule=lambda b, t: b.imb_out[t] >= b.imb_pos[t] + b.imb_neg[t] - b.band_mw)
        blk.abnormal = pyo.Expression(
            blk.T, rule=lambda b, t: net.v_abnormal_pu[t] + b.band_inv * b.imb_out[t])
        blk.abnormal_max = pyo.Param(blk.T, mutable=True, initialize=1.0)
        blk.offline = pyo.Param(blk.T, mutable=True, initialize=0)
        blk.z = pyo.Var(blk.T, domain=pyo.Binary)
        blk.restoration = pyo.Constraint(
            blk.T, rule=lambda b, t: b.abnormal_max[t] * b.z[t] >= b.abnormal[t])
        blk.campus_off = pyo.Constraint(blk.T, rule=lambda b, t: b.z[t] >= b.offline[t])
        # restored for good: once the plan is in normal state it stays there (Σ z counts the
        # steps until the last abnormal one; this also makes the binaries easy to branch on)
        blk.restored = pyo.Constraint(T[1:], rule=lambda b, t: b.z[t - 1] >= b.z[t])
        values = {
            "imbalance_mwh": sum((blk.imb_pos[t] + blk.imb_neg[t]) * dt_h for t in blk.T),
            "ramp_violation_mwh": net.ramp_violation_mwh + self._first_step_ramp(),
            "unserved_mwh": net.unserved_mwh,
            "restoration_steps": sum(blk.z[t] for t in blk.T),
            "voltage_slack_pu": net.voltage_slack_pu,
            "thermal_slack_mva": net.thermal_slack_mva,
            "operating_cost": sum(blk.fcm[k].op_cost for k in blk.fcm),
            "soc_shortfall_mwh": sum(blk.fcm[k].target_shortfall_mwh for k in blk.fcm),
            "q_reserve_shortfall_pu": sum(blk.sag_prob[t] * blk.q_short[c, t]
                                          for c in blk.RESERVE for t in blk.T),
        }
        blk.TERMS = pyo.Set(initialize=list(TERM_WEIGHTS), ordered=True)
        blk.term = pyo.Expression(blk.TERMS, rule=lambda b, k: values[k])
        blk.weight = pyo.Param(
            blk.TERMS, mutable=True, initialize=lambda b, k: getattr(p.weights, TERM_WEIGHTS[k]))
        blk.cost = pyo.Expression(expr=sum(blk.weight[k] * blk.term[k] for k in blk.TERMS))

    def _first_step_ramp(self) -> Any:
        """First-step ramp row: the plant applies the first setpoints at once, so the import
        moves from the measured ``P^sub_{−1}`` to ``P^sub_0`` within one co-simulation step
        Δt_sim, not over a horizon step::

            |P^sub_0 − P^sub_{−1}| ≤ a·R·Δt_sim/60 + ρ⁰,   ρ⁰ ≥ 0

        ``ρ⁰`` is held for one co-simulation step, so it adds ``ρ⁰·Δt_sim/3600`` MWh to the
        ramp-violation term (the KPI's definition of the excess). Returns that expression
        (0 when ``apply_step_s`` is unset or not shorter than the horizon step).
        """
        p, blk = self.params, self.blk
        if (p.apply_step_s is None or p.ramp_limit_mw_per_min is None
                or p.apply_step_s >= p.horizon_step_s):
            return 0.0
        allow = p.first_step_ramp_frac * p.ramp_limit_mw_per_min * p.apply_step_s / 60.0
        blk.s_ramp_first = pyo.Var(domain=pyo.NonNegativeReals)
        net = blk.net
        blk.ramp_first_up = pyo.Constraint(
            expr=net.p_sub_mw[0] - net.p_sub_prev_mw <= allow + blk.s_ramp_first)
        blk.ramp_first_down = pyo.Constraint(
            expr=net.p_sub_prev_mw - net.p_sub_mw[0] <= allow + blk.s_ramp_first)
        return blk.s_ramp_first * (p.apply_step_s / 3600.0)

    # -- updating ---------------------------------------------------------------------------
    def set_loads(self, p_load_mw: np.ndarray, q_load_mvar: np.ndarray,
                  host_p_mw: np.ndarray | None = None) -> None:
        """Bus loads over the horizon, shape ``(n_bus, H)`` in ``feeder.bus_names`` order (MW,
        Mvar; + = consumption, FCMs excluded); ``host_p_mw`` the same shape, the part a DR
        unit may curtail (the background load; default ``p_load_mw``)."""
        blk, names = self.blk, self.feeder.bus_names
        p, q = np.asarray(p_load_mw, dtype=float), np.asarray(q_load_mvar, dtype=float)
        self._p_load = p
        steps = list(blk.T)
        if self.compact is not None:
            self.compact.set_loads(p, q)
        else:
            net = blk.net
            net.p_load_mw.store_values({(j, t): float(p[a, k]) for a, j in enumerate(names)
                                        for k, t in enumerate(steps)}, check=False)
            net.q_load_mvar.store_values({(j, t): float(q[a, k]) for a, j in enumerate(names)
                                          for k, t in enumerate(steps)}, check=False)
        if len(blk.HOST):
            host = p if host_p_mw is None else np.asarray(host_p_mw, dtype=float)
            bi = self.feeder.bus_index
            blk.host_p_mw.store_values({(j, t): max(0.0, float(host[bi[j], k])) for j in blk.HOST
                                        for k, t in enumerate(steps)}, check=False)

    def set_schedule(self, p_sched_mw: np.ndarray) -> None:
        """The substation import schedule over the horizon (MW) and, from it, the band ``β``."""
        blk = self.blk
        sched = np.asarray(p_sched_mw, dtype=float)
        self._sched = sched
        blk.p_sched_mw.store_values({t: float(sched[k]) for k, t in enumerate(blk.T)}, check=False)
        band = self.params.import_band_mw
        if band is None:
            band = IMPORT_BAND_FRAC * float(np.max(np.abs(sched))) if sched.size else 0.0
        band = max(float(band), MIN_BAND_MW)
        blk.band_mw = band
        blk.band_inv = 1.0 / band

    def set_grid(self, p_sub_prev_mw: float, op: OperatingPoint | None,
                 v_source_sq: float) -> None:
        """The import before the horizon (MW), the operating point and the source |V|²."""
        self.blk.net.p_sub_prev_mw = float(p_sub_prev_mw)
        self._op, self._v_source_sq = op, float(v_source_sq)
        if self.compact is None:
            self.blk.net.v_source_sq = self._v_source_sq
            set_operating_point(self.blk.net, self.feeder, op)

    def set_unit_state(self, label: str, state: Any) -> None:
        """A unit's measured state (an :class:`controllers.interface.FCMState`)."""
        u = self._unit[label]
        u.technology.set_state(self.blk.fcm[label], u.tech, state, self.params.horizon_step_s)

    def set_offline(self, offline: Sequence[float]) -> None:
        """``off_t``: 1 for the steps a campus is offline (module docstring)."""
        self.blk.offline.store_values({t: int(bool(offline[k])) for k, t in enumerate(self.blk.T)},
                                      check=False)

    def refresh(self) -> None:
        """Recompute what follows from the inputs: the compact form's bases and the big-M."""
        if self.compact is not None:
            self.compact.update(self._op, self._v_source_sq)
        self._set_big_m()

    def _set_big_m(self) -> None:
        """``M_t`` ≥ ``a_t`` at any dispatch (module docstring)::

            M_t = 1 + 1.1 · (V̂_t + max(0, Î_t − β) / β)

        ``V̂_t`` is the network's bound of the voltage part (``v_abnormal_max``). ``Î_t``
        bounds ``|P^sub_t − P^sched_t|``: compact form ``|P^sub,base_t − P^sched_t| + ΔP^sub``
        (its largest change by the injections); branch form ``1.1 (Σ_j |p^L_jt| + Σ_b X_b) +
        |P^sched_t|`` (all loads, campus capacities and FCM ratings, with losses)."""
        blk, net = self.blk, self.blk.net
        steps = list(blk.T)
        band = float(pyo.value(blk.band_mw))
        if self.compact is not None:
            dev = np.abs(np.asarray(self.compact.p_sub_base) - self._sched) + self.compact.sub_swing_mw
        else:
            total = np.abs(self._p_load).sum(axis=0) + sum(self.extra_mva.values())
            dev = 1.1 * total + np.abs(self._sched)
        v_part = np.array([float(pyo.value(net.v_abnormal_max[t])) for t in steps])
        m = 1.0 + 1.1 * (v_part + np.maximum(dev - band, 0.0) / band)
        blk.abnormal_max.store_values(dict(zip(steps, m.tolist())), check=False)

    # -- reading ----------------------------------------------------------------------------
    def dispatch(self, t: int = 0) -> dict[str, float]:
        """FCM setpoints (MW, + = injection) of horizon step ``t`` of the loaded solution."""
        return {u.label: _clean(pyo.value(self.blk.fcm[u.label].p_mw[t])) for u in self.units}

    def dispatch_q(self, t: int = 0) -> dict[str, float]:
        """FCM reactive setpoints (Mvar, + = injection) of horizon step ``t``."""
        return {u.label: _clean(pyo.value(self.blk.fcm[u.label].q_mvar[t])) for u in self.units}

    def schedule(self) -> dict[str, np.ndarray]:
        """FCM setpoints over the whole horizon."""
        return {u.label: np.array([_clean(pyo.value(self.blk.fcm[u.label].p_mw[t]))
                                   for t in self.blk.T]) for u in self.units}

    def term_values(self) -> dict[str, float]:
        """Value of each named objective term (unweighted) of the loaded solution."""
        return {k: float(pyo.value(self.blk.term[k])) for k in self.blk.TERMS}

    def predicted_v_pu(self, t: int = 0) -> dict[str, float]:
        if self.compact is not None:
            return self.compact.voltages_pu(t)
        net = self.blk.net
        return {j: math.sqrt(max(float(pyo.value(net.v[j, t])), 0.0)) for j in net.N}

    def predicted_sub_p_mw(self, t: int = 0) -> float:
        return float(pyo.value(self.blk.net.p_sub_mw[t]))


def _clean(x: float | None) -> float:
    if x is None or not math.isfinite(x):
        return 0.0
    return 0.0 if abs(x) < 1e-7 else float(x)


def _fit(values: Any, n: int, default: float) -> np.ndarray:
    """``values`` as ``n`` floats: truncated, or padded with its last value (or default)."""
    arr = np.asarray(values if values is not None else [], dtype=float).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return np.full(n, float(default))
    if arr.size >= n:
        return arr[:n].copy()
    return np.concatenate([arr, np.full(n - arr.size, arr[-1])])


#: A campus forecast this far (as a share of capacity) above its offline draw is a reconnection.
RECONNECT_FRAC = 0.01


@dataclass(frozen=True)
class HorizonInputs:
    """What a measurement and a forecast mean for the horizon: bus loads (MW/Mvar per step,
    + = consumption, FCMs excluded), the background part of them, import schedule, the steps
    a campus stays offline, operating point and source |V|²."""

    p_load: dict[str, np.ndarray]
    q_load: dict[str, np.ndarray]
    p_background: dict[str, np.ndarray]
    p_sched: np.ndarray
    offline: np.ndarray
    op: OperatingPoint | None
    v_source_sq: float


def horizon_inputs(feeder: FeederData, placements: Sequence[Placement], params: MPCParams,
                   measurement: Any, campus_mw: Mapping[str, Sequence[float]]) -> HorizonInputs:
    """Loads over the horizon: nominal background loads × (measured background / nominal
    total, held), plus each campus's forecast at its POI (``q = p tan φ``); the schedule
    padded or cut to the horizon; ``offline[t]`` = 1 while a campus measured offline is
    forecast below ``RECONNECT_FRAC`` × capacity above its present draw; the operating point
    for ``linearize_at="ac"``: the measured voltages and branch flows (else flows estimated as
    the downstream sums of the loads, and |V| = 1 when no voltage is usable), with the loads
    they were measured at (measured background and campus draw, net of the measured FCM
    output), so that the network model is calibrated to the measured state
    (docs/optimization.md §1.7)."""
    H = params.horizon_steps
    load = feeder.load_by_bus
    nominal_total = sum(ld.p_mw for ld in feeder.loads)
    bg = measurement.background_p_mw
    scale = bg / nominal_total if bg is not None and nominal_total > 0 and math.isfinite(bg) else 1.0
    p_bg = {j: np.full(H, (load[j].p_mw if j in load else 0.0) * scale) for j in feeder.bus_names}
    p_load = {j: v.copy() for j, v in p_bg.items()}
    q_load = {j: np.full(H, (load[j].q_mvar if j in load else 0.0) * scale) for j in feeder.bus_names}
    offline = np.zeros(H)
    for cp in params.campuses:
        now = measurement.campus_p_mw.get(cp.name, 0.0)
        series = _fit(campus_mw.get(cp.name), H, now)
        p_load[cp.bus] = p_load[cp.bus] + series
        q_load[cp.bus] = q_load[cp.bus] + series * cp.tan_phi
        if not measurement.campus_online.get(cp.name, True):
            rising = series > float(now) + RECONNECT_FRAC * cp.capacity_mw
            first = int(np.argmax(rising)) if rising.any() else H
            offline[:first] = 1.0
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
    return HorizonInputs(p_load, q_load, p_bg, sched, offline, op, v_src_sq)


__all__ = ["AUTO_GROUP_BUSES", "CampusSite", "HorizonInputs", "HorizonProblem",
           "IMPORT_BAND_FRAC", "MPCParams", "TERM_WEIGHTS", "Unit", "check_sites",
           "expected_sags_per_step", "horizon_inputs", "placement_units", "resolve_network_rows"]
