"""When a controller decides anew: its re-solve cadence (docs/cosim.md §2).

The MPC (``kind = "mpc"``) solves its MILP every ``controller.resolve_every_steps``
co-simulation steps, counted from the first step, and holds its plan in between; ``none``
and ``rule`` act every step::

    due(k) = (k mod N = 0),   N = resolve_every_steps for mpc, N = 1 otherwise

with ``k = 0, 1, 2, ...`` the number of steps done before this one. :class:`Rolling` runs a
controller on its cadence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers.interface import Dispatch, Measurement


@dataclass(frozen=True)
class Cadence:
    """Re-solve every ``every_steps`` co-simulation steps (1: every step)."""

    every_steps: int = 1

    def __post_init__(self) -> None:
        if self.every_steps < 1:
            raise ValueError(f"a cadence needs every_steps >= 1, got {self.every_steps}")

    @classmethod
    def of(cls, controller: Any) -> Cadence:
        """The cadence of a ``[controller]`` section
        (:class:`controllers.config.ControllerConfig`)."""
        return cls(int(controller.resolve_every_steps) if controller.kind == "mpc" else 1)

    def due(self, steps_done: int) -> bool:
        """Whether the step after ``steps_done`` steps is a re-solve."""
        return steps_done % self.every_steps == 0


@dataclass(frozen=True)
class Decision:
    """What a controller decided in one step: the dispatch in force and how it came about
    (``status`` ``"hold"`` between re-solves, with ``solved = fallback = False`` and
    ``solve_s = 0``)."""

    dispatch: Dispatch
    status: str
    solved: bool
    fallback: bool
    solve_s: float


class Rolling:
    """A controller on its cadence: ``step(measurement)`` when a re-solve is due, else the
    plan is held and, when the controller has one, ``hold(measurement)`` may correct it
    (the MPC's ramp guard). ``measure`` is called only when the controller reads it."""

    def __init__(self, controller: Any, cadence: Cadence, labels: Any = ()) -> None:
        self.controller = controller
        self.cadence = cadence
        self.dispatch = Dispatch(p_mw={label: 0.0 for label in labels})
        self.steps_done = 0
        self.solve_s = 0.0  # total solve time so far (seconds)

    def step(self, measure: Callable[[], Measurement]) -> Decision:
        if self.cadence.due(self.steps_done):
            d = self.dispatch = self.controller.step(measure())
            self.solve_s += d.solve_s
            decision = Decision(d, d.status, d.solved, d.fallback, d.solve_s)
        else:
            hold = getattr(self.controller, "hold", None)
            if hold is not None:
                self.dispatch = hold(measure())
            decision = Decision(self.dispatch, "hold", False, False, 0.0)
        self.steps_done += 1
        return decision
