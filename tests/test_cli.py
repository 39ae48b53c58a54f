"""The command-line contract of DESIGN.md §5: bad options give exit code 2 and one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_cosim.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bogus"], "invalid choice"),
        (["feeder"], "source"),
        (["site", "scenarios/ieee33_ai_shock.toml", "--alpha", "3"], "--alpha"),
        (["site", "scenarios/ieee33_ai_shock.toml", "--ambiguity", "box"], "--ambiguity"),
        (["run", "scenarios/ieee33_ai_shock.toml", "--hours", "-1"], "--hours"),
        (["run", "scenarios/ieee33_ai_shock.toml", "--controller", "pid"], "--controller"),
        (["shocks", "scenarios/ieee33_ai_shock.toml", "--out", "x.parquet"], "--samples"),
        (["run", "no/such/scenario.toml"], "file not found"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], needle: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_toml_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [unclosed\n")
    proc = run_cli("run", str(bad))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "TOML" in proc.stderr


def test_unknown_section_field_lists_allowed(tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text('[[campus]]\nbus = "18"\ncapacity_mw = 1.0\n[simulation]\nhourz = 2\n')
    proc = run_cli("run", str(bad))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "simulation.hourz" in line and "hours" in line and "step_s" in line
