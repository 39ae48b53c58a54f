"""Scenario ensembles on Dask (DESIGN.md §4): many co-simulation runs, one per (seed, controller).

An ensemble *member* is one complete :func:`scenarios.runner.run_scenario` of the scenario with
``seed`` and ``controller.kind`` replaced, written into its own folder
``<out_dir>/<controller>_seed<seed>/`` (timeseries, kpis.json, manifest.json, report), so
members never share a file. Members are independent, so they run on ``dask.distributed``:

* by default on a :class:`~dask.distributed.LocalCluster` of ``n_workers`` *processes* with one
  thread each (an OpenDSS engine and a mosaik event loop belong to a process, so a process
  runs one member at a time);
* or on an existing cluster, ``Client(scheduler)``, when a scheduler address is given. Its
  workers must be able to import this project and see ``out_dir`` at the same path.

Seeds (docs/ensemble.md): an explicit list is used as given; a count ``N`` takes member seed
``i`` (``i = 0..N−1``) as the first 32-bit word of the ``i``-th child of
``numpy.random.SeedSequence(scenario.seed)``::

    seed_i = SeedSequence(scenario.seed).spawn(N)[i].generate_state(1, uint32)[0]

so the same scenario seed always gives the same members, and the first ``N`` seeds of a larger
ensemble are the seeds of a smaller one. Every controller runs on the same seeds (common random
numbers: the controllers are compared on identical shocks).

Bad input (unknown controller, repeated seed, bad siting file, ...) raises
:class:`~models.errors.ScenarioError` in the client before any member starts. A member that
fails inside its worker (any exception, or a worker process that dies) is recorded with
``status = "failed: <one-line reason>"`` and counted; the other members go on.

Results: ``<out_dir>/ensemble_kpis.parquet`` and ``.csv`` (one row per member: ``seed``,
``controller``, ``status``, ``wall_s``, ``worker``, ``folder`` and the scalar KPIs of
``kpis.json``, nested ones flattened as ``ac_validation.max_abs_v_error_pu``), and
``ensemble_summary.csv`` (:func:`summarize`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import ScenarioError
from models.schema import SEED_MAX
from scenarios.config import Scenario

logger = logging.getLogger(__name__)

#: Controller kinds a member may use (``controller.kind`` of the scenario).
CONTROLLERS = ("none", "rule", "mpc")

#: Seconds to wait for an existing scheduler to answer before giving up (``--scheduler``).
CONNECT_TIMEOUT_S = 10.0

#: Columns that describe the member rather than its KPIs, first in the table.
MEMBER_COLUMNS = ("seed", "controller", "status", "wall_s", "worker", "folder")

#: KPIs the CLI's summary shows (all scalar KPIs are in the table and the summary file).
HEADLINE_KPIS = (
    "unserved_energy_mwh", "imbalance_mwh", "ramp_violation_mwh", "voltage_violation_bus_steps",
    "v_min_pu", "restoration_time_s", "fcm_operating_cost", "controller_fallbacks", "wall_s",
)

_CLI = "command line"


@dataclass(frozen=True)
class Member:
    """One ensemble member: the scenario run with this seed and this controller."""

    seed: int
    controller: str

    @property
    def name(self) -> str:
        """Folder name of the member inside the ensemble folder."""
        return f"{self.controller}_seed{self.seed}"


def member_seeds(base_seed: int, n: int) -> list[int]:
    """``n`` member seeds spawned deterministically from ``base_seed``.

    ``seed_i = SeedSequence(base_seed).spawn(n)[i].generate_state(1, uint32)[0]``; child ``i``
    does not depend on ``n``, so a larger ensemble extends a smaller one.
    """
    if n < 1:
        raise ScenarioError(_CLI, "--seeds", f"must be >= 1, got {n}")
    children = np.random.SeedSequence(base_seed).spawn(n)
    seeds = [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]
    if len(set(seeds)) != len(seeds):  # 32-bit words can collide; never silently merge members
        raise ScenarioError(_CLI, "--seeds", f"{n} spawned seeds contain a repeated value; "
                            "give the seeds explicitly with --seed-list")
    return seeds


def resolve_seeds(scenario: Scenario, seeds: int | Sequence[int]) -> list[int]:
    """The member seeds: ``seeds`` itself when it is a list, :func:`member_seeds` of the
    scenario seed when it is a count. Raises :class:`ScenarioError` on bad values."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return member_seeds(scenario.seed, int(seeds))
    out: list[int] = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= SEED_MAX:
            raise ScenarioError(_CLI, "--seed-list", f"seeds must be integers in [0, {SEED_MAX}], "
                                f"got {s!r}")
        if int(s) in out:
            raise ScenarioError(_CLI, "--seed-list", f"seed {s} is given twice; each member "
                                "needs its own seed")
        out.append(int(s))
    if not out:
        raise ScenarioError(_CLI, "--seed-list", "give at least one seed, e.g. 1,2,3")
    return out


