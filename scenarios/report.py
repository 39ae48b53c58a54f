"""``report.html`` and its PNG figures, from the time series and the KPIs (DESIGN.md §5).

Figures (matplotlib, object-oriented API on the Agg canvas; no pyplot global state):

* ``substation.png``: import against the schedule; below it the change per step against
  ±R·Δt, with the steps that break the ramp limit shaded in both panels;
* ``campus.png``: each campus's draw with its within-step min/max band and its demand,
  offline periods shaded and trips marked;
* ``fcm_dispatch.png``: delivered FCM power stacked by FCM, injection up, consumption down;
* ``fcm_reactive.png``: each FCM's delivered reactive power and its set-point;
* ``soc.png``: state of charge of the storage FCMs with their SoC limits;
* ``voltage_heatmap.png``: bus × time voltage, diverging colormap centred on 1.0 pu, the
  limits marked on the colorbar, non-converged steps grey;
* ``realtime_lag.png`` (only in a real-time run, ``--realtime``): each step's lag behind
  the real-time schedule (``rt.lag_s``) against simulated time, and the MPC's update and
  solve time against its deadline;
* the KPI table in the HTML, and under the campus figure the campus trip table (from the
  KPIs' ``campus_trip_log``).

A missing column group never fails a figure: the figure says what is absent ("no FCMs").
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.figure import Figure

from models.fcm_catalog import Placement
from scenarios.config import Scenario
from scenarios.kpis import converged_mask, group_columns, natural_key, ramp_excess_mw, resolve_mask

logger = logging.getLogger(__name__)

DPI = 110
FIGURES = ("substation", "campus", "fcm_dispatch", "fcm_reactive", "soc", "voltage_heatmap")

#: KPI key → (label, unit) for the table; keys not listed are shown by name.
KPI_LABELS: dict[str, tuple[str, str]] = {
    "unserved_energy_mwh": ("Unserved energy", "MWh"),
    "imbalance_mwh": ("Import imbalance against schedule", "MWh"),
    "ramp_violation_mwh": ("Ramp-limit violation", "MWh"),
    "ramp_violation_steps": ("Steps breaking the ramp limit", "steps"),
    "voltage_violation_bus_steps": ("Voltage violations", "bus·steps"),
    "thermal_violation_line_steps": ("Thermal violations", "line·steps"),
    "v_min_pu": ("Lowest bus voltage", "pu"),
    "v_max_pu": ("Highest bus voltage", "pu"),
    "max_line_loading_pct": ("Highest line loading", "%"),
    "restoration_time_s": ("Time outside normal state", "s"),
    "restoration_episodes": ("Episodes outside normal state", ""),
    "restoration_longest_s": ("Longest episode outside normal state", "s"),
    "restoration_import_band_mw": ("Import band counted as normal", "MW"),
    "fcm_operating_cost": ("FCM operating cost", "$"),
    "campus_trips": ("Campus trips", ""),
    "campus_trips_offline_steps": ("Campus trips seen as online → offline steps", ""),
    "trips_avoided": ("Campus trips avoided by the inverters' fault current", ""),
    "unserved_energy_avoided_mwh": ("Unserved energy the avoided trips would have caused", "MWh"),
    "fcm_q_mvarh": ("FCM reactive energy, either direction", "Mvarh"),
    "pf_nonconverged_steps": ("Power flow not converged", "steps"),
    "pf_invariant_violations": ("Power flow broke an invariant (not used)", "steps"),
    "pf_recovered_steps": ("Power flow recovered (retry, frozen controls)", "steps"),
    "controller_solves": ("Controller MILP solves", ""),
    "controller_fallbacks": ("Controller fallbacks", ""),
    "controller_solve_s_median": ("MILP solve time, median", "s"),
    "controller_solve_s_max": ("MILP solve time, max", "s"),
    "controller_build_s": ("MPC model build and load into HiGHS (once)", "s"),
    "rt_deadline_misses": ("Real time: steps not done when the next was due", "steps"),
    "rt_max_lag_s": ("Real time: largest lag behind the schedule", "s"),
    "controller_deadline_misses": ("Real time: MPC re-solves over their deadline", ""),
    "controller_deadline_s": ("Real time: MPC deadline", "s"),
    "modbus_writes": ("Modbus set-point writes taken", ""),
    "modbus_writes_rejected": ("Modbus writes refused (read-only, half a float)", ""),
    "modbus_writes_out_of_range": ("Modbus writes beyond the FCM rating or not finite (clipped)", ""),
    "ac_validation.max_abs_v_error_pu": ("AC validation (MILP network model at the applied dispatch): max |V_LinDistFlow − V_OpenDSS|", "pu"),
    "ac_validation.mean_abs_v_error_pu": ("AC validation (MILP network model at the applied dispatch): mean |V_LinDistFlow − V_OpenDSS|", "pu"),
    "ac_validation_prediction.max_abs_v_error_pu": ("MILP prediction incl. forecast error: max |V_pred − V_OpenDSS|", "pu"),
    "ac_validation_prediction.mean_abs_v_error_pu": ("MILP prediction incl. forecast error: mean |V_pred − V_OpenDSS|", "pu"),
    "ac_validation.points": ("AC validation: bus·steps compared", ""),
    "ac_validation.steps": ("AC validation: steps compared", ""),
    "steps": ("Steps", ""),
    "step_s": ("Step Δt", "s"),
    "wall_s": ("Wall time", "s"),
}


def _hours(ts: pd.DataFrame) -> np.ndarray:
    return np.asarray(ts.index, dtype=float) / 3600.0


def _f(ts: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(ts[col], errors="coerce").to_numpy(dtype=float)


def _post(h: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Data for a step-post plot that also draws the last step: the value at ``h_i`` holds
    until ``h_{i+1}``, so the last value is repeated at ``h_last + Δt``."""
    dh = (h[1] - h[0]) if h.size > 1 else 1 / 60
    return (np.append(h, h[-1] + dh), *(np.concatenate([y, y[..., -1:]], axis=-1) for y in ys))


