"""From a validated :class:`~scenarios.config.Scenario` to a mosaik World (DESIGN.md §2).

Two steps, so that every bad input is found before anything is written or started:

1. :func:`plan_world` checks what the scenario refers to against the real feeder (campus
   and FCM buses, a siting file made for this feeder, unique labels) and computes the
   day-ahead schedule (:mod:`models.day_ahead`: the campuses' expected draw and the
   base-case losses). Problems raise :class:`~models.errors.ScenarioError`.
2. :func:`build_world` starts the simulators and connects them (docs/cosim.md §2)::

       Input(background s(t)) ──load_scale──► Grid
       Campus ──p_mw,q_mvar,ups──► Injection(campus bus) ──v_pu, sags (shifted)──► Campus
       Setpoint ──p_set_mw,q_set_mvar──► FCM ──p_load_mw,q_load_mvar,fault_support──► Injection(FCM bus)
       Injection(FCM bus) ──energized (shifted)──► FCM    (no island is energised)
       Grid ──load_scale (shifted)──► FCM    (a DR device curtails at most its bus's load)
       Grid (with the load_scale it applied), Campus, FCM ──(shifted) measurements──► Controller
       everything ──► Recorder (the background as the Grid's load_scale)

   The campus forecasts go to the controller only when it reads them
   (:func:`campus_reads`): they are the campus adapter's most expensive outputs.

   Time shifts close the loops one step late: the campus sees the POI voltage of the
   previous step; the controller sees grid, campus and FCM measurements of the previous
   step (it must decide before the plant responds).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import mosaik
import numpy as np

from models.day_ahead import BaseCase, expected_campus_mw
from models.errors import ScenarioError
from models.faults import plan_faults
from models.fcm_catalog import Placement
from models.network import FeederData
from models.schedule import background_shape, day_ahead_schedule, n_blocks
from controllers.modbus import CAMPUS_READS, FCM_READS, FCM_WRITES
from scenarios.config import Scenario

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

#: Grid outputs recorded and measured (FeederSim contract).
GRID_OUTPUTS = ("converged", "pf_status", "pf_recovery", "sub_p_mw", "sub_q_mvar", "losses_mw",
                "v_min_pu", "v_max_pu", "bus_v_pu", "line_loading_pct", "branch_p_mw",
                "branch_q_mvar", "load_scale", "background_shed_mw", "fault_shots")
CAMPUS_OUTPUTS = ("p_mw", "q_mvar", "p_min_mw", "p_max_mw", "p_demand_mw", "p_unsupported_mw",
                  "online", "v_poi_pu")
FCM_OUTPUTS = ("p_set_mw", "q_set_mvar", "p_mw", "q_mvar", "soc", "soc_mwh", "committed", "cost")
CTRL_OUTPUTS = ("solved", "fallback", "solve_s", "status", "pred_bus_v_pu", "pred_sub_p_mw",
                "p_sched_mw", "seen_sub_p_mw")
#: Grid and controller attributes whose column is not ``<prefix>.<attr>`` (docs/results.md).
COLUMN_RULES = {
    "sub_p_mw": "sub.p_mw", "sub_q_mvar": "sub.q_mvar", "losses_mw": "sub.losses_mw",
    "v_min_pu": "sub.v_min_pu", "v_max_pu": "sub.v_max_pu", "p_sched_mw": "sub.p_sched_mw",
    "load_scale": "sub.load_scale", "background_shed_mw": "sub.background_shed_mw",
    "fault_shots": "sub.fault_shots",
}


@dataclass(frozen=True)
class WorldPlan:
    """Everything :func:`build_world` needs, checked against the feeder."""

    scenario: Scenario
    feeder: FeederData
    placements: tuple[Placement, ...]
    schedule_mw: tuple[float, ...]
    campus_expected_mw: dict[str, float]  # daily mean of the day-ahead estimate per campus
    background_nominal_mw: float
    initial_grid: dict[str, Any] = field(default_factory=dict)  # controller's reading at t = 0
    campus_first_block_mw: dict[str, float] = field(default_factory=dict)  # ... of each campus

    @property
    def steps(self) -> int:
        return self.scenario.simulation.steps

    @property
    def step_s(self) -> int:
        return self.scenario.simulation.step_s


@dataclass
class WorldHandles:
    """The started World and the entities a caller may want to read back."""

    world: mosaik.World
    sims: dict[str, Any]
    grid: Any
    campuses: dict[str, Any]
    fcms: dict[str, Any]
    controller: Any
    recorder: Any
    scenario: Scenario | None = None  # with the [controller] section that ran (remote: its own)


def scenario_source(scenario: Scenario) -> str:
    return scenario.path or "<scenario>"


def plan_world(scenario: Scenario, siting_file: str | Path | None = None) -> WorldPlan:
    """Check the scenario against its feeder and compute the schedule (raises ScenarioError).

    The feeder is compiled once (:func:`scenarios.feeder.open_scenario_feeder`); its
    :class:`~models.network.FeederData` goes to the controller and the AC validation, its
    fingerprint to the plant."""
    from scenarios.feeder import open_scenario_feeder

    src = scenario_source(scenario)
    dss_feeder = open_scenario_feeder(scenario)
    feeder = dss_feeder.data
    sim_cfg = scenario.simulation
    # the faults' locations, devices and rates against this feeder (ScenarioError if bad)
    plan_faults(dss_feeder, scenario.faults, scenario.events, scenario.seed, sim_cfg.step_s,
                sim_cfg.steps * sim_cfg.step_s, src)
    allowed = _allowed_buses(feeder)
    for i, c in enumerate(scenario.campus):
        _check_host_bus(feeder, c.bus, src, f"campus[{i}].bus", allowed)
        nodes = feeder.bus(c.bus).nodes
        if len(nodes) < 3:
            logger.warning("%s: campus[%d] %r sits at bus %r, which has only phase(s) %s: its "
                           "%.3g MW load is carried by %s", src, i, c.name, c.bus,
                           ", ".join("abc"[n - 1] for n in nodes), c.capacity_mw,
                           "one phase" if len(nodes) == 1 else "two phases")
    if siting_file is not None:
        from controllers.stage1 import load_siting

        placements = list(load_siting(Path(siting_file), feeder, scenario.fcm.catalog))
        where, field_name = str(siting_file), "placements"
    else:
        placements = list(scenario.fcm.placements)
        where, field_name = src, "fcm.placements"
    labels: set[str] = set()
    for i, pl in enumerate(placements):
        _check_host_bus(feeder, pl.bus, where, f"{field_name}[{i}].bus", allowed)
        if pl.kind not in scenario.fcm.catalog:
            raise ScenarioError(where, f"{field_name}[{i}].kind", f"{pl.kind!r} is not in the "
                                f"catalog; allowed: {', '.join(sorted(scenario.fcm.catalog))}")
        if pl.label in labels:
            raise ScenarioError(where, f"{field_name}[{i}]", f"label {pl.label!r} is used twice; "
                                "give one of them a unique name")
        labels.add(pl.label)
    grid, sim = scenario.grid, scenario.simulation
    nb = n_blocks(sim.hours, grid.schedule_interval_s)
    campus_expected = {c.name: expected_campus_mw(c, scenario.seed, sim.start_hour * 3600.0,
                                                  grid.schedule_interval_s, nb)
                       for c in scenario.campus}
    total = np.sum(list(campus_expected.values()), axis=0)
    base = BaseCase(dss_feeder, scenario.campus, campus_expected, src)
    schedule = day_ahead_schedule(
        sim.hours, grid.schedule_interval_s, feeder.total_load_mw, total, base.losses_mw,
        sim.start_hour, grid.background_load_scale,
    )
    initial = _initial_reading(dss_feeder, base.solve(
        float(background_shape(0.0, sim.start_hour, grid.background_load_scale)), float(total[0])))
    return WorldPlan(scenario, feeder, tuple(placements), tuple(float(x) for x in schedule),
                     {k: float(np.mean(v)) for k, v in campus_expected.items()},
                     feeder.total_load_mw, initial,
                     {k: float(v[0]) for k, v in campus_expected.items()})


def _check_host_bus(feeder: FeederData, bus: str, where: str, field_name: str, allowed: str) -> None:
    """A bus that can host an injection: known, energized, with a voltage base and a phase
    node (else ScenarioError naming it)."""
    if not feeder.has_bus(bus):
        raise ScenarioError(where, field_name, f"unknown or de-energized bus {bus!r} on feeder "
                            f"{feeder.name}; allowed: an energized bus, e.g. {allowed}")
    b = feeder.bus(bus)
    if not b.base_kv_ll > 0:
        raise ScenarioError(where, field_name, f"bus {bus!r} has no voltage base in the model; "
                            "allowed: a bus inside 'set voltagebases' (run 'calcvoltagebases')")
    if not b.nodes:
        raise ScenarioError(where, field_name, f"bus {bus!r} has no phase node (1, 2 or 3); "
                            "allowed: a bus with at least one phase")


def initial_fcm_reading(placement: Placement, tech: Any) -> dict[str, Any]:
    """What the controller knows of an FCM before the first step: the device's initial state
    (storage at ``soc_init``, generator off and free to start, DR with no event)."""
    from models.fcm import make_device

    r = make_device(placement, tech).reading()
    return {"p_mw": r.p_mw, "q_mvar": r.q_mvar, "soc_mwh": r.soc_mwh, "committed": r.committed,
            "time_in_state_s": r.time_in_state_s, "debt_mwh": r.debt_mwh}


def _initial_reading(feeder: Any, res: Any) -> dict[str, Any]:
    """The grid reading the controller holds before the first step: the OpenDSS snapshot at
    the starting background load with the campuses at their expected draw, FCMs idle; with
    the bus loads it was solved at (``p_load_mw``, ``q_load_mvar``, for the AC validation's
    calibration at t = 0)."""
    scale = feeder.load_scale
    p = {ld.bus: ld.p_mw * scale for ld in feeder.data.loads}
    q = {ld.bus: ld.q_mvar * scale for ld in feeder.data.loads}
    for name, bus in feeder.injection_buses.items():
        p_mw, q_mvar = feeder.injections[name]
        p[bus] = p.get(bus, 0.0) + p_mw
        q[bus] = q.get(bus, 0.0) + q_mvar
    return {
        "p_load_mw": p, "q_load_mvar": q,
        "converged": bool(res.converged), "sub_p_mw": float(res.sub_p_mw),
        "sub_q_mvar": float(res.sub_q_mvar), "bus_v_pu": res.bus_voltages(),
        "branch_p_mw": dict(zip(res.branch_names, res.branch_p_mw.tolist())),
        "branch_q_mvar": dict(zip(res.branch_names, res.branch_q_mvar.tolist())),
    }


def _allowed_buses(feeder: FeederData) -> str:
    names = feeder.bus_names
    if len(names) <= 12:
        return ", ".join(names)
    return f"{', '.join(names[:6])}, ... ({len(names)} buses)"


def sim_config(hil: bool = False, controller_address: str | None = None,
               answer_s: float = 20.0, first_step_s: float = 60.0) -> dict[str, Any]:
    """mosaik sim_config. ControllerSim runs in this process, or (:mod:`scenarios.remote`,
    every call bounded by ``answer_s`` and, for the first step, ``first_step_s``) with
    ``hil=True`` as a process that mosaik starts, or at ``controller_address`` as a process
    the user started (``run_cosim.py controller ... --listen``)."""
    from scenarios.remote import GuardedCmd, GuardedConnect

    cfg: dict[str, Any] = {
        "FeederSim": {"python": "sim.feeder_sim:FeederSim"},
        "DataCenterSim": {"python": "sim.datacenter_sim:DataCenterSim"},
        "FCMSim": {"python": "sim.fcm_sim:FCMSim"},
        "ControllerSim": {"python": "sim.controller_sim:ControllerSim"},
        "Recorder": {"python": "sim.recorder:RecorderSim"},
        "Input": {"python": "mosaik.basic_simulators:InputSimulator"},
        "ModbusSim": {"python": "sim.modbus_sim:ModbusSim"},
    }
    if controller_address is not None:
        cfg["ControllerSim"] = GuardedConnect(controller_address, answer_s, first_step_s)
    elif hil:
        cfg["ControllerSim"] = GuardedCmd(f"{sys.executable} -m sim.controller_sim %(addr)s",
                                          str(REPO), answer_s, first_step_s)
    return cfg


def build_world(plan: WorldPlan, timeseries_path: Path, hil: bool = False,
                flush_every: int = 60, extra_sims: dict[str, dict[str, str]] | None = None,
                controller_address: str | None = None, realtime: float | None = None,
                progress: bool = False, modbus_address: str | None = None) -> WorldHandles:
    """Start every simulator of the plan and connect them (see the module docstring);
    ``progress`` has the Recorder draw a bar over the steps on stderr.

    With a controller in another process (``hil`` or ``controller_address``, docs/hil.md)
    a failure to reach it raises :class:`scenarios.remote.SimulatorLost`; a controller the
    user started that will not run this plan's FCMs or feeder raises ScenarioError against
    ``--controller-address``. The World then reads what that controller runs
    (``controller_config()``): :attr:`WorldHandles.scenario` carries its ``[controller]``
    section.

    ``modbus_address`` (``HOST:PORT``) adds the Modbus/TCP gateway (:mod:`sim.modbus_sim`):
    it mirrors the previous step's measurements, and with ``controller.kind = "external"``
    its set-point registers, written by a Modbus client, drive the FCMs."""
    from scenarios.remote import answer_limits

    answer_s, first_s = answer_limits(plan.scenario.controller)
    cfg = sim_config(hil, controller_address, answer_s, first_s)
    world = mosaik.World({**cfg, **(extra_sims or {})}, time_resolution=1.0,
                         skip_greetings=True, configure_logging=False)
    try:
        return _populate(world, plan, timeseries_path, flush_every, controller_address, cfg,
                         realtime, progress, modbus_address)
    except BaseException:  # a World that did not get built must not leave processes behind
        from scenarios.remote import abandon

        abandon(world)
        raise


def _populate(world: mosaik.World, plan: WorldPlan, timeseries_path: Path, flush_every: int,
              controller_address: str | None, cfg: dict[str, Any],
              realtime: float | None, progress: bool,
              modbus_address: str | None) -> WorldHandles:
    """:func:`build_world`'s simulators and connections in ``world``."""
    from scenarios.remote import answer_limits

    sc = plan.scenario
    step = plan.step_s
    sims: dict[str, Any] = {}
    from scenarios.feeder import feeder_spec

    sims["feeder"] = world.start("FeederSim", sim_id="Feeder", step_s=step, **feeder_spec(sc),
                                 fingerprint=plan.feeder.fingerprint(), **fault_params(plan))
    grid = sims["feeder"].Grid()
    buses = sorted({c.bus for c in sc.campus} | {pl.bus for pl in plan.placements},
                   key=lambda b: plan.feeder.bus_index[b.lower()])
    inj = {b: sims["feeder"].Injection(bus=b) for b in buses}

    sims["input"] = world.start("Input", sim_id="Background", step_size=step)
    start_hour, lam = sc.simulation.start_hour, sc.grid.background_load_scale
    background = sims["input"].Function(function=lambda t: float(background_shape(t, start_hour, lam)))
    world.connect(background, grid, ("value", "load_scale"))

    # the campus operator's published forecasts: over the MPC's horizon at its horizon
    # steps (forecast_mw), and of the coming co-simulation step (next_mw)
    sims["dc"] = world.start("DataCenterSim", sim_id="DC", step_s=step, seed=sc.seed,
                             scenario=sc.model_dump(mode="json"))
    campuses = {c.name: sims["dc"].Campus(config=c.model_dump(mode="json")) for c in sc.campus}
    for c in sc.campus:
        ent = campuses[c.name]
        world.connect(ent, inj[c.bus], "p_mw", "q_mvar", "ups")
        world.connect(inj[c.bus], ent, ("v_pu", "v_poi_pu"), "sags", time_shifted=True,
                      initial_data={"v_pu": 1.0, "sags": []})

    sims["fcm"] = world.start("FCMSim", sim_id="FCM", step_s=step)
    host = plan.feeder.load_by_bus  # what a DR placement can curtail, × the background
    fcms = {pl.label: sims["fcm"].FCM(placement=pl.model_dump(mode="json"),
                                       tech=sc.fcm.catalog[pl.kind].model_dump(mode="json"),
                                       host_p_mw=host[pl.bus].p_mw if pl.bus in host else 0.0)
            for pl in plan.placements}
    for ent in fcms.values():  # the load the grid applied, one step late (as measured)
        world.connect(grid, ent, "load_scale", time_shifted=True,
                      initial_data={"load_scale": float(background_shape(0.0, start_hour, lam))})
    for pl in plan.placements:  # whether its bus is energised in the coming step
        world.connect(inj[pl.bus], fcms[pl.label], "energized", time_shifted=True,
                      initial_data={"energized": True})
    sims["ctrl"] = world.start(
        "ControllerSim", sim_id="Ctrl", step_s=step, scenario=sc.model_dump(mode="json"),
        scenario_path=scenario_source(sc), placements=[p.model_dump(mode="json") for p in plan.placements],
        schedule_mw=list(plan.schedule_mw), schedule_interval_s=sc.grid.schedule_interval_s,
        background_nominal_mw=plan.background_nominal_mw, feeder=plan.feeder.to_dict(),
    )
    if controller_address is not None:
        sc = _remote_controller(sc, sims["ctrl"].controller_config(), controller_address)
        guard = getattr(cfg["ControllerSim"], "guard", None)
        if guard is not None:  # the limits of the time limit that controller runs with
            guard.answer_s, guard.first_step_s = answer_limits(sc.controller)
    ctrl = sims["ctrl"].Controller(campuses={e.full_id: n for n, e in campuses.items()},
                                   fcms={e.full_id: n for n, e in fcms.items()})
    column_map = {grid.full_id: "sub", ctrl.full_id: "ctrl"}
    column_map.update({e.full_id: f"dc.{n}" for n, e in campuses.items()})
    column_map.update({e.full_id: f"fcm.{n}" for n, e in fcms.items()})
    external = sc.controller.kind == "external"
    if modbus_address is not None:
        sims["modbus"] = world.start("ModbusSim", sim_id="Modbus", step_s=step, column_map=column_map,
                                     **modbus_params(plan, modbus_address, external))
    # mosaik keeps one initial value per source attribute, whatever reads it: the time-shifted
    # readers (controller, gateway) share these
    first: dict[str, dict[str, Any]] = {}
    for pl in plan.placements:
        ent = fcms[pl.label]
        sp = (sims["modbus"] if external else sims["ctrl"]).Setpoint(fcm=pl.label)
        world.connect(sp, ent, "p_set_mw", "q_set_mvar")
        world.connect(ent, inj[pl.bus], ("p_load_mw", "p_mw"), ("q_load_mvar", "q_mvar"),
                      "fault_support")
        first[ent.full_id] = initial_fcm_reading(pl, sc.fcm.catalog[pl.kind])
        world.connect(ent, ctrl, ("p_mw", "fcm_p_mw"), ("q_mvar", "fcm_q_mvar"),
                      ("soc_mwh", "fcm_soc_mwh"), ("committed", "fcm_committed"),
                      ("time_in_state_s", "fcm_time_in_state_s"), ("debt_mwh", "fcm_debt_mwh"),
                      time_shifted=True, initial_data=first[ent.full_id])
    # the background multiplier reaches the controller and the recorder as the feeder's
    # read-back of what it applied (the same number), not over edges of its own: every
    # simulator-to-simulator edge adds to mosaik's scheduling cost per step
    reads = grid_reads(sc.controller)
    first[grid.full_id] = {**plan.initial_grid, "load_scale": float(background_shape(0.0, start_hour, lam))}
    world.connect(grid, ctrl, *reads, time_shifted=True,
                  initial_data={a: first[grid.full_id][a] for a in reads})
    campus_attrs = [("p_mw", "campus_p_mw"), ("online", "campus_online")]
    campus_attrs += [(a, f"campus_{a}") for a in campus_reads(sc.controller)]
    for name, ent in campuses.items():  # before the first step: the day-ahead estimate
        mw = plan.campus_first_block_mw.get(name, 0.0)
        first[ent.full_id] = {"p_mw": mw, "online": True, "forecast_mw": [], "next_mw": mw}
        world.connect(ent, ctrl, *campus_attrs, time_shifted=True,
                      initial_data={src: first[ent.full_id][src] for src, _ in campus_attrs})

    sims["rec"] = world.start("Recorder", sim_id="Rec", path=str(timeseries_path), step_s=step,
                              flush_every=flush_every, column_map=column_map,
                              until_s=float(plan.steps * step),
                              column_rules=COLUMN_RULES, rt_factor=realtime,
                              progress=bool(progress))
    rec = sims["rec"].Sink()
    world.connect(grid, rec, *GRID_OUTPUTS)
    for ent in campuses.values():
        world.connect(ent, rec, *CAMPUS_OUTPUTS)
    for ent in fcms.values():
        world.connect(ent, rec, *FCM_OUTPUTS)
    world.connect(ctrl, rec, *CTRL_OUTPUTS)
    if modbus_address is not None:  # the previous step's measurements, as a controller's
        gw = sims["modbus"].Gateway()

        def shifted(src: Any, *attrs: str) -> None:  # the controller's initial values, if any
            known = first.get(src.full_id, {})
            world.connect(src, gw, *attrs, time_shifted=True,
                          initial_data={a: known.get(a, math.nan) for a in attrs})

        shifted(grid, *MODBUS_GRID)
        shifted(ctrl, "p_sched_mw")
        for ent in campuses.values():
            shifted(ent, *MODBUS_CAMPUS)
        for ent in fcms.values():
            shifted(ent, *MODBUS_FCM)
    return WorldHandles(world, sims, grid, campuses, fcms, ctrl, rec, sc)


