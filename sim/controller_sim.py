"""ControllerSim: mosaik adapter that hosts a controller from :mod:`controllers`.

The controller (``none``, ``rule`` or ``mpc``, built by
:func:`controllers.factory.make_controller` on the plan's feeder, handed over in ``init`` as
``feeder``, :meth:`models.network.FeederData.to_dict`) sees measurements only. This adapter
turns its mosaik inputs into readings for :class:`controllers.measurement.MeasurementBuilder`
and runs it on its cadence (:class:`controllers.cadence.Rolling`: the MPC re-solves every
``controller.resolve_every_steps`` steps and holds its plan in between, status ``hold``).

``Controller`` (one): every input arrives over a time-shifted connection (docs/cosim.md §2):
``converged``, ``sub_p_mw``, ``sub_q_mvar``, ``bus_v_pu``, ``branch_p_mw``, ``branch_q_mvar``,
``load_scale`` (grid readings, the first value each); ``campus_<attr>`` and ``fcm_<attr>``
(readings ``<attr>`` of a campus or FCM, told apart by the full ids that the ``campuses`` and
``fcms`` parameters map to names and labels). Outputs: ``solved``, ``fallback``, ``solve_s``,
``status``, ``pred_bus_v_pu`` (dict), ``pred_sub_p_mw``, ``p_sched_mw`` (the schedule in
force) and ``seen_sub_p_mw`` (the substation import it was told, for checks).
``Setpoint(fcm=label)`` (one per FCM): outputs ``p_set_mw`` (+ = injection), ``q_set_mvar``.

In another process (docs/hil.md): :func:`serve` listens on ``HOST:PORT`` and runs one
ControllerSim per mosaik connection, one run after the other (``python run_cosim.py
controller SCENARIO --listen HOST:PORT``); every parameter is plain JSON, so it behaves the
same over TCP. Such a process holds its own controller set-up (``local``,
:class:`scenarios.hil.LocalSetup`: the ``[controller]`` section, the FCMs and the feeder's
fingerprint); ``init`` then runs that controller, unless the set-up refuses the run's FCMs
or feeder.
``controller_config()`` (an extra method) tells the World which controller it got, or
why it refused the run.
"""

from __future__ import annotations

import logging
import math
import time as _time
from typing import Any, Callable

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time

from controllers.cadence import Cadence, Rolling
from controllers.interface import Measurement
from controllers.measurement import MeasurementBuilder, finite
from controllers.schedule import SubstationSchedule

logger = logging.getLogger(__name__)

CONTROLLER_INPUTS = (
    "converged", "sub_p_mw", "sub_q_mvar", "bus_v_pu", "load_scale", "branch_p_mw", "branch_q_mvar",
    "campus_p_mw", "campus_online", "campus_forecast_mw", "campus_next_mw", "fcm_p_mw",
    "fcm_q_mvar", "fcm_soc_mwh", "fcm_committed", "fcm_time_in_state_s", "fcm_debt_mwh",
)
CONTROLLER_OUTPUTS = ("solved", "fallback", "solve_s", "status", "pred_bus_v_pu",
                      "pred_sub_p_mw", "p_sched_mw", "seen_sub_p_mw")

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Controller": {"public": True, "params": ["campuses", "fcms"],
                       "attrs": [*CONTROLLER_INPUTS, *CONTROLLER_OUTPUTS]},
        "Setpoint": {"public": True, "params": ["fcm"], "attrs": ["p_set_mw", "q_set_mvar"]},
    },
    "extra_methods": ["timing", "controller_config"],
}


