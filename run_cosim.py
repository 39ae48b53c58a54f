#!/usr/bin/env python
"""dcshock-cosim command line (DESIGN.md §5).

    python run_cosim.py                     # default scenario → results/ieee33_ai_shock/
    python run_cosim.py run SCENARIO [--out DIR] [--hours H] [--controller none|rule|mpc|external]
                                     [--seed N] [--siting FILE] [--realtime FACTOR]
                                     [--hil | --controller-address HOST:PORT]
                                     [--modbus HOST:PORT] [--no-progress]
    python run_cosim.py site SCENARIO [--out DIR] [--scenarios N]
                                      [--ambiguity none|l1|wasserstein] [--radius R]
                                      [--alpha A] [--beta B] [--no-progress]
    python run_cosim.py shocks SCENARIO --samples N [--seed S] --out FILE.parquet
    python run_cosim.py feeder NAME_OR_DSS_FILE [--scale K] --json
    python run_cosim.py ensemble SCENARIO [--seeds N | --seed-list 1,2,3]
                                          [--controllers none,rule,mpc] [--hours H] [--out DIR]
                                          [--scheduler ADDRESS] [--workers N] [--siting FILE]
    python run_cosim.py study SCENARIO [--out DIR] [--methods none,saa,l1:0.1,wasserstein:0.05]
                                       [--train-scenarios N] [--test-seeds M] [--hours H]
                                       [--controller mpc|rule] [--shift SECTION.FIELD=VALUE ...]
                                       [--scheduler ADDRESS] [--workers N]
                                       [--perfect-foresight] [--no-progress]
    python run_cosim.py controller SCENARIO --listen HOST:PORT [--siting FILE]
                                            [--controller mpc|rule]
    python run_cosim.py modbus-map SCENARIO [--siting FILE]

Exit codes: 0 success, 2 bad input (one line on stderr naming file, field and what is
allowed), 1 internal failure. This module only parses arguments and calls one function per
subcommand.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import sys
import threading
from typing import Any
from pathlib import Path

from models.errors import ControllerLost, ScenarioError
from models.network import SCALE_RANGE
from models.schema import SEED_MAX, split_address

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout left


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad options as one ScenarioError line (exit 2, no usage dump),
    in the form of every command-line error: ``command line: --option: what is wrong``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if m := re.fullmatch(r"argument (\S+): (.*)", message, re.S):
            names = m.group(1).split("/")
            raise ScenarioError("command line", next((n for n in names if n.startswith("--")),
                                                     names[0]), m.group(2))
        if m := re.fullmatch(r"the following arguments are required: (.*)", message, re.S):
            raise ScenarioError("command line", m.group(1), "required; see "
                                f"`{self.prog} --help`")
        if m := re.fullmatch(r"unrecognized arguments: (.*)", message, re.S):
            raise ScenarioError("command line", m.group(1), "unknown option or extra argument; "
                                "allowed: the options of `run_cosim.py COMMAND --help`")
        raise ScenarioError("command line", self.prog.split()[-1], message)


def _number(kind: type, lo: float = -math.inf, hi: float = math.inf, above: bool = False):
    """Parser of a finite number of ``kind`` in [lo, hi] (``above``: lo itself excluded):
    ``--hours inf`` or ``--samples 10**12`` would drive a loop without end."""
    what = "an integer" if kind is int else "a number"
    if hi == math.inf:
        allowed = f"a finite number {'>' if above else '>='} {lo:g}"
    else:
        allowed = f"in {'(' if above else '['}{lo:g}, {hi:g}]"

    def parse(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or not lo <= value <= hi or (above and value == lo):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    return parse


def _positive(kind: type, most: float = math.inf):
    """A finite number > 0, at most ``most``."""
    return _number(kind, 0, most, above=True)


_seed = _number(int, 0, SEED_MAX)  # as the scenario's ``seed`` takes it
_unit_interval = _number(float, 0.0, 1.0)
_non_negative = _number(float, 0.0)


def _seed_list(text: str) -> list[int]:
    try:
        return [_seed(x) for x in text.split(",") if x.strip()]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected seeds separated by commas, e.g. 1,2,3; "
                                         f"{exc}") from None


def _address(text: str) -> str:
    """``HOST:PORT`` with a port in 0..65535 (0: any free port, for ``--listen``)."""
    try:
        host, port = split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{host}:{port}"


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_cosim.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run a co-simulation scenario")
    run.add_argument("scenario", type=Path)
    run.add_argument("--out", type=Path, help="output folder (default results/<scenario name>)")
    run.add_argument("--hours", type=_positive(float), help="simulate only the first H hours")
    run.add_argument("--controller", choices=["none", "rule", "mpc", "external"],
                     help="external: FCM set-points only from Modbus writes (needs --modbus)")
    run.add_argument("--seed", type=_seed)
    run.add_argument("--siting", type=Path, help="siting.json from `site` to instantiate FCMs")
    run.add_argument("--realtime", type=_positive(float),
                     help="pace the run at FACTOR × wall clock (HIL); default as fast as possible")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--modbus", type=_address, metavar="HOST:PORT",
                     help="serve the measurements and set-points over Modbus/TCP (docs/hil.md)")
    remote = run.add_mutually_exclusive_group()
    remote.add_argument("--hil", action="store_true",
                        help="run the controller as a separate process reached over TCP (HIL mode)")
    remote.add_argument("--controller-address", type=_address, metavar="HOST:PORT",
                        help="use the controller started with `run_cosim.py controller ... "
                             "--listen HOST:PORT` (docs/hil.md)")

    site = sub.add_parser("site", help="Stage-I DRO-CVaR siting and sizing of FCMs")
    site.add_argument("scenario", type=Path)
    site.add_argument("--out", type=Path)
    site.add_argument("--scenarios", type=_positive(int))
    site.add_argument("--ambiguity", choices=["none", "l1", "wasserstein"])
    site.add_argument("--radius", type=_non_negative)
    site.add_argument("--alpha", type=_unit_interval)
    site.add_argument("--beta", type=_unit_interval)
    site.add_argument("--method", choices=["auto", "extensive", "benders"])
    site.add_argument("--seed", type=_seed)
    site.add_argument("--no-progress", action="store_true", help="no progress bar")

    shocks = sub.add_parser("shocks", help="sample demand-shock scenarios to Parquet")
    shocks.add_argument("scenario", type=Path)
    shocks.add_argument("--samples", type=_positive(int, 100_000), required=True)
    shocks.add_argument("--seed", type=_seed)
    shocks.add_argument("--out", type=Path, required=True)

    feeder = sub.add_parser("feeder", help="snapshot power flow of a feeder")
    feeder.add_argument("source", help="built-in name (ieee33, ieee69) or an OpenDSS master file")
    feeder.add_argument("--scale", type=_number(float, *SCALE_RANGE), default=1.0)
    feeder.add_argument("--json", action="store_true", help="print the JSON summary")

    ens = sub.add_parser("ensemble", help="run many seeds x controllers on Dask")
    ens.add_argument("scenario", type=Path)
    seeds = ens.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_positive(int, 10_000),
                       help="number of member seeds spawned from the scenario seed (default 4)")
    seeds.add_argument("--seed-list", type=_seed_list, help="explicit member seeds, e.g. 1,2,3")
    ens.add_argument("--controllers", type=_name_list, default=["none", "rule", "mpc"],
                     help="comma-separated controllers (default none,rule,mpc)")
    ens.add_argument("--hours", type=_positive(float), help="simulate only the first H hours")
    ens.add_argument("--out", type=Path, help="ensemble folder (default results/<name>_ensemble)")
    ens.add_argument("--scheduler", help="address of a running Dask scheduler (default: a "
                     "LocalCluster)")
    ens.add_argument("--workers", type=_positive(int, 64), default=2,
                     help="LocalCluster worker processes (default 2)")
    ens.add_argument("--siting", type=Path, help="siting.json from `site` to instantiate FCMs")
    ens.add_argument("--no-progress", action="store_true", help="no progress bar")

    st = sub.add_parser("study", help="train sitings per method, evaluate them out of sample "
                        "in the closed loop on Dask (docs/study.md)")
    st.add_argument("scenario", type=Path)
    st.add_argument("--out", type=Path, help="study folder (default results/<name>_study)")
    st.add_argument("--methods", default="none,saa,l1:0.1,wasserstein:0.05",
                    help="comma-separated: none, saa, l1:θ, wasserstein:θ (default "
                         "none,saa,l1:0.1,wasserstein:0.05)")
    st.add_argument("--train-scenarios", type=_positive(int, 10_000),
                    help="training draws N (default siting.scenarios)")
    st.add_argument("--test-seeds", type=_positive(int, 10_000), default=10,
                    help="test seeds M (default 10)")
    st.add_argument("--hours", type=_positive(float), help="hours of each evaluation run")
    st.add_argument("--controller", choices=["mpc", "rule"])
    st.add_argument("--shift", action="extend", nargs="+", metavar="SECTION.FIELD=VALUE",
                    help="evaluate under a shifted shock law, e.g. shocks.surge_rate_per_day=4")
    st.add_argument("--scheduler", help="address of a running Dask scheduler (default: a "
                    "LocalCluster)")
    st.add_argument("--workers", type=_positive(int, 64), default=2,
                    help="LocalCluster worker processes (default 2)")
    st.add_argument("--perfect-foresight", action="store_true",
                    help="add per (siting, seed) an MPC run that knows the realised campus "
                         "draw, and a run of the other controller (the bound)")
    st.add_argument("--no-progress", action="store_true", help="no progress bar")

    ctl = sub.add_parser("controller", help="run the controller as its own process that a run "
                         "reaches over TCP (docs/hil.md)")
    ctl.add_argument("scenario", type=Path)
    ctl.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT",
                     help="address to listen on (port 0: any free port, printed)")
    ctl.add_argument("--siting", type=Path, help="siting.json from `site`: the FCMs it dispatches")
    ctl.add_argument("--controller", choices=["mpc", "rule"])

    mmap = sub.add_parser("modbus-map", help="print the Modbus/TCP register map as JSON")
    mmap.add_argument("scenario", type=Path)
    mmap.add_argument("--siting", type=Path, help="siting.json from `site`: its FCMs")
    return parser


def cmd_feeder(args: argparse.Namespace) -> int:
    from models.feeder import feeder_summary

    summary = feeder_summary(args.source, scale=args.scale)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        def num(key: str, fmt: str) -> str:
            value = summary.get(key)
            return "n/a" if value is None else format(value, fmt)

        print(
            f"{args.source}: {summary['buses']} buses, load {num('total_load_kw', '.1f')} kW, "
            f"losses {num('losses_kw', '.2f')} kW, Vmin {num('v_min_pu', '.4f')} pu at bus "
            f"{summary.get('v_min_bus')}, converged={summary['converged']}"
        )
    return EXIT_OK


def cmd_shocks(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario, sampling_problem
    from scenarios.runner import check_out_file

    scenario = _override(load_scenario(args.scenario), "--seed", seed=args.seed)
    seed = scenario.seed
    check_out_file(args.out, suffix=".parquet")
    sim = scenario.simulation
    if (msg := sampling_problem(scenario, args.samples, sim.hours, sim.step_s)):
        raise ScenarioError("command line", "--samples", msg)
    from models.shocks import generate_shocks

    frame = generate_shocks(scenario, samples=args.samples, seed=seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".parquet.partial")
    frame.to_parquet(tmp)
    tmp.replace(args.out)
    print(f"wrote {len(frame)} rows ({args.samples} samples, seed {seed}) to {args.out}")
    return EXIT_OK


def cmd_site(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario

    scenario = load_scenario(args.scenario)  # validate before importing the solver stack
    from controllers.stage1 import site_command

    from scenarios.runner import check_out_dir

    for option in ("scenarios", "ambiguity", "radius", "alpha", "beta", "method"):
        scenario = _override(scenario, f"--{option}", siting={option: getattr(args, option)})
    scenario = _override(scenario, "--seed", seed=args.seed)
    out = check_out_dir(args.out or Path("results") / scenario.name, replaces=False)
    path = site_command(scenario, out, progress=not args.no_progress)
    print(f"wrote {path}")
    return EXIT_OK


def _override(scenario: Any, option: str, **sections: Any) -> Any:
    """``scenario`` with a command-line value in place; a bad value is reported against the
    command line's ``option``, not the scenario file."""
    if all(v is None or (isinstance(v, dict) and all(x is None for x in v.values()))
           for v in sections.values()):
        return scenario
    try:
        return scenario.with_overrides(**sections)
    except ScenarioError as exc:
        raise ScenarioError("command line", option, exc.message) from None


