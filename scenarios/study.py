"""The out-of-sample siting study (DESIGN.md §5, docs/study.md): train, evaluate, compare.

**Training.** Every method ``m`` gives one siting from the same ``N`` training draws: ``none``
(no FCM), ``saa`` (Stage I with P = {p⁰}), ``l1:θ`` and ``wasserstein:θ`` (Stage I's
DRO-CVaR with that ambiguity set and radius; :func:`controllers.stage1.site`). Training draw
``i`` is the campus trajectory of a run with seed ``a_i`` seen without the feeder
(:func:`models.shocks.run_seed_trajectories`).

**Evaluation.** Each siting runs the closed-loop co-simulation (OpenDSS AC, the chosen
controller; :func:`scenarios.runner.run_scenario`) for ``H`` hours on ``M`` test seeds
``b_j``, optionally under a shifted shock law. Train and test seeds come from two disjoint
spawn keys of the scenario seed (:func:`study_seeds`) and are checked disjoint, so no test
campus is a training draw.

**Out-of-sample cost** of a member (docs/study.md §2): the scenario's Stage-II weights
applied to its realised KPIs, term by term as in the recourse Q_s of Stage I
(:func:`realised_cost`)::

    cost = w_imb E_imb + w_ramp E_ramp + w_uns E_uns + w_rest T_abn/τ + w_v V_exc + w_th S_exc
           + w_op C_op + w_soc E_short

Per method and KPI ``x_1..x_M`` (members that ran): the mean, the empirical
``CVaR_α = min_η η + Σ_j (x_j − η)⁺ / (M (1 − α))`` at the scenario's α
(:func:`controllers.risk.cvar` with p_j = 1/M), and percentile-bootstrap 95 % intervals of
both with a fixed seed (:func:`bootstrap_ci`).

**Engine.** Every training and every evaluation is one Dask task (a *member*); an
evaluation waits for its method's training through the task graph. Workers import the
stack once (:class:`Preload`, a worker plugin); a member that fails is recorded with its
error and the study goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import tomllib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed.diagnostics.plugin import WorkerPlugin

from models.errors import ScenarioError
from scenarios.config import Scenario
from scenarios.ensemble import _one_line

logger = logging.getLogger(__name__)

_CLI = "command line"
STUDY_FORMAT = "dcshock-study/1"

#: KPIs summarised per method in ``study.json`` (``out_of_sample``).
STUDY_KPIS = ("cost", "unserved_energy_mwh", "imbalance_mwh", "voltage_violation_bus_steps",
              "ramp_violation_mwh")

#: Spawn keys of the train and test seed streams under the scenario seed (docs/study.md §1).
TRAIN_KEY, TEST_KEY = 0x7EA1, 0x7E57

#: Bootstrap resamples and their fixed seed.
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20261207

#: The sections a ``--shift`` may change: the shock law (``campus`` applies to every campus).
SHIFT_SECTIONS = ("shocks", "campus")

#: Columns of ``evaluation.parquet`` that describe the member, first in the table.
MEMBER_COLUMNS = ("method", "controller", "role", "seed", "status", "wall_s", "worker",
                  "folder", "capex")

_METHODS_ALLOWED = ("none, saa, l1:θ, wasserstein:θ with θ ≥ 0 (e.g. "
                    "none,saa,l1:0.1,wasserstein:0.05)")


# --- what the user asked for --------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """A siting method: ``none`` (``ambiguity = None``: no FCM) or Stage I with this
    ambiguity set (``"none"`` is SAA) and radius θ."""

    name: str
    ambiguity: str | None
    radius: float

    @property
    def folder(self) -> str:
        """A file-name form of the name (``wasserstein:0.05`` → ``wasserstein_0.05``)."""
        return self.name.replace(":", "_")


def parse_methods(methods: str | Sequence[str]) -> list[Method]:
    """``none``, ``saa``, ``l1:θ``, ``wasserstein:θ`` (comma-separated or a list), in order;
    :class:`ScenarioError` against ``--methods`` for anything else or a repeat."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    out: list[Method] = []
    for raw in items:
        text = str(raw).strip().lower()
        if not text:
            continue
        kind, sep, radius = text.partition(":")
        if text in ("none", "saa"):
            m = Method(text, None if text == "none" else "none", 0.0)
        elif kind in ("l1", "wasserstein") and sep:
            try:
                theta = float(radius)
            except ValueError:
                theta = math.nan
            if not (math.isfinite(theta) and theta >= 0):
                raise ScenarioError(_CLI, "--methods", f"radius of {raw.strip()!r} must be a "
                                    f"finite number >= 0; allowed: {_METHODS_ALLOWED}")
            m = Method(f"{kind}:{theta:g}", kind, theta)
        else:
            raise ScenarioError(_CLI, "--methods", f"unknown method {raw.strip()!r}; allowed: "
                                f"{_METHODS_ALLOWED}")
        if any(o.name == m.name for o in out):
            raise ScenarioError(_CLI, "--methods", f"method {m.name!r} is given twice")
        out.append(m)
    if not out:
        raise ScenarioError(_CLI, "--methods", f"give at least one; allowed: {_METHODS_ALLOWED}")
    return out


