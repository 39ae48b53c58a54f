"""Stage I: DRO-CVaR siting and sizing of FCMs (docs/stage1.md).

First stage, for every candidate k = (kind, bus) of ``siting.candidate_buses × siting.kinds``::

    x_k ∈ {0, 1},   x_k ≤ n_k ≤ M_k x_k,   n_k ∈ ℤ (or ℝ when integer_modules = false)
    0 ≤ ΔS_k ≤ (σ̄_k − σ_k) p_k n_k                              (extra inverter MVA)
    capex(n) = Σ_k C_k n_k + Σ_k 1000 c^S_k ΔS_k ≤ B,   Σ_k p_k n_k ≥ P^min

(``M_k`` = catalog ``max_modules``, ``C_k`` = ``capex_per_module``, ``p_k`` =
``p_mw_per_module``, ``B`` = ``siting.budget``, ``P^min`` = ``siting.min_capacity_mw``; for an
inverter, ``σ_k`` = ``s_over_p``, ``σ̄_k`` = ``s_over_p_max``, ``c^S_k`` = ``capex_per_kva``,
so that its rating is ``S̄_k = σ_k p_k n_k + ΔS_k``; 0 ≤ ΔS_k ≤ 0 for other kinds).

Second stage per sampled shock scenario s (:class:`FeederRecourse`): the Stage-II problem
over the siting horizon from nominal device states, built by the builder Stage II uses
(:class:`controllers.horizon.HorizonProblem`: the same network form, FCM blocks and objective
terms) with sizes ``P̄_k = p_k n_k``, ``Ē_k = e_k n_k``, ``S̄_k``; its cost is Q_s(n, ΔS). The
reactive reserve term values an inverter's room near a campus, so the rating ``S̄`` and a
site close to the campus gain from the sags they ride through (docs/stage1.md).

Objective: ``min capex(n) + R(w·Q(n))`` with R the DRO-CVaR functional of
:mod:`controllers.risk` and w = ``siting.shock_events`` (how many shock events of the siting
horizon the capex pays for). Solved by :mod:`controllers.decomposition`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Hashable, Literal, Mapping, Sequence

import numpy as np
import pyomo.environ as pyo
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controllers.config import SitingConfig
from controllers.decomposition import (
    Progress,
    TwoStageProblem,
    TwoStageSolution,
    evaluate_recourse,
    no_progress,
    solve_two_stage,
)
from controllers.horizon import CampusSite, HorizonProblem, MPCParams, Unit
from controllers.network import OperatingPoint, base_operating_point, load_arrays
from controllers.risk import RiskSpec, ground_distances, nominal_probabilities
from models.errors import ScenarioError, parse_user_file, pydantic_problem
from models.schema import StrictModel, fields_at
from models.fcm import placement_problem, technology_of
from models.fcm_catalog import FCMType, Placement, unknown_kind
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
        return technology_of(self.tech).e_mwh_per_module(self.tech)

    @property
    def capex_per_module(self) -> float:
        return float(self.tech.capex_per_module)

    @property
    def max_modules(self) -> int:
        return int(self.tech.max_modules)

    @property
    def technology(self) -> Any:
        return technology_of(self.tech)

    @property
    def s_extra_max_mva(self) -> float:
        """The largest extra inverter rating ΔS (MVA) at ``max_modules``; 0: not sized."""
        return self.technology.s_extra_max(self.tech) * self.p_mw_per_module * self.max_modules

    @property
    def s_key(self) -> tuple[str, str, str]:
        """The linking key of ΔS_k."""
        return ("s_extra", self.kind, self.bus)


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
        if (msg := unknown_kind(kind, catalog)) is not None:
            raise ScenarioError(source, f"siting.kinds[{i}]", msg)
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
    cheapest = min((c.capex_per_module for c in cands), default=0.0)
    if siting.budget < cheapest:
        raise ScenarioError(source, "siting.budget",
                            f"budget {siting.budget:,.0f} cannot buy a single module (the "
                            f"cheapest costs {cheapest:,.0f}), so the siting would be empty; "
                            f"allowed: budget >= {cheapest:,.0f}")
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

    Adds ``x[k]`` (binary), ``n[k]`` (module count), the bounds ``x_k ≤ n_k ≤ M_k x_k``,
    for each inverter candidate ``ds[k]`` (extra MVA, ``ΔS_k ≤ (σ̄ − σ) p_k n_k``), the
    budget ``Σ C_k n_k + 1000 Σ c^S_k ΔS_k ≤ B`` and the capacity floor
    ``Σ p_k n_k ≥ P^min``; returns ``(capex expression, {key: n[key]} ∪ {s_key: ds[key]})``.
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
        sized = [k for k in keys if cands[k].s_extra_max_mva > 0]
        blk.KS = pyo.Set(initialize=sized, dimen=2, ordered=True)
        blk.ds = pyo.Var(blk.KS, domain=pyo.NonNegativeReals,
                         bounds=lambda _, *k: (0, cands[k].s_extra_max_mva))
        blk.ds_max = pyo.Constraint(
            blk.KS, rule=lambda b, *k: b.ds[k] <= cands[k].technology.s_extra_max(cands[k].tech)
            * cands[k].p_mw_per_module * b.n[k])
        blk.capex = pyo.Expression(
            expr=sum(cands[k].capex_per_module * blk.n[k] for k in keys)
            + sum(1e3 * float(cands[k].tech.capex_per_kva) * blk.ds[k] for k in sized))
        blk.budget = pyo.Constraint(expr=blk.capex <= float(budget))
        if min_capacity_mw > 0:
            blk.capacity = pyo.Constraint(
                expr=sum(cands[k].p_mw_per_module * blk.n[k] for k in keys) >= float(min_capacity_mw)
            )
        link = {k: blk.n[k] for k in keys}
        link.update({cands[k].s_key: blk.ds[k] for k in sized})
        return blk.capex, link

    return build


class FeederRecourse:
    """The Stage-II problem of one shock scenario as Stage I's recourse (docs/stage1.md §1).

    Each scenario's block is :class:`controllers.horizon.HorizonProblem`, the builder the
    rolling controller uses, so its cost ``Q_s`` has the same terms (imbalance, ramp,
    unserved energy, restoration, voltage and thermal slack, operating cost, storage end
    target), constraints and network form: over ``T`` steps of Δt from nominal device states
    (storage at ``soc_init``, generators off, no DR debt), with sizes ``P̄_k = p_k n_k``,
    ``Ē_k = e_k n_k`` (big-M ``p_k M_k``), campus draws ξ_s (MW) added to the bus loads and
    the substation schedule ``P^sched_t`` (MW). DR curtails at most the background load of
    its bus. Under the LP relaxation (Benders, ``recourse = "lp"``) the commitment,
    charge/discharge and restoration binaries are relaxed.

    ``operating_point``: the AC point the network is linearised and calibrated at
    (:func:`controllers.network.base_operating_point`: the feeder's base case); ``None`` is
    the lossless, uncalibrated LinDistFlow. The thermal screen takes the largest bus loads
    over all scenarios and steps (:func:`controllers.network.thermal_screen`).

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
        params: MPCParams,
        *,
        schedule_mw: np.ndarray | None = None,
        background_scale: float = 1.0,
        operating_point: OperatingPoint | None = None,
    ) -> None:
        xi = np.asarray(trajectories, dtype=float)
        if xi.ndim != 3 or xi.shape[1] != len(campuses):
            raise ValueError(f"trajectories must be (N, {len(campuses)}, T), got {xi.shape}")
        self.feeder = feeder
        self.candidates = list(candidates)
        self.xi = xi
        self.campuses = list(campuses)
        self.n_scenarios, _, self.steps = xi.shape
        self.params = replace(params, horizon_steps=self.steps, campuses=tuple(campuses),
                              apply_step_s=None)
        self.weights = params.weights
        self.operating_point = operating_point
        p_nom, q_nom = load_arrays(feeder)
        self.bg_p, self.bg_q = p_nom * background_scale, q_nom * background_scale
        if schedule_mw is None:
            schedule_mw = self.bg_p.sum() + xi.sum(axis=1).mean(axis=0)
        self.schedule = np.broadcast_to(np.asarray(schedule_mw, dtype=float), (self.steps,)).copy()
        self.p_sub_init = float(self.schedule[0])
        bi = feeder.bus_index
        peak = np.hypot(self.bg_p, self.bg_q)
        for c, site in enumerate(self.campuses):
            peak[bi[site.bus]] += float(np.abs(xi[:, c]).max()) * math.hypot(1.0, site.tan_phi)
        self.peak_load_mva = dict(zip(feeder.bus_names, peak.tolist()))

    def _loads(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Bus loads of scenario ``s``, ``(n_bus, T)``: background plus campus draws."""
        p = np.repeat(self.bg_p[:, None], self.steps, axis=1)
        q = np.repeat(self.bg_q[:, None], self.steps, axis=1)
        bi = self.feeder.bus_index
        for c, site in enumerate(self.campuses):
            p[bi[site.bus]] += self.xi[s, c]
            q[bi[site.bus]] += site.tan_phi * self.xi[s, c]
        return p, q

    def units(self, link: Mapping[Hashable, Any]) -> list[Unit]:
        """The candidates as horizon units sized by the first stage's module counts (and
        extra inverter ratings ΔS)."""
        out = []
        for c in self.candidates:
            p_cap = c.p_mw_per_module * link[c.key]
            p_max = c.p_mw_per_module * c.max_modules
            s_cap = s_max = None
            if c.technology.inverter:
                sigma = float(c.tech.s_over_p)
                s_cap = sigma * p_cap + (link[c.s_key] if c.s_key in link else 0.0)
                s_max = sigma * p_max + c.s_extra_max_mva
            out.append(Unit(f"{c.kind}@{c.bus}", c.bus, c.tech, p_cap,
                            c.e_mwh_per_module * link[c.key], p_max, s_cap, s_max))
        return out

    def build(self, blk: pyo.Block, link: Mapping[Hashable, Any], s: int) -> Any:
        """Add scenario ``s``'s Stage-II problem to ``blk``; return Q_s (docstring above)."""
        pb = HorizonProblem(blk, self.feeder, self.units(link), self.params,
                            self.operating_point, peak_load_mva=self.peak_load_mva)
        blk.horizon = pb  # a plain attribute: set_scenario updates the same problem
        pb.set_schedule(self.schedule)
        v_src = self.params.v_source_pu
        pb.set_grid(self.p_sub_init, self.operating_point, v_src * v_src)
        self.set_scenario(blk, s)
        return blk.cost

    def set_scenario(self, blk: pyo.Block, s: int) -> None:
        """Load scenario ``s``'s bus loads (background + campus) into a built block."""
        p, q = self._loads(s)
        pb: HorizonProblem = blk.horizon
        pb.set_loads(p, q, np.repeat(self.bg_p[:, None], self.steps, axis=1))
        pb.refresh()