#: what the Modbus gateway reads of the grid (the register map's substation quantities,
#: ``controllers.modbus.SUB_READS``, by their grid attribute; the schedule is the
#: controller's ``p_sched_mw``), of each campus and of each FCM (the map's attributes)
MODBUS_GRID = ("converged", "sub_p_mw", "sub_q_mvar", "v_min_pu", "v_max_pu")
MODBUS_CAMPUS = CAMPUS_READS
MODBUS_FCM = FCM_WRITES + FCM_READS


def fault_params(plan: WorldPlan) -> dict[str, Any]:
    """FeederSim's ``init`` parameters for the grid faults of the plan (plain JSON): the
    ``[faults]`` law, the ``[[events]]``, the seed of the fault stream and the run's end."""
    sc = plan.scenario
    return {"faults": sc.faults.model_dump(mode="json"),
            "events": [e.model_dump(mode="json") for e in sc.events], "seed": sc.seed,
            "until_s": float(plan.steps * plan.step_s)}


def modbus_registers(plan: WorldPlan) -> list[Any]:
    """The plan's Modbus register map (:func:`controllers.modbus.register_map`)."""
    from controllers.modbus import register_map

    return register_map([c.name for c in plan.scenario.campus], [pl.label for pl in plan.placements])


def modbus_params(plan: WorldPlan, address: str, writable: bool) -> dict[str, Any]:
    """ModbusSim's ``init`` parameters for the plan (plain JSON)."""
    return {"address": address, "registers": [r.to_json() for r in modbus_registers(plan)],
            "ratings": {pl.label: float(pl.p_mw) for pl in plan.placements},
            "writable": writable, "column_rules": COLUMN_RULES}


