"""Recorder: a mosaik sink that writes every input it receives to ``timeseries.parquet``.

The World connects any attribute of any entity to the one ``Sink`` entity (``any_inputs``)::

    rec = world.start("Recorder", path=str(out / "timeseries.parquet"), step_s=60,
                      column_map={"DC-0.campus1": "dc.campus1", "Feeder-0.grid": "sub",
                                  "FCM-0": "fcm", "Ctrl-0.mpc": "ctrl"}).Sink()
    world.connect(grid, rec, "p_mw", "bus_v_pu", "line_loading_pct", "converged")

Each step becomes one row, indexed by ``time_s`` (simulated seconds at the start of the step,
mosaik time × ``time_resolution``). Naming, types and the crash-safe segments are those of
:mod:`scenarios.timeseries_io` (:class:`~scenarios.timeseries_io.ColumnNamer`,
:class:`~scenarios.timeseries_io.SegmentWriter`); this adapter only hands them each step's
inputs. mosaik also calls ``finalize()`` when a World is shut down after another simulator
failed; give the Recorder the run's end ``until_s`` (simulated seconds, exclusive, as
``World.run(until)``) and a ``finalize()`` before that time only flushes the buffered rows
to a last segment and leaves the segments as they are, so the run never looks complete.

In a real-time run (``rt_factor`` F, mosaik's ``World.run(rt_factor=F)``) each row also gets
``rt.lag_s``: how late the row was complete against the real-time schedule, measured from
the start of the run (``setup_done``, when mosaik starts its clock)::

    lag_k = max(0, w_k − (w_0 + (t_k + Δt)·F))

with ``w_k`` the wall time at which step ``k`` (simulated time ``t_k``, step Δt) reached the
Recorder, which steps last. A row with ``lag > 0`` was not ready when the next step was due:
a missed deadline (docs/kpis.md, ``rt_deadline_misses``, ``rt_max_lag_s``).

With ``progress=True`` (and ``until_s``) the Recorder draws the run's progress bar on
stderr: one tick per row written, i.e. per co-simulation step done, with the simulated
time. (mosaik's own bar counts simulated seconds and calls them steps.)
"""

from __future__ import annotations

import logging
import sys
import time as _time
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time

from scenarios.timeseries_io import ColumnNamer, SegmentWriter

logger = logging.getLogger(__name__)

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Sink": {"public": True, "any_inputs": True, "params": [], "attrs": []},
    },
    "extra_methods": ["timing", "columns"],
}


class RecorderSim(mosaik_api_v3.Simulator):
    """mosaik API v3 adapter: one ``Sink`` entity, one row per ``step_s`` seconds."""

    def __init__(self) -> None:
        super().__init__(META)
        self.eid: str | None = None
        self.namer = ColumnNamer()
        self.writer: SegmentWriter | None = None
        self.time_resolution = 1.0
        self.step_time = 60
        self.step_s = 60.0
        self.until_s: float | None = None
        self.last_time_s: float | None = None
        self.busy_s = 0.0
        self.rt_factor: float | None = None
        self.rt_epoch: float | None = None
        self.bar: Any = None

    def init(self, sid: SimId, time_resolution: float = 1.0, path: str = "timeseries.parquet",
             step_s: int = 60, flush_every: int = 60, column_map: dict[str, str] | None = None,
             column_rules: dict[str, str] | None = None, until_s: float | None = None,
             rt_factor: float | None = None, progress: bool = False, **_: Any) -> Meta:
        if time_resolution <= 0:
            raise ValueError(f"Recorder needs time_resolution > 0, got {time_resolution}")
        steps = step_s / time_resolution
        if step_s <= 0 or abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(f"Recorder step_s={step_s} must be a positive multiple of "
                             f"time_resolution={time_resolution}")
        self.time_resolution = float(time_resolution)
        self.step_s = float(step_s)
        self.until_s = until_s
        self.rt_factor = None if rt_factor is None else float(rt_factor)
        self.step_time = int(round(steps))
        self.namer = ColumnNamer(column_map, column_rules)
        index_kind = "int" if self.time_resolution.is_integer() else "float"
        self.writer = SegmentWriter(path, flush_every=flush_every, index_kind=index_kind)
        if progress and until_s:
            from tqdm import tqdm

            self.bar = tqdm(total=int(round(until_s / step_s)), desc="simulating", unit="step",
                            file=sys.stderr, dynamic_ncols=True)
        return self.meta

    def create(self, num: int, model: str, **_: Any) -> list[CreateResult]:
        if self.eid is not None or num != 1:
            raise ValueError("the Recorder has exactly one Sink entity; connect everything to it")
        self.eid = "sink"
        return [{"eid": self.eid, "type": model}]

    def setup_done(self) -> None:
        self.rt_epoch = _time.perf_counter()  # mosaik starts its real-time clock now

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        t0 = _time.perf_counter()
        time_s = time * self.time_resolution
        if self.time_resolution.is_integer():
            time_s = int(time_s)
        self.last_time_s = time_s
        row = self.namer.row(inputs.get(self.eid, {}))
        if self.rt_factor is not None:
            epoch = self.rt_epoch if self.rt_epoch is not None else t0
            due = epoch + (time_s + self.step_s) * self.rt_factor
            row["rt.lag_s"] = max(0.0, t0 - due)
        self.writer.append(time_s, row)  # type: ignore[union-attr,arg-type]
        self.busy_s += _time.perf_counter() - t0
        if self.bar is not None:
            self.bar.set_postfix_str(f"{(time_s + self.step_s) / 3600:.3g} h simulated", refresh=False)
            self.bar.update(1)
            if self.until_s is not None and time_s + self.step_s >= self.until_s - 1e-9:
                self._close_bar()
        return time + self.step_time

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {}

    def finalize(self) -> None:
        self._close_bar()
        if self.writer is not None:
            t0 = _time.perf_counter()
            reached = self.last_time_s + self.step_s if self.last_time_s is not None else 0.0
            if self.until_s is not None and reached < self.until_s - 1e-9:
                self.writer.flush()
                logger.info("recorder: run ended at %s s before its end %s s; the rows stay "
                            "as segments in %s", reached, self.until_s, self.writer.parts)
            else:
                self.writer.close()
            self.busy_s += _time.perf_counter() - t0

    def timing(self) -> dict[str, float]:
        """Wall time spent recording so far (seconds), for the run's timing breakdown."""
        return {"recording_s": self.busy_s}

    def columns(self) -> list[str]:
        """Columns seen so far, in order of first appearance."""
        return list(self.writer.kinds) if self.writer else []


def main() -> None:
    """Run the Recorder as a separate process that mosaik reaches over TCP."""
    mosaik_api_v3.start_simulation(RecorderSim(), "dcshock-cosim Recorder: time series to Parquet")


if __name__ == "__main__":
    main()
