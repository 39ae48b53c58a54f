"""FCMSim: mosaik adapter around the FCM device physics of :mod:`models.fcm`.

One entity per installed FCM (model ``FCM``), created from a placement and its catalog type
given as plain dicts (so the simulator also works over TCP)::

    fcm = world.start("FCMSim", step_s=60).FCM(placement=pl.model_dump(), tech=tech.model_dump(),
                                               host_p_mw=nominal_load_at_its_bus)

Each step the entity takes the controller's setpoint ``p_set_mw`` (+ = injection; summed over
sources, 0 when none arrives), lets the device clip it to what it can do over Δt = ``step_s``
and publishes what it delivered. With ``host_p_mw`` and a ``load_scale`` input (the
background's), a DR device curtails at most ``host_p_mw × load_scale``, the load its bus
carries. With an ``energized`` input that reads False (its bus behind an open protective
device, FeederSim), the device delivers nothing that step, as an inverter must not
energise an island (IEEE 1547-2018 §8.1).

``p_mw``/``q_mvar`` follow the FCM convention (+ = injection into the grid). FeederSim's
``Injection`` uses the load convention (+ = consumption), so the entity also publishes
``p_load_mw = −p_mw`` and ``q_load_mvar = −q_mvar``: connect those to the Injection at the
FCM's bus (docs/cosim.md §2). ``fault_support`` is an inverter's fault-time response at the
state of its last step (:meth:`models.fcm.base.Device.fault_support`, with its ``label``;
``None`` for a device without one): connect it to the same Injection.
"""

from __future__ import annotations

import logging
import math
import time as _time
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time
from pydantic import TypeAdapter

from models.fcm import Device, DeviceOutput, make_device
from models.fcm_catalog import FCMType, Placement

logger = logging.getLogger(__name__)

OUTPUTS = (
    "p_mw", "q_mvar", "p_load_mw", "q_load_mvar", "soc", "soc_mwh", "committed", "cost",
    "p_set_mw", "q_set_mvar", "time_in_state_s", "debt_mwh", "fault_support",
)

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "FCM": {
            "public": True,
            "params": ["placement", "tech", "host_p_mw"],
            "attrs": ["load_scale", "energized", *OUTPUTS],
        },
    },
    "extra_methods": ["timing"],
}

_TECH = TypeAdapter(FCMType)


class FCMSim(mosaik_api_v3.Simulator):
    """Steps every FCM device once per ``step_s`` seconds of simulated time."""

    def __init__(self) -> None:
        super().__init__(META)
        self.step_s = 60
        self.time_resolution = 1.0
        self.devices: dict[str, Device] = {}
        self.last: dict[str, DeviceOutput] = {}
        self.p_set: dict[str, float] = {}
        self.q_set: dict[str, float] = {}
        self.host_p_mw: dict[str, float | None] = {}
        self.busy_s = 0.0

    def init(self, sid: SimId, time_resolution: float = 1.0, step_s: int = 60, **_: Any) -> Meta:
        if time_resolution <= 0 or step_s < 1:
            raise ValueError(f"FCMSim needs time_resolution > 0 and step_s ≥ 1 (got {time_resolution}, {step_s})")
        self.time_resolution = float(time_resolution)
        self.step_s = int(step_s)
        return self.meta

    def create(self, num: int, model: str, placement: dict[str, Any], tech: dict[str, Any],
               host_p_mw: float | None = None) -> list[CreateResult]:
        pl = Placement.model_validate(placement)
        dev_type = _TECH.validate_python(tech)
        out: list[CreateResult] = []
        for i in range(num):
            eid = pl.label if num == 1 else f"{pl.label}_{i}"
            if eid in self.devices:
                raise ValueError(f"FCM entity {eid!r} exists already; give placements unique names")
            self.devices[eid] = make_device(pl, dev_type, host_p_mw)
            self.host_p_mw[eid] = host_p_mw
            self.p_set[eid] = self.q_set[eid] = 0.0
            out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        t0 = _time.perf_counter()
        dt_s = self.step_s * self.time_resolution
        for eid, dev in self.devices.items():
            attrs = inputs.get(eid, {})
            p_set = _sum(attrs.get("p_set_mw"))
            q_set = _sum(attrs.get("q_set_mvar"))
            host = self.host_p_mw.get(eid)
            if host is not None and attrs.get("load_scale"):
                dev.set_host_load(host * _sum(attrs["load_scale"]))
            self.p_set[eid], self.q_set[eid] = p_set, q_set
            if not all(bool(v) for v in (attrs.get("energized") or {}).values()):
                p_set = q_set = 0.0  # its bus is de-energised: no island is energised
            self.last[eid] = dev.step(p_set, dt_s, q_set)
        self.busy_s += _time.perf_counter() - t0
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        data: OutputData = {}
        for eid, attrs in outputs.items():
            o = self.last.get(eid) or DeviceOutput(0.0, 0.0, math.nan, 0.0, False, 0.0)
            values = {
                "p_mw": o.p_mw, "q_mvar": o.q_mvar, "p_load_mw": -o.p_mw, "q_load_mvar": -o.q_mvar,
                "soc": o.soc, "soc_mwh": o.soc_mwh, "committed": bool(o.committed), "cost": o.cost,
                "p_set_mw": self.p_set.get(eid, 0.0), "q_set_mvar": self.q_set.get(eid, 0.0),
                "time_in_state_s": o.time_in_state_s,
                "debt_mwh": o.debt_mwh,
            }
            if "fault_support" in attrs:
                fs = self.devices[eid].fault_support()
                values["fault_support"] = None if fs is None else {"label": eid, **fs.as_dict()}
            data[eid] = {a: values[a] for a in attrs}
        return data

    def timing(self) -> dict[str, float]:
        """Wall time spent in ``step()`` so far (seconds), for the run's timing breakdown."""
        return {"fcm_s": self.busy_s}


def _sum(values: dict[str, Any] | None) -> float:
    if not values:
        return 0.0
    total = 0.0
    for v in values.values():
        if v is not None and math.isfinite(float(v)):
            total += float(v)
    return total


def main() -> None:
    """Run FCMSim as a separate process: ``python -m sim.fcm_sim HOST:PORT``."""
    mosaik_api_v3.start_simulation(FCMSim(), "dcshock-cosim FCM plant")


if __name__ == "__main__":
    main()
