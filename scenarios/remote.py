"""The link to a controller in another process, and what a run does when it breaks.

A run reaches its controller in one of three ways (docs/hil.md):

* in this process (the default);
* ``--hil``: mosaik starts ``python -m sim.controller_sim ADDR`` and the process connects
  back (mosaik's ``cmd`` starter, :class:`GuardedCmd`);
* ``--controller-address HOST:PORT``: a controller the user started with ``run_cosim.py
  controller SCENARIO --listen HOST:PORT`` (mosaik's ``connect`` starter,
  :class:`GuardedConnect`).

mosaik waits for a remote simulator's answers without a limit, so a process that dies
between two calls, or one that stops answering, would leave :meth:`mosaik.World.run`
waiting for good. Both starters bound every call to the simulator they start, from
``init`` on:

* a call fails with :class:`SimulatorLost` as soon as the connection is found closed, or the
  process that mosaik started has exited (checked every :data:`POLL_S` seconds);
* a call not answered within ``answer_s`` seconds fails the same way; the first ``step``
  may take ``first_step_s`` (it builds the MPC's model, which takes as long as the feeder
  is large);
* nothing listening at the address fails at once.

:func:`abandon` then closes a World that stopped part-way: the Recorder flushes the rows it
holds (docs/results.md, "A partial folder"), the scheduler's tasks are cancelled and every
simulator that is still there is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import mosaik
from mosaik.exceptions import ConnectionClosedError, SimulationError
from mosaik.proxies import RemoteProxy
from mosaik.starters import CmdStarter, ConnectStarter

from models.schema import split_address

logger = logging.getLogger(__name__)

POLL_S = 0.5
"""How often a pending call checks that the remote process is still alive (seconds)."""


class SimulatorLost(RuntimeError):
    """A remote simulator is not there, died, closed its connection or stopped answering.

    ``address`` is where it was reached (``HOST:PORT``), ``what`` says what happened."""

    def __init__(self, sim_id: str, address: str, what: str) -> None:
        super().__init__(f"{sim_id} at {address} {what}")
        self.sim_id, self.address, self.what = sim_id, address, what


def answer_limits(controller: Any) -> tuple[float, float]:
    """``(answer_s, first_step_s)`` for a controller section: a call must be answered
    within twice the MILP's time limit plus 10 s for the update and the wire, at least
    20 s; the first step, which builds the MPC's model, within three times that."""
    answer = max(20.0, 2.0 * float(controller.time_limit_s) + 10.0)
    return answer, 3.0 * answer


class _Guard:
    """Bounds the calls of one :class:`RemoteProxy` (module docstring)."""

    def __init__(self, proxy: RemoteProxy, sim_id: str, address: str, answer_s: float,
                 first_step_s: float) -> None:
        self.proxy, self.sim_id, self.address = proxy, sim_id, address
        self.answer_s, self.first_step_s = answer_s, first_step_s
        self.process = proxy._process[0] if proxy._process is not None else None
        self.stepped = False
        self.send = proxy.send
        proxy.send = self.guarded  # type: ignore[method-assign]

    async def guarded(self, request: Any) -> Any:
        method = request[0]
        limit = self.answer_s if (self.stepped or method != "step") else self.first_step_s
        call = asyncio.ensure_future(self.send(request))
        sent = time.monotonic()
        while True:
            done, _ = await asyncio.wait({call}, timeout=POLL_S)
            if done:
                try:
                    result = call.result()
                except (ConnectionClosedError, ConnectionError, asyncio.IncompleteReadError):
                    raise self.lost(self.gone(method)) from None
                self.stepped = self.stepped or method == "step"
                return result
            if self.closed() or (self.process is not None and self.process.poll() is not None):
                call.cancel()
                raise self.lost(self.gone(method))
            if time.monotonic() - sent >= limit:
                call.cancel()
                raise self.lost(f"did not answer a '{method}' call within {limit:g} s")

    def closed(self) -> bool:
        """Whether the other end closed or reset the connection. A request sent after that
        (the process died between two calls) would never be answered: mosaik's channel fails
        only the requests pending when the connection ends cleanly, and none on a reset
        (its reader task then ends with ConnectionResetError)."""
        channel = self.proxy._channel
        reader = getattr(channel, "_reader", None)
        receiver = getattr(channel, "_receiver_task", None)
        return (reader is not None and reader.at_eof()) or (receiver is not None and receiver.done())

    def lost(self, what: str) -> SimulatorLost:
        return SimulatorLost(self.sim_id, self.address, what)

    def gone(self, method: str) -> str:
        code = None if self.process is None else self.process.poll()
        if code is None:
            return f"closed the connection during a '{method}' call"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"{how} during a '{method}' call"


