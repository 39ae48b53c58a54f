"""Scenario sections for the controllers: Stage-II MPC (``[controller]``) and Stage-I siting
(``[siting]``). Validated once at the edge by :mod:`scenarios.config`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, field_validator, model_validator

from models.schema import StrictModel

#: Longest MPC horizon, in steps and in simulated seconds (docs/conventions.md, "Limits"):
#: 1,000 steps is a week at 10 min or a day at 90 s, and already about a million voltage
#: rows on a 1,000-bus feeder; a week is longer than any forecast the controller can read.
MAX_HORIZON_STEPS = 1_000
MAX_HORIZON_S = 7 * 86_400.0
#: Largest Stage-I problem: scenarios × siting steps (docs/conventions.md, "Limits").
#: The default is 20 × 24 = 480; BENCHMARKS.md measures 200 × 24 on IEEE 33 at about two
#: minutes with Benders, whose every iteration solves one LP per scenario.
MAX_SITING_SCENARIO_STEPS = 100_000


def _at_most(value: float, most: float, what: str, unit: str) -> None:
    """ValueError ``"what = value; allowed: at most most unit"`` when ``value > most``."""
    if value > most:
        raise ValueError(f"{what} = {value:,.6g}; allowed: at most {most:,.6g} {unit}")


class ObjectiveWeights(StrictModel):
    """Weights of the Stage-II objective terms (DESIGN.md §3), in $ per unit of the term."""

    imbalance_per_mwh: NonNegativeFloat = 1_000.0
    ramp_violation_per_mwh: NonNegativeFloat = 5_000.0
    unserved_per_mwh: NonNegativeFloat = 10_000.0
    restoration_per_step: NonNegativeFloat = 10.0
    voltage_slack_per_pu_step: NonNegativeFloat = 50_000.0
    thermal_slack_per_mva_step: NonNegativeFloat = 5_000.0
    operating_cost_scale: NonNegativeFloat = 1.0
    soc_shortfall_per_mwh: NonNegativeFloat = 200.0  # storage below its end-of-horizon target
    # reactive room kept near the campuses for sags, per pu of expected lift shortfall
    # (controllers/horizon.py; docs/optimization.md §3.7 derives the default)
    q_reserve_per_pu: NonNegativeFloat = 20_000.0


class ControllerConfig(StrictModel):
    """``[controller]``: which controller runs in the loop and how the MPC is set up."""

    # "external": FCM set-points only from Modbus writes (run --modbus, docs/hil.md)
    kind: Literal["none", "rule", "mpc", "external"] = "mpc"
    # K steps of Δτ: the horizon MILP has rows per bus and step, rebuilt at every re-solve,
    # and the schedule and forecasts are evaluated over it (docs/conventions.md, "Limits")
    horizon_steps: int = Field(24, ge=1, le=MAX_HORIZON_STEPS)
    horizon_step_s: float = Field(300.0, ge=1.0, le=86_400.0)
    resolve_every_steps: int = Field(5, ge=1)
    time_limit_s: PositiveFloat = 5.0
    # Wall time a re-solve (update and solve) may take in a real-time run (--realtime);
    # slower ones count in controller_deadline_misses (docs/kpis.md, docs/hil.md).
    deadline_s: PositiveFloat = 1.0
    mip_gap: float = Field(0.01, ge=0, lt=1)
    solver: str = "appsi_highs"
    # "operator": the campus operator's published forecast (controllers/forecast.py)
    forecaster: Literal["persistence", "perfect", "scenario", "operator"] = "persistence"
    # "perfect" reads the realised campus draws (columns dc.<campus>.p_mw) from this
    # timeseries.parquet of an earlier run with the same seed (the study's bound, docs/study.md)
    foresight_file: str | None = None
    linearize_at: Literal["flat", "ac"] = "ac"
    # Fast ramp guard on the held plan, every co-simulation step (controllers/baseline.py
    # rule 5; docs/optimization.md §3.5): "ramp" or "none" (setpoints held as solved).
    trim: Literal["ramp", "none"] = "ramp"
    # a: the share of the upstream allowance RΔt the import may move per step under the plan
    trim_ramp_frac: float = Field(0.5, gt=0, le=1)
    # Target lift of each campus's POI by the inverters' fault current, pu (the reactive
    # reserve, docs/optimization.md §3.7; 0: no reserve)
    q_reserve_lift_pu: float = Field(0.1, ge=0, le=0.5)
    # Network rows of the Stage-II MILP: "full" (a voltage row per bus, a line polygon per
    # rated branch) or "reduced" (a voltage row per group of buses that move together, only
    # the branches whose flow the FCMs change; for large feeders, docs/optimization.md
    # §1.5); "auto" reduces above 300 buses.
    network_rows: Literal["auto", "full", "reduced"] = "auto"
    weights: ObjectiveWeights = ObjectiveWeights()

    @model_validator(mode="after")
    def _horizon_length(self) -> "ControllerConfig":
        _at_most(self.horizon_steps * self.horizon_step_s / 3600, MAX_HORIZON_S / 3600,
                 f"horizon_steps × horizon_step_s = {self.horizon_steps} × "
                 f"{self.horizon_step_s:g} s", "h (a week)")
        return self

    @field_validator("solver")
    @classmethod
    def _solver_available(cls, v: str) -> str:
        from controllers.solve import solver_available

        if not solver_available(v):
            raise ValueError(f"solver {v!r} is not installed; allowed: appsi_highs (HiGHS, "
                             "installed with the project) or another Pyomo solver on this machine")
        return v


class SitingConfig(StrictModel):
    """``[siting]``: Stage-I DRO-CVaR placement and sizing."""

    scenarios: int = Field(20, ge=1, le=10_000)
    ambiguity: Literal["none", "l1", "wasserstein"] = "wasserstein"
    radius: NonNegativeFloat = 0.05
    alpha: float = Field(0.9, ge=0, lt=1)
    beta: float = Field(0.5, ge=0, le=1)
    budget: float = Field(2_000_000.0, gt=0)
    candidate_buses: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=lambda: ["bess", "ldes", "gen", "dr"])
    integer_modules: bool = True
    horizon_hours: float = Field(2.0, gt=0, le=168.0)
    # Stage I's own step: from a minute (finer is the plant's business) to an hour
    step_s: float = Field(300.0, ge=60.0, le=3600.0)
    method: Literal["auto", "extensive", "benders"] = "auto"
    time_limit_s: PositiveFloat = 300.0
    mip_gap: float = Field(0.01, ge=0, lt=1)
    # Required installed FCM power (MW); a budget that cannot buy it is a ScenarioError.
    min_capacity_mw: NonNegativeFloat = 0.0
    # w: shock events of one siting horizon that the capex pays for (events/year × years);
    # Stage I minimises capex + R(w·Q). See docs/stage1.md.
    shock_events: PositiveFloat = 100.0
    # How the recourse is valued: "lp" = LP relaxation of the Stage-II MILP (both methods,
    # same problem); "milp" = keep its integers (extensive form only). docs/stage1.md §4.
    recourse: Literal["lp", "milp"] = "lp"
    # May the recourse shed load (priced as unserved energy)? Off: neither Stage II nor the
    # plant can shed, so a siting that counts on shedding would not be the one that runs.
    allow_shedding: bool = False

    @property
    def steps(self) -> int:
        """Stage I's horizon steps, ``horizon_hours × 3600 / step_s`` (at least one)."""
        return max(1, int(round(self.horizon_hours * 3600.0 / self.step_s)))

    @model_validator(mode="after")
    def _method_for_recourse(self) -> "SitingConfig":
        if self.method == "benders" and self.recourse == "milp":
            raise ValueError("method: benders works on the LP relaxation of the recourse; "
                             "allowed with recourse = 'milp': extensive or auto")
        return self

    @model_validator(mode="after")
    def _problem_size(self) -> "SitingConfig":
        _at_most(self.scenarios * self.steps, MAX_SITING_SCENARIO_STEPS,
                 f"scenarios × steps = {self.scenarios} × {self.steps} (horizon_hours / step_s)",
                 "(fewer scenarios, a shorter horizon_hours or a longer step_s)")
        return self
