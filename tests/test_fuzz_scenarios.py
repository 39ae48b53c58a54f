"""Property-based hardening (issue 14): scenario files generated from the schema.

Every numeric field of the schema is found with its bounds; it is given values out of its
range, at its bounds, non-finite, huge but finite, booleans, strings and other types. A
file must either fail with one ScenarioError line naming the file (exit 2 in the CLI,
tests/test_cli_hardening.py) or give a valid plan: finite numbers within the documented
limits, and a plan (feeder, day-ahead schedule, base case, the controller's schedule over
its horizon) that finishes in bounded time and memory. Validation and planning only, no
co-simulation; derandomized, so every run draws the same examples.
"""

from __future__ import annotations

import copy
import math
import signal
import tracemalloc
import typing
from typing import Any

import numpy as np
import pytest
from annotated_types import Ge, Gt, Le, Lt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from controllers.schedule import SubstationSchedule
from models.errors import ScenarioError
from models.fcm import TECHNOLOGIES
from models.feeder import INJECTION_VMIN_PU
from models.schema import NUMBER_CEILING, _numeric
from models.shocks import sample_campus_trajectories
from scenarios.config import DEFAULT_SCENARIO, Scenario, load_scenario, validate_scenario

BASE = load_scenario(DEFAULT_SCENARIO).model_dump(mode="json")
SOURCE = "fuzz.toml"


def _model_in(annotation: Any, data: Any) -> type[BaseModel] | None:
    """The model a value of ``annotation`` validates as (a catalog entry: by its technology)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(data, dict) and data.get("technology") in TECHNOLOGIES:
        return TECHNOLOGIES[data["technology"]].catalog_type
    for arg in typing.get_args(annotation):
        if (found := _model_in(arg, data)) is not None:
            return found
    return None


def _fields(model: type[BaseModel], data: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """``(path, FieldInfo)`` of every field in ``data`` (a dumped scenario), walking the
    schema beside it; list items and dict values (catalog entries) are walked too."""
    out = []
    for name, value in data.items():
        info = model.model_fields.get(name)
        if info is None:
            continue
        out.append((path + (name,), info))
        items = (enumerate(value) if isinstance(value, list)
                 else value.items() if isinstance(value, dict) else [])
        for key, item in ([(None, value)] if isinstance(value, dict) and _model_in(info.annotation, None)
                          else items):
            sub = _model_in(info.annotation, item)
            if sub is not None and isinstance(item, dict):
                out += _fields(sub, item, path + (name,) + (() if key is None else (key,)))
    return out


FIELDS = _fields(Scenario, BASE)
NUMERIC = [(p, info) for p, info in FIELDS if _numeric(info.annotation)]
OTHER = [p for p, info in FIELDS if not _numeric(info.annotation)]


def _bounds(info: Any) -> tuple[float, float]:
    lo, hi = -NUMBER_CEILING, NUMBER_CEILING
    for m in info.metadata:
        if isinstance(m, (Ge, Gt)):
            lo = float(getattr(m, "ge", getattr(m, "gt", lo)))
        if isinstance(m, (Le, Lt)):
            hi = float(getattr(m, "le", getattr(m, "lt", hi)))
    return lo, hi


def _is_int(info: Any) -> bool:
    return info.annotation is int


def _shaped(value: Any, current: Any) -> Any:
    """``value`` in the shape of the field's current value (both ends of a [low, high] pair,
    every point of a curve)."""
    if isinstance(current, list) and current and isinstance(current[0], list):
        return [[value, value] for _ in current]
    if isinstance(current, list):
        return [value, value]
    return value


def _edges(info: Any) -> list[Any]:
    """Values at and just beyond the field's documented bounds, and far beyond them."""
    lo, hi = _bounds(info)
    out = [lo, hi, hi * (1 + 1e-9) + 1e-9, lo - abs(lo) * 1e-9 - 1e-9, hi * 10, -hi * 10]
    return [int(v) if _is_int(info) and float(v).is_integer() else v for v in out]


HUGE = [1e308, -1e308, 1e300, 1e13, NUMBER_CEILING * 1.5]
NON_FINITE = [math.inf, -math.inf, math.nan]
WRONG_TYPE = [True, False, "1", "24", "x", "", None, [], {}, {"unknown": 1}, 0.5, -1, 0]


def _get(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: dict, path: tuple, value: Any) -> dict:
    tree = copy.deepcopy(tree)
    _get(tree, path[:-1])[path[-1]] = value
    return tree


@st.composite
def numeric_change(draw):
    path, info = draw(st.sampled_from(NUMERIC))
    value = draw(st.one_of(st.sampled_from(_edges(info) + HUGE + NON_FINITE + WRONG_TYPE),
                           st.floats(allow_nan=True, allow_infinity=True),
                           st.integers(min_value=-(2**70), max_value=2**70)))
    return path, _shaped(value, _get(BASE, path)) if not isinstance(value, (list, dict)) else value