def _remote_controller(sc: Scenario, told: dict[str, Any], address: str) -> Scenario:
    """The scenario with the ``[controller]`` section that the controller at ``address``
    runs (ScenarioError when it refused the run: its FCMs or feeder are not the plan's)."""
    from controllers.config import ControllerConfig, ObjectiveWeights

    if told.get("refused"):
        raise ScenarioError("command line", "--controller-address",
                            f"the controller at {address} refused the run: {told['refused']}")
    cfg = dict(told["controller"])
    try:  # validated here too, unless it names a solver this machine does not have
        controller = ControllerConfig.model_validate(cfg)
    except ValueError:
        cfg["weights"] = ObjectiveWeights.model_validate(cfg.get("weights", {}))
        controller = ControllerConfig.model_construct(**cfg)
    return sc.model_copy(update={"controller": controller})


def grid_reads(controller: Any) -> tuple[str, ...]:
    """The grid measurements the ``[controller]`` section reads: the import, the converged
    flag and the background multiplier for every controller; the bus voltages for ``rule``
    (DR in sags) and ``mpc``; the reactive import and the branch flows (its operating point)
    for ``mpc``. Only these are connected: on a large feeder the dicts cost more to hand
    over than a controller that does not read them is worth."""
    reads = ("converged", "sub_p_mw", "load_scale")
    if controller.kind in ("rule", "mpc"):
        reads += ("bus_v_pu",)
    if controller.kind == "mpc":
        reads += ("sub_q_mvar", "branch_p_mw", "branch_q_mvar")
    return reads


