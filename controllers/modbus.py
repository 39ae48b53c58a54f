"""The Modbus/TCP gateway: an external controller (or a lab's SCADA) on the co-simulation.

:func:`register_map` lays out, for a run's campuses and FCMs, one 32-bit IEEE float per
quantity, each in two holding registers (big-endian word order: the high word first; each
word big-endian, as Modbus sends it), at consecutive addresses from 0, unit id 1. Each
register's ``name`` is the time-series column it mirrors (``fcm.bess_18.p_set_mw``,
``sub.p_mw``, ...; ``time_s`` is the index). docs/hil.md lists the map and gives a worked
example with a pymodbus client.

:class:`ModbusGateway` serves that map with pymodbus on ``HOST:PORT``, in a thread of its
own. The co-simulation :meth:`~ModbusGateway.publish`-es each step's measurements; a client
reads them with function code 3 (or 4). With ``writable=True`` (``run --controller
external``) the FCM set-point registers (``access = "rw"``) take writes (function code 16,
whole floats): the last value written holds until the next write, and
:meth:`~ModbusGateway.setpoints` hands them to the FCMs. A write to a read-only register,
or of half a float (function code 6 writes one register: always half a float), is refused
with exception 02 (illegal data address) or 03 (illegal data value); coil and discrete
requests with 01 (illegal function); all refused writes are counted
(``writes_rejected``), except those outside the map, which the server refuses (02) before
the gateway sees them. A value that is not
finite or beyond the FCM's rating is accepted, counted (``writes_out_of_range``) and left
to the device physics, which clips it (docs/cosim.md §4) — never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

UNIT_ID = 1
"""The Modbus unit (device) id the gateway answers."""

READ_CODES = (3, 4)
"""Function codes the gateway answers: read holding (3) and input (4) registers, the same
registers both; write single (6) and multiple (16) registers. Any other is refused with
exception 01 (illegal function)."""
WRITE_CODES = (6, 16)

FCM_READS = ("p_mw", "q_mvar", "soc", "soc_mwh", "committed")
FCM_WRITES = ("p_set_mw", "q_set_mvar")
CAMPUS_READS = ("p_mw", "q_mvar", "online", "v_poi_pu")
SUB_READS = ("sub.p_mw", "sub.q_mvar", "sub.p_sched_mw", "sub.v_min_pu", "sub.v_max_pu",
             "pf.converged")


@dataclass(frozen=True)
class Register:
    """One float32 of the map: its ``name`` (a time-series column, or ``time_s``), first
    register ``address`` (it spans ``address`` and ``address + 1``) and ``access``."""

    name: str
    address: int
    access: str  # "r" or "rw"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "type": "float32",
                "access": self.access}


def register_map(campuses: Iterable[str], fcms: Iterable[str]) -> list[Register]:
    """The registers of a run with these campus names and FCM labels (module docstring):
    ``time_s``; per FCM its set-points (rw) then its measurements; per campus its
    measurements; then the substation's."""
    names: list[tuple[str, str]] = [("time_s", "r")]
    for label in fcms:
        names += [(f"fcm.{label}.{a}", "rw") for a in FCM_WRITES]
        names += [(f"fcm.{label}.{a}", "r") for a in FCM_READS]
    for campus in campuses:
        names += [(f"dc.{campus}.{a}", "r") for a in CAMPUS_READS]
    names += [(n, "r") for n in SUB_READS]
    return [Register(n, 2 * i, acc) for i, (n, acc) in enumerate(names)]


def map_json(registers: Sequence[Register]) -> dict[str, Any]:
    """``modbus-map``'s JSON (DESIGN.md §5)."""
    return {"unit_id": UNIT_ID, "registers": [r.to_json() for r in registers]}


