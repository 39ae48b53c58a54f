"""The layout rules of DESIGN.md §2 that code can check: no import cycles in models/ or
controllers/ (a module imported inside a function counts too), and no mosaik outside sim/
and scenarios/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(*packages: str) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def _imports(f: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_import_cycles_in_models_and_controllers():
    mods = _modules("models", "controllers")
    graph = {m: (_imports(f) & set(mods)) - {m} for m, f in mods.items()}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_models_and_controllers_do_not_use_mosaik():
    for name, f in _modules("models", "controllers").items():
        assert not any(i.split(".")[0].startswith("mosaik") for i in _imports(f)), name
