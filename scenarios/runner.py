"""``run_scenario``: one co-simulation run from a validated scenario to its result folder.

Order of work (docs/cosim.md §6):

1. :func:`scenarios.world.plan_world` checks everything the scenario and the siting file
   refer to against the feeder. Bad input raises :class:`~models.errors.ScenarioError`
   before any folder is created.
2. The run writes into a temporary sibling folder ``.<name>.partial-<pid>``. The Recorder
   flushes ``timeseries.parquet`` in segments as the run goes, so a crash keeps what was
   simulated (the partial folder is kept after an internal failure, for post-mortem).
3. After the run: the campus trip log is read from DataCenterSim
   (:func:`scenarios.world.collect_trips`), KPIs (``kpis.json``, with the log as
   ``campus_trip_log``), ``manifest.json`` and ``report.html`` are written, then the
   folder is renamed into place. Only a complete run has the final name.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from models.errors import ControllerLost, ScenarioError
from scenarios.config import Scenario

logger = logging.getLogger(__name__)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``folder`` is the partial folder that keeps what was simulated
    (docs/results.md, "A partial folder")."""

    def __init__(self, folder: Path) -> None:
        super().__init__(str(folder))
        self.folder = folder


#: A folder holding one of these is an earlier result (run, siting, ensemble, study).
RESULT_MARKERS = ("manifest.json", "siting.json", "ensemble_kpis.parquet", "study.json")


def check_out_dir(out_dir: str | Path, option: str = "--out", replaces: bool = True) -> Path:
    """Check an output folder before any work starts; return it made absolute.

    It is refused (:class:`ScenarioError` against the command line) when it is a file, when
    a file sits where one of its parents should be, when nothing can be written where it
    would be created (a probe file is made there and removed), and, when the finished work
    ``replaces`` the folder (a run, an ensemble), when it is the current folder, one of its
    parents, or an existing folder that is neither empty nor an earlier result (no
    :data:`RESULT_MARKERS` file): a folder of something else must never be replaced."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ScenarioError("command line", option, f"{out_dir} is a file, not a folder; "
                            "allowed: a folder path")
    cwd = Path.cwd().resolve()
    if replaces and (out == cwd or out in cwd.parents):
        raise ScenarioError("command line", option, f"{out_dir} is the current folder or one "
                            "of its parents, which a finished run would replace; allowed: a "
                            "folder of its own, e.g. results/<name>")
    if replaces and out.is_dir() and any(out.iterdir()) and not any(
            (out / f).exists() for f in RESULT_MARKERS):
        raise ScenarioError("command line", option, f"{out_dir} exists and holds something "
                            "else than an earlier result, which a finished run would replace; "
                            "allowed: a new or empty folder, or an earlier result's")
    _check_writable_parent(out, out_dir, option)
    return out


def check_out_file(path: str | Path, option: str = "--out", suffix: str = ".parquet") -> Path:
    """Check an output file before any work starts (as :func:`check_out_dir` does a folder);
    return it made absolute. Refused: another suffix, an existing folder, a file where one
    of its parents should be, a place nothing can be written (``/proc``, ``/sys``)."""
    out = Path(path).expanduser().resolve()
    if out.suffix != suffix:
        raise ScenarioError("command line", option, f"must end in {suffix}, got {path}")
    if out.is_dir():
        raise ScenarioError("command line", option, f"{path} is a folder, not a file; "
                            f"allowed: a file path ending in {suffix}")
    _check_writable_parent(out, path, option)
    return out


def _check_writable_parent(out: Path, given: str | Path, option: str) -> None:
    """The folder ``out`` would be made in (its nearest existing parent) is a folder that
    can be written to (a probe file is made there and removed)."""
    probe = out.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ScenarioError("command line", option, f"{probe} is a file, so {given} cannot be "
                            "made; allowed: a path in a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ScenarioError("command line", option, f"cannot write under {probe} "
                            f"({exc.strerror}); allowed: a writable folder") from None


def run_scenario(
    scenario: Scenario, out_dir: str | Path, siting_file: str | Path | None = None,
    realtime: float | None = None, progress: bool = True, hil: bool = False,
    controller_address: str | None = None, modbus_address: str | None = None,
    on_modbus: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` and write DESIGN.md §5's files into ``out_dir``; return the KPIs.

    ``realtime`` is mosaik's ``rt_factor``: one simulated second takes ``realtime`` wall
    seconds (1.0 is real time, 0.01 runs 100× faster than real time); None runs as fast as
    possible.
    ``hil=True`` runs the controller as a separate process that mosaik starts;
    ``controller_address`` (``HOST:PORT``) reaches one the user started (docs/hil.md). A
    controller that is not there, dies or stops answering raises :class:`ControllerLost`
    (the rows simulated until then stay in the partial folder it names).
    ``modbus_address`` (``HOST:PORT``; port 0: any free port) serves the run's Modbus/TCP
    register map (docs/hil.md); ``on_modbus(address)`` is told the address it serves on.
    ``controller.kind = "external"`` needs it: the FCM set-points then come from its writes.
    """
    from scenarios.remote import SimulatorLost, abandon
    from scenarios.world import (build_world, collect_faults, collect_modbus, collect_timing,
                                 collect_trips, plan_world)

    if scenario.controller.kind == "external" and modbus_address is None:
        raise ScenarioError("command line", "--controller", "external takes the FCM set-points "
                            "from Modbus writes; allowed: with --modbus HOST:PORT")
    if modbus_address is not None:
        check_listen_address(modbus_address, "--modbus")
    out_dir = check_out_dir(out_dir)
    # every check against the feeder (and the siting file: missing, a folder, ...), no files yet
    plan = plan_world(scenario, siting_file)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t_start = time.perf_counter()
    handles = None
    try:
        handles = build_world(plan, tmp / "timeseries.parquet", hil=hil, progress=progress,
                              controller_address=controller_address, realtime=realtime,
                              modbus_address=modbus_address)
        if modbus_address is not None and on_modbus is not None:
            on_modbus(handles.sims["modbus"].address())
        plan = dataclasses.replace(plan, scenario=handles.scenario or plan.scenario)
        until = plan.steps * plan.step_s
        t_run = time.perf_counter()
        try:
            with warnings.catch_warnings():  # lags are measured and reported (rt.lag_s, KPIs)
                warnings.filterwarnings("ignore", "Simulation too slow for real-time factor")
                # the bar is the Recorder's, in steps (mosaik's counts simulated seconds)
                handles.world.run(until=until, rt_factor=realtime, print_progress=False,
                                  shutdown=False)
        except SimulatorLost:
            abandon(handles.world, "Rec")
            raise
        run_wall = time.perf_counter() - t_run
        timing = collect_timing(handles)
        trip_log = collect_trips(handles)
        fault_log = collect_faults(handles)
        modbus = collect_modbus(handles)
        handles.world.shutdown()
        extra = {**_timing_split(timing, run_wall), **modbus}
        kpis = _finish(plan, tmp, extra, siting_file, realtime, time.perf_counter() - t_start,
                       trip_log, fault_log)
    except ScenarioError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except SimulatorLost as exc:
        from scenarios.timeseries_io import parts_dir

        rows = tmp / "timeseries.parquet"
        kept = tmp if rows.exists() or any(parts_dir(rows).glob("*")) else None
        if kept is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise ControllerLost(exc.address, exc.what, kept) from None
    except KeyboardInterrupt:
        raise RunInterrupted(tmp) from None
    except BaseException:
        logger.error("run failed; what was simulated is kept in %s", tmp)
        raise
    _move_into_place(tmp, out_dir)
    return kpis


