"""A controller in its own process (`run_cosim.py controller --listen`), reached over TCP.

Real processes on 127.0.0.1: the controller is started as a user starts it, the run is the
real CLI (or run_scenario in this process, as the World). Checked: the run equals the
in-process run; an absent, dying or silent controller ends the run within 30 s with exit 1
and one line naming its address, keeping the rows simulated; a controller whose FCMs are
not the run's refuses it (exit 2).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.runner import run_scenario
from scenarios.timeseries_io import read_timeseries

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run_cosim.py", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


class Controller:
    """``run_cosim.py controller SCENARIO --listen 127.0.0.1:0`` as a user starts it."""

    def __init__(self, *extra: str) -> None:
        self.proc = _cli("controller", str(DEFAULT_SCENARIO), "--listen", "127.0.0.1:0", *extra)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert match, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.address = match.group(1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def controller():
    c = Controller()
    yield c
    c.close()


def _run_args(out: Path, address: str, hours: str = "2", realtime: str = "0.005") -> list[str]:
    return ["run", str(DEFAULT_SCENARIO), "--hours", hours, "--realtime", realtime,
            "--controller-address", address, "--out", str(out), "--no-progress"]


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _partial(out: Path) -> Path:
    found = list(out.parent.glob(f".{out.name}.partial-*"))
    assert len(found) == 1, found
    return found[0]


def test_a_run_through_the_controller_process_equals_the_run_in_this_process(tmp_path, controller):
    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(simulation={"hours": 0.25})
    local = run_scenario(sc, tmp_path / "local", progress=False)
    remote = run_scenario(sc, tmp_path / "remote", progress=False,
                          controller_address=controller.address)
    a = read_timeseries(tmp_path / "local" / "timeseries.parquet")
    b = read_timeseries(tmp_path / "remote" / "timeseries.parquet")
    assert local["controller_solves"] == remote["controller_solves"] > 0
    for col in a.columns:
        if col == "ctrl.solve_s":
            continue  # wall time of each solve
        if a[col].dtype.kind in "fi":
            np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float),
                                       rtol=0, atol=1e-9, err_msg=col)
        else:
            assert list(a[col]) == list(b[col]), col


def test_an_absent_controller_ends_the_run_at_once_naming_its_address(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    run = _cli(*_run_args(tmp_path / "r", address))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and time.monotonic() - t0 < 30
    line = _one_line(err)
    assert address in line and "is not there" in line
    assert not list(tmp_path.iterdir())  # no step simulated, nothing left


@pytest.mark.parametrize("fault", ["dies", "silent"])
def test_a_controller_that_dies_or_goes_silent_ends_the_run_within_30_s(tmp_path, controller, fault):
    out = tmp_path / "r"
    run = _cli(*_run_args(out, controller.address))
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".r.partial-*/timeseries.parquet.parts")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)  # some steps into the run
    t_fault = time.monotonic()
    controller.proc.send_signal(signal.SIGKILL if fault == "dies" else signal.SIGSTOP)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and time.monotonic() - t_fault < 30
    line = _one_line(err)
    assert controller.address in line
    assert ("did not answer" in line) if fault == "silent" else ("closed the connection" in line)
    partial = _partial(out)
    assert str(partial) in line and not out.exists()
    rows = read_timeseries(partial / "timeseries.parquet")
    assert 0 < len(rows) < 120 and rows["ctrl.solved"].astype(bool).any()


def test_a_controller_for_other_fcms_refuses_the_run(tmp_path):
    siting = tmp_path / "siting.json"
    siting.write_text(json.dumps({
        "format": "dcshock-siting/1",
        "placements": [{"kind": "bess", "bus": "18", "p_mw": 0.25, "e_mwh": 0.5}],
        "feeder": {"source": "ieee33", "scale": 1.0, "buses": 33}}))
    ctl = Controller("--siting", str(siting))
    try:
        run = _cli(*_run_args(tmp_path / "r", ctl.address, hours="0.1", realtime="0.001"))
        _, err = run.communicate(timeout=60)
    finally:
        ctl.close()
    assert run.returncode == 2
    line = _one_line(err)
    assert "--controller-address" in line and "refused the run" in line and "dr_18" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [
    ["run", str(DEFAULT_SCENARIO), "--hours", "24", "--no-progress"],  # the MPC solving
    ["site", str(DEFAULT_SCENARIO), "--scenarios", "5", "--no-progress"],  # Stage I's LPs
])
def test_ctrl_c_during_a_solve_exits_130_with_one_line(tmp_path, command):
    # HiGHS catches Ctrl-C itself when APPSI runs it: the interrupt must still end the
    # command (not read as a solver error, a fallback or a failed Stage I)
    run = _cli(*command, "--out", str(tmp_path / "out"))
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.partial-*/timeseries.parquet.parts/*")) and \
            command[0] == "run" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(4.0)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert _one_line(err).startswith("interrupted")
    assert not (tmp_path / "out" / "kpis.json").exists() and not (tmp_path / "out" / "siting.json").exists()


def test_a_controller_started_by_mosaik_hil_that_is_killed_ends_the_run(tmp_path):
    import psutil

    out = tmp_path / "r"
    run = _cli("run", str(DEFAULT_SCENARIO), "--hours", "2", "--realtime", "0.005", "--hil",
               "--out", str(out), "--no-progress")
    deadline = time.monotonic() + 60
    kids: list = []
    while not kids and time.monotonic() < deadline:
        kids = [c for c in psutil.Process(run.pid).children(recursive=True)
                if "sim.controller_sim" in " ".join(c.cmdline())]
        time.sleep(0.2)
    while not list(tmp_path.glob(".r.partial-*/timeseries.parquet.parts")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    kids[0].kill()
    t_fault = time.monotonic()
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1 and time.monotonic() - t_fault < 30
    line = _one_line(err)  # also: no asyncio noise about the reset connection
    assert "killed by signal 9" in line and str(_partial(out)) in line
