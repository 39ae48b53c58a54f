"""The controller factory: a controller by name, with what it needs passed in.

``none`` and ``rule`` are :mod:`controllers.baseline`'s; ``mpc`` is
:class:`controllers.stage2.RollingMPC` with a rule controller as its fallback (acting at the
re-solve period) and, with ``controller.trim = "ramp"``, the rule controller's ramp guard
(rule 5, acting every co-simulation step). The MPC itself knows neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controllers.baseline import IdleController, RuleController, RuleParams, rule_params_from_scenario
from controllers.forecast import Forecaster, make_forecaster
from controllers.horizon import MPCParams
from controllers.interface import Controller
from controllers.stage2 import RollingMPC
from models.errors import ScenarioError
from models.fcm_catalog import FCMType, Placement, unknown_kind
from models.network import FeederData

#: the names ``controller.kind`` may take (``external``: the set-points come from Modbus
#: writes, docs/hil.md; the controller in the loop is then idle)
CONTROLLERS = ("none", "rule", "mpc", "external")


def make_mpc(feeder: FeederData, placements: Sequence[Placement], catalog: Mapping[str, FCMType],
             params: MPCParams, forecaster: Forecaster | None = None) -> RollingMPC:
    """The rolling MPC with its fallback (a :class:`RuleController` stepping at
    ``resolve_period_s``) and, with ``trim = "ramp"`` and a plant step, its ramp guard (the
    rule controller at ``apply_step_s`` using ``trim_ramp_frac`` of the ramp allowance)."""
    fallback = RuleController(
        feeder, placements, catalog,
        RuleParams(step_s=params.resolve_period_s,
                   ramp_limit_mw_per_min=params.ramp_limit_mw_per_min,
                   v_min_pu=params.v_min_pu),
    )
    guard = None
    if params.trim == "ramp" and params.apply_step_s is not None:
        guard = RuleController(
            feeder, placements, catalog,
            RuleParams(step_s=params.apply_step_s,
                       ramp_limit_mw_per_min=params.ramp_limit_mw_per_min,
                       v_min_pu=params.v_min_pu, ramp_use_frac=params.trim_ramp_frac),
        )
    return RollingMPC(feeder, placements, catalog, params, forecaster, fallback=fallback, guard=guard)


def make_controller(kind: str, feeder: FeederData, placements: Sequence[Placement],
                    catalog: Mapping[str, FCMType], scenario: Any, forecaster: Any = None) -> Controller:
    """The controller named by ``controller.kind``: ``none``, ``rule`` or ``mpc``.

    ``forecaster`` overrides the one ``controller.forecaster`` selects (e.g. a
    :class:`controllers.forecast.PerfectForecaster` holding the realised campus series).
    """
    for i, pl in enumerate(placements):
        if (msg := unknown_kind(pl.kind, catalog)) is not None:
            raise ScenarioError("fcm", f"placements[{i}].kind", msg)
    if kind in ("none", "external"):
        return IdleController(placements)
    if kind == "rule":
        return RuleController(feeder, placements, catalog, rule_params_from_scenario(scenario))
    if kind == "mpc":
        if forecaster is None:
            forecaster = make_forecaster(scenario.controller.forecaster, scenario)
        return make_mpc(feeder, placements, catalog, MPCParams.from_scenario(scenario), forecaster)
    raise ScenarioError("controller", "kind",
                        f"unknown controller {kind!r}; allowed: {', '.join(CONTROLLERS)}")