def campus_reads(controller: Any) -> tuple[str, ...]:
    """The campus forecasts the ``[controller]`` section reads: ``next_mw`` (the coming
    step) for ``rule``, which feeds it forward, and for ``mpc`` with its ramp guard
    (``trim = "ramp"``); ``forecast_mw`` (the horizon) for ``mpc`` with the ``operator``
    forecaster; nothing for ``none``. Only these are connected, and only these does
    DataCenterSim compute."""
    if controller.kind == "rule":
        return ("next_mw",)
    if controller.kind != "mpc":
        return ()
    reads = ("next_mw",) if controller.trim == "ramp" else ()
    return reads + (("forecast_mw",) if controller.forecaster == "operator" else ())


def _from_each_sim(handles: WorldHandles, method: str, read: Callable[[Any], Any]) -> list[Any]:
    """``read(sim.method())`` for every simulator that has the extra ``method``, after the
    run. A simulator whose answer fails (to come or to be read) is logged and skipped: a
    report about the run must not fail the run."""
    out = []
    for name, sim in handles.sims.items():
        fn = getattr(sim, method, None)
        if fn is None:
            continue
        try:
            out.append(read(fn()))
        except Exception as exc:
            logger.warning("no %s from %s: %s", method, name, exc)
    return out


def collect_timing(handles: WorldHandles) -> dict[str, float]:
    """Wall time each adapter reports for its own work (seconds), by simulator."""
    parts = _from_each_sim(handles, "timing", lambda t: {str(k): float(v) for k, v in t.items()})
    return {k: v for part in parts for k, v in part.items()}


