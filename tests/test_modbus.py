"""The Modbus/TCP gateway: register map, encoding, and a run driven by a real client.

Real pymodbus server and client on 127.0.0.1. References: IEEE 754 by hand, the run's own
time series (what the registers mirror), and the device physics (what a set-point may do).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controllers.modbus import ModbusGateway, float_to_words, register_map, words_to_float
from scenarios.config import DEFAULT_SCENARIO

REPO = Path(__file__).resolve().parents[1]


def test_float32_in_two_registers_high_word_first():
    # IEEE 754 single: 1.0 = 0x3F800000, -2.5 = 0xC0200000, 3.5 = 0x40600000
    assert float_to_words(1.0) == (0x3F80, 0x0000)
    assert float_to_words(-2.5) == (0xC020, 0x0000)
    assert words_to_float(0x4060, 0x0000) == 3.5
    assert math.isnan(words_to_float(*float_to_words(math.nan)))


def test_the_map_names_time_series_columns_at_consecutive_float_addresses():
    regs = register_map(["campus1"], ["bess_18", "dr_18"])
    assert [r.address for r in regs] == list(range(0, 2 * len(regs), 2))
    names = [r.name for r in regs]
    assert names[0] == "time_s" and len(set(names)) == len(names)
    assert {r.name for r in regs if r.access == "rw"} == {
        "fcm.bess_18.p_set_mw", "fcm.bess_18.q_set_mvar", "fcm.dr_18.p_set_mw", "fcm.dr_18.q_set_mvar"}
    assert {"dc.campus1.p_mw", "sub.p_mw", "sub.p_sched_mw", "pf.converged", "fcm.dr_18.soc"} <= set(names)


def test_modbus_map_command_prints_the_map_of_the_scenario():
    out = subprocess.run([sys.executable, "run_cosim.py", "modbus-map", str(DEFAULT_SCENARIO)],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["unit_id"] == 1
    assert data["registers"][1] == {"name": "fcm.bess_18.p_set_mw", "address": 2,
                                    "type": "float32", "access": "rw"}
    assert all(r["type"] == "float32" for r in data["registers"])


@pytest.fixture
def client_of():
    from pymodbus.client import ModbusTcpClient

    made = []

    def connect(address: str) -> ModbusTcpClient:
        host, port = address.rsplit(":", 1)
        c = ModbusTcpClient(host, port=int(port))
        assert c.connect()
        made.append(c)
        return c

    yield connect
    for c in made:
        c.close()


def test_writes_are_checked_and_counted_and_reads_see_what_was_published(client_of):
    regs = register_map(["c"], ["bess_1"])
    at = {r.name: r.address for r in regs}
    gw = ModbusGateway(regs, "127.0.0.1:0", ratings={"bess_1": 0.5}, writable=True)
    c = client_of(gw.start())
    try:
        gw.publish({"sub.p_mw": 2.25, "pf.converged": True, "time_s": 120})
        r = c.read_holding_registers(at["sub.p_mw"], count=2, device_id=1)
        assert words_to_float(*r.registers) == 2.25
        r = c.read_holding_registers(at["pf.converged"], count=2, device_id=1)
        assert words_to_float(*r.registers) == 1.0
        assert not c.write_registers(at["fcm.bess_1.p_set_mw"], list(float_to_words(0.25)), device_id=1).isError()
        assert c.write_registers(at["sub.p_mw"], list(float_to_words(1.0)), device_id=1).exception_code == 2
        assert c.write_registers(at["fcm.bess_1.p_set_mw"] + 1, list(float_to_words(1.0)),
                                 device_id=1).exception_code == 3  # half a float
        assert not c.write_registers(at["fcm.bess_1.q_set_mvar"], list(float_to_words(math.inf)),
                                     device_id=1).isError()
        assert c.write_register(at["fcm.bess_1.p_set_mw"], 0x3F80,
                                device_id=1).exception_code == 3  # one register: half a float
        assert c.write_coils(at["fcm.bess_1.p_set_mw"], [True] * 20,
                             device_id=1).exception_code == 1  # not a register request
        gw.publish({"fcm.bess_1.p_set_mw": -0.4})  # a writable set-point is not overwritten
        assert gw.setpoints()["fcm.bess_1.p_set_mw"] == 0.25
        assert gw.stats() == {"modbus_writes": 2, "modbus_writes_rejected": 4,
                              "modbus_writes_out_of_range": 1}
    finally:
        gw.stop()


def test_an_external_controller_drives_the_plant_through_modbus(tmp_path, client_of):
    regs = {r["name"]: r["address"] for r in json.loads(subprocess.run(
        [sys.executable, "run_cosim.py", "modbus-map", str(DEFAULT_SCENARIO)], cwd=REPO,
        capture_output=True, text=True, check=True).stdout)["registers"]}
    out = tmp_path / "run"
    run = subprocess.Popen(
        [sys.executable, "run_cosim.py", "run", str(DEFAULT_SCENARIO), "--hours", "0.15",
         "--realtime", "0.02", "--controller", "external", "--modbus", "127.0.0.1:0",
         "--out", str(out), "--no-progress"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = run.stdout.readline()
        c = client_of(re.search(r"on (127\.0\.0\.1:\d+)", line).group(1))

        def read(name: str) -> float:
            r = c.read_holding_registers(regs[name], count=2, device_id=1)
            return words_to_float(*r.registers)

        def write(name: str, x: float) -> None:
            assert not c.write_registers(regs[name], list(float_to_words(x)), device_id=1).isError()

        def step_done(t: float) -> float:  # wait until the step at t is published
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                seen = read("time_s")
                if not math.isnan(seen) and seen >= t:
                    return seen
                time.sleep(0.02)
            raise AssertionError(f"no step at {t} s published")

        t = step_done(0.0)
        write("fcm.bess_18.p_set_mw", 0.3)
        t = step_done(t + 120.0)
        write("fcm.bess_18.p_set_mw", -0.2)
        write("fcm.gen_33.p_set_mw", math.nan)  # no request: the device takes 0
        t = step_done(t + 120.0)
        write("fcm.bess_18.p_set_mw", 99.0)  # beyond the 0.5-MW rating: clipped, counted
        seen_t = step_done(t + 60.0)
        seen = {n: read(n) for n in ("sub.p_mw", "fcm.bess_18.p_mw", "dc.campus1.p_mw")}
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    ts = pd.read_parquet(out / "timeseries.parquet")
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["modbus_writes"] == 4 and kpis["modbus_writes_out_of_range"] == 2
    assert kpis["controller_solves"] == 0
    # the registers mirrored the recorded step, to float32 precision
    for name, value in seen.items():
        assert value == pytest.approx(float(ts.loc[int(seen_t), name]), rel=1e-6, abs=1e-6)
    # the last value written holds; the plant follows it within its physics
    sets = ts["fcm.bess_18.p_set_mw"].to_numpy()
    assert sets[0] == 0.0 and list(pd.unique(sets)) == pytest.approx([0.0, 0.3, -0.2, 99.0])
    for p_set, p in zip(sets, ts["fcm.bess_18.p_mw"]):
        assert p == pytest.approx(min(p_set, 0.5), abs=1e-9)
    # NaN is "no request": the plant takes (and records) 0
    assert (ts["fcm.gen_33.p_set_mw"] == 0.0).all() and (ts["fcm.gen_33.p_mw"] == 0.0).all()


def test_without_external_control_the_set_points_only_mirror(client_of):
    regs = register_map([], ["bess_1"])
    at = {r.name: r.address for r in regs}
    gw = ModbusGateway(regs, "127.0.0.1:0", ratings={"bess_1": 0.5}, writable=False)
    c = client_of(gw.start())
    try:
        gw.publish({"fcm.bess_1.p_set_mw": -0.4})  # the controller in the loop's set-point
        r = c.read_holding_registers(at["fcm.bess_1.p_set_mw"], count=2, device_id=1)
        assert words_to_float(*r.registers) == pytest.approx(-0.4)
        assert c.write_registers(at["fcm.bess_1.p_set_mw"], list(float_to_words(0.1)),
                                 device_id=1).exception_code == 2
        assert gw.setpoints() == {}
    finally:
        gw.stop()


@pytest.mark.parametrize("args, field", [
    (["--controller", "external"], "--controller"),  # external needs the gateway
    (["--modbus", "127.0.0.1:{busy}"], "--modbus"),  # a port already taken
])
def test_bad_modbus_options_exit_2_with_one_line(tmp_path, args, field):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.format(busy=busy.getsockname()[1]) for a in args]
        res = subprocess.run([sys.executable, "run_cosim.py", "run", str(DEFAULT_SCENARIO),
                              "--hours", "0.1", "--out", str(tmp_path / "r"), *args],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"command line: {field}" in lines[0]
    assert not (tmp_path / "r").exists()


def test_serving_modbus_does_not_change_the_run(tmp_path):
    # the gateway reads the same time-shifted outputs as the controller; mosaik keeps one
    # initial value per source attribute, so its initial data must be the controller's
    # (a NaN there once made the MPC's first step a no-measurement fallback)
    from scenarios.config import load_scenario
    from scenarios.runner import run_scenario
    from scenarios.timeseries_io import read_timeseries

    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(simulation={"hours": 0.1})
    seen: list[str] = []
    plain = run_scenario(sc, tmp_path / "plain", progress=False)
    served = run_scenario(sc, tmp_path / "served", progress=False, modbus_address="127.0.0.1:0",
                          on_modbus=seen.append)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", seen[0]) and not seen[0].endswith(":0")
    a = read_timeseries(tmp_path / "plain" / "timeseries.parquet")
    b = read_timeseries(tmp_path / "served" / "timeseries.parquet")
    assert a["ctrl.status"].iloc[0] == "optimal" and plain["controller_fallbacks"] == 0
    assert served["controller_fallbacks"] == 0 and served["modbus_writes"] == 0
    for col in a.columns:
        if col != "ctrl.solve_s":
            assert a[col].equals(b[col]), col


def test_modbus_set_points_land_at_the_right_bus_of_a_multi_voltage_feeder(tmp_path, shared_dir):
    # IEEE 123 (4.16 kV, a 0.48 kV island behind transformer XFM1, unbalanced): a client
    # writes P and Q to a BESS at bus 610 (0.48 kV) and P to a generator at bus 101; the plant
    # must deliver them, and a plain-OpenDSS replay of what was recorded must reproduce the
    # substation import (tests/_replay.py)
    import threading

    from pymodbus.client import ModbusTcpClient

    from scenarios.config import validate_scenario
    from scenarios.runner import run_scenario
    from scenarios.timeseries_io import read_timeseries
    from scenarios.world import modbus_registers, plan_world
    from tests._replay import replay_import

    master = shared_dir / "feeders" / "ieee123" / "IEEE123Master.dss"
    extra = ["set maxcontroliter=30"]
    sc = validate_scenario({
        "name": "ieee123_modbus", "seed": 7,
        "feeder": {"source": str(master), "extra_commands": extra},
        "simulation": {"hours": 5 * 60 / 3600, "step_s": 60},
        "grid": {"v_min_pu": 0.9, "v_max_pu": 1.1},
        "campus": [{"name": "campus66", "bus": "66", "capacity_mw": 0.5}],
        "fcm": {"placements": [{"kind": "bess", "bus": "610", "p_mw": 0.25, "e_mwh": 0.5},
                               {"kind": "gen", "bus": "101", "p_mw": 0.5}]},
        "controller": {"kind": "external"},
    }, "<ieee123_modbus>")
    regs = {r.name: r.address for r in modbus_registers(plan_world(sc))}
    served: list[str] = []
    ready = threading.Event()
    problems: list[BaseException] = []

    def client() -> None:
        try:
            ready.wait(60)
            host, port = served[0].rsplit(":", 1)
            c = ModbusTcpClient(host, port=int(port))
            assert c.connect()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait for the first published step
                r = c.read_holding_registers(regs["time_s"], count=2, device_id=1)
                if not math.isnan(words_to_float(*r.registers)):
                    break
                time.sleep(0.02)
            for name, x in (("fcm.bess_610.p_set_mw", -0.2), ("fcm.bess_610.q_set_mvar", 0.1),
                            ("fcm.gen_101.p_set_mw", 0.3)):
                assert not c.write_registers(regs[name], list(float_to_words(x)), device_id=1).isError()
            c.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    out = tmp_path / "run"
    kpis = run_scenario(sc, out, progress=False, realtime=0.03, modbus_address="127.0.0.1:0",
                        on_modbus=lambda a: (served.append(a), ready.set()))
    thread.join(30)
    assert not problems, problems
    ts = read_timeseries(out / "timeseries.parquet")
    assert kpis["modbus_writes"] == 3 and kpis["pf_invariant_violations"] == 0
    assert ts["pf.converged"].all()
    written = ts["fcm.bess_610.p_set_mw"].to_numpy() != 0.0
    assert written.any() and not written[0]
    # the plant follows (a 0.25-MVA inverter: Q room √(0.25² − 0.2²) = 0.15 ≥ 0.1)
    assert ts.loc[written, "fcm.bess_610.p_mw"].to_numpy() == pytest.approx(-0.2, abs=1e-6)  # float32
    assert ts.loc[written, "fcm.bess_610.q_mvar"].to_numpy() == pytest.approx(0.1, abs=1e-6)
    gen = ts.loc[written, "fcm.gen_101.p_mw"].to_numpy()  # a start ramps up (its physics)
    assert gen[-1] == pytest.approx(0.3, abs=1e-6) and (gen <= 0.3 + 1e-6).all() and gen[0] > 0
    replay = replay_import(master, extra, sc, ts)
    np.testing.assert_allclose(ts["sub.p_mw"].to_numpy(float), replay, rtol=1e-6)
