"""Ensembles on Dask (scenarios/ensemble.py, docs/ensemble.md).

Real Dask LocalClusters (2 worker processes, 1 thread each) and real co-simulation runs
(mosaik, OpenDSS, SimPy) of a quarter of an hour. The reference for the ensemble is the same
members run one after another in this process: runs are deterministic by seed, so the Dask
result must equal the serial one."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import run_cosim
from models.errors import ScenarioError
from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.ensemble import (
    Member,
    kpi_row,
    member_scenario,
    member_seeds,
    run_ensemble,
    summarize,
)
from scenarios.runner import run_scenario

HOURS = 0.25  # 15 one-minute steps per member


def _deterministic(columns) -> list[str]:
    """KPI columns that do not measure wall time."""
    return [c for c in columns
            if not (c.startswith(("wall_", "timer_")) or c == "wall_s" or "solve_s" in c)]


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(DEFAULT_SCENARIO)


@pytest.fixture(scope="module")
def cluster():
    """An 'existing' cluster the tests reach by its scheduler address."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as c:
        yield c


def test_ensemble_equals_serial_runs(scenario, tmp_path):
    """2 seeds × {none, rule} on the default 2-worker LocalCluster give the KPIs and the
    timeseries of the same members run serially in this process."""
    seeds, kinds = [11, 12], ["none", "rule"]
    out = tmp_path / "ens"
    frame = run_ensemble(scenario, seeds, kinds, out, hours=HOURS, n_workers=2, progress=False)

    assert list(frame[["controller", "seed"]].itertuples(index=False, name=None)) == [
        ("none", 11), ("none", 12), ("rule", 11), ("rule", 12)]
    assert (frame["status"] == "ok").all(), frame["status"].tolist()
    assert frame.attrs == {"members": 4, "failed": 0}
    assert all(not w.endswith(f":{os.getpid()}") for w in frame["worker"])  # ran in workers
    on_disk = pd.read_parquet(out / "ensemble_kpis.parquet")
    pd.testing.assert_frame_equal(on_disk, frame, check_like=False)
    assert len(pd.read_csv(out / "ensemble_kpis.csv")) == 4

    cols = _deterministic([c for c in frame.columns if "." in c or c.endswith(
        ("_mwh", "_pu", "_steps", "_pct", "_s", "_cost", "_solves", "_fallbacks", "_trips"))])
    assert "imbalance_mwh" in cols and "ac_validation.max_abs_v_error_pu" in cols
    for row in frame.itertuples(index=False):
        member = Member(row.seed, row.controller)
        ref_dir = tmp_path / "serial" / member.name
        ref = kpi_row(run_scenario(member_scenario(scenario, member, HOURS), ref_dir,
                                   progress=False))
        got = frame.loc[(frame["seed"] == row.seed) & (frame["controller"] == row.controller),
                        cols].iloc[0].to_numpy(float)
        want = np.array([ref.get(c, np.nan) for c in cols])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True,
                                   err_msg=member.name)
        manifest = json.loads((out / member.name / "manifest.json").read_text())
        assert manifest["seed"] == row.seed
        ts_ens = pd.read_parquet(out / member.name / "timeseries.parquet")
        ts_ref = pd.read_parquet(ref_dir / "timeseries.parquet")
        keep = [c for c in ts_ref.columns if not c.endswith("solve_s")]
        pd.testing.assert_frame_equal(ts_ens[keep], ts_ref[keep], check_exact=False, rtol=1e-9)

    # the seeds matter: the two seeds of a controller give different runs
    none = frame[frame["controller"] == "none"].set_index("seed")
    assert not np.allclose(none.loc[11, cols].to_numpy(float), none.loc[12, cols].to_numpy(float),
                           equal_nan=True)
    # summary: mean/std/min/max per controller of the members' values
    summary = summarize(frame)
    vals = none["imbalance_mwh"].to_numpy()
    stats = summary.loc[("none", "imbalance_mwh")]
    assert stats["n"] == 2
    assert stats["mean"] == pytest.approx(vals.mean())
    assert stats["std"] == pytest.approx(np.std(vals, ddof=1))
    assert (stats["min"], stats["max"]) == (vals.min(), vals.max())