def collect_modbus(handles: WorldHandles) -> dict[str, int]:
    """The Modbus gateway's write counts (``modbus_writes``, ``modbus_writes_rejected``,
    ``modbus_writes_out_of_range``), empty without a gateway."""
    parts = _from_each_sim(handles, "stats", lambda d: {str(k): int(v) for k, v in d.items()})
    return {k: v for part in parts for k, v in part.items()}


def collect_faults(handles: WorldHandles) -> dict[str, Any] | None:
    """The feeder's fault log of the run (FeederSim's ``fault_log()``: the faults, each
    shot's solve, the counts), None when the simulator gives none."""
    parts = _from_each_sim(handles, "fault_log", dict)
    return parts[0] if parts else None


def collect_trips(handles: WorldHandles) -> list[dict[str, Any]]:
    """The campus trip log of the run: one record ``{"campus": eid, "time_s", "cause",
    "v_pu", "duration_s", "reconnect_s", "ramp_s"}`` per trip, from every simulator that
    reports trips (DataCenterSim's ``trips()``), sorted by time (then campus). Times are
    simulated seconds since the start of the run, as the time series index."""
    parts = _from_each_sim(handles, "trips", lambda log: [
        {"campus": str(eid), **trip} for eid, trips in log.items() for trip in trips])
    return sorted((r for part in parts for r in part), key=lambda r: (r["time_s"], r["campus"]))