def float_to_words(x: float) -> tuple[int, int]:
    """A float32 as two 16-bit registers, high word first."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", x))
    return hi, lo


def words_to_float(hi: int, lo: int) -> float:
    """Two 16-bit registers, high word first, as the float32 they hold."""
    return struct.unpack(">f", struct.pack(">HH", hi & 0xFFFF, lo & 0xFFFF))[0]


class ModbusGateway:
    """Serves a register map over Modbus/TCP (module docstring).

    ``address`` is ``HOST:PORT`` (port 0: any free port), ``ratings`` (FCM label → rated
    MW, for the out-of-range count) and ``writable`` (the set-points take writes).
    ``start()`` binds and returns the bound ``HOST:PORT`` (also :attr:`address`); ``stop()``."""

    def __init__(self, registers: Sequence[Register], address: str,
                 ratings: Mapping[str, float] | None = None, writable: bool = False) -> None:
        from models.schema import split_address

        self.registers = list(registers)
        self.host, self.port = split_address(address)
        self.ratings = dict(ratings or {})
        self.writable = writable
        self._by_name = {r.name: r for r in self.registers}
        self._by_address = {r.address: r for r in self.registers}
        self._lock = threading.Lock()
        self._words = [0] * (2 * len(self.registers))
        nan_hi, nan_lo = float_to_words(math.nan)
        for r in self.registers:  # nothing measured yet: NaN, set-points 0
            value = (0, 0) if r.access == "rw" else (nan_hi, nan_lo)
            self._words[r.address:r.address + 2] = value
        self._written: dict[str, float] = {}
        self.writes = 0
        self.writes_rejected = 0
        self.writes_out_of_range = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- the co-simulation's side ----------------------------------------------------------
    def publish(self, values: Mapping[str, Any]) -> None:
        """Write the values of the map's read registers that ``values`` holds (booleans as
        1/0, anything else not a number as NaN); set-points only when not writable."""
        words: dict[int, tuple[int, int]] = {}
        for name, value in values.items():
            r = self._by_name.get(name)
            if r is None or (r.access == "rw" and self.writable):
                continue
            words[r.address] = float_to_words(_as_float(value))
        with self._lock:
            for addr, (hi, lo) in words.items():
                self._words[addr] = hi
                self._words[addr + 1] = lo

    def setpoints(self) -> dict[str, float]:
        """The last value written to each set-point register (name → value)."""
        with self._lock:
            return dict(self._written)

    def stats(self) -> dict[str, int]:
        return {"modbus_writes": self.writes, "modbus_writes_rejected": self.writes_rejected,
                "modbus_writes_out_of_range": self.writes_out_of_range}

    # -- the server's side -----------------------------------------------------------------
    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: Any) -> Any:
        """pymodbus calls this on every access, before it answers from ``registers``."""
        from pymodbus.constants import ExcCodes

        with self._lock:
            if function_code not in READ_CODES + WRITE_CODES:  # coils, discrete inputs, ...
                self.writes_rejected += function_code in (5, 15)
                return ExcCodes.ILLEGAL_FUNCTION
            if set_values is not None:
                problem = self._take_write(address, count, list(set_values))
                if problem is not None:
                    self.writes_rejected += 1
                    return problem
            registers[:] = self._words[start_address:start_address + len(registers)]
            if set_values is not None:  # what the server writes after this call
                registers[address - start_address:address - start_address + count] = list(set_values)
        return None

    def _take_write(self, address: int, count: int, values: list[int]) -> Any:
        from pymodbus.constants import ExcCodes

        if address % 2 or count % 2 or count == 0:
            return ExcCodes.ILLEGAL_VALUE  # half a float
        for k in range(0, count, 2):
            r = self._by_address.get(address + k)
            if r is None or r.access != "rw" or not self.writable:
                return ExcCodes.ILLEGAL_ADDRESS
        for k in range(0, count, 2):
            r = self._by_address[address + k]
            x = words_to_float(values[k], values[k + 1])
            label = r.name.split(".")[1]
            rating = self.ratings.get(label, math.inf)
            if not math.isfinite(x) or abs(x) > rating * (1 + 1e-6):
                self.writes_out_of_range += 1
                logger.info("modbus: %s = %r is beyond the FCM's rating %g MW; the device "
                            "clips it", r.name, x, rating)
            self._written[r.name] = x
            self._words[r.address:r.address + 2] = values[k:k + 2]
            self.writes += 1
        return None

    def start(self) -> str:
        """Bind and serve in a background thread; return the bound ``HOST:PORT``."""
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        # access is checked (and refusals counted) in _action
        blocks = [SimData(0, count=len(self._words), values=0, datatype=DataType.REGISTERS)]
        device = SimDevice(id=UNIT_ID, simdata=blocks, action=self._action)
        ready = threading.Event()
        failure: list[BaseException] = []

        async def listen() -> None:  # the server must be made inside its running loop
            self._server = ModbusTcpServer(device, address=(self.host, self.port))
            await self._server.serve_forever(background=True)

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(listen())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="modbus-gateway", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise OSError(f"cannot serve Modbus/TCP on {self.host}:{self.port}: {failure[0]}")
        sock = self._server.transport.sockets[0] if hasattr(self._server.transport, "sockets") else None
        bound = sock.getsockname() if sock is not None else (self.host, self.port)
        self.port = int(bound[1])
        return self.address

    @property
    def address(self) -> str:
        """``HOST:PORT`` it serves on (the bound port once started)."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._server = None


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