def _numbers(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _numbers(v)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def _check_outcome(data: dict, changed: list[tuple[tuple, Any]]) -> Scenario | None:
    """One line naming the file and a field, or a scenario whose numbers are all finite
    and within the limits, and where no boolean or string stood for a number."""
    try:
        sc = validate_scenario(data, SOURCE)
    except ScenarioError as exc:
        line = exc.one_line()
        assert "\n" not in line and line.startswith(f"{SOURCE}: ")
        assert exc.field, line  # a field is named
        return None
    assert isinstance(sc, Scenario)
    numbers = _numbers(sc.model_dump())
    assert all(math.isfinite(x) and abs(x) <= NUMBER_CEILING for x in numbers)
    for path, value in changed:
        if path in dict(NUMERIC):
            flat = _numbers(value) if isinstance(value, (list, dict)) else [value]
            assert not any(isinstance(v, (bool, str)) for v in
                           (value if isinstance(value, list) else [value])), (path, value)
            assert len(flat) > 0, (path, value)
    assert all(ch.isalnum() or ch in "_-" for ch in sc.name)
    return sc


@settings(max_examples=500, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(change=numeric_change())
def test_a_bad_number_anywhere_is_one_line_or_a_valid_scenario(change):
    path, value = change
    _check_outcome(_set(BASE, path, value), [change])


OTHER_BAD = st.sampled_from(["", "x", "../../x", "a/b", "camp.us", None, True, 1.5, -1, [],
                             {}, [1, 2, 3], {"unknown": 1}, [math.inf, 1.0], ["a", "b"]])


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(OTHER), value=OTHER_BAD)
def test_a_bad_name_list_or_section_is_one_line_or_a_valid_scenario(path, value):
    _check_outcome(_set(BASE, path, value), [])


@settings(max_examples=100, deadline=None, database=None, derandomize=True)
@given(section=st.sampled_from(sorted(k for k, v in BASE.items() if isinstance(v, dict))),
       field=st.text(min_size=1, max_size=12), value=OTHER_BAD)
def test_an_unknown_field_is_named_with_what_is_allowed(section, field, value):
    data = copy.deepcopy(BASE)
    if field in data[section]:
        return
    data[section][field] = value
    with pytest.raises(ScenarioError) as err:
        validate_scenario(data, SOURCE)
    assert "\n" not in err.value.one_line() and "unknown field" in err.value.message


# --- planning at the edges -------------------------------------------------------------

#: a plan must finish within this (s) and peak below this much traced memory (bytes)
PLAN_TIME_S, PLAN_MEMORY = 25, 1_000_000_000


def _edge(info: Any, upper: bool) -> Any:
    lo, hi = _bounds(info)
    return hi if upper else lo


@st.composite
def edge_changes(draw):
    """One to three fields, each at an end of its documented range."""
    picks = draw(st.lists(st.tuples(st.sampled_from(NUMERIC), st.booleans()), min_size=1,
                          max_size=3, unique_by=lambda x: x[0][0]))
    out = []
    for (path, info), upper in picks:
        v = _edge(info, upper)
        out.append((path, _shaped(int(v) if _is_int(info) else v, _get(BASE, path))))
    return out


class _Timeout(Exception):
    pass


def _plan_within_limits(sc: Scenario) -> None:
    from scenarios.world import plan_world

    def stop(*_):
        raise _Timeout(f"planning took more than {PLAN_TIME_S} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(PLAN_TIME_S)
    tracemalloc.start()
    try:
        try:
            plan = plan_world(sc)
        except ScenarioError as exc:  # e.g. a base case the feeder cannot carry
            assert "\n" not in exc.one_line() and exc.one_line().startswith(f"{SOURCE}: ")
            return
        ctrl = sc.controller  # what the controller evaluates every step, over its horizon
        horizon = SubstationSchedule.of(plan.schedule_mw, sc.grid.schedule_interval_s) \
            .over_horizon(0.0, ctrl.horizon_step_s, ctrl.horizon_steps)
        sit = sc.siting  # what `site` draws first: one shock sample at its own step
        sample = sample_campus_trajectories(sc, 1, sc.seed, sit.step_s, sit.horizon_hours)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert peak < PLAN_MEMORY, f"planning peaked at {peak / 1e9:.1f} GB"
    assert plan.steps == sc.simulation.steps >= 1
    assert np.all(np.isfinite(plan.schedule_mw)) and np.all(np.isfinite(horizon))
    assert np.all(np.isfinite(sample)) and sample.shape[2] == sit.steps
    assert all(math.isfinite(v) and v >= 0 for v in plan.campus_expected_mw.values())
    v = plan.initial_grid["bus_v_pu"].values()
    assert plan.initial_grid["converged"] and min(v) >= INJECTION_VMIN_PU


_AUDIT = {  # the corners that ran away in the audit of issue 14 (/tmp/audit14)
    "jobs_for_a_year": [(("campus", 0, "job_rate_per_h"), 100.0), (("simulation", "hours"), 8784.0),
                        (("campus", 0, "job_hours"), [0.001, 0.002])],
    "horizon": [(("controller", "horizon_steps"), 10**8)],
    "siting_step": [(("siting", "step_s"), 1e-9)],
    "scale": [(("feeder", "scale"), 1e300)],
    "background": [(("grid", "background_load_scale"), 1e300)],
    "hours_true": [(("simulation", "hours"), True)],
}


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(changes=edge_changes())
@example(changes=_AUDIT["jobs_for_a_year"])
@example(changes=_AUDIT["horizon"])
@example(changes=_AUDIT["siting_step"])
@example(changes=_AUDIT["scale"])
@example(changes=_AUDIT["background"])
@example(changes=_AUDIT["hours_true"])
def test_fields_at_their_limits_plan_in_bounded_time_and_memory(changes):
    data = BASE
    for path, value in changes:
        data = _set(data, path, value)
    sc = _check_outcome(data, changes)
    if sc is not None:
        _plan_within_limits(sc)