class ControllerSim(mosaik_api_v3.Simulator):
    """Hosts one controller; ``factory(scenario, placements)`` may replace the default one
    (:func:`controllers.factory.make_controller` on the plan's feeder)."""

    def __init__(self, factory: Callable[[Any, list[Any]], Any] | None = None,
                 local: Any = None) -> None:
        super().__init__(META)
        self.factory = factory
        self.local = local
        self.refused: str | None = None
        self.config: dict[str, Any] = {}
        self.feeder: Any = None  # the plan's network the controller optimises (FeederData)
        self.step_s, self.time_resolution = 60, 1.0
        self.labels: list[str] = []
        self.rolling: Rolling | None = None
        self.builder: MeasurementBuilder | None = None
        self.ctrl_eid: str | None = None
        self.campus_of: dict[str, str] = {}
        self.fcm_of: dict[str, str] = {}
        self.setpoints: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self.busy_s = 0.0

    def init(
        self, sid: SimId, time_resolution: float = 1.0, step_s: int = 60,
        scenario: dict[str, Any] | None = None, scenario_path: str = "<scenario>",
        placements: list[dict[str, Any]] | None = None, schedule_mw: list[float] | None = None,
        schedule_interval_s: float = 3600.0, background_nominal_mw: float = 0.0,
        feeder: dict[str, Any] | None = None, **_: Any,
    ) -> Meta:
        from models.fcm_catalog import Placement
        from models.network import FeederData
        from scenarios.config import Scenario

        if scenario is None:
            raise ValueError("ControllerSim needs the scenario (a dict of the validated Scenario)")
        # plain JSON back to typed objects (the caller validated the scenario, at the edge)
        pls = [Placement.model_validate(p) for p in (placements or [])]
        self.feeder = None if feeder is None else FeederData.from_dict(feeder)
        if self.local is not None:  # a controller of its own: the run must be its run
            self.refused = self.local.refusal(pls, self.feeder)
            scenario = {**scenario, "controller": self.local.controller}
        sc = Scenario.model_validate({**scenario, "path": str(scenario_path)})
        self.config = sc.controller.model_dump(mode="json")
        self.time_resolution, self.step_s = float(time_resolution), int(step_s)
        self.labels = [pl.label for pl in pls]
        self.builder = MeasurementBuilder.of(sc.controller, (), SubstationSchedule.of(
            schedule_mw, schedule_interval_s), background_nominal_mw)
        if self.refused is not None:  # told through controller_config(); nothing to build
            self.rolling = Rolling(_Refused(), Cadence.of(sc.controller), self.labels)
            return self.meta
        controller = self.factory(sc, pls) if self.factory else _default_controller(sc, pls, self.feeder)
        self.rolling = Rolling(controller, Cadence.of(sc.controller), self.labels)
        return self.meta

    def create(self, num: int, model: str, **params: Any) -> list[CreateResult]:
        assert self.builder is not None, "init before create"
        out: list[CreateResult] = []
        for _ in range(num):
            if model == "Controller":
                if self.ctrl_eid is not None:
                    raise ValueError("ControllerSim hosts exactly one Controller entity")
                eid = self.ctrl_eid = "ctrl"
                self.campus_of = dict(params.get("campuses") or {})
                self.fcm_of = dict(params.get("fcms") or {})
                self.builder = self.builder.for_fcms(self.fcm_of.values())
            else:
                label = str(params["fcm"])
                if label not in self.labels:
                    raise ValueError(f"Setpoint for unknown FCM {label!r}")
                eid = f"set_{label}"
                self.setpoints[eid] = label
            out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        assert self.rolling is not None and self.builder is not None
        t0 = _time.perf_counter()
        t_s = time * self.time_resolution
        attrs = inputs.get(self.ctrl_eid or "", {})
        dec = self.rolling.step(lambda: self.measurement(t_s, attrs))
        d = dec.dispatch
        seen = list((attrs.get("sub_p_mw") or {}).values())  # what it was told, for checks
        self.outputs = {
            "solved": bool(dec.solved), "fallback": bool(dec.fallback), "solve_s": float(dec.solve_s),
            "status": str(dec.status), "pred_bus_v_pu": dict(d.predicted_v_pu),
            "pred_sub_p_mw": math.nan if d.predicted_sub_p_mw is None else float(d.predicted_sub_p_mw),
            "p_sched_mw": self.builder.schedule.at(t_s),
            "seen_sub_p_mw": finite(seen[0], math.nan) if seen else math.nan,
        }
        self.busy_s += _time.perf_counter() - t0
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        data: OutputData = {}
        for eid, attrs in outputs.items():
            if eid == self.ctrl_eid:
                data[eid] = {a: self.outputs.get(a) for a in attrs}
            else:
                label, d = self.setpoints[eid], self.rolling.dispatch  # type: ignore[union-attr]
                values = {"p_set_mw": float(d.p_mw.get(label, 0.0)),
                          "q_set_mvar": float(d.q_mvar.get(label, 0.0))}
                data[eid] = {a: values[a] for a in attrs}
        return data

    def timing(self) -> dict[str, float]:
        """Wall time in ``step()`` so far, the part of it spent in the steps' updates and
        solves, and the one-off building of the MPC's model (seconds)."""
        build = getattr(self.rolling.controller, "build_s", 0.0) if self.rolling else 0.0
        return {"controller_s": self.busy_s, "milp_s": self.rolling.solve_s if self.rolling else 0.0,
                "milp_build_s": float(build)}

    def controller_config(self) -> dict[str, Any]:
        """The ``[controller]`` section this simulator runs (``kind``, ``forecaster``,
        ``trim``, ...), and ``refused``: why it will not run the World's FCMs or feeder
        (None when it will)."""
        return {"controller": self.config, "refused": self.refused}

    def measurement(self, t_s: float, attrs: dict[str, dict[str, Any]]) -> Measurement:
        """What the controller may see, from this step's (time-shifted) inputs."""
        grid: dict[str, Any] = {}
        campus: dict[str, dict[str, Any]] = {}
        fcm: dict[str, dict[str, Any]] = {}
        for attr, sources in attrs.items():
            sources = sources or {}
            if attr.startswith("campus_"):
                campus[attr[7:]] = {self.campus_of[s]: v for s, v in sources.items() if s in self.campus_of}
            elif attr.startswith("fcm_"):
                fcm[attr[4:]] = {self.fcm_of[s]: v for s, v in sources.items() if s in self.fcm_of}
            elif (first := next((v for v in sources.values() if v is not None), None)) is not None:
                grid[attr] = first
        assert self.builder is not None
        return self.builder.build(t_s, grid, campus, fcm)