def resolve_controllers(controllers: Sequence[str]) -> list[str]:
    """Validated controller kinds, in the given order."""
    out: list[str] = []
    for c in controllers:
        name = str(c).strip().lower()
        if name not in CONTROLLERS:
            raise ScenarioError(_CLI, "--controllers", f"unknown controller {c!r}; allowed: "
                                f"{', '.join(CONTROLLERS)}")
        if name in out:
            raise ScenarioError(_CLI, "--controllers", f"controller {name!r} is given twice")
        out.append(name)
    if not out:
        raise ScenarioError(_CLI, "--controllers", f"give at least one of {', '.join(CONTROLLERS)}")
    return out


def member_scenario(scenario: Scenario, member: Member, hours: float | None = None) -> Scenario:
    """The scenario of one member (seed, controller and, optionally, hours replaced)."""
    sc = scenario.with_overrides(seed=member.seed, controller={"kind": member.controller})
    if hours is not None:
        sc = sc.with_overrides(simulation={"hours": hours})
    if sc.path and Path(sc.path).exists():  # workers may run in another folder
        sc = sc.model_copy(update={"path": str(Path(sc.path).resolve())})
    return sc


def kpi_row(kpis: dict[str, Any]) -> dict[str, float]:
    """The scalar KPIs of a ``kpis.json`` dict: numbers and booleans as floats, one level of
    nested dicts flattened as ``<key>.<sub>``; strings and lists are left out."""
    row: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if value is None:
            row[key] = math.nan
        elif isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
            row[key] = float(value)

    for key, value in kpis.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                put(f"{key}.{sub}", v)
        else:
            put(key, value)
    return row


def run_member(scenario: Scenario, out_dir: str | Path, siting_file: str | Path | None = None
               ) -> dict[str, Any]:
    """Run one member into ``out_dir`` (in a Dask worker); never raises for a failed run.

    Returns ``{"status": "ok", "wall_s", "worker", **kpi_row(kpis)}``, or ``status = "failed:
    <ExceptionType>: <first line>"`` when ``run_scenario`` raised (the traceback goes to the
    worker's log; the runner keeps the partial folder for post-mortem).
    """
    from scenarios.runner import run_scenario

    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    try:
        kpis = run_scenario(scenario, out_dir, siting_file=siting_file, progress=False)
    except Exception as exc:  # a member's failure must not end the ensemble
        logger.exception("ensemble member %s failed", Path(out_dir).name)
        return {"status": f"failed: {_one_line(exc)}", "wall_s": time.perf_counter() - t0,
                "worker": worker}
    row = kpi_row(kpis)
    row.update(status="ok", wall_s=time.perf_counter() - t0, worker=worker)
    return row


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ScenarioError(_CLI, "--out", f"{out_dir} exists and is not a folder; give a folder")
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ScenarioError(_CLI, "--out", f"cannot write under {probe}; give a writable folder")


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator[Any]:
    """A ``dask.distributed`` Client: on a new LocalCluster (``n_workers`` processes, one
    thread each, no dashboard) or connected to ``scheduler``. Closed on exit (an existing
    cluster is left running)."""
    from dask.distributed import Client, LocalCluster

    with _quiet_distributed(), contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ScenarioError(_CLI, "--scheduler", f"cannot connect to {scheduler!r} "
                                    f"({_one_line(exc)}); give the address of a running Dask "
                                    "scheduler, e.g. tcp://host:8786") from None
            stack.enter_context(client)
            _check_workers_import(client, scheduler)
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.WARNING))
            client = stack.enter_context(Client(cluster, set_as_default=False))
        yield client


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Dask's own INFO chatter (scheduler and nanny start/stop) only when this module logs at
    INFO (``run_cosim.py -v``); the level is restored on exit."""
    dlog = logging.getLogger("distributed")
    old = dlog.level
    if not logger.isEnabledFor(logging.INFO):
        dlog.setLevel(max(old, logging.WARNING))
    try:
        yield
    finally:
        dlog.setLevel(old)


def _importable() -> str:
    """Run on each worker: '' when this project imports there, else the reason."""
    try:
        import scenarios.runner  # noqa: F401
    except Exception as exc:  # report, do not raise, so every worker answers
        return _one_line(exc)
    return ""


def _check_workers_import(client: Any, scheduler: str) -> None:
    try:
        bad = {w: r for w, r in client.run(_importable).items() if r}
    except Exception as exc:  # the workers could not even unpickle the check
        bad = {"(all)": _one_line(exc)}
    if bad:
        worker, reason = next(iter(bad.items()))
        raise ScenarioError(_CLI, "--scheduler", f"{len(bad)} worker(s) of {scheduler} cannot "
                            f"import dcshock-cosim (e.g. {worker}: {reason}); install the "
                            "project on every worker")


def run_ensemble(
    scenario: Scenario,
    seeds: int | Sequence[int],
    controllers: Sequence[str],
    out_dir: str | Path,
    *,
    hours: float | None = None,
    siting_file: str | Path | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every (seed, controller) member on Dask and tabulate their KPIs.

    ``seeds`` is a count (seeds spawned from ``scenario.seed``, see :func:`member_seeds`) or
    an explicit list. Returns one row per member (ordered by controller, then seed, as given)
    with the columns of :data:`MEMBER_COLUMNS` and the scalar KPIs, and writes it to
    ``out_dir/ensemble_kpis.parquet`` and ``.csv``, the summary to
    ``out_dir/ensemble_summary.csv``. ``frame.attrs`` holds ``members`` and ``failed``.
    """
    from scenarios.world import plan_world

    # --- everything the user gave is checked here, before any member starts ---------------
    seed_list = resolve_seeds(scenario, seeds)
    kinds = resolve_controllers(controllers)
    if hours is not None and not (isinstance(hours, (int, float)) and hours > 0):
        raise ScenarioError(_CLI, "--hours", f"must be > 0, got {hours!r}")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ScenarioError(_CLI, "--workers", f"must be an integer >= 1, got {n_workers!r}")
    if siting_file is not None:  # read and checked by plan_world below
        siting_file = Path(siting_file).resolve()
    out_dir = Path(out_dir).resolve()
    _check_out_dir(out_dir)
    members = [Member(s, c) for c in kinds for s in seed_list]
    scenarios = {m: member_scenario(scenario, m, hours) for m in members}
    plan_world(scenarios[members[0]], siting_file)  # feeder, buses, placements, siting file

    with dask_client(scheduler, n_workers) as client:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = _run_members(client, scenarios, out_dir, siting_file, progress)
    frame = _table(members, rows)
    failed = int((frame["status"] != "ok").sum())
    frame.attrs.update(members=len(members), failed=failed)
    if failed:
        logger.warning("%d of %d ensemble members failed (see the status column of %s)",
                       failed, len(members), out_dir / "ensemble_kpis.csv")
    write_results(frame, out_dir)
    return frame


