"""A Pyomo model kept in one HiGHS instance and updated, started and read through highspy.

Pyomo writes the formulation; HiGHS solves it. Between the two, Pyomo's persistent APPSI
interface re-evaluates every coefficient and bound that holds a mutable parameter, one
Pyomo expression at a time, on every solve, and loads every variable's value back into the
model afterwards. For the rolling Stage-II MILP on the default day that was about 50 ms per
step next to a solve of the same order (BENCHMARKS.md, "Stage II in real time").
:class:`DirectHighs` keeps Pyomo for the formulation and for the one translation into HiGHS
(APPSI's ``set_instance``), then works on the HiGHS instance itself:

* **Parameters as one map.** Every bound, coefficient and cost that depends on mutable
  parameters is a polynomial in them in the models of this project: affine, or a product
  of two (a term's weight times a voltage group's member count in the objective of the
  reduced rows). At load time each is compiled (:func:`polynomial`) into a sparse row of
  ``A`` over the parameters ``π`` and its products of parameters, so that all of them are
  ``A π + c`` plus those products; :meth:`DirectHighs.push` gathers ``π``, evaluates the
  map once with numpy and sends HiGHS only the entries that changed (row bounds and costs
  in one call each). An expression that is not a polynomial (none in this project's
  models) is evaluated by Pyomo at each push.
* **Solutions as one array.** :meth:`DirectHighs.solve` keeps the column values as a numpy
  array ``x``; :meth:`DirectHighs.value` and :meth:`DirectHighs.load` read or load only
  the variables a caller asks for.
* **MIP starts from the caller**: some columns' values, which HiGHS completes by fixing the
  given integer columns and solving the LP.

The instance belongs to this object after the first load: the model's structure (its
variables, constraints and which parameters they hold) must not change afterwards, only
parameter values. Variable bounds must be constants.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.common.numeric_types import native_numeric_types
from pyomo.core.expr.numeric_expr import (
    DivisionExpression,
    NegationExpression,
    ProductExpression,
    SumExpression,
)
from pyomo.core.expr.visitor import identify_mutable_parameters

from controllers.solve import SolveOutcome, SolveStatus, highs, highs_status, raise_if_interrupted

logger = logging.getLogger(__name__)


class NotAffine(ValueError):
    """An expression that is not affine (or, for :func:`polynomial`, not a polynomial) in
    the mutable parameters."""


#: A term of a polynomial in the parameters: its coefficient and the ParamData objects
#: whose product it multiplies (one for an affine term, none for a constant).
Term = tuple[float, tuple[Any, ...]]


def polynomial(expr: Any) -> tuple[float, list[Term]]:
    """``expr`` (an expression without variables) as ``c + Σ_k a_k Π_{p ∈ P_k} p`` over its
    mutable parameters: returns ``(c, [(a_k, P_k), ...])`` with the ParamData objects
    (terms are not merged; the caller sums). Products of parameter-dependent parts are
    expanded (a weight times a group's member count, say). Raises :class:`NotAffine` for a
    quotient by a parameter-dependent part or another non-linear node that holds a
    mutable parameter."""
    if expr.__class__ in native_numeric_types:
        return float(expr), []
    if expr.is_parameter_type():
        if expr.is_constant():
            return float(pyo.value(expr)), []
        return 0.0, [(1.0, (expr,))]
    if expr.is_named_expression_type():
        return polynomial(expr.expr)
    if not expr.is_expression_type():  # a numeric constant object
        return float(pyo.value(expr)), []
    if isinstance(expr, SumExpression):
        const, terms = 0.0, []
        for arg in expr.args:
            c, t = polynomial(arg)
            const += c
            terms.extend(t)
        return const, terms
    if isinstance(expr, NegationExpression):
        c, t = polynomial(expr.args[0])
        return -c, [(-k, ps) for k, ps in t]
    if isinstance(expr, ProductExpression):
        (c1, t1), (c2, t2) = polynomial(expr.args[0]), polynomial(expr.args[1])
        terms = [(c1 * k, ps) for k, ps in t2] + [(c2 * k, ps) for k, ps in t1]
        terms += [(k1 * k2, ps1 + ps2) for k1, ps1 in t1 for k2, ps2 in t2]
        return c1 * c2, terms
    if isinstance(expr, DivisionExpression):
        (c1, t1), (c2, t2) = polynomial(expr.args[0]), polynomial(expr.args[1])
        if t2:
            raise NotAffine(f"division by a parameter-dependent term: {expr}")
        return c1 / c2, [(k / c2, ps) for k, ps in t1]
    if not list(identify_mutable_parameters(expr)):
        return float(pyo.value(expr)), []
    raise NotAffine(f"{type(expr).__name__} of mutable parameters: {expr}")


def affine(expr: Any) -> tuple[float, list[tuple[Any, float]]]:
    """``expr`` as ``c + Σ_p a_p p`` over its mutable parameters ``p``: returns
    ``(c, [(p, a_p), ...])`` (a parameter that appears twice is listed twice). Raises
    :class:`NotAffine` for a product or quotient of two parameter-dependent parts, or
    another non-linear node that holds a mutable parameter (:func:`polynomial`)."""
    const, terms = polynomial(expr)
    if any(len(ps) > 1 for _, ps in terms):
        raise NotAffine(f"product of two parameter-dependent terms: {expr}")
    return const, [(ps[0], k) for k, ps in terms]


class _ParameterMap:
    """``n`` values, each a polynomial in the parameter vector ``π`` (:func:`polynomial`):
    ``c_i + Σ_p A_ip π_p`` plus, per term of degree d ≥ 2, ``a·π_{p1}···π_{pd}``, all
    evaluated with numpy; an expression that is not a polynomial (``fallback``) is evaluated
    by Pyomo. ``index`` numbers the parameters (shared by the maps of one instance)."""

    def __init__(self, exprs: Sequence[Any], index: dict[int, int], params: list[Any]) -> None:
        self.n = len(exprs)
        self.const = np.zeros(self.n)
        self.fallback: list[tuple[int, Any]] = []
        self.not_affine = 0
        linear: list[tuple[int, int, float]] = []
        higher: dict[int, list[tuple[int, float, list[int]]]] = {}  # degree -> terms
        for i, e in enumerate(exprs):
            try:
                c, terms = polynomial(e)
            except NotAffine:
                self.fallback.append((i, e))
                self.not_affine += 1
                continue
            self.const[i] = c
            self.not_affine += any(len(ps) > 1 for _, ps in terms)
            for k, ps in terms:
                cols = []
                for p in ps:
                    j = index.get(id(p))
                    if j is None:
                        j = index[id(p)] = len(params)
                        params.append(p)
                    cols.append(j)
                if len(cols) == 1:
                    linear.append((i, cols[0], k))
                else:
                    higher.setdefault(len(cols), []).append((i, k, cols))
        self._linear = linear
        self._higher = {d: (np.array([r for r, _, _ in t], dtype=int), np.array([k for _, k, _ in t]),
                            np.array([c for _, _, c in t], dtype=int).reshape(len(t), d))
                        for d, t in higher.items()}
        self.A: Any = None

    def finish(self, n_params: int) -> None:
        """Fix the number of parameters (once every map of the instance has seen its own)."""
        from scipy.sparse import csr_matrix

        r, c, v = (np.array(x) for x in zip(*self._linear)) if self._linear else ([], [], [])
        self.A = csr_matrix((v, (r, c)), shape=(self.n, n_params))

    def __call__(self, pi: np.ndarray) -> np.ndarray:
        out = self.A @ pi + self.const
        for rows, coef, cols in self._higher.values():
            np.add.at(out, rows, coef * np.prod(pi[cols], axis=1))
        for i, e in self.fallback:
            out[i] = float(pyo.value(e))
        return out


@dataclass(frozen=True)
class PushStats:
    """What one :meth:`DirectHighs.push` sent to HiGHS."""

    row_bounds: int
    coefficients: int
    costs: int


class DirectHighs:
    """One Pyomo model in one HiGHS instance (module docstring).

    ``solver`` is an APPSI HiGHS (default: :func:`controllers.solve.highs` with
    ``time_limit_s``, ``mip_gap`` and ``options``); it only translates the model. Then
    ``push()`` after changing parameter values, ``solve(start=...)``, and ``value(var)`` or
    ``load(vars)`` to read the solution.
    """

    def __init__(self, model: pyo.Block, time_limit_s: float | None = None,
                 mip_gap: float | None = None, options: Mapping[str, Any] | None = None,
                 solver: Any = None) -> None:
        self.model = model
        self.time_limit_s = time_limit_s
        self.appsi = solver if solver is not None else highs(mip_gap=mip_gap)
        self.appsi.set_instance(model)
        h = self.h = self.appsi._solver_model
        opts = {"output_flag": False, **dict(self.appsi.highs_options), **dict(options or {})}
        if mip_gap is not None:
            opts["mip_rel_gap"] = float(mip_gap)
        for key, val in opts.items():
            h.setOptionValue(key, val)
        # Ctrl-C stops HiGHS at once (highspy cancels the run); raise_if_interrupted then
        # raises it after the run, as APPSI's own solves do
        h.HandleKeyboardInterrupt = True
        self._col = dict(self.appsi._pyomo_var_to_solver_var_map)  # id(var) -> column
        self._vars = {vid: entry[0] for vid, entry in self.appsi._vars.items()}
        self.n_cols = h.getNumCol()
        self.x = np.zeros(self.n_cols)
        self.has_solution = False
        self.integer_cols = np.array(
            [c for vid, c in self._col.items() if not self._vars[vid].is_continuous()], dtype=np.int32)
        self._compile()

    # -- the parameter map ------------------------------------------------------------------
    def _compile(self) -> None:
        """Collect what APPSI marked as parameter-dependent (row bounds, coefficients, costs,
        the objective's offset) and compile each into the affine map."""
        a = self.appsi
        con_row = a._pyomo_con_to_solver_con_map
        bounds, coefs, costs, offset = [], [], [], []
        for con, helpers in a._mutable_helpers.items():
            for hp in helpers:
                if hasattr(hp, "lower_expr"):
                    bounds.append((con_row[con], hp.lower_expr, hp.upper_expr))
                else:
                    coefs.append((con_row[hp.pyomo_con], self._col[hp.pyomo_var_id], hp.expr))
        for hp in a._objective_helpers:
            if hasattr(hp, "pyomo_var_id"):
                costs.append((self._col[hp.pyomo_var_id], hp.expr))
            else:
                offset.append(hp.expr)
        index: dict[int, int] = {}
        self._params: list[Any] = []
        self._rows = np.array([r for r, _, _ in bounds], dtype=np.int32)
        self._lb = _ParameterMap([lo for _, lo, _ in bounds], index, self._params)
        self._ub = _ParameterMap([up for _, _, up in bounds], index, self._params)
        self._coef_at = [(r, c) for r, c, _ in coefs]
        self._coef = _ParameterMap([e for _, _, e in coefs], index, self._params)
        self._cost_cols = np.array([c for c, _ in costs], dtype=np.int32)
        self._cost = _ParameterMap([e for _, e in costs], index, self._params)
        self._offset = _ParameterMap(offset, index, self._params)
        maps = (self._lb, self._ub, self._coef, self._cost, self._offset)
        for m in maps:
            m.finish(len(self._params))
        #: expressions not affine in the parameters; of them, those Pyomo evaluates at each
        #: push (not a polynomial: a quotient by a parameter, say)
        self.not_affine = sum(m.not_affine for m in maps)
        self.pyomo_evaluated = sum(len(m.fallback) for m in maps)
        pi = self._gather()
        # what HiGHS holds now (APPSI loaded it at these values)
        self._last = {"lb": self._lb(pi), "ub": self._ub(pi), "coef": self._coef(pi),
                      "cost": self._cost(pi), "offset": self._offset(pi)}

    def _gather(self) -> np.ndarray:
        return np.fromiter((p.value for p in self._params), dtype=float, count=len(self._params))

    @property
    def n_params(self) -> int:
        """How many mutable parameters reach HiGHS."""
        return len(self._params)

    def push(self) -> PushStats:
        """Send HiGHS what the current parameter values change (row bounds, coefficients,
        costs and the objective's offset); return the counts sent."""
        h, last = self.h, self._last
        pi = self._gather()
        lb, ub = self._lb(pi), self._ub(pi)
        moved = np.flatnonzero((lb != last["lb"]) | (ub != last["ub"]))
        if moved.size:
            h.changeRowsBounds(int(moved.size), self._rows[moved], _inf(lb[moved]), _inf(ub[moved]))
            last["lb"], last["ub"] = lb, ub
        coef = self._coef(pi)
        changed = np.flatnonzero(coef != last["coef"])
        for i in changed:
            row, col = self._coef_at[i]
            h.changeCoeff(int(row), int(col), float(coef[i]))
        last["coef"] = coef
        cost = self._cost(pi)
        moved_c = np.flatnonzero(cost != last["cost"])
        if moved_c.size:
            h.changeColsCost(int(moved_c.size), self._cost_cols[moved_c], cost[moved_c])
            last["cost"] = cost
        offset = self._offset(pi)
        if offset.size and offset[0] != last["offset"][0]:
            h.changeObjectiveOffset(float(offset[0]))
            last["offset"] = offset
        return PushStats(int(moved.size), int(changed.size), int(moved_c.size))

    # -- solving and reading ----------------------------------------------------------------
    def column(self, var: Any) -> int:
        """The HiGHS column of a Pyomo variable."""
        return self._col[id(var)]

    def columns(self, variables: Iterable[Any]) -> np.ndarray:
        return np.array([self._col[id(v)] for v in variables], dtype=np.int32)

    def solve(self, start: tuple[np.ndarray, np.ndarray] | None = None) -> SolveOutcome:
        """Run HiGHS on the instance as it stands. ``start``: ``(columns, values)``, a MIP
        start that HiGHS completes. A usable result (optimal, or feasible at the time
        limit) leaves its columns in :attr:`x`; otherwise :attr:`has_solution` is False.
        Ctrl-C stops the run at once and is raised as KeyboardInterrupt (never turned into
        a solver status)."""
        h = self.h
        # per run: HiGHS (highspy >= 1.16) times each run() from its start
        h.setOptionValue("time_limit", float(self.time_limit_s) if self.time_limit_s is not None
                         else math.inf)
        if start is not None:
            cols, vals = start
            h.setSolution(int(len(cols)), np.asarray(cols, dtype=np.int32),
                          np.asarray(vals, dtype=float))
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # highspy prints on Ctrl-C
            h.run()
        dt = time.perf_counter() - t0
        raise_if_interrupted(self.appsi)
        status = h.getModelStatus()
        info = h.getInfo()
        kind = highs_status(status, info.primal_solution_status == 2)  # 2: feasible
        self.has_solution = kind in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
        if not self.has_solution:
            return SolveOutcome(kind, solve_s=dt, message=h.modelStatusToString(status))
        self.x = np.asarray(h.getSolution().col_value, dtype=float)
        obj = float(info.objective_function_value)
        gap = float(info.mip_gap) if self.integer_cols.size else 0.0
        msg = "" if kind is SolveStatus.OPTIMAL else f"stopped: {h.modelStatusToString(status)}"
        return SolveOutcome(kind, obj, gap if math.isfinite(gap) else math.nan, dt, msg)

    def value(self, var: Any) -> float:
        """A variable's value in the last usable solution (a fixed variable: its value)."""
        col = self._col.get(id(var))
        return float(var.value) if col is None else float(self.x[col])

    def load(self, variables: Iterable[Any]) -> None:
        """Write the last solution's values into these Pyomo variables (only these)."""
        for v in variables:
            col = self._col.get(id(v))
            if col is not None:
                v.set_value(float(self.x[col]), skip_validation=True)


def _inf(a: np.ndarray) -> np.ndarray:
    """±inf as HiGHS's infinity."""
    import highspy

    return np.clip(a, -highspy.kHighsInf, highspy.kHighsInf)