class SitingFeeder(StrictModel):
    """``siting.json``'s ``feeder``: the feeder the siting was made for (required: a run
    checks that it is its own)."""

    source: str
    scale: float = Field(gt=0)
    buses: int = Field(ge=1)


class IntegerRecourse(BaseModel):
    """The chosen siting's value with the recourse's integers kept (commitment, charge or
    discharge, restoration), at the fixed module counts: ``objective = capex + R(w·Q)``."""

    model_config = ConfigDict(extra="forbid")

    objective: float
    expected_cost: float
    cvar: float
    recourse_costs: list[float]
    status: str
    solve_s: float


class SitingResult(BaseModel):
    """What ``siting.json`` holds (DESIGN.md §5 plus budget, method and provenance).

    ``recourse`` says how the second stage was priced while siting: ``"lp"`` (its LP
    relaxation; ``objective``, ``expected_cost``, ``cvar``, ``bound`` and ``mip_gap`` are
    then the relaxation's) or ``"milp"`` (integers kept). ``integer_recourse`` is the chosen
    siting re-evaluated with integer recourse, beside them. Written and read by
    :meth:`write` and :meth:`read`; unknown keys of other versions are ignored on reading.
    """

    model_config = ConfigDict(extra="ignore")

    format: Literal[SITING_FORMAT] = SITING_FORMAT  # type: ignore[valid-type]
    placements: list[Placement]
    objective: float = math.nan
    capex: float = math.nan
    budget: float = math.nan
    expected_cost: float = math.nan
    cvar: float = math.nan
    worst_case_probabilities: list[float] = Field(default_factory=list)
    ambiguity: str = ""
    radius: float = math.nan
    alpha: float = math.nan
    beta: float = math.nan
    scenarios: int = 0
    solve_s: float = math.nan
    mip_gap: float = math.nan
    method: str = ""
    status: str = "optimal"
    bound: float = math.nan
    recourse: Literal["lp", "milp"] = "milp"
    integer_recourse: IntegerRecourse | None = None
    shock_events: float = 1.0
    modules: dict[str, float] = Field(default_factory=dict)
    feeder: SitingFeeder
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump()
        out["placements"] = [pl.model_dump(exclude_none=True) for pl in self.placements]
        return out

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> "SitingResult":
        """Read a ``siting.json``; :class:`ScenarioError` naming the file and the field when it
        is missing, not JSON, or a field is not what is allowed."""
        p = Path(path)
        data = parse_user_file(p, "the siting.json written by `run_cosim.py site`", json.loads,
                               "JSON")
        if not isinstance(data, dict):
            raise ScenarioError(p, "", f"not a JSON object but {type(data).__name__}; give the "
                                "siting.json written by `run_cosim.py site`")
        if "placements" in data and not isinstance(data["placements"], list):
            raise ScenarioError(p, "placements", f"must be a list of {{kind, bus, p_mw, e_mwh}}, "
                                f"got {data['placements']!r}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            problem = pydantic_problem(err, p, fields=lambda loc: fields_at(cls, loc))
            allowed = ("{kind, bus, p_mw > 0, e_mwh >= 0}" if problem.field.startswith("placements")
                       else "what `run_cosim.py site` writes")
            raise ScenarioError(p, problem.field, f"{problem.message}; allowed: {allowed}") from None


def placements_from(candidates: Sequence[Candidate], modules: Mapping[Hashable, float],
                    tol: float = 1e-6) -> list[Placement]:
    """Placement rows ``{kind, bus, p_mw = p_k n_k, e_mwh = e_k n_k}`` for every n_k > 0, and
    an inverter's ``s_kva = 1000 (σ_k p_k n_k + ΔS_k)``."""
    out = []
    for c in candidates:
        n = float(modules.get(c.key, 0.0))
        if n > tol:
            p_mw = round(n * c.p_mw_per_module, 9)
            s_kva = None
            if c.technology.inverter:
                ds = max(float(modules.get(c.s_key, 0.0)), 0.0)
                s_kva = round(1e3 * (float(c.tech.s_over_p) * p_mw + ds), 6)
            out.append(Placement(kind=c.kind, bus=c.bus, p_mw=p_mw,
                                 e_mwh=round(n * c.e_mwh_per_module, 9), s_kva=s_kva))
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


def integer_recourse(sol: TwoStageSolution, problem: TwoStageProblem,
                     time_limit_s: float | None = None, mip_gap: float = 1e-4,
                     progress: Progress = no_progress) -> IntegerRecourse:
    """The solved siting's value with integer recourse (:class:`IntegerRecourse`): the
    relaxation's own values when the recourse kept its integers, else every scenario's
    Stage-II MILP re-solved at the chosen module counts
    (:func:`controllers.decomposition.evaluate_recourse`)."""
    if not sol.recourse_relaxed:
        return IntegerRecourse(objective=sol.objective, expected_cost=sol.risk.expected,
                               cvar=sol.risk.cvar, recourse_costs=[float(q) for q in sol.recourse_costs],
                               status=sol.status, solve_s=0.0)
    t0 = time.perf_counter()
    link = {k: (round(v) if abs(v - round(v)) < 1e-6 else v) for k, v in sol.link.items()}
    q, risk, status = evaluate_recourse(problem, link, time_limit_s=time_limit_s, mip_gap=mip_gap,
                                        progress=progress)
    return IntegerRecourse(objective=sol.first_stage_cost + risk.value, expected_cost=risk.expected,
                           cvar=risk.cvar, recourse_costs=[float(x) for x in q], status=status,
                           solve_s=time.perf_counter() - t0)


def build_problem(
    scenario: Any,
    feeder: FeederData,
    trajectories: np.ndarray,
    network_form: str = "compact",
) -> tuple[TwoStageProblem, list[Candidate], RiskSpec]:
    """The Stage-I problem of a validated scenario on ``feeder`` with sampled campus draws
    ``trajectories`` (N, campuses, T) in MW at the siting step ``siting.step_s``.

    ``feeder`` is the scenario's one compiled feeder (:func:`scenarios.feeder.
    open_scenario_feeder`): the network is calibrated at its AC base case, the source held
    at the base case's source-bus voltage (the scenario's ``grid.v_source_pu``), and load is
    shed only when ``siting.allow_shedding`` says so (the plant cannot shed). ``network_form``
    is the horizon problem's: ``"compact"`` (Stage II's, the default) or ``"branch"`` (the same
    model with flow variables; always when shedding is allowed). Measured (BENCHMARKS.md,
    "One optimization core"): on IEEE 123 the compact form's extensive LP reached an incumbent
    half the branch form's within 300 s and its integer re-evaluation took 4 s against 109 s;
    on ieee33 the branch form's LP is 1.1-2x faster."""
    src = scenario.path or "scenario"
    siting: SitingConfig = scenario.siting
    catalog = scenario.fcm.catalog
    candidates = make_candidates(siting, catalog, feeder, src)
    campuses = campus_sites(scenario, feeder)
    op = base_operating_point(feeder)
    v_source = op.v_pu[feeder.source_bus] if op is not None else feeder.v_source_pu
    params = replace(MPCParams.from_scenario(scenario), horizon_step_s=float(siting.step_s),
                     v_source_pu=float(v_source), allow_shedding=siting.allow_shedding,
                     screen_load_factor=None, network_form=network_form)
    recourse = FeederRecourse(
        feeder, candidates, trajectories, campuses, params,
        background_scale=scenario.grid.background_load_scale, operating_point=op,
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


def campus_sites(scenario: Any, feeder: FeederData) -> list[CampusSite]:
    """The scenario's campuses on ``feeder`` (ScenarioError for a bus it does not have)."""
    out = []
    for i, c in enumerate(scenario.campus):
        if not feeder.has_bus(str(c.bus).lower()):
            raise ScenarioError(scenario.path or "scenario", f"campus[{i}].bus",
                                f"bus '{c.bus}' is not in feeder {feeder.name}; allowed: "
                                f"{_bus_range(feeder)}")
        out.append(CampusSite.of(c))
    return out


def site(scenario: Any, feeder: FeederData, trajectories: np.ndarray,
         progress: Progress = no_progress) -> SitingResult:
    """Solve Stage I for a validated scenario (no file I/O); method from ``siting.method``;
    ``progress`` is told how far each phase has come (:class:`ProgressBar`)."""
    problem, candidates, spec = build_problem(scenario, feeder, trajectories)
    siting: SitingConfig = scenario.siting
    sol = solve_two_stage(problem, siting.method, time_limit_s=siting.time_limit_s,
                          mip_gap=siting.mip_gap, recourse=siting.recourse, progress=progress)
    log.info("stage I (%s, %s): objective %.6g, capex %.6g, gap %.2e, %.1f s",
             sol.method, sol.status, sol.objective, sol.first_stage_cost, sol.gap, sol.solve_s)
    exact = integer_recourse(sol, problem, siting.time_limit_s, siting.mip_gap, progress)
    if sol.recourse_relaxed:
        log.info("stage I: the siting with integer recourse: objective %.6g (relaxation %.6g)",
                 exact.objective, sol.objective)
    return siting_result(
        sol, candidates, spec, siting.budget, siting.shock_events, integer_recourse=exact,
        feeder=SitingFeeder(source=scenario.feeder_source(), scale=float(feeder.scale),
                            buses=len(feeder.buses)),
        seed=scenario.seed,
    )


def write_siting(result: SitingResult, path: Path) -> Path:
    """Write ``siting.json`` atomically (:meth:`SitingResult.write`)."""
    return result.write(path)


def site_command(scenario: Any, out_dir: Path, progress: bool = True) -> Path:
    """``run_cosim.py site``: sample shocks, solve Stage I, write ``out_dir/siting.json``;
    with ``progress``, a bar on stderr over each phase's scenarios (:class:`ProgressBar`)."""
    from models.shocks import sample_campus_trajectories
    from scenarios.feeder import open_scenario_feeder

    siting: SitingConfig = scenario.siting
    t0 = time.perf_counter()
    feeder = open_scenario_feeder(scenario).data
    make_candidates(siting, scenario.fcm.catalog, feeder, scenario.path or "scenario")
    campus_sites(scenario, feeder)  # every check before the first sample
    bar = ProgressBar(enabled=progress)
    try:
        trajectories = sample_campus_trajectories(
            scenario, siting.scenarios, scenario.seed, step_s=siting.step_s,
            hours=siting.horizon_hours,
            on_sample=lambda s: bar("sampling shock scenarios", s, siting.scenarios),
        )
        log.info("sampled %d shock scenarios in %.2f s", siting.scenarios, time.perf_counter() - t0)
        result = site(scenario, feeder, np.asarray(trajectories, dtype=float), bar)
    finally:
        bar.close()
    return write_siting(result, Path(out_dir) / "siting.json")


class ProgressBar:
    """A :class:`~controllers.decomposition.Progress` drawn as one tqdm bar on stderr, reset
    at each new phase (sampling, each Benders iteration's scenario LPs, the integer
    recourse of each scenario); ``enabled=False`` draws nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int, note: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=phase, unit="scenario", file=sys.stderr,
                            dynamic_ncols=True)
        elif phase != self.phase:
            self.bar.reset(total=total)
            self.bar.set_description(phase, refresh=False)
        self.phase = phase
        if note:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_siting(path: str | Path, feeder_data: FeederData,
                catalog: Mapping[str, FCMType]) -> list[Placement]:
    """Placements of a ``siting.json`` for a run on ``feeder_data`` with ``catalog``.

    Raises :class:`ScenarioError` when the file is missing or malformed, was made for
    another feeder (source bus count or scale differ), or names a bus or kind that does not
    exist here.
    """
    p = Path(path)
    siting = SitingResult.read(p)
    fd = siting.feeder
    if fd.buses != len(feeder_data.buses):
        raise ScenarioError(p, "feeder.buses",
                            f"siting made for a feeder with {fd.buses} buses ({fd.source}); "
                            f"this run's feeder {feeder_data.name} has {len(feeder_data.buses)}")
    if not math.isclose(fd.scale, feeder_data.scale, rel_tol=1e-9):
        raise ScenarioError(p, "feeder.scale",
                            f"siting made at scale {fd.scale:g}; this run's feeder has scale "
                            f"{feeder_data.scale:g}; allowed: a siting for the same scale")
    out = []
    for i, pl in enumerate(siting.placements):
        if (msg := unknown_kind(pl.kind, catalog)) is not None:
            raise ScenarioError(p, f"placements[{i}].kind", msg)
        if not feeder_data.has_bus(pl.bus):
            raise ScenarioError(p, f"placements[{i}].bus",
                                f"bus '{pl.bus}' is not in feeder {feeder_data.name}; allowed: "
                                f"{_bus_range(feeder_data)}")
        if (msg := placement_problem(pl, catalog[pl.kind])) is not None:
            field, _, msg = msg.partition(": ")
            raise ScenarioError(p, f"placements[{i}].{field}", msg)
        out.append(pl.model_copy(update={"bus": str(pl.bus).lower()}))
    return out
