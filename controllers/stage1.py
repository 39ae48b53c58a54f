"""Stage I: DRO-CVaR siting and sizing of FCMs (docs/stage1.md).

First stage, for every candidate k = (kind, bus) of ``siting.candidate_buses × siting.kinds``::

    x_k ∈ {0, 1},   x_k ≤ n_k ≤ M_k x_k,   n_k ∈ ℤ (or ℝ when integer_modules = false)
    capex(n) = Σ_k C_k n_k ≤ B,             Σ_k p_k n_k ≥ P^min

(``M_k`` = catalog ``max_modules``, ``C_k`` = ``capex_per_module``, ``p_k`` =
``p_mw_per_module``, ``B`` = ``siting.budget``, ``P^min`` = ``siting.min_capacity_mw``).

Second stage per sampled shock scenario s (:class:`FeederRecourse`): the Stage-II problem
over the siting horizon from nominal device states, built from the shared LinDistFlow network
block (:func:`controllers.network.build_network`) and FCM blocks
(:mod:`controllers.blocks`) with sizes ``P̄_k = p_k n_k``, ``Ē_k = e_k n_k``; its cost is Q_s(n).

Objective: ``min capex(n) + R(w·Q(n))`` with R the DRO-CVaR functional of
:mod:`controllers.risk` and w = ``siting.shock_events`` (how many shock events of the siting
horizon the capex pays for). Solved by :mod:`controllers.decomposition`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import pyomo.environ as pyo

from controllers.blocks import add_dr, add_generator, add_storage, spec_from_catalog
from controllers.config import ObjectiveWeights, SitingConfig
from controllers.decomposition import TwoStageProblem, TwoStageSolution, solve_two_stage
from controllers.network import (
    NetworkParams,
    OperatingPoint,
    base_operating_point,
    build_network,
    set_loads,
)
from controllers.risk import RiskSpec, ground_distances, nominal_probabilities
from models.errors import ScenarioError, read_user_file
from models.fcm_catalog import DRType, FCMType, GeneratorType, Placement, StorageType
from models.network import FeederData

log = logging.getLogger(__name__)

SITING_FORMAT = "dcshock-siting/1"


@dataclass(frozen=True)
class Candidate:
    """FCM kind ``kind`` (catalog entry ``tech``) that may be placed at ``bus``."""

    kind: str
    bus: str
    tech: FCMType

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.bus)

    @property
    def p_mw_per_module(self) -> float:
        return float(self.tech.p_mw_per_module)

    @property
    def e_mwh_per_module(self) -> float:
        return float(self.tech.e_mwh_per_module)

    @property
    def capex_per_module(self) -> float:
        return float(self.tech.capex_per_module)

    @property
    def max_modules(self) -> int:
        return int(self.tech.max_modules)


def make_candidates(
    siting: SitingConfig,
    catalog: Mapping[str, FCMType],
    feeder: FeederData,
    source: str = "scenario",
) -> list[Candidate]:
    """Candidates ``candidate_buses × kinds``, checked against the feeder and the catalog.

    An empty ``candidate_buses`` means every bus except the source bus. Raises
    :class:`ScenarioError` for an unknown kind or bus, and when the budget cannot buy
    ``min_capacity_mw`` (or the candidates cannot hold it at all).
    """
    for i, kind in enumerate(siting.kinds):
        if kind not in catalog:
            raise ScenarioError(source, f"siting.kinds[{i}]",
                                f"kind '{kind}' is not in the FCM catalog; allowed: "
                                f"{', '.join(sorted(catalog))}")
    if not siting.kinds:
        raise ScenarioError(source, "siting.kinds", "no FCM kind to site; allowed: "
                            f"{', '.join(sorted(catalog))}")
    buses = [str(b).lower() for b in siting.candidate_buses]
    if not buses:
        buses = [b for b in feeder.bus_names if b != feeder.source_bus]
    for i, bus in enumerate(buses):
        if not feeder.has_bus(bus):
            raise ScenarioError(source, f"siting.candidate_buses[{i}]",
                                f"bus '{bus}' is not in feeder {feeder.name}; allowed: "
                                f"{_bus_range(feeder)}")
        if bus == feeder.source_bus:
            raise ScenarioError(source, f"siting.candidate_buses[{i}]",
                                f"bus '{bus}' is the substation (source) bus; allowed: any "
                                "other bus of the feeder")
    seen: set[tuple[str, str]] = set()
    out = []
    for bus in buses:
        for kind in siting.kinds:
            if (kind, bus) not in seen:
                seen.add((kind, bus))
                out.append(Candidate(kind, bus, catalog[kind]))
    _check_budget(siting, out, source)
    return out


def _bus_range(feeder: FeederData) -> str:
    names = list(feeder.bus_names)
    return ", ".join(names) if len(names) <= 12 else f"{', '.join(names[:6])}, ... ({len(names)} buses)"


def _check_budget(siting: SitingConfig, cands: Sequence[Candidate], source: str) -> None:
    need = float(siting.min_capacity_mw)
    if need <= 0:
        return
    most = sum(c.p_mw_per_module * c.max_modules for c in cands)
    if most < need - 1e-9:
        raise ScenarioError(source, "siting.min_capacity_mw",
                            f"{need:g} MW required but the candidates hold at most {most:g} MW; "
                            "allowed: at most that, or more candidate buses/kinds")
    # Cheapest way to buy `need` MW: fill the candidates in order of capex per MW.
    cost, left = 0.0, need
    for c in sorted(cands, key=lambda c: c.capex_per_module / c.p_mw_per_module):
        modules = min(c.max_modules, left / c.p_mw_per_module)
        if siting.integer_modules:
            modules = min(c.max_modules, math.ceil(modules - 1e-9))
        cost += modules * c.capex_per_module
        left -= modules * c.p_mw_per_module
        if left <= 1e-9:
            break
    if cost > siting.budget + 1e-6:
        raise ScenarioError(source, "siting.budget",
                            f"budget {siting.budget:,.0f} cannot buy the required "
                            f"{need:g} MW (min_capacity_mw), which costs at least {cost:,.0f}; "
                            f"allowed: budget >= {cost:,.0f} or a smaller min_capacity_mw")


def first_stage_builder(
    candidates: Sequence[Candidate],
    budget: float,
    integer_modules: bool = True,
    min_capacity_mw: float = 0.0,
):
    """The first stage of the module docstring as a :class:`TwoStageProblem` builder.

    Adds ``x[k]`` (binary), ``n[k]`` (module count), the bounds ``x_k ≤ n_k ≤ M_k x_k``, the
    budget ``Σ C_k n_k ≤ B`` and the capacity floor ``Σ p_k n_k ≥ P^min``; returns
    ``(capex expression, {key: n[key]})``.
    """
    cands = {c.key: c for c in candidates}

    def build(blk: pyo.Block):
        keys = list(cands)
        blk.K = pyo.Set(initialize=keys, dimen=2, ordered=True)
        blk.x = pyo.Var(blk.K, domain=pyo.Binary)
        domain = pyo.NonNegativeIntegers if integer_modules else pyo.NonNegativeReals
        blk.n = pyo.Var(blk.K, domain=domain, bounds=lambda _, *k: (0, cands[k].max_modules))
        blk.n_max = pyo.Constraint(blk.K, rule=lambda b, *k: b.n[k] <= cands[k].max_modules * b.x[k])
        blk.n_min = pyo.Constraint(blk.K, rule=lambda b, *k: b.n[k] >= b.x[k])
        blk.capex = pyo.Expression(expr=sum(cands[k].capex_per_module * blk.n[k] for k in keys))
        blk.budget = pyo.Constraint(expr=blk.capex <= float(budget))
        if min_capacity_mw > 0:
            blk.capacity = pyo.Constraint(
                expr=sum(cands[k].p_mw_per_module * blk.n[k] for k in keys) >= float(min_capacity_mw)
            )
        return blk.capex, {k: blk.n[k] for k in keys}

    return build


def screen_thermal_limits(
    feeder: FeederData,
    load_p_max: Mapping[str, float],
    load_q_max: Mapping[str, float],
    fcm_p_max: Mapping[str, float],
    params: NetworkParams,
) -> tuple[FeederData, int]:
    """Drop thermal limits that no recourse can reach (an exact model reduction).

    On the lossless LinDistFlow of the siting recourse the flow of branch l (feeding the
    subtree D_l) is bounded by

        −Σ_{j∈D_l} G_j ≤ P_l ≤ Σ_{j∈D_l} (P^L_j + G_j),     |Q_l| ≤ Σ_{j∈D_l} |Q^L_j|

    with P^L/Q^L the largest bus load over all scenarios and steps and G_j the largest FCM
    power at bus j (injection, or consumption when charging or paying back). When
    ``sqrt(P̂² + Q̂²) ≤ S̄_l·loading·cos(π/n)`` every side of the n-gon holds for every
    feasible flow, so the branch's rating is removed. Returns the screened feeder and the
    number of limits kept.
    """
    if params.thermal_sides < 3:
        return feeder, 0
    shrink = math.cos(math.pi / params.thermal_sides) * params.loading_frac
    down_p: dict[str, float] = {}
    down_q: dict[str, float] = {}
    down_g: dict[str, float] = {}
    for br in reversed(feeder.branches):
        j = br.to_bus
        kids = feeder.children[j]
        down_p[j] = abs(load_p_max.get(j, 0.0)) + sum(down_p[c.to_bus] for c in kids)
        down_q[j] = abs(load_q_max.get(j, 0.0)) + sum(down_q[c.to_bus] for c in kids)
        down_g[j] = abs(fcm_p_max.get(j, 0.0)) + sum(down_g[c.to_bus] for c in kids)
    branches = []
    kept = 0
    for br in feeder.branches:
        if br.rating_mva is not None and br.rating_mva > 0:
            j = br.to_bus
            p_hat = down_p[j] + down_g[j]
            if math.hypot(p_hat, down_q[j]) <= br.rating_mva * shrink * (1 - 1e-9):
                br = replace(br, rating_mva=None)
            else:
                kept += 1
        branches.append(br)
    return replace(feeder, branches=tuple(branches)), kept


@dataclass(frozen=True)
class CampusSite:
    """Where a campus draws its power and at which power factor (Q = P·tan(acos pf))."""

    bus: str
    power_factor: float = 0.98

    @property
    def q_per_p(self) -> float:
        return math.tan(math.acos(self.power_factor))


class FeederRecourse:
    """The Stage-II problem of one shock scenario as Stage I's recourse (docs/stage1.md §1).

    Over ``T`` steps of Δt from nominal device states (storage at ``soc_init``, generators
    off, no DR debt), with campus draws ξ_s (MW) added to the bus loads and the substation
    schedule ``P^sched_t`` (MW)::

        Q_s = W_imb Σ_t (m⁺_t + m⁻_t) Δt_h + W_ramp ramp_violation_mwh + W_uns unserved_mwh
              + W_v voltage_slack_pu + W_th thermal_slack_mva
              + W_op Σ_k op_cost_k + W_soc Σ_k e^short_k
        P^sub_t − P^sched_t = m⁺_t − m⁻_t,   m± ≥ 0

    with the network terms of :func:`controllers.network.build_network`, the FCM blocks of
    :mod:`controllers.blocks` (sizes ``P̄_k = p_k n_k``, ``Ē_k = e_k n_k``, big-M
    ``p_k M_k``) and the storage end target ``E_T ≥ E_0`` (shortfall ``e^short`` priced by
    ``soc_shortfall_per_mwh``, as in Stage II). The restoration count of Stage II is left out (it needs a binary per step,
    which the LP relaxation of Benders would reduce to another slack penalty).

    ``operating_point``: the AC point the network is linearised and calibrated at
    (:func:`controllers.network.base_operating_point`: the feeder's base case); ``None`` is
    the lossless, uncalibrated LinDistFlow.

    ``reusable``: Benders builds one block and moves it between scenarios with
    :meth:`set_scenario` (only the mutable load parameters change).
    """

    reusable = True

    def __init__(
        self,
        feeder: FeederData,
        candidates: Sequence[Candidate],
        trajectories: np.ndarray,
        campuses: Sequence[CampusSite],
        params: NetworkParams,
        weights: ObjectiveWeights,
        *,
        schedule_mw: np.ndarray | None = None,
        background_scale: float = 1.0,
        screen_thermal: bool = True,
        operating_point: OperatingPoint | None = None,
    ) -> None:
        xi = np.asarray(trajectories, dtype=float)
        if xi.ndim != 3 or xi.shape[1] != len(campuses):
            raise ValueError(f"trajectories must be (N, {len(campuses)}, T), got {xi.shape}")
        self.feeder = feeder
        self.candidates = list(candidates)
        self.xi = xi
        self.campuses = list(campuses)
        self.params = params
        self.weights = weights
        self.operating_point = operating_point
        self.n_scenarios, _, self.steps = xi.shape
        self.bg_p = {ld.bus: ld.p_mw * background_scale for ld in feeder.loads}
        self.bg_q = {ld.bus: ld.q_mvar * background_scale for ld in feeder.loads}
        if schedule_mw is None:
            schedule_mw = sum(self.bg_p.values()) + xi.sum(axis=1).mean(axis=0)
        self.schedule = np.broadcast_to(np.asarray(schedule_mw, dtype=float), (self.steps,)).copy()
        self.p_sub_init = float(self.schedule[0])
        if screen_thermal:
            p_max = {j: max(v) for j, v in self._loads_max()[0].items()}
            q_max = {j: max(v) for j, v in self._loads_max()[1].items()}
            g_max: dict[str, float] = {}
            for c in self.candidates:
                g_max[c.bus] = g_max.get(c.bus, 0.0) + c.p_mw_per_module * c.max_modules
            self.feeder, kept = screen_thermal_limits(feeder, p_max, q_max, g_max, params)
            log.info("thermal screening: %d of %d rated branches can bind", kept,
                     sum(1 for b in feeder.branches if b.rating_mva))

    def _loads_max(self) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Bus loads with every campus at its largest draw over all scenarios and steps."""
        peak = np.abs(self.xi).max(axis=(0, 2))
        p = {j: [self.bg_p.get(j, 0.0)] for j in self.feeder.bus_names}
        q = {j: [abs(self.bg_q.get(j, 0.0))] for j in self.feeder.bus_names}
        for c, site in enumerate(self.campuses):
            p[site.bus] = [p[site.bus][0] + float(peak[c])]
            q[site.bus] = [q[site.bus][0] + site.q_per_p * float(peak[c])]
        return p, q

    def _loads(self, s: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        p = {j: [self.bg_p.get(j, 0.0)] * self.steps for j in self.feeder.bus_names}
        q = {j: [self.bg_q.get(j, 0.0)] * self.steps for j in self.feeder.bus_names}
        for c, site in enumerate(self.campuses):
            p[site.bus] = [a + float(b) for a, b in zip(p[site.bus], self.xi[s, c])]
            q[site.bus] = [a + site.q_per_p * float(b) for a, b in zip(q[site.bus], self.xi[s, c])]
        return p, q

    def build(self, blk: pyo.Block, link: Mapping[Hashable, Any], s: int) -> Any:
        """Add scenario ``s``'s Stage-II problem to ``blk``; return Q_s (docstring above)."""
        T = list(range(self.steps))
        dt_h = self.params.dt_h
        blk.fcm = pyo.Block(range(len(self.candidates)))
        inj: dict[str, list[Any]] = {}
        for i, cand in enumerate(self.candidates):
            n = link[cand.key]
            b = blk.fcm[i]
            tech = cand.tech
            p_cap = cand.p_mw_per_module * n
            p_max = cand.p_mw_per_module * cand.max_modules
            spec = spec_from_catalog(tech)
            if isinstance(tech, StorageType):
                e_cap = cand.e_mwh_per_module * n
                add_storage(b, T, dt_h, spec, p_cap=p_cap, e_cap=e_cap,
                            e_init=tech.soc_init * e_cap, e_target=tech.soc_init * e_cap,
                            p_max=p_max)
            elif isinstance(tech, GeneratorType):
                add_generator(b, T, dt_h, spec, p_cap=p_cap, p_max=p_max)
            elif isinstance(tech, DRType):
                add_dr(b, T, dt_h, spec, p_cap=p_cap, e_cap=cand.e_mwh_per_module * n,
                       p_max=p_max)
            else:  # pragma: no cover - the catalog union has three members
                raise TypeError(type(tech).__name__)
            inj.setdefault(cand.bus, []).append(b.p_mw)
        blk.net = pyo.Block()
        build_network(blk.net, self.feeder, T, self.params, injections=inj,
                      operating_point=self.operating_point)
        blk.net.p_sub_prev_mw = self.p_sub_init
        blk.sched = pyo.Param(T, mutable=True, initialize=lambda _, t: float(self.schedule[t]))
        blk.imb_up = pyo.Var(T, domain=pyo.NonNegativeReals)
        blk.imb_dn = pyo.Var(T, domain=pyo.NonNegativeReals)
        blk.imb_def = pyo.Constraint(
            T, rule=lambda b, t: b.net.p_sub_mw[t] - b.sched[t] == b.imb_up[t] - b.imb_dn[t]
        )
        self.set_scenario(blk, s)
        w = self.weights
        storage = [blk.fcm[i] for i, c in enumerate(self.candidates)
                   if isinstance(c.tech, StorageType)]
        blk.imbalance_mwh = pyo.Expression(expr=sum((blk.imb_up[t] + blk.imb_dn[t]) * dt_h for t in T))
        blk.op_cost = pyo.Expression(expr=sum(blk.fcm[i].op_cost for i in blk.fcm))
        blk.target_shortfall_mwh = pyo.Expression(expr=sum(b.e_short for b in storage))
        blk.cost = pyo.Expression(
            expr=w.imbalance_per_mwh * blk.imbalance_mwh
            + getattr(w, "soc_shortfall_per_mwh", w.imbalance_per_mwh) * blk.target_shortfall_mwh
            + w.ramp_violation_per_mwh * blk.net.ramp_violation_mwh
            + w.unserved_per_mwh * blk.net.unserved_mwh
            + w.voltage_slack_per_pu_step * blk.net.voltage_slack_pu
            + w.thermal_slack_per_mva_step * blk.net.thermal_slack_mva
            + w.operating_cost_scale * blk.op_cost
        )
        return blk.cost

    def set_scenario(self, blk: pyo.Block, s: int) -> None:
        """Load scenario ``s``'s bus loads (background + campus) into a built block."""
        p, q = self._loads(s)
        set_loads(blk.net, p, q)


@dataclass
class SitingResult:
    """What ``siting.json`` holds (DESIGN.md §5 plus budget, method and provenance)."""

    placements: list[Placement]
    objective: float
    capex: float
    budget: float
    expected_cost: float
    cvar: float
    worst_case_probabilities: list[float]
    ambiguity: str
    radius: float
    alpha: float
    beta: float
    scenarios: int
    solve_s: float
    mip_gap: float
    method: str
    status: str = "optimal"
    bound: float = math.nan
    recourse: str = "milp"
    shock_events: float = 1.0
    modules: dict[str, float] = field(default_factory=dict)
    feeder_source: str = ""
    feeder_scale: float = 1.0
    feeder_buses: int = 0
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SITING_FORMAT,
            "placements": [p.model_dump(exclude_none=True) for p in self.placements],
            "objective": self.objective, "capex": self.capex, "budget": self.budget,
            "expected_cost": self.expected_cost, "cvar": self.cvar,
            "worst_case_probabilities": list(self.worst_case_probabilities),
            "ambiguity": self.ambiguity, "radius": self.radius, "alpha": self.alpha,
            "beta": self.beta, "scenarios": self.scenarios, "solve_s": self.solve_s,
            "mip_gap": self.mip_gap, "method": self.method, "status": self.status,
            "bound": self.bound, "recourse": self.recourse, "shock_events": self.shock_events,
            "modules": self.modules,
            "feeder": {"source": self.feeder_source, "scale": self.feeder_scale,
                       "buses": self.feeder_buses},
            "seed": self.seed,
        }


def placements_from(candidates: Sequence[Candidate], modules: Mapping[Hashable, float],
                    tol: float = 1e-6) -> list[Placement]:
    """Placement rows ``{kind, bus, p_mw = p_k n_k, e_mwh = e_k n_k}`` for every n_k > 0."""
    out = []
    for c in candidates:
        n = float(modules.get(c.key, 0.0))
        if n > tol:
            out.append(Placement(kind=c.kind, bus=c.bus, p_mw=round(n * c.p_mw_per_module, 9),
                                 e_mwh=round(n * c.e_mwh_per_module, 9)))
    return out


def siting_result(
    sol: TwoStageSolution,
    candidates: Sequence[Candidate],
    spec: RiskSpec,
    budget: float,
    shock_events: float,
    **provenance: Any,
) -> SitingResult:
    """Turn a solved two-stage problem into a :class:`SitingResult`."""
    modules = {k: (round(v) if abs(v - round(v)) < 1e-6 else v) for k, v in sol.link.items()}
    return SitingResult(
        placements=placements_from(candidates, modules),
        objective=sol.objective, capex=sol.first_stage_cost, budget=float(budget),
        expected_cost=sol.risk.expected, cvar=sol.risk.cvar,
        worst_case_probabilities=[float(p) for p in sol.risk.probabilities],
        ambiguity=spec.ambiguity, radius=spec.radius, alpha=spec.alpha, beta=spec.beta,
        scenarios=len(sol.recourse_costs), solve_s=sol.solve_s, mip_gap=sol.gap,
        method=sol.method, status=sol.status, bound=sol.bound,
        recourse="lp" if sol.recourse_relaxed else "milp", shock_events=float(shock_events),
        modules={f"{k[0]}@{k[1]}": float(v) for k, v in modules.items() if abs(v) > 1e-9},
        **provenance,
    )


def build_problem(
    scenario: Any,
    feeder: FeederData,
    trajectories: np.ndarray,
) -> tuple[TwoStageProblem, list[Candidate], RiskSpec]:
    """The Stage-I problem of a validated scenario on ``feeder`` with sampled campus draws
    ``trajectories`` (N, campuses, T) in MW at the siting step ``siting.step_s``.

    ``feeder`` is the scenario's one compiled feeder (:func:`scenarios.feeder.
    open_scenario_feeder`): the network is calibrated at its AC base case, the source held
    at the base case's source-bus voltage (the scenario's ``grid.v_source_pu``), and load is
    shed only when ``siting.allow_shedding`` says so (the plant cannot shed)."""
    src = scenario.path or "scenario"
    siting: SitingConfig = scenario.siting
    catalog = scenario.fcm.catalog
    candidates = make_candidates(siting, catalog, feeder, src)
    campuses = []
    for i, c in enumerate(scenario.campus):
        bus = str(c.bus).lower()
        if not feeder.has_bus(bus):
            raise ScenarioError(src, f"campus[{i}].bus", f"bus '{c.bus}' is not in feeder "
                                f"{feeder.name}; allowed: {_bus_range(feeder)}")
        campuses.append(CampusSite(bus, c.power_factor))
    grid = scenario.grid
    op = base_operating_point(feeder)
    v_source = op.v_pu[feeder.source_bus] if op is not None else feeder.v_source_pu
    params = NetworkParams(
        dt_s=float(siting.step_s), v_min_pu=grid.v_min_pu, v_max_pu=grid.v_max_pu,
        v_source_pu=float(v_source), ramp_limit_mw_per_min=grid.ramp_limit_mw_per_min,
        loading_frac=grid.max_loading_pct / 100.0, allow_shedding=siting.allow_shedding,
    )
    recourse = FeederRecourse(
        feeder, candidates, trajectories, campuses, params, scenario.controller.weights,
        background_scale=grid.background_load_scale, operating_point=op,
    )
    spec = RiskSpec(siting.ambiguity, siting.radius, siting.alpha, siting.beta)
    n = recourse.n_scenarios
    capacity = sum(c.capacity_mw for c in scenario.campus)
    distances = ground_distances(trajectories, "l1", scale_mw=capacity) \
        if spec.ambiguity == "wasserstein" else None
    problem = TwoStageProblem(
        first_stage=first_stage_builder(candidates, siting.budget, siting.integer_modules,
                                        siting.min_capacity_mw),
        recourse=recourse, p0=nominal_probabilities(n), risk=spec, distances=distances,
        recourse_weight=siting.shock_events,
    )
    return problem, candidates, spec


def site(scenario: Any, feeder: FeederData, trajectories: np.ndarray) -> SitingResult:
    """Solve Stage I for a validated scenario (no file I/O); method from ``siting.method``."""
    problem, candidates, spec = build_problem(scenario, feeder, trajectories)
    siting: SitingConfig = scenario.siting
    if siting.method == "benders" and siting.recourse == "milp":
        raise ScenarioError(scenario.path or "scenario", "siting.method",
                            "benders works on the LP relaxation of the recourse; allowed with "
                            "recourse = 'milp': extensive or auto")
    sol = solve_two_stage(problem, siting.method, time_limit_s=siting.time_limit_s,
                          mip_gap=siting.mip_gap, recourse=siting.recourse)
    log.info("stage I (%s, %s): objective %.6g, capex %.6g, gap %.2e, %.1f s",
             sol.method, sol.status, sol.objective, sol.first_stage_cost, sol.gap, sol.solve_s)
    return siting_result(
        sol, candidates, spec, siting.budget, siting.shock_events,
        feeder_source=scenario.feeder_source(), feeder_scale=float(feeder.scale),
        feeder_buses=len(feeder.buses), seed=scenario.seed,
    )


def write_siting(result: SitingResult, path: Path) -> Path:
    """Write ``siting.json`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def site_command(scenario: Any, out_dir: Path) -> Path:
    """``run_cosim.py site``: sample shocks, solve Stage I, write ``out_dir/siting.json``."""
    from models.shocks import sample_campus_trajectories
    from scenarios.feeder import open_scenario_feeder

    siting: SitingConfig = scenario.siting
    t0 = time.perf_counter()
    feeder = open_scenario_feeder(scenario).data
    make_candidates(siting, scenario.fcm.catalog, feeder, scenario.path or "scenario")
    trajectories = sample_campus_trajectories(
        scenario, siting.scenarios, scenario.seed, step_s=siting.step_s,
        hours=siting.horizon_hours,
    )
    log.info("sampled %d shock scenarios in %.2f s", siting.scenarios, time.perf_counter() - t0)
    result = site(scenario, feeder, np.asarray(trajectories, dtype=float))
    return write_siting(result, Path(out_dir) / "siting.json")


def load_siting(path: str | Path, feeder_data: FeederData,
                catalog: Mapping[str, FCMType]) -> list[Placement]:
    """Placements of a ``siting.json`` for a run on ``feeder_data`` with ``catalog``.

    Raises :class:`ScenarioError` when the file is missing or malformed, was made for
    another feeder (source bus count or scale differ), or names a bus or kind that does not
    exist here.
    """
    p = Path(path)
    text = read_user_file(p, "the siting.json written by `run_cosim.py site`")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(p, "", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("placements"), list):
        raise ScenarioError(p, "placements", "missing; a siting.json needs a list of "
                            "{kind, bus, p_mw, e_mwh}")
    feeder = data.get("feeder")
    if isinstance(feeder, dict):
        buses = feeder.get("buses")
        if buses not in (None, 0) and int(buses) != len(feeder_data.buses):
            raise ScenarioError(p, "feeder.buses",
                                f"siting made for a feeder with {buses} buses "
                                f"({feeder.get('source')}); this run's feeder "
                                f"{feeder_data.name} has {len(feeder_data.buses)}")
        scale = feeder.get("scale")
        if scale is not None and not math.isclose(float(scale), feeder_data.scale, rel_tol=1e-9):
            raise ScenarioError(p, "feeder.scale",
                                f"siting made at scale {scale}; this run's feeder has scale "
                                f"{feeder_data.scale:g}; allowed: a siting for the same scale")
    out = []
    for i, row in enumerate(data["placements"]):
        try:
            pl = Placement.model_validate(row)
        except Exception as exc:  # pydantic ValidationError, or a non-dict row
            raise ScenarioError(p, f"placements[{i}]",
                                f"not a valid placement ({_first_line(exc)}); "
                                "allowed: {kind, bus, p_mw > 0, e_mwh >= 0}") from None
        if pl.kind not in catalog:
            raise ScenarioError(p, f"placements[{i}].kind",
                                f"kind '{pl.kind}' is not in the FCM catalog; allowed: "
                                f"{', '.join(sorted(catalog))}")
        if not feeder_data.has_bus(pl.bus):
            raise ScenarioError(p, f"placements[{i}].bus",
                                f"bus '{pl.bus}' is not in feeder {feeder_data.name}; allowed: "
                                f"{_bus_range(feeder_data)}")
        out.append(pl.model_copy(update={"bus": str(pl.bus).lower()}))
    return out


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
