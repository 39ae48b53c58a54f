"""The siting study (scenarios/study.py, docs/study.md) and Benders on Dask.

Real Dask (a LocalCluster, and a real ``dask scheduler`` + ``dask worker`` started here on
127.0.0.1), real Stage I (HiGHS) and real closed-loop runs (mosaik, OpenDSS) of a quarter of
an hour. The references are independent of the study's code: a plain ``run_scenario`` of the
same siting and seed, hand-computed CVaR and bootstrap values, the campus of a plain run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from models.errors import ScenarioError
from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.runner import run_scenario
from scenarios.study import (
    apply_shift,
    bootstrap_ci,
    empirical_cvar,
    paired_difference,
    parse_methods,
    parse_shift,
    realised_cost,
    run_study,
    study_seeds,
)

REPO = Path(__file__).resolve().parents[1]
HOURS = 0.25  # 15 one-minute steps per member
#: a small Stage I: 2 buses × 2 kinds, one hour at 30 min, 2 training draws
SMALL_SITING = {"candidate_buses": ["18", "33"], "kinds": ["bess", "gen"], "horizon_hours": 1.0,
                "step_s": 1800.0}
STUDY = {"methods": "none,saa", "train_scenarios": 2, "test_seeds": 2, "hours": HOURS,
         "perfect_foresight": True, "progress": False}


def _deterministic(columns) -> list[str]:
    return [c for c in columns if not (c.startswith(("wall_", "timer_")) or c in
                                       ("wall_s", "worker", "status") or "solve_s" in c
                                       or c == "controller_build_s")]


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(DEFAULT_SCENARIO).with_overrides(siting=SMALL_SITING)


@pytest.fixture(scope="module")
def local_study(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "local"
    result = run_study(scenario, out, n_workers=2, **STUDY)
    return out, result, pd.read_parquet(out / "evaluation.parquet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cli_cluster(tmp_path_factory):
    """A real `dask scheduler` and one `dask worker --nworkers 2 --nthreads 1` on 127.0.0.1,
    started as processes that import this repository (PYTHONPATH = its root)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    logs = tmp_path_factory.mktemp("dask-logs")
    dask = [sys.executable, "-m", "dask"]  # the `dask` command of this interpreter
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], cwd=REPO, env=env,
                              stdout=(logs / "s.log").open("w"),
                              stderr=subprocess.STDOUT)]
    try:
        procs.append(subprocess.Popen([*dask, "worker", address, "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard"], cwd=REPO, env=env,
                                      stdout=(logs / "w.log").open("w"),
                                      stderr=subprocess.STDOUT))
        from dask.distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as c:
                    if len(c.scheduler_info()["workers"]) >= 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (logs / "s.log").read_text()[-2000:]
            time.sleep(0.5)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# --- what the user gives ------------------------------------------------------------------

def test_methods_are_parsed_in_order():
    ms = parse_methods("none, saa,l1:0.1,wasserstein:0.050")
    assert [(m.name, m.ambiguity, m.radius) for m in ms] == [
        ("none", None, 0.0), ("saa", "none", 0.0), ("l1:0.1", "l1", 0.1),
        ("wasserstein:0.05", "wasserstein", 0.05)]
    assert ms[3].folder == "wasserstein_0.05"


@pytest.mark.parametrize("text, what", [("dro", "unknown method"), ("l1", "unknown method"),
                                         ("l1:-1", "radius"), ("wasserstein:x", "radius"),
                                         ("saa,saa", "twice"), (",", "at least one")])
def test_bad_methods_name_the_option(text, what):
    with pytest.raises(ScenarioError, match=what) as exc:
        parse_methods(text)
    assert exc.value.field == "--methods"


def test_shift_is_read_as_toml_and_applied(scenario):
    shift = parse_shift(["shocks.surge_rate_per_day=4", "shocks.surge_hours=[1.0, 2.0]",
                         "campus.job_rate_per_h=1.5"])
    assert shift == {"shocks": {"surge_rate_per_day": 4, "surge_hours": [1.0, 2.0]},
                     "campus": {"job_rate_per_h": 1.5}}
    shifted = apply_shift(scenario, shift)
    assert shifted.shocks.surge_rate_per_day == 4
    assert shifted.shocks.surge_hours == (1.0, 2.0)
    assert shifted.campus[0].job_rate_per_h == 1.5
    assert scenario.shocks.surge_rate_per_day == 2.0  # the training law is untouched


