"""Property-based hardening (issue 14): scenario files generated from the schema, with one
field replaced by an out-of-range, non-finite or wrongly typed value, must either validate
or fail with one ScenarioError line naming the file and the field; never another exception.
Validation only (no co-simulation), so it stays fast."""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import ScenarioError
from scenarios.config import DEFAULT_SCENARIO, Scenario, load_scenario, validate_scenario

BASE = load_scenario(DEFAULT_SCENARIO).model_dump(mode="json")


def _leaves(tree: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a scalar, a list or a dict in the scenario tree."""
    out = [path] if path else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _leaves(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _leaves(v, path + (i,))
    return out


PATHS = _leaves(BASE)

BAD = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -1e308, 0, -1, 0.0, 1e-300, 2**63,
                     "", "x", "../../x", "a/b", "camp.us", None, True, [], {}, [1, 2, 3],
                     {"unknown": 1}, [math.inf, 1.0], [[2.0, 1.0], [1.0, 2.0]]]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
)


def _set(tree: dict, path: tuple, value: Any) -> dict:
    tree = copy.deepcopy(tree)
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return tree


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=BAD)
def test_a_bad_value_anywhere_is_one_line_naming_the_file_or_a_valid_scenario(path, value):
    data = _set(BASE, path, value)
    try:
        sc = validate_scenario(data, "fuzz.toml")
    except ScenarioError as exc:
        line = exc.one_line()
        assert "\n" not in line and line.startswith("fuzz.toml")
        return
    assert isinstance(sc, Scenario)
    # what validates is usable: finite numbers only, names that are safe in paths
    numbers = [x for p in _leaves(sc.model_dump()) if isinstance(x := _get(sc.model_dump(), p), float)]
    assert all(math.isfinite(x) for x in numbers)
    assert all(ch.isalnum() or ch in "_-" for ch in sc.name)


def _get(tree: Any, path: tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree


@settings(max_examples=100, deadline=None, database=None)
@given(section=st.sampled_from(sorted(k for k, v in BASE.items() if isinstance(v, dict))),
       field=st.text(min_size=1, max_size=12), value=BAD)
def test_an_unknown_field_is_named_with_what_is_allowed(section, field, value):
    data = copy.deepcopy(BASE)
    if field in data[section]:
        return
    data[section][field] = value
    try:
        validate_scenario(data, "fuzz.toml")
    except ScenarioError as exc:
        assert "\n" not in exc.one_line()
        return
    raise AssertionError(f"{section}.{field} was accepted")