class GuardedConnect(ConnectStarter):
    """mosaik's ``connect`` starter with every call bounded (module docstring)."""

    def __init__(self, address: str, answer_s: float, first_step_s: float) -> None:
        super().__init__(*split_address(address))
        self.address, self.answer_s, self.first_step_s = address, answer_s, first_step_s

    async def start(self, sim_id: str, mosaik_remote: Any, mosaik_config: Any) -> Any:
        try:
            proxy = await super().start(sim_id, mosaik_remote, mosaik_config)
        except SimulationError:
            raise SimulatorLost(sim_id, self.address, "is not there (nothing listens at this "
                                "address; start it with `run_cosim.py controller ... --listen`)") from None
        self.guard = _Guard(proxy, sim_id, self.address, self.answer_s, self.first_step_s)
        return proxy


class GuardedCmd(CmdStarter):
    """mosaik's ``cmd`` starter with every call bounded (module docstring)."""

    def __init__(self, cmd: str, cwd: str, answer_s: float, first_step_s: float) -> None:
        super().__init__(cmd, cwd=cwd)
        self.answer_s, self.first_step_s = answer_s, first_step_s

    async def start(self, sim_id: str, mosaik_remote: Any, mosaik_config: Any) -> Any:
        proxy = await super().start(sim_id, mosaik_remote, mosaik_config)
        writer = getattr(proxy._channel, "_writer", None)
        peer = writer.get_extra_info("peername") if writer is not None else None
        address = f"{peer[0]}:{peer[1]}" if peer else "an unknown address"
        self.guard = _Guard(proxy, sim_id, address, self.answer_s, self.first_step_s)
        return proxy


def abandon(world: mosaik.World, recorder_sid: str | None = None) -> None:
    """Close a World whose run stopped part-way, keeping what was recorded.

    The Recorder (in this process) flushes first. Then the scheduler's pending tasks are
    cancelled, every in-process simulator is finalized, and every remote one is
    disconnected and its process, if mosaik started it, killed: a process that stopped
    answering would not obey a polite stop. Errors of simulators that are already gone are
    logged, not raised."""
    runners = dict(world.sims)
    if recorder_sid in runners:
        _finalize(recorder_sid, runners.pop(recorder_sid)._proxy)
    loop = world.loop
    if loop.is_closed():
        return
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for sid, runner in runners.items():
        proxy = runner._proxy
        if not isinstance(proxy, RemoteProxy):
            _finalize(sid, proxy)
            continue
        if proxy._process is not None and proxy._process[0].poll() is None:
            proxy._process[0].kill()
            proxy._process[0].wait()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait_for(proxy._channel.close(), 1.0))
        receiver = getattr(proxy._channel, "_receiver_task", None)
        if receiver is not None and receiver.done() and not receiver.cancelled():
            receiver.exception()  # a reset connection's error, seen: asyncio must not log it
    world._async_world._shutdown_performed = True  # done by hand: no "never shut down" warning
    loop.close()


def _finalize(sid: str, proxy: Any) -> None:
    sim = getattr(proxy, "sim", None)
    if sim is None:
        return
    try:
        sim.finalize()
    except Exception as exc:  # a simulator that failed may fail again here
        logger.warning("%s: finalize failed after the run stopped: %s", sid, exc)
