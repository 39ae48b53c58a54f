"""Key performance indicators of a run, computed from ``timeseries.parquet`` (DESIGN.md §5).

The equations are in docs/kpis.md; each helper's docstring repeats its own. Notation: steps
``t = 0..T−1`` of length Δt = ``scenario.simulation.step_s`` seconds (never assumed), energy
of a power held over one step = P · Δt / 3600 (MWh), ``C`` = the set of steps whose power flow
converged (``pf.converged``; all steps when the column is absent).

Values that are undefined for a run (no converged step, no MILP solve, no prediction) are
NaN in the returned dict; :func:`write_kpis` writes them as JSON ``null``, through
:class:`KPIReport`, the model of ``kpis.json`` (``KPIReport.read(path)`` reads one back).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controllers.horizon import IMPORT_BAND_FRAC  # the MILP's restoration term uses the same
from scenarios.config import Scenario
from scenarios.json_file import JsonFile, Number, jsonable

logger = logging.getLogger(__name__)


#: A campus demand/draw gap below this (MW) is round-off, not unserved load.
GAP_TOL_MW = 1e-6

KPI_KEYS = (
    "unserved_energy_mwh", "imbalance_mwh", "ramp_violation_mwh",
    "voltage_violation_bus_steps", "thermal_violation_line_steps", "v_min_pu", "v_max_pu",
    "max_line_loading_pct", "restoration_time_s", "fcm_operating_cost",
    "pf_nonconverged_steps", "pf_invariant_violations", "pf_recovered_steps",
    "controller_solves", "controller_fallbacks",
    "controller_solve_s_median", "controller_solve_s_max", "ac_validation", "steps", "wall_s",
)


def group_columns(ts: pd.DataFrame, prefix: str, suffix: str) -> dict[str, str]:
    """``{key: column}`` for the columns ``<prefix>.<key>.<suffix>`` (e.g. ``bus``, ``v_pu``).

    ``prefix`` is matched at the start of the name, so ``bus`` does not match
    ``pred.bus.18.v_pu``.
    """
    pat = re.compile(rf"^{re.escape(prefix)}\.(.+)\.{re.escape(suffix)}$")
    out: dict[str, str] = {}
    for col in ts.columns:
        m = pat.match(str(col))
        if m:
            out[m.group(1)] = str(col)
    return out


def natural_key(name: str) -> tuple:
    """Sort key that puts bus ``2`` before ``10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name)))


def _bool(series: pd.Series, missing: bool) -> np.ndarray:
    """A bool/boolean/object column as a numpy bool array, missing values → ``missing``."""
    return series.astype(object).where(series.notna(), missing).astype(bool).to_numpy()


def converged_mask(ts: pd.DataFrame) -> np.ndarray:
    """Steps whose power flow converged; a missing flag counts as not converged."""
    if "pf.converged" not in ts.columns:
        return np.ones(len(ts), dtype=bool)
    return _bool(ts["pf.converged"], missing=False)


