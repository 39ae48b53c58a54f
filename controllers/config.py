"""Scenario sections for the controllers: Stage-II MPC (``[controller]``) and Stage-I siting
(``[siting]``). Validated once at the edge by :mod:`scenarios.config`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, field_validator

from models.schema import StrictModel


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


class ControllerConfig(StrictModel):
    """``[controller]``: which controller runs in the loop and how the MPC is set up."""

    kind: Literal["none", "rule", "mpc"] = "mpc"
    horizon_steps: int = Field(24, ge=1)
    horizon_step_s: PositiveFloat = 300.0
    resolve_every_steps: int = Field(5, ge=1)
    time_limit_s: PositiveFloat = 5.0
    # Wall time a re-solve (update and solve) may take in a real-time run (--realtime);
    # slower ones count in controller_deadline_misses (docs/kpis.md, docs/hil.md).
    deadline_s: PositiveFloat = 1.0
    mip_gap: float = Field(0.01, ge=0, lt=1)
    solver: str = "appsi_highs"
    # "operator": the campus operator's published forecast (controllers/forecast.py)
    forecaster: Literal["persistence", "perfect", "scenario", "operator"] = "persistence"
    linearize_at: Literal["flat", "ac"] = "ac"
    # Fast ramp guard on the held plan, every co-simulation step (controllers/baseline.py
    # rule 5; docs/optimization.md §3.5): "ramp" or "none" (setpoints held as solved).
    trim: Literal["ramp", "none"] = "ramp"
    # a: the share of the upstream allowance RΔt the import may move per step under the plan
    trim_ramp_frac: float = Field(0.5, gt=0, le=1)
    # Network rows of the Stage-II MILP: "full" (a voltage row per bus, a line polygon per
    # rated branch) or "reduced" (a voltage row per group of buses that move together, only
    # the branches whose flow the FCMs change; for large feeders, docs/optimization.md
    # §1.5); "auto" reduces above 300 buses.
    network_rows: Literal["auto", "full", "reduced"] = "auto"
    weights: ObjectiveWeights = ObjectiveWeights()

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
    step_s: PositiveFloat = 300.0
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