@pytest.mark.parametrize("items, what", [
    (["shocks.surge_rate=4"], "surge_rate"),
    (["shocks.surge_rate_per_day=-1"], "surge_rate_per_day"),
    (["shocks.surge_rate_per_day=many"], "surge_rate_per_day"),
    (["grid.v_min_pu=0.8"], "allowed: shocks, campus"),
    (["surge_rate_per_day=4"], "SECTION.FIELD=VALUE"),
])
def test_bad_shift_names_the_field(scenario, items, what):
    with pytest.raises(ScenarioError, match=what) as exc:
        apply_shift(scenario, parse_shift(items))
    assert exc.value.field == "--shift"


def test_train_and_test_seeds_are_disjoint_deterministic_and_nested():
    train, test = study_seeds(42, 20, 10)
    assert len(set(train)) == 20 and len(set(test)) == 10 and not set(train) & set(test)
    assert (train, test) == study_seeds(42, 20, 10)
    small_train, small_test = study_seeds(42, 5, 3)
    assert small_train == train[:5] and small_test == test[:3]
    assert study_seeds(43, 5, 3) != (small_train, small_test)


def test_a_training_draw_is_the_campus_of_a_run_with_that_seed(tmp_path):
    """run_seed_trajectories(seed k) against the campus column of a plain run with seed k
    and no FCM (no voltage-driven trip in these 15 minutes)."""
    from models.shocks import run_seed_trajectories

    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(
        seed=7, simulation={"hours": HOURS}, controller={"kind": "none"}, fcm={"placements": []})
    run_scenario(sc, tmp_path / "run", progress=False)
    ts = pd.read_parquet(tmp_path / "run" / "timeseries.parquet")
    draw = run_seed_trajectories(sc, [7], step_s=60, hours=HOURS)[0, 0]
    np.testing.assert_allclose(draw, ts["dc.campus1.p_mw"].to_numpy(), atol=1e-3)


# --- statistics against hand-computed values -------------------------------------------------

def test_cvar_by_hand():
    x = [4.0, 1.0, 3.0, 2.0]
    assert empirical_cvar(x, 0.5) == pytest.approx(3.5)        # mean of the worst half
    assert empirical_cvar(x, 0.75) == pytest.approx(4.0)       # the worst quarter
    assert empirical_cvar(x, 0.6) == pytest.approx((4 * 0.25 + 3 * 0.15) / 0.4)
    assert empirical_cvar(x, 0.0) == pytest.approx(2.5)        # the mean


def test_bootstrap_interval_by_hand():
    """Resampled means of {0, 1} are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4, so the
    2.5 % and 97.5 % quantiles are 0 and 1; a constant sample has a point interval."""
    assert bootstrap_ci([0.0, 1.0], np.mean) == [0.0, 1.0]
    assert bootstrap_ci([3.0, 3.0, 3.0], np.mean) == [3.0, 3.0]
    x = np.arange(10.0)
    assert bootstrap_ci(x, np.mean) == bootstrap_ci(x, np.mean)  # fixed seed
    lo, hi = bootstrap_ci(x, np.mean)
    assert lo < 4.5 < hi and hi - lo < 6


def test_paired_difference_by_hand():
    d = paired_difference([3.0, 5.0, 10.0], [1.0, 1.0, 2.0], alpha=0.5)
    assert d["n"] == 3 and d["mean_diff"] == pytest.approx((2 + 4 + 8) / 3)
    # CVaR_0.5 of three equal atoms: (1/2)·worst + (1/6)·second ... = (10·1/3 + 5·1/6)/0.5
    assert d["cvar_diff"] == pytest.approx((10 / 3 + 5 / 6) / 0.5 - (2 / 3 + 1 / 6) / 0.5)


def test_realised_cost_by_hand(scenario):
    """Two steps of 60 s, two buses, one rated branch, one storage; weights of the scenario,
    recourse step τ = 1800 s (SMALL_SITING), so r = 60/1800."""
    w = scenario.controller.weights
    ts = pd.DataFrame({
        "pf.converged": [True, True],
        "bus.1.v_pu": [1.06, 1.0],        # 0.01 pu above 1.05 in step 0
        "bus.2.v_pu": [0.88, 0.95],       # 0.02 pu below 0.90 in step 0
        "branch.b1.p_mw": [3.0, 0.0], "branch.b1.q_mvar": [4.0, 0.0],   # |S| = 5 MVA
        "fcm.bess_2.soc_mwh": [0.5, 0.3],
    }, index=[0, 60])
    kpis = {"imbalance_mwh": 0.2, "ramp_violation_mwh": 0.01, "unserved_energy_mwh": 0.0,
            "restoration_time_s": 3600.0, "fcm_operating_cost": 7.0}
    feeder = SimpleNamespace(branches=[SimpleNamespace(name="b1", rating_mva=4.0)])
    bess = SimpleNamespace(kind="bess", label="bess_2", e_mwh=1.0)
    soc_init = scenario.fcm.catalog["bess"].soc_init
    got = realised_cost(ts, kpis, scenario, [bess], feeder)
    r = 60.0 / 1800.0
    frac = scenario.grid.max_loading_pct / 100
    want = (w.imbalance_per_mwh * 0.2 + w.ramp_violation_per_mwh * 0.01
            + w.restoration_per_step * 2 + w.voltage_slack_per_pu_step * r * 0.03
            + w.thermal_slack_per_mva_step * r * max(0.0, 5 - 4 * frac)
            + w.operating_cost_scale * 7.0 + w.soc_shortfall_per_mwh * max(0.0, soc_init - 0.3))
    assert got["cost"] == pytest.approx(want)
    assert got["voltage_excess_pu_steps"] == pytest.approx(r * 0.03)