def _default_controller(scenario: Any, placements: list[Any], feeder: Any) -> Any:
    from controllers.factory import make_controller

    if feeder is None:
        raise ValueError("ControllerSim needs the plan's feeder (init parameter 'feeder', "
                         "FeederData.to_dict()) to build its controller")
    return make_controller(scenario.controller.kind, feeder, placements, scenario.fcm.catalog,
                           scenario)


class _Refused:
    """Stands in for a controller that refused its run (the World stops before stepping)."""

    def step(self, measurement: Measurement) -> Any:
        raise RuntimeError("this controller refused the run (see controller_config())")


def serve(address: str, make_sim: Callable[[], ControllerSim],
          on_listening: Callable[[str], None] | None = None) -> None:
    """Listen on ``address`` (``HOST:PORT``) and run one ControllerSim from ``make_sim()`` per mosaik
    connection, one run at a time, until the process is stopped (Ctrl-C). A connection
    that arrives while a run is going on is closed at once. ``on_listening(address)`` is
    called with the bound ``HOST:PORT`` (port 0 binds a free port)."""
    import asyncio

    from mosaik_api_v3 import run_simulator
    from mosaik_api_v3.connection import Channel

    from models.schema import split_address

    host, port = split_address(address)

    async def main() -> None:
        busy = asyncio.Lock()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if busy.locked():
                writer.close()
                return
            async with busy:
                channel = Channel(reader, writer)
                try:
                    await run_simulator(channel, make_sim(), api_compliant=True)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    logger.warning("controller: the run's connection broke: %s", exc)
                finally:
                    await channel.close()

        server = await asyncio.start_server(on_connect, host, port)
        bound = server.sockets[0].getsockname()
        if on_listening is not None:
            on_listening(f"{bound[0]}:{bound[1]}")
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    """``python -m sim.controller_sim HOST:PORT``: connect to the mosaik World at that address
    (its ``cmd`` starter, ``run --hil``) and run one ControllerSim, set up by the World."""
    mosaik_api_v3.start_simulation(ControllerSim(), "dcshock-cosim controller (HIL)",
                                   configure_logging=False)


if __name__ == "__main__":
    main()
