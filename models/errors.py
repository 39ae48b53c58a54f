"""The one exception type for bad user input, and the one for a lost controller process.

Everything the user hands us (a scenario file, a feeder, a siting file, a CLI option) is
checked at the edge. When it is wrong we raise :class:`ScenarioError`, naming the file, the
field and what is allowed; ``run_cosim.py`` turns it into exit code 2 and a single line on
stderr. A controller in another process that is not there, dies or stops answering ends a
run with :class:`ControllerLost`: exit 1 and one line naming its address (docs/hil.md). Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any


class ControllerLost(RuntimeError):
    """The controller at ``address`` was not there, died or stopped answering (``what``);
    ``folder`` keeps the rows simulated until then (None when there were none)."""

    def __init__(self, address: str, what: str, folder: Path | None = None) -> None:
        super().__init__(f"controller at {address} {what}")
        self.address, self.what, self.folder = address, what, folder


class ScenarioError(Exception):
    """Bad user input: a file, a field in it, and what is allowed instead.

    Parameters
    ----------
    source:
        The file (or CLI option, e.g. ``"--scale"``) the problem is in.
    field:
        Dotted path of the offending field (``"campus[0].bus"``); empty if the whole
        source is at fault (missing file, unreadable file).
    message:
        What is wrong and what is allowed, e.g. ``"unknown bus '99'; allowed: 1..33"``.
    """

    def __init__(self, source: str | Path, field: str, message: str) -> None:
        self.source = str(source)
        self.field = field
        self.message = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The single line the CLI prints: ``file: field: message``."""
        parts = [_printable(self.source)]
        if self.field:
            parts.append(_printable(self.field))
        parts.append(" ".join(self.message.split()))
        return ": ".join(parts)


def _printable(text: str) -> str:
    """``text`` on one line: a name with a newline or a control character in it (a field a
    user mistyped) is shown escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def read_user_file(path: str | Path, expected: str) -> str:
    """Text of a file the user named, or :class:`ScenarioError` saying what was expected.

    ``expected`` completes "give …" in the message, e.g. ``"a scenario .toml file"``. A
    missing file, a folder, an unreadable file and a file that is not UTF-8 text all become
    one line naming the file.
    """
    p = Path(path)
    if p.is_dir():
        raise ScenarioError(p, "", f"is a folder, not a file; give {expected}")
    if not p.is_file():
        raise ScenarioError(p, "", f"file not found; give {expected}")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(p, "", f"not a UTF-8 text file; give {expected}") from None
    except OSError as exc:
        raise ScenarioError(p, "", f"cannot read file ({exc.strerror}); give {expected}") from None


def parse_user_file(path: str | Path, expected: str, parse: Callable[[str], Any],
                    fmt: str) -> Any:
    """:func:`read_user_file`, then ``parse`` (e.g. ``json.loads``, ``tomllib.loads``); a
    parse error is one :class:`ScenarioError` line "not valid ``fmt`` (…)"."""
    text = read_user_file(path, expected)
    try:
        return parse(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are
        raise ScenarioError(Path(path), "", f"not valid {fmt} ({exc})") from None


def format_loc(loc: Sequence[Any], skip: Collection[str] = ()) -> str:
    """A pydantic error location as a field path, ``a.b[2].c``; parts in ``skip`` (e.g. the
    tags of a discriminated union) are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in skip:
            out += ("." if out else "") + str(part)
    return out


_PATH = re.compile(r"[A-Za-z_]\w*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*")


def pydantic_problem(err: Mapping[str, Any], source: str | Path, skip: Collection[str] = (),
                     fields: Callable[[tuple[Any, ...]], Collection[str]] = lambda loc: ()
                     ) -> ScenarioError:
    """One pydantic error as a :class:`ScenarioError` of ``source``: its location as a field
    path (:func:`format_loc`, without the ``skip`` tags), and a message that says what is
    allowed. ``fields(loc)`` lists the field names at a location: an unknown field is
    answered with them, and a model validator's message about one of its fields (or one of
    the keys it was given), ``"name: …"``, moves ``name`` into the path."""
    loc = tuple(err.get("loc", ()))
    field = format_loc(loc, skip)
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = err.get("type")
    if kind == "extra_forbidden":
        allowed = fields(loc[:-1])
        msg = "unknown field" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    elif kind == "missing" and loc and isinstance(loc[-1], int):  # a short [low, high] pair
        field, msg = format_loc(loc[:-1], skip), f"too few values: none at index {loc[-1]}"
    elif kind == "missing":
        msg = "required field is missing"
    else:
        head, sep, rest = msg.partition(": ")
        given = err.get("input") if isinstance(err.get("input"), dict) else {}
        if sep and _PATH.fullmatch(head) and (re.split(r"[.\[]", head)[0] in fields(loc)
                                              or head in given):
            field, msg = (f"{field}.{head}" if field else head), rest
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
    return ScenarioError(source, field, msg)