def test_failing_member_is_recorded_not_fatal(scenario, cluster, tmp_path):
    """A member that cannot write its folder fails inside its worker; it is recorded and
    counted, and the other member of the ensemble still runs to completion."""
    out = tmp_path / "ens"
    out.mkdir()
    (out / "rule_seed5").write_text("not a folder")  # blocks the rule member's result folder
    frame = run_ensemble(scenario, [5], ["none", "rule"], out, hours=HOURS,
                         scheduler=cluster.scheduler_address, progress=False)
    status = dict(zip(frame["controller"], frame["status"]))
    assert status["none"] == "ok"
    assert status["rule"].startswith("failed: ScenarioError:") and "not a folder" in status["rule"]
    assert "\n" not in status["rule"]
    assert frame.attrs == {"members": 2, "failed": 1}
    assert (out / "none_seed5" / "kpis.json").is_file()
    assert (out / "rule_seed5").read_text() == "not a folder"
    rule = frame[frame["controller"] == "rule"].iloc[0]
    assert np.isnan(rule["imbalance_mwh"])
    # the failed member is in the table on disk; the summary counts no value for it
    assert pd.read_csv(out / "ensemble_kpis.csv")["status"].str.startswith("failed").sum() == 1
    summary = summarize(frame)
    assert (summary.loc["rule", "n"] == 0).all()
    assert summary.loc[("none", "imbalance_mwh"), "mean"] == frame["imbalance_mwh"].iloc[0]


def test_cli_ensemble_on_existing_cluster(cluster, tmp_path, capsys):
    out = tmp_path / "cli"
    code = run_cosim.main(["ensemble", str(DEFAULT_SCENARIO), "--seeds", "1", "--controllers",
                           "rule", "--hours", str(HOURS), "--out", str(out),
                           "--scheduler", cluster.scheduler_address, "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "1 members, 0 failed" in printed and "imbalance_mwh" in printed
    table = pd.read_parquet(out / "ensemble_kpis.parquet")
    seed = member_seeds(42, 1)[0]
    assert table["seed"].tolist() == [seed] and table["status"].tolist() == ["ok"]
    assert (out / f"rule_seed{seed}" / "timeseries.parquet").is_file()


def test_spawned_seeds_are_deterministic_and_nested():
    expected = [int(c.generate_state(1, dtype=np.uint32)[0])
                for c in np.random.SeedSequence(42).spawn(3)]
    assert member_seeds(42, 3) == expected
    assert member_seeds(42, 2) == expected[:2]
    assert len(set(member_seeds(7, 50))) == 50


@pytest.mark.parametrize("args", [
    ["--seeds", "0"],
    ["--seed-list", "1,x"],
    ["--seed-list", "3,3"],
    ["--seeds", "2", "--seed-list", "1,2"],
    ["--controllers", "none,foo"],
    ["--controllers", "rule,rule"],
    ["--workers", "0"],
    ["--hours", "-1"],
    ["--siting", "no/such/siting.json"],
    ["--scheduler", "notaproto://nowhere:1"],
])
def test_cli_bad_options_exit_2_before_any_work(args, tmp_path, capsys):
    out = tmp_path / "ens"
    code = run_cosim.main(["ensemble", str(DEFAULT_SCENARIO), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_siting_is_raised_in_the_client(scenario, tmp_path):
    siting = tmp_path / "siting.json"
    siting.write_text(json.dumps({"feeder": {"source": "ieee33", "scale": 1.0, "buses": 33},
                                  "placements": [
        {"kind": "bess", "bus": "999", "p_mw": 0.5, "e_mwh": 1.0}]}))
    out = tmp_path / "ens"
    with pytest.raises(ScenarioError, match=r"placements\[0\]\.bus: .*'999'"):
        run_ensemble(scenario, [1], ["none"], out, hours=HOURS, siting_file=siting,
                     progress=False)
    assert not out.exists()