def _run_members(client: Any, scenarios: dict[Member, Scenario], out_dir: Path,
                 siting_file: Path | None, progress: bool) -> dict[Member, dict[str, Any]]:
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    tag = uuid.uuid4().hex[:8]
    futures = {
        client.submit(run_member, sc, out_dir / m.name, siting_file, pure=False,
                      key=f"ensemble-{m.name}-{tag}"): m
        for m, sc in scenarios.items()
    }
    rows: dict[Member, dict[str, Any]] = {}
    bar = tqdm(total=len(futures), desc="ensemble", unit="member", disable=not progress)
    try:
        for fut in as_completed(futures, loop=client.loop):
            member = futures[fut]
            try:
                rows[member] = fut.result()
            except Exception as exc:  # the worker died, or the task could not run at all
                logger.error("ensemble member %s failed in Dask: %s", member.name, _one_line(exc))
                rows[member] = {"status": f"failed: {_one_line(exc)}", "wall_s": math.nan,
                                "worker": ""}
            bar.update(1)
    finally:
        bar.close()
    return rows


def _table(members: list[Member], rows: dict[Member, dict[str, Any]]) -> pd.DataFrame:
    records = []
    for m in members:
        rec = {"seed": m.seed, "controller": m.controller, "folder": m.name}
        rec.update(rows[m])
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    kpi_cols = [c for c in frame.columns if c not in MEMBER_COLUMNS]
    frame = frame[list(MEMBER_COLUMNS) + kpi_cols]
    frame["seed"] = frame["seed"].astype("int64")
    frame[kpi_cols] = frame[kpi_cols].astype(float)
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof = 1; NaN for one member), min and max of every
    KPI per controller, over the members whose status is ``ok``.

    Index ``(controller, kpi)`` in the order the controllers appear; columns ``n, mean, std,
    min, max``. ``n`` counts the members with a finite value of that KPI.
    """
    ok = frame[frame["status"] == "ok"]
    kpis = [c for c in frame.columns if c not in MEMBER_COLUMNS or c == "wall_s"]
    parts = []
    for ctl in dict.fromkeys(frame["controller"]):
        sub = ok.loc[ok["controller"] == ctl, kpis].astype(float)
        stats = pd.DataFrame({
            "n": sub.notna().sum(), "mean": sub.mean(), "std": sub.std(ddof=1),
            "min": sub.min(), "max": sub.max(),
        })
        stats.index = pd.MultiIndex.from_product([[ctl], stats.index], names=["controller", "kpi"])
        parts.append(stats)
    return pd.concat(parts) if parts else pd.DataFrame(columns=["n", "mean", "std", "min", "max"])


def write_results(frame: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write the member table (Parquet and CSV) and the summary (CSV) into ``out_dir``,
    each through a temporary file renamed into place."""
    out_dir = Path(out_dir)
    paths = {
        "kpis_parquet": out_dir / "ensemble_kpis.parquet",
        "kpis_csv": out_dir / "ensemble_kpis.csv",
        "summary_csv": out_dir / "ensemble_summary.csv",
    }
    plain = frame.copy()
    plain.attrs = {}
    writers = {
        "kpis_parquet": lambda p: plain.to_parquet(p, index=False),
        "kpis_csv": lambda p: plain.to_csv(p, index=False),
        "summary_csv": lambda p: summarize(plain).to_csv(p),
    }
    for key, path in paths.items():
        tmp = path.with_name(path.name + ".partial")
        writers[key](tmp)
        tmp.replace(path)
    return paths
