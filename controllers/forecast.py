"""Campus-load forecasters for the Stage-II controller.

A forecaster has one method, ``forecast(measurement, steps, step_s) -> {campus: array}``:
the campus grid draw (MW, + = consumption) for each of the ``steps`` horizon steps of
``step_s`` seconds that start at ``measurement.time_s`` (element ``k`` is the mean over
``[t + k·Δt, t + (k+1)·Δt)``). Selected by ``controller.forecaster`` through
:func:`make_forecaster`:

* ``persistence``: the present measured draw, held: ``p̂_k = p(t)``.
* ``perfect``: the true future trajectory, given the realised series: in a scenario,
  ``controller.foresight_file`` names the ``timeseries.parquet`` of a run with the same seed
  whose ``dc.<campus>.p_mw`` columns are read (:func:`realised_trajectories`; the study's
  perfect-foresight bound, docs/study.md §4).
* ``scenario``: the mean of shock-generator samples conditioned on the present state (an
  analog ensemble, docs/optimization.md §3.4): a library of samples from
  :func:`models.shocks.sample_campus_trajectories`; at time ``t`` the ``K`` samples whose
  draw at ``t`` is nearest the measured one are kept and
  ``p̂_k = p(t) + mean_s (p_s(t + k Δt) − p_s(t))``.
* ``operator``: the campus operator's published forecast (``Measurement.campus_forecast_mw``,
  step means ``f_j`` over ``[t + j·s, t + (j+1)·s)``, ``s`` = the published step) resampled
  to the horizon by exact interval averaging of the piecewise-constant series, held at its
  last value beyond its end: ``p̂_k = (F(t+(k+1)Δt) − F(t+kΔt)) / Δt`` with
  ``F(x) = ∫_t^x f``. A campus without a published forecast falls back to persistence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from controllers.interface import Measurement
from models.errors import ScenarioError

logger = logging.getLogger(__name__)


class Forecaster(Protocol):
    def forecast(self, measurement: Measurement, steps: int, step_s: float) -> dict[str, np.ndarray]: ...


class PersistenceForecaster:
    """``p̂_k = p(t)`` for every horizon step (a tripped campus is forecast to stay off)."""

    def forecast(self, measurement: Measurement, steps: int, step_s: float) -> dict[str, np.ndarray]:
        return {name: np.full(steps, float(p)) for name, p in measurement.campus_p_mw.items()}


class PerfectForecaster:
    """The realised future, for studies: ``trajectories[campus] = (time_s, p_mw)`` arrays.

    The forecast for step ``k`` is the mean of the samples with ``time_s`` in
    ``[t + kΔt, t + (k+1)Δt)`` (the last sample before the window when none falls inside,
    the last sample of the series beyond its end).
    """

    def __init__(self, trajectories: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.trajectories = {
            name: (np.asarray(t, dtype=float), np.asarray(p, dtype=float))
            for name, (t, p) in trajectories.items()
        }
        for name, (t, p) in self.trajectories.items():
            if t.shape != p.shape or t.size == 0 or np.any(np.diff(t) <= 0):
                raise ValueError(f"trajectory of {name!r}: need increasing times and as many values")

    def forecast(self, measurement: Measurement, steps: int, step_s: float) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        edges = measurement.time_s + step_s * np.arange(steps + 1)
        for name, (t, p) in self.trajectories.items():
            lo = np.searchsorted(t, edges[:-1], side="left")
            hi = np.searchsorted(t, edges[1:], side="left")
            csum = np.concatenate([[0.0], np.cumsum(p)])
            count = hi - lo
            mean = (csum[hi] - csum[lo]) / np.maximum(count, 1)
            before = p[np.clip(lo - 1, 0, p.size - 1)]
            out[name] = np.where(count > 0, mean, before)
        return out


class ScenarioForecaster:
    """Mean of shock-generator samples conditioned on the present draw (analog ensemble).

    ``library`` has shape ``(samples, n_campus, n_steps)``: sample trajectories (MW step
    means) on the grid ``t0_s + i·lib_step_s``; ``campus_names`` orders its second axis.
    ``neighbours`` is K (at most the number of samples).
    """

    def __init__(self, library: np.ndarray, campus_names: list[str], t0_s: float,
                 lib_step_s: float, neighbours: int = 10) -> None:
        lib = np.asarray(library, dtype=float)
        if lib.ndim != 3 or lib.shape[1] != len(campus_names):
            raise ValueError("library must have shape (samples, n_campus, steps)")
        self.library = lib
        self.campus_names = list(campus_names)
        self.t0_s = float(t0_s)
        self.lib_step_s = float(lib_step_s)
        self.neighbours = max(1, min(int(neighbours), lib.shape[0]))

    def forecast(self, measurement: Measurement, steps: int, step_s: float) -> dict[str, np.ndarray]:
        n_lib = self.library.shape[2]
        i0 = int(np.clip(np.floor((measurement.time_s - self.t0_s) / self.lib_step_s), 0, n_lib - 1))
        offsets = (np.arange(steps) * step_s + 0.5 * step_s) / self.lib_step_s
        idx = np.clip(i0 + np.floor(offsets).astype(int), 0, n_lib - 1)
        out: dict[str, np.ndarray] = {}
        for c, name in enumerate(self.campus_names):
            if name not in measurement.campus_p_mw:
                continue
            now = float(measurement.campus_p_mw[name])
            traj = self.library[:, c, :]
            nearest = np.argsort(np.abs(traj[:, i0] - now), kind="stable")[: self.neighbours]
            delta = traj[nearest][:, idx] - traj[nearest, i0][:, None]
            out[name] = np.maximum(now + delta.mean(axis=0), 0.0)
        return out


class OperatorForecaster:
    """The campus operator's published forecast, resampled to the horizon (module docstring).

    ``source_step_s`` is the step of the published series (the data-center simulator
    publishes at the controller's ``horizon_step_s``; docs/cosim.md §2). Element ``j`` of
    ``measurement.campus_forecast_mw[c]`` is the mean draw over ``[t + j·s, t + (j+1)·s)``.
    With ``F(x) = ∫_t^x f`` of that step function (held at the last value beyond its end)

        ``p̂_k = (F(t + (k+1)·Δt) − F(t + k·Δt)) / Δt``,

    i.e. the exact mean over each horizon step, for any ratio of ``Δt`` to ``s``. Campuses
    whose forecast is missing or empty (e.g. before the first campus step) get the persisted
    measured draw; ``fallbacks`` counts those campus-forecasts.
    """

    def __init__(self, source_step_s: float) -> None:
        if not source_step_s > 0:
            raise ValueError("source_step_s must be > 0")
        self.source_step_s = float(source_step_s)
        self.fallbacks = 0

    def forecast(self, measurement: Measurement, steps: int, step_s: float) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        edges = step_s * np.arange(steps + 1)  # relative to t
        published = measurement.campus_forecast_mw or {}
        for name, p in measurement.campus_p_mw.items():
            f = np.asarray(published.get(name, ()), dtype=float).ravel()
            if f.size == 0 or not np.all(np.isfinite(f)):
                self.fallbacks += 1
                out[name] = np.full(steps, float(p))
                continue
            s = self.source_step_s
            src_edges = s * np.arange(f.size + 1)
            cum = np.concatenate([[0.0], np.cumsum(f) * s])
            inside = np.interp(edges, src_edges, cum)
            beyond = cum[-1] + f[-1] * (edges - src_edges[-1])
            big_f = np.where(edges <= src_edges[-1], inside, beyond)
            out[name] = np.diff(big_f) / step_s
        return out


def realised_trajectories(path: str | Path, campuses: list[str]
                          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{campus: (time_s, p_mw)}`` read from a run's ``timeseries.parquet`` (its index and
    the ``dc.<campus>.p_mw`` columns: row ``t`` is the mean draw over ``[t, t + Δt)``), for
    :class:`PerfectForecaster`. :class:`ScenarioError` naming ``controller.foresight_file``
    when the file or a campus's column is missing."""
    import pandas as pd

    field = "foresight_file"
    p = Path(path)
    if not p.is_file():
        raise ScenarioError("controller", field, f"{p} is not a file; allowed: the "
                            "timeseries.parquet of a run of this scenario with the same seed")
    cols = [f"dc.{name}.p_mw" for name in campuses]
    try:
        ts = pd.read_parquet(p, columns=cols)
    except (OSError, ValueError, KeyError) as exc:  # not Parquet, or a campus column missing
        raise ScenarioError("controller", field, f"cannot read {', '.join(cols)} from {p} "
                            f"({type(exc).__name__}); allowed: the timeseries.parquet of a "
                            "run of this scenario") from None
    t = ts.index.to_numpy(dtype=float)
    return {name: (t, ts[col].to_numpy(dtype=float)) for name, col in zip(campuses, cols)}


def make_forecaster(kind: str, scenario: Any = None, *, trajectories=None, samples: int = 40,
                    neighbours: int = 10, step_s: float | None = None) -> Forecaster:
    """The forecaster named by ``controller.forecaster``.

    ``perfect`` needs ``trajectories`` (campus → (time_s, p_mw)); ``scenario`` needs the
    scenario (its campuses, shocks, seed and horizon): it draws ``samples`` trajectories at
    ``step_s`` (default the controller's horizon step) with a seed derived from the scenario
    seed, covering the simulated hours plus one controller horizon; ``operator`` reads the
    published series at ``step_s`` (default the scenario's ``horizon_step_s``, the step the
    data-center simulator publishes at; 300 s without a scenario).
    """
    if kind == "persistence":
        return PersistenceForecaster()
    if kind == "perfect":
        path = getattr(getattr(scenario, "controller", None), "foresight_file", None)
        if trajectories is None and path:
            trajectories = realised_trajectories(path, [c.name for c in scenario.campus])
        if trajectories is None:
            raise ScenarioError("controller", "forecaster",
                                "'perfect' needs the realised campus trajectories "
                                "(controller.foresight_file: the timeseries.parquet of a run "
                                "with the same seed); allowed without them: persistence, "
                                "scenario, operator")
        return PerfectForecaster(trajectories)
    if kind == "operator":
        src = step_s or (scenario.controller.horizon_step_s if scenario is not None else 300.0)
        return OperatorForecaster(float(src))
    if kind == "scenario":
        if scenario is None:
            raise ValueError("the scenario forecaster needs the scenario")
        from models.shocks import sample_campus_trajectories

        ctrl = scenario.controller
        lib_step = float(step_s or ctrl.horizon_step_s)
        hours = scenario.simulation.hours + ctrl.horizon_steps * ctrl.horizon_step_s / 3600.0
        seed = int(np.random.SeedSequence([scenario.seed, 0x5743]).generate_state(1)[0])
        library = sample_campus_trajectories(scenario, samples, seed, step_s=lib_step, hours=hours)
        logger.info("scenario forecaster: %d samples × %d steps", library.shape[0], library.shape[2])
        # the library starts at the simulation start (simulated time_s = 0)
        return ScenarioForecaster(library, [c.name for c in scenario.campus], 0.0, lib_step,
                                  neighbours)
    raise ScenarioError("controller", "forecaster",
                        f"unknown forecaster {kind!r}; allowed: persistence, perfect, scenario, operator")