def _time_axis(ax: Any, hours: np.ndarray) -> None:
    span = float(hours[-1] - hours[0]) if hours.size > 1 else 1.0
    step = next((s for s in (0.25, 0.5, 1, 2, 3, 6, 12, 24) if span / s <= 12), 48)
    ax.xaxis.set_major_locator(ticker.MultipleLocator(step))
    ax.set_xlim(hours[0], hours[-1] + (hours[1] - hours[0] if hours.size > 1 else 1 / 60))
    ax.set_xlabel("simulated time [h]")
    ax.grid(True, alpha=0.3)


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i, j) of consecutive True values."""
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(mask)))
    return out


def _legend(ax: Any) -> None:
    """Legend outside the axes, on the right, so it never hides data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)


def _empty(fig: Figure, title: str, message: str) -> None:
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, color="0.4",
            transform=ax.transAxes)
    ax.set_axis_off()


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def fig_substation(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """Import against schedule (top) and change per step against ±R·Δt (bottom)."""
    fig = Figure(figsize=(11, 6), layout="constrained")
    if "sub.p_mw" not in ts.columns or len(ts) == 0:
        _empty(fig, "Substation import", "no substation import recorded")
        return _save(fig, path), "no substation import recorded"
    h = _hours(ts)
    dt = float(scenario.simulation.step_s)
    p = _f(ts, "sub.p_mw")
    limit = scenario.grid.ramp_limit_mw_per_min / 60.0 * dt  # MW per step
    excess = ramp_excess_mw(p, limit / dt, dt)
    bad = excess > 0
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    ax1.plot(h, p, color="C0", lw=1.2, label="import P_sub")
    if "sub.p_sched_mw" in ts.columns:
        ax1.step(*_post(h, _f(ts, "sub.p_sched_mw")), where="post", color="k", lw=1.2, ls="--",
                 label="schedule P_sched")
    if h.size > 1:  # the change P_t − P_{t−1} drawn over [h_{t−1}, h_t], as the shading
        ax2.bar(h[:-1], np.diff(p), width=h[1] - h[0], align="edge",
                color=np.where(bad[1:], "C3", "C0"), label="ΔP per step")
    ax2.axhline(limit, color="C3", ls=":", lw=1.2, label=f"±R·Δt = ±{limit:.3g} MW")
    ax2.axhline(-limit, color="C3", ls=":", lw=1.2)
    for i, j in _spans(bad):
        for ax in (ax1, ax2):
            ax.axvspan(h[max(i - 1, 0)], h[j - 1], color="C3", alpha=0.15, lw=0)
    ax1.plot([], [], color="C3", alpha=0.3, lw=8, label="ramp limit broken")
    ax1.set_ylabel("P [MW]")
    ax1.set_title(f"Substation import against schedule (ramp limit "
                  f"{scenario.grid.ramp_limit_mw_per_min:g} MW/min, {int(bad.sum())} steps over)")
    _legend(ax1)
    ax1.grid(True, alpha=0.3)
    ax2.set_ylabel("ΔP [MW/step]")
    _legend(ax2)
    _time_axis(ax2, h)
    return _save(fig, path), ""


def fig_campus(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """Each campus: draw, min/max band, demand, offline periods and trips."""
    names = [c.name for c in scenario.campus if f"dc.{c.name}.p_mw" in ts.columns]
    fig = Figure(figsize=(11, 2.2 + 2.6 * max(len(names), 1)), layout="constrained")
    if not names or len(ts) == 0:
        _empty(fig, "Campus load", "no campus recorded")
        return _save(fig, path), "no campus recorded"
    h = _hours(ts)
    axes = np.atleast_1d(fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0])
    step_h = (h[1] - h[0]) if h.size > 1 else 0.0
    for ax, name in zip(axes, names):
        pre = f"dc.{name}"
        if f"{pre}.p_min_mw" in ts.columns and f"{pre}.p_max_mw" in ts.columns:
            ax.fill_between(*_post(h, _f(ts, f"{pre}.p_min_mw"), _f(ts, f"{pre}.p_max_mw")),
                            step="post", color="C0", alpha=0.25, lw=0,
                            label="min–max within step")
        ax.step(*_post(h, _f(ts, f"{pre}.p_mw")), where="post", color="C0", lw=1.2,
                label="grid draw (step mean)")
        if f"{pre}.p_demand_mw" in ts.columns:
            ax.step(*_post(h, _f(ts, f"{pre}.p_demand_mw")), where="post", color="k", lw=1.0,
                    ls="--", label="demand")
        cap = next(c.capacity_mw for c in scenario.campus if c.name == name)
        ax.axhline(cap, color="0.5", ls=":", lw=1.2, label=f"capacity {cap:g} MW")
        trips = 0
        if f"{pre}.online" in ts.columns:
            on = ts[f"{pre}.online"].astype(object).where(ts[f"{pre}.online"].notna(), True)
            off = ~on.astype(bool).to_numpy()
            for i, j in _spans(off):
                ax.axvspan(h[i], h[j - 1] + step_h, color="C1", alpha=0.2, lw=0)
                ax.axvline(h[i], color="C3", lw=1.5)
                ax.annotate("trip", (h[i], 1.0), xycoords=("data", "axes fraction"),
                            xytext=(3, -12), textcoords="offset points", color="C3",
                            fontsize=9)
                trips += 1
            if trips:
                ax.plot([], [], color="C1", alpha=0.4, lw=8, label="offline (UPS/backup)")
                ax.plot([], [], color="C3", lw=1.5, label="trip")
        ax.set_ylabel("P [MW]")
        ax.set_title(f"Campus {name}: grid draw ({trips} trip{'s' if trips != 1 else ''})")
        _legend(ax)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.grid(True, alpha=0.3)
    _time_axis(axes[-1], h)
    return _save(fig, path), ""


def _fcm_labels(ts: pd.DataFrame) -> list[str]:
    return sorted(group_columns(ts, "fcm", "p_mw"), key=natural_key)


def fig_fcm_dispatch(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """Delivered FCM power stacked by FCM; injection above zero, consumption below."""
    labels = _fcm_labels(ts)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    if not labels or len(ts) == 0:
        _empty(fig, "FCM dispatch", "no FCMs")
        return _save(fig, path), "no FCMs"
    h = _hours(ts)
    ax = fig.add_subplot()
    p = np.nan_to_num(np.vstack([_f(ts, f"fcm.{lb}.p_mw") for lb in labels]))
    colors = [f"C{i % 10}" for i in range(len(labels))]
    he, pe = _post(h, p)
    ax.stackplot(he, np.clip(pe, 0, None), colors=colors, labels=labels, step="post", alpha=0.85)
    ax.stackplot(he, np.clip(pe, None, 0), colors=colors, step="post", alpha=0.5)
    ax.step(he, pe.sum(axis=0), where="post", color="k", lw=0.7, alpha=0.8,
            label="net FCM output")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("P [MW]  (+ injection / − consumption)")
    ax.set_title("FCM dispatch stack (delivered power; charging and DR payback below zero)")
    _legend(ax)
    _time_axis(ax, h)
    return _save(fig, path), ""


def fig_fcm_reactive(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """Each FCM's delivered reactive power (solid) and its set-point (dashed), + = injection."""
    labels = [lb for lb in _fcm_labels(ts) if f"fcm.{lb}.q_mvar" in ts.columns]
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    if not labels or len(ts) == 0:
        _empty(fig, "FCM reactive power", "no FCMs")
        return _save(fig, path), "no FCMs"
    h = _hours(ts)
    ax = fig.add_subplot()
    for i, lb in enumerate(labels):
        he, q = _post(h, _f(ts, f"fcm.{lb}.q_mvar"))
        ax.step(he, q, where="post", color=f"C{i % 10}", lw=1.3, label=lb)
        if f"fcm.{lb}.q_set_mvar" in ts.columns:
            he, qs = _post(h, _f(ts, f"fcm.{lb}.q_set_mvar"))
            ax.step(he, qs, where="post", color=f"C{i % 10}", lw=0.8, ls="--", alpha=0.7)
    ax.plot([], [], color="0.4", ls="--", lw=0.8, label="set-point")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("Q [Mvar]  (+ injection / − absorption)")
    ax.set_title("FCM reactive power (delivered, within each unit's P–Q capability)")
    _legend(ax)
    _time_axis(ax, h)
    return _save(fig, path), ""


def fig_soc(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """State of charge of every FCM with a finite ``soc`` column, with its SoC limits."""
    labels = [lb for lb in sorted(group_columns(ts, "fcm", "soc"), key=natural_key)
              if np.isfinite(_f(ts, f"fcm.{lb}.soc")).any()]
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    if not labels or len(ts) == 0:
        msg = "no FCMs" if not _fcm_labels(ts) else "no storage FCMs"
        _empty(fig, "State of charge", msg)
        return _save(fig, path), msg
    h = _hours(ts)
    ax = fig.add_subplot()
    kinds = {pl.label: pl.kind for pl in scenario.fcm.placements}
    for i, lb in enumerate(labels):
        ax.plot(h, _f(ts, f"fcm.{lb}.soc"), color=f"C{i}", lw=1.4, label=lb)
        tech = scenario.fcm.catalog.get(kinds.get(lb, lb.rsplit("_", 1)[0]))
        if tech is not None and getattr(tech, "technology", "") == "storage":
            for lim in (tech.soc_min, tech.soc_max):
                ax.axhline(lim, color=f"C{i}", ls=":", lw=1.0)
    ax.plot([], [], color="0.4", ls=":", label="SoC limits")
    ax.set_ylim(0, 1)
    ax.set_ylabel("state of charge [–]")
    ax.set_title("Storage state of charge")
    _legend(ax)
    _time_axis(ax, h)
    return _save(fig, path), ""


def fig_realtime_lag(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """Lag behind the real-time schedule per step (0 = on time) and the controller's
    re-solve times against ``controller.deadline_s``; missed deadlines marked."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    h = _hours(ts)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    lag = _f(ts, "rt.lag_s")
    ax1.plot(h, lag, color="C3", lw=1.2, drawstyle="steps-post", label="lag behind real time")
    late = lag > 0
    ax1.plot(h[late], lag[late], "v", color="C3", ms=4, ls="", label="missed deadline")
    ax1.set_ylabel("lag [s]")
    ax1.set_title("Real-time run: how late each step was done (0 = before the next step was due)")
    _legend(ax1)
    deadline = scenario.controller.deadline_s
    if "ctrl.solve_s" in ts.columns:
        resolved = resolve_mask(ts)
        fell = resolved & ts["ctrl.fallback"].fillna(False).astype(bool).to_numpy() \
            if "ctrl.fallback" in ts.columns else np.zeros(len(ts), bool)
        solve_s = _f(ts, "ctrl.solve_s")
        ok = resolved & ~fell
        ax2.plot(h[ok], solve_s[ok], ".", color="C0", ms=4, label="MPC update + solve")
        if fell.any():
            ax2.plot(h[fell], solve_s[fell], "x", color="C3", ms=5, label="re-solve that fell back")
    ax2.axhline(deadline, color="k", ls="--", lw=1.0, label=f"deadline {deadline:g} s")
    ax2.set_ylabel("time [s]")
    _legend(ax2)
    _time_axis(ax2, h)
    return _save(fig, path), ""


def fig_voltage_heatmap(ts: pd.DataFrame, scenario: Scenario, path: Path) -> tuple[Path, str]:
    """Bus × time voltage; diverging colormap centred on 1.0 pu, limits on the colorbar."""
    buses = group_columns(ts, "bus", "v_pu")
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    if not buses or len(ts) == 0:
        _empty(fig, "Bus voltages", "no bus voltages recorded")
        return _save(fig, path), "no bus voltages recorded"
    names = sorted(buses, key=natural_key)
    h = _hours(ts)
    v = np.vstack([_f(ts, buses[b]) for b in names])
    v[:, ~converged_mask(ts)] = np.nan
    lo, hi = scenario.grid.v_min_pu, scenario.grid.v_max_pu
    dmin = np.nanmin(v) if np.isfinite(v).any() else 1.0
    dmax = np.nanmax(v) if np.isfinite(v).any() else 1.0
    vmin, vmax = min(lo, dmin) - 0.005, max(hi, dmax) + 0.005
    norm = mcolors.TwoSlopeNorm(vcenter=1.0, vmin=vmin, vmax=vmax)
    cmap = colormaps["RdBu"].with_extremes(bad="0.75")
    edges_t = np.append(h, h[-1] + ((h[1] - h[0]) if h.size > 1 else 1 / 60))
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(edges_t, np.arange(len(names) + 1), v, cmap=cmap, norm=norm,
                         shading="flat", rasterized=True)
    viol = (v < lo) | (v > hi)
    if viol.any() and min(viol.shape) >= 2:  # contour needs a 2 × 2 grid at least
        ax.contour(h + (edges_t[1] - edges_t[0]) / 2, np.arange(len(names)) + 0.5,
                   viol.astype(float), levels=[0.5], colors="k", linewidths=0.8)
    every = max(1, len(names) // 25)
    ax.set_yticks(np.arange(0, len(names), every) + 0.5, [names[i] for i in
                                                          range(0, len(names), every)])
    ax.set_ylabel("bus")
    n_viol = int(viol.sum())
    ax.set_title(f"Bus voltage [pu] (limits {lo:g}–{hi:g} pu; {n_viol} bus·steps outside, "
                 "black outline; grey = power flow not converged)")
    _time_axis(ax, h)
    ax.grid(False)
    cb = fig.colorbar(mesh, ax=ax, label="V [pu]")
    ticks = [round(lo, 4), 1.0, round(hi, 4)]
    for x in (vmin + 0.005, (lo + 1.0) / 2, (1.0 + hi) / 2, vmax - 0.005):
        if all(abs(x - t) > 0.12 * (vmax - vmin) for t in ticks):
            ticks.append(round(x, 4))
    ticks.sort()
    cb.set_ticks(ticks, labels=[f"{x:.3f}" + (" v_min" if x == round(lo, 4) else
                                             " v_max" if x == round(hi, 4) else "")
                               for x in ticks])
    for lim in (lo, hi):
        cb.ax.axhline(lim, color="k", lw=2.5)
    return _save(fig, path), ""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return html.escape(str(value))


def _flatten(kpis: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for k, v in kpis.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


_UNIT_SUFFIX = (("_mwh", "MWh"), ("_mw", "MW"), ("_mvar", "Mvar"), ("_pu", "pu"),
                ("_pct", "%"), ("_s", "s"))


def _label(key: str) -> tuple[str, str]:
    """Label and unit of a KPI key; unknown keys get their unit from the name's suffix."""
    if key in KPI_LABELS:
        return KPI_LABELS[key]
    unit = next((u for suf, u in _UNIT_SUFFIX if key.endswith(suf)), "")
    text = key.replace("wall_", "wall time: ").replace("timer_", "timer: ")
    return text, unit


#: KPIs with a table of their own, left out of the KPI table.
OWN_TABLE = ("campus_trip_log",)


def kpi_table_html(kpis: dict[str, Any]) -> str:
    """The KPI table: label, value, unit, key (known KPIs first, in DESIGN.md order)."""
    rows = _flatten({k: v for k, v in kpis.items() if k not in OWN_TABLE})
    order = {k: i for i, k in enumerate(KPI_LABELS)}
    rows.sort(key=lambda kv: order.get(kv[0], len(order)))
    body = "\n".join(
        f"<tr><td>{html.escape(_label(k)[0])}</td><td class=num>{_fmt(v)}</td>"
        f"<td>{html.escape(_label(k)[1])}</td><td><code>{html.escape(k)}</code></td></tr>"
        for k, v in rows)
    return ("<table><thead><tr><th>KPI</th><th>value</th><th>unit</th><th>key in kpis.json"
            f"</th></tr></thead><tbody>\n{body}\n</tbody></table>")


def _clock(t_s: float, start_s: float) -> str:
    """``hh:mm:ss`` of the simulated day at ``t_s`` seconds into a run that starts at
    ``start_s`` seconds after midnight (whole seconds begun), ``+N d`` on later days."""
    total = start_s + t_s
    day, sec = divmod(int(math.floor(total + 1e-6)), 86_400)
    hh, rest = divmod(sec, 3600)
    clock = f"{hh:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return clock + (f" +{day} d" if day else "")


_TRIP_CAUSES = {
    "voltage": "POI voltage (behind the tap changer) below the ride-through curve",
    "disturbance": "a grid-fault sag below the ride-through curve",
    "repeated_sags": "the sag counter fired (repeated sags within the window)",
}


def trip_table_html(kpis: dict[str, Any], scenario: Scenario) -> str:
    """The campus trips of ``kpis["campus_trip_log"]`` (docs/kpis.md): time of day and
    ``time_s``, campus, outcome (a trip, or one the inverters' fault current avoided), cause,
    UPS-input voltage with the support and without it, duration, reconnection time and
    ramp (for an avoided trip: those it would have had)."""
    trips = kpis.get("campus_trip_log")
    if trips is None:
        return '<p class="note">No campus trip log in the KPIs.</p>'
    if not trips:
        return '<p class="note">No trips.</p>'
    start_s = scenario.simulation.start_hour * 3600.0

    def num(value: Any, digits: int | None = None) -> str:
        if value is None or not math.isfinite(float(value)):
            return "–"
        return f"{float(value):.{digits}f}" if digits is not None else _fmt(float(value))

    body = []
    for tr in trips:
        t, back, ramp_s = tr.get("time_s"), tr.get("reconnect_s"), tr.get("ramp_s")
        ramp = "at once" if ramp_s == 0 else num(ramp_s)
        body.append(
            f"<tr><td>{_clock(float(t), start_s)}</td><td class=num>{num(t, 2)}</td>"
            f"<td>{html.escape(str(tr.get('campus', '')))}</td>"
            f"<td>{html.escape(str(tr.get('outcome', 'trip')))}</td>"
            f"<td>{html.escape(str(tr.get('cause', '')))}</td>"
            f"<td class=num>{num(tr.get('v_pu'), 3)}</td>"
            f"<td class=num>{num(tr.get('v_unsupported_pu', tr.get('v_pu')), 3)}</td>"
            f"<td class=num>{num(tr.get('duration_s'))}</td>"
            f"<td>{_clock(float(back), start_s) if back is not None else '–'}</td>"
            f"<td class=num>{ramp}</td></tr>")
    causes = sorted({str(tr.get("cause", "")) for tr in trips})
    legend = "; ".join(f"<code>{html.escape(c)}</code>: {html.escape(_TRIP_CAUSES[c])}"
                       for c in causes if c in _TRIP_CAUSES)
    return ("<table><thead><tr><th>time of day</th><th>time_s [s]</th><th>campus</th>"
            "<th>outcome</th><th>cause</th><th>UPS-input voltage [pu]</th>"
            "<th>without fault support [pu]</th><th>duration [s]</th>"
            "<th>reconnection at</th><th>reconnection ramp [s]</th></tr></thead><tbody>\n"
            + "\n".join(body) + "\n</tbody></table>\n"
            + (f'<p class="note">{legend}. Key in kpis.json: <code>campus_trip_log</code>.</p>'
               if legend else ""))


_CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}.note{color:#666;font-style:italic}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:bold}"""

_CAPTIONS = {
    "substation": "Substation import against its schedule and the upstream ramp limit",
    "campus": "Campus load, with trips marked",
    "fcm_dispatch": "FCM dispatch stack",
    "fcm_reactive": "FCM reactive power",
    "soc": "State of charge",
    "voltage_heatmap": "Bus × time voltage heat map",
    "realtime_lag": "Real-time lag and controller deadline",
}


def write_report(out_dir: Path, ts: pd.DataFrame, kpis: dict, scenario: Scenario,
                 placements: Sequence[Placement] | None = None) -> Path:
    """Write ``report.html`` and its PNG figures into ``out_dir``; return the HTML path.
    ``placements``: the FCMs the run used (a ``--siting`` file's; default the scenario's)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    makers = {"substation": fig_substation, "campus": fig_campus,
              "fcm_dispatch": fig_fcm_dispatch, "fcm_reactive": fig_fcm_reactive, "soc": fig_soc,
              "voltage_heatmap": fig_voltage_heatmap, "realtime_lag": fig_realtime_lag}
    sections = []
    for name in FIGURES + (("realtime_lag",) if "rt.lag_s" in ts.columns else ()):
        png, note = makers[name](ts, scenario, out_dir / f"{name}.png")
        note_html = f'<p class="note">{html.escape(note)}.</p>' if note else ""
        sections.append(f'<h2>{html.escape(_CAPTIONS[name])}</h2>{note_html}\n'
                        f'<img src="{png.name}" alt="{html.escape(_CAPTIONS[name])}">')
        if name == "campus":
            sections.append(f"<h3>Campus trips</h3>\n{trip_table_html(kpis, scenario)}")
    dt = scenario.simulation.step_s
    meta = {
        "scenario": scenario.name, "feeder": f"{scenario.feeder.source} (scale "
        f"{scenario.feeder.scale:g})", "controller": scenario.controller.kind,
        "seed": scenario.seed, "steps": f"{len(ts)} × Δt = {dt} s "
        f"({len(ts) * dt / 3600:.3g} h)",
        "campuses": ", ".join(f"{c.name} at bus {c.bus} ({c.capacity_mw:g} MW)"
                              for c in scenario.campus),
        "FCMs": ", ".join(f"{pl.label} ({pl.p_mw:g} MW" + (f", {pl.e_mwh:g} MWh" if pl.e_mwh else "")
                          + ")" for pl in (scenario.fcm.placements if placements is None
                                           else placements)) or "none",
        "limits": f"V {scenario.grid.v_min_pu:g}–{scenario.grid.v_max_pu:g} pu, loading ≤ "
                  f"{scenario.grid.max_loading_pct:g} %, ramp ≤ "
                  f"{scenario.grid.ramp_limit_mw_per_min:g} MW/min",
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in meta.items())
    doc = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
           f"<title>{html.escape(scenario.name)}: co-simulation report</title>"
           f"<style>{_CSS}</style></head><body>\n"
           f"<h1>{html.escape(scenario.name)}: co-simulation report</h1>\n<dl>{dl}</dl>\n"
           f"<h2>Key performance indicators</h2>\n{kpi_table_html(kpis)}\n"
           '<p class="note">Definitions: docs/kpis.md. Voltage and thermal KPIs exclude steps '
           "whose power flow did not converge.</p>\n" + "\n".join(sections) + "\n</body></html>\n")
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    logger.info("report written to %s", path)
    return path
