"""ModbusSim: mosaik adapter around :class:`controllers.modbus.ModbusGateway` (docs/hil.md).

``Gateway`` (one) takes any input (``any_inputs``): the grid, campus, FCM and controller
outputs of the previous step (time-shifted, as a controller sees them), names them as the
Recorder names its columns (:class:`scenarios.timeseries_io.ColumnNamer`), and publishes
those of the register map, with ``time_s``, the simulated time of the step the values
belong to (NaN, as every measurement, until the first step is done). ``Setpoint(fcm=label)`` (one per FCM, with ``writable``: ``run --controller
external``) outputs ``p_set_mw`` and ``q_set_mvar``: the last values a Modbus client wrote
(0 before the first write). The server starts in ``init`` and stops in ``finalize``;
``stats()`` (an extra method) gives the write counts for kpis.json.
"""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time

from controllers.modbus import ModbusGateway, Register
from scenarios.timeseries_io import ColumnNamer

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Gateway": {"public": True, "any_inputs": True, "params": [], "attrs": []},
        "Setpoint": {"public": True, "params": ["fcm"], "attrs": ["p_set_mw", "q_set_mvar"]},
    },
    "extra_methods": ["stats", "address"],
}


class ModbusSim(mosaik_api_v3.Simulator):
    """Serves the run's register map; one step per co-simulation step."""

    def __init__(self) -> None:
        super().__init__(META)
        self.gateway: ModbusGateway | None = None
        self.namer = ColumnNamer()
        self.time_resolution, self.step_time, self.step_s = 1.0, 60, 60.0
        self.gateway_eid: str | None = None
        self.setpoints: dict[str, str] = {}

    def init(self, sid: SimId, time_resolution: float = 1.0, step_s: int = 60,
             address: str = "127.0.0.1:0", registers: list[dict[str, Any]] | None = None,
             ratings: dict[str, float] | None = None, writable: bool = False,
             column_map: dict[str, str] | None = None,
             column_rules: dict[str, str] | None = None, **_: Any) -> Meta:
        self.time_resolution, self.step_s = float(time_resolution), float(step_s)
        self.step_time = int(round(step_s / time_resolution))
        self.namer = ColumnNamer(column_map, column_rules)
        regs = [Register(r["name"], int(r["address"]), r["access"]) for r in (registers or [])]
        self.gateway = ModbusGateway(regs, address, ratings, writable)
        self.gateway.start()
        return self.meta

    def create(self, num: int, model: str, **params: Any) -> list[CreateResult]:
        out: list[CreateResult] = []
        for _ in range(num):
            if model == "Gateway":
                if self.gateway_eid is not None:
                    raise ValueError("ModbusSim has exactly one Gateway entity")
                eid = self.gateway_eid = "gateway"
            else:
                eid = f"set_{params['fcm']}"
                self.setpoints[eid] = str(params["fcm"])
            out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        assert self.gateway is not None
        if time == 0:  # nothing measured yet (time_s stays NaN until the first step is done)
            return time + self.step_time
        row = self.namer.row(inputs.get(self.gateway_eid or "", {}))
        # the inputs are the previous step's (time-shifted): stamp them with its time
        row["time_s"] = time * self.time_resolution - self.step_s
        self.gateway.publish(row)
        return time + self.step_time

    def get_data(self, outputs: OutputRequest) -> OutputData:
        assert self.gateway is not None
        written = self.gateway.setpoints()
        data: OutputData = {}
        for eid, attrs in outputs.items():
            label = self.setpoints.get(eid)
            if label is None:
                continue
            data[eid] = {a: float(written.get(f"fcm.{label}.{a}", 0.0)) for a in attrs}
        return data

    def stats(self) -> dict[str, int]:
        return self.gateway.stats() if self.gateway else {}

    def address(self) -> str:
        """The ``HOST:PORT`` the gateway serves on (port 0 asked: the one bound)."""
        return self.gateway.address if self.gateway else ""

    def finalize(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