# --- the study on Dask ----------------------------------------------------------------------

def test_study_files_and_seeds(local_study):
    out, result, frame = local_study
    assert {p.name for p in out.iterdir()} >= {"study.json", "evaluation.parquet", "report.html",
                                                 "study_capex_cvar.png", "study_spread.png",
                                                 "study_probabilities.png", "sitings", "members"}
    on_disk = json.loads((out / "study.json").read_text())
    assert on_disk["train_seeds"] == result["train_seeds"]
    train, test = study_seeds(42, 2, 2)
    assert result["train_seeds"] == train and result["test_seeds"] == test
    assert result["alpha"] == 0.9 and result["shift"] == {}
    assert result["engine"]["dask"] == "LocalCluster" and result["engine"]["workers"] == 2
    for m in result["methods"]:
        assert set(m) >= {"name", "ambiguity", "radius", "siting", "capex", "in_sample",
                          "out_of_sample"}
        assert set(m["out_of_sample"]) >= {"cost", "unserved_energy_mwh", "imbalance_mwh",
                                           "voltage_violation_bus_steps", "ramp_violation_mwh"}
        assert set(m["out_of_sample"]["cost"]) >= {"mean", "cvar", "ci95"}
    # one row per method × controller role × test seed, all ran
    assert len(frame) == 2 * 3 * 2 and (frame["status"] == "ok").all(), frame["status"]
    assert set(frame["role"]) == {"evaluation", "bound", "comparison"}


def test_workers_import_once_and_each_member_is_one_task(local_study):
    _, result, frame = local_study
    info = result["engine"]["worker_info"]
    assert all(v["preload_import_s"] is not None and v["nthreads"] == 1 for v in info.values())
    pids = {str(v["pid"]) for v in info.values()}
    assert {w.rsplit(":", 1)[1] for w in frame["worker"]} <= pids  # no other process ran one


def test_none_has_no_fcm_so_no_controller_changes_its_cost(local_study):
    out, result, frame = local_study
    none = next(m for m in result["methods"] if m["name"] == "none")
    assert none["siting"]["placements"] == [] and none["capex"] == 0.0
    ts = pd.read_parquet(out / frame.loc[frame["method"] == "none", "folder"].iloc[0]
                         / "timeseries.parquet")
    assert not [c for c in ts.columns if c.startswith("fcm.")]
    wide = frame[frame["method"] == "none"].pivot(index="seed", columns="controller", values="cost")
    np.testing.assert_allclose(wide["mpc"], wide["rule"], rtol=1e-12)
    np.testing.assert_allclose(wide["mpc"], wide["perfect"], rtol=1e-12)


def test_evaluation_row_equals_a_plain_run_of_that_siting_and_seed(scenario, local_study,
                                                                   tmp_path):
    out, result, frame = local_study
    row = frame[(frame["method"] == "saa") & (frame["role"] == "evaluation")].iloc[0]
    sc = scenario.with_overrides(seed=int(row["seed"]), simulation={"hours": HOURS},
                                 controller={"kind": "mpc"})
    kpis = run_scenario(sc, tmp_path / "plain", siting_file=out / "sitings" / "saa.json",
                        progress=False)
    for key in ("imbalance_mwh", "unserved_energy_mwh", "ramp_violation_mwh",
                "voltage_violation_bus_steps", "restoration_time_s", "fcm_operating_cost"):
        assert row[key] == pytest.approx(kpis[key], rel=1e-9, abs=1e-12), key
    saa = next(m for m in result["methods"] if m["name"] == "saa")
    assert saa["capex"] == row["capex"] and saa["in_sample"]["objective"] > 0
    # SAA's worst-case law is the empirical one, so its two in-sample means agree
    ins = saa["in_sample"]
    assert ins["nominal_expected_cost_per_event"] == pytest.approx(
        ins["integer_expected_cost_per_event"], rel=1e-6)