def check_listen_address(address: str, option: str) -> None:
    """``HOST:PORT`` that this machine can listen on now (ScenarioError against ``option``)."""
    import socket

    from models.schema import split_address

    host, port = split_address(address)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise ScenarioError("command line", option, f"cannot listen on {address} "
                            f"({exc.strerror or exc}); allowed: a free port of this machine") from None


def _timing_split(timing: dict[str, float], run_wall: float) -> dict[str, float]:
    """Wall time of the run split into power flow, MILP, recording and the rest (mosaik and
    the other adapters), from the timers each adapter keeps."""
    pf = timing.get("pf_s", timing.get("powerflow_s", 0.0))
    build = timing.get("milp_build_s", 0.0)
    milp = timing.get("milp_s", 0.0) + build
    rec = timing.get("recording_s", 0.0)
    ctrl_other = max(timing.get("controller_s", 0.0) - milp, 0.0)
    models = timing.get("fcm_s", 0.0) + timing.get("dc_s", timing.get("campus_s", 0.0))
    return {
        "wall_run_s": run_wall,
        "wall_powerflow_s": pf,
        "wall_milp_s": milp,
        "controller_build_s": build,
        "wall_recording_s": rec,
        "wall_controller_other_s": ctrl_other,
        "wall_models_s": models,
        "wall_mosaik_s": max(run_wall - pf - milp - rec - ctrl_other - models, 0.0),
        **{f"timer_{k}": v for k, v in timing.items()},
    }


def _finish(plan: Any, tmp: Path, extra: dict[str, float], siting_file: Any, realtime: Any,
            wall_s: float, trip_log: list[dict[str, Any]],
            fault_log: dict[str, Any] | None = None) -> dict[str, Any]:
    from scenarios.kpis import compute_kpis, write_kpis
    from scenarios.manifest import write_manifest
    from scenarios.report import write_report
    from controllers.ac_validation import network_model_validation
    from scenarios.timeseries_io import read_timeseries

    ts = read_timeseries(tmp / "timeseries.parquet")
    extra = {**extra, "wall_s": wall_s,
             "ac_validation_network": network_model_validation(
                 ts, plan.feeder, {c.name: c.bus for c in plan.scenario.campus},
                 {pl.label: pl.bus for pl in plan.placements}, plan.initial_grid)}
    kpis = compute_kpis(ts, plan.scenario, extra, trip_log=trip_log, fault_log=fault_log,
                        source_bus=plan.feeder.source_bus)
    kpis.setdefault("wall_s", wall_s)
    write_kpis(tmp, kpis)
    write_manifest(tmp, plan.scenario, plan.scenario.seed, extra={
        "siting_file": None if siting_file is None else str(siting_file),
        "placements": [p.model_dump(mode="json") for p in plan.placements],
        "schedule_mw": list(plan.schedule_mw),
        "realtime": realtime,
        "timing_s": extra,
    })
    write_report(tmp, ts, kpis, plan.scenario, plan.placements)
    return kpis


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished folder into place, replacing an older result at that path."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