def parse_shift(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``SECTION.FIELD=VALUE`` items as ``{section: {field: value}}``; VALUE is read as a
    TOML value (``4``, ``[0.2, 0.8]``, ``true``; anything else as a string). Only the shock
    law's sections (:data:`SHIFT_SECTIONS`) may shift; the field and value are checked by
    :func:`apply_shift`."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        key, eq, text = str(item).partition("=")
        section, dot, field = key.strip().partition(".")
        if not eq or not dot or not field or not text.strip():
            raise ScenarioError(_CLI, "--shift", f"expected SECTION.FIELD=VALUE, got {item!r}; "
                                "e.g. shocks.surge_rate_per_day=4")
        if section not in SHIFT_SECTIONS:
            raise ScenarioError(_CLI, "--shift", f"section {section!r} is not part of the shock "
                                f"law; allowed: {', '.join(SHIFT_SECTIONS)}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        if field in out.get(section, {}):
            raise ScenarioError(_CLI, "--shift", f"{section}.{field} is given twice")
        out.setdefault(section, {})[field.strip()] = value
    return out


def apply_shift(scenario: Scenario, shift: dict[str, dict[str, Any]]) -> Scenario:
    """``scenario`` under the shifted law; a bad field or value is a :class:`ScenarioError`
    against ``--shift`` that names it."""
    if not shift:
        return scenario
    data: dict[str, Any] = {}
    for section, values in shift.items():
        if section == "campus":
            data["campus"] = [{**c.model_dump(), **values} for c in scenario.campus]
        else:
            data[section] = values
    try:
        return scenario.with_overrides(**data)
    except ScenarioError as exc:
        raise ScenarioError(_CLI, "--shift", f"{exc.field}: {exc.message}") from None


def study_seeds(base_seed: int, n_train: int, n_test: int) -> tuple[list[int], list[int]]:
    """Train seeds ``a_i`` and test seeds ``b_j``: the first 32-bit word of
    ``SeedSequence(base_seed, spawn_key=(K, i))`` with K = :data:`TRAIN_KEY` or
    :data:`TEST_KEY`. Child ``i`` does not depend on the counts (a larger study extends a
    smaller one). A word that repeats an earlier seed of either list is skipped (the next
    index is taken), so the lists never share a seed; the skip is deterministic."""
    def stream(key: int, n: int, taken: set[int]) -> list[int]:
        out: list[int] = []
        i = 0
        while len(out) < n:
            ss = np.random.SeedSequence(base_seed, spawn_key=(key, i))
            s = int(ss.generate_state(1, dtype=np.uint32)[0])
            i += 1
            if s not in taken:
                taken.add(s)
                out.append(s)
        return out

    taken: set[int] = set()
    train = stream(TRAIN_KEY, n_train, taken)
    return train, stream(TEST_KEY, n_test, taken)


# --- statistics -------------------------------------------------------------------------

def empirical_cvar(values: Sequence[float], alpha: float) -> float:
    """CVaR_α of equally likely values (:func:`controllers.risk.cvar` with p_j = 1/M)."""
    from controllers.risk import cvar, nominal_probabilities

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan
    return cvar(x, nominal_probabilities(x.size), alpha)


def bootstrap_ci(values: Sequence[float], stat: Callable[[np.ndarray], float],
                 samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval ``[q_{(1−level)/2}, q_{(1+level)/2}]`` of ``stat`` over
    ``samples`` resamples with replacement, drawn by ``numpy.random.default_rng(seed)``
    (fixed: the same values give the same interval). NaNs for fewer than two values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(samples, x.size))
    boot = np.array([stat(x[i]) for i in idx])
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def summary(values: Sequence[float], alpha: float) -> dict[str, Any]:
    """``{n, mean, cvar, ci95, cvar_ci95}`` of finite ``values`` (``ci95`` is the mean's)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"n": 0, "mean": math.nan, "cvar": math.nan, "ci95": [math.nan, math.nan],
                "cvar_ci95": [math.nan, math.nan]}
    return {"n": int(x.size), "mean": float(x.mean()), "cvar": empirical_cvar(x, alpha),
            "ci95": bootstrap_ci(x, np.mean),
            "cvar_ci95": bootstrap_ci(x, lambda s: empirical_cvar(s, alpha))}


def paired_difference(a: Sequence[float], b: Sequence[float], alpha: float) -> dict[str, Any]:
    """``a − b`` over common seeds (paired: the same test seeds, common random numbers):
    the mean difference with its bootstrap interval, and ``CVaR(a) − CVaR(b)`` with an
    interval from resampling the seed pairs together."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    pairs = np.arange(x.size)
    return {
        "n": int(x.size),
        "mean_diff": float((x - y).mean()) if x.size else math.nan,
        "mean_diff_ci95": bootstrap_ci(x - y, np.mean),
        "cvar_diff": (empirical_cvar(x, alpha) - empirical_cvar(y, alpha)) if x.size else math.nan,
        "cvar_diff_ci95": bootstrap_ci(pairs, lambda i: empirical_cvar(x[i.astype(int)], alpha)
                                       - empirical_cvar(y[i.astype(int)], alpha)),
    }


# --- the out-of-sample cost -----------------------------------------------------------

def realised_cost(ts: pd.DataFrame, kpis: dict[str, Any], scenario: Scenario,
                  placements: Sequence[Any], feeder: Any) -> dict[str, float]:
    """The scenario's Stage-II objective weights (``controller.weights``) applied to what
    the run realised, term by term as in Stage I's recourse Q_s (docs/study.md §2).

    With Δt the plant step, τ = ``siting.step_s`` (the recourse's step), r = Δt/τ:

    * ``cost_imbalance = w_imb · imbalance_mwh``; ``cost_ramp = w_ramp · ramp_violation_mwh``;
      ``cost_unserved = w_uns · unserved_energy_mwh``;
    * ``cost_restoration = w_rest · restoration_time_s / τ`` (abnormal recourse steps);
    * ``cost_voltage = w_v · V_exc``, ``V_exc = r Σ_{j,t} max(0, V_min − V_jt, V_jt − V_max)``
      (pu·recourse-step, converged steps; the MILP's σ/(2V_lim) in volts);
    * ``cost_thermal = w_th · S_exc``, ``S_exc = r Σ_{l,t} max(0, |S_lt| − S̄_l·L/100)`` over
      rated branches (MVA·recourse-step, ``|S| = hypot(P, Q)`` at the sending end);
    * ``cost_operating = w_op · fcm_operating_cost``;
    * ``cost_soc = w_soc · Σ_storage max(0, soc_init·Ē − E_end)`` (MWh short of the
      storage's start level at the end of the run, the recourse's end target).

    Returns those terms, their sum ``cost``, and ``voltage_excess_pu_steps``,
    ``thermal_excess_mva_steps`` and ``soc_shortfall_mwh``.
    """
    from scenarios.kpis import converged_mask, group_columns

    w = scenario.controller.weights
    grid = scenario.grid
    r = float(scenario.simulation.step_s) / float(scenario.siting.step_s)
    ok = converged_mask(ts)
    vcols = list(group_columns(ts, "bus", "v_pu").values())
    v = ts.loc[ok, vcols].to_numpy(dtype=float) if vcols else np.zeros((0, 0))
    v_exc = r * float(np.nansum(np.maximum(0.0, np.maximum(grid.v_min_pu - v, v - grid.v_max_pu))))
    s_exc = 0.0
    frac = grid.max_loading_pct / 100.0
    for br in feeder.branches:
        pc, qc = f"branch.{br.name}.p_mw", f"branch.{br.name}.q_mvar"
        if br.rating_mva and pc in ts.columns and qc in ts.columns:
            s = np.hypot(ts.loc[ok, pc].to_numpy(float), ts.loc[ok, qc].to_numpy(float))
            s_exc += r * float(np.nansum(np.maximum(0.0, s - br.rating_mva * frac)))
    short = 0.0
    catalog = scenario.fcm.catalog
    for pl in placements:
        tech = catalog[pl.kind]
        col = f"fcm.{pl.label}.soc_mwh"
        if hasattr(tech, "soc_init") and pl.e_mwh and col in ts.columns and len(ts):
            short += max(0.0, float(tech.soc_init) * float(pl.e_mwh) - float(ts[col].iloc[-1]))
    terms = {
        "cost_imbalance": w.imbalance_per_mwh * float(kpis["imbalance_mwh"]),
        "cost_ramp": w.ramp_violation_per_mwh * float(kpis["ramp_violation_mwh"]),
        "cost_unserved": w.unserved_per_mwh * float(kpis["unserved_energy_mwh"]),
        "cost_restoration": w.restoration_per_step * float(kpis["restoration_time_s"])
        / float(scenario.siting.step_s),
        "cost_voltage": w.voltage_slack_per_pu_step * v_exc,
        "cost_thermal": w.thermal_slack_per_mva_step * s_exc,
        "cost_operating": w.operating_cost_scale * float(kpis["fcm_operating_cost"]),
        "cost_soc": w.soc_shortfall_per_mwh * short,
    }
    return {**terms, "cost": float(sum(terms.values())), "voltage_excess_pu_steps": v_exc,
            "thermal_excess_mva_steps": s_exc, "soc_shortfall_mwh": short}


# --- members (each one Dask task) ------------------------------------------------------

class Preload(WorkerPlugin):
    """Worker plugin: imports the co-simulation and optimisation stack once per worker
    process when the worker joins (``setup``), and keeps how long that took; members then
    find every module in ``sys.modules``."""

    name = "dcshock-preload"

    def __init__(self) -> None:
        self.import_s = math.nan

    def setup(self, worker: Any) -> None:
        t0 = time.perf_counter()
        import controllers.stage1
        import controllers.stage2  # noqa: F401
        import scenarios.runner
        import scenarios.world  # noqa: F401

        self.import_s = time.perf_counter() - t0


def _worker_info(dask_worker: Any = None) -> dict[str, Any]:
    """Run on each worker (``client.run``): its pid, threads and the plugin's import time."""
    plugin = (dask_worker.plugins.get(Preload.name) if dask_worker is not None else None)
    return {"pid": os.getpid(), "nthreads": getattr(dask_worker, "state", None)
            and dask_worker.state.nthreads, "preload_import_s": getattr(plugin, "import_s", None)}


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def train_member(scenario: Scenario, method: Method, train_seeds: list[int]) -> dict[str, Any]:
    """Stage I for ``method`` on the training draws of ``train_seeds`` (in a worker); the
    ``siting.json`` content as a dict plus ``status``, ``wall_s`` and ``worker``. Never
    raises: a failure is ``status = "failed: ..."``."""
    t0 = time.perf_counter()
    try:
        from controllers.stage1 import site
        from models.shocks import run_seed_trajectories
        from scenarios.feeder import open_scenario_feeder

        sc = scenario.with_overrides(siting={"ambiguity": method.ambiguity,
                                             "radius": method.radius,
                                             "scenarios": len(train_seeds)})
        feeder = open_scenario_feeder(sc).data
        xi = run_seed_trajectories(sc, train_seeds, step_s=sc.siting.step_s,
                                   hours=sc.siting.horizon_hours)
        result = site(sc, feeder, np.asarray(xi, dtype=float)).to_json()
    except Exception as exc:  # a member's failure must not end the study
        logger.exception("training of %s failed", method.name)
        return {"status": f"failed: {_one_line(exc)}", "wall_s": time.perf_counter() - t0,
                "worker": _worker()}
    return {**result, "status": "ok", "wall_s": time.perf_counter() - t0, "worker": _worker()}


def empty_siting(scenario: Scenario) -> dict[str, Any]:
    """The ``none`` method's siting: no placement (checked like any siting by the run)."""
    from controllers.stage1 import SitingFeeder, SitingResult
    from scenarios.feeder import open_scenario_feeder

    feeder = open_scenario_feeder(scenario).data
    res = SitingResult(placements=[], capex=0.0, ambiguity="", radius=math.nan,
                       feeder=SitingFeeder(source=scenario.feeder_source(),
                                           scale=float(feeder.scale), buses=len(feeder.buses)),
                       seed=scenario.seed, method="none", status="no training")
    return {**res.to_json(), "status": "ok", "wall_s": 0.0, "worker": ""}


def _siting_file(siting: dict[str, Any], path: Path) -> Path:
    """Write the siting part of a training result atomically (same content from every
    member of a method, so concurrent writers agree)."""
    from controllers.stage1 import SitingResult

    body = {k: v for k, v in siting.items() if k not in ("status", "wall_s", "worker")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    SitingResult.read(path)  # what the run will read
    return path


def evaluate_member(scenario: Scenario, siting: dict[str, Any], siting_path: str,
                    out_dir: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """One closed-loop run of a siting on one test seed (in a worker); never raises.

    ``siting``: the training member's result (a failed one fails this member too).
    ``base``: for a perfect-foresight member, the row of the run whose recorded campus
    draw it is given (``controller.foresight_file``); ``foresight_error_mwh`` is then
    ``Σ_t |p_t − p̂_t| Δt_h``, the realised campus draw against the one given (nonzero only
    when the better dispatch changed a voltage-driven trip). Returns
    :func:`scenarios.ensemble.run_member`'s row plus :func:`realised_cost`'s terms and
    ``capex``.
    """
    from scenarios.ensemble import run_member

    t0 = time.perf_counter()
    if siting.get("status") != "ok":
        return {"status": f"failed: no siting (training {siting.get('status')})",
                "wall_s": 0.0, "worker": _worker()}
    if base is not None and base.get("status") != "ok":
        return {"status": "failed: no recorded campus draw (its run "
                f"{base.get('status')})", "wall_s": 0.0, "worker": _worker()}
    try:
        if base is not None:
            scenario = scenario.with_overrides(controller={
                "kind": "mpc", "forecaster": "perfect",
                "foresight_file": str(Path(base["path"]) / "timeseries.parquet")})
        path = _siting_file(siting, Path(siting_path))
    except Exception as exc:  # a member's failure must not end the study
        logger.exception("member %s could not start", out_dir)
        return {"status": f"failed: {_one_line(exc)}", "wall_s": time.perf_counter() - t0,
                "worker": _worker()}
    row = run_member(scenario, out_dir, path)
    row["path"] = str(out_dir)
    row["capex"] = float(siting.get("capex") or 0.0)
    if row["status"] != "ok":
        return row
    try:
        row.update(_member_cost(scenario, Path(out_dir), path, base))
    except Exception as exc:  # the run is there; its cost could not be computed
        logger.exception("cost of %s failed", out_dir)
        row["status"] = f"failed: cost: {_one_line(exc)}"
    return row


def _member_cost(scenario: Scenario, folder: Path, siting_path: Path,
                 base: dict[str, Any] | None) -> dict[str, float]:
    """:func:`realised_cost` of the run in ``folder`` and, for a perfect-foresight member,
    ``foresight_error_mwh``."""
    from controllers.stage1 import load_siting
    from scenarios.feeder import open_scenario_feeder
    from scenarios.timeseries_io import read_timeseries

    ts = read_timeseries(folder / "timeseries.parquet")
    kpis = json.loads((folder / "kpis.json").read_text(encoding="utf-8"))
    feeder = open_scenario_feeder(scenario).data
    placements = load_siting(siting_path, feeder, scenario.fcm.catalog)
    out = realised_cost(ts, kpis, scenario, placements, feeder)
    if base is not None:
        dt_h = scenario.simulation.step_s / 3600.0
        cols = [f"dc.{c.name}.p_mw" for c in scenario.campus]
        given = pd.read_parquet(Path(base["path"]) / "timeseries.parquet", columns=cols)
        diff = ts[cols].to_numpy(float) - given[cols].reindex(ts.index).to_numpy(float)
        out["foresight_error_mwh"] = float(np.nansum(np.abs(diff)) * dt_h)
    return out


# --- the study -------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalMember:
    """An evaluation run: method × controller role × test seed."""

    method: Method
    controller: str  # "mpc", "rule" or "perfect" (MPC with perfect foresight)
    seed: int

    @property
    def folder(self) -> str:
        return f"{self.method.folder}/{self.controller}_seed{self.seed}"


def run_study(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    methods: str | Sequence[str] = "none,saa,l1:0.1,wasserstein:0.05",
    train_scenarios: int | None = None,
    test_seeds: int = 10,
    hours: float | None = None,
    controller: str | None = None,
    shift: Sequence[str] | dict[str, dict[str, Any]] | None = None,
    perfect_foresight: bool = False,
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every method, evaluate every siting on the test seeds, write the results.

    Writes into ``out_dir``: ``sitings/<method>.json``, ``members/<method>/<controller>_seed
    <seed>/`` (each run's folder), ``evaluation.parquet`` (one row per method × controller
    role × test seed), ``study.json`` (written last: its presence means the study ended) and
    ``report.html``. ``perfect_foresight`` adds, per (siting, seed), an MPC run given the
    realised campus draw of the evaluation run (``controller = "perfect"``) and a run of
    the other controller (``rule`` for ``mpc``), for the distance to that bound. Returns
    the ``study.json`` dict. Bad input raises :class:`ScenarioError` before any member.
    """
    from controllers.stage1 import make_candidates
    from scenarios.ensemble import Member, dask_client, member_scenario
    from scenarios.runner import check_out_dir
    from scenarios.world import plan_world

    t_start = time.perf_counter()
    # --- every check before any member ---------------------------------------------------
    method_list = parse_methods(methods)
    shift_map = parse_shift(shift) if not isinstance(shift, dict) else shift
    n_train = scenario.siting.scenarios if train_scenarios is None else train_scenarios
    for option, n in (("--train-scenarios", n_train), ("--test-seeds", test_seeds)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 10_000:
            raise ScenarioError(_CLI, option, f"must be an integer in [1, 10000], got {n!r}")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ScenarioError(_CLI, "--workers", f"must be an integer >= 1, got {n_workers!r}")
    kind = controller or (scenario.controller.kind if scenario.controller.kind in ("mpc", "rule")
                          else "mpc")
    if kind not in ("mpc", "rule"):
        raise ScenarioError(_CLI, "--controller", f"unknown controller {kind!r}; allowed: mpc, rule")
    try:
        train_sc = scenario.with_overrides(siting={"scenarios": int(n_train)})
    except ScenarioError as exc:
        raise ScenarioError(_CLI, "--train-scenarios", exc.message) from None
    if train_sc.path and Path(train_sc.path).exists():  # workers may run in another folder
        train_sc = train_sc.model_copy(update={"path": str(Path(train_sc.path).resolve())})
    try:
        eval_base = scenario.with_overrides(simulation={"hours": hours}) if hours else scenario
    except ScenarioError as exc:
        raise ScenarioError(_CLI, "--hours", exc.message) from None
    eval_base = apply_shift(eval_base, shift_map)
    out = check_out_dir(out_dir)  # a study replaces the folder's study.json and members
    train_seeds, test_list = study_seeds(scenario.seed, int(n_train), int(test_seeds))
    roles = [kind] + (["perfect", "rule" if kind == "mpc" else "mpc"] if perfect_foresight else [])
    members = [EvalMember(m, r, s) for m in method_list for r in roles for s in test_list]
    by_run = {(r, s): member_scenario(eval_base, Member(s, "mpc" if r == "perfect" else r))
              for r in roles for s in test_list}  # the same for every method
    scen = {em: by_run[(em.controller, em.seed)] for em in members}
    feeder = plan_world(scen[members[0]]).feeder  # the feeder, the campus buses
    if any(m.ambiguity is not None for m in method_list):  # kinds, buses, budget
        make_candidates(train_sc.siting, train_sc.fcm.catalog, feeder, train_sc.path or "scenario")

    # --- run -------------------------------------------------------------------------------
    with dask_client(scheduler, n_workers) as client:
        for stale in ("study.json", "evaluation.parquet", "report.html"):
            (out / stale).unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        client.register_plugin(Preload())
        engine = _engine(client, scheduler, n_workers)
        train_rows, rows = _run_members(client, train_sc, method_list, train_seeds, members,
                                        scen, out, progress)
    frame = evaluation_table(members, rows)
    _write_frame(frame, out / "evaluation.parquet")
    result = study_result(
        scenario, method_list, train_rows, frame, kind=kind, train_seeds=train_seeds,
        test_seeds=test_list, shift=shift_map, hours=eval_base.simulation.hours,
        engine=engine, wall_s=time.perf_counter() - t_start, perfect_foresight=perfect_foresight)
    from scenarios.study_report import write_study_report

    write_study_report(out, result, frame)
    tmp = out / ".study.json.partial"
    tmp.write_text(json.dumps(result, indent=2, default=_json_default), encoding="utf-8")
    os.replace(tmp, out / "study.json")
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _engine(client: Any, scheduler: str | None, n_workers: int) -> dict[str, Any]:
    info = client.run(_worker_info)
    return {"dask": "scheduler" if scheduler else "LocalCluster",
            "scheduler": client.scheduler.address, "workers": len(info),
            "requested_workers": None if scheduler else n_workers, "worker_info": info}


def _run_members(client: Any, train_sc: Scenario, methods: list[Method], train_seeds: list[int],
                 members: list[EvalMember], scen: dict[EvalMember, Scenario], out: Path,
                 progress: bool) -> tuple[dict[str, dict[str, Any]], dict[EvalMember, dict]]:
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    tag = uuid.uuid4().hex[:8]
    train_futs: dict[Any, str] = {}
    siting_of: dict[str, Any] = {}
    train_rows: dict[str, dict[str, Any]] = {}
    for m in methods:
        if m.ambiguity is None:
            siting_of[m.name] = train_rows[m.name] = empty_siting(train_sc)
        else:
            fut = client.submit(train_member, train_sc, m, train_seeds, pure=False,
                                key=f"study-train-{m.folder}-{tag}")
            siting_of[m.name] = fut
            train_futs[fut] = m.name
    eval_futs: dict[Any, EvalMember] = {}
    base_of: dict[tuple[str, int], Any] = {}
    ordered = sorted(members, key=lambda em: em.controller == "perfect")  # bases first
    for em in ordered:
        base = base_of.get((em.method.name, em.seed)) if em.controller == "perfect" else None
        fut = client.submit(
            evaluate_member, scen[em], siting_of[em.method.name],
            str(out / "sitings" / f"{em.method.folder}.json"),
            str(out / "members" / em.folder), base, pure=False,
            key=f"study-{em.method.folder}-{em.controller}-{em.seed}-{tag}")
        eval_futs[fut] = em
        if em.controller == members[0].controller:
            base_of[(em.method.name, em.seed)] = fut
    rows: dict[EvalMember, dict[str, Any]] = {}
    bar = tqdm(total=len(train_futs) + len(eval_futs), desc="study", unit="member",
               disable=not progress)
    try:
        for fut in as_completed(list(train_futs) + list(eval_futs), loop=client.loop):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 (a dead worker, a task that could not run)
                logger.error("study member %s failed in Dask: %s", fut.key, _one_line(exc))
                result = {"status": f"failed: {_one_line(exc)}", "wall_s": math.nan,
                          "worker": ""}
            if fut in train_futs:
                train_rows[train_futs[fut]] = result
            else:
                rows[eval_futs[fut]] = result
            bar.update(1)
    finally:
        bar.close()
    for m in methods:  # the sitings each method trained, whatever their members did
        if train_rows[m.name].get("status") == "ok":
            _siting_file(train_rows[m.name], out / "sitings" / f"{m.folder}.json")
    return train_rows, rows


def evaluation_table(members: list[EvalMember], rows: dict[EvalMember, dict]) -> pd.DataFrame:
    """One row per evaluation member: :data:`MEMBER_COLUMNS`, then every scalar KPI and
    cost term (floats; NaN for a failed member)."""
    recs = []
    for em in members:
        row = dict(rows.get(em, {"status": "failed: no result"}))
        row.pop("path", None)
        recs.append({"method": em.method.name, "controller": em.controller,
                     "role": "evaluation" if em.controller == members[0].controller else
                     ("bound" if em.controller == "perfect" else "comparison"),
                     "seed": em.seed, "folder": f"members/{em.folder}", **row})
    frame = pd.DataFrame.from_records(recs)
    for col in MEMBER_COLUMNS:
        if col not in frame.columns:
            frame[col] = math.nan
    rest = [c for c in frame.columns if c not in MEMBER_COLUMNS]
    frame = frame[list(MEMBER_COLUMNS) + rest]
    frame["seed"] = frame["seed"].astype("int64")
    num = rest + ["capex", "wall_s"]
    frame[num] = frame[num].apply(pd.to_numeric, errors="coerce").astype(float)
    return frame


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def study_result(scenario: Scenario, methods: list[Method], train_rows: dict[str, dict],
                 frame: pd.DataFrame, *, kind: str, train_seeds: list[int],
                 test_seeds: list[int], shift: dict, hours: float, engine: dict,
                 wall_s: float, perfect_foresight: bool) -> dict[str, Any]:
    """The ``study.json`` dict (docs/study.md §3)."""
    alpha = float(scenario.siting.alpha)
    ok = frame[frame["status"] == "ok"]
    out_methods = []
    for m in methods:
        tr = train_rows.get(m.name, {})
        mine = frame[(frame["method"] == m.name) & (frame["role"] == "evaluation")]
        ev = mine[mine["status"] == "ok"]
        entry: dict[str, Any] = {
            "name": m.name, "ambiguity": m.ambiguity, "radius": m.radius if m.ambiguity else None,
            "training_status": tr.get("status"), "training_wall_s": tr.get("wall_s"),
            "siting": {"placements": tr.get("placements", []), "modules": tr.get("modules", {})},
            "capex": tr.get("capex", math.nan) if m.ambiguity else 0.0,
            "in_sample": _in_sample(tr, scenario) if m.ambiguity and tr.get("status") == "ok"
            else None,
            "worst_case_probabilities": tr.get("worst_case_probabilities", []),
            "members": len(mine),
            "failed": int((mine["status"] != "ok").sum()),
            "out_of_sample": {k: summary(ev[k].to_numpy(float) if k in ev else [], alpha)
                              for k in STUDY_KPIS},
        }
        if "cost" in ev:
            entry["out_of_sample"]["cost_per_h"] = summary(ev["cost"].to_numpy(float) / hours,
                                                           alpha)
        if perfect_foresight:
            entry["bound"] = _bound(ok, m.name, alpha)
        out_methods.append(entry)
    return {
        "format": STUDY_FORMAT, "scenario": scenario.name, "scenario_path": scenario.path,
        "controller": kind, "hours": hours, "alpha": alpha,
        "train_seeds": train_seeds, "test_seeds": test_seeds,
        "seed_derivation": f"SeedSequence({scenario.seed}, spawn_key=(K, i)).generate_state(1)"
                           f"[0], K = {TRAIN_KEY} (train), {TEST_KEY} (test)",
        "shift": shift, "methods": out_methods,
        "comparisons": _comparisons(ok, methods, alpha),
        "cost_weights": scenario.controller.weights.model_dump(),
        "recourse_step_s": float(scenario.siting.step_s),
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED, "level": 0.95,
                      "kind": "percentile"},
        "members": len(frame), "failed": int((frame["status"] != "ok").sum()),
        "engine": engine, "wall_s": wall_s,
    }


def _in_sample(tr: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """Stage I's own values. ``nominal_*_per_event``: the mean and CVaR_α of the integer
    recourse Q_s over the training draws under the empirical law 1/N (per shock event, the
    quantities a member's ``cost`` estimates out of sample when ``--hours`` equals
    ``siting.horizon_hours``). ``siting.json`` holds ``capex + R(w·Q)`` and the mean and
    CVaR of ``w·Q`` under the method's worst-case law p* (w = ``shock_events``); they are
    repeated here, and per shock event (÷ w) and per hour (÷ w·horizon_hours), with the LP
    recourse the siting was solved with and with the integer recourse."""
    h = float(scenario.siting.horizon_hours)
    w = float(tr.get("shock_events") or 1.0)
    ir = tr.get("integer_recourse") or {}

    def per(x: Any, d: float) -> float:
        return math.nan if x is None else float(x) / d

    q = np.asarray(ir.get("recourse_costs") or [], dtype=float)
    alpha = float(tr.get("alpha", scenario.siting.alpha))
    return {
        # under the empirical law p⁰ = 1/N, integer recourse: what `cost` is compared with
        "nominal_expected_cost_per_event": float(q.mean()) if q.size else math.nan,
        "nominal_cvar_per_event": empirical_cvar(q, alpha),
        "objective": tr.get("objective"), "expected_cost": tr.get("expected_cost"),
        "cvar": tr.get("cvar"), "recourse": tr.get("recourse"), "shock_events": w,
        "horizon_hours": h,
        "expected_cost_per_event": per(tr.get("expected_cost"), w),
        "cvar_per_event": per(tr.get("cvar"), w),
        "integer_expected_cost_per_event": per(ir.get("expected_cost"), w),
        "integer_cvar_per_event": per(ir.get("cvar"), w),
        "integer_expected_cost_per_h": per(ir.get("expected_cost"), w * h),
        "mip_gap": tr.get("mip_gap"), "solve_s": tr.get("solve_s"), "status": tr.get("status"),
    }


def _cost_by_seed(rows: pd.DataFrame) -> pd.Series:
    return rows.set_index("seed")["cost"]


def _paired_cost(a: pd.Series, b: pd.Series, alpha: float) -> dict[str, Any]:
    """:func:`paired_difference` of two :func:`_cost_by_seed` series on their common seeds."""
    seeds = a.index.intersection(b.index)
    return paired_difference(a[seeds].to_numpy(float), b[seeds].to_numpy(float), alpha)


def _bound(ok: pd.DataFrame, method: str, alpha: float) -> dict[str, Any]:
    """Per controller, its cost minus the perfect-foresight MPC's on the same seeds."""
    sub = ok[ok["method"] == method]
    perfect = _cost_by_seed(sub[sub["controller"] == "perfect"])
    out: dict[str, Any] = {"perfect_cost": summary(perfect.to_numpy(float), alpha)}
    for ctl in dict.fromkeys(sub.loc[sub["controller"] != "perfect", "controller"]):
        out[f"{ctl}_minus_perfect"] = _paired_cost(
            _cost_by_seed(sub[sub["controller"] == ctl]), perfect, alpha)
    if "foresight_error_mwh" in sub:
        out["foresight_error_mwh_max"] = float(sub["foresight_error_mwh"].max())
    return out


def _comparisons(ok: pd.DataFrame, methods: list[Method], alpha: float) -> list[dict[str, Any]]:
    """Every method's cost against SAA's (and against ``none``) on the same test seeds."""
    ev = ok[ok["role"] == "evaluation"]
    names = [m.name for m in methods]
    out = []
    for ref in ("saa", "none"):
        if ref not in names or "cost" not in ev:
            continue
        base = _cost_by_seed(ev[ev["method"] == ref])
        for m in names:
            if m == ref:
                continue
            out.append({"method": m, "against": ref, "kpi": "cost",
                        **_paired_cost(_cost_by_seed(ev[ev["method"] == m]), base, alpha)})
    return out
