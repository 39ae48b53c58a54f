"""A hardware-in-the-loop run as a lab runs it: the controller in its own process, the
co-simulation paced at real time, and its deadline statistics.

    python benchmarks/bench_hil.py [--minutes 10] [--realtime 1.0] [--scenario FILE]
                                   [--modbus]

Starts ``run_cosim.py controller SCENARIO --listen 127.0.0.1:0`` (a real process, as a user
starts it), then ``run_cosim.py run SCENARIO --hours H --realtime F --controller-address
ADDR`` for the given simulated minutes, and prints from its kpis.json: steps, real-time
deadline misses and the largest lag (``rt_deadline_misses``, ``rt_max_lag_s``), the MPC's
update-and-solve times (median, max) against its deadline and the misses
(``controller_deadline_misses``), the one-off model build, and the wall time against the
simulated time. ``--modbus`` also serves the Modbus/TCP gateway and reads every register
once a step from a pymodbus client, timing the reads. Prints only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _poll_modbus(address: str, n_registers: int, stop: threading.Event, out: list[float]) -> None:
    from pymodbus.client import ModbusTcpClient

    host, port = address.rsplit(":", 1)
    from pymodbus.exceptions import ModbusException

    client = ModbusTcpClient(host, port=int(port))
    client.connect()
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            client.read_holding_registers(0, count=min(2 * n_registers, 120), device_id=1)
            out.append(time.perf_counter() - t0)
            stop.wait(1.0)
    except ModbusException:  # the run ended and took its server with it
        pass
    finally:
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    ap.add_argument("--realtime", type=float, default=1.0, help="wall seconds per simulated second")
    ap.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "ieee33_ai_shock.toml")
    ap.add_argument("--modbus", action="store_true", help="also serve and poll Modbus/TCP")
    args = ap.parse_args()
    env = {**os.environ, "MPLBACKEND": "Agg"}
    ctl = subprocess.Popen([sys.executable, "run_cosim.py", "controller", str(args.scenario),
                            "--listen", "127.0.0.1:0"], cwd=REPO, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = ctl.stdout.readline()
        address = re.search(r"listening on (\S+?);", line).group(1)
        out = Path(tempfile.mkdtemp(prefix="bench_hil_")) / "run"
        cmd = [sys.executable, "run_cosim.py", "run", str(args.scenario), "--hours",
               f"{args.minutes / 60:.10g}", "--realtime", f"{args.realtime:g}",
               "--controller-address", address, "--out", str(out), "--no-progress"]
        if args.modbus:
            cmd += ["--modbus", "127.0.0.1:0"]
        t0 = time.perf_counter()
        run = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        reads: list[float] = []
        stop = threading.Event()
        poller = None
        if args.modbus:
            mb = re.search(r"gateway on (\S+)", run.stdout.readline()).group(1)
            poller = threading.Thread(target=_poll_modbus, args=(mb, 60, stop, reads))
            poller.start()
        _, err = run.communicate()
        wall = time.perf_counter() - t0
        stop.set()
        if poller is not None:
            poller.join()
        if run.returncode != 0:
            raise SystemExit(f"run failed ({run.returncode}): {err.strip()[-500:]}")
        k = json.loads((out / "kpis.json").read_text())
    finally:
        ctl.kill()
        ctl.wait()
    print(f"# HIL run: {args.scenario.name}, {args.minutes:g} simulated min at --realtime "
          f"{args.realtime:g}, controller at {address} (own process), "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"steps {k['steps']}, wall {wall:.1f} s for {args.minutes * 60 * args.realtime:.0f} s "
          f"of real-time schedule (incl. planning and writing the results)")
    print(f"rt_deadline_misses {k['rt_deadline_misses']}, rt_max_lag_s {k['rt_max_lag_s']:.3f}")
    print(f"MPC: {k['controller_solves']} re-solves, update+solve median "
          f"{k['controller_solve_s_median'] * 1e3:.0f} ms, max {k['controller_solve_s_max'] * 1e3:.0f} ms, "
          f"deadline {k['controller_deadline_s']:g} s, misses {k['controller_deadline_misses']}, "
          f"fallbacks {k['controller_fallbacks']}, model build {k.get('controller_build_s', math.nan):.2f} s")
    if reads:
        reads.sort()
        print(f"Modbus reads: {len(reads)}, median {reads[len(reads) // 2] * 1e3:.1f} ms, "
              f"max {reads[-1] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
