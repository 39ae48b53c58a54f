"""A recording sink for tests that put a real mosaik World together.

``CollectorSim`` stores every input it receives in :data:`RECEIVED` keyed by simulated time,
so a test can compare what mosaik delivered with a direct computation. Use it in-process:
``{"Collector": {"python": "_mosaik_helpers:CollectorSim"}}`` and
``world.start("Collector", step_s=...)``.
"""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, Time

RECEIVED: dict[int, dict[str, Any]] = {}


class CollectorSim(mosaik_api_v3.Simulator):
    """Stores the first value of each input attribute in ``RECEIVED[time]``."""

    META: Meta = {
        "api_version": "3.0", "type": "time-based",
        "models": {"Sink": {"public": True, "params": [], "any_inputs": True, "attrs": []}},
    }

    def __init__(self) -> None:
        super().__init__(self.META)
        self.step_s = 60

    def init(self, sid, time_resolution=1.0, step_s: int = 60, **_):
        self.step_s = int(step_s)
        return self.meta

    def create(self, num, model) -> list[CreateResult]:
        return [{"eid": "sink", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        RECEIVED[time] = {attr: next(iter(src.values())) for attr, src in inputs.get("sink", {}).items()}
        return time + self.step_s