def _f(ts: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(ts[col], errors="coerce").to_numpy(dtype=float)


def power_flow_counts(ts: pd.DataFrame, ok: np.ndarray) -> dict[str, int]:
    """What became of the steps' power flows (``pf.status``, ``pf.recovery``; DESIGN.md §2a):

    * ``pf_nonconverged_steps``: steps without a good result that OpenDSS did not solve
      (``diverged`` or ``aborted``; every step without a good result when the status
      column is absent);
    * ``pf_invariant_violations``: steps OpenDSS solved whose result broke an invariant
      (an injection off its set-point, the power balance) and was not used;
    * ``pf_recovered_steps``: good steps that needed a retry or frozen controls.
    """
    bad = ~ok
    if "pf.status" not in ts.columns:
        return {"pf_nonconverged_steps": int(bad.sum()), "pf_invariant_violations": 0,
                "pf_recovered_steps": 0}
    status = ts["pf.status"].astype(str).to_numpy()
    invariant = status == "invariant"
    recovered = ok & (ts["pf.recovery"].fillna("").astype(str).to_numpy() != "") \
        if "pf.recovery" in ts.columns else np.zeros(len(ts), dtype=bool)
    return {"pf_nonconverged_steps": int((bad & ~invariant).sum()),
            "pf_invariant_violations": int(invariant.sum()),
            "pf_recovered_steps": int(recovered.sum())}


def unserved_energy_mwh(ts: pd.DataFrame, campuses: list[str], dt_s: float) -> float:
    """``E_unserved = Σ_t Σ_c max(0, P^dem_{c,t} − P_{c,t}) Δt/3600 + Σ_t Σ_k P^shed_{k,t} Δt/3600``.

    ``P^dem`` is ``dc.<c>.p_demand_mw`` (what the campus would draw on the grid), ``P`` is
    ``dc.<c>.p_mw`` (what it drew); ``P^shed`` any recorded ``*.p_shed_mw`` column (shed
    background load). Missing values contribute nothing; a campus gap below
    ``GAP_TOL_MW`` (round-off between equal values) counts as zero.
    """
    total = 0.0
    for c in campuses:
        dem, got = f"dc.{c}.p_demand_mw", f"dc.{c}.p_mw"
        if dem not in ts.columns or got not in ts.columns:
            logger.warning("kpis: campus %s has no %s/%s column; its unserved energy is 0",
                           c, dem, got)
            continue
        gap = _f(ts, dem) - _f(ts, got)
        gap = np.where(gap > GAP_TOL_MW, gap, 0.0)  # NaN compares False: contributes 0
        total += float(np.nansum(gap))
    for col in ts.columns:
        if str(col).endswith(".p_shed_mw"):
            total += float(np.nansum(np.clip(_f(ts, col), 0.0, None)))
    return total * dt_s / 3600.0


def is_unsupported(record: Mapping[str, Any]) -> bool:
    """A trip-log record of the counterfactual campus without the inverters' support."""
    return record.get("outcome") == "unsupported"


def trips_avoided(trip_log: list[dict[str, Any]]) -> int:
    """``Σ_f (N_f^without − N_f^with)``: per grid fault, the campus trips the counterfactual
    without the inverters' fault-time support had, less those that happened, summed over
    the faults (docs/kpis.md). From the log: a trip only the counterfactual had counts +1,
    a trip only the supported campus had −1 (one both had, ``unsupported_too``, 0). A trip
    without a fault (the steady POI voltage) counts in neither."""
    n = 0
    for r in trip_log:
        if int(r.get("fault_id", -1)) < 0:
            continue
        if is_unsupported(r):
            n += 1
        elif not r.get("unsupported_too", True):
            n -= 1
    return n


def unserved_energy_avoided_mwh(ts: pd.DataFrame, campuses: list[str], dt_s: float) -> float:
    """``ΔE = Σ_c Σ_t (P_ct − P^u_ct) Δt/3600``: the energy each campus drew from the grid
    that its counterfactual without the inverters' support (``dc.<c>.p_unsupported_mw``,
    with its own trips and reconnections, :mod:`models.ride_through`) would have left
    unserved; negative where the support only moved a trip later (docs/kpis.md)."""
    total = 0.0
    for c in campuses:
        got, cf = f"dc.{c}.p_mw", f"dc.{c}.p_unsupported_mw"
        if got in ts.columns and cf in ts.columns:
            total += float(np.nansum(_f(ts, got) - _f(ts, cf)))
    return total * dt_s / 3600.0


#: the window of ``simultaneous_loss_mw`` (s)
LOSS_WINDOW_S = 60.0


def simultaneous_loss_mw(ts: pd.DataFrame, trip_log: list[dict[str, Any]],
                         residual: Mapping[str, float], dt_s: float) -> float:
    """The largest campus load lost within any ``LOSS_WINDOW_S`` window: each trip loses its
    campus's load ``P^dem (1 − ρ)`` of the step it falls in (``dc.<c>.p_demand_mw``), and
    the trips within 60 s of each other add up (0 without trips)."""
    events = []
    t_index = np.asarray(ts.index, dtype=float)
    for r in trip_log:
        if r.get("outcome", "trip") != "trip":
            continue
        c, t = str(r.get("campus", "")), float(r["time_s"])
        col = f"dc.{c}.p_demand_mw"
        if col not in ts.columns or not len(t_index):
            continue
        k = int(np.clip(np.searchsorted(t_index, t, side="right") - 1, 0, len(t_index) - 1))
        dem = float(pd.to_numeric(ts[col].iloc[k], errors="coerce"))
        if math.isfinite(dem):
            events.append((t, dem * (1.0 - residual.get(c, 0.0))))
    events.sort()
    best = 0.0
    for i, (t0, _) in enumerate(events):
        best = max(best, sum(mw for t, mw in events[i:] if t < t0 + LOSS_WINDOW_S))
    return best


def max_v_after_loss_pu(ts: pd.DataFrame, trip_log: list[dict[str, Any]], campuses: list[str],
                        source_bus: str | None = None) -> float:
    """The highest bus voltage (``bus.<b>.v_pu``, the source bus left out: its tap changer
    holds it) over the steps after a campus trip while a campus is still off the grid (the
    voltage rise a lost load leaves, and what the controller does about it); NaN without a
    trip."""
    buses = {b: c for b, c in group_columns(ts, "bus", "v_pu").items() if b != source_bus}
    if not buses or not any(r.get("outcome", "trip") == "trip" for r in trip_log):
        return math.nan
    t_index = np.asarray(ts.index, dtype=float)
    first = min(float(r["time_s"]) for r in trip_log if r.get("outcome", "trip") == "trip")
    off = np.zeros(len(ts), dtype=bool)
    for c in campuses:
        if f"dc.{c}.online" in ts.columns:
            off |= ~_bool(ts[f"dc.{c}.online"], True)
    after = (t_index > first) & off
    v = ts[list(buses.values())].apply(pd.to_numeric, errors="coerce").to_numpy(float)[after]
    return float(np.nanmax(v)) if np.isfinite(v).any() else math.nan


def fault_kpis(ts: pd.DataFrame, dt_s: float, fault_log: Mapping[str, Any] | None) -> dict[str, Any]:
    """``faults`` (grid faults with a shot in the run), ``lockouts``, ``fault_shots``,
    ``fault_solve_fallbacks`` (shots solved with the loads as impedances) and
    ``background_unserved_mwh`` (the feeder's own load behind open devices,
    ``Σ_t sub.background_shed_mw Δt/3600``)."""
    counts = dict((fault_log or {}).get("counts", {}))
    shed = _f(ts, "sub.background_shed_mw") if "sub.background_shed_mw" in ts.columns else np.zeros(0)
    return {"faults": int(counts.get("faults", 0)), "lockouts": int(counts.get("lockouts", 0)),
            "fault_shots": int(counts.get("shots", len((fault_log or {}).get("shots", [])))),
            "fault_solve_fallbacks": int(counts.get("fallbacks", 0)),
            "background_unserved_mwh": float(np.nansum(shed)) * dt_s / 3600.0}


def fcm_q_mvarh(ts: pd.DataFrame, dt_s: float) -> float:
    """``Σ_k Σ_t |Q_kt| Δt/3600``: the FCMs' reactive energy, either direction (Mvarh)."""
    cols = list(group_columns(ts, "fcm", "q_mvar").values())
    if not cols:
        return 0.0
    q = ts[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    return float(np.nansum(np.abs(q))) * dt_s / 3600.0


def imbalance_mwh(ts: pd.DataFrame, dt_s: float) -> float:
    """``E_imb = Σ_t |P^sub_t − P^sched_t| Δt/3600`` over steps where both are known."""
    if "sub.p_mw" not in ts.columns or "sub.p_sched_mw" not in ts.columns:
        return math.nan
    return float(np.nansum(np.abs(_f(ts, "sub.p_mw") - _f(ts, "sub.p_sched_mw")))) * dt_s / 3600.0


def ramp_excess_mw(p_sub: np.ndarray, ramp_mw_per_s: float, dt_s: float) -> np.ndarray:
    """Per-step ramp excess ``x_t = max(0, |P_t − P_{t−1}| − R Δt)`` (MW), ``x_0 = 0``.

    ``R`` is the upstream ramp limit in MW/s; a pair with a missing value gives 0.
    """
    x = np.zeros(len(p_sub))
    if len(p_sub) > 1:
        d = np.abs(np.diff(p_sub)) - ramp_mw_per_s * dt_s
        x[1:] = np.where(np.isnan(d), 0.0, np.clip(d, 0.0, None))
    return x


def restoration(normal: np.ndarray, dt_s: float) -> dict[str, float]:
    """Time outside normal state: ``T_rest = Δt · #{t : ¬normal_t}``, its episodes (maximal
    runs of abnormal steps) and the longest episode (s)."""
    abnormal = ~normal
    starts = int(np.sum(abnormal[1:] & ~abnormal[:-1])) + int(bool(abnormal[:1].any()))
    longest = run = 0
    for a in abnormal:
        run = run + 1 if a else 0
        longest = max(longest, run)
    return {"restoration_time_s": float(abnormal.sum()) * dt_s,
            "restoration_episodes": starts, "restoration_longest_s": float(longest) * dt_s}


def ac_validation(ts: pd.DataFrame, ok: np.ndarray) -> dict[str, float]:
    """``e = |V^pred_{b,t} − V_{b,t}|`` over buses ``b`` and converged steps ``t`` where the
    MILP's prediction ``pred.bus.<b>.v_pu`` applies (is not NaN); max and mean of ``e``."""
    pred = group_columns(ts, "pred.bus", "v_pu")
    meas = group_columns(ts, "bus", "v_pu")
    errs = []
    steps = np.zeros(len(ts), dtype=bool)
    for bus, pcol in pred.items():
        if bus not in meas:
            continue
        e = np.abs(_f(ts, pcol) - _f(ts, meas[bus]))
        use = ok & ~np.isnan(e)
        errs.append(e[use])
        steps |= use
    e_all = np.concatenate(errs) if errs else np.empty(0)
    return {
        "max_abs_v_error_pu": float(e_all.max()) if e_all.size else math.nan,
        "mean_abs_v_error_pu": float(e_all.mean()) if e_all.size else math.nan,
        "points": int(e_all.size),
        "steps": int(steps.sum()),
    }


def compute_kpis(ts: pd.DataFrame, scenario: Scenario, extra: dict | None = None, *,
                 import_band_mw: float | None = None,
                 trip_log: list[dict[str, Any]] | None = None,
                 fault_log: Mapping[str, Any] | None = None,
                 source_bus: str | None = None) -> dict[str, Any]:
    """All KPIs of a run (DESIGN.md §5; definitions in docs/kpis.md).

    ``ts`` is the time series as written by the Recorder (one row per step). ``extra`` holds
    what the runner measured (``wall_s``, timings, ...) and is merged last. ``import_band_mw``
    is the band around the schedule inside which the import counts as normal for the
    restoration time; default ``IMPORT_BAND_FRAC`` × max |P^sched|. ``trip_log`` is the
    campuses' own trip log (``scenarios.world.collect_trips``): with it ``campus_trips``
    counts the trips, ``trips_avoided`` (:func:`trips_avoided`), ``simultaneous_loss_mw``
    and ``max_v_after_loss_pu`` follow, and the log is kept as ``campus_trip_log``.
    ``fault_log`` is the feeder's (``scenarios.world.collect_faults``): the fault counts
    (:func:`fault_kpis`) and the log as ``fault_log``. ``source_bus``: the feeder's, left
    out of ``max_v_after_loss_pu``.
    """
    dt = float(scenario.simulation.step_s)
    grid = scenario.grid
    n = len(ts)
    if n > 1 and np.issubdtype(np.asarray(ts.index).dtype, np.number):
        steps_seen = np.unique(np.diff(np.asarray(ts.index, dtype=float)))
        if steps_seen.size and not np.allclose(steps_seen, dt):
            logger.warning("kpis: time index steps %s s differ from simulation.step_s = %s s",
                           steps_seen[:3].tolist(), dt)
    ok = converged_mask(ts)
    campuses = [c.name for c in scenario.campus]
    k: dict[str, Any] = {}

    k["unserved_energy_mwh"] = unserved_energy_mwh(ts, campuses, dt)
    k["imbalance_mwh"] = imbalance_mwh(ts, dt)

    ramp_mw_per_s = grid.ramp_limit_mw_per_min / 60.0
    if "sub.p_mw" in ts.columns:
        x = ramp_excess_mw(_f(ts, "sub.p_mw"), ramp_mw_per_s, dt)
        k["ramp_violation_mwh"] = float(x.sum()) * dt / 3600.0
        k["ramp_violation_steps"] = int((x > 0).sum())
    else:
        k["ramp_violation_mwh"], k["ramp_violation_steps"] = math.nan, 0

    buses = group_columns(ts, "bus", "v_pu")
    v = ts[[buses[b] for b in sorted(buses, key=natural_key)]].apply(
        pd.to_numeric, errors="coerce").to_numpy(dtype=float)[ok] if buses else np.empty((0, 0))
    k["voltage_violation_bus_steps"] = int(np.sum((v < grid.v_min_pu) | (v > grid.v_max_pu)))
    k["v_min_pu"] = float(np.nanmin(v)) if np.isfinite(v).any() else math.nan
    k["v_max_pu"] = float(np.nanmax(v)) if np.isfinite(v).any() else math.nan

    lines = group_columns(ts, "line", "loading_pct")
    ld = ts[list(lines.values())].apply(pd.to_numeric, errors="coerce").to_numpy(
        dtype=float)[ok] if lines else np.empty((0, 0))
    k["thermal_violation_line_steps"] = int(np.sum(ld > grid.max_loading_pct))
    k["max_line_loading_pct"] = float(np.nanmax(ld)) if np.isfinite(ld).any() else math.nan

    # normal state: converged, voltages in limits, every campus online, import near schedule
    normal = ok.copy()
    if buses:
        vall = ts[list(buses.values())].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        normal &= ~np.any((vall < grid.v_min_pu) | (vall > grid.v_max_pu), axis=1)
    for c in campuses:
        if f"dc.{c}.online" in ts.columns:
            normal &= _bool(ts[f"dc.{c}.online"], missing=True)
    band = import_band_mw
    if "sub.p_mw" in ts.columns and "sub.p_sched_mw" in ts.columns:
        sched = _f(ts, "sub.p_sched_mw")
        if band is None:
            band = IMPORT_BAND_FRAC * float(np.nanmax(np.abs(sched))) if np.isfinite(sched).any() else 0.0
        dev = np.abs(_f(ts, "sub.p_mw") - sched)
        normal &= ~(dev > band)  # NaN deviation: judged by the other conditions
    k.update(restoration(normal, dt))
    k["restoration_import_band_mw"] = math.nan if band is None else float(band)

    cost_cols = list(group_columns(ts, "fcm", "cost").values())
    k["fcm_operating_cost"] = float(np.nansum(ts[cost_cols].apply(
        pd.to_numeric, errors="coerce").to_numpy(float))) if cost_cols else 0.0

    k.update(power_flow_counts(ts, ok))
    solved = _bool(ts["ctrl.solved"], False) if "ctrl.solved" in ts.columns else np.zeros(n, bool)
    k["controller_solves"] = int(solved.sum())
    k["controller_fallbacks"] = int(_bool(ts["ctrl.fallback"], False).sum()) \
        if "ctrl.fallback" in ts.columns else 0
    solve_s = _f(ts, "ctrl.solve_s")[solved] if "ctrl.solve_s" in ts.columns else np.empty(0)
    solve_s = solve_s[~np.isnan(solve_s)]
    k["controller_solve_s_median"] = float(np.median(solve_s)) if solve_s.size else math.nan
    k["controller_solve_s_max"] = float(solve_s.max()) if solve_s.size else math.nan
    if "rt.lag_s" in ts.columns:  # a real-time run (--realtime): every re-solve, fallbacks too
        all_s = _f(ts, "ctrl.solve_s")[resolve_mask(ts)] if "ctrl.solve_s" in ts.columns \
            else np.empty(0)
        k.update(realtime_kpis(ts, all_s[~np.isnan(all_s)], scenario.controller.deadline_s))

    offline_steps = int(sum(
        np.sum(~on[1:] & on[:-1]) for on in (
            _bool(ts[f"dc.{c}.online"], True) for c in campuses if f"dc.{c}.online" in ts.columns)))
    k["fcm_q_mvarh"] = fcm_q_mvarh(ts, dt)
    if trip_log is None:
        k["campus_trips"] = offline_steps
        k["trips_avoided"], k["simultaneous_loss_mw"], k["max_v_after_loss_pu"] = 0, 0.0, math.nan
    else:  # the campus's own log sees a re-trip within a step and a first-step trip
        trips = [r for r in trip_log if r.get("outcome", "trip") == "trip"]
        k["campus_trips"], k["campus_trips_offline_steps"] = len(trips), offline_steps
        k["trips_avoided"] = trips_avoided(trip_log)
        k["campus_trip_log"] = list(trip_log)
        residual = {c.name: c.backup_residual_frac for c in scenario.campus}
        k["simultaneous_loss_mw"] = simultaneous_loss_mw(ts, trip_log, residual, dt)
        k["max_v_after_loss_pu"] = max_v_after_loss_pu(ts, trip_log, campuses, source_bus)
    k["unserved_energy_avoided_mwh"] = unserved_energy_avoided_mwh(ts, campuses, dt)
    k.update(fault_kpis(ts, dt, fault_log))
    if fault_log is not None:
        k["fault_log"] = {"faults": list(fault_log.get("faults", [])),
                          "shots": list(fault_log.get("shots", []))}
    k["ac_validation_prediction"] = {**ac_validation(ts, ok), "basis": "prediction"}
    k["steps"] = int(n)
    k["step_s"] = dt
    k["wall_s"] = math.nan
    if extra:
        k.update(extra)
    k["ac_validation"] = ac_validation_headline(k)
    return k


def resolve_mask(ts: pd.DataFrame) -> np.ndarray:
    """The steps at which the controller re-solved: those it solved and those it fell back
    (``ctrl.solved`` or ``ctrl.fallback``; a held step is neither)."""
    n = len(ts)
    solved = _bool(ts["ctrl.solved"], False) if "ctrl.solved" in ts.columns else np.zeros(n, bool)
    fell = _bool(ts["ctrl.fallback"], False) if "ctrl.fallback" in ts.columns else np.zeros(n, bool)
    return solved | fell


def realtime_kpis(ts: pd.DataFrame, solve_s: np.ndarray, deadline_s: float) -> dict[str, Any]:
    """The ``--realtime`` KPIs (docs/kpis.md): ``rt_deadline_misses``, the steps whose row was
    not complete when the next step was due (``rt.lag_s > 0``, :mod:`sim.recorder`);
    ``rt_max_lag_s``, the largest such lag; ``controller_deadline_misses``, the re-solves
    (``solve_s``: those that solved and those that fell back) whose update and solve took
    longer than ``controller.deadline_s`` of wall time."""
    lag = _f(ts, "rt.lag_s")
    lag = lag[np.isfinite(lag)]
    return {
        "rt_deadline_misses": int(np.sum(lag > 0.0)),
        "rt_max_lag_s": float(lag.max()) if lag.size else 0.0,
        "controller_deadline_misses": int(np.sum(solve_s > deadline_s)),
        "controller_deadline_s": float(deadline_s),
    }


def ac_validation_headline(k: dict[str, Any]) -> dict[str, Any]:
    """``ac_validation``: the MILP's network model against OpenDSS (docs/kpis.md).

    The headline is ``ac_validation_network`` when the runner computed it: LinDistFlow at
    the dispatch that was applied and the loads that were measured, linearised as the MPC
    linearises, so it isolates the network model (DESIGN.md §5: "the MILP's predicted
    voltages" with the *inputs* the plant actually saw). The forecast-inclusive figure, the
    MILP's own prediction with its forecast error, stays under ``ac_validation_prediction``.
    Without a network-model figure (``compute_kpis`` called without the runner) the headline
    is the prediction comparison, and ``basis`` says which one it is.
    """
    net = k.get("ac_validation_network")
    if isinstance(net, dict) and "max_abs_v_error_pu" in net:
        return {**net, "basis": "network_model"}
    return dict(k["ac_validation_prediction"])


class ACValidation(JsonFile):
    """``ac_validation``: the network model's voltages against OpenDSS (pu; ``null``
    without a comparison), with whatever else the comparison reports."""

    max_abs_v_error_pu: Number
    mean_abs_v_error_pu: Number


class KPIReport(JsonFile):
    """``kpis.json`` (DESIGN.md §5): the keys every run has, typed; any other (the timing
    split, ``campus_trip_log``, the ``--realtime`` figures) kept as given. Undefined values
    (NaN) are written as ``null``."""

    unserved_energy_mwh: Number
    imbalance_mwh: Number
    ramp_violation_mwh: Number
    voltage_violation_bus_steps: int
    thermal_violation_line_steps: int
    v_min_pu: Number
    v_max_pu: Number
    max_line_loading_pct: Number
    restoration_time_s: Number
    fcm_operating_cost: Number
    pf_nonconverged_steps: int
    pf_invariant_violations: int
    pf_recovered_steps: int
    controller_solves: int
    controller_fallbacks: int
    controller_solve_s_median: Number
    controller_solve_s_max: Number
    ac_validation: ACValidation
    steps: int
    wall_s: Number
    faults: int
    lockouts: int
    background_unserved_mwh: Number
    simultaneous_loss_mw: Number
    max_v_after_loss_pu: Number
    trips_avoided: int
    unserved_energy_avoided_mwh: Number

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["ac_validation"] = self.ac_validation.to_dict()  # its own keys in their order
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KPIReport:
        obj = super().from_dict(data)
        obj.ac_validation = ACValidation.from_dict(jsonable(data["ac_validation"]))
        return obj


def write_kpis(out_dir: str | Path, kpis: Mapping[str, Any]) -> Path:
    """Write ``kpis.json`` into ``out_dir`` (:class:`KPIReport`) and return its path."""
    return KPIReport.from_dict(kpis).write(Path(out_dir) / "kpis.json")
