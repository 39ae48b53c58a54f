"""Issue 14 through the real command line: every bad input is exit 2 and one line that names
where it came from, checked before any work, with nothing left on disk; a closed stdout ends
quietly; the progress bars count what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controllers.stage1 import ProgressBar
from scenarios.config import DEFAULT_SCENARIO

REPO = Path(__file__).resolve().parents[1]
SCENARIO = str(DEFAULT_SCENARIO)


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "run_cosim.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def place(tmp_path):
    """A folder with a file, a folder named like a Parquet file, and nothing else."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dir.parquet").mkdir()
    return tmp_path


@pytest.mark.parametrize("out", ["afile/x.parquet", "dir.parquet", "/proc/x.parquet",
                                 "/sys/x.parquet", "x.csv"])
def test_shocks_out_is_checked_before_sampling(place, out):
    before = sorted(p.name for p in place.rglob("*"))
    line = one_line(cli("shocks", SCENARIO, "--samples", "2", "--out", out, cwd=place))
    assert line.startswith("error: command line: --out: ")
    assert sorted(p.name for p in place.rglob("*")) == before  # no .parquet.partial


@pytest.mark.parametrize("args, start", [
    (["shocks", SCENARIO, "--samples", "2", "--seed", "-1", "--out", "x.parquet"],
     "command line: --seed: "),
    (["shocks", SCENARIO, "--samples", "100000", "--out", "x.parquet"], "command line: --samples: "),
    (["ensemble", SCENARIO, "--seed-list", "99999999999"], "command line: --seed-list: "),
    (["run", SCENARIO, "--hours", "-1"], "command line: --hours: "),
    (["run", SCENARIO, "--bogus"], "command line: --bogus: "),
    (["site", SCENARIO, "--seed", "1.5"], "command line: --seed: "),
    (["feeder", "ieee33", "--scale", "1e5"], "command line: --scale: "),
    (["feeder"], "command line: source: "),
])
def test_command_line_errors_have_one_form(tmp_path, args, start):
    line = one_line(cli(*args, cwd=tmp_path))
    assert line.startswith("error: " + start), line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cmd", ["run", "ensemble"])
def test_a_siting_folder_is_named_a_folder(tmp_path, cmd):
    folder = tmp_path / "site"
    folder.mkdir()
    line = one_line(cli(cmd, SCENARIO, "--siting", str(folder), "--hours", "0.05",
                        "--out", str(tmp_path / "o"), cwd=tmp_path))
    assert f"{folder}: is a folder, not a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_closed_stdout_ends_quietly():
    proc = subprocess.Popen([sys.executable, str(REPO / "run_cosim.py"), "feeder", "ieee33",
                             "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before the summary is printed (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_run_progress_counts_steps(tmp_path):
    proc = cli("run", SCENARIO, "--hours", "0.05", "--controller", "none", "--out",
               str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    final = proc.stderr.replace("\r", "\n").strip().splitlines()[-1]
    # 0.05 h of 60-s steps: 3 steps, not 180 simulated seconds
    assert "simulating" in final and "3/3" in final and "0.05 h simulated" in final, final
    quiet = cli("run", SCENARIO, "--hours", "0.05", "--controller", "none", "--no-progress",
                "--out", str(tmp_path / "q"))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_site_progress_bar_is_drawn_on_stderr_and_can_be_switched_off(capsys):
    bar = ProgressBar()
    for s in range(1, 4):
        bar("Benders iteration 2", s, 3, "gap 1.00%")
    bar.close()
    err = capsys.readouterr().err
    assert "Benders iteration 2" in err and "3/3" in err and "gap 1.00%" in err
    off = ProgressBar(enabled=False)
    off("sampling shock scenarios", 1, 3)
    off.close()
    assert capsys.readouterr().err == ""


def test_siting_file_without_feeder_or_of_another_format(tmp_path):
    base = {"format": "dcshock-siting/1",
            "feeder": {"source": "ieee33", "scale": 1.0, "buses": 33},
            "placements": [{"kind": "bess", "bus": "18", "p_mw": 0.5, "e_mwh": 1.0}]}
    cases = {"feeder": {k: v for k, v in base.items() if k != "feeder"},
             "format": {**base, "format": "other/9"},
             "placements": {**base, "placements": "x"},
             "placements[0].e_mwh": {**base, "placements": [{"kind": "bess", "bus": "18",
                                                             "p_mw": 0.5}]}}
    for field, doc in cases.items():
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps(doc))
        line = one_line(cli("run", SCENARIO, "--siting", str(path), "--hours", "0.05",
                            "--out", str(tmp_path / "o"), cwd=tmp_path))
        assert f"{path}: {field}: " in line, line
        assert "missing" not in line or field == "feeder", line
    assert not (tmp_path / "o").exists()