def cmd_run(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario

    scenario = load_scenario(args.scenario)  # validate before importing the mosaik stack
    from scenarios.runner import run_scenario

    scenario = _override(scenario, "--hours", simulation={"hours": args.hours})
    if args.controller_address is not None and args.controller is not None:
        raise ScenarioError("command line", "--controller", "the controller at "
                            "--controller-address decides which controller runs; allowed: "
                            "one of --controller and --controller-address")
    scenario = _override(scenario, "--controller", controller={"kind": args.controller})
    scenario = _override(scenario, "--seed", seed=args.seed)
    out = args.out or Path("results") / scenario.name
    kpis = run_scenario(
        scenario, out, siting_file=args.siting, realtime=args.realtime,
        progress=not args.no_progress, hil=args.hil, controller_address=args.controller_address,
        modbus_address=args.modbus,
        on_modbus=lambda a: print(f"Modbus/TCP gateway on {a} (unit 1; `run_cosim.py modbus-map` "
                                  "gives the registers)", flush=True),
    )
    keys = ("unserved_energy_mwh", "imbalance_mwh", "ramp_violation_mwh",
            "voltage_violation_bus_steps", "v_min_pu", "pf_nonconverged_steps", "wall_s")
    print(f"wrote {out}/ (timeseries.parquet, kpis.json, manifest.json, report.html)")
    print("  " + ", ".join(f"{k}={kpis[k]:.4g}" for k in keys if k in kpis))
    return EXIT_OK


def cmd_ensemble(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario

    scenario = load_scenario(args.scenario)  # validate before importing Dask and mosaik
    from scenarios.ensemble import HEADLINE_KPIS, run_ensemble, summarize

    from scenarios.runner import check_out_dir

    scenario = _override(scenario, "--hours", simulation={"hours": args.hours})
    seeds = args.seed_list if args.seed_list is not None else (args.seeds or 4)
    out = check_out_dir(args.out or Path("results") / f"{scenario.name}_ensemble")
    frame = run_ensemble(
        scenario, seeds, args.controllers, out, hours=args.hours, siting_file=args.siting,
        scheduler=args.scheduler, n_workers=args.workers, progress=not args.no_progress,
    )
    failed = int((frame["status"] != "ok").sum())
    print(f"wrote {out}/ (ensemble_kpis.parquet, ensemble_kpis.csv, ensemble_summary.csv, "
          f"one folder per member)")
    print(f"  {len(frame)} members, {failed} failed")
    for _, row in frame[frame["status"] != "ok"].iterrows():
        print(f"  {row['folder']}: {row['status']}")
    summary = summarize(frame)
    rows = [(c, k) for c in dict.fromkeys(frame["controller"]) for k in HEADLINE_KPIS
            if (c, k) in summary.index]
    if rows:
        print(summary.loc[rows].to_string(float_format=lambda x: f"{x:.4g}"))
    return EXIT_OK if failed < len(frame) else EXIT_INTERNAL


def cmd_study(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario

    scenario = load_scenario(args.scenario)  # validate before importing Dask and mosaik
    from scenarios.study import run_study

    out = args.out or Path("results") / f"{scenario.name}_study"
    result = run_study(
        scenario, out, methods=args.methods, train_scenarios=args.train_scenarios,
        test_seeds=args.test_seeds, hours=args.hours, controller=args.controller,
        shift=args.shift, perfect_foresight=args.perfect_foresight, scheduler=args.scheduler,
        n_workers=args.workers, progress=not args.no_progress,
    )
    print(f"wrote {out}/ (study.json, evaluation.parquet, report.html, sitings/, members/)")
    print(f"  {result['members']} members, {result['failed']} failed")
    for m in result["methods"]:
        c = m["out_of_sample"]["cost"]
        print(f"  {m['name']:>18}: capex {m['capex']:,.0f}, cost mean {c['mean']:.4g} "
              f"[{c['ci95'][0]:.4g}, {c['ci95'][1]:.4g}], CVaR {c['cvar']:.4g} (n={c['n']})")
    evaluated = sum(m["members"] - m["failed"] for m in result["methods"])
    return EXIT_OK if evaluated > 0 else EXIT_INTERNAL


def cmd_controller(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario

    scenario = load_scenario(args.scenario)
    scenario = _override(scenario, "--controller", controller={"kind": args.controller})
    from scenarios.hil import serve_controller

    def listening(address: str) -> None:
        print(f"controller ({scenario.controller.kind}) listening on {address}; "
              "Ctrl-C to stop", flush=True)

    serve_controller(scenario, args.listen, siting_file=args.siting, on_listening=listening)
    return EXIT_OK


def cmd_modbus_map(args: argparse.Namespace) -> int:
    from scenarios.config import load_scenario

    scenario = load_scenario(args.scenario)
    from controllers.modbus import map_json
    from scenarios.world import modbus_registers, plan_world

    print(json.dumps(map_json(modbus_registers(plan_world(scenario, args.siting))), indent=2))
    return EXIT_OK


COMMANDS = {"run": cmd_run, "site": cmd_site, "shocks": cmd_shocks, "feeder": cmd_feeder,
            "ensemble": cmd_ensemble, "study": cmd_study, "controller": cmd_controller,
            "modbus-map": cmd_modbus_map}


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C: raise KeyboardInterrupt as Python does, and tell the solver layer, whose
    HiGHS runs catch the interrupt themselves (controllers.solve.raise_if_interrupted)."""
    solve = sys.modules.get("controllers.solve")
    if solve is not None:
        solve.note_interrupt()
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:  # the no-argument default: the main job
            from scenarios.config import DEFAULT_SCENARIO

            args = build_parser().parse_args(["run", str(DEFAULT_SCENARIO)])
            args.out = Path("results") / DEFAULT_SCENARIO.stem
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        # Pyomo logs an ERROR for a component whose construction Ctrl-C interrupted; the
        # interrupt gets its own one line below
        logging.getLogger("pyomo.core").addFilter(
            lambda record: "KeyboardInterrupt" not in record.getMessage())
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that left shows here, not at exit
        return code
    except BrokenPipeError:  # `... | head -1`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ScenarioError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ControllerLost as exc:  # an absent, dying or silent controller process
        kept = (f"; the rows simulated so far are kept in {exc.folder} (docs/results.md)"
                if exc.folder else "; no step was simulated")
        print(f"error: {exc}{kept}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, the rows simulated so far are kept
        folder = getattr(exc, "folder", None)
        kept = f"; the rows simulated so far are kept in {folder} (docs/results.md)" if folder else ""
        print(f"interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:  # a caller that goes on (a test, a notebook) gets its Ctrl-C back
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        solve = sys.modules.get("controllers.solve")
        if solve is not None:
            solve.clear_interrupt()


if __name__ == "__main__":
    sys.exit(main())
