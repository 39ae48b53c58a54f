"""`python run_cosim.py feeder ...`: JSON contract of DESIGN.md §5 and bad input → exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = {"buses", "nodes", "total_load_kw", "losses_kw", "losses_kvar", "v_min_pu", "v_min_bus",
        "v_max_pu", "converged", "bus_voltages_pu"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_cosim.py"), "feeder", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_feeder_json_summary_of_ieee33():
    proc = _cli("ieee33", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == KEYS
    # Baran & Wu (1989): 202.67 kW, Vmin 0.9131 pu at bus 18
    assert out["buses"] == 33 and out["nodes"] == 99 and out["converged"] is True
    assert out["losses_kw"] == pytest.approx(202.67, rel=0.005)
    assert out["v_min_bus"] == "18" and out["v_min_pu"] == pytest.approx(0.9131, abs=1e-4)
    assert out["total_load_kw"] == pytest.approx(3715.0, rel=1e-6)
    assert set(out["bus_voltages_pu"]) == {str(i) for i in range(1, 34)}


def test_feeder_json_scaled_and_from_a_file(tmp_path):
    proc = _cli("ieee33", "--scale", "330", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["total_load_kw"] == pytest.approx(3715.0 * 330, rel=1e-6)
    assert out["v_min_pu"] == pytest.approx(0.9131, abs=1e-4)
    master = tmp_path / "two bus.dss"  # a space in the path
    master.write_text(
        "clear\nnew circuit.tiny basekv=12.47 bus1=src pu=1.0 r1=0 x1=0.0001\n"
        "new line.l1 bus1=src bus2=b phases=3 r1=1 x1=2 r0=1 x0=2 c1=0 c0=0 length=1\n"
        "new load.a bus1=b phases=3 kv=12.47 kw=1000 kvar=0 model=1\n"
        "set voltagebases=[12.47]\ncalcvoltagebases\n")
    proc = _cli(str(master), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["buses"] == 2 and out["v_min_bus"] == "b"


def _bad_args(case: str, tmp_path: Path) -> list[str]:
    (tmp_path / "empty.dss").write_text("! only a comment\n\n")
    (tmp_path / "bad.dss").write_text("new circuit.x\nnew line.a bus1=1 bus2=2 colour=blue\n")
    (tmp_path / "junk.dss").write_text("this is not opendss\n")
    return {
        "missing": [str(tmp_path / "nope.dss")],
        "empty": [str(tmp_path / "empty.dss")],
        "rejected": [str(tmp_path / "bad.dss")],
        "junk": [str(tmp_path / "junk.dss")],
        "unknown": ["ieee9999"],
        "scale0": ["ieee33", "--scale", "0"],
        "scale_neg": ["ieee33", "--scale=-2"],
        "directory": [str(tmp_path)],
    }[case]


def _check_one_line(case: str, code: int, stdout: str, stderr: str) -> None:
    assert code == 2, (stdout, stderr)
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    if case in ("missing", "unknown", "directory"):
        assert "allowed: ieee33, ieee69" in lines[0]
    if case in ("scale0", "scale_neg"):
        assert "--scale" in lines[0]


@pytest.mark.parametrize("case", ["missing", "empty", "rejected", "unknown", "scale0"])
def test_bad_input_exits_2_with_one_line(case, tmp_path):
    """The five cases of the issue, each through a real `python run_cosim.py` process."""
    proc = _cli(*_bad_args(case, tmp_path), "--json")
    _check_one_line(case, proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("case", ["junk", "scale_neg", "directory", "missing", "rejected"])
def test_bad_input_in_process(case, tmp_path, capsys):
    """More cases through run_cosim.main in this process (same code path, no start-up cost)."""
    sys.path.insert(0, str(REPO))
    try:
        import run_cosim
    finally:
        sys.path.remove(str(REPO))
    code = run_cosim.main(["feeder", *_bad_args(case, tmp_path), "--json"])
    out = capsys.readouterr()
    _check_one_line(case, code, out.out, out.err)