def test_perfect_foresight_rows_know_the_realised_draw(local_study):
    _, result, frame = local_study
    perfect = frame[frame["controller"] == "perfect"]
    assert (perfect["status"] == "ok").all() and perfect["foresight_error_mwh"].notna().all()
    saa = next(m for m in result["methods"] if m["name"] == "saa")
    assert set(saa["bound"]) >= {"perfect_cost", "mpc_minus_perfect", "rule_minus_perfect"}


def test_perfect_forecaster_needs_its_file_in_a_plain_run(tmp_path):
    from controllers.forecast import make_forecaster

    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(controller={"forecaster": "perfect"})
    with pytest.raises(ScenarioError, match="foresight_file"):
        make_forecaster("perfect", sc)
    bad = sc.with_overrides(controller={"foresight_file": str(tmp_path / "nothing.parquet")})
    with pytest.raises(ScenarioError, match="not a file"):
        make_forecaster("perfect", bad)


def test_external_scheduler_equals_local_and_a_failing_member_is_recorded(
        scenario, local_study, dask_cli_cluster, tmp_path):
    """The same study on a real `dask scheduler` + `dask worker`: every member equals the
    LocalCluster's, except one whose folder is a file (it fails, and the study goes on)."""
    _, _, local = local_study
    out = tmp_path / "external"
    out.mkdir()
    (out / "study.json").write_text("{}")  # an earlier study in this folder
    bad = local[(local["method"] == "saa") & (local["role"] == "comparison")].iloc[0]
    (out / bad["folder"]).parent.mkdir(parents=True)
    (out / bad["folder"]).write_text("not a folder")
    result = run_study(scenario, out, scheduler=dask_cli_cluster, **STUDY)
    frame = pd.read_parquet(out / "evaluation.parquet")
    assert result["engine"]["dask"] == "scheduler" and result["failed"] == 1
    failed = frame[frame["status"] != "ok"]
    assert list(failed["folder"]) == [bad["folder"]] and "ScenarioError" in failed["status"].iloc[0]
    keys = ["method", "controller", "seed"]
    both = frame[frame["status"] == "ok"].merge(local, on=keys, suffixes=("", "_local"))
    assert len(both) == len(local) - 1
    cols = [c for c in _deterministic(frame.columns) if c not in keys + ["role", "folder"]
            and f"{c}_local" in both]
    for c in cols:
        np.testing.assert_allclose(both[c].to_numpy(float), both[f"{c}_local"].to_numpy(float),
                                   rtol=1e-9, atol=1e-12, err_msg=c)


def test_benders_on_dask_equals_serial(dask_cli_cluster):
    from dask.distributed import Client

    from controllers.decomposition import solve_benders
    from controllers.stage1 import build_problem
    from models.shocks import sample_campus_trajectories
    from scenarios.feeder import open_scenario_feeder

    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(siting=SMALL_SITING)
    feeder = open_scenario_feeder(sc).data
    xi = sample_campus_trajectories(sc, 5, 3, step_s=1800, hours=1.0)
    problem, _, _ = build_problem(sc, feeder, xi)
    serial = solve_benders(problem, mip_gap=1e-6)
    with Client(dask_cli_cluster, set_as_default=False) as client:
        dist = solve_benders(problem, mip_gap=1e-6, client=client)
        assert not any(client.run(lambda: __import__("controllers.decomposition").decomposition
                                  ._CHUNKS).values())  # dropped after the solve
    # the same optimum (the sitings may differ only where several are optimal: degenerate
    # subproblem LPs have several dual solutions, so the chunks' cuts can differ)
    assert dist.status == serial.status == "optimal"
    assert dist.objective == pytest.approx(serial.objective, rel=1e-5)


# --- the command line -----------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "run_cosim.py"), "study",
                           str(DEFAULT_SCENARIO), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("args, start", [
    (["--methods", "none,dro"], "error: command line: --methods: unknown method 'dro'"),
    (["--shift", "shocks.surge_rate=4"], "error: command line: --shift: shocks.surge_rate"),
    (["--shift", "shocks.surge_rate_per_day=-4"], "error: command line: --shift: shocks.surge"),
    (["--test-seeds", "0"], "error: command line: --test-seeds: "),
    (["--train-scenarios", "2.5"], "error: command line: --train-scenarios: "),
    (["--workers", "0"], "error: command line: --workers: "),
    (["--hours", "-1"], "error: command line: --hours: "),
    (["--scheduler", "tcp://127.0.0.1:9"], "error: command line: --scheduler: cannot connect"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, start):
    proc = _cli("--out", "st", "--no-progress", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(start), lines[0]
    assert not (tmp_path / "st").exists()  # nothing written
